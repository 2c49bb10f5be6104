namespace DumpScope.Engine.Analysis;

/// <summary>
/// The dominator tree of a graph given as compressed sparse rows, with one
/// virtual super-root (node <c>nodeCount</c>) whose successors are the GC
/// roots. Object y is dominated by x when every path from the super-root to
/// y passes through x; the immediate dominator is the closest such x.
///
/// Cooper, Harvey and Kennedy, "A Simple, Fast Dominance Algorithm" (2001):
/// number the nodes in depth-first postorder, then repeat "idom(b) = the
/// nearest common dominator of b's predecessors" in reverse postorder until
/// nothing changes (here pushed along the successors, see Compute). Heap
/// graphs settle in two or three passes. Every loop is iterative with explicit arrays, so no stack depth
/// depends on the heap's shape (a linked list of a million nodes is a
/// million-deep depth-first search).
/// </summary>
public sealed class DominatorTree
{
    /// <summary>Marks an object no root reaches (garbage the GC has not collected yet).</summary>
    public const int Unreachable = -1;

    /// <summary>Immediate dominator of each node; the super-root's is itself.</summary>
    public int[] Idom { get; }

    /// <summary>Reachable nodes in depth-first postorder (the super-root last):
    /// every node comes after all the nodes it dominates.</summary>
    public int[] Postorder { get; }

    /// <summary>How many passes the iteration took to settle (the last one changes nothing).</summary>
    public int Passes { get; }

    public int SuperRoot => Idom.Length - 1;

    private DominatorTree(int[] idom, int[] postorder, int passes)
    {
        Idom = idom;
        Postorder = postorder;
        Passes = passes;
    }

    /// <summary>
    /// Computes the tree. <paramref name="start"/> (length nodeCount + 1) and
    /// <paramref name="edges"/> are the successors of the real nodes; the
    /// super-root's successors are <paramref name="roots"/>.
    /// </summary>
    public static DominatorTree Compute(int nodeCount, ReadOnlySpan<int> start, ReadOnlySpan<int> edges, int[] roots,
        IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        int superRoot = nodeCount;
        // Postorder number of each node; -1 unvisited. During the search it
        // holds the next edge to follow, as -2 - cursor, so the search needs
        // no second per-node array.
        int[] number = HugePages.Advise(GC.AllocateUninitializedArray<int>(nodeCount + 1));
        Array.Fill(number, -1);
        int[] postorder = DepthFirstPostorder(nodeCount, start, edges, roots, number, cancel);
        progress?.Report(new ProgressReport(1, 3, "computing dominators"));

        // The iteration, turned around so that it needs no predecessor
        // lists (which would cost as much memory as the references): in
        // reverse postorder, each node, once its own dominator is known for
        // this pass, folds itself into the dominator of each successor.
        // Approximations only ever move up the tree towards the true
        // dominators (the intersection of two approximate chains is at or
        // below the true one), so folding into the previous value is sound,
        // and a pass that changes nothing means every node's dominator is
        // the intersection over all its predecessors: the fixed point of
        // the original formulation.
        // Pinned: the graph keeps it as a column (HeapGraph.Storage.cs).
        int[] idom = HugePages.Advise(GC.AllocateUninitializedArray<int>(nodeCount + 1, pinned: true));
        Array.Fill(idom, Unreachable);
        idom[superRoot] = superRoot;
        bool changed = true;
        int passes = 0;
        while (changed)
        {
            changed = false;
            passes++;
            for (int k = postorder.Length - 1; k >= 0; k--)
            {
                int p = postorder[k];
                if (idom[p] == Unreachable)
                    continue;
                foreach (int b in Successors(p, superRoot, start, edges, roots))
                {
                    int current = idom[b];
                    int folded = current == Unreachable ? p : Intersect(p, current, idom, number);
                    if (folded != current)
                    {
                        idom[b] = folded;
                        changed = true;
                    }
                }
                if ((k & 0xFFFF) == 0)
                    cancel.ThrowIfCancellationRequested();
            }
            progress?.Report(new ProgressReport(2, 3, "computing dominators"));
        }
        return new DominatorTree(idom, postorder, passes);
    }

    /// <summary>
    /// Retained size of every node: its own size plus the retained sizes of
    /// the nodes it immediately dominates (postorder visits those first).
    /// </summary>
    public ulong[] RetainedSizes(Func<int, ulong> shallowSize)
    {
        // The search's numbering is garbage by now: free it before this
        // array, the largest per node, is made.
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        ulong[] retained = HugePages.Advise(GC.AllocateUninitializedArray<ulong>(Idom.Length, pinned: true));
        Array.Clear(retained);
        int superRoot = SuperRoot;
        // Own sizes in index order (memory order); then the sums, which
        // need the postorder.
        for (int v = 0; v < superRoot; v++)
        {
            if (Idom[v] != Unreachable)
                retained[v] = shallowSize(v);
        }
        foreach (int v in Postorder)
        {
            if (v != superRoot)
                retained[Idom[v]] += retained[v];
        }
        return retained;
    }

    private static int Intersect(int a, int b, int[] idom, int[] number)
    {
        while (a != b)
        {
            while (number[a] < number[b])
                a = idom[a];
            while (number[b] < number[a])
                b = idom[b];
        }
        return a;
    }

    private static ReadOnlySpan<int> Successors(int v, int superRoot, ReadOnlySpan<int> start, ReadOnlySpan<int> edges, int[] roots) =>
        v == superRoot ? roots : edges.Slice(start[v], start[v + 1] - start[v]);

    private static int[] DepthFirstPostorder(int nodeCount, ReadOnlySpan<int> start, ReadOnlySpan<int> edges, int[] roots, int[] number,
        CancellationToken cancel)
    {
        int superRoot = nodeCount;
        int[] order = HugePages.Advise(GC.AllocateUninitializedArray<int>(nodeCount + 1));
        int ordered = 0;
        // Each node is pushed once at most: the stack never outgrows this,
        // and the pages it does not reach are never touched.
        int[] stack = HugePages.Advise(GC.AllocateUninitializedArray<int>(nodeCount + 1));
        int depth = 0;
        stack[depth++] = superRoot;
        number[superRoot] = -2;
        int visited = 0;
        while (depth > 0)
        {
            int v = stack[depth - 1];
            int cursor = -2 - number[v];
            ReadOnlySpan<int> next = Successors(v, superRoot, start, edges, roots);
            while (cursor < next.Length && number[next[cursor]] != -1)
                cursor++;
            if (cursor < next.Length)
            {
                int w = next[cursor];
                number[v] = -2 - (cursor + 1);
                number[w] = -2;
                stack[depth++] = w;
                if ((++visited & 0xFFFF) == 0)
                    cancel.ThrowIfCancellationRequested();
            }
            else
            {
                depth--;
                number[v] = ordered;
                order[ordered++] = v;
            }
        }
        if (ordered < order.Length)
            Array.Resize(ref order, ordered);
        return order;
    }
}
