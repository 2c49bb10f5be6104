using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
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
///   one continues after its end plus a minimal aligned object;
/// - an unreadable method table or an unknown type ends the segment's walk.
/// Tests check the result equals SOS's `dumpheap -stat` on every scenario.
/// </summary>
public sealed class HeapWalker
{
    private const int BufferSize = 1 << 20;

    private readonly ClrRuntime _runtime;
    private readonly IMemoryReader _memory;
    private readonly int _pointerSize;
    private readonly ulong _minObjectSize;
    private readonly ulong _stringMt;
    private readonly MemoryRange[] _allocationContexts;
    private readonly ConcurrentDictionary<ulong, Shape?> _shapes = new();

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
    }

    private Shape? ShapeOf(ulong mt) =>
        _shapes.GetOrAdd(mt, m => _runtime.GetTypeByMethodTable(m) is { } type
            ? new Shape(type, type.MethodTable, (ulong)(uint)type.StaticSize, (ulong)type.ComponentSize, m == _stringMt)
            : null);

    // Lets a visitor that needs no bytes share the one walk loop; a struct,
    // so the JIT specialises the loop for it and the bytes cost nothing.
    private struct WithoutBytes<TVisitor>(TVisitor inner) : IObjectBytesVisitor
        where TVisitor : struct, IObjectVisitor
    {
        public TVisitor Inner = inner;

        public void Visit(ulong address, ulong methodTable, ClrType type, ulong size, ReadOnlySpan<byte> bytes) =>
            Inner.Visit(address, methodTable, type, size);
    }

    /// <summary>Visits every object of the segment; returns how many.</summary>
    public long Walk<TVisitor>(ClrSegment segment, ref TVisitor visitor, CancellationToken cancel)
        where TVisitor : struct, IObjectVisitor
    {
        var adapter = new WithoutBytes<TVisitor>(visitor);
        long count = WalkBytes(segment, ref adapter, cancel);
        visitor = adapter.Inner;
        return count;
    }

    /// <summary>Visits every object of the segment with its bytes; returns how many.</summary>
    // Runs once per segment with millions of iterations: compile it optimised
    // at once instead of starting in tier-0 code.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public long WalkBytes<TVisitor>(ClrSegment segment, ref TVisitor visitor, CancellationToken cancel)
        where TVisitor : struct, IObjectBytesVisitor
    {
        bool large = segment.Kind is GCSegmentKind.Large or GCSegmentKind.Pinned;
        bool skipContexts = segment.Kind is not (GCSegmentKind.Large or GCSegmentKind.Frozen);
        ulong alignMask = large || _pointerSize == 8 ? 7UL : 3UL;
        ulong contextSkip = (_minObjectSize + alignMask) & ~alignMask;
        ulong end = segment.ObjectRange.End;
        ulong obj = segment.FirstObjectAddress;
        int header = _pointerSize + 4;

        byte[] buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        ulong bufferBase = 0;
        int bufferLength = 0;
        long count = 0;
        // Contexts are sorted: only the next one ahead of the walk can match.
        int context = skipContexts ? FirstContextAtOrAfter(obj) : _allocationContexts.Length;
        ulong contextStart = context < _allocationContexts.Length ? _allocationContexts[context].Start : ulong.MaxValue;
        ulong lastMt = 0;
        Shape? last = null;
        try
        {
            while (obj >= segment.ObjectRange.Start && obj < end)
            {
                if (obj < bufferBase || obj + (ulong)header > bufferBase + (ulong)bufferLength)
                {
                    // Never read past the segment: the next one may not be in the dump.
                    int want = (int)Math.Min((ulong)BufferSize, Math.Max(end - obj, (ulong)header));
                    bufferBase = obj;
                    bufferLength = _memory.Read(obj, buffer.AsSpan(0, want));
                    if (bufferLength < _pointerSize)
                        break;
                }
                int offset = (int)(obj - bufferBase);
                ReadOnlySpan<byte> at = buffer.AsSpan(offset);
                ulong mt = _pointerSize == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(at) : BinaryPrimitives.ReadUInt32LittleEndian(at);
                if (mt != lastMt || last is null)
                {
                    last = ShapeOf(mt);
                    lastMt = mt;
                    if (last is null)
                        break;
                }

                ulong size = last.BaseSize;
                if (last.ComponentSize != 0)
                {
                    if (offset + header > bufferLength)
                        break;
                    ulong elements = BinaryPrimitives.ReadUInt32LittleEndian(at[_pointerSize..]);
                    if (last.IsString)
                        elements++;
                    size += elements * last.ComponentSize;
                }
                if (size < _minObjectSize)
                    size = _minObjectSize;
                visitor.Visit(obj, last.MethodTable, last.Type, size, at[..(int)Math.Min(size, (ulong)(bufferLength - offset))]);

                if ((++count & 0xFFFF) == 0)
                    cancel.ThrowIfCancellationRequested();

                ulong step = (size + alignMask) & ~alignMask;
                obj += step;
                while (obj >= contextStart)
                {
                    if (obj == contextStart)
                    {
                        ulong next = _allocationContexts[context].End + contextSkip;
                        if (next <= obj)
                            return count;
                        obj = next;
                    }
                    context++;
                    contextStart = context < _allocationContexts.Length ? _allocationContexts[context].Start : ulong.MaxValue;
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return count;
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
