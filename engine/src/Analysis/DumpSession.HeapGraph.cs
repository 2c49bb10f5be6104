namespace DumpScope.Engine.Analysis;

// The heap graph of the open dump: built on the first question that needs
// it (or loaded from the index), then kept until the dump is closed.
public sealed partial class DumpSession
{
    private HeapGraph? _graph;
    private bool _graphFromIndex;

    /// <summary>Where built graphs are saved and found again; null: no index.</summary>
    public GraphIndex? Index { get; set; }

    /// <summary>The graph, built (and saved to the index) or loaded once.
    /// A cancelled build leaves nothing: the next call starts again.</summary>
    public HeapGraph Graph(IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        if (_graph is { } graph)
            return graph;
        RequireHeap();
        if (Index?.TryLoad(DumpPath, cancel) is { } loaded)
        {
            _graphFromIndex = true;
            return _graph = loaded;
        }
        graph = HeapGraph.Build(_runtime, Walker, _target.DataReader, progress, cancel, _limits);
        if (Index is not null)
        {
            // The saved file replaces the built arrays: give their memory back.
            graph = Index.Save(DumpPath, graph);
            GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        }
        _graphFromIndex = false;
        return _graph = graph;
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
