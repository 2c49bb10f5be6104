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
/// graphs settle in one or two passes. Every loop is iterative with explicit
/// arrays, so no stack depth depends on the heap's shape (a linked list of a
/// million nodes is a million-deep depth-first search).
/// </summary>
public sealed class DominatorTree : IDisposable
{
    /// <summary>Marks an object no root reaches (garbage the GC has not collected yet).</summary>
    public const int Unreachable = -1;

    // Reachable nodes in depth-first postorder (the super-root last): every
    // node comes after all the nodes it dominates. Outside the GC heap and
    // freed by RetainedSizes (or Dispose): it is needed only until then.
    private NativeGrowing<int> _postorder;

    /// <summary>Immediate dominator of each node; the super-root's is itself.</summary>
    public int[] Idom { get; }

    /// <summary>How many passes the iteration took to settle (the last one changed
    /// no node's dominator after that node's turn).</summary>
    public int Passes { get; }

    public int SuperRoot => Idom.Length - 1;

    private DominatorTree(int[] idom, NativeGrowing<int> postorder, int passes)
    {
        Idom = idom;
        _postorder = postorder;
        Passes = passes;
    }

    public void Dispose() => _postorder.Free();

    /// <summary>
    /// Computes the tree. <paramref name="start"/> (length nodeCount + 1) and
    /// <paramref name="edges"/> are the successors of the real nodes; the
    /// super-root's successors are <paramref name="roots"/>.
    /// </summary>
    public static DominatorTree Compute(int nodeCount, ReadOnlySpan<int> start, ReadOnlySpan<int> edges, int[] roots,
        IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        int superRoot = nodeCount;
        // The temporaries live outside the GC heap, so that each one's
        // memory goes back the moment it is freed: one of the build's two
        // peaks of memory is here, and a collection would come too late.
        // Postorder number of each node; -1 unvisited. During the search it
        // holds the next edge to follow, as -2 - cursor, so the search needs
        // no second per-node array.
        var numbers = NativeGrowing<int>.OfLength(nodeCount + 1);
        var order = NativeGrowing<int>.OfLength(nodeCount + 1);
        try
        {
            Span<int> number = numbers.Span;
            number.Fill(-1);
            int ordered = DepthFirstPostorder(nodeCount, start, edges, roots, number, order.Span, cancel);
            progress?.Report(new ProgressReport(1, 3, "computing dominators"));
            ReadOnlySpan<int> postorder = order.Span[..ordered];

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
            // A pass needs no successor unless a node's dominator changed
            // after its own turn (along an edge back up the order): every
            // other change is made before the node passes its dominator on,
            // and every dominator is earlier in the order than its nodes,
            // so the values each turn used were already the pass's last; a
            // pass with no such change has reached the fixed point, and the
            // pass that would only confirm it is left out.
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
                            // Postorder numbers: b has had its turn when its number is at least p's.
                            changed |= number[b] >= number[p];
                        }
                    }
                    if ((k & 0xFFFF) == 0)
                        cancel.ThrowIfCancellationRequested();
                }
                progress?.Report(new ProgressReport(2, 3, "computing dominators"));
            }
            return new DominatorTree(idom, order.Prefix(ordered), passes);
        }
        catch
        {
            order.Free();
            throw;
        }
        finally
        {
            numbers.Free();
        }
    }

    /// <summary>
    /// Retained size of every node: its own size plus the retained sizes of
    /// the nodes it immediately dominates (postorder visits those first).
    /// Frees the postorder: call once.
    /// </summary>
    public RetainedSizes RetainedSizes(Func<int, ulong> shallowSize)
    {
        if (_postorder.Span.IsEmpty && Idom.Length > 0)
            throw new InvalidOperationException("the retained sizes are computed once");
        try
        {
            var sizes = new RetainedSizes(Idom.Length);
            int superRoot = SuperRoot;
            // Own sizes in index order (memory order); then the sums, which
            // need the postorder.
            for (int v = 0; v < superRoot; v++)
            {
                if (Idom[v] != Unreachable)
                    sizes.Add(v, shallowSize(v));
            }
            foreach (int v in _postorder.Span)
            {
                if (v != superRoot)
                    sizes.Add(Idom[v], sizes[v]);
            }
            return sizes;
        }
        finally
        {
            _postorder.Free();
        }
    }

    private static int Intersect(int a, int b, int[] idom, ReadOnlySpan<int> number)
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

    /// <summary>Numbers the reachable nodes in postorder into
    /// <paramref name="number"/> and lists them in <paramref name="order"/>;
    /// returns how many there are.</summary>
    private static int DepthFirstPostorder(int nodeCount, ReadOnlySpan<int> start, ReadOnlySpan<int> edges, int[] roots, Span<int> number,
        Span<int> order, CancellationToken cancel)
    {
        int superRoot = nodeCount;
        // The stack shares the order's array, from its far end: each node is
        // pushed once at most and moves from the stack to the order when
        // popped, so the two together never hold more than every node, and
        // the search needs no array of its own.
        int top = order.Length;
        int ordered = 0;
        order[--top] = superRoot;
        number[superRoot] = -2;
        int visited = 0;
        while (top < order.Length)
        {
            int v = order[top];
            int cursor = -2 - number[v];
            ReadOnlySpan<int> next = Successors(v, superRoot, start, edges, roots);
            while (cursor < next.Length && number[next[cursor]] != -1)
                cursor++;
            if (cursor < next.Length)
            {
                int w = next[cursor];
                number[v] = -2 - (cursor + 1);
                number[w] = -2;
                order[--top] = w;
                if ((++visited & 0xFFFF) == 0)
                    cancel.ThrowIfCancellationRequested();
            }
            else
            {
                top++;
                number[v] = ordered;
                order[ordered++] = v;
            }
        }
        return ordered;
    }
}

/// <summary>
/// The retained size of every node, 4 bytes each (half a ulong: the build's
/// peak is at the retained sizes): a size of 4 GiB and more is kept in
/// <see cref="Huge"/> and marked uint.MaxValue here. Few nodes retain that
/// much (the roots of the largest structures and the chains above them).
/// </summary>
public sealed class RetainedSizes
{
    /// <summary>Pinned: the graph keeps it as a column.</summary>
    internal uint[] Small { get; }

    internal Dictionary<int, ulong> Huge { get; } = [];

    internal RetainedSizes(int length)
    {
        Small = HugePages.Advise(GC.AllocateUninitializedArray<uint>(length, pinned: true));
        Array.Clear(Small);
    }

    public ulong this[int v] => Small[v] == uint.MaxValue ? Huge[v] : Small[v];

    internal void Add(int v, ulong bytes)
    {
        ulong sum = this[v] + bytes;
        if (sum < uint.MaxValue)
        {
            Small[v] = (uint)sum;
        }
        else
        {
            Small[v] = uint.MaxValue;
            Huge[v] = sum;
        }
    }
}
