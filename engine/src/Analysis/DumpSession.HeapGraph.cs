using System.Diagnostics;
using System.Runtime.ExceptionServices;
using Microsoft.Diagnostics.Runtime;

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
    /// engine to exit (analysis/managed/process.py, ENGINE_EXIT_WAIT).</summary>
    public static readonly TimeSpan ExitSaveGrace = TimeSpan.FromSeconds(20);

    // Read by the RPC worker thread, replaced once by the saving thread.
    private HeapGraph? _graph;
    private bool _graphFromIndex;
    private Task? _saving;
    private readonly CancellationTokenSource _stopSaving = new();

    /// <summary>Where built graphs are saved and found again; null: no index.</summary>
    public GraphIndex? Index { get; set; }

    // The rest of a build whose walk served heap_stats too
    // (StatisticsAndGraph), running in the background; null when none runs
    // or a graph call took its end. Set and cleared by the RPC worker
    // thread only; the build's thread writes only _graph, _graphFromIndex
    // and _saving, before its task ends.
    private Task? _building;
    private CancellationTokenSource? _stopBuilding;
    private readonly RelayedProgress _buildProgress = new();

    /// <summary>The rest of a build after heap_stats' walk; tests replace
    /// it to make the background build fail.</summary>
    internal Func<HeapGraph.Walked, IProgress<ProgressReport>?, CancellationToken, HeapGraph> FinishBuild { get; set; } = HeapGraph.Finish;

    /// <summary>The graph, built or loaded once. A built graph is answered
    /// from at once and saved to the index in the background (SaveTask);
    /// once saved, the file's mapping replaces the built arrays. A cancelled
    /// build leaves nothing: the next call starts again. A build going on
    /// in the background (after heap_stats) is waited for.</summary>
    public HeapGraph Graph(IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        if (_building is not null)
            return Built(progress, cancel);
        if (Volatile.Read(ref _graph) is { } graph)
            return graph;
        RequireHeap();
        if (Index?.TryLoad(DumpPath, cancel) is { } loaded)
        {
            _graphFromIndex = true;
            return _graph = loaded;
        }
        return Publish(HeapGraph.Build(_runtime, Walker, _target.DataReader, progress, cancel, _limits), cancel);
    }

    /// <summary>Makes the answers the first questions need and the save
    /// reads (the dominator tree's rows, the retained sizes per type), then
    /// answers from the graph and starts its save. <paramref name="room"/>:
    /// memory made ready for the rows while the build went on, else none.</summary>
    private HeapGraph Publish(HeapGraph graph, CancellationToken cancel, RowsRoom? room = null)
    {
        _graphFromIndex = false;
        if (Index is { } index)
        {
            // Saving reads the caches a query makes on first use (the
            // dominator tree's rows, the retained sizes per type): made
            // here, before the saving thread starts, no two threads ever
            // make them at once; the next question needs them anyway. The
            // rows go to a scratch file beside the index (as the save puts
            // them), not to anonymous memory; after heap_stats' shared
            // walk, to one whose pages were touched during the build.
            var watch = Stopwatch.StartNew();
            if (room is not null)
                graph.RowsIn(room.Ints);
            else
                graph.RowsIn(index.Folder);
            graph.RetainedByType(0, 0, _limits.MaxPageSize, cancel);
            Console.Error.WriteLine($"engine: heap graph's rows and retained sizes by type made in {watch.Elapsed.TotalSeconds:F2} s"
                + (room is null ? "" : " (in room prepared during the build)"));
            // Set before the save starts, which replaces it when done.
            Volatile.Write(ref _graph, graph);
            HeapGraph built = graph;
            _saving = Task.Factory.StartNew(() => SaveInBackground(index, built), CancellationToken.None,
                TaskCreationOptions.LongRunning, TaskScheduler.Default);
            return graph;
        }
        Volatile.Write(ref _graph, graph);
        return graph;
    }

    // ClrMD beside the background build: the rest of the build calls ClrMD
    // (the roots, the types' names) while the RPC worker serves other calls
    // (threads, instances, native_pointers...) through the same runtime.
    // ClrMD allows calls from several threads only on a thread-safe runtime
    // (ClrRuntime.IsThreadSafe: its data reader is, as the lock-free
    // memory-mapped one is), which the build's parallel walk and its roots
    // enumerated beside the resolution already rely on. On any other
    // runtime heap_stats walks alone, as without `graph`, and the graph is
    // built by the graph call. Apart from ClrMD and the dump's reader the
    // background build shares nothing with the calls served meanwhile.
    private bool CanBuildBeside() =>
        _runtime.IsThreadSafe && _building is null && Volatile.Read(ref _graph) is null && Index?.Holds(DumpPath) != true;

    /// <summary>heap_stats from the graph build's walk; the rest of the
    /// build goes on in the background. A cancelled walk leaves nothing
    /// (its temporaries freed, no build started).</summary>
    private HeapStats StatisticsAndGraph(ClrHeap heap, IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        var watch = Stopwatch.StartNew();
        var tally = new HeapTally(heap.FreeType?.MethodTable ?? 0);
        var native = new NativeFieldRecord(_target.DataReader, _limits.MaxRecordedNativeFields);
        HeapGraph.Walked walked = HeapGraph.Walk(_runtime, Walker, _target.DataReader, progress, cancel, _limits, tally, native);
        HeapStats stats;
        try
        {
            stats = tally.Result(heap.Segments, walked.Parallel, watch.Elapsed.TotalSeconds, walked.Damage);
        }
        catch
        {
            walked.Dispose();
            throw;
        }
        // An incomplete record is no use: native_pointers then walks.
        if (native.Complete)
            _nativeFields = (native, stats.TotalObjects, walked.Damage);
        var stop = new CancellationTokenSource();
        _stopBuilding = stop;
        RowsRoom? room = Index is { } index ? RowsRoom.Prepare(index.Folder, walked.Objects) : null;
        _building = Task.Factory.StartNew(() =>
        {
            try
            {
                HeapGraph graph;
                using (walked)
                    graph = FinishBuild(walked, _buildProgress, stop.Token);
                Publish(graph, stop.Token, room);
            }
            finally
            {
                room?.Stop();
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        return stats;
    }

    /// <summary>Waits for the background build, its progress going to this
    /// call meanwhile. A cancelled wait leaves the build going (the next
    /// call waits again); a failed build fails this call with its error,
    /// and the next call builds again.</summary>
    private HeapGraph Built(IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        Task building = _building!;
        _buildProgress.Target = progress;
        try
        {
            building.Wait(cancel);
        }
        catch (AggregateException e)
        {
            ForgetBuilding();
            ExceptionDispatchInfo.Throw(e.InnerException ?? e);
        }
        finally
        {
            _buildProgress.Target = null;
        }
        ForgetBuilding();
        return Volatile.Read(ref _graph)!;
    }

    private void ForgetBuilding()
    {
        _stopBuilding?.Dispose();
        (_building, _stopBuilding) = (null, null);
    }

    /// <summary>Stops a build going on in the background and waits for it
    /// to leave (its temporaries freed).</summary>
    private void StopBuilding()
    {
        if (_building is not { } building)
            return;
        _stopBuilding?.Cancel();
        try
        {
            building.Wait();
        }
        catch (AggregateException)
        {
        }
        ForgetBuilding();
    }

    /// <summary>The background build's progress, passed on to the graph
    /// call waiting for it (none waits: dropped); a call that starts waiting
    /// is told the last report at once. Reports are passed on under the
    /// lock, so none reaches a call after it stopped waiting (and answered).</summary>
    private sealed class RelayedProgress : IProgress<ProgressReport>
    {
        private readonly System.Threading.Lock _lock = new();
        private IProgress<ProgressReport>? _target;
        private ProgressReport? _last;

        public IProgress<ProgressReport>? Target
        {
            set
            {
                lock (_lock)
                {
                    _target = value;
                    if (_last is { } report)
                        value?.Report(report);
                }
            }
        }

        public void Report(ProgressReport value)
        {
            lock (_lock)
            {
                _last = value;
                _target?.Report(value);
            }
        }
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
            saved = index.Save(DumpPath, built, _stopSaving.Token, yielding: true);
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

    // A question holds the graph it asked until its answer is made: the
    // background save may meanwhile put the saved graph in its place and
    // collect at once, and the built graph's columns (memory outside the
    // GC heap, which their owners' finalizers give back) must outlive
    // every span the question still reads.
    private T Asked<T>(IProgress<ProgressReport>? progress, CancellationToken cancel, Func<HeapGraph, T> question)
    {
        HeapGraph graph = Graph(progress, cancel);
        try
        {
            return question(graph);
        }
        finally
        {
            GC.KeepAlive(graph);
        }
    }

    public GraphSummary GraphSummary(IProgress<ProgressReport>? progress, CancellationToken cancel) =>
        Asked(progress, cancel, g => g.Summary(_graphFromIndex));

    public DominatorPage Dominators(ulong? address, int offset, int limit, string? typeFilter,
        IProgress<ProgressReport>? progress, CancellationToken cancel) =>
        Asked(progress, cancel, g => g.Children(address, offset, limit, typeFilter, _limits.MaxPageSize));

    public TypeRetainedPage RetainedByType(int offset, int limit, IProgress<ProgressReport>? progress, CancellationToken cancel) =>
        Asked(progress, cancel, g => g.RetainedByType(offset, limit, _limits.MaxPageSize, cancel));

    public RetentionPaths WhyAlive(ulong address, IProgress<ProgressReport>? progress, CancellationToken cancel) =>
        Asked(progress, cancel, g => g.WhyAlive(address, _limits.MaxPathLength, cancel));

    public InstanceHolders Holders(ulong methodTable, int limit, IProgress<ProgressReport>? progress, CancellationToken cancel) =>
        Asked(progress, cancel, g => g.HoldersOf(methodTable, limit, _limits.MaxPathLength, _limits.MaxPageSize, cancel));
}
