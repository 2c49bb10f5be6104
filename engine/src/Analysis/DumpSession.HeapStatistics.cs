using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Analysis;

/// <summary>
/// Aggregates by method table; the tallies met are kept at hand in a small
/// direct-mapped table (objects of a few types alternate, and the
/// dictionary's lookup cost more than the rest of the step). Free space is
/// also counted apart, so each segment's share of it is known. One per
/// walking thread.
/// </summary>
internal struct StatsVisitor(ulong freeMt) : IObjectVisitor
{
    private const int CacheSlots = 256;
    public readonly Dictionary<ulong, HeapTally.Tally> Tallies = new();
    public long FreeCount;
    public ulong FreeSize;
    private readonly ulong[] _cachedMt = new ulong[CacheSlots];
    private readonly HeapTally.Tally?[] _cached = new HeapTally.Tally?[CacheSlots];

    // Once per object, from the first: compiled optimised at once rather
    // than first as tier-0 code, which the walk would run for a while.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Visit(ulong address, ulong methodTable, ClrType type, ulong size)
    {
        if (methodTable == freeMt)
        {
            FreeCount++;
            FreeSize += size;
        }
        int slot = (int)((methodTable >> 3) ^ (methodTable >> 11)) & (CacheSlots - 1);
        HeapTally.Tally? tally = _cachedMt[slot] == methodTable ? _cached[slot] : null;
        if (tally is null)
        {
            if (!Tallies.TryGetValue(methodTable, out tally))
                Tallies[methodTable] = tally = new HeapTally.Tally { Type = type };
            (_cachedMt[slot], _cached[slot]) = (methodTable, tally);
        }
        tally.Count++;
        tally.Size += size;
    }
}

/// <summary>
/// The statistics of one walk of the GC heap (`dumpheap -stat`), gathered
/// from its walking threads (thread-safe), whichever walk it is: heap_stats'
/// own, or the heap graph's serving both. Both end in Result, so their
/// answers are the same by construction.
/// </summary>
public sealed class HeapTally(ulong freeMt)
{
    internal sealed class Tally
    {
        public long Count;
        public ulong Size;
        public ClrType? Type;
    }

    private readonly ConcurrentBag<Dictionary<ulong, Tally>> _partials = [];
    private readonly Dictionary<string, (long Count, ulong Size)> _freeByKind = [];

    internal StatsVisitor NewVisitor() => new(freeMt);

    /// <summary>One segment walked: the free space its walk counted.</summary>
    public void Segment(GCSegmentKind kind, long freeCount, ulong freeSize)
    {
        lock (_freeByKind)
        {
            string name = DumpSession.KindName(kind);
            var (c, s) = _freeByKind.GetValueOrDefault(name);
            _freeByKind[name] = (c + freeCount, s + freeSize);
        }
    }

    /// <summary>One walking thread done: its counts.</summary>
    internal void Add(StatsVisitor visitor) => _partials.Add(visitor.Tallies);

    /// <summary>One walking thread done: its counts, by method table.</summary>
    internal void Add(Dictionary<ulong, Tally> tallies) => _partials.Add(tallies);

    /// <summary>
    /// The answer, once every thread is done. `segments`: all the heap's,
    /// empty ones included: each kind of segment is listed in free_by_kind,
    /// with 0 when it holds no free space.
    /// </summary>
    public HeapStats Result(IEnumerable<ClrSegment> segments, bool parallel, double seconds, HeapDamageLog damage)
    {
        foreach (ClrSegment segment in segments)
            Segment(segment.Kind, 0, 0);
        var merged = new Dictionary<ulong, Tally>();
        foreach (var part in _partials)
        {
            foreach (var (mt, t) in part)
            {
                if (!merged.TryGetValue(mt, out Tally? m))
                    merged[mt] = m = new Tally { Type = t.Type };
                m.Count += t.Count;
                m.Size += t.Size;
            }
        }

        // Names are resolved once per method table, never per object; the
        // method table last, so that two types of one name and size (one
        // generic in two load contexts) keep one order whatever thread
        // walked them.
        var stats = merged
            .Select(kv => new TypeStat(kv.Key, DumpSession.TypeName(kv.Value.Type), kv.Value.Count, kv.Value.Size))
            .OrderBy(s => s.Size).ThenBy(s => s.Name, StringComparer.Ordinal).ThenBy(s => s.MethodTable)
            .ToImmutableArray();
        return new HeapStats(
            stats,
            stats.Sum(s => s.Count),
            stats.Aggregate(0UL, (a, s) => a + s.Size),
            _freeByKind.OrderBy(kv => kv.Key, StringComparer.Ordinal)
                .Select(kv => new FreeSpace(kv.Key, kv.Value.Count, kv.Value.Size)).ToImmutableArray(),
            parallel,
            seconds,
            damage.CorruptRanges,
            damage.Count,
            damage.Bytes);
    }
}

// Heap-wide answers: `dumpheap -stat` (with free space by segment kind),
// `eeheap -gc` and the finalization queue.
public sealed partial class DumpSession
{
    private HeapStats? _heapStats;

    /// <summary>
    /// `dumpheap -stat`, cached. With `graph` (the heap graph will be asked
    /// for next), when no graph is built, being built or in the index, the
    /// walk is the graph build's: it counts the statistics too, they are
    /// answered as soon as it ends, and the rest of the build goes on in
    /// the background (HeapGraph.Finish; the next graph call waits for it).
    /// The answer is the same either way.
    /// </summary>
    public HeapStats HeapStatistics(IProgress<ProgressReport>? progress, CancellationToken cancel, bool graph = false)
    {
        if (_heapStats is { } cached)
            return cached;
        ClrHeap heap = RequireHeap();
        if (graph && CanBuildBeside())
        {
            HeapStats shared = StatisticsAndGraph(heap, progress, cancel);
            _heapStats = shared;
            return shared;
        }
        var watch = Stopwatch.StartNew();
        HeapWalker walker = Walker;

        // Largest segments first so parallel workers finish together.
        var segments = heap.Segments.OrderByDescending(s => s.ObjectRange.Length).ToArray();
        long totalBytes = segments.Sum(s => (long)s.ObjectRange.Length);
        long doneBytes = 0;
        bool parallel = _runtime.IsThreadSafe && segments.Length > 1 && Environment.ProcessorCount > 1;
        var tally = new HeapTally(heap.FreeType?.MethodTable ?? 0);
        var damage = new HeapDamageLog(_limits.MaxCorruptRanges);
        walker.ReadAhead(segments);

        void Walk(ClrSegment segment, ref StatsVisitor visitor)
        {
            (long count, ulong size) = (visitor.FreeCount, visitor.FreeSize);
            walker.Walk(segment, ref visitor, cancel, damage);
            tally.Segment(segment.Kind, visitor.FreeCount - count, visitor.FreeSize - size);
            long done = Interlocked.Add(ref doneBytes, (long)segment.ObjectRange.Length);
            progress?.Report(new ProgressReport(done, totalBytes, "walking the GC heap"));
        }

        if (parallel)
        {
            var options = new ParallelOptions { CancellationToken = cancel, MaxDegreeOfParallelism = Environment.ProcessorCount };
            Parallel.ForEach(segments, options, tally.NewVisitor,
                (segment, _, local) => { Walk(segment, ref local); return local; },
                tally.Add);
        }
        else
        {
            var local = tally.NewVisitor();
            foreach (var segment in segments)
            {
                cancel.ThrowIfCancellationRequested();
                Walk(segment, ref local);
            }
            tally.Add(local);
        }

        HeapStats result = tally.Result(heap.Segments, parallel, watch.Elapsed.TotalSeconds, damage);
        _heapStats = result;
        return result;
    }

    public GcHeap GcHeapLayout()
    {
        ClrHeap heap = _runtime.Heap;
        var subHeaps = ImmutableArray.CreateBuilder<GcSubHeap>();
        var all = ImmutableArray.CreateBuilder<GcSegment>();
        foreach (ClrSubHeap sub in heap.SubHeaps)
        {
            var segs = sub.Segments
                .OrderBy(s => KindOrder(s.Kind)).ThenBy(s => s.Start)
                .Select(s => new GcSegment(
                    Heap: sub.Index,
                    Kind: KindName(s.Kind),
                    Address: s.Address,
                    Start: s.ObjectRange.Start,
                    Allocated: s.ObjectRange.End,
                    CommittedStart: s.CommittedMemory.Start,
                    CommittedEnd: s.CommittedMemory.End,
                    ReservedStart: s.ReservedMemory.Start,
                    ReservedEnd: s.ReservedMemory.End,
                    AllocatedSize: s.ObjectRange.Length,
                    CommittedSize: s.CommittedMemory.Length))
                .ToImmutableArray();
            subHeaps.Add(new GcSubHeap(sub.Index, sub.Address, sub.HasRegions, segs));
            all.AddRange(segs);
        }
        var segments = all.ToImmutable();
        return new GcHeap(
            heap.IsServer,
            heap.SubHeaps.Any(h => h.HasRegions),
            subHeaps.ToImmutable(),
            segments,
            segments.Aggregate(0UL, (a, s) => a + s.AllocatedSize),
            segments.Aggregate(0UL, (a, s) => a + s.CommittedSize));
    }

    internal static string KindName(GCSegmentKind kind) => kind switch
    {
        GCSegmentKind.Generation0 => "gen0",
        GCSegmentKind.Generation1 => "gen1",
        GCSegmentKind.Generation2 => "gen2",
        GCSegmentKind.Large => "loh",
        GCSegmentKind.Pinned => "poh",
        GCSegmentKind.Frozen => "frozen",
        GCSegmentKind.Ephemeral => "ephemeral",
        _ => kind.ToString().ToLowerInvariant(),
    };

    // The order `eeheap -gc` prints: generations, then NonGC, LOH, POH.
    private static int KindOrder(GCSegmentKind kind) => kind switch
    {
        GCSegmentKind.Generation0 => 0,
        GCSegmentKind.Generation1 => 1,
        GCSegmentKind.Generation2 => 2,
        GCSegmentKind.Ephemeral => 3,
        GCSegmentKind.Frozen => 4,
        GCSegmentKind.Large => 5,
        GCSegmentKind.Pinned => 6,
        _ => 7,
    };


    public FinalizerQueue FinalizerQueueInfo(CancellationToken cancel)
    {
        ClrHeap heap = RequireHeap();
        int pointerSize = _target.DataReader.PointerSize;

        var finalizable = GroupByType(heap.EnumerateFinalizableObjects(), cancel);
        var ready = GroupByType(heap.EnumerateFinalizerRoots().Select(r => r.Object), cancel);

        var heaps = ImmutableArray.CreateBuilder<FinalizerHeap>();
        long[] generations = new long[3];
        foreach (ClrSubHeap sub in heap.SubHeaps)
        {
            long[] gens = new long[3];
            for (int g = 0; g < 3 && g < sub.GenerationalFinalizableObjects.Length; g++)
                gens[g] = (long)(sub.GenerationalFinalizableObjects[g].Length / (ulong)pointerSize);
            for (int g = 0; g < 3; g++)
                generations[g] += gens[g];
            heaps.Add(new FinalizerHeap(sub.Index, gens[0], gens[1], gens[2], (long)(sub.FinalizerQueueRoots.Length / (ulong)pointerSize)));
        }

        int sta = 0, mta = 0, free = 0;
        foreach (var rcw in _runtime.EnumerateRcwCleanupData())
        {
            // The same split as SOS: no owning thread means the MTA.
            if (rcw.IsFreeThreaded)
                free++;
            else if (rcw.Thread == 0)
                mta++;
            else
                sta++;
        }

        return new FinalizerQueue(
            finalizable,
            ready,
            finalizable.Sum(t => t.Count),
            ready.Sum(t => t.Count),
            [.. generations],
            heaps.ToImmutable(),
            sta, mta, free,
            _runtime.EnumerateSyncBlockCleanupData().Take(_limits.MaxSyncBlocks).Count());
    }

    private static ImmutableArray<TypeCount> GroupByType(IEnumerable<ClrObject> objects, CancellationToken cancel)
    {
        var tally = new Dictionary<ulong, (ClrType Type, long Count, ulong Size)>();
        foreach (ClrObject obj in objects)
        {
            cancel.ThrowIfCancellationRequested();
            if (obj.Type is not { } type)
                continue;
            tally[type.MethodTable] = tally.TryGetValue(type.MethodTable, out var t)
                ? (type, t.Count + 1, t.Size + obj.Size)
                : (type, 1, obj.Size);
        }
        return tally
            .Select(kv => new TypeCount(kv.Key, TypeName(kv.Value.Type), kv.Value.Count, kv.Value.Size))
            .OrderBy(t => t.Size).ThenBy(t => t.Name, StringComparer.Ordinal)
            .ToImmutableArray();
    }
}
