using System.Diagnostics;

namespace DumpScope.Engine.Analysis;

// The heap graph of the open dump: built on the first question that needs
// it (or loaded from the index), then kept until the dump is closed.
public sealed partial class DumpSession
{
    /// <summary>How long closing the dump waits for a save still under way
    /// before abandoning it (below the client's five seconds for the engine
    /// to exit).</summary>
    public TimeSpan SaveGrace { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>How long a save still under way is given when the engine
    /// exits (nobody waits for an answer then; an abandoned save costs the
    /// next open a whole build): the client waits longer than this for the
    /// engine to exit (analysis/managed/client.py, ENGINE_EXIT_WAIT).</summary>
    public static readonly TimeSpan ExitSaveGrace = TimeSpan.FromSeconds(20);

    // Read by the RPC worker thread, replaced once by the saving thread.
    private HeapGraph? _graph;
    private bool _graphFromIndex;
    private Task? _saving;
    private readonly CancellationTokenSource _stopSaving = new();

    /// <summary>Where built graphs are saved and found again; null: no index.</summary>
    public GraphIndex? Index { get; set; }

    /// <summary>The graph, built or loaded once. A built graph is answered
    /// from at once and saved to the index in the background (SaveTask);
    /// once saved, the file's mapping replaces the built arrays. A cancelled
    /// build leaves nothing: the next call starts again.</summary>
    public HeapGraph Graph(IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        if (Volatile.Read(ref _graph) is { } graph)
            return graph;
        RequireHeap();
        if (Index?.TryLoad(DumpPath, cancel) is { } loaded)
        {
            _graphFromIndex = true;
            return _graph = loaded;
        }
        graph = HeapGraph.Build(_runtime, Walker, _target.DataReader, progress, cancel, _limits);
        _graphFromIndex = false;
        if (Index is { } index)
        {
            // Saving reads the caches a query makes on first use (the
            // dominator tree's rows, the retained sizes per type): made
            // here, before the saving thread starts, no two threads ever
            // make them at once; the next question needs them anyway. The
            // rows go to a scratch file beside the index (as the save puts
            // them), not to anonymous memory.
            graph.RowsIn(index.Folder);
            graph.RetainedByType(0, 0, _limits.MaxPageSize, cancel);
            // Set before the save starts, which replaces it when done.
            Volatile.Write(ref _graph, graph);
            HeapGraph built = graph;
            _saving = Task.Factory.StartNew(() => SaveInBackground(index, built), CancellationToken.None,
                TaskCreationOptions.LongRunning, TaskScheduler.Default);
            return graph;
        }
        return _graph = graph;
    }

    /// <summary>The save under way or done (null when nothing was built to save).</summary>
    public Task? SaveTask => _saving;

    // A query that took the built graph before the swap goes on reading it
    // safely: its columns hold their arrays, which the GC frees only once
    // no query holds them; the built graph is immutable, so the saving
    // thread and queries read it together.
    private void SaveInBackground(GraphIndex index, HeapGraph built)
    {
        var watch = Stopwatch.StartNew();
        HeapGraph saved;
        try
        {
            saved = index.Save(DumpPath, built, _stopSaving.Token);
        }
        catch (OperationCanceledException)
        {
            return;
        }
        // Nothing waits for this thread's end but the close, which must not
        // fail for it: a failed save costs only the next open's time.
        catch (Exception e)
        {
            Console.Error.WriteLine($"engine: saving the heap graph failed: {e}");
            return;
        }
        if (ReferenceEquals(saved, built) || _stopSaving.IsCancellationRequested)
            return;
        Interlocked.CompareExchange(ref _graph, saved, built);
        // The built arrays' memory goes back to the system.
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        Console.Error.WriteLine($"engine: heap graph saved in the background in {watch.Elapsed.TotalSeconds:F2} s");
    }

    /// <summary>Lets a save under way end within `grace`, else abandons it
    /// (its temporary file deleted, no index under the real name).</summary>
    private void FinishSaving(TimeSpan grace)
    {
        if (_saving is not { } saving)
            return;
        if (!saving.Wait(grace))
        {
            _stopSaving.Cancel();
            saving.Wait();
        }
        _saving = null;
    }

    public GraphSummary GraphSummary(IProgress<ProgressReport>? progress, CancellationToken cancel) =>
        Graph(progress, cancel).Summary(_graphFromIndex);

    public DominatorPage Dominators(ulong? address, int offset, int limit, string? typeFilter,
        IProgress<ProgressReport>? progress, CancellationToken cancel) =>
        Graph(progress, cancel).Children(address, offset, limit, typeFilter, _limits.MaxPageSize);

    public TypeRetainedPage RetainedByType(int offset, int limit, IProgress<ProgressReport>? progress, CancellationToken cancel) =>
        Graph(progress, cancel).RetainedByType(offset, limit, _limits.MaxPageSize, cancel);

    public RetentionPaths WhyAlive(ulong address, IProgress<ProgressReport>? progress, CancellationToken cancel) =>
        Graph(progress, cancel).WhyAlive(address, _limits.MaxPathLength, cancel);

    public InstanceHolders Holders(ulong methodTable, int limit, IProgress<ProgressReport>? progress, CancellationToken cancel) =>
        Graph(progress, cancel).HoldersOf(methodTable, limit, _limits.MaxPathLength, _limits.MaxPageSize, cancel);
}
