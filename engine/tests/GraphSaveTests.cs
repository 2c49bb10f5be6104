using DumpScope.Engine.Analysis;

namespace DumpScope.Engine.Tests;

/// <summary>The heap graph is answered from as soon as it is built and saved
/// to the index in the background.</summary>
public class GraphSaveTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "dumpscope-save-test-" + Guid.NewGuid().ToString("n"));

    public void Dispose()
    {
        if (Directory.Exists(_folder))
            Directory.Delete(_folder, recursive: true);
    }

    private DumpSession Open(string scenario)
    {
        var (dump, _) = ScenarioDumps.Get(scenario, "net10");
        var session = DumpSession.Open(dump, new DacOptions(), EngineLimits.Default);
        session.Index = new GraphIndex(_folder, 1L << 30);
        return session;
    }

    private static string Answers(DumpSession session)
    {
        var summary = session.GraphSummary(null, CancellationToken.None);
        var top = session.Dominators(null, 0, 30, null, null, CancellationToken.None).Items
            .Select(i => $"{i.Address:x} {i.Type} {i.Size} {i.Retained} {i.Dominated} {string.Join(",", i.Roots)}");
        var types = session.RetainedByType(0, 100, null, CancellationToken.None).Items
            .Select(t => t.ToString());
        return string.Join("\n", [
            $"{summary.Objects} {summary.ReachableObjects} {summary.ReachableBytes} {summary.UnreachableBytes} {summary.References} {summary.RootCount} {summary.DanglingReferences}",
            .. top, .. types]);
    }

    // Every file the folder holds is a whole index: no temporary file is left
    // and each graph file loads.
    private void AssertNoPartialIndex(string dump)
    {
        if (!Directory.Exists(_folder))
            return;
        Assert.DoesNotContain(Directory.GetFiles(_folder), f => !f.EndsWith(".graph", StringComparison.Ordinal));
        if (Directory.GetFiles(_folder, "*.graph").Length > 0)
            Assert.NotNull(new GraphIndex(_folder, 1L << 30).TryLoad(dump, CancellationToken.None));
    }

    [Fact]
    public void A_save_deletes_the_temporary_files_of_engines_that_are_gone_and_keeps_a_running_ones()
    {
        Directory.CreateDirectory(_folder);
        // An engine killed while it wrote (no process has this pid: Linux
        // caps pids far below it, Windows uses multiples of 4), and one
        // still writing (this process).
        string dead = Path.Combine(_folder, "00ff.graph.2147483647.tmp");
        string running = Path.Combine(_folder, $"00fe.graph.{Environment.ProcessId}.tmp");
        File.WriteAllBytes(dead, new byte[16]);
        File.WriteAllBytes(running, new byte[16]);
        using (var session = Open("retention"))
        {
            session.Graph(null, CancellationToken.None);
            session.SaveTask?.Wait();
        }
        Assert.False(File.Exists(dead));
        Assert.True(File.Exists(running));
        Assert.Single(Directory.GetFiles(_folder, "*.graph"));
    }

    [Fact]
    public async Task Queries_during_the_background_save_answer_as_the_saved_graph_does_after_it()
    {
        using var session = Open("event-leak");
        HeapGraph built = session.Graph(null, CancellationToken.None);
        Task save = session.SaveTask ?? throw new InvalidOperationException("no save started");
        string first = Answers(session);
        // Asked again and again while the save runs and swaps the graph.
        int during = 0;
        do
        {
            Assert.Equal(first, Answers(session));
            during++;
        }
        while (!save.IsCompleted);
        await save;
        HeapGraph saved = session.Graph(null, CancellationToken.None);
        Assert.NotSame(built, saved);
        Assert.Equal(first, Answers(session));
        Assert.Single(Directory.GetFiles(_folder, "*.graph"));
        Assert.True(during > 0);
    }

    [Fact]
    public void A_cancelled_save_leaves_no_file_and_hands_back_the_built_graph()
    {
        var (dump, _) = ScenarioDumps.Get("event-leak", "net10");
        HeapGraph built = HeapGraphTests.Graph("event-leak");
        var index = new GraphIndex(_folder, 1L << 30);
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.Same(built, index.Save(dump, built, cancelled.Token));
        Assert.Empty(Directory.GetFiles(_folder));
        Assert.Null(index.TryLoad(dump, CancellationToken.None));
    }

    [Fact]
    public void Closing_during_the_save_leaves_a_whole_index_or_none()
    {
        var (dump, _) = ScenarioDumps.Get("retention", "net10");
        var session = Open("retention");
        // No grace: the close abandons the save wherever it is.
        session.SaveGrace = TimeSpan.Zero;
        session.Graph(null, CancellationToken.None);
        Task save = session.SaveTask ?? throw new InvalidOperationException("no save started");
        session.Dispose();
        Assert.True(save.IsCompleted);
        AssertNoPartialIndex(dump);

        // With the default grace the save ends and the next open loads it.
        using (var patient = Open("retention"))
            patient.Graph(null, CancellationToken.None);
        AssertNoPartialIndex(dump);
        using var reopened = Open("retention");
        Assert.True(reopened.GraphSummary(null, CancellationToken.None).FromIndex);
        Assert.Null(reopened.SaveTask);
    }
}
