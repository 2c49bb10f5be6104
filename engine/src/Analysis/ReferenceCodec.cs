using System.Numerics;
using System.Runtime.CompilerServices;

namespace DumpScope.Engine.Analysis;

/// <summary>
/// Writes the heap graph walk's reference values in 32 bits instead of 64:
/// the address space from the lowest GC heap segment to the highest is cut
/// into chunks of 2^Shift bytes, the chunks that hold some segment are
/// numbered, and an address becomes its chunk's number followed by its
/// offset in the chunk in pointer-sized units. A heap's segments can lie far
/// apart (on Linux, .NET 10's frozen segment sits some 50 GiB above the GC's
/// regions), but the chunks they hold sum to about the heap's size.
///
/// A value no code names exactly (outside every segment's chunks, or off the
/// pointer alignment: a damaged field) is written as <see cref="Escaped"/>
/// and kept whole beside: a decoded value is always the very address read,
/// so the graph resolves every reference exactly as from 64 bits.
/// </summary>
internal sealed class ReferenceCodec
{
    /// <summary>Marks a value kept whole; never a code.</summary>
    public const uint Escaped = uint.MaxValue;

    // Chunks of 4 MiB (a region's size) first; bigger ones only if the
    // span needs more than this many table entries.
    private const int FirstShift = 22;
    private const int MaxTableEntries = 1 << 20;

    private readonly ulong _base;
    private readonly int _shift;
    private readonly int _unitShift;
    private readonly ulong _chunkMask;
    private readonly ulong _unitMask;
    // Per chunk of the span: its first code, or Escaped (no segment in it).
    private readonly uint[] _firstCode;
    // Per numbered chunk: its address.
    private readonly ulong[] _chunkAddress;

    private ReferenceCodec(ulong @base, int shift, int unitShift, uint[] firstCode, ulong[] chunkAddress)
    {
        _base = @base;
        _shift = shift;
        _unitShift = unitShift;
        _chunkMask = (1UL << shift) - 1;
        _unitMask = (1UL << unitShift) - 1;
        _firstCode = firstCode;
        _chunkAddress = chunkAddress;
    }

    /// <summary>Bytes per chunk (for the log and the tests).</summary>
    public ulong ChunkBytes => 1UL << _shift;

    /// <summary>
    /// A codec for the segments [Start, End) (non-empty, ascending) of a
    /// process of this pointer size, or null when no chunk size both keeps
    /// its table small and gives every byte of the chunks a code (the
    /// segments' chunks past 32 GiB at 8-byte pointers): the walk then keeps
    /// every value in 64 bits.
    /// </summary>
    public static ReferenceCodec? For(IReadOnlyList<(ulong Start, ulong End)> segments, int pointerSize)
    {
        if (segments.Count == 0)
            return null;
        int unitShift = BitOperations.Log2((uint)pointerSize);
        ulong low = segments[0].Start, high = segments.Max(s => s.End) - 1;
        for (int shift = FirstShift; shift < 48; shift++)
        {
            ulong @base = low >> shift << shift;
            ulong entries = ((high - @base) >> shift) + 1;
            if (entries > MaxTableEntries)
                continue;
            var used = new SortedSet<ulong>();
            foreach (var (start, end) in segments)
            {
                for (ulong c = (start - @base) >> shift; c <= (end - 1 - @base) >> shift; c++)
                    used.Add(c);
            }
            // Codes 0 .. used x per chunk - 1, all below Escaped.
            if ((ulong)used.Count << (shift - unitShift) > Escaped)
                return null;
            var firstCode = new uint[entries];
            Array.Fill(firstCode, Escaped);
            var chunkAddress = new ulong[used.Count];
            int number = 0;
            foreach (ulong c in used)
            {
                firstCode[c] = (uint)((ulong)number << (shift - unitShift));
                chunkAddress[number++] = @base + (c << shift);
            }
            return new ReferenceCodec(@base, shift, unitShift, firstCode, chunkAddress);
        }
        return null;
    }

    /// <summary>The code of an address, or Escaped.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint Encode(ulong address)
    {
        // Below the base, the difference wraps to past the table.
        ulong offset = address - _base;
        ulong chunk = offset >> _shift;
        if (chunk >= (ulong)_firstCode.Length || (address & _unitMask) != 0)
            return Escaped;
        uint first = _firstCode[chunk];
        return first == Escaped ? Escaped : first + (uint)((offset & _chunkMask) >> _unitShift);
    }

    /// <summary>The address of a code (not Escaped).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong Decode(uint code)
    {
        int perChunk = _shift - _unitShift;
        return _chunkAddress[code >> perChunk] + ((ulong)(code & ((1u << perChunk) - 1)) << _unitShift);
    }
}
