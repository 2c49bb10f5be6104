using System.IO.MemoryMappedFiles;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace DumpScope.Engine.Analysis;

/// <summary>
/// A fixed run of T that never moves: an array on the pinned object heap,
/// or a section of a memory-mapped index file. Reads are bounds-checked, so
/// a bad value used as an index fails as an exception, never as a stray
/// read. The owner (the array or the mapping) is held so that the memory
/// lives as long as any copy of the column.
/// </summary>
internal readonly unsafe struct Column<T> where T : unmanaged
{
    private readonly T* _items;
    private readonly object? _owner;

    public int Length { get; }

    public Column(T* items, int length, object owner)
    {
        _items = items;
        Length = length;
        _owner = owner;
    }

    /// <summary>A new array on the pinned object heap (the GC never moves it).</summary>
    public static Column<T> Allocate(int length, bool zeroed)
    {
        T[] array = zeroed ? GC.AllocateArray<T>(length, pinned: true) : GC.AllocateUninitializedArray<T>(length, pinned: true);
        return new Column<T>((T*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array)), length, array);
    }

    /// <summary>Wraps an array made with pinned: true (DominatorTree's).</summary>
    public static Column<T> OfPinned(T[] array) =>
        new((T*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array)), array.Length, array);

    public T this[int index]
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            if ((uint)index >= (uint)Length)
                throw new IndexOutOfRangeException();
            return _items[index];
        }
    }

    public ReadOnlySpan<T> Span => new(_items, Length);

    /// <summary>For the build only: a column read by queries is never written.</summary>
    public Span<T> Writable => new(_items, Length);

    public ReadOnlySpan<T> Slice(int start, int length) => Span.Slice(start, length);

    public Column<T> Part(int start, int length)
    {
        if ((uint)start > (uint)Length || (uint)length > (uint)(Length - start))
            throw new ArgumentOutOfRangeException(nameof(start));
        return new Column<T>(_items + start, length, _owner!);
    }

    public T* Pointer => _items;

    public long Bytes => (long)Length * sizeof(T);
}

/// <summary>
/// A whole file mapped into memory, read-only. Its pages belong to the page
/// cache: the kernel reads them on first touch and may drop them again, so
/// a loaded index costs no anonymous memory and no reading up front.
/// </summary>
internal sealed unsafe class MappedFile
{
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;

    public byte* Base { get; }

    public long Length { get; }

    public MappedFile(FileStream stream)
    {
        Length = stream.Length;
        _file = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: true);
        try
        {
            _view = _file.CreateViewAccessor(0, Length, MemoryMappedFileAccess.Read);
            byte* pointer = null;
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            Base = pointer + _view.PointerOffset;
        }
        catch
        {
            _file.Dispose();
            throw;
        }
    }

    // Columns point into the view: it is unmapped only once nothing holds
    // this object (every column holds it as its owner).
    ~MappedFile()
    {
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }
}

/// <summary>
/// A fast 64-bit checksum of the index file's sections (not cryptographic:
/// it guards against damage; the key guards against a file of another
/// dump). The bytes are summed in chunks of 16 MiB, in parallel, with four
/// independent lanes per chunk; the chunks' sums are then summed in order.
/// </summary>
internal static unsafe class SectionChecksum
{
    private const long ChunkBytes = 16L << 20;
    private const ulong Prime1 = 0x9E3779B185EBCA87UL;
    private const ulong Prime2 = 0xC2B2AE3D27D4EB4FUL;

    public static ulong Of(byte* bytes, long length, CancellationToken cancel)
    {
        long chunks = Math.Max(1, (length + ChunkBytes - 1) / ChunkBytes);
        var sums = new ulong[chunks];
        if (chunks == 1)
        {
            sums[0] = Chunk(bytes, length);
        }
        else
        {
            var options = new ParallelOptions { CancellationToken = cancel };
            Parallel.For(0, chunks, options, c =>
            {
                long from = c * ChunkBytes;
                sums[c] = Chunk(bytes + from, Math.Min(ChunkBytes, length - from));
            });
        }
        fixed (ulong* s = sums)
            return Chunk((byte*)s, chunks * sizeof(ulong)) ^ (ulong)length;
    }

    private static ulong Chunk(byte* bytes, long length)
    {
        ulong a = 0x27D4EB2F165667C5UL, b = Prime1, c = Prime2, d = 0x165667B19E3779F9UL;
        var words = (ulong*)bytes;
        long blocks = length / 32;
        for (long i = 0; i < blocks; i++, words += 4)
        {
            a = BitOperations.RotateLeft(a + words[0] * Prime2, 31) * Prime1;
            b = BitOperations.RotateLeft(b + words[1] * Prime2, 31) * Prime1;
            c = BitOperations.RotateLeft(c + words[2] * Prime2, 31) * Prime1;
            d = BitOperations.RotateLeft(d + words[3] * Prime2, 31) * Prime1;
        }
        ulong h = BitOperations.RotateLeft(a, 1) + BitOperations.RotateLeft(b, 7) + BitOperations.RotateLeft(c, 12) + BitOperations.RotateLeft(d, 18);
        for (long i = blocks * 32; i < length; i++)
            h = BitOperations.RotateLeft(h ^ (bytes[i] * Prime2), 11) * Prime1;
        return h;
    }
}
