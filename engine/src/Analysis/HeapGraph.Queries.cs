using System.Collections.Immutable;

namespace DumpScope.Engine.Analysis;

// Questions answered from the built graph. Each validates its parameters
// (EngineException InvalidParams) and pages its answer.
public sealed partial class HeapGraph
{
    private const int MaxRootsPerItem = 8;

    // Children of each node in the dominator tree, as compressed rows; made
    // on the first question that needs them (saved in the index too).
    private (Column<int> Start, Column<int> Children)? _dominated;
    private TypeRetained[]? _typeRetained;
    private ILookup<int, int>? _rootsByObject;

    // Where the rows are made when set (RowsIn): a scratch file there, or
    // room made ready for them.
    private string? _rowsFolder;
    private Column<int>? _rowsRoom;

    private (Column<int> Start, Column<int> Children) Dominated => _dominated ??= MakeDominated();

    /// <summary>Makes the dominator tree's rows, when first needed, in a
    /// scratch file in <paramref name="folder"/> (the index's): 8 bytes per
    /// object whose pages are file-backed, not anonymous, while the built
    /// graph answers before its index is saved.</summary>
    internal void RowsIn(string folder) => _rowsFolder = folder;

    /// <summary>Makes the rows, when first needed, in <paramref name="room"/>
    /// (RowsLength ints for this graph; a shorter room is not used).</summary>
    internal void RowsIn(Column<int> room) => _rowsRoom = room;

    /// <summary>Ints the rows of a graph of this many objects take: a start
    /// per node (the super-root's and one past it included) and a child per node.</summary>
    internal static int RowsLength(int objects) => 2 * (objects + 3);

    private (Column<int> Start, Column<int> Children) MakeDominated()
    {
        if (_rowsRoom is { } room && room.Length >= RowsLength(ObjectCount))
        {
            int used = 0;
            return DominatedRows(length =>
            {
                Column<int> part = room.Part(used, length);
                used += length;
                return part;
            });
        }
        if (_rowsFolder is { } folder)
        {
            try
            {
                // The columns hold the scratch file: it is unmapped when
                // the graph they belong to is collected.
                Directory.CreateDirectory(folder);
                var scratch = new ScratchFile(folder, (long)RowsLength(ObjectCount) * sizeof(int));
                return DominatedRows(scratch.Ints);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"engine: no scratch file in {folder} ({e.Message}); the dominator rows take anonymous memory");
            }
        }
        return DominatedRows(length => Column<int>.Allocate(length, zeroed: false));
    }

    /// <summary>The dominator tree's rows, in columns that <paramref name="allocate"/> gives.</summary>
    private (Column<int> Start, Column<int> Children) DominatedRows(Func<int, Column<int>> allocate)
    {
        int n = _idom.Length;
        // Counted two places on, summed, then filled in place: each
        // node's slot ends at the next node's start (no second array).
        Column<int> startColumn = allocate(n + 2);
        Span<int> start = startColumn.Writable;
        start.Clear();
        ReadOnlySpan<int> idom = _idom.Span;
        for (int v = 0; v < n - 1; v++)
        {
            if (idom[v] >= 0)
                start[idom[v] + 2]++;
        }
        for (int i = 0; i < n + 1; i++)
            start[i + 1] += start[i];
        Column<int> childrenColumn = allocate(start[n + 1]);
        Span<int> children = childrenColumn.Writable;
        for (int v = 0; v < n - 1; v++)
        {
            if (idom[v] >= 0)
                children[start[idom[v] + 1]++] = v;
        }
        return (startColumn.Part(0, n + 1), childrenColumn);
    }

    private ILookup<int, int> RootsByObject => _rootsByObject ??= Enumerable.Range(0, _roots.Length).ToLookup(r => _roots[r].Object);

    internal ulong MethodTableOf(int index) => _types[_type[index]].MethodTable;

    private bool IsReachable(int v) => _idom[v] != DominatorTree.Unreachable;

    public ulong ReachableBytes => RetainedSize(SuperRoot);

    private RootRef RootOf(int r)
    {
        GraphRoot root = _roots[r];
        return new RootRef(KindName(root.Kind), root.Name >= 0 ? _rootNames[root.Name] : null, root.Address,
            root.Kind == RootKind.Stack ? root.ThreadOsId : null);
    }

    // Named roots (static fields) first: they say most about why.
    private ImmutableArray<RootRef> RootsOf(int v) =>
        [.. RootsByObject[v].OrderBy(r => _roots[r].Kind == RootKind.StaticField ? 0 : 1).ThenBy(r => _roots[r].Kind)
            .Take(MaxRootsPerItem).Select(RootOf)];

    private int Resolve(ulong address)
    {
        int v = IndexOf(address);
        if (v < 0)
            throw new EngineException(ErrorCodes.NotFound, $"0x{address:x} is not the address of a managed object in this dump.");
        return v;
    }

    private static void CheckPage(int offset, int limit, int maxPage)
    {
        if (offset < 0 || limit < 0 || limit > maxPage)
            throw new EngineException(ErrorCodes.InvalidParams, $"offset must be >= 0 and limit between 0 and {maxPage}.");
    }

    public GraphSummary Summary(bool fromIndex)
    {
        long reachable = 0;
        ulong unreachableBytes = 0;
        for (int v = 0; v < ObjectCount; v++)
        {
            if (IsReachable(v))
                reachable++;
            else
                unreachableBytes += SizeOf(v);
        }
        // By the kind's name: two kinds share one (a named static field and
        // the runtime's slot array of statics are both "static").
        var byKind = _roots.GroupBy(r => KindName(r.Kind)).OrderBy(g => g.Min(r => r.Kind))
            .Select(g => new RootKindCount(g.Key, g.Count())).ToImmutableArray();
        return new GraphSummary(ObjectCount, reachable, ReachableBytes, ObjectCount - reachable, unreachableBytes,
            _edges.Length, _roots.Length, byKind, DominatorPasses, BuildSeconds, fromIndex,
            [.. _damage.Ranges], _damage.RangeCount, _damage.UnwalkedBytes, _damage.DanglingReferences);
    }

    private DominatorItem Item(int v, int dominated)
    {
        GraphType type = _types[_type[v]];
        return new DominatorItem(AddressOf(v), type.MethodTable, type.Name, SizeOf(v), RetainedSize(v), dominated,
            _idom[v] == SuperRoot ? RootsOf(v) : []);
    }

    /// <summary>
    /// The objects a node immediately dominates, largest retained size first
    /// (then address). parent null: the top of the tree, the objects no other
    /// object dominates. typeFilter keeps the types whose name contains it.
    /// Only the page is sorted (Largest), never a wide node's whole row.
    /// </summary>
    public DominatorPage Children(ulong? parent, int offset, int limit, string? typeFilter, int maxPage)
    {
        CheckPage(offset, limit, maxPage);
        int p = parent is { } a ? Resolve(a) : SuperRoot;
        bool[]? kept = string.IsNullOrEmpty(typeFilter)
            ? null
            : Array.ConvertAll(_types, t => t.Name.Contains(typeFilter, StringComparison.OrdinalIgnoreCase));
        var (start, children) = Dominated;
        var candidates = new List<int>();
        foreach (int v in children.Slice(start[p], start[p + 1] - start[p]))
        {
            if (kept is null || kept[_type[v]])
                candidates.Add(v);
        }
        int[] page = Largest(candidates, (long)offset + limit).Skip(offset).ToArray();
        int[] dominated = Array.ConvertAll(page, v => start[v + 1] - start[v]);
        var items = page.Select((v, i) => Item(v, dominated[i])).ToImmutableArray();
        return new DominatorPage(parent, RetainedSize(p), ReachableBytes, candidates.Count, offset, items);
    }

    /// <summary>The first <paramref name="count"/> nodes by retained size,
    /// largest first, then by address (index order is address order): a
    /// bounded heap keeps them, so a wide node is never sorted whole.</summary>
    private int[] Largest(List<int> nodes, long count)
    {
        int k = (int)Math.Min(count, nodes.Count);
        // The queue's first is the worst node kept: the smallest retained, then the highest address.
        var kept = new PriorityQueue<int, (ulong Retained, int Node)>(k + 1, Comparer<(ulong Retained, int Node)>.Create(
            (x, y) => x.Retained != y.Retained ? x.Retained.CompareTo(y.Retained) : y.Node.CompareTo(x.Node)));
        if (k > 0)
        {
            foreach (int v in nodes)
            {
                var key = (RetainedSize(v), v);
                if (kept.Count < k)
                    kept.Enqueue(v, key);
                else
                    kept.EnqueueDequeue(v, key);
            }
        }
        var top = new int[kept.Count];
        for (int i = top.Length - 1; i >= 0; i--)
            top[i] = kept.Dequeue();
        return top;
    }

    /// <summary>
    /// Per type: instances, their shallow size, the reachable ones, and the
    /// retained size of all its instances together (what would be freed if
    /// every instance went: an instance dominated by another instance of
    /// the same type is counted once, inside that one).
    /// </summary>
    public TypeRetainedPage RetainedByType(int offset, int limit, int maxPage, CancellationToken cancel)
    {
        CheckPage(offset, limit, maxPage);
        TypeRetained[] all = _typeRetained ??= ComputeTypeRetained(cancel);
        return new TypeRetainedPage(ReachableBytes, all.Length, offset, [.. all.Skip(offset).Take(limit)]);
    }

    /// <summary>Per type index: instances, shallow bytes, reachable instances, retained bytes.</summary>
    private readonly record struct TypeTotals(long[] Count, ulong[] Shallow, long[] Reachable, ulong[] Retained);

    private TypeRetained[] ComputeTypeRetained(CancellationToken cancel) => Sorted(Totals(cancel));

    private TypeTotals Totals(CancellationToken cancel)
    {
        int typeCount = _types.Length;
        var count = new long[typeCount];
        var shallow = new ulong[typeCount];
        var reachable = new long[typeCount];
        var retained = new ulong[typeCount];
        // The counts need no rows: made on the pool while the rows (when
        // not made yet) and the walk down the tree are made here.
        Task counting = Task.Run(() => CountByType(count, shallow, reachable));
        var dominated = Dominated;

        // Down the dominator tree, counting for each type how many of its
        // instances are above the current node: a node adds its retained
        // size to its type only when none is. A leaf (most objects) is
        // never entered, as nothing below it could be counted: one step
        // per object, one stack entry per inner node on the path.
        ReadOnlySpan<int> start = dominated.Start.Span;
        ReadOnlySpan<int> children = dominated.Children.Span;
        ReadOnlySpan<uint> retainedColumn = _retained.Span;
        var above = new int[typeCount];
        var path = new int[64];
        var next = new int[64];
        int depth = 0;
        path[0] = SuperRoot;
        next[0] = start[SuperRoot];
        long steps = 0;
        while (depth >= 0)
        {
            int v = path[depth];
            int c = next[depth], end = start[v + 1];
            int inner = -1;
            while (c < end)
            {
                int w = children[c++];
                int t = _type[w];
                if (above[t] == 0)
                    retained[t] += retainedColumn[w] == uint.MaxValue ? _hugeRetained[w] : retainedColumn[w];
                if ((++steps & 0xFFFF) == 0)
                    cancel.ThrowIfCancellationRequested();
                if (start[w] != start[w + 1])
                {
                    inner = w;
                    break;
                }
            }
            next[depth] = c;
            if (inner < 0)
            {
                if (v != SuperRoot)
                    above[_type[v]]--;
                depth--;
                continue;
            }
            above[_type[inner]]++;
            if (++depth == path.Length)
            {
                Array.Resize(ref path, 2 * path.Length);
                Array.Resize(ref next, 2 * next.Length);
            }
            path[depth] = inner;
            next[depth] = start[inner];
        }
        counting.GetAwaiter().GetResult();
        return new TypeTotals(count, shallow, reachable, retained);
    }

    /// <summary>Per type: instances, their shallow bytes and the reachable
    /// ones, in one pass over the columns (spans: no per-object lookup).</summary>
    private unsafe void CountByType(long[] count, ulong[] shallow, long[] reachable)
    {
        int n = ObjectCount;
        ReadOnlySpan<int> idom = _idom.Span;
        ReadOnlySpan<uint> size = _size.Span;
        bool narrow = _type.Bytes == (long)n * sizeof(ushort);
        var narrowTypes = new ReadOnlySpan<ushort>(narrow ? _type.Pointer : null, narrow ? n : 0);
        var wideTypes = new ReadOnlySpan<int>(narrow ? null : _type.Pointer, narrow ? 0 : n);
        for (int v = 0; v < n; v++)
        {
            int t = narrow ? narrowTypes[v] : wideTypes[v];
            uint bytes = size[v];
            count[t]++;
            shallow[t] += bytes == uint.MaxValue ? SizeOf(v) : bytes;
            if (idom[v] != DominatorTree.Unreachable)
                reachable[t]++;
        }
    }

    private TypeRetained[] Sorted(TypeTotals totals) =>
        Enumerable.Range(0, _types.Length)
            .Select(t => new TypeRetained(_types[t].MethodTable, _types[t].Name, totals.Count[t], totals.Shallow[t],
                totals.Reachable[t], totals.Retained[t]))
            .OrderByDescending(t => t.Retained).ThenByDescending(t => t.Size).ThenBy(t => t.Name, StringComparer.Ordinal)
            .ToArray();

    /// <summary>
    /// Why an object is alive: for each kind of root that reaches it, the
    /// shortest chain from such a root (breadth-first, so the fewest links),
    /// plus its dominator chain: the objects that must all go for it to go.
    /// </summary>
    public RetentionPaths WhyAlive(ulong address, int maxPathLength, CancellationToken cancel)
    {
        int target = Resolve(address);
        if (!IsReachable(target))
            return new RetentionPaths(address, false, [], []);
        var parent = new int[ObjectCount];
        var paths = ImmutableArray.CreateBuilder<RetentionPath>();
        var queue = new int[ObjectCount];
        foreach (var kind in _roots.Select(r => r.Kind).Distinct().Order())
        {
            Array.Fill(parent, -1);
            int head = 0, tail = 0;
            // Roots of the kind seed the search; their parent is -2 - root.
            for (int r = 0; r < _roots.Length; r++)
            {
                if (_roots[r].Kind != kind || parent[_roots[r].Object] != -1)
                    continue;
                parent[_roots[r].Object] = -2 - r;
                queue[tail++] = _roots[r].Object;
            }
            while (head < tail && parent[target] == -1)
            {
                int v = queue[head++];
                for (int e = _edgeStart[v]; e < _edgeStart[v + 1]; e++)
                {
                    int w = _edges[e];
                    if (parent[w] != -1)
                        continue;
                    parent[w] = v;
                    queue[tail++] = w;
                }
                if ((head & 0xFFFF) == 0)
                    cancel.ThrowIfCancellationRequested();
            }
            if (parent[target] == -1)
                continue;
            var chain = new List<int>();
            int at = target;
            while (parent[at] >= 0)
            {
                chain.Add(at);
                at = parent[at];
            }
            chain.Add(at);
            chain.Reverse();
            paths.Add(new RetentionPath(RootOf(-2 - parent[at]), Links(chain, maxPathLength)));
        }
        var dominators = new List<int>();
        for (int v = target; v != SuperRoot; v = _idom[v])
            dominators.Add(v);
        dominators.Reverse();
        return new RetentionPaths(address, true,
            [.. paths.OrderBy(p => p.Chain.Sum(l => l.Repeat))], Links(dominators, maxPathLength));
    }

    // Consecutive objects of one type become one link with a repeat count,
    // so a chain through a linked list stays short; at most maxLinks links.
    private ImmutableArray<ChainLink> Links(IReadOnlyList<int> chain, int maxLinks)
    {
        var links = ImmutableArray.CreateBuilder<ChainLink>();
        for (int i = 0; i < chain.Count && links.Count < maxLinks;)
        {
            int t = _type[chain[i]];
            int j = i + 1;
            while (j < chain.Count && _type[chain[j]] == t)
                j++;
            links.Add(new ChainLink(AddressOf(chain[i]), _types[t].Name, j - i));
            i = j;
        }
        return links.ToImmutable();
    }

    /// <summary>
    /// The instances of one type grouped by what holds them: the nearest
    /// object above each instance in the dominator tree that dominates two
    /// or more instances (its accumulation point), moved to the start of a
    /// run of its own type (the head of a linked list). Instances no such
    /// object holds are grouped by the kind of root above them. Groups come
    /// largest first, each with the dominator chain from its root down to it.
    /// </summary>
    public InstanceHolders HoldersOf(ulong methodTable, int limit, int maxPathLength, int maxPage, CancellationToken cancel)
    {
        CheckPage(0, limit, maxPage);
        int t = Array.FindIndex(_types, x => x.MethodTable == methodTable);
        if (t < 0)
            throw new EngineException(ErrorCodes.NotFound, $"No object of method table 0x{methodTable:x} is on the heap.");

        // How many reachable instances each node's dominator subtree holds.
        var inside = new int[_idom.Length];
        long count = 0, reachableCount = 0;
        ulong size = 0;
        for (int v = 0; v < ObjectCount; v++)
        {
            if (_type[v] != t)
                continue;
            count++;
            size += SizeOf(v);
            if (IsReachable(v))
            {
                reachableCount++;
                inside[v] = 1;
            }
        }
        foreach (int v in ChildrenFirst(cancel))
        {
            if (v != SuperRoot)
                inside[_idom[v]] += inside[v];
        }

        var holderOf = new Dictionary<int, int>();
        var groups = new Dictionary<(int Holder, int TopRootKind), (long Count, ulong Size, ulong Retained, int Top)>();
        for (int v = 0; v < ObjectCount; v++)
        {
            if (_type[v] != t || !IsReachable(v))
                continue;
            int a = _idom[v];
            while (a != SuperRoot && inside[a] < 2)
                a = _idom[a];
            int holder = a;
            if (a != SuperRoot)
            {
                if (!holderOf.TryGetValue(a, out holder))
                {
                    holder = a;
                    while (_idom[holder] != SuperRoot && _type[_idom[holder]] == _type[holder])
                        holder = _idom[holder];
                    holderOf[a] = holder;
                }
            }
            // Without a holder, the instance's top-level dominator (itself
            // or an object above it) says which root kind keeps it.
            int top = v;
            if (holder == SuperRoot)
            {
                while (_idom[top] != SuperRoot)
                    top = _idom[top];
            }
            int kind = holder == SuperRoot ? (int)(RootsByObject[top].Select(r => _roots[r].Kind).DefaultIfEmpty(RootKind.Other).Min()) : -1;
            var key = (holder, kind);
            groups.TryGetValue(key, out var g);
            // No instance lies between an instance and its holder (it would
            // have been the holder), so their retained sizes add up exactly.
            groups[key] = (g.Count + 1, g.Size + SizeOf(v), g.Retained + RetainedSize(v), g.Count == 0 ? top : g.Top);
        }

        var ordered = groups.OrderByDescending(kv => kv.Value.Count).ThenBy(kv => kv.Key.Holder).ToList();
        var result = ImmutableArray.CreateBuilder<HolderGroup>();
        foreach (var ((holder, kind), g) in ordered.Take(limit))
        {
            if (holder == SuperRoot)
            {
                var roots = RootsByObject[g.Top].Where(r => (int)_roots[r].Kind == kind).Take(1).Select(RootOf).ToImmutableArray();
                if (roots.IsEmpty)
                    roots = [new RootRef(KindName((RootKind)kind), null, 0, null)];
                result.Add(new HolderGroup(null, null, 0, g.Count, g.Size, g.Retained, roots, []));
                continue;
            }
            var chain = new List<int>();
            for (int v = holder; v != SuperRoot; v = _idom[v])
                chain.Add(v);
            chain.Reverse();
            // A holder of the type itself (the head of a list of them)
            // retains the instances inside its own retained size.
            ulong groupRetained = _type[holder] == t ? RetainedSize(holder) : g.Retained;
            result.Add(new HolderGroup(AddressOf(holder), _types[_type[holder]].Name, RetainedSize(holder), g.Count, g.Size, groupRetained,
                RootsOf(chain[0]), Links(chain, maxPathLength)));
        }
        return new InstanceHolders(methodTable, _types[t].Name, count, reachableCount, size, ReachableBytes, ordered.Count, result.ToImmutable());
    }

    // Reachable nodes, each after every node it dominates: the reverse of a
    // depth-first preorder of the dominator tree.
    private int[] ChildrenFirst(CancellationToken cancel)
    {
        var (start, children) = Dominated;
        var order = new int[children.Length + 1];
        int filled = 0;
        var stack = new Stack<int>();
        stack.Push(SuperRoot);
        while (stack.Count > 0)
        {
            int v = stack.Pop();
            order[filled++] = v;
            for (int e = start[v]; e < start[v + 1]; e++)
                stack.Push(children[e]);
            if ((filled & 0xFFFF) == 0)
                cancel.ThrowIfCancellationRequested();
        }
        Array.Reverse(order, 0, filled);
        return order;
    }
}
