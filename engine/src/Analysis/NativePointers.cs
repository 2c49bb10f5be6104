using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Analysis;

/// <summary>A native address range [Start, End) the client asks about (a heap block).</summary>
public readonly record struct NativeRange(ulong Start, ulong End);

/// <summary>
/// One managed object field that holds a native pointer. Through is null
/// when the field points into the range itself; otherwise the field points at
/// a small native structure (at Through) whose pointer-sized word at
/// ThroughOffset points into the range, as a GDI+ bitmap holds its pixels.
/// </summary>
public readonly record struct NativePointer(
    ulong Object,
    ulong MethodTable,
    string Type,
    string Field,
    ulong Value,
    ulong? RangeStart,
    ulong? Through,
    int? ThroughOffset);

public readonly record struct NativePointers(
    ImmutableArray<NativePointer> Items,
    long ObjectsWalked,
    long PointerFields,
    int RangeCount,
    bool Truncated,
    ImmutableArray<CorruptRange> CorruptRanges,
    long CorruptRangeCount,
    ulong UnwalkedBytes);

/// <summary>
/// One walk of the GC heap that reads every pointer-sized native field
/// (IntPtr, UIntPtr, nint, unmanaged pointers; SafeHandle.handle is one) of
/// every object, and of the structs embedded in it one level deep. With
/// ranges, only the fields pointing into one of them, directly or through
/// one native structure, are kept (like SOS `gctonative`); without, every
/// non-zero one. Field layouts are worked out once per method table.
/// </summary>
public sealed class NativePointerScan(ClrRuntime runtime, HeapWalker walker, IMemoryReader memory, EngineLimits limits)
{
    internal readonly record struct Slot(int Offset, string Name);

    // Shared by the walkers of the segments, each behind its own lock.
    private readonly Dictionary<ulong, Slot[]> _slots = new();
    private readonly Dictionary<ulong, (int Offset, ulong RangeStart)?> _through = new();
    private NativeRange[] _ranges = [];

    /// <summary>What the walk of one segment found: its first maxItems hits, in walk order.</summary>
    private sealed class Found
    {
        public readonly List<NativePointer> Hits = [];
        public long Objects;
        public long Fields;
        public bool Overflow;
    }

    private static bool IsNativePointer(ClrElementType kind) =>
        kind is ClrElementType.NativeInt or ClrElementType.NativeUInt
            or ClrElementType.Pointer or ClrElementType.FunctionPointer;

    /// <summary>Parses the `ranges` parameter: a list of [start, end) pairs.</summary>
    public static NativeRange[] ParseRanges(JsonNode? node, EngineLimits limits)
    {
        if (node is null)
            return [];
        if (node is not JsonArray array)
            throw new EngineException(ErrorCodes.InvalidParams, "Parameter 'ranges' must be a list of [start, end] pairs.");
        if (array.Count > limits.MaxNativeRanges)
            throw new EngineException(ErrorCodes.InvalidParams, $"Parameter 'ranges' holds {array.Count} ranges; at most {limits.MaxNativeRanges} are accepted.");
        var ranges = new NativeRange[array.Count];
        for (int i = 0; i < array.Count; i++)
        {
            if (array[i] is not JsonArray { Count: 2 } pair
                || pair[0]?.GetValueKind() != JsonValueKind.Number || pair[1]?.GetValueKind() != JsonValueKind.Number)
                throw new EngineException(ErrorCodes.InvalidParams, $"ranges[{i}] must be a [start, end] pair of integers.");
            ulong start, end;
            try
            {
                start = pair[0]!.GetValue<ulong>();
                end = pair[1]!.GetValue<ulong>();
            }
            catch (Exception e) when (e is FormatException or InvalidOperationException or OverflowException)
            {
                throw new EngineException(ErrorCodes.InvalidParams, $"ranges[{i}] must be a [start, end] pair of non-negative integers.");
            }
            if (end <= start)
                throw new EngineException(ErrorCodes.InvalidParams, $"ranges[{i}] ends (0x{end:x}) at or before it starts (0x{start:x}).");
            ranges[i] = new NativeRange(start, end);
        }
        return ranges;
    }

    /// <summary>Parses the `indirect` parameter (default true).</summary>
    public static bool ParseIndirect(JsonNode? node) => node?.GetValueKind() switch
    {
        null => true,
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw new EngineException(ErrorCodes.InvalidParams, "Parameter 'indirect' must be true or false."),
    };

    private void Check(NativeRange[] ranges, int maxItems)
    {
        if (maxItems < 1 || maxItems > limits.MaxNativePointers)
            throw new EngineException(ErrorCodes.InvalidParams, $"limit must be between 1 and {limits.MaxNativePointers}.");
        _ranges = ranges.OrderBy(r => r.Start).ToArray();
        for (int i = 1; i < _ranges.Length; i++)
        {
            if (_ranges[i].Start < _ranges[i - 1].End)
                throw new EngineException(ErrorCodes.InvalidParams, $"ranges overlap at 0x{_ranges[i].Start:x}.");
        }
    }

    public NativePointers Scan(NativeRange[] ranges, bool indirect, int maxItems, IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        Check(ranges, maxItems);
        ClrHeap heap = runtime.Heap;
        var segments = heap.Segments.ToArray();
        long total = segments.Sum(s => (long)s.ObjectRange.Length);
        long done = 0;
        bool through = indirect && _ranges.Length > 0;
        var damage = new HeapDamageLog(limits.MaxCorruptRanges);
        var found = new Found[segments.Length];

        void Walk(int s)
        {
            var visitor = new Visitor(this, found[s] = new Found(), through, maxItems);
            walker.Walk(segments[s], ref visitor, cancel, damage);
            long now = Interlocked.Add(ref done, (long)segments[s].ObjectRange.Length);
            progress?.Report(new ProgressReport(now, total, "looking for native pointers"));
        }

        // As the heap statistics: segments in parallel, largest first.
        if (runtime.IsThreadSafe && segments.Length > 1 && Environment.ProcessorCount > 1)
        {
            var options = new ParallelOptions { CancellationToken = cancel, MaxDegreeOfParallelism = Environment.ProcessorCount };
            Parallel.ForEach(Enumerable.Range(0, segments.Length).OrderByDescending(s => segments[s].ObjectRange.Length), options, Walk);
        }
        else
        {
            for (int s = 0; s < segments.Length; s++)
            {
                cancel.ThrowIfCancellationRequested();
                Walk(s);
            }
        }

        return Answer(found, found.Sum(f => f.Objects), maxItems, damage);
    }

    // In segment order, as one walk of them all would have found them:
    // the first maxItems hits, and whether there were more.
    private NativePointers Answer(Found[] found, long objects, int maxItems, HeapDamageLog damage)
    {
        var hits = found.SelectMany(f => f.Hits).ToList();
        bool truncated = hits.Count > maxItems || found.Any(f => f.Overflow);
        return new NativePointers([.. hits.Take(maxItems)], objects, found.Sum(f => f.Fields), _ranges.Length, truncated,
            damage.CorruptRanges, damage.Count, damage.Bytes);
    }

    /// <summary>
    /// What Scan would answer, from the native fields another walk recorded
    /// (a complete record): the same fields in the same order, matched the
    /// same way, segment by segment (each keeps its first maxItems hits).
    /// `objects` and `damage`: what that walk counted and went around.
    /// </summary>
    public NativePointers Answer(NativeFieldRecord record, long objects, HeapDamageLog damage, NativeRange[] ranges, bool indirect,
        int maxItems, CancellationToken cancel)
    {
        Check(ranges, maxItems);
        bool through = indirect && _ranges.Length > 0;
        ClrSegment[] segments = runtime.Heap.Segments.ToArray();
        var found = new Found[segments.Length];
        for (int s = 0; s < segments.Length; s++)
        {
            cancel.ThrowIfCancellationRequested();
            var into = found[s] = new Found();
            foreach (NativeFieldRecord.Field field in record.FieldsOf(segments[s]))
            {
                into.Fields++;
                var (methodTable, type, name) = record.SlotOf(field.Slot);
                if (Match(field.Object, methodTable, type, name, field.Value, through) is not { } hit)
                    continue;
                if (into.Hits.Count >= maxItems)
                    into.Overflow = true;
                else
                    into.Hits.Add(hit);
            }
        }
        return Answer(found, objects, maxItems, damage);
    }

    private struct Visitor(NativePointerScan scan, Found into, bool indirect, int maxItems) : IObjectVisitor
    {
        // The layouts this walker met, in a small direct-mapped table: the
        // shared one is behind a lock.
        private const int CacheSlots = 256;
        private readonly ulong[] _cachedMt = new ulong[CacheSlots];
        private readonly Slot[]?[] _cachedSlots = new Slot[]?[CacheSlots];

        // Once per object, from the first: compiled optimised at once rather
        // than first as tier-0 code, which the walk would run for a while.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Visit(ulong address, ulong methodTable, ClrType type, ulong size)
        {
            into.Objects++;
            int cached = (int)((methodTable >> 3) ^ (methodTable >> 11)) & (CacheSlots - 1);
            Slot[]? slots = _cachedMt[cached] == methodTable ? _cachedSlots[cached] : null;
            if (slots is null)
            {
                slots = _cachedSlots[cached] = scan.SlotsOf(methodTable, type);
                _cachedMt[cached] = methodTable;
            }
            foreach (Slot slot in slots)
            {
                if (!scan.Memory.ReadPointer(address + (ulong)scan.Memory.PointerSize + (ulong)slot.Offset, out ulong value) || value == 0)
                    continue;
                into.Fields++;
                NativePointer? hit = scan.Match(address, methodTable, type, slot.Name, value, indirect);
                if (hit is null)
                    continue;
                if (into.Hits.Count >= maxItems)
                {
                    into.Overflow = true;
                    continue;
                }
                into.Hits.Add(hit.Value);
            }
        }
    }

    private IMemoryReader Memory => memory;

    private Slot[] SlotsOf(ulong methodTable, ClrType type)
    {
        lock (_slots)
            return _slots.TryGetValue(methodTable, out Slot[]? known) ? known : _slots[methodTable] = NewSlots(type);
    }

    internal static Slot[] NewSlots(ClrType type)
    {
        var slots = new List<Slot>();
        if (!type.IsArray && !type.IsString && !type.IsFree)
        {
            foreach (ClrInstanceField field in type.Fields)
            {
                if (IsNativePointer(field.ElementType))
                {
                    slots.Add(new Slot(field.Offset, field.Name ?? "<unnamed>"));
                }
                else if (field.ElementType == ClrElementType.Struct && field.Type is { } inner)
                {
                    // One level into embedded structs (a HandleRef, a struct
                    // wrapping a handle); deeper nesting is rare.
                    foreach (ClrInstanceField nested in inner.Fields)
                    {
                        if (IsNativePointer(nested.ElementType))
                            slots.Add(new Slot(field.Offset + nested.Offset, $"{field.Name}.{nested.Name}"));
                    }
                }
            }
        }
        return [.. slots];
    }

    private NativePointer? Match(ulong address, ulong methodTable, ClrType type, string field, ulong value, bool indirect)
    {
        string name = type.Name ?? $"<unnamed type 0x{methodTable:x}>";
        if (_ranges.Length == 0)
            return new NativePointer(address, methodTable, name, field, value, null, null, null);
        if (RangeOf(value) is { } direct)
            return new NativePointer(address, methodTable, name, field, value, direct, null, null);
        if (indirect && ThroughStructure(value) is { } via)
            return new NativePointer(address, methodTable, name, field, value, via.RangeStart, value, via.Offset);
        return null;
    }

    private ulong? RangeOf(ulong value)
    {
        int lo = 0, hi = _ranges.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (value < _ranges[mid].Start)
                hi = mid - 1;
            else if (value >= _ranges[mid].End)
                lo = mid + 1;
            else
                return _ranges[mid].Start;
        }
        return null;
    }

    /// <summary>
    /// The first pointer-aligned word of the native structure at `value` that
    /// points into a range. GC heap addresses are not native structures.
    /// </summary>
    private (int Offset, ulong RangeStart)? ThroughStructure(ulong value)
    {
        lock (_through)
        {
            if (_through.TryGetValue(value, out var known))
                return known;
        }
        (int, ulong)? result = null;
        int pointerSize = memory.PointerSize;
        if (value % (ulong)pointerSize == 0 && runtime.Heap.GetSegmentByAddress(value) is null)
        {
            Span<byte> bytes = stackalloc byte[limits.NativeStructureBytes];
            int read = memory.Read(value, bytes);
            for (int offset = 0; offset + pointerSize <= read; offset += pointerSize)
            {
                ulong word = pointerSize == 8
                    ? BitConverter.ToUInt64(bytes.Slice(offset, 8))
                    : BitConverter.ToUInt32(bytes.Slice(offset, 4));
                if (word != 0 && RangeOf(word) is { } start)
                {
                    result = (offset, start);
                    break;
                }
            }
        }
        lock (_through)
            _through[value] = result;
        return result;
    }
}

/// <summary>
/// Every non-zero native pointer field of the GC heap, read as
/// NativePointerScan reads them (the same slots of each type), recorded by a
/// walk made for something else: the heap graph's, which serves heap_stats
/// too. native_pointers is then answered without a walk of its own. The
/// walking threads fill one list per segment, in walk order. Past
/// `maxFields` the record stops and is incomplete: the scan walks then.
/// </summary>
public sealed class NativeFieldRecord(IMemoryReader memory, int maxFields)
{
    // 20 bytes a field.
    [StructLayout(LayoutKind.Sequential, Pack = 4)]
    internal readonly record struct Field(ulong Object, ulong Value, int Slot);

    private readonly List<(ulong MethodTable, ClrType Type, string Name)> _slots = [];
    private readonly ConcurrentDictionary<ulong, List<Field>> _bySegment = new();
    private long _count;

    /// <summary>Every field was recorded.</summary>
    public bool Complete => Interlocked.Read(ref _count) <= maxFields;

    /// <summary>The native slots of a type, numbered for the record; once
    /// per type (the walk's type table asks under its lock).</summary>
    internal (int Offset, int Id)[] SlotsOf(ClrType type)
    {
        NativePointerScan.Slot[] slots = NativePointerScan.NewSlots(type);
        if (slots.Length == 0)
            return [];
        lock (_slots)
        {
            var numbered = new (int, int)[slots.Length];
            for (int i = 0; i < slots.Length; i++)
            {
                numbered[i] = (slots[i].Offset, _slots.Count);
                _slots.Add((type.MethodTable, type, slots[i].Name));
            }
            return numbered;
        }
    }

    internal (ulong MethodTable, ClrType Type, string Name) SlotOf(int id)
    {
        lock (_slots)
            return _slots[id];
    }

    /// <summary>The list one walking thread fills for one segment.</summary>
    internal List<Field> Segment(ClrSegment segment) => _bySegment.GetOrAdd(segment.Address, _ => []);

    internal IReadOnlyList<Field> FieldsOf(ClrSegment segment) => _bySegment.TryGetValue(segment.Address, out var fields) ? fields : [];

    /// <summary>The object's non-zero native fields; `bytes` from its start
    /// (the rest, if any, is read from the dump as the scan reads it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Add(List<Field> into, ulong address, ReadOnlySpan<byte> bytes, (int Offset, int Id)[] slots)
    {
        int pointerSize = memory.PointerSize;
        foreach (var (offset, id) in slots)
        {
            int at = pointerSize + offset;
            ulong value;
            if (at + pointerSize <= bytes.Length)
                value = pointerSize == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(bytes[at..]) : BinaryPrimitives.ReadUInt32LittleEndian(bytes[at..]);
            else if (!memory.ReadPointer(address + (ulong)at, out value))
                continue;
            if (value == 0)
                continue;
            if (Interlocked.Increment(ref _count) > maxFields)
                return;
            into.Add(new Field(address, value, id));
        }
    }
}
