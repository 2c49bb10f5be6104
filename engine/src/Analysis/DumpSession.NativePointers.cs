namespace DumpScope.Engine.Analysis;

// Native memory to its managed owners (`gctonative`): see NativePointerScan.
public sealed partial class DumpSession
{
    public NativePointers NativePointersInto(NativeRange[] ranges, bool indirect, int limit, IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        RequireHeap();
        return new NativePointerScan(_runtime, Walker, _target.DataReader, _limits)
            .Scan(ranges, indirect, limit, progress, cancel);
    }
}
