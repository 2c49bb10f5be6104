using DumpScope.Engine.Analysis;
using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Tests;

public class DominatorTreeTests
{
    private static (int[] Start, int[] Edges) Rows(int n, List<(int, int)> edges)
    {
        var start = new int[n + 1];
        foreach (var (from, _) in edges)
            start[from + 1]++;
        for (int i = 0; i < n; i++)
            start[i + 1] += start[i];
        var fill = (int[])start.Clone();
        var flat = new int[edges.Count];
        foreach (var (from, to) in edges)
            flat[fill[from]++] = to;
        return (start, flat);
    }

    private static readonly Dictionary<int, ulong> NoHugeSizes = [];

    private static uint[] Sizes(int n, Func<int, uint> size) => Enumerable.Range(0, n).Select(size).ToArray();

    // What the tree claims, checked the plain way: remove x, recount what the
    // roots still reach; exactly x's dominated subtree must have gone.
    private static HashSet<int> ReachableWithout(int n, int[] start, int[] edges, int[] roots, int removed)
    {
        var seen = new HashSet<int>();
        var todo = new Stack<int>(roots.Where(r => r != removed));
        foreach (int r in todo)
            seen.Add(r);
        while (todo.Count > 0)
        {
            int v = todo.Pop();
            for (int e = start[v]; e < start[v + 1]; e++)
            {
                int w = edges[e];
                if (w != removed && seen.Add(w))
                    todo.Push(w);
            }
        }
        return seen;
    }

    internal static void AssertRemovalRecount(int n, Func<int, IEnumerable<int>> successors, int[] roots, Func<int, int> idom,
        Func<int, ulong> size, Func<int, ulong> retained, IEnumerable<int> sample)
    {
        var start = new int[n + 1];
        var list = new List<int>();
        for (int v = 0; v < n; v++)
        {
            list.AddRange(successors(v));
            start[v + 1] = list.Count;
        }
        int[] edges = [.. list];
        var all = ReachableWithout(n, start, edges, roots, -1);
        foreach (int x in sample)
        {
            if (!all.Contains(x))
            {
                Assert.Equal(DominatorTree.Unreachable, idom(x));
                continue;
            }
            var gone = all.Except(ReachableWithout(n, start, edges, roots, x)).ToHashSet();
            var dominated = all.Where(v => Dominates(x, v, idom, n)).ToHashSet();
            Assert.Equal(dominated.Order(), gone.Order());
            Assert.Equal(gone.Aggregate(0UL, (a, v) => a + size(v)), retained(x));
        }
    }

    private static bool Dominates(int x, int v, Func<int, int> idom, int superRoot)
    {
        for (int a = v; a != superRoot && a != DominatorTree.Unreachable; a = idom(a))
        {
            if (a == x)
                return true;
        }
        return false;
    }

    [Fact]
    public void A_diamond_is_dominated_by_its_top_and_a_shared_object_by_the_super_root()
    {
        // 0 -> 1, 0 -> 2, 1 -> 3, 2 -> 3, 3 -> 4; roots 0 and 5; 5 -> 4; 6 unreachable.
        var (start, edges) = Rows(7, [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4), (5, 4)]);
        var tree = DominatorTree.Compute(7, start, edges, [0, 5], null, CancellationToken.None);
        Assert.Equal([7, 0, 0, 0, 7, 7, DominatorTree.Unreachable, 7], tree.Idom.Span.ToArray());
        // No edge goes back up the order: one pass, none to confirm it.
        Assert.Equal(1, tree.Passes);
        var retained = tree.RetainedSizes(Sizes(7, _ => 10), NoHugeSizes);
        Assert.Equal(40UL, retained[0]);
        Assert.Equal(10UL, retained[4]);
        Assert.Equal(60UL, retained[7]);
        Assert.Equal(0UL, retained[6]);
    }

    [Fact]
    public void A_dominator_moved_up_after_its_turn_takes_a_second_pass()
    {
        // 0 -> 1 -> 2 <-> 3 <- 0, and 1 -> 4 <- 2: the search meets 2
        // through 1 first, so 2 hands 1 on to 4 before 3's edge back up
        // shows that 2 is reached without 1 (a loop with two entries); only
        // a second pass then finds 4 reached without 1 too.
        var (start, edges) = Rows(5, [(0, 1), (0, 3), (1, 2), (1, 4), (2, 3), (2, 4), (3, 2)]);
        var tree = DominatorTree.Compute(5, start, edges, [0], null, CancellationToken.None);
        Assert.Equal([5, 0, 0, 0, 0, 5], tree.Idom.Span.ToArray());
        Assert.Equal(2, tree.Passes);
    }

    [Fact]
    public void Random_graphs_agree_with_a_reachability_recount()
    {
        var random = new Random(1234);
        for (int round = 0; round < 300; round++)
        {
            int n = random.Next(5, 80);
            var pairs = new List<(int, int)>();
            // From nearly trees to dense tangles: loops with several
            // entries are where the passes' stopping rule could go wrong.
            int per = random.Next(1, 4);
            for (int e = 0; e < n * per; e++)
                pairs.Add((random.Next(n), random.Next(n)));
            int[] roots = Enumerable.Range(0, random.Next(1, 4)).Select(_ => random.Next(n)).Distinct().ToArray();
            var (start, edges) = Rows(n, pairs);
            var tree = DominatorTree.Compute(n, start, edges, roots, null, CancellationToken.None);
            var retained = tree.RetainedSizes(Sizes(n, v => (uint)(v + 1)), NoHugeSizes);
            AssertRemovalRecount(n, v => edges[start[v]..start[v + 1]], roots, v => tree.Idom[v], v => (ulong)(v + 1), v => retained[v],
                Enumerable.Range(0, n));
        }
    }

    [Fact]
    public void Tangled_graphs_that_take_three_passes_or_more_agree_with_a_reachability_recount()
    {
        // After the first pass only nodes whose dominator chain changed fold
        // again: loops entered from several places, nested, through the
        // roots, with self loops and unreachable parts, are where a skipped
        // node could keep a dominator that is too low.
        var random = new Random(99);
        int longest = 0;
        for (int round = 0; round < 400; round++)
        {
            int n = random.Next(20, 200);
            var pairs = new List<(int, int)>();
            // A chain with edges back up it (nested loops), then edges in
            // both directions across it and a few self loops.
            for (int v = 0; v + 1 < n; v++)
                pairs.Add((v, v + 1));
            for (int e = 0; e < n / 2; e++)
            {
                int a = random.Next(n), b = random.Next(n);
                pairs.Add((Math.Max(a, b), Math.Min(a, b)));
                pairs.Add((random.Next(n), random.Next(n)));
            }
            for (int e = 0; e < 3; e++)
            {
                int v = random.Next(n);
                pairs.Add((v, v));
            }
            // The search meets the successors in list order: shuffled, it
            // enters the loops from different sides.
            pairs = [.. pairs.OrderBy(_ => random.Next())];
            // Node n - 1's edges dropped in some rounds: it and what only it
            // reaches may be unreachable.
            if (round % 3 == 0)
                pairs.RemoveAll(p => p.Item1 == n - 1 || p.Item2 == n - 1);
            int[] roots = Enumerable.Range(0, random.Next(1, 4)).Select(_ => random.Next(n - 1)).Distinct().ToArray();
            var (start, edges) = Rows(n, pairs);
            var tree = DominatorTree.Compute(n, start, edges, roots, null, CancellationToken.None);
            longest = Math.Max(longest, tree.Passes);
            var retained = tree.RetainedSizes(Sizes(n, v => (uint)(v + 1)), NoHugeSizes);
            AssertRemovalRecount(n, v => edges[start[v]..start[v + 1]], roots, v => tree.Idom[v], v => (ulong)(v + 1), v => retained[v],
                Enumerable.Range(0, n));
        }
        // Passes after the second ran: the rule for skipping was exercised.
        Assert.True(longest >= 3, $"at most {longest} passes");
    }

    [Fact]
    public void Retained_sizes_of_4_GiB_and_more_are_kept_whole()
    {
        // 0 -> 1 -> 2 -> 3: 3 GiB, 3 GiB, an array of 5 GiB (its size kept
        // aside too) and 1 GiB: 12, 9, 6 and 1 GiB retained.
        var (start, edges) = Rows(4, [(0, 1), (1, 2), (2, 3)]);
        var tree = DominatorTree.Compute(4, start, edges, [0], null, CancellationToken.None);
        var retained = tree.RetainedSizes([3u << 30, 3u << 30, uint.MaxValue, 1u << 30], new Dictionary<int, ulong> { [2] = 5UL << 30 });
        Assert.Equal([12UL << 30, 9UL << 30, 6UL << 30, 1UL << 30, 12UL << 30], Enumerable.Range(0, 5).Select(v => retained[v]));
    }

    [Theory]
    [InlineData(65_536, 2)]
    [InlineData(65_537, 4)]
    public void Types_take_two_bytes_each_up_to_65536_of_them(int types, int bytes)
    {
        var column = TypeColumn.Allocate(3, types);
        column.Write(0, [0, types - 1, 7]);
        Assert.Equal(3L * bytes, column.Bytes);
        Assert.Equal([0, types - 1, 7], Enumerable.Range(0, 3).Select(i => column[i]));
    }

    [Fact]
    public void A_linked_list_of_two_million_needs_no_deep_stack()
    {
        const int n = 2_000_000;
        var start = new int[n + 1];
        var edges = new int[n - 1];
        for (int v = 0; v < n; v++)
            start[v + 1] = Math.Min(v + 1, n - 1);
        for (int v = 0; v < n - 1; v++)
            edges[v] = v + 1;
        var tree = DominatorTree.Compute(n, start, edges, [0], null, CancellationToken.None);
        Assert.Equal(n - 2, tree.Idom[n - 1]);
        Assert.Equal((ulong)n * 8, tree.RetainedSizes(Sizes(n, _ => 8), NoHugeSizes)[0]);
    }
}

public class HeapGraphTests
{
    private static readonly Dictionary<(string, string), HeapGraph> Built = new();

    internal static HeapGraph Graph(string scenario, string runtime = "net10")
    {
        lock (Built)
        {
            if (Built.TryGetValue((scenario, runtime), out var graph))
                return graph;
            return Built[(scenario, runtime)] = Fresh(scenario, runtime);
        }
    }

    /// <summary>A graph no question has been asked of yet (nothing made on demand).</summary>
    internal static HeapGraph Fresh(string scenario, string runtime = "net10")
    {
        using var opened = OpenedDump.Of(scenario, runtime);
        var (target, clr) = (opened.Target, opened.Runtime);
        return HeapGraph.Build(clr, new HeapWalker(clr, target.DataReader), target.DataReader, null, CancellationToken.None);
    }

    [Theory]
    [InlineData("event-leak", "net10")]
    [InlineData("retention", "net10")]
    public void Dominators_of_a_real_dump_agree_with_a_reachability_recount(string scenario, string runtime)
    {
        HeapGraph graph = Graph(scenario, runtime);
        int n = graph.ObjectCount;
        // The biggest retainers and an even spread of other objects.
        var top = graph.Children(null, 0, 15, null, 100).Items.Select(i => graph.IndexOf(i.Address));
        var spread = Enumerable.Range(0, 40).Select(k => (int)((long)k * n / 40));
        DominatorTreeTests.AssertRemovalRecount(n, v => graph.ReferencesOf(v).ToArray(), graph.RootObjects.ToArray(),
            graph.ImmediateDominator, graph.SizeOf, graph.RetainedSize, top.Concat(spread).Distinct());
    }

    // One reference field of an object early in the heap overwritten with
    // an address inside the object it named (kept in 32 bits by the walk),
    // off the pointer alignment or outside the heap (both kept whole beside
    // the 32-bit codes): the reference names no object now. Its row leaves
    // it out and the rows of every later object, in every later run of the
    // build, keep exactly their references; so without 32-bit codes.
    [Theory]
    [InlineData("inside", true)]
    [InlineData("misaligned", true)]
    [InlineData("outside", true)]
    [InlineData("inside", false)]
    [InlineData("outside", false)]
    public void A_reference_that_names_no_object_is_left_out_of_its_row_and_counted(string value, bool compressReferences)
    {
        HeapGraph whole = Graph("deadlock");
        using var opened = OpenedDump.Of("deadlock", "net10");
        var (target, clr) = (opened.Target, opened.Runtime);
        (int holder, ulong slot, ulong named) = (-1, 0, 0);
        for (int i = whole.ObjectCount / 8; holder < 0 && i < whole.ObjectCount; i++)
        {
            if (whole.ReferencesOf(i).IsEmpty || whole.SizeOf(i) > 4096)
                continue;
            ulong address = whole.AddressOf(i), first = whole.AddressOf(whole.ReferencesOf(i)[0]);
            var bytes = new byte[whole.SizeOf(i)];
            target.DataReader.Read(address, bytes);
            for (int at = 8; at + 8 <= bytes.Length; at += 8)
            {
                if (BitConverter.ToUInt64(bytes, at) == first)
                {
                    (holder, slot, named) = (i, address + (ulong)at, first);
                    break;
                }
            }
        }
        Assert.True(holder >= 0);
        ulong written = value switch
        {
            "inside" => named + 8,
            "misaligned" => named + 4,
            _ => 0x18,
        };
        var memory = new DamagedMemory(target.DataReader, slot, BitConverter.GetBytes(written), 8);
        HeapGraph damaged = HeapGraph.Build(clr, new HeapWalker(clr, memory), memory, null, CancellationToken.None,
            compressReferences: compressReferences);

        Assert.Equal(1, damaged.Summary(false).DanglingReferences);
        Assert.Equal(whole.ObjectCount, damaged.ObjectCount);
        Assert.Equal(whole.EdgeCount - 1, damaged.EdgeCount);
        for (int i = 0; i < whole.ObjectCount; i++)
        {
            int[] expected = whole.ReferencesOf(i).ToArray();
            if (i == holder)
                expected = expected[1..];
            Assert.Equal(expected, damaged.ReferencesOf(i).ToArray());
        }
    }

    // The walk keeps reference values as 32-bit codes when the heap's
    // segments allow (every scenario dump here: the frozen segment lies
    // ~50 GiB above the regions), else in 64 bits: the same graph either way.
    [Fact]
    public void References_kept_in_32_or_64_bits_give_the_same_graph()
    {
        HeapGraph coded = Graph("event-leak");
        using var opened = OpenedDump.Of("event-leak", "net10");
        var (target, clr) = (opened.Target, opened.Runtime);
        var segments = clr.Heap.Segments.Where(s => s.ObjectRange.Length > 0).OrderBy(s => s.ObjectRange.Start)
            .Select(s => (s.ObjectRange.Start, s.ObjectRange.End)).ToArray();
        Assert.NotNull(ReferenceCodec.For(segments, 8));
        HeapGraph wide = HeapGraph.Build(clr, new HeapWalker(clr, target.DataReader), target.DataReader, null, CancellationToken.None,
            compressReferences: false);

        Assert.Equal(coded.ObjectCount, wide.ObjectCount);
        Assert.Equal(coded.EdgeCount, wide.EdgeCount);
        GraphSummary a = coded.Summary(false), b = wide.Summary(false);
        Assert.Equal(a.RootsByKind.ToArray(), b.RootsByKind.ToArray());
        Assert.Equal(a.CorruptRanges.ToArray(), b.CorruptRanges.ToArray());
        Assert.Equal(a with { ElapsedSeconds = 0, RootsByKind = [], CorruptRanges = [] },
            b with { ElapsedSeconds = 0, RootsByKind = [], CorruptRanges = [] });
        Assert.Equal(coded.RootObjects.ToArray(), wide.RootObjects.ToArray());
        for (int i = 0; i < coded.ObjectCount; i++)
        {
            Assert.Equal(coded.ReferencesOf(i).ToArray(), wide.ReferencesOf(i).ToArray());
            Assert.Equal(coded.ImmediateDominator(i), wide.ImmediateDominator(i));
            Assert.Equal(coded.RetainedSize(i), wide.RetainedSize(i));
        }
    }

    [Fact]
    public void The_static_events_invocation_list_retains_the_ten_thousand_subscribers()
    {
        HeapGraph graph = Graph("event-leak");
        var types = graph.RetainedByType(0, 100_000, 100_000, CancellationToken.None);
        var subscriber = Assert.Single(types.Items, t => t.Name == "DumpScope.Scenarios.Subscriber");
        Assert.Equal(10_000, subscriber.Count);
        // 10000 subscribers, each with its 256-byte history array.
        Assert.True(subscriber.Retained >= subscriber.Size + 10_000UL * (256 + 16));

        var holders = graph.HoldersOf(subscriber.MethodTable, 10, 100, 100, CancellationToken.None);
        var group = holders.Groups[0];
        Assert.Equal(10_000, group.Count);
        Assert.Equal("System.Object[]", group.HolderType);
        Assert.Equal("static", group.Roots[0].Kind);
        Assert.Equal("DumpScope.Scenarios.Publisher.PriceChanged", group.Roots[0].Name);
        Assert.Equal(["System.EventHandler", "System.Object[]"], group.Chain.Select(l => l.Type));
        Assert.True(group.HolderRetained >= subscriber.Retained);

        var one = graph.IndexOf(graph.Children(group.Holder, 0, 1, null, 100).Items[0].Address);
        var why = graph.WhyAlive(graph.AddressOf(one), 100, CancellationToken.None);
        Assert.True(why.Reachable);
        var fromStatic = Assert.Single(why.ByRootKind, p => p.Root.Kind == "static");
        Assert.Equal("DumpScope.Scenarios.Publisher.PriceChanged", fromStatic.Root.Name);
        Assert.Equal(["System.EventHandler", "System.Object[]", "System.EventHandler"], why.DominatorChain.Select(l => l.Type));
    }

    // Addresses are kept as 32-bit offsets within their segment and types
    // as 16-bit indices: every object must still come back as ClrMD sees
    // it, found at its address and nowhere inside it.
    [Fact]
    public void Every_object_has_the_address_size_and_type_ClrMD_gives_it()
    {
        HeapGraph graph = Graph("event-leak");
        using var opened = OpenedDump.Of("event-leak", "net10");
        var (target, clr) = (opened.Target, opened.Runtime);
        var objects = clr.Heap.EnumerateObjects().Where(o => o.IsValid && !o.IsFree).OrderBy(o => o.Address).ToArray();
        Assert.Equal(objects.Length, graph.ObjectCount);
        for (int i = 0; i < objects.Length; i++)
        {
            ClrObject o = objects[i];
            Assert.Equal(o.Address, graph.AddressOf(i));
            Assert.Equal(i, graph.IndexOf(o.Address));
            Assert.Equal(-1, graph.IndexOf(o.Address + 4));
            Assert.Equal(-1, graph.IndexOf(o.Address + 8));
            Assert.Equal(o.Size, graph.SizeOf(i));
            Assert.Equal(DumpSession.TypeName(o.Type!), graph.TypeNameOf(i));
        }
    }

    // The build's lookups share one cursor, which keeps the segment of the
    // last one: every answer must be the one a search of all addresses
    // gives, whatever segment the previous lookup was in (objects in order,
    // then in a shuffled order with misses in between: inside an object,
    // off the alignment, below, between and above the segments).
    [Fact]
    public void A_run_of_lookups_finds_what_a_search_of_every_address_finds()
    {
        HeapGraph graph = Graph("event-leak");
        ulong[] addresses = Enumerable.Range(0, graph.ObjectCount).Select(graph.AddressOf).ToArray();
        var random = new Random(9);
        var probes = new List<ulong>(addresses);
        foreach (ulong address in addresses.OrderBy(_ => random.Next()))
            probes.AddRange([address, address + 8, address + 4, address - 8, 0, 0x10, ulong.MaxValue, address + (1UL << 32)]);
        using (var opened = OpenedDump.Of("event-leak"))
        {
            var segments = opened.Runtime.Heap.Segments.Where(s => s.ObjectRange.Length > 0).ToArray();
            Assert.True(segments.Length > 1);
            foreach (var segment in segments)
                probes.AddRange([segment.ObjectRange.Start - 8, segment.ObjectRange.End, segment.ObjectRange.End + 8]);
        }
        HeapGraph.SegmentCursor cursor = graph.Cursor();
        int found = 0;
        foreach (ulong probe in probes)
        {
            int expected = Array.BinarySearch(addresses, probe);
            Assert.Equal(expected < 0 ? -1 : expected, cursor.IndexOf(probe));
            found += expected < 0 ? 0 : 1;
        }
        Assert.True(found >= 2 * addresses.Length);
    }

    // Backing a column ahead (Prefault) while the build writes it: no byte
    // changes, written or not, and the memory is resident afterwards.
    [Fact]
    public void Memory_backed_ahead_keeps_every_value_and_is_resident()
    {
        if (!OperatingSystem.IsLinux() || Environment.ProcessorCount < 2)
            return;
        const int length = 8 << 20;
        var run = NativeGrowing<int>.OfLength(length);
        try
        {
            Span<int> items = run.Span;
            for (int i = 0; i < length / 4; i++)
                items[i] = i ^ 0x5A5A5A5A;
            Task backing = Prefault.Start(run.Range);
            for (int i = length / 4; i < length / 2; i++)
                items[i] = i ^ 0x5A5A5A5A;
            Prefault.Wait(backing);
            // mincore: one byte per 4 KiB page, bit 0 set when resident;
            // asked before the values are read (a read maps untouched pages).
            var (start, bytes) = run.Range;
            var resident = new byte[bytes / 4096];
            Assert.Equal(0, Mincore(start, (nuint)bytes, resident));
            Assert.All(resident, page => Assert.Equal(1, page & 1));
            for (int i = 0; i < length; i++)
                Assert.Equal(i < length / 2 ? i ^ 0x5A5A5A5A : 0, items[i]);
        }
        finally
        {
            run.Free();
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "mincore")]
    private static extern int Mincore(nint address, nuint length, byte[] vector);

    [Fact]
    public void Bad_parameters_are_refused_and_unknown_addresses_are_not_found()
    {
        HeapGraph graph = Graph("event-leak");
        Assert.Equal(ErrorCodes.InvalidParams, Assert.Throws<EngineException>(() => graph.Children(null, -1, 10, null, 100)).Code);
        Assert.Equal(ErrorCodes.InvalidParams, Assert.Throws<EngineException>(() => graph.Children(null, 0, 101, null, 100)).Code);
        Assert.Equal(ErrorCodes.NotFound, Assert.Throws<EngineException>(() => graph.Children(0x10, 0, 10, null, 100)).Code);
        Assert.Equal(ErrorCodes.NotFound, Assert.Throws<EngineException>(() => graph.HoldersOf(0x10, 10, 100, 100, CancellationToken.None)).Code);
    }

    [Fact]
    public void A_cancelled_build_stops_with_OperationCanceledException()
    {
        using var opened = OpenedDump.Of("event-leak", "net10");
        var (target, clr) = (opened.Target, opened.Runtime);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() =>
            HeapGraph.Build(clr, new HeapWalker(clr, target.DataReader), target.DataReader, null, cts.Token));
    }
}

public class GraphIndexTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "dumpscope-index-test-" + Guid.NewGuid().ToString("n"));

    public void Dispose()
    {
        if (Directory.Exists(_folder))
            Directory.Delete(_folder, recursive: true);
    }

    private static (ulong, ulong, int)[] Fingerprint(HeapGraph graph) =>
        [.. Enumerable.Range(0, graph.ObjectCount).Select(v => (graph.AddressOf(v), graph.RetainedSize(v), graph.ImmediateDominator(v)))];

    [Fact]
    public void A_saved_graph_loads_with_identical_answers_and_never_beside_the_dump()
    {
        var (dump, _) = ScenarioDumps.Get("event-leak", "net10");
        // Fresh: saving makes the dominator tree's rows in a scratch file
        // (no question has made them), which must leave nothing behind.
        HeapGraph built = HeapGraphTests.Fresh("event-leak");
        var index = new GraphIndex(_folder, 1L << 30);
        index.Save(dump, built);
        Assert.Equal([index.PathOf(GraphIndex.KeyOf(dump))], Directory.GetFiles(_folder));
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(dump)!, "*.graph"));

        HeapGraph? loaded = index.TryLoad(dump, CancellationToken.None);
        Assert.NotNull(loaded);
        Assert.Equal(Fingerprint(built), Fingerprint(loaded!));
        // Saving hands back the graph read from its file, with the same answers.
        HeapGraph saved = index.Save(dump, built);
        Assert.NotSame(built, saved);
        Assert.Equal(Fingerprint(built), Fingerprint(saved));
        // Records holding arrays compare them by reference: compare contents.
        Assert.Equal(built.Summary(false) with { FromIndex = true, RootsByKind = default, CorruptRanges = default },
            loaded!.Summary(true) with { RootsByKind = default, CorruptRanges = default });
        Assert.Equal(built.Summary(false).RootsByKind.ToArray(), loaded.Summary(true).RootsByKind.ToArray());
        Assert.Equal(built.Children(null, 0, 20, null, 100).Items.Select(i => (i.Address, i.Retained, i.Type, i.Dominated, string.Join(",", i.Roots))),
            loaded.Children(null, 0, 20, null, 100).Items.Select(i => (i.Address, i.Retained, i.Type, i.Dominated, string.Join(",", i.Roots))));
        var types = built.RetainedByType(0, 50, 100, CancellationToken.None).Items;
        var loadedTypes = loaded.RetainedByType(0, 50, 100, CancellationToken.None).Items;
        for (int i = 0; i < types.Length; i++)
            Assert.True(types[i] == loadedTypes[i], $"type {i}: {types[i]} then {loadedTypes[i]}");
    }

    // Eight zero bytes over the first object of the largest region: the
    // build walks around it, as heap_stats does, and says so; a reopened
    // dump's graph, loaded from the index, says the same.
    [Fact]
    public void A_graph_built_over_a_damaged_heap_reports_the_damage_and_the_index_keeps_it()
    {
        GraphSummary sound = HeapGraphTests.Graph("deadlock").Summary(false);
        Assert.Equal((0L, 0UL, 0L), (sound.CorruptRangeCount, sound.UnwalkedBytes, sound.DanglingReferences));
        Assert.Empty(sound.CorruptRanges);

        using var opened = OpenedDump.Of("deadlock");
        var (target, clr) = (opened.Target, opened.Runtime);
        ulong first = clr.Heap.Segments.Where(s => s.Kind is not (GCSegmentKind.Large or GCSegmentKind.Frozen))
            .OrderByDescending(s => s.ObjectRange.Length).First().FirstObjectAddress;
        var memory = new DamagedMemory(target.DataReader, first, new byte[8], 8);
        HeapGraph damaged = HeapGraph.Build(clr, new HeapWalker(clr, memory), memory, null, CancellationToken.None);
        GraphSummary summary = damaged.Summary(false);
        CorruptRange range = Assert.Single(summary.CorruptRanges);
        Assert.Equal(first, range.Start);
        Assert.Contains("method table 0x0", range.Reason);
        Assert.Equal(1, summary.CorruptRangeCount);
        Assert.Equal(range.End - range.Start, summary.UnwalkedBytes);
        Assert.True(summary.Objects < sound.Objects);

        var index = new GraphIndex(_folder, 1L << 30);
        index.Save(opened.Dump, damaged);
        GraphSummary loaded = index.TryLoad(opened.Dump, CancellationToken.None)!.Summary(true);
        Assert.Equal(summary.CorruptRanges.ToArray(), loaded.CorruptRanges.ToArray());
        Assert.Equal((summary.CorruptRangeCount, summary.UnwalkedBytes, summary.DanglingReferences),
            (loaded.CorruptRangeCount, loaded.UnwalkedBytes, loaded.DanglingReferences));
    }

    [Fact]
    public void A_damaged_index_is_refused_and_deleted()
    {
        var (dump, _) = ScenarioDumps.Get("event-leak", "net10");
        var index = new GraphIndex(_folder, 1L << 30);
        index.Save(dump, HeapGraphTests.Graph("event-leak"));
        string file = index.PathOf(GraphIndex.KeyOf(dump));
        byte[] bytes = File.ReadAllBytes(file);
        bytes[bytes.Length / 2] ^= 0x40;
        File.WriteAllBytes(file, bytes);
        Assert.Null(index.TryLoad(dump, CancellationToken.None));
        Assert.False(File.Exists(file));

        File.WriteAllBytes(file, bytes[..(bytes.Length / 3)]);
        Assert.Null(index.TryLoad(dump, CancellationToken.None));
    }

    [Fact]
    public void An_index_file_of_an_older_format_is_refused_and_deleted()
    {
        var (dump, _) = ScenarioDumps.Get("event-leak", "net10");
        var index = new GraphIndex(_folder, 1L << 30);
        byte[] key = GraphIndex.KeyOf(dump);
        string file = index.PathOf(key);
        Directory.CreateDirectory(_folder);
        // Format 2's start: magic, version, then the key as a length-prefixed section.
        using (var writer = new BinaryWriter(File.Create(file)))
        {
            writer.Write("DSGRAPH1"u8.ToArray());
            writer.Write(2);
            writer.Write(key.Length);
            writer.Write(key);
            writer.Write(new byte[4096]);
        }
        Assert.Null(index.TryLoad(dump, CancellationToken.None));
        Assert.False(File.Exists(file));
    }

    // Format 4 added the damage sections: a format-3 file (no damage kept)
    // must be rebuilt, not read as a graph of a sound heap. Format 5 keeps
    // addresses and retained sizes in 32 bits: a format-4 file read as 5
    // would give wrong addresses and sizes, so it is refused too.
    [Theory]
    [InlineData(3)]
    [InlineData(4)]
    public void An_index_file_of_an_earlier_sectioned_format_is_refused_and_deleted(int version)
    {
        var (dump, _) = ScenarioDumps.Get("event-leak", "net10");
        var index = new GraphIndex(_folder, 1L << 30);
        index.Save(dump, HeapGraphTests.Graph("event-leak"));
        string file = index.PathOf(GraphIndex.KeyOf(dump));
        byte[] bytes = File.ReadAllBytes(file);
        Assert.Equal(5, BitConverter.ToInt32(bytes, 8));
        BitConverter.GetBytes(version).CopyTo(bytes, 8);
        // With its header's checksum made right again, as the older engine
        // wrote it: only the version tells the formats apart.
        int headerBytes = 48 + BitConverter.ToInt32(bytes, 12) * 24 + 8;
        byte[] header = bytes[..headerBytes];
        BitConverter.GetBytes(HeapGraph.HeaderSum(header)).CopyTo(bytes, headerBytes - 8);
        File.WriteAllBytes(file, bytes);
        Assert.Null(index.TryLoad(dump, CancellationToken.None));
        Assert.False(File.Exists(file));
    }

    [Fact]
    public void The_index_folder_stays_under_its_cap_dropping_the_least_recently_used()
    {
        var (leak, _) = ScenarioDumps.Get("event-leak", "net10");
        var (retention, _) = ScenarioDumps.Get("retention", "net10");
        var roomy = new GraphIndex(_folder, 1L << 30);
        roomy.Save(leak, HeapGraphTests.Graph("event-leak"));
        long first = new FileInfo(roomy.PathOf(GraphIndex.KeyOf(leak))).Length;
        var tight = new GraphIndex(_folder, first + 1);
        tight.Save(retention, HeapGraphTests.Graph("retention"));
        // The retention graph alone is over the cap: it is not kept, the other stays.
        Assert.True(File.Exists(roomy.PathOf(GraphIndex.KeyOf(leak))));
        Assert.False(File.Exists(roomy.PathOf(GraphIndex.KeyOf(retention))));

        var fits = new GraphIndex(_folder, 1L << 30);
        fits.Save(retention, HeapGraphTests.Graph("retention"));
        long both = Directory.GetFiles(_folder, "*.graph").Sum(f => new FileInfo(f).Length);
        new GraphIndex(_folder, both - 1).Save(retention, HeapGraphTests.Graph("retention"));
        Assert.False(File.Exists(roomy.PathOf(GraphIndex.KeyOf(leak))));
        Assert.True(File.Exists(roomy.PathOf(GraphIndex.KeyOf(retention))));
    }
}
