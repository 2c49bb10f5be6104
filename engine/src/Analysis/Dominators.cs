namespace DumpScope.Engine.Analysis;

/// <summary>
/// The dominator tree of a graph given as compressed sparse rows, with one
/// virtual super-root (node <c>nodeCount</c>) whose successors are the GC
/// roots. Object y is dominated by x when every path from the super-root to
/// y passes through x; the immediate dominator is the closest such x.
///
/// Cooper, Harvey and Kennedy, "A Simple, Fast Dominance Algorithm" (2001):
/// number the nodes in depth-first postorder, then repeat "idom(b) = the
/// nearest common dominator of b's already-processed predecessors" in reverse
/// postorder until nothing changes. Heap graphs settle in two or three
/// passes. Every loop is iterative with explicit arrays, so no stack depth
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
    public static DominatorTree Compute(int nodeCount, int[] start, int[] edges, int[] roots,
        IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        int superRoot = nodeCount;
        // Postorder number of each node; -1 unvisited. During the search it
        // holds the next edge to follow, as -2 - cursor, so the search needs
        // no second per-node array.
        var number = new int[nodeCount + 1];
        Array.Fill(number, -1);
        int[] postorder = DepthFirstPostorder(nodeCount, start, edges, roots, number, cancel);
        progress?.Report(new ProgressReport(1, 4, "ordering the object graph"));

        // Predecessors, reachable nodes only, as compressed rows indexed by node.
        var predStart = new int[nodeCount + 2];
        foreach (int v in postorder)
        {
            foreach (int w in Successors(v, superRoot, start, edges, roots))
            {
                if (number[w] >= 0)
                    predStart[w + 1]++;
            }
        }
        for (int i = 0; i <= nodeCount; i++)
            predStart[i + 1] += predStart[i];
        var preds = new int[predStart[nodeCount + 1]];
        var fill = (int[])predStart.Clone();
        foreach (int v in postorder)
        {
            foreach (int w in Successors(v, superRoot, start, edges, roots))
            {
                if (number[w] >= 0)
                    preds[fill[w]++] = v;
            }
        }
        fill = [];
        cancel.ThrowIfCancellationRequested();
        progress?.Report(new ProgressReport(2, 4, "computing dominators"));

        var idom = new int[nodeCount + 1];
        Array.Fill(idom, Unreachable);
        idom[superRoot] = superRoot;
        bool changed = true;
        int passes = 0;
        while (changed)
        {
            changed = false;
            passes++;
            // Reverse postorder, the super-root (last) skipped.
            for (int k = postorder.Length - 2; k >= 0; k--)
            {
                int b = postorder[k];
                int newIdom = Unreachable;
                for (int e = predStart[b]; e < predStart[b + 1]; e++)
                {
                    int p = preds[e];
                    if (idom[p] == Unreachable)
                        continue;
                    newIdom = newIdom == Unreachable ? p : Intersect(p, newIdom, idom, number);
                }
                if (idom[b] != newIdom)
                {
                    idom[b] = newIdom;
                    changed = true;
                }
                if ((k & 0xFFFF) == 0)
                    cancel.ThrowIfCancellationRequested();
            }
        }
        progress?.Report(new ProgressReport(3, 4, "computing dominators"));
        return new DominatorTree(idom, postorder, passes);
    }

    /// <summary>
    /// Retained size of every node: its own size plus the retained sizes of
    /// the nodes it immediately dominates (postorder visits those first).
    /// </summary>
    public ulong[] RetainedSizes(Func<int, ulong> shallowSize)
    {
        var retained = new ulong[Idom.Length];
        int superRoot = SuperRoot;
        foreach (int v in Postorder)
        {
            if (v != superRoot)
                retained[v] += shallowSize(v);
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

    private static ReadOnlySpan<int> Successors(int v, int superRoot, int[] start, int[] edges, int[] roots) =>
        v == superRoot ? roots : edges.AsSpan(start[v], start[v + 1] - start[v]);

    private static int[] DepthFirstPostorder(int nodeCount, int[] start, int[] edges, int[] roots, int[] number, CancellationToken cancel)
    {
        int superRoot = nodeCount;
        var order = new List<int>();
        var stack = new Stack<int>();
        stack.Push(superRoot);
        number[superRoot] = -2;
        int visited = 0;
        while (stack.Count > 0)
        {
            int v = stack.Peek();
            int cursor = -2 - number[v];
            ReadOnlySpan<int> next = Successors(v, superRoot, start, edges, roots);
            while (cursor < next.Length && number[next[cursor]] != -1)
                cursor++;
            if (cursor < next.Length)
            {
                int w = next[cursor];
                number[v] = -2 - (cursor + 1);
                number[w] = -2;
                stack.Push(w);
                if ((++visited & 0xFFFF) == 0)
                    cancel.ThrowIfCancellationRequested();
            }
            else
            {
                stack.Pop();
                number[v] = order.Count;
                order.Add(v);
            }
        }
        return [.. order];
    }
}
