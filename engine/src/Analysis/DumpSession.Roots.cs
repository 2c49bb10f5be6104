using System.Collections.Immutable;
using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Analysis;

// Paths from GC roots to one object (`gcroot`).
public sealed partial class DumpSession
{
    public RootPaths RootPathsTo(ulong address, int maxPaths, IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        ClrHeap heap = RequireHeap();
        ClrObject target = heap.GetObject(address);
        if (!target.IsValid)
            throw new EngineException(ErrorCodes.NotFound, $"0x{address:x} is not the address of a managed object in this dump.");
        maxPaths = Math.Clamp(maxPaths, 1, _limits.MaxRootPaths);
        var gcroot = new GCRoot(heap, [address]);
        var paths = ImmutableArray.CreateBuilder<RootPath>();
        bool truncated = false;

        // GCRoot.EnumerateRootPaths, one root at a time (the same search,
        // sharing what it has seen), so progress can count roots examined.
        var roots = new List<ClrRoot>();
        foreach (ClrRoot root in heap.EnumerateRoots())
        {
            cancel.ThrowIfCancellationRequested();
            roots.Add(root);
        }
        for (int i = 0; i < roots.Count; i++)
        {
            if (paths.Count == maxPaths)
            {
                truncated = true;
                break;
            }
            ClrRoot root = roots[i];
            cancel.ThrowIfCancellationRequested();
            if (gcroot.FindPathFrom(root.Object, cancel) is { } link)
            {
                var chain = ImmutableArray.CreateBuilder<PathLink>();
                for (GCRoot.ChainLink? l = link; l is not null && chain.Count < _limits.MaxPathLength; l = l.Next)
                    chain.Add(new PathLink(l.Object, heap.GetObjectType(l.Object) is { } t ? TypeName(t) : null));
                uint? osId = root is ClrStackRoot stack ? stack.StackFrame?.Thread?.OSThreadId : null;
                paths.Add(new RootPath(RootKindName(root.RootKind), root.Address, root.IsPinned, root.IsInterior, osId, chain.ToImmutable()));
            }
            progress?.Report(new ProgressReport(i + 1, roots.Count, "searching the roots"));
        }
        return new RootPaths(address, paths.ToImmutable(), truncated);
    }

    private static string RootKindName(ClrRootKind kind) => kind switch
    {
        ClrRootKind.FinalizerQueue => "finalizer_queue",
        ClrRootKind.StrongHandle => "strong_handle",
        ClrRootKind.PinnedHandle => "pinned_handle",
        ClrRootKind.Stack => "stack",
        ClrRootKind.RefCountedHandle => "ref_counted_handle",
        ClrRootKind.AsyncPinnedHandle => "async_pinned_handle",
        ClrRootKind.SizedRefHandle => "sized_ref_handle",
        ClrRootKind.ThreadStaticVar => "thread_static",
        ClrRootKind.StaticVar => "static",
        _ => "other",
    };
}
