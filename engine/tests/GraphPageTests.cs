using DumpScope.Engine.Analysis;

namespace DumpScope.Engine.Tests;

/// <summary>The first pages a cold open asks for (the top of the dominator
/// tree, the retained sizes per type), checked against their definitions
/// computed the plain way, whichever way the engine made them.</summary>
public class GraphPageTests
{
    // Every field of a page, items in order.
    internal static string Text(DominatorPage page) => string.Join("\n", [
        $"{page.Parent} {page.ParentRetained} {page.ReachableBytes} {page.Total} {page.Offset}",
        .. page.Items.Select(i => $"{i.Address:x} {i.MethodTable:x} {i.Type} {i.Size} {i.Retained} {i.Dominated} {string.Join(",", i.Roots)}")]);

    private static readonly (int Offset, int Limit, string? Type)[] Questions =
    [
        (0, 200, null), (0, 1, null), (3, 7, null), (0, 100_000, null), (0, 0, null), (1_000_000, 10, null),
        (0, 50, "string"), (2, 50, "SYSTEM.OBJECT"), (0, 10, "no type has this name"),
    ];

    [Theory]
    [InlineData("event-leak")]
    [InlineData("retention")]
    [InlineData("blocked-finalizer")]
    public void The_top_of_the_tree_is_the_page_its_definition_gives_before_and_after_a_deeper_question(string scenario)
    {
        HeapGraph graph = HeapGraphTests.Fresh(scenario);
        int n = graph.ObjectCount;
        var top = Enumerable.Range(0, n).Where(v => graph.ImmediateDominator(v) == graph.SuperRoot)
            .OrderByDescending(graph.RetainedSize).ThenBy(graph.AddressOf).ToArray();
        var dominated = new Dictionary<int, int>();
        for (int v = 0; v < n; v++)
        {
            if (graph.ImmediateDominator(v) >= 0)
                dominated[graph.ImmediateDominator(v)] = dominated.GetValueOrDefault(graph.ImmediateDominator(v)) + 1;
        }
        // Objects of one retained size side by side: the order between them is the address's.
        Assert.Contains(Enumerable.Range(1, top.Length - 1), i => graph.RetainedSize(top[i]) == graph.RetainedSize(top[i - 1]));

        var first = new List<string>();
        foreach (var (offset, limit, type) in Questions)
        {
            DominatorPage page = graph.Children(null, offset, limit, type, 100_000);
            var expected = top.Where(v => type is null || graph.TypeNameOf(v).Contains(type, StringComparison.OrdinalIgnoreCase)).ToArray();
            Assert.Equal(expected.Length, page.Total);
            Assert.Equal(expected.Skip(offset).Take(limit).Select(v => (graph.AddressOf(v), graph.RetainedSize(v), dominated.GetValueOrDefault(v))),
                page.Items.Select(i => (i.Address, i.Retained, i.Dominated)));
            first.Add(Text(page));
        }

        // A deeper question changes nothing of the top pages.
        Assert.Equal(dominated.GetValueOrDefault(top[0]), graph.Children(graph.AddressOf(top[0]), 0, 100_000, null, 100_000).Total);
        Assert.Equal(first, Questions.Select(q => Text(graph.Children(null, q.Offset, q.Limit, q.Type, 100_000))));
    }

    [Theory]
    [InlineData("event-leak")]
    [InlineData("retention")]
    [InlineData("blocked-finalizer")]
    public void Retained_size_by_type_counts_each_instance_inside_the_outermost_instance_of_its_type(string scenario)
    {
        HeapGraph graph = HeapGraphTests.Fresh(scenario);
        var expected = new Dictionary<ulong, (long Count, ulong Size, long Reachable, ulong Retained)>();
        for (int v = 0; v < graph.ObjectCount; v++)
        {
            ulong mt = graph.MethodTableOf(v);
            var (count, size, reachable, retained) = expected.GetValueOrDefault(mt);
            (count, size) = (count + 1, size + graph.SizeOf(v));
            if (graph.ImmediateDominator(v) >= 0)
            {
                reachable++;
                // Its type's retained size holds it already when an object of its type is above it.
                int above = graph.ImmediateDominator(v);
                while (above != graph.SuperRoot && graph.MethodTableOf(above) != mt)
                    above = graph.ImmediateDominator(above);
                if (above == graph.SuperRoot)
                    retained += graph.RetainedSize(v);
            }
            expected[mt] = (count, size, reachable, retained);
        }
        var page = graph.RetainedByType(0, 100_000, 100_000, CancellationToken.None);
        Assert.Equal(expected.Count, page.Total);
        Assert.Equal(expected.OrderBy(e => e.Key).Select(e => (e.Key, e.Value)),
            page.Items.Select(t => (t.MethodTable, (t.Count, t.Size, t.ReachableCount, t.Retained))).OrderBy(e => e.MethodTable));
        // Some type here nests in itself: its instances inside others count once.
        Assert.Contains(page.Items, t => t.Retained > 0 && t.Retained < Enumerable.Range(0, graph.ObjectCount)
            .Where(v => graph.MethodTableOf(v) == t.MethodTable && graph.ImmediateDominator(v) >= 0).Aggregate(0UL, (s, v) => s + graph.RetainedSize(v)));
    }
}

/// <summary>Work nobody waits for, at the lowest priority: the rows' room
/// touched during the build, the index written in the background.</summary>
public class LowPriorityTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "dumpscope-low-test-" + Guid.NewGuid().ToString("n"));

    public void Dispose()
    {
        if (Directory.Exists(_folder))
            Directory.Delete(_folder, recursive: true);
    }

    [Fact]
    public void Rows_made_in_room_touched_ahead_answer_as_rows_made_in_memory_and_leave_no_file()
    {
        HeapGraph inMemory = HeapGraphTests.Fresh("event-leak");
        HeapGraph inRoom = HeapGraphTests.Fresh("event-leak");
        RowsRoom room = RowsRoom.Prepare(_folder, inRoom.ObjectCount) ?? throw new InvalidOperationException("no room");
        inRoom.RowsIn(room.Ints);

        string Answers(HeapGraph graph)
        {
            var top = graph.Children(null, 0, 20, null, 100_000);
            return string.Join("\n", [
                GraphPageTests.Text(top),
                .. top.Items.Select(i => GraphPageTests.Text(graph.Children(i.Address, 0, 100_000, null, 100_000))),
                .. graph.RetainedByType(0, 100_000, 100_000, CancellationToken.None).Items.Select(t => t.ToString())]);
        }
        Assert.Equal(Answers(inMemory), Answers(inRoom));
        room.Stop();
        // The scratch file has no name once mapped.
        Assert.Empty(Directory.GetFiles(_folder));
    }

    // The nice value of the calling thread (Linux: field 19 of its stat).
    private static int Nice() =>
        int.Parse(File.ReadAllText("/proc/thread-self/stat").Split(')')[^1].Split(' ', StringSplitOptions.RemoveEmptyEntries)[16]);

    [Fact]
    public async Task Work_at_the_lowest_priority_runs_on_a_thread_at_nice_19_that_lowers_no_other()
    {
        int before = Nice();
        int during = 0;
        LowPriority.Start("test", () => during = Nice()).Join();
        Assert.Equal(19, during);
        Assert.Equal(before, Nice());
        // The index written at the lowest priority: every pool thread keeps its priority.
        var (dump, _) = ScenarioDumps.Get("event-leak", "net10");
        var index = new GraphIndex(_folder, 1L << 30);
        HeapGraph saved = index.Save(dump, HeapGraphTests.Fresh("event-leak"), new CancellationTokenSource().Token, yielding: true);
        Assert.Equal(GraphPageTests.Text(HeapGraphTests.Graph("event-leak").Children(null, 0, 50, null, 100)),
            GraphPageTests.Text(saved.Children(null, 0, 50, null, 100)));
        int[] pool = await Task.WhenAll(Enumerable.Range(0, 64).Select(_ => Task.Run(() =>
        {
            Thread.Sleep(5);
            return Nice();
        })));
        Assert.All(pool, nice => Assert.Equal(before, nice));
    }

    private sealed class FullDisk : MemoryStream
    {
        public override void Write(ReadOnlySpan<byte> buffer) => throw new IOException("No space left on device");
    }

    [Fact]
    public void A_write_that_fails_at_the_lowest_priority_fails_the_writer_and_a_cancelled_one_leaves_no_file()
    {
        using (var stream = new LowPriorityStream(new FullDisk()))
            Assert.Equal("No space left on device", Assert.Throws<IOException>(() => stream.Write(new byte[10])).Message);

        var (dump, _) = ScenarioDumps.Get("event-leak", "net10");
        HeapGraph built = HeapGraphTests.Graph("event-leak");
        var index = new GraphIndex(_folder, 1L << 30);
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.Same(built, index.Save(dump, built, cancelled.Token, yielding: true));
        Assert.Empty(Directory.GetFiles(_folder));
    }
}
