using System.Collections.Immutable;
using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Analysis;

// The objects behind one line of `finalizequeue`: a type's objects ready for
// finalization (the f-reachable queue) or still registered as finalizable.
public sealed partial class DumpSession
{
    public Instances FinalizerObjectsOf(ulong methodTable, string queue, int offset, int limit, CancellationToken cancel)
    {
        ClrHeap heap = RequireHeap();
        if (offset < 0 || limit < 0 || limit > _limits.MaxPageSize)
            throw new EngineException(ErrorCodes.InvalidParams, $"offset must be >= 0 and limit between 0 and {_limits.MaxPageSize}.");
        IEnumerable<ClrObject> objects = queue switch
        {
            "ready" => heap.EnumerateFinalizerRoots().Select(r => r.Object),
            "finalizable" => heap.EnumerateFinalizableObjects(),
            _ => throw new EngineException(ErrorCodes.InvalidParams, "queue must be \"ready\" or \"finalizable\"."),
        };
        var found = new List<Instance>();
        foreach (ClrObject obj in objects)
        {
            cancel.ThrowIfCancellationRequested();
            if (obj.Type?.MethodTable == methodTable)
                found.Add(new Instance(obj.Address, obj.Size));
        }
        Instance[] ordered = found.DistinctBy(i => i.Address).OrderBy(i => i.Address).ToArray();
        int start = Math.Min(offset, ordered.Length);
        int count = Math.Min(limit, ordered.Length - start);
        ClrType? type = _runtime.GetTypeByMethodTable(methodTable);
        // Read from the finalization queues, not from a heap walk: nothing unwalked.
        return new Instances(methodTable, type is null ? null : TypeName(type), ordered.Length, offset, "address",
            ordered.AsSpan(start, count).ToImmutableArray(), 0);
    }
}
