using System.Diagnostics;
using DumpScope.Engine.Analysis;

namespace DumpScope.Engine.Tests;

/// <summary>heap_stats with `graph`: one walk of the heap serves the
/// statistics and the heap graph, whose build goes on in the background.</summary>
public class SharedWalkTests
{
    private static DumpSession Open(string scenario, string runtime = "net10")
    {
        var (dump, _) = ScenarioDumps.Get(scenario, runtime);
        return DumpSession.Open(dump, new DacOptions(), EngineLimits.Default);
    }

    // Everything heap_stats answers but its time, in its order.
    private static string Text(HeapStats stats) => string.Join("\n", [
        $"{stats.TotalObjects} {stats.TotalBytes} {stats.Parallel} {stats.CorruptRangeCount} {stats.UnwalkedBytes}",
        .. stats.Types.Select(t => t.ToString()),
        .. stats.FreeByKind.Select(f => f.ToString()),
        .. stats.CorruptRanges.Select(c => c.ToString())]);

    // What the graph answers, its build's time aside.
    private static string Answers(DumpSession session)
    {
        var summary = session.GraphSummary(null, CancellationToken.None) with { ElapsedSeconds = 0 };
        var top = session.Dominators(null, 0, 50, null, null, CancellationToken.None).Items
            .Select(i => $"{i.Address:x} {i.Type} {i.Size} {i.Retained} {i.Dominated} {string.Join(",", i.Roots)}");
        var types = session.RetainedByType(0, 200, null, CancellationToken.None).Items.Select(t => t.ToString());
        return string.Join("\n", [
            $"{summary.Objects} {summary.ReachableObjects} {summary.ReachableBytes} {summary.UnreachableObjects} {summary.UnreachableBytes} "
                + $"{summary.References} {summary.RootCount} {summary.DominatorPasses} {summary.FromIndex} {summary.DanglingReferences}",
            string.Join(",", summary.RootsByKind), .. top, .. types]);
    }

    [Theory]
    [InlineData("blocked-finalizer", "net10")]
    [InlineData("blocked-finalizer", "net8")]
    [InlineData("event-leak", "net10")]
    [InlineData("loh-fragmentation", "net10")]
    [InlineData("deadlock", "net10")]
    [InlineData("retention", "net10")]
    public void The_shared_walk_answers_heap_stats_and_the_graph_exactly_as_separate_walks(string scenario, string runtime)
    {
        string separateStats, separateGraph;
        using (var separate = Open(scenario, runtime))
        {
            separateStats = Text(separate.HeapStatistics(null, CancellationToken.None));
            separateGraph = Answers(separate);
        }
        using var shared = Open(scenario, runtime);
        var reports = new List<ProgressReport>();
        HeapStats stats = shared.HeapStatistics(new SyncProgress(reports), CancellationToken.None, graph: true);

        Assert.Equal(separateStats, Text(stats));
        Assert.Contains(stats.Types, t => t.Name == "Free" && t.Count > 0);
        // heap_stats's own progress: bytes of the heap, ending at the whole.
        long heapBytes = (long)shared.GcHeapLayout().TotalAllocated;
        Assert.All(reports, r => Assert.Equal(heapBytes, r.Total));
        Assert.Equal(heapBytes, reports.Max(r => r.Done));
        Assert.Equal(separateGraph, Answers(shared));
        // Asked again, heap_stats answers the same, walking nothing.
        Assert.Equal(Text(stats), Text(shared.HeapStatistics(null, CancellationToken.None, graph: true)));
    }

    // Everything native_pointers answers, in its order.
    private static string Text(NativePointers found) => string.Join("\n", [
        $"{found.ObjectsWalked} {found.PointerFields} {found.RangeCount} {found.Truncated} {found.CorruptRangeCount} {found.UnwalkedBytes}",
        .. found.Items.Select(i => i.ToString()),
        .. found.CorruptRanges.Select(c => c.ToString())]);

    public static TheoryData<string, string> NativeQuestions() => new()
    {
        { "blocked-finalizer", "buffers" },
        { "blocked-finalizer", "coreclr" },
        { "blocked-finalizer", "coreclr direct" },
        { "blocked-finalizer", "all" },
        { "blocked-finalizer", "first 5" },
        { "event-leak", "all" },
        { "loh-fragmentation", "coreclr" },
    };

    // The native pointer fields the shared walk recorded answer
    // native_pointers exactly as a walk of its own.
    [Theory]
    [MemberData(nameof(NativeQuestions))]
    public void Native_pointers_from_the_shared_walk_equal_a_scan_of_their_own(string scenario, string question)
    {
        var (dump, _) = ScenarioDumps.Get(scenario, "net10");
        NativeRange[] ranges = [];
        if (question == "buffers")
        {
            using var facts = System.Text.Json.JsonDocument.Parse(File.ReadAllText(dump + ".facts.json"));
            ulong size = facts.RootElement.GetProperty("buffer_size").GetUInt64();
            ranges = [.. facts.RootElement.GetProperty("buffer_addresses").EnumerateArray()
                .Select(a => Convert.ToUInt64(a.GetString()![2..], 16)).Select(a => new NativeRange(a, a + size))];
        }
        else if (question.StartsWith("coreclr", StringComparison.Ordinal))
        {
            using var target = Microsoft.Diagnostics.Runtime.DataTarget.LoadDump(dump);
            var coreclr = target.DataReader.EnumerateModules().First(m => Path.GetFileName(m.FileName) == "libcoreclr.so");
            ranges = [new NativeRange(coreclr.ImageBase, coreclr.ImageBase + (ulong)coreclr.ImageSize)];
        }
        bool indirect = question != "coreclr direct";
        int limit = question == "first 5" ? 5 : 1_000_000;

        NativePointers alone;
        using (var separate = Open(scenario))
            alone = separate.NativePointersInto(ranges, indirect, limit, null, CancellationToken.None);
        Assert.NotEmpty(alone.Items);
        using var shared = Open(scenario);
        shared.HeapStatistics(null, CancellationToken.None, graph: true);
        var reports = new List<ProgressReport>();
        NativePointers fromWalk = shared.NativePointersInto(ranges, indirect, limit, new SyncProgress(reports), CancellationToken.None);

        Assert.Equal(Text(alone), Text(fromWalk));
        Assert.Equal(question == "first 5", fromWalk.Truncated);
        // No walk of its own: one report, of the whole heap.
        Assert.Equal(reports[^1].Total, reports[^1].Done);
    }

    [Fact]
    public void A_cancelled_shared_walk_leaves_nothing_and_the_graph_is_built_on_its_own_next()
    {
        string expected;
        using (var separate = Open("event-leak"))
            expected = Answers(separate);
        using var session = Open("event-leak");
        using (var cts = new CancellationTokenSource())
        {
            cts.Cancel();
            Assert.ThrowsAny<OperationCanceledException>(() => session.HeapStatistics(null, cts.Token, graph: true));
        }
        Assert.Equal(expected, Answers(session));
    }

    [Fact]
    public void A_cancelled_wait_for_the_background_build_leaves_no_half_graph()
    {
        string expected;
        using (var separate = Open("event-leak"))
            expected = Answers(separate);
        using var session = Open("event-leak");
        session.HeapStatistics(null, CancellationToken.None, graph: true);
        using (var cts = new CancellationTokenSource())
        {
            cts.Cancel();
            try
            {
                // The build may already be done: then the graph is answered.
                session.GraphSummary(null, cts.Token);
            }
            catch (OperationCanceledException)
            {
            }
        }
        Assert.Equal(expected, Answers(session));
    }

    [Fact]
    public void The_graph_call_waiting_for_the_build_is_told_its_progress_to_the_end()
    {
        using var session = Open("event-leak");
        session.HeapStatistics(null, CancellationToken.None, graph: true);
        var reports = new List<ProgressReport>();
        session.GraphSummary(new SyncProgress(reports), CancellationToken.None);
        // The build's progress: the whole build's bytes (walk, resolution,
        // dominators), from past the walk (or its last report, when it
        // ended before the call) to its end.
        long build = 3 * (long)session.GcHeapLayout().TotalAllocated;
        Assert.NotEmpty(reports);
        Assert.All(reports, r => Assert.Equal(build, r.Total));
        Assert.True(reports[0].Done > build / 3);
        Assert.Equal(build, reports[^1].Done);
    }

    [Fact]
    public void A_build_that_fails_after_heap_stats_fails_the_graph_call_with_its_error_and_the_next_builds_again()
    {
        string expected;
        using (var separate = Open("event-leak"))
            expected = Answers(separate);
        using var session = Open("event-leak");
        session.FinishBuild = (walked, _, _) => throw new EngineException(ErrorCodes.Internal, "The heap has too many references.");
        Assert.True(session.HeapStatistics(null, CancellationToken.None, graph: true).TotalObjects > 0);

        var error = Assert.Throws<EngineException>(() => session.GraphSummary(null, CancellationToken.None));
        Assert.Equal(ErrorCodes.Internal, error.Code);
        Assert.Equal("The heap has too many references.", error.Message);
        Assert.Equal(expected, Answers(session));
    }

    [Fact]
    public void Other_calls_are_answered_while_the_rest_of_the_build_runs()
    {
        using var session = Open("event-leak");
        HeapStats stats = session.HeapStatistics(null, CancellationToken.None, graph: true);
        ulong methodTable = stats.Types.Last(t => t.Name != "Free").MethodTable;
        // Through ClrMD beside the build: threads, objects, the finalizer queue.
        Assert.NotEmpty(session.Threads(CancellationToken.None));
        Instances page = session.InstancesOf(methodTable, 0, 10, "size", null, CancellationToken.None);
        Assert.Equal(stats.Types.Last(t => t.Name != "Free").Count, page.Total);
        Assert.Equal(page.Items[0].Address, session.ObjectAt(page.Items[0].Address).Address);
        session.FinalizerQueueInfo(CancellationToken.None);
        Assert.True(session.GraphSummary(null, CancellationToken.None).Objects > 0);
    }

    [Fact]
    public void Closing_the_dump_stops_the_background_build_and_saves_nothing()
    {
        // 10 M objects: the rest of the build takes about a second.
        var (dump, _) = ScenarioDumps.Get("big-heap", "net10", objects: 10_000_000);
        string folder = Path.Combine(Path.GetTempPath(), "dumpscope-shared-walk-" + Guid.NewGuid().ToString("n"));
        try
        {
            var session = DumpSession.Open(dump, new DacOptions(), EngineLimits.Default);
            session.Index = new GraphIndex(folder, 1L << 30);
            // A build that ended would have its save waited for to its end.
            session.SaveGrace = TimeSpan.FromMinutes(1);
            session.HeapStatistics(null, CancellationToken.None, graph: true);
            var watch = Stopwatch.StartNew();
            session.Dispose();
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"closing took {watch.Elapsed}");
            // Stopped before it ended: no graph was saved.
            Assert.False(Directory.Exists(folder) && Directory.EnumerateFiles(folder, "*.graph").Any());
        }
        finally
        {
            if (Directory.Exists(folder))
                Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void Without_graph_or_with_a_graph_built_heap_stats_walks_on_its_own()
    {
        using var session = Open("retention");
        session.GraphSummary(null, CancellationToken.None);
        string withGraph = Text(session.HeapStatistics(null, CancellationToken.None, graph: true));
        using var other = Open("retention");
        Assert.Equal(Text(other.HeapStatistics(null, CancellationToken.None)), withGraph);
    }

    // Progress<T> posts to the thread pool; the walk's reports are wanted in
    // full when the call returns.
    private sealed class SyncProgress(List<ProgressReport> into) : IProgress<ProgressReport>
    {
        public void Report(ProgressReport value)
        {
            lock (into)
                into.Add(value);
        }
    }
}
