using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Analysis;

/// <summary>Receives each object of a walk: its address, type and size.</summary>
public interface IObjectVisitor
{
    void Visit(ulong address, ulong methodTable, ClrType type, ulong size);
}

/// <summary>
/// Receives each object of a walk with the bytes of it the walker holds:
/// from its start, at most its size (less when the object runs past the
/// walker's buffer; the visitor then reads the rest itself).
/// </summary>
public interface IObjectBytesVisitor
{
    void Visit(ulong address, ulong methodTable, ClrType type, ulong size, ReadOnlySpan<byte> bytes);
}

/// <summary>Bytes of a segment that hold no valid object, and why the first of them was refused.</summary>
public sealed record HeapDamage(ulong Start, ulong End, GCSegmentKind Segment, string Reason);

/// <summary>
/// The parts of the GC heap a walk could not read as objects, shared by the
/// segments of one walk (thread-safe): every range is counted, the first
/// `maxRanges` are kept.
/// </summary>
public sealed class HeapDamageLog(int maxRanges)
{
    private readonly List<HeapDamage> _ranges = [];
    private long _count;
    private ulong _bytes;

    public void Add(HeapDamage range)
    {
        lock (_ranges)
        {
            _count++;
            _bytes += range.End - range.Start;
            if (_ranges.Count < maxRanges)
                _ranges.Add(range);
        }
    }

    public long Count { get { lock (_ranges) return _count; } }

    public ulong Bytes { get { lock (_ranges) return _bytes; } }

    /// <summary>The kept ranges, by address.</summary>
    public ImmutableArray<HeapDamage> Ranges
    {
        get { lock (_ranges) return [.. _ranges.OrderBy(r => r.Start)]; }
    }

    /// <summary>The kept ranges as every result reports them.</summary>
    public ImmutableArray<CorruptRange> CorruptRanges =>
        [.. Ranges.Select(d => new CorruptRange(d.Start, d.End, DumpSession.KindName(d.Segment), d.Reason))];
}

/// <summary>
/// Walks the objects of one GC segment the way ClrMD's own enumeration does
/// (and so the way SOS counts them), but straight out of a large buffer with
/// a per-walk method-table cache, without building a ClrObject per object.
/// The rules of the GC heap it follows:
/// - an object starts with its method table pointer; arrays and strings keep
///   their element count (u32) one pointer further;
/// - size = base size, plus count x component size for arrays and strings
///   (strings also hold a terminating null char the count leaves out), and
///   at least three pointers; the next object follows at that size rounded
///   up to 8 bytes (4 on 32-bit small-object segments);
/// - allocation contexts hold no objects: a walk that reaches the start of
///   one continues after its end plus a minimal aligned object.
/// Each object is checked as `!verifyheap` would: its method table must be
/// aligned and name a type, its bytes must be in the dump and it must end
/// inside the segment. A bad one is not visited: the walk scans forward for
/// the next plausible object (one whose successor is plausible too) and logs
/// the skipped bytes, so counts are lower bounds and never exceed what the
/// segment holds. Tests check a healthy walk equals SOS's `dumpheap -stat`.
/// </summary>
public sealed unsafe class HeapWalker
{
    private const int BufferSize = 1 << 20;
    private const ulong PageSize = 0x1000;
    // Method tables never seen before are looked up (a DAC call each) at
    // most this many times per resynchronisation; beyond it only types
    // already met are trusted, so a large corrupt range costs no DAC storm.
    private const int UnknownTypeProbes = 256;
    private const int ShapeSlots = 256;

    private readonly ClrRuntime _runtime;
    private readonly IMemoryReader _memory;
    private readonly int _pointerSize;
    private readonly ulong _minObjectSize;
    private readonly ulong _stringMt;
    private readonly MemoryRange[] _allocationContexts;
    private readonly ConcurrentDictionary<ulong, Shape?> _shapes = new();
    // The core file, read in place where it holds the bytes (else copied
    // through the reader, as any other dump).
    private readonly CoreFileView? _view;

    private sealed record Shape(ClrType Type, ulong MethodTable, ulong BaseSize, ulong ComponentSize, bool IsString);

    public HeapWalker(ClrRuntime runtime, IMemoryReader memory)
    {
        _runtime = runtime;
        _memory = memory;
        _pointerSize = memory.PointerSize;
        _minObjectSize = (ulong)_pointerSize * 3;
        _stringMt = runtime.Heap.StringType?.MethodTable ?? 0;
        _allocationContexts = runtime.Heap.EnumerateAllocationContexts()
            .DistinctBy(c => c.Start).OrderBy(c => c.Start).ToArray();
        _view = CoreFileView.Of(memory);
    }

    /// <summary>Before a walk of these segments: maps their pages of the
    /// core file ahead (CoreFileView), when the walker reads one.</summary>
    public void ReadAhead(IEnumerable<ClrSegment> segments) =>
        _view?.ReadAhead(segments.Select(s => (s.ObjectRange.Start, s.ObjectRange.End)));

    // Asked whenever the walk meets another type than the last object's,
    // often once per object: a type already met costs one lookup, without
    // the delegate GetOrAdd's lambda would allocate on every call.
    private Shape? ShapeOf(ulong mt) =>
        _shapes.TryGetValue(mt, out Shape? known) ? known : _shapes.GetOrAdd(mt, NewShape);

    private Shape? NewShape(ulong mt) =>
        CouldBeMethodTable(mt) && _runtime.GetTypeByMethodTable(mt) is { } type
            ? new Shape(type, type.MethodTable, (ulong)(uint)type.StaticSize, (ulong)type.ComponentSize, mt == _stringMt)
            : null;

    // Checked before the DAC is asked about a value read from a damaged
    // heap: the DAC is native code, and garbage it is handed can crash the
    // engine. A method table is aligned, lies outside the GC heap (a value
    // pointing into it is an object reference) and is in the dump.
    private bool CouldBeMethodTable(ulong mt)
    {
        if (mt < 0x10000 || (mt & (ulong)(_pointerSize - 1)) != 0 || _runtime.Heap.GetSegmentByAddress(mt) is not null)
            return false;
        Span<byte> probe = stackalloc byte[16];
        return _memory.Read(mt, probe) == probe.Length;
    }

    // While resynchronising, a method table never seen is looked up only
    // while `probes` lasts; a type already met costs nothing.
    private Shape? Lookup(ulong mt, ref int probes)
    {
        if (_shapes.TryGetValue(mt, out Shape? known))
            return known;
        return probes-- > 0 ? ShapeOf(mt) : null;
    }

    /// <summary>The window of one walk over the dump's memory: the bytes
    /// from Base on, in the core file's mapping or read into Buffer (pinned).</summary>
    private struct Window
    {
        public byte[] Buffer;
        public byte* Pinned;
        public byte* Data;
        public ulong Base;
        public int Length;
    }

    // Makes [address, address + need) available in the window, ahead as far
    // as the file holds it in place or a buffer's worth read, but never
    // past `end` (the next segment may not be in the dump).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Ensure(ref Window w, ulong address, int need, ulong end)
    {
        if (address >= w.Base && address + (ulong)need <= w.Base + (ulong)w.Length)
            return true;
        ulong ahead = Math.Max(end - address, (ulong)need);
        w.Base = address;
        ReadOnlySpan<byte> held = _view is null ? [] : _view.At(address, need, (int)Math.Min(ahead, int.MaxValue));
        if (!held.IsEmpty)
        {
            // The file's mapping never moves.
            w.Data = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(held));
            w.Length = held.Length;
            return true;
        }
        w.Data = w.Pinned;
        w.Length = _memory.Read(address, w.Buffer.AsSpan(0, (int)Math.Min((ulong)BufferSize, ahead)));
        return w.Length >= need;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ReadOnlySpan<byte> At(ref Window w, ulong address, int length) => new(w.Data + (address - w.Base), length);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong PointerAt(ref Window w, ulong address)
    {
        ReadOnlySpan<byte> at = At(ref w, address, _pointerSize);
        return _pointerSize == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(at) : BinaryPrimitives.ReadUInt32LittleEndian(at);
    }

    // The header (method table and element count) must be in the window.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong SizeOf(ref Window w, ulong obj, Shape shape)
    {
        ulong size = shape.BaseSize;
        if (shape.ComponentSize != 0)
        {
            ulong elements = BinaryPrimitives.ReadUInt32LittleEndian(At(ref w, obj + (ulong)_pointerSize, 4));
            if (shape.IsString)
                elements++;
            size += elements * shape.ComponentSize;
        }
        return size < _minObjectSize ? _minObjectSize : size;
    }

    private static string TooLong(Shape shape, ulong size) =>
        $"{shape.Type.Name ?? "an object"} of 0x{size:x} bytes would run past the segment end";

    /// <summary>How one segment is walked: its bounds and its allocation contexts.</summary>
    private struct Cursor
    {
        public ulong End;
        public ulong AlignMask;
        public ulong ContextSkip;
        public int Context;
        public ulong ContextStart;
        public GCSegmentKind Kind;
    }

    // Where the object after one ending at `next` starts: allocation
    // contexts hold no objects, so a walk reaching one continues after it.
    // End when a context makes no progress (a corrupt context list).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong SkipContexts(ref Cursor c, ulong next)
    {
        while (next >= c.ContextStart)
        {
            if (next == c.ContextStart)
            {
                ulong after = _allocationContexts[c.Context].End + c.ContextSkip;
                if (after <= next)
                    return c.End;
                next = after;
            }
            c.Context++;
            c.ContextStart = c.Context < _allocationContexts.Length ? _allocationContexts[c.Context].Start : ulong.MaxValue;
        }
        return next;
    }

    // Lets a visitor that needs no bytes share the one walk loop; a struct,
    // so the JIT specialises the loop for it and the bytes cost nothing.
    private struct WithoutBytes<TVisitor>(TVisitor inner) : IObjectBytesVisitor
        where TVisitor : struct, IObjectVisitor
    {
        public TVisitor Inner = inner;

        public void Visit(ulong address, ulong methodTable, ClrType type, ulong size, ReadOnlySpan<byte> bytes) =>
            Inner.Visit(address, methodTable, type, size);
    }

    /// <summary>
    /// Visits every valid object of the segment; returns how many. Bytes that
    /// hold no valid object are logged in `damage` (when given) and skipped.
    /// </summary>
    public long Walk<TVisitor>(ClrSegment segment, ref TVisitor visitor, CancellationToken cancel, HeapDamageLog? damage = null)
        where TVisitor : struct, IObjectVisitor
    {
        var adapter = new WithoutBytes<TVisitor>(visitor);
        long count = WalkBytes(segment, ref adapter, cancel, damage);
        visitor = adapter.Inner;
        return count;
    }

    /// <summary>As Walk, giving each object with its bytes.</summary>
    // Runs once per segment with millions of iterations: compile it optimised
    // at once instead of starting in tier-0 code.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public long WalkBytes<TVisitor>(ClrSegment segment, ref TVisitor visitor, CancellationToken cancel, HeapDamageLog? damage = null)
        where TVisitor : struct, IObjectBytesVisitor
    {
        bool large = segment.Kind is GCSegmentKind.Large or GCSegmentKind.Pinned;
        bool skipContexts = segment.Kind is not (GCSegmentKind.Large or GCSegmentKind.Frozen);
        var c = new Cursor
        {
            End = segment.ObjectRange.End,
            AlignMask = large || _pointerSize == 8 ? 7UL : 3UL,
            Kind = segment.Kind,
        };
        c.ContextSkip = (_minObjectSize + c.AlignMask) & ~c.AlignMask;
        ulong obj = segment.FirstObjectAddress;
        if (obj < segment.ObjectRange.Start || obj >= c.End)
            return 0;
        // Contexts are sorted: only the next one ahead of the walk can match.
        c.Context = skipContexts ? FirstContextAtOrAfter(obj) : _allocationContexts.Length;
        c.ContextStart = c.Context < _allocationContexts.Length ? _allocationContexts[c.Context].Start : ulong.MaxValue;
        int header = _pointerSize + 4;

        byte[] buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        long count = 0;
        ulong lastMt = 0;
        Shape? last = null;
        // The types met, in a small direct-mapped table (see GraphVisitor):
        // consecutive objects often differ in type, and the shared
        // dictionary's lookup costs more than the rest of the step.
        var cachedMt = new ulong[ShapeSlots];
        var cachedShape = new Shape?[ShapeSlots];
        try
        {
            fixed (byte* pinned = buffer)
            {
                var w = new Window { Buffer = buffer, Pinned = pinned };
                while (obj < c.End)
                {
                    if (!Ensure(ref w, obj, header, c.End))
                    {
                        obj = Resynchronise(ref w, ref c, obj, "memory not in the dump", damage, cancel);
                        continue;
                    }
                    ulong mt = PointerAt(ref w, obj);
                    if (mt != lastMt || last is null)
                    {
                        int slot = (int)((mt >> 3) ^ (mt >> 11)) & (ShapeSlots - 1);
                        Shape? shape = cachedMt[slot] == mt ? cachedShape[slot] : null;
                        if (shape is null && (shape = ShapeOf(mt)) is not null)
                            (cachedMt[slot], cachedShape[slot]) = (mt, shape);
                        if (shape is null)
                        {
                            obj = Resynchronise(ref w, ref c, obj, $"method table 0x{mt:x} is not a type", damage, cancel);
                            continue;
                        }
                        last = shape;
                        lastMt = mt;
                    }
                    ulong size = SizeOf(ref w, obj, last);
                    if (size > c.End - obj)
                    {
                        obj = Resynchronise(ref w, ref c, obj, TooLong(last, size), damage, cancel);
                        continue;
                    }
                    int offset = (int)(obj - w.Base);
                    visitor.Visit(obj, last.MethodTable, last.Type, size, At(ref w, obj, (int)Math.Min(size, (ulong)(w.Length - offset))));

                    if ((++count & 0xFFFF) == 0)
                        cancel.ThrowIfCancellationRequested();
                    obj = SkipContexts(ref c, obj + ((size + c.AlignMask) & ~c.AlignMask));
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return count;
    }

    // Finds where objects start again after a bad one at `bad`: the first
    // aligned address holding a plausible object whose successor is
    // plausible too (or is the segment end). Memory missing from the dump is
    // skipped a page at a time. Logs [bad, found) and returns found (End when
    // nothing plausible is left).
    private ulong Resynchronise(ref Window w, ref Cursor c, ulong bad, string reason, HeapDamageLog? damage, CancellationToken cancel)
    {
        int probes = UnknownTypeProbes;
        ulong found = c.End;
        ulong p = bad + c.AlignMask + 1;
        for (long step = 1; p < c.End; step++)
        {
            if ((step & 0xFFFF) == 0)
                cancel.ThrowIfCancellationRequested();
            if (p >= c.ContextStart)
            {
                // Inside an allocation context: objects resume after it.
                p = SkipContexts(ref c, c.ContextStart);
                if (p >= c.End || Plausible(ref w, ref c, p, ref probes))
                {
                    found = Math.Min(p, c.End);
                    break;
                }
            }
            else if (!Ensure(ref w, p, _pointerSize + 4, c.End))
            {
                p = (p + PageSize) & ~(PageSize - 1);
                continue;
            }
            else if (Plausible(ref w, ref c, p, ref probes))
            {
                found = p;
                break;
            }
            p += c.AlignMask + 1;
        }
        damage?.Add(new HeapDamage(bad, found, c.Kind, reason));
        return found;
    }

    // An object at p (header readable) whose successor is an object too, or
    // the segment end or an allocation context.
    private bool Plausible(ref Window w, ref Cursor c, ulong p, ref int probes)
    {
        if (!Ensure(ref w, p, _pointerSize + 4, c.End) || Lookup(PointerAt(ref w, p), ref probes) is not { } shape)
            return false;
        ulong size = SizeOf(ref w, p, shape);
        if (size > c.End - p)
            return false;
        ulong next = p + ((size + c.AlignMask) & ~c.AlignMask);
        if (next >= c.End || next == c.ContextStart)
            return true;
        if (!Ensure(ref w, next, _pointerSize + 4, c.End) || Lookup(PointerAt(ref w, next), ref probes) is not { } following)
            return false;
        return SizeOf(ref w, next, following) <= c.End - next;
    }

    private int FirstContextAtOrAfter(ulong address)
    {
        int lo = 0, hi = _allocationContexts.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) / 2;
            if (_allocationContexts[mid].Start < address)
                lo = mid + 1;
            else
                hi = mid;
        }
        return lo;
    }
}
