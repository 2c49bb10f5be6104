using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Analysis;

/// <summary>
/// The object graph of one dump, built once: every object of the GC heap
/// (free space left out) as an index, in address order; its references as
/// compressed rows (no per-object allocation); the GC roots with their kind;
/// the dominator tree over a virtual super-root and the retained size of
/// every object.
///
/// One parallel walk reads each object and its references together (the
/// references straight from the walker's buffer, through each type's
/// pointer layout); the references are then resolved to indices. Memory per
/// object, kept: address 4 (its offset in its segment, in units of the
/// segment's alignment, in per-segment arrays, which also serve the address
/// lookup), type 2 (4 beyond 65,536 types), size 4, row start 4, idom 4,
/// retained 4 (sizes of 4 GiB and more aside), plus 4 per reference.
/// Immutable once built.
/// </summary>
public sealed partial class HeapGraph
{
    // Objects are looked up by address through per-segment buckets of this
    // many bytes (2^8): a bucket holds a few objects, whose offsets share a
    // cache line or two; the table costs under a byte per object.
    private const int BucketShift = 8;

    private readonly TypeColumn _type;
    private readonly Column<uint> _size;
    // Objects of 4 GB and more (arrays with gcAllowVeryLargeObjects) keep
    // their size here; _size holds uint.MaxValue for them.
    private readonly Dictionary<int, ulong> _hugeSizes;
    private readonly Column<int> _edgeStart;
    private readonly Column<int> _edges;
    private readonly SegmentIndex[] _segments;
    private readonly GraphType[] _types;
    private readonly GraphRoot[] _roots;
    private readonly string[] _rootNames;
    private readonly int[] _rootTargets;
    private readonly Column<int> _idom;
    private readonly Column<uint> _retained;
    // Retained sizes of 4 GiB and more; _retained holds uint.MaxValue for them.
    private readonly Dictionary<int, ulong> _hugeRetained;
    private readonly GraphDamage _damage;

    /// <summary>Objects in the graph (free space excluded).</summary>
    public int ObjectCount => _type.Length;

    public int EdgeCount => _edges.Length;

    public int SuperRoot => _type.Length;

    public double BuildSeconds { get; }

    public int DominatorPasses { get; }

    /// <summary>
    /// What the build could not follow: heap ranges that hold no valid
    /// object (the walk went around them, as heap_stats does) and non-null
    /// references that name no object of the graph (into such a range, or
    /// a damaged field). Reachability and retained sizes are lower bounds
    /// when either is not zero.
    /// </summary>
    internal readonly record struct GraphDamage(CorruptRange[] Ranges, long RangeCount, ulong UnwalkedBytes, long DanglingReferences);

    /// <summary>One segment's objects: their addresses, ascending, as offsets
    /// from Start shifted right by Shift (the alignment every object of the
    /// segment has: 4 bytes of an address instead of 8), and a bucket table
    /// from (address - Start) >> BucketShift to the first object at or after it.</summary>
    internal sealed record SegmentIndex(ulong Start, ulong End, int First, int Shift, Column<uint> Offset, Column<int> Buckets)
    {
        public ulong AddressAt(int i) => Start + ((ulong)Offset[i] << Shift);
    }

    /// <summary>A type of the graph: its method table and name, resolved once.</summary>
    internal readonly record struct GraphType(ulong MethodTable, string Name);

    /// <summary>One GC root: the object it holds and how.</summary>
    internal readonly record struct GraphRoot(int Object, RootKind Kind, ulong Address, uint ThreadOsId, int Name);

    internal enum RootKind : byte
    {
        Stack,
        StaticField,
        ThreadStatic,
        StrongHandle,
        PinnedHandle,
        AsyncPinnedHandle,
        RefCountedHandle,
        SizedRefHandle,
        StaticsBucket,
        FinalizerQueue,
        Other,
    }

    internal static string KindName(RootKind kind) => kind switch
    {
        RootKind.Stack => "stack",
        RootKind.StaticField => "static",
        RootKind.ThreadStatic => "thread_static",
        RootKind.StrongHandle => "strong_handle",
        RootKind.PinnedHandle => "pinned_handle",
        RootKind.AsyncPinnedHandle => "async_pinned_handle",
        RootKind.RefCountedHandle => "ref_counted_handle",
        RootKind.SizedRefHandle => "sized_ref_handle",
        // The runtime's own array of static slots (.NET 9+): a static root
        // without a field name.
        RootKind.StaticsBucket => "static",
        RootKind.FinalizerQueue => "finalizer_queue",
        _ => "other",
    };

    private HeapGraph(TypeColumn type, Column<uint> size, Dictionary<int, ulong> hugeSizes, Column<int> edgeStart, Column<int> edges,
        SegmentIndex[] segments, GraphType[] types, GraphRoot[] roots, string[] rootNames, int[] rootTargets,
        Column<int> idom, Column<uint> retained, Dictionary<int, ulong> hugeRetained, int passes, double seconds, GraphDamage damage)
    {
        _damage = damage;
        _type = type;
        _size = size;
        _hugeSizes = hugeSizes;
        _edgeStart = edgeStart;
        _edges = edges;
        _segments = segments;
        _types = types;
        _roots = roots;
        _rootNames = rootNames;
        _rootTargets = rootTargets;
        _idom = idom;
        _retained = retained;
        _hugeRetained = hugeRetained;
        DominatorPasses = passes;
        BuildSeconds = seconds;
    }

    // Per-object accessors, by index (0..ObjectCount-1, objects in address order).
    public ulong AddressOf(int index)
    {
        int lo = 0, hi = _segments.Length - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) >> 1;
            if (_segments[mid].First <= index)
                lo = mid;
            else
                hi = mid - 1;
        }
        return _segments[lo].AddressAt(index - _segments[lo].First);
    }

    public ulong SizeOf(int index) => _size[index] == uint.MaxValue && _hugeSizes.TryGetValue(index, out ulong huge) ? huge : _size[index];

    public string TypeNameOf(int index) => _types[_type[index]].Name;

    public ReadOnlySpan<int> ReferencesOf(int index) => _edges.Slice(_edgeStart[index], _edgeStart[index + 1] - _edgeStart[index]);

    /// <summary>The immediate dominator's index, SuperRoot, or DominatorTree.Unreachable.</summary>
    public int ImmediateDominator(int index) => _idom[index];

    public ulong RetainedSize(int index) => _retained[index] == uint.MaxValue ? _hugeRetained[index] : _retained[index];

    /// <summary>Indices of the objects the GC roots hold, each once.</summary>
    public ReadOnlySpan<int> RootObjects => _rootTargets;

    /// <summary>The index of the object at exactly this address, or -1.</summary>
    public int IndexOf(ulong address) => IndexOf(_segments, address);

    private static int IndexOf(SegmentIndex[] segments, ulong address) => new SegmentCursor(segments).IndexOf(address);

    /// <summary>A cursor for a run of lookups (for the tests: the build makes its own).</summary>
    internal SegmentCursor Cursor() => new(_segments);

    /// <summary>
    /// The address lookup, for one lookup or a run of them (the resolution
    /// of every reference): the segment of the last lookup is kept in the
    /// cursor and tried first, as references mostly point into the segment
    /// the previous one did; its bounds, offsets and buckets are held as
    /// locals of the loop, not read back through its record each time.
    /// </summary>
    internal ref struct SegmentCursor(SegmentIndex[] segments)
    {
        private ulong _start;
        private ulong _length;
        private ulong _misaligned;
        private int _shift;
        private int _first;
        private ReadOnlySpan<uint> _offsets;
        private ReadOnlySpan<int> _buckets;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public int IndexOf(ulong address)
        {
            // One unsigned compare for "below the start or at or past the end".
            ulong offset = address - _start;
            if (offset >= _length && !Move(address, out offset))
                return -1;
            if ((offset & _misaligned) != 0)
                return -1;
            uint key = (uint)(offset >> _shift);
            int bucket = (int)(offset >> BucketShift);
            int i = _buckets[bucket];
            int end = bucket + 1 < _buckets.Length ? _buckets[bucket + 1] : _offsets.Length;
            for (; i < end; i++)
            {
                uint at = _offsets[i];
                if (at == key)
                    return _first + i;
                if (at > key)
                    break;
            }
            return -1;
        }

        private bool Move(ulong address, out ulong offset)
        {
            offset = 0;
            int lo = 0, hi = segments.Length - 1;
            while (lo <= hi)
            {
                int mid = (lo + hi) >> 1;
                if (segments[mid].Start <= address)
                    lo = mid + 1;
                else
                    hi = mid - 1;
            }
            if (hi < 0 || address >= segments[hi].End)
                return false;
            SegmentIndex seg = segments[hi];
            (_start, _length, _shift, _first) = (seg.Start, seg.End - seg.Start, seg.Shift, seg.First);
            _misaligned = (1UL << seg.Shift) - 1;
            _offsets = seg.Offset.Span;
            _buckets = seg.Buckets.Span;
            offset = address - _start;
            return true;
        }
    }

    // ------------------------------------------------------------- building

    /// <summary>Assigns one type index (and pointer layout) per method table,
    /// shared by the walkers; with `native`, the layout holds the type's
    /// native pointer slots too.</summary>
    internal sealed class TypeTable(IMemoryReader memory, NativeFieldRecord? native = null)
    {
        private readonly Dictionary<ulong, (int Index, ReferenceLayout Layout)> _byMt = [];
        private readonly List<ClrType> _types = [];

        // One lock around lookup and insertion: two walkers meeting a new
        // type at once must not both number it (the loser's number would
        // be a second, empty entry of the same type). Each walker caches
        // what it got, so the lock is taken about once per type and walker.
        public (int Index, ReferenceLayout Layout) Of(ClrType type)
        {
            lock (_types)
            {
                if (!_byMt.TryGetValue(type.MethodTable, out var known))
                {
                    _types.Add(type);
                    ReferenceLayout layout = ReferenceLayout.Of(type, memory);
                    if (native is not null)
                        layout.Native = native.SlotsOf(type);
                    _byMt[type.MethodTable] = known = (_types.Count - 1, layout);
                }
                return known;
            }
        }

        public ClrType[] All()
        {
            lock (_types)
                return [.. _types];
        }
    }

    /// <summary>Waits for a task on leaving, whatever it ended with (its result or failure is taken elsewhere).</summary>
    private sealed class Awaited(Task task) : IDisposable
    {
        public void Dispose()
        {
            try
            {
                task.Wait();
            }
            catch (AggregateException)
            {
            }
        }
    }

    private sealed class Freed(SegmentWalk?[] walks) : IDisposable
    {
        private bool _kept;

        /// <summary>The walks live on (handed to the rest of the build): leaving frees nothing.</summary>
        public void Keep() => _kept = true;

        public void Dispose()
        {
            if (_kept)
                return;
            foreach (SegmentWalk? walk in walks)
                walk?.Free();
        }
    }

    /// <summary>What the walk of one run of segments found: objects and the values of their references.</summary>
    internal sealed class SegmentWalk(int pointerSize, IMemoryReader memory, (ulong Source, ulong Target)[] dependents, int expected,
        int references, int segments, ReferenceCodec? codec)
    {
        public NativeGrowing<ulong> Address = new(expected);
        // Where each segment's objects start in the arrays (one more: the end).
        public int[] SegmentStart = new int[segments + 1];
        // All temporary: outside the GC heap, freed as soon as joined.
        public NativeGrowing<int> Type = new(expected);
        public NativeGrowing<uint> Size = new(expected);
        // Objects of 4 GiB and more: their size; Size holds uint.MaxValue.
        public List<(int Object, ulong Size)> Huge = [];
        // Where each object's references start; then the referenced
        // addresses, in object order: with a codec, their codes (4 bytes
        // each instead of 8), those escaped kept whole in Raw, in order;
        // without, all of them in Raw.
        public NativeGrowing<int> RefStart = new(expected);
        public NativeGrowing<uint> Codes = codec is null ? default : new(references);
        public NativeGrowing<ulong> Raw = new(codec is null ? references : 1024);
        public int Dependent = -1;

        public ReferenceCodec? Codec => codec;

        public int References => codec is null ? Raw.Count : Codes.Count;

        public void Free()
        {
            Address.Free();
            Type.Free();
            Size.Free();
            RefStart.Free();
            Codes.Free();
            Raw.Free();
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void AddReference(ulong target)
        {
            if (codec is null)
            {
                Raw.Add(target);
                return;
            }
            uint code = codec.Encode(target);
            Codes.Add(code);
            if (code == ReferenceCodec.Escaped)
                Raw.Add(target);
        }

        // Runs once per object, from the walk's first object on: compiled
        // optimised at once, not first in tier-0 and then instrumented code
        // (TieredPGO), which made the whole walk a third slower.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Add(ulong address, int type, ulong size, ReferenceLayout layout, ReadOnlySpan<byte> bytes)
        {
            if (size >= uint.MaxValue)
                Huge.Add((Address.Count, size));
            Address.Add(address);
            Type.Add(type);
            Size.Add(size >= uint.MaxValue ? uint.MaxValue : (uint)size);
            RefStart.Add(References);
            if (Dependent < 0)
                Dependent = FirstAtOrAfter(dependents, address);
            while (Dependent < dependents.Length && dependents[Dependent].Source <= address)
            {
                if (dependents[Dependent].Source == address)
                    AddReference(dependents[Dependent].Target);
                Dependent++;
            }
            if (layout.LoaderAllocator != 0)
                AddReference(layout.LoaderAllocator);
            if (!layout.HasReferences)
                return;
            if ((ulong)bytes.Length < size)
            {
                // The object runs past the walker's buffer: read all of it.
                if (size > int.MaxValue)
                    return;
                byte[] whole = ArrayPool<byte>.Shared.Rent((int)size);
                int read = memory.Read(address, whole.AsSpan(0, (int)size));
                layout.Collect(whole.AsSpan(0, read), pointerSize, this);
                ArrayPool<byte>.Shared.Return(whole);
                return;
            }
            layout.Collect(bytes, pointerSize, this);
        }

        private static int FirstAtOrAfter((ulong Source, ulong Target)[] list, ulong address)
        {
            int lo = 0, hi = list.Length;
            while (lo < hi)
            {
                int mid = (lo + hi) >> 1;
                if (list[mid].Source < address)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            return lo;
        }
    }

    private struct GraphVisitor(SegmentWalk into, TypeTable types, ulong freeMt, HeapTally? tally, NativeFieldRecord? native)
        : IObjectBytesVisitor
    {
        // heap_stats's counts, when the walk serves it too: by the walk's
        // own type number (found for the graph anyway), free space apart.
        private readonly bool _counting = tally is not null;
        private long[] _counts = [];
        private ulong[] _sizes = [];
        public long FreeCount;
        public ulong FreeSize;
        private ClrType? _freeType;
        // Where the native pointer fields of the segment walked go, when
        // they are recorded (NativeFieldRecord).
        public List<NativeFieldRecord.Field>? NativeInto;
        // The types this walker met, by method table, in a small
        // direct-mapped table: objects of a few types alternate, and a
        // dictionary's lookup (generic library code, run first as tier-0
        // code) cost more than the rest of the step.
        private const int CacheSlots = 256;
        private ulong[]? _cachedMt;
        private int[]? _cachedType;
        private ReferenceLayout?[]? _cachedLayout;
        // Every type it met: two frequent types in one slot cost a lookup
        // here, never the shared table's lock.
        private Dictionary<ulong, (int, ReferenceLayout)>? _local;

        // Once per object: optimised at once (see SegmentWalk.Add).
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Visit(ulong address, ulong methodTable, ClrType type, ulong size, ReadOnlySpan<byte> bytes)
        {
            if (methodTable == freeMt)
            {
                if (_counting)
                    (FreeCount, FreeSize, _freeType) = (FreeCount + 1, FreeSize + size, type);
                return;
            }
            _cachedMt ??= new ulong[CacheSlots];
            _cachedType ??= new int[CacheSlots];
            _cachedLayout ??= new ReferenceLayout?[CacheSlots];
            int slot = (int)((methodTable >> 3) ^ (methodTable >> 11)) & (CacheSlots - 1);
            ReferenceLayout? layout = _cachedLayout[slot];
            if (_cachedMt[slot] != methodTable || layout is null)
            {
                _local ??= [];
                if (!_local.TryGetValue(methodTable, out var known))
                    _local[methodTable] = known = types.Of(type);
                (_cachedType[slot], layout) = known;
                _cachedLayout[slot] = layout;
                _cachedMt[slot] = methodTable;
            }
            int number = _cachedType[slot];
            if (_counting)
            {
                if (number >= _counts.Length)
                {
                    int length = Math.Max(number + 1, 2 * _counts.Length);
                    Array.Resize(ref _counts, length);
                    Array.Resize(ref _sizes, length);
                }
                _counts[number]++;
                _sizes[number] += size;
            }
            into.Add(address, number, size, layout, bytes);
            if (layout.Native.Length > 0)
                native!.Add(NativeInto!, address, bytes, layout.Native);
        }

        /// <summary>Hands this walker's counts to heap_stats, by method table.</summary>
        public readonly void Count(HeapTally tally, ulong freeMt)
        {
            var tallies = new Dictionary<ulong, HeapTally.Tally>();
            if (FreeCount > 0)
                tallies[freeMt] = new HeapTally.Tally { Type = _freeType, Count = FreeCount, Size = FreeSize };
            ClrType[] met = types.All();
            for (int t = 0; t < _counts.Length; t++)
            {
                if (_counts[t] > 0)
                    tallies[met[t].MethodTable] = new HeapTally.Tally { Type = met[t], Count = _counts[t], Size = _sizes[t] };
            }
            tally.Add(tallies);
        }
    }

    /// <summary>
    /// Walks the heap reading every object's references, enumerates the
    /// roots and computes the dominator tree and retained sizes. Reports
    /// progress in bytes of heap (walk, then resolution, then dominators);
    /// honours cancellation within every step.
    /// </summary>
    /// <param name="compressReferences">false: keep every reference value
    /// in 64 bits during the walk, as the walk does when no ReferenceCodec
    /// fits the heap (for the tests: the graph must be the same).</param>
    public static HeapGraph Build(ClrRuntime runtime, HeapWalker walker, IMemoryReader memory,
        IProgress<ProgressReport>? progress, CancellationToken cancel, EngineLimits? limits = null, bool compressReferences = true)
    {
        using Walked walked = Walk(runtime, walker, memory, progress, cancel, limits, compressReferences: compressReferences);
        return Finish(walked, progress, cancel);
    }

    /// <summary>Each step's wall and process CPU time, logged (stderr) to
    /// show where a build spends.</summary>
    internal sealed class StageLog
    {
        public readonly Stopwatch Watch = Stopwatch.StartNew();
        public readonly List<string> Stages = [];
        private double _lastWall, _lastCpu = Environment.CpuUsage.TotalTime.TotalSeconds;
        private (long AnonymousMiB, long Minor, long Major)? _lastMemory = MemoryNow();

        public void Add(string name)
        {
            double wall = Watch.Elapsed.TotalSeconds, cpu = Environment.CpuUsage.TotalTime.TotalSeconds;
            var memory = MemoryNow();
            string faults = "";
            if (memory is { } m && _lastMemory is { } last)
            {
                faults = $", anonymous {m.AnonymousMiB:N0} MiB, faults {m.Minor - last.Minor:N0}";
                if (m.Major > last.Major)
                    faults += $" ({m.Major - last.Major:N0} major)";
            }
            Stages.Add($"{name} {wall - _lastWall:F2} s (CPU {cpu - _lastCpu:F2} s{faults})");
            (_lastWall, _lastCpu, _lastMemory) = (wall, cpu, memory);
        }
    }

    /// <summary>
    /// A heap walked for its graph (the build's first stage), which the rest
    /// of the build (Finish) starts from, on this thread or another. It owns
    /// the walk's temporaries (outside the GC heap): Finish frees them as it
    /// joins them, and disposing it frees what is left (a build given up
    /// after its walk).
    /// </summary>
    internal sealed class Walked : IDisposable
    {
        public required ClrRuntime Runtime { get; init; }
        public required SegmentWalk[] Walks { get; init; }
        public required SegmentIndex[] Index { get; init; }
        public required (int First, int Count, long Bytes)[] Runs { get; init; }
        public required int[] BySize { get; init; }
        public required int[] RunFirst { get; init; }
        public required int Objects { get; init; }
        public required TypeTable Types { get; init; }
        public required long TotalBytes { get; init; }
        public required long DoneBytes { get; init; }
        public required StageLog Log { get; init; }

        /// <summary>The segments were walked on several threads.</summary>
        public required bool Parallel { get; init; }

        /// <summary>What the walk went around (shared with the graph it becomes).</summary>
        public required HeapDamageLog Damage { get; init; }

        public void Dispose() => new Freed(Walks).Dispose();
    }

    /// <summary>
    /// The build's first stage: every object with the addresses it
    /// references, and the address lookup. With `tally`, the walk also
    /// counts every object for heap_stats (free space included, which the
    /// graph leaves out), and its progress is heap_stats's: bytes walked out
    /// of the heap's; else out of the whole build's (Build). With `native`,
    /// it records every object's non-zero native pointer fields there.
    /// </summary>
    internal static Walked Walk(ClrRuntime runtime, HeapWalker walker, IMemoryReader memory,
        IProgress<ProgressReport>? progress, CancellationToken cancel, EngineLimits? limits = null, HeapTally? tally = null,
        NativeFieldRecord? native = null, bool compressReferences = true)
    {
        var damage = new HeapDamageLog((limits ?? EngineLimits.Default).MaxCorruptRanges);
        var log = new StageLog();
        ClrHeap heap = runtime.Heap;
        var segments = heap.Segments.Where(s => s.ObjectRange.Length > 0).OrderBy(s => s.ObjectRange.Start).ToArray();
        CheckOffsetsFit(segments);
        ReferenceCodec? codec = compressReferences
            ? ReferenceCodec.For([.. segments.Select(s => (s.ObjectRange.Start, s.ObjectRange.End))], memory.PointerSize)
            : null;
        bool parallel = runtime.IsThreadSafe && segments.Length > 1 && Environment.ProcessorCount > 1;
        var options = new ParallelOptions { CancellationToken = cancel, MaxDegreeOfParallelism = parallel ? Environment.ProcessorCount : 1 };
        long totalBytes = Math.Max(1, segments.Sum(s => (long)s.ObjectRange.Length));
        long total = tally is null ? 3 * totalBytes : totalBytes;
        long doneBytes = 0;

        // 1. Objects and the addresses they reference. The segments, in
        //    address order, are cut into runs of about equal bytes, a few
        //    per processor; a walker takes one run at a time (the largest
        //    first, so that the workers end together) and keeps its objects
        //    in address order in arrays of its own, big enough for huge
        //    pages (a region is only a few MiB of heap).
        var types = new TypeTable(memory, native);
        ulong freeMt = heap.FreeType?.MethodTable ?? 0;
        (ulong, ulong)[] dependents = DependentHandles(runtime);
        (int First, int Count, long Bytes)[] runs = Runs(segments, 4 * options.MaxDegreeOfParallelism);
        var walks = new SegmentWalk[runs.Length];
        var index = new SegmentIndex[segments.Length];
        var bySize = Enumerable.Range(0, runs.Length).OrderByDescending(r => runs[r].Bytes).ToArray();
        walker.ReadAhead(segments);
        // A cancelled or failed walk frees its temporaries.
        using var freed = new Freed(walks);
        Parallel.ForEach(bySize, options, r =>
        {
            // Sized for objects of 32 bytes, more than most heaps hold, so
            // that arrays rarely grow (a copy), and for as many references
            // as the run has pointer-sized slots, so that they never grow:
            // capacity that is never written is never touched and so takes
            // no memory.
            int expected = (int)Math.Min(1 << 28, runs[r].Bytes / 32 + 16);
            int references = (int)Math.Min(1 << 29, runs[r].Bytes / memory.PointerSize + 16);
            var walk = walks[r] = new SegmentWalk(memory.PointerSize, memory, dependents, expected, references, runs[r].Count, codec);
            var visitor = new GraphVisitor(walk, types, freeMt, tally, native);
            for (int i = 0; i < runs[r].Count; i++)
            {
                ClrSegment segment = segments[runs[r].First + i];
                walk.SegmentStart[i] = walk.Address.Count;
                (long freeCount, ulong freeSize) = (visitor.FreeCount, visitor.FreeSize);
                visitor.NativeInto = native?.Segment(segment);
                walker.WalkBytes(segment, ref visitor, cancel, damage);
                tally?.Segment(segment.Kind, visitor.FreeCount - freeCount, visitor.FreeSize - freeSize);
                long done = Interlocked.Add(ref doneBytes, (long)segment.ObjectRange.Length);
                progress?.Report(new ProgressReport(done, total, "walking the GC heap"));
            }
            walk.SegmentStart[runs[r].Count] = walk.Address.Count;
            Lookup(walk, segments, runs[r].First, index);
            if (tally is not null)
                visitor.Count(tally, freeMt);
        });
        // Each run numbered its objects from 0: now they follow each other.
        var runFirst = new int[runs.Length];
        int first = 0;
        for (int r = 0; r < runs.Length; r++)
        {
            runFirst[r] = first;
            for (int i = 0; i < runs[r].Count; i++)
            {
                int s = runs[r].First + i;
                index[s] = index[s] with { First = first + index[s].First };
            }
            first = checked(first + walks[r].SegmentStart[runs[r].Count]);
        }
        log.Add(codec is null ? "walk (references in 64 bits)" : "walk");
        var walked = new Walked
        {
            Runtime = runtime, Walks = walks, Index = index, Runs = runs, BySize = bySize, RunFirst = runFirst, Objects = first,
            Types = types, TotalBytes = totalBytes, DoneBytes = doneBytes, Log = log, Parallel = parallel, Damage = damage,
        };
        freed.Keep();
        return walked;
    }

    /// <summary>
    /// The rest of a build, from its walk: roots, references resolved, the
    /// graph's arrays joined, dominators and retained sizes. Frees the
    /// walk's temporaries whatever it ends with. Reports progress after the
    /// walk's third of the build; honours cancellation within every step.
    /// </summary>
    internal static HeapGraph Finish(Walked walked, IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        (ClrRuntime runtime, SegmentWalk[] walks, SegmentIndex[] index, var runs, int[] bySize, int[] runFirst, int n)
            = (walked.Runtime, walked.Walks, walked.Index, walked.Runs, walked.BySize, walked.RunFirst, walked.Objects);
        (TypeTable types, HeapDamageLog damage, bool parallel, long totalBytes, long doneBytes)
            = (walked.Types, walked.Damage, walked.Parallel, walked.TotalBytes, walked.DoneBytes);
        long total = 3 * totalBytes;
        var options = new ParallelOptions { CancellationToken = cancel, MaxDegreeOfParallelism = parallel ? Environment.ProcessorCount : 1 };
        (Stopwatch watch, List<string> stages) = (walked.Log.Watch, walked.Log.Stages);
        void Stage(string name) => walked.Log.Add(name);
        using var freed = new Freed(walks);

        // The roots need only the address lookup: with processors to spare
        // they are enumerated (through ClrMD, which the walk has shown to be
        // thread-safe here) while the references are resolved and joined.
        // A failed build waits for them before it leaves: the caller may
        // use the runtime again at once.
        var rootNames = new List<string>();
        Task<GraphRoot[]> rootsTask = parallel
            ? Task.Run(() => Roots(runtime, index, rootNames, cancel), cancel)
            : Task.FromResult(Roots(runtime, index, rootNames, cancel));
        using var rootsDone = new Awaited(rootsTask);

        // 2. Each run's references resolved to indices, in place over its
        //    raw addresses (an int takes half a ulong's room); then the
        //    object arrays and rows joined.
        var resolvedCounts = new int[runs.Length];
        var dangling = new long[runs.Length];
        Parallel.ForEach(bySize, options, r =>
        {
            SegmentWalk walk = walks[r];
            ReferenceCodec? codec = walk.Codec;
            ReadOnlySpan<ulong> raw = walk.Raw.Span;
            ReadOnlySpan<uint> codes = walk.Codes.Span;
            // Each index is written over a value already read.
            Span<int> resolved = Resolved(walk);
            Span<int> refStart = walk.RefStart.Span;
            int objects = walk.RefStart.Count;
            int references = walk.References;
            int written = 0, escaped = 0;
            var cursor = new SegmentCursor(index);
            for (int k = 0; k < objects; k++)
            {
                int from = refStart[k];
                int to = k + 1 < objects ? refStart[k + 1] : references;
                refStart[k] = written;
                for (int i = from; i < to; i++)
                {
                    ulong address;
                    if (codec is null)
                        address = raw[i];
                    else if (codes[i] != ReferenceCodec.Escaped)
                        address = codec.Decode(codes[i]);
                    else
                        address = raw[escaped++];
                    int target = cursor.IndexOf(address);
                    if (target >= 0)
                        resolved[written++] = target;
                    else
                        dangling[r]++;
                }
                if ((k & 0xFFFF) == 0)
                    cancel.ThrowIfCancellationRequested();
            }
            resolvedCounts[r] = written;
            // The indices take the start of the values' room: the rest goes
            // back now, before the join needs new memory.
            if (codec is null)
            {
                walk.Raw.Keep((long)written * sizeof(int));
            }
            else
            {
                walk.Codes.Keep((long)written * sizeof(int));
                walk.Raw.Free();
            }
            long done = Interlocked.Add(ref doneBytes, runs[r].Bytes);
            progress?.Report(new ProgressReport(done, total, "resolving references"));
        });
        Stage("resolve");
        long edgeCount = resolvedCounts.Sum(c => (long)c);
        if (edgeCount > Array.MaxLength)
            throw new EngineException(ErrorCodes.Internal, $"The heap has {edgeCount:N0} references, more than one graph can hold.");

        ClrType[] walkedTypes = types.All();
        var typeColumn = TypeColumn.Allocate(n, walkedTypes.Length);
        var sizeColumn = Column<uint>.Allocate(n, zeroed: false);
        var huge = new Dictionary<int, ulong>();
        var edgeStartColumn = Column<int>.Allocate(n + 1, zeroed: false);
        var edgesColumn = Column<int>.Allocate((int)edgeCount, zeroed: false);
        var edgeFirst = new int[runs.Length + 1];
        for (int r = 0; r < runs.Length; r++)
        {
            edgeFirst[r + 1] = edgeFirst[r] + resolvedCounts[r];
            foreach (var (k, sz) in walks[r].Huge)
                huge[runFirst[r] + k] = sz;
        }
        // The runs are joined in parallel, each into its own part of the
        // graph's arrays; each temporary is freed as soon as it is copied:
        // the graph's arrays fill up as the walk's empty out.
        Parallel.ForEach(bySize, options, r =>
        {
            SegmentWalk walk = walks[r];
            int o = runFirst[r];
            typeColumn.Write(o, walk.Type.Span);
            walk.Type.Free();
            walk.Size.Span.CopyTo(sizeColumn.Writable[o..]);
            walk.Size.Free();
            ReadOnlySpan<int> refStart = walk.RefStart.Span;
            Span<int> edgeStart = edgeStartColumn.Writable.Slice(o, refStart.Length);
            for (int k = 0; k < refStart.Length; k++)
                edgeStart[k] = edgeFirst[r] + refStart[k];
            walk.RefStart.Free();
            Resolved(walk)[..resolvedCounts[r]].CopyTo(edgesColumn.Writable[edgeFirst[r]..]);
            walk.Codes.Free();
            walk.Raw.Free();
        });
        int edgeBase = edgeFirst[runs.Length];
        edgeStartColumn.Writable[n] = edgeBase;
        Stage("join");
        GraphType[] graphTypes = walkedTypes.Select(t => new GraphType(t.MethodTable, DumpSession.TypeName(t))).ToArray();
        cancel.ThrowIfCancellationRequested();

        // 3. Roots, then dominators and retained sizes.
        GraphRoot[] roots = rootsTask.GetAwaiter().GetResult();
        int[] rootTargets = roots.Select(r => r.Object).Distinct().Order().ToArray();
        Stage("roots (the rest, beside resolve+join)");
        var sub = new ScaledProgress(progress, 2 * totalBytes, totalBytes, total);
        using DominatorTree tree = DominatorTree.Compute(n, edgeStartColumn.Span, edgesColumn.Span, rootTargets, sub, cancel,
            () => Stage("depth-first search"));
        Stage($"dominators ({tree.Passes} passes)");
        RetainedSizes retained = tree.RetainedSizes(sizeColumn.Span, huge);
        Stage("retained");
        Console.Error.WriteLine($"engine: heap graph of {n:N0} objects, {edgeCount:N0} references: {string.Join(", ", stages)}");
        progress?.Report(new ProgressReport(total, total, "computing retained sizes"));
        return new HeapGraph(typeColumn, sizeColumn, huge, edgeStartColumn, edgesColumn, index, graphTypes, roots, [.. rootNames], rootTargets,
            tree.Idom, retained.Small, retained.Huge, tree.Passes, watch.Elapsed.TotalSeconds,
            new GraphDamage([.. damage.CorruptRanges], damage.Count, damage.Bytes, dangling.Sum()));
    }

    /// <summary>The room a run's resolved references are written to: over
    /// its codes, or without a codec over its 64-bit values.</summary>
    private static Span<int> Resolved(SegmentWalk walk) => walk.Codec is null
        ? System.Runtime.InteropServices.MemoryMarshal.Cast<ulong, int>(walk.Raw.Span)
        : System.Runtime.InteropServices.MemoryMarshal.Cast<uint, int>(walk.Codes.Span);

    /// <summary>
    /// The address lookup's entries of one walked run's segments (objects
    /// numbered from the run's first), made as soon as the run is walked:
    /// its 64-bit addresses become 32-bit offsets (kept for good), written
    /// over them, each once its address is read (4 bytes over the first 4
    /// of 8: never over one not read yet); the rest of the addresses' room
    /// goes back. The lookup takes no fresh memory.
    /// </summary>
    private static unsafe void Lookup(SegmentWalk walk, ClrSegment[] segments, int firstSegment, SegmentIndex[] index)
    {
        int objects = walk.Address.Count;
        NativeBlock block = walk.Address.Detach();
        var addresses = new ReadOnlySpan<ulong>(block.Pointer, objects);
        var all = new Column<uint>((uint*)block.Pointer, objects, block);
        for (int i = 0; i + 1 < walk.SegmentStart.Length; i++)
        {
            ClrSegment segment = segments[firstSegment + i];
            int from = walk.SegmentStart[i], count = walk.SegmentStart[i + 1] - from;
            index[firstSegment + i] = Offsets(segment.ObjectRange.Start, segment.ObjectRange.End, from, addresses.Slice(from, count),
                all.Part(from, count));
        }
        block.Keep((long)objects * sizeof(uint));
    }

    /// <summary>Refuses, before the walk, a segment too big for 32-bit offsets
    /// at an alignment of 8 (beyond 32 GiB; regions are a few MiB).</summary>
    private static void CheckOffsetsFit(ClrSegment[] segments)
    {
        foreach (ClrSegment segment in segments)
        {
            if ((segment.ObjectRange.Length - 1) >> 3 > uint.MaxValue)
                throw new EngineException(ErrorCodes.Internal,
                    $"The GC heap segment at 0x{segment.ObjectRange.Start:x} spans {segment.ObjectRange.Length:N0} bytes, "
                    + "more than the heap graph can index (32 GiB per segment).");
        }
    }

    /// <summary>
    /// One segment's entry of the address lookup: its objects' addresses
    /// written into <paramref name="into"/> as offsets from the segment's
    /// start in units of the largest alignment (up to 8 bytes) they all
    /// share, which fits 32 bits for any segment below 32 GiB (16 GiB at an
    /// alignment of 4, and so on).
    /// </summary>
    private static SegmentIndex Offsets(ulong start, ulong end, int first, ReadOnlySpan<ulong> addresses, Column<uint> into)
    {
        ulong all = 0;
        foreach (ulong address in addresses)
            all |= address - start;
        int shift = Math.Min(3, BitOperations.TrailingZeroCount(all | 8));
        // Only objects off the pointer alignment (a damaged heap) in a
        // segment of 4 GiB or more get here: CheckOffsetsFit took the rest.
        if (end > start && (end - start - 1) >> shift > uint.MaxValue)
            throw new EngineException(ErrorCodes.Internal,
                $"The GC heap segment at 0x{start:x} holds objects off the pointer alignment: its {end - start:N0} bytes are more "
                + "than the heap graph can index at that alignment.");
        Span<uint> offsets = into.Writable;
        for (int i = 0; i < addresses.Length; i++)
            offsets[i] = (uint)((addresses[i] - start) >> shift);
        return new SegmentIndex(start, end, first, shift, into, Buckets(end - start, shift, into.Span));
    }

    /// <summary>The process's anonymous resident memory (MiB) and its minor
    /// and major page faults so far (Linux; elsewhere nothing), for the
    /// build's log of where its memory goes: in a VM a fault costs
    /// microseconds, so their count shows what fresh memory costs.</summary>
    private static (long AnonymousMiB, long Minor, long Major)? MemoryNow()
    {
        if (!OperatingSystem.IsLinux())
            return null;
        long anonymous = 0;
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            // "RssAnon:     123456 kB"
            if (line.StartsWith("RssAnon:", StringComparison.Ordinal)
                && long.TryParse(line["RssAnon:".Length..].Trim().Split(' ')[0], out long kib))
                anonymous = kib >> 10;
        }
        // "pid (name) state ppid pgrp session tty tpgid flags minflt cminflt majflt ...": the name may hold spaces.
        string stat = File.ReadAllText("/proc/self/stat");
        string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        long.TryParse(fields.ElementAtOrDefault(7), out long minor);
        long.TryParse(fields.ElementAtOrDefault(9), out long major);
        return (anonymous, minor, major);
    }

    /// <summary>The segments (in address order) cut into about this many
    /// runs of consecutive segments, of about equal bytes each.</summary>
    private static (int First, int Count, long Bytes)[] Runs(ClrSegment[] segments, int wanted)
    {
        long total = segments.Sum(s => (long)s.ObjectRange.Length);
        long target = Math.Max(1, total / Math.Max(1, wanted));
        var runs = new List<(int, int, long)>();
        int first = 0;
        long bytes = 0;
        for (int s = 0; s < segments.Length; s++)
        {
            bytes += (long)segments[s].ObjectRange.Length;
            if (bytes >= target || s == segments.Length - 1)
            {
                runs.Add((first, s - first + 1, bytes));
                first = s + 1;
                bytes = 0;
            }
        }
        return [.. runs];
    }

    /// <summary>Maps the dominator step's progress onto the last third of the build.</summary>
    private sealed class ScaledProgress(IProgress<ProgressReport>? inner, long from, long span, long total) : IProgress<ProgressReport>
    {
        public void Report(ProgressReport value) =>
            inner?.Report(new ProgressReport(from + span * value.Done / Math.Max(1, value.Total), total, value.Message));
    }

    /// <summary>
    /// Where one type keeps its references. Objects: fixed offsets. Arrays:
    /// the offsets within element 0, repeated every component size. Taken
    /// once per type from ClrMD's GCDesc, by walking a synthetic object whose
    /// every slot is non-zero (the walk reports exactly the pointer slots).
    /// </summary>
    internal sealed class ReferenceLayout
    {
        public int[] Offsets = [];
        public bool IsArray;
        public int ComponentSize;
        // The LoaderAllocator object of a collectible type's instances,
        // which keeps their assembly loaded (as ClrMD's references do).
        public ulong LoaderAllocator;
        // Native pointer slots (offset in the object's data, number in the
        // NativeFieldRecord), when the walk records them.
        public (int Offset, int Id)[] Native = [];

        public bool HasReferences => Offsets.Length > 0;

        public static ReferenceLayout Of(ClrType type, IMemoryReader memory)
        {
            var layout = new ReferenceLayout();
            if (type.IsCollectible && type.LoaderAllocatorHandle != 0 && memory.ReadPointer(type.LoaderAllocatorHandle, out ulong la))
                layout.LoaderAllocator = la;
            if (!type.ContainsPointers)
                return layout;
            GCDesc gcdesc = type.GCDesc;
            if (gcdesc.IsEmpty)
                return layout;
            int baseSize = type.StaticSize;
            layout.IsArray = type.IsArray || type.ComponentSize != 0;
            layout.ComponentSize = type.ComponentSize;
            int sample = layout.IsArray ? baseSize + layout.ComponentSize : baseSize;
            var buffer = new byte[Math.Max(sample, memory.PointerSize * 3)];
            Array.Fill(buffer, (byte)1);
            layout.Offsets = gcdesc.WalkObject(buffer, sample).Select(r => r.Offset).Distinct().Order().ToArray();
            return layout;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Collect(ReadOnlySpan<byte> bytes, int pointerSize, SegmentWalk into)
        {
            if (!IsArray)
            {
                foreach (int offset in Offsets)
                    Add(bytes, offset, pointerSize, into);
                return;
            }
            if (bytes.Length < pointerSize + 4)
                return;
            long length = BinaryPrimitives.ReadUInt32LittleEndian(bytes[pointerSize..]);
            for (long k = 0; k < length; k++)
            {
                long elementBase = k * ComponentSize;
                foreach (int offset in Offsets)
                {
                    long at = elementBase + offset;
                    if (at + pointerSize > bytes.Length)
                        return;
                    Add(bytes, (int)at, pointerSize, into);
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Add(ReadOnlySpan<byte> bytes, int offset, int pointerSize, SegmentWalk into)
        {
            if (offset + pointerSize > bytes.Length)
                return;
            ulong target = pointerSize == 8
                ? BinaryPrimitives.ReadUInt64LittleEndian(bytes[offset..])
                : BinaryPrimitives.ReadUInt32LittleEndian(bytes[offset..]);
            if (target != 0)
                into.AddReference(target);
        }
    }

    // A dependent handle (ConditionalWeakTable) keeps its secondary object
    // alive as long as its primary is: the GC treats it as a reference from
    // primary to secondary, and so does the graph.
    private static (ulong Source, ulong Target)[] DependentHandles(ClrRuntime runtime) =>
        [.. runtime.EnumerateHandles()
            .Where(h => h.HandleKind == ClrHandleKind.Dependent && h.Object.Address != 0 && h.Dependent.Address != 0)
            .Select(h => (h.Object.Address, h.Dependent.Address))
            .OrderBy(p => p.Item1)];

    private static GraphRoot[] Roots(ClrRuntime runtime, SegmentIndex[] index, List<string> names, CancellationToken cancel)
    {
        var roots = new List<GraphRoot>();
        foreach (ClrRoot root in runtime.Heap.EnumerateRoots())
        {
            cancel.ThrowIfCancellationRequested();
            int target = IndexOf(index, root.Object.Address);
            if (target < 0)
                continue;
            RootKind kind = root.RootKind switch
            {
                ClrRootKind.Stack => RootKind.Stack,
                ClrRootKind.FinalizerQueue => RootKind.FinalizerQueue,
                ClrRootKind.StrongHandle => RootKind.StrongHandle,
                ClrRootKind.PinnedHandle => RootKind.PinnedHandle,
                ClrRootKind.AsyncPinnedHandle => RootKind.AsyncPinnedHandle,
                ClrRootKind.RefCountedHandle => RootKind.RefCountedHandle,
                ClrRootKind.SizedRefHandle => RootKind.SizedRefHandle,
                ClrRootKind.ThreadStaticVar => RootKind.ThreadStatic,
                ClrRootKind.StaticVar => RootKind.StaticsBucket,
                _ => RootKind.Other,
            };
            uint thread = root is ClrStackRoot stack ? stack.StackFrame?.Thread?.OSThreadId ?? 0 : 0;
            roots.Add(new GraphRoot(target, kind, root.Address, thread, -1));
        }

        // The runtime keeps static reference fields in slots of shared
        // object arrays held by handles: reached that way, every static
        // would hang under one anonymous array. Each initialised static
        // field is a root of its own, named, as the GC sees it in effect.
        var seen = new HashSet<(ulong, ulong)>();
        foreach (ClrAppDomain domain in runtime.AppDomains)
        {
            foreach (ClrModule module in domain.Modules)
            {
                foreach (ClrType type in module.EnumerateTypesWithStaticFields())
                {
                    cancel.ThrowIfCancellationRequested();
                    foreach (ClrStaticField field in type.StaticFields)
                    {
                        if (!field.IsObjectReference || !field.IsInitialized(domain))
                            continue;
                        ulong slot = field.GetAddress(domain);
                        ClrObject value = field.ReadObject(domain);
                        if (value.Address == 0 || !seen.Add((slot, value.Address)))
                            continue;
                        int target = IndexOf(index, value.Address);
                        if (target < 0)
                            continue;
                        names.Add($"{DumpSession.TypeName(type)}.{field.Name}");
                        roots.Add(new GraphRoot(target, RootKind.StaticField, slot, 0, names.Count - 1));
                    }
                }
            }
        }
        return [.. roots];
    }
}
