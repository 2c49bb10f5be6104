using System.Runtime.CompilerServices;

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
/// nothing changes (here over postorder numbers and pushed along the
/// successors, see Iterate). Heap graphs settle in one or two passes, and a
/// pass after the first folds again only the nodes whose chain of
/// dominators changed (big-heap: a few dozen). Every loop is iterative with explicit
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
    internal Column<int> Idom { get; }

    /// <summary>How many passes the iteration took to settle (the last one changed
    /// no node's dominator after that node's turn).</summary>
    public int Passes { get; }

    public int SuperRoot => Idom.Length - 1;

    // The retained sizes' column: memory the tree's computation used and backed.
    private readonly Column<uint> _sizes;

    private DominatorTree(Column<int> idom, NativeGrowing<int> postorder, Column<uint> sizes, int passes)
    {
        Idom = idom;
        _postorder = postorder;
        _sizes = sizes;
        Passes = passes;
    }

    public void Dispose() => _postorder.Free();

    /// <summary>
    /// Computes the tree. <paramref name="start"/> (length nodeCount + 1) and
    /// <paramref name="edges"/> are the successors of the real nodes; the
    /// super-root's successors are <paramref name="roots"/>. <paramref name="searched"/>
    /// is called when the depth-first search ends and the passes begin (the
    /// build's log times the two apart).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe DominatorTree Compute(int nodeCount, ReadOnlySpan<int> start, ReadOnlySpan<int> edges, int[] roots,
        IProgress<ProgressReport>? progress, CancellationToken cancel, Action? searched = null)
    {
        int superRoot = nodeCount;
        // The immediate dominators' array first holds each node's postorder
        // number plus one (0 unvisited: a new column is zeroed already, at no
        // cost on Linux; during the search the next edge to follow, as
        // -1 - cursor), and is turned into the dominators in place at the
        // end: the number array costs no memory of its own.
        // The graph keeps it as a column (HeapGraph.Storage.cs).
        var idomColumn = Column<int>.Allocate(nodeCount + 1, zeroed: true);
        Span<int> idom = idomColumn.Writable;
        // The temporaries live outside the GC heap, so that each one's
        // memory goes back the moment it is freed: one of the build's two
        // peaks of memory is here, and a collection would come too late.
        // Both are mapped now, so that the other processor (idle: every step
        // here runs on one) backs the numbers and the dominators by number
        // with memory while this one searches: on a VM, fresh memory costs
        // as much as the search itself (docs/PERFORMANCE.md). Those two are
        // written whole (the second becomes the retained sizes); the order
        // is not backed ahead: only the room the search uses is ever written
        // (the reachable objects, and its stack at the far end).
        var order = NativeGrowing<int>.OfLength(nodeCount + 1);
        var byNumber = NativeGrowing<int>.OfLength(nodeCount + 1);
        try
        {
            int ordered, passes;
            Task backing = Prefault.Start(idomColumn.Range, byNumber.Range);
            try
            {
                Span<int> number = idom;
                ordered = DepthFirstPostorder(nodeCount, start, edges, roots, number, order.Span, cancel);
                searched?.Invoke();
                progress?.Report(new ProgressReport(1, 3, "computing dominators"));
                passes = Iterate(start, edges, roots, superRoot, number, order.Span[..ordered], byNumber.Span[..ordered], progress, cancel);
                // Numbers back to nodes, in place: each slot is read before it is written.
                ReadOnlySpan<int> postorder = order.Span[..ordered];
                ReadOnlySpan<int> dominatorNumber = byNumber.Span;
                for (int v = 0; v <= superRoot; v++)
                {
                    int k = idom[v] - 1;
                    idom[v] = k < 0 ? Unreachable : postorder[dominatorNumber[k]];
                }
            }
            finally
            {
                // Its memory is freed below (or on failure): not while it is being backed.
                Prefault.Wait(backing);
            }
            // The retained sizes take the dominators by number's memory, backed
            // already, as they take their place.
            NativeBlock sizes = byNumber.Detach();
            return new DominatorTree(idomColumn, order.Prefix(ordered), new Column<uint>((uint*)sizes.Pointer, nodeCount + 1, sizes), passes);
        }
        catch
        {
            order.Free();
            byNumber.Free();
            throw;
        }
    }

    /// <summary>
    /// The iteration, over postorder numbers: <paramref name="idom"/>[k] is
    /// the number of the dominator of the node numbered k. With numbers,
    /// "which of two is higher in the order" needs no lookup and a walk up
    /// the tree reads one array; each node's number (plus one, in
    /// <paramref name="number"/>) is looked up once per edge. Returns how
    /// many passes it took.
    /// </summary>
    // Once per node and edge: optimised at once, not first as tier-0 code
    // (a loop run once gets optimised code only by on-stack replacement).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int Iterate(ReadOnlySpan<int> start, ReadOnlySpan<int> edges, int[] roots, int superRoot, ReadOnlySpan<int> number,
        ReadOnlySpan<int> postorder, Span<int> idom, IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        // Turned around so that it needs no predecessor lists (which would
        // cost as much memory as the references): in reverse postorder, each
        // node, once its own dominator is known for this pass, folds itself
        // into the dominator of each successor. Approximations only ever
        // move up the tree towards the true dominators (the intersection of
        // two approximate chains is at or below the true one), so folding
        // into the previous value is sound, and a pass that changes nothing
        // means every node's dominator is the intersection over all its
        // predecessors: the fixed point of the original formulation.
        //
        // A fold can only change something if the folding node's chain of
        // dominators changed since its last fold: otherwise the successor's
        // dominator, which since then has only moved up that same chain, is
        // already on it. So after the first pass a node folds again only if
        // a node of its chain changed after its own turn (in the last pass,
        // or in this one before the node's turn): "dirty", one bit per node,
        // inherited down the chain at each node's turn (its dominator's turn
        // came first). A pass that changes no node after its turn leaves no
        // dirt: the fixed point, and no pass is made only to confirm it.
        int count = postorder.Length;
        idom.Fill(Unreachable);
        idom[count - 1] = count - 1;
        var dirty = new ulong[(count + 63) >> 6];
        var next = new ulong[dirty.Length];
        Array.Fill(dirty, ulong.MaxValue);
        int passes = 0;
        bool again = true;
        while (again)
        {
            again = false;
            passes++;
            for (int k = count - 1; k >= 0; k--)
            {
                if ((k & 0xFFFF) == 0)
                    cancel.ThrowIfCancellationRequested();
                int up = idom[k];
                if (!IsSet(dirty, k))
                {
                    if (!IsSet(dirty, up))
                        continue;
                    Set(dirty, k);
                }
                foreach (int b in Successors(postorder[k], superRoot, start, edges, roots))
                {
                    int nb = number[b] - 1;
                    int current = idom[nb];
                    int folded = current == Unreachable ? k : Intersect(k, current, idom);
                    if (folded == current)
                        continue;
                    idom[nb] = folded;
                    if (nb > k)
                    {
                        Set(next, nb);
                        again = true;
                    }
                    else
                    {
                        Set(dirty, nb);
                    }
                }
            }
            (dirty, next) = (next, dirty);
            Array.Clear(next);
            progress?.Report(new ProgressReport(2, 3, "computing dominators"));
        }
        return passes;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsSet(ulong[] bits, int k) => (bits[k >> 6] & (1UL << k)) != 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Set(ulong[] bits, int k) => bits[k >> 6] |= 1UL << k;

    /// <summary>
    /// Retained size of every node: its own size plus the retained sizes of
    /// the nodes it immediately dominates (postorder visits those first).
    /// <paramref name="size"/> holds each real node's own size, uint.MaxValue
    /// for one of 4 GiB and more, whose size <paramref name="hugeSizes"/>
    /// holds. Frees the postorder: call once.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public RetainedSizes RetainedSizes(ReadOnlySpan<uint> size, IReadOnlyDictionary<int, ulong> hugeSizes)
    {
        if (_postorder.Span.IsEmpty && Idom.Length > 0)
            throw new InvalidOperationException("the retained sizes are computed once");
        try
        {
            var sizes = new RetainedSizes(_sizes);
            int superRoot = SuperRoot;
            ReadOnlySpan<int> idom = Idom.Span;
            Span<uint> small = sizes.Small.Writable;
            // Own sizes in index order (memory order); then the sums, which
            // need the postorder.
            ReadOnlySpan<uint> own = size[..superRoot];
            for (int v = 0; v < own.Length; v++)
            {
                uint bytes = idom[v] == Unreachable ? 0 : own[v];
                small[v] = bytes;
                if (bytes == uint.MaxValue)
                    sizes.Huge[v] = hugeSizes[v];
            }
            small[superRoot] = 0;
            foreach (int v in _postorder.Span)
            {
                if (v == superRoot)
                    continue;
                int up = idom[v];
                // A sum below the mark has neither part kept aside.
                ulong sum = (ulong)small[v] + small[up];
                if (sum < uint.MaxValue)
                    small[up] = (uint)sum;
                else
                    sizes.Add(up, sizes[v]);
            }
            return sizes;
        }
        finally
        {
            _postorder.Free();
        }
    }

    // Over postorder numbers: a dominator's number is above its nodes'.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Intersect(int a, int b, ReadOnlySpan<int> idom)
    {
        while (a != b)
        {
            while (a < b)
                a = idom[a];
            while (b < a)
                b = idom[b];
        }
        return a;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ReadOnlySpan<int> Successors(int v, int superRoot, ReadOnlySpan<int> start, ReadOnlySpan<int> edges, int[] roots) =>
        v == superRoot ? roots : edges.Slice(start[v], start[v + 1] - start[v]);

    /// <summary>Numbers the reachable nodes in postorder into
    /// <paramref name="number"/> (zeroed: each node's number plus one) and
    /// lists them in <paramref name="order"/>; returns how many there are.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
        number[superRoot] = -1;
        int visited = 0;
        while (top < order.Length)
        {
            int v = order[top];
            int cursor = -1 - number[v];
            ReadOnlySpan<int> next = Successors(v, superRoot, start, edges, roots);
            while (cursor < next.Length && number[next[cursor]] != 0)
                cursor++;
            if (cursor < next.Length)
            {
                int w = next[cursor];
                number[v] = -1 - (cursor + 1);
                number[w] = -1;
                order[--top] = w;
                if ((++visited & 0xFFFF) == 0)
                    cancel.ThrowIfCancellationRequested();
            }
            else
            {
                top++;
                number[v] = ordered + 1;
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
    /// <summary>The graph keeps it as a column.</summary>
    internal Column<uint> Small { get; }

    internal Dictionary<int, ulong> Huge { get; } = [];

    // Not cleared: DominatorTree.RetainedSizes writes every slot first.
    internal RetainedSizes(Column<uint> small) => Small = small;

    public ulong this[int v] => Small[v] == uint.MaxValue ? Huge[v] : Small[v];

    internal void Add(int v, ulong bytes)
    {
        ulong sum = this[v] + bytes;
        if (sum < uint.MaxValue)
        {
            Small.Writable[v] = (uint)sum;
        }
        else
        {
            Small.Writable[v] = uint.MaxValue;
            Huge[v] = sum;
        }
    }
}
