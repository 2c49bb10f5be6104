namespace DumpScope.Engine.Analysis;

// Native memory to its managed owners (`gctonative`): see NativePointerScan.
public sealed partial class DumpSession
{
    // The native pointer fields recorded by the walk that served heap_stats
    // and the heap graph (StatisticsAndGraph), with the objects it walked
    // and the damage it went around; null: native_pointers walks itself.
    private (NativeFieldRecord Record, long Objects, HeapDamageLog Damage)? _nativeFields;

    public NativePointers NativePointersInto(NativeRange[] ranges, bool indirect, int limit, IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        RequireHeap();
        var scan = new NativePointerScan(_runtime, Walker, _target.DataReader, _limits);
        if (_nativeFields is var (record, objects, damage))
        {
            NativePointers answer = scan.Answer(record, objects, damage, ranges, indirect, limit, cancel);
            // The heap was walked (for heap_stats): all of it is done.
            long heapBytes = _runtime.Heap.Segments.Sum(s => (long)s.ObjectRange.Length);
            progress?.Report(new ProgressReport(heapBytes, heapBytes, "looking for native pointers"));
            return answer;
        }
        return scan.Scan(ranges, indirect, limit, progress, cancel);
    }
}
