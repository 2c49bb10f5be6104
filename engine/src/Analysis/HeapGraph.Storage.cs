using System.IO.MemoryMappedFiles;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace DumpScope.Engine.Analysis;

/// <summary>
/// A fixed run of T that never moves: memory outside the GC heap (a
/// NativeBlock), an array on the pinned object heap, or a section of a
/// memory-mapped index file. Reads are bounds-checked, so a bad value used
/// as an index fails as an exception, never as a stray read. The owner (the
/// block, the array or the mapping) is held so that the memory lives as
/// long as any copy of the column.
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

    /// <summary>A new column that never moves: a big one outside the GC
    /// heap, in whole huge pages (a NativeBlock), a small one an array on
    /// the pinned object heap.</summary>
    public static Column<T> Allocate(int length, bool zeroed)
    {
        long bytes = (long)length * sizeof(T);
        // An array on the GC heap takes 4 KiB pages before and after its
        // whole huge pages: up to a thousand faults per column, each costly
        // in a VM, where a big column's own mapping takes none of them.
        if (bytes >= HugePages.Size)
        {
            var block = new NativeBlock(bytes, zeroed);
            return new Column<T>((T*)block.Pointer, length, block);
        }
        // Cleared after the advice, so that the first touch is already a huge page.
        T[] array = HugePages.Advise(GC.AllocateUninitializedArray<T>(length, pinned: true));
        if (zeroed)
            Array.Clear(array);
        return new Column<T>((T*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array)), length, array);
    }

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

    /// <summary>Its memory, for Prefault.</summary>
    public (nint Start, long Bytes) Range => ((nint)_items, Bytes);
}

/// <summary>
/// The type index of every object: 2 bytes each while the graph has at most
/// 65,536 types (nearly every heap), else 4. Saved as it is: the section's
/// length tells the width.
/// </summary>
internal readonly unsafe struct TypeColumn
{
    private readonly Column<ushort> _narrow;
    private readonly Column<int> _wide;
    private readonly bool _isWide;

    public TypeColumn(Column<ushort> narrow) => _narrow = narrow;

    public TypeColumn(Column<int> wide) => (_wide, _isWide) = (wide, true);

    public int Length => _isWide ? _wide.Length : _narrow.Length;

    public int this[int index]
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _isWide ? _wide[index] : _narrow[index];
    }

    public byte* Pointer => _isWide ? (byte*)_wide.Pointer : (byte*)_narrow.Pointer;

    public long Bytes => _isWide ? _wide.Bytes : _narrow.Bytes;

    /// <summary>A new column for this many objects of this many types.</summary>
    public static TypeColumn Allocate(int length, int types) =>
        types <= ushort.MaxValue + 1 ? new(Column<ushort>.Allocate(length, zeroed: false)) : new(Column<int>.Allocate(length, zeroed: false));

    /// <summary>For the build only: writes types from <paramref name="at"/> on.</summary>
    public void Write(int at, ReadOnlySpan<int> types)
    {
        if (_isWide)
        {
            types.CopyTo(_wide.Writable[at..]);
            return;
        }
        Span<ushort> into = _narrow.Writable.Slice(at, types.Length);
        for (int i = 0; i < types.Length; i++)
            into[i] = (ushort)types[i];
    }
}

/// <summary>
/// A whole file mapped into memory, read-only. Its pages belong to the page
/// cache: the kernel reads them on first touch and may drop them again, so
/// a loaded index costs no anonymous memory and no copy.
/// </summary>
internal sealed unsafe class MappedFile
{
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;

    public byte* Base { get; }

    public MappedFile(FileStream stream)
    {
        long length = stream.Length;
        _file = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: true);
        try
        {
            _view = _file.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
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
/// A temporary file mapped read-write, handed out as columns: memory whose
/// pages are file-backed (the kernel may write them out and drop them)
/// rather than anonymous. The file has no name once mapped (Windows: from
/// when it is closed), so a process that dies leaves none behind; no column
/// may be used after Dispose. Not disposed, it is unmapped once collected:
/// its columns hold it, so that is when no column is left. Its blocks are
/// reserved when it is made: a disk without room for it fails the
/// constructor with an IOException (the callers then use anonymous
/// memory), never a later write through the mapping, which on Linux (the
/// Windows engine under Wine included) is a SIGBUS that kills the process.
/// </summary>
internal sealed unsafe class ScratchFile : IDisposable
{
    private readonly FileStream _stream;
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _base;
    private readonly long _bytes;
    private long _used;
    // Set once the constructor has mapped the file: a constructor that
    // threw leaves the finalizer nothing to release.
    private readonly bool _mapped;

    public ScratchFile(string folder, long bytes)
    {
        _bytes = Math.Max(1, bytes);
        string path = Path.Combine(folder, $"scratch-{Environment.ProcessId}-{Guid.NewGuid():n}.tmp");
        _stream = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1,
            OperatingSystem.IsWindows() ? FileOptions.DeleteOnClose : FileOptions.None);
        try
        {
            if (!OperatingSystem.IsWindows())
                File.Delete(path);
            if (OperatingSystem.IsLinux())
                Reserve(_stream.SafeFileHandle, _bytes);
            else
                WriteZeros(_stream, _bytes);
            _file = MemoryMappedFile.CreateFromFile(_stream, null, _bytes, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None,
                leaveOpen: true);
            _view = _file.CreateViewAccessor(0, _bytes, MemoryMappedFileAccess.ReadWrite);
            byte* pointer = null;
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            _base = pointer + _view.PointerOffset;
            _mapped = true;
        }
        catch
        {
            _view?.Dispose();
            _file?.Dispose();
            _stream.Dispose();
            throw;
        }
    }

    private const int EINTR = 4;
    private const int EFBIG = 27;
    private const int ENOSPC = 28;

    /// <summary>Gives the file its length with every block allocated
    /// (fallocate, mode 0). A sparse file (SetLength) would take its
    /// blocks at the first write to each page through the mapping, where
    /// a full disk is a SIGBUS. A file system that cannot allocate ahead
    /// (EOPNOTSUPP: some FUSE and NFS) is refused as well, rather than
    /// risked: .NET's own PreallocationSize ignores that error.</summary>
    private static void Reserve(SafeHandle file, long bytes)
    {
        int fd = (int)file.DangerousGetHandle();
        int error;
        do
            error = Libc.Fallocate(fd, 0, 0, bytes) == 0 ? 0 : Marshal.GetLastPInvokeError();
        while (error == EINTR);
        if (error == 0)
            return;
        string why = Marshal.GetPInvokeErrorMessage(error);
        throw new IOException(error is ENOSPC or EFBIG
            ? $"no room for a scratch file of {bytes} bytes: {why}"
            : $"the file system cannot reserve a scratch file's blocks ({why}), and a mapped file without them would crash the engine once the disk is full");
    }

    private const int ErrorHandleDiskFull = 39;
    private const int ErrorDiskFull = 112;
    private const int ErrorFileTooLarge = 223;

    /// <summary>Gives the file its length by writing every byte of it,
    /// the one way that takes the blocks both on Windows and under Wine
    /// (a Windows dump read on Linux). Wine 8 has no FileAllocationInfo
    /// (SetFileInformationByHandle fails, so .NET's PreallocationSize does
    /// nothing), and its SetLength is an ftruncate: a sparse Linux file,
    /// whose blocks would come at the first write to each page through the
    /// mapping. Written, a file takes its clusters on NTFS as on any other
    /// file system, and a full disk fails the write (ERROR_DISK_FULL) on
    /// Windows; under Wine a write the disk cuts short succeeds (Linux's
    /// short write) and the next one fails (ENOSPC), so the file's length
    /// is checked after each.</summary>
    private static void WriteZeros(FileStream file, long bytes)
    {
        var zeros = new byte[(int)Math.Min(bytes, 1 << 20)];
        try
        {
            for (long written = 0; written < bytes;)
            {
                int count = (int)Math.Min(zeros.Length, bytes - written);
                file.Write(zeros, 0, count);
                written += count;
                long length = file.Length;
                if (length < written)
                    throw new IOException($"no room for a scratch file of {bytes} bytes: only {length} fit");
            }
        }
        catch (IOException e) when (NoRoom(e.HResult))
        {
            throw new IOException($"no room for a scratch file of {bytes} bytes: {e.Message}", e);
        }
    }

    /// <summary>A Win32 error (HRESULT_FROM_WIN32) that says the disk is full.</summary>
    private static bool NoRoom(int hresult) =>
        hresult >>> 16 == 0x8007 && (hresult & 0xFFFF) is ErrorDiskFull or ErrorHandleDiskFull or ErrorFileTooLarge;

    /// <summary>The next length ints of the file, as a column.</summary>
    public Column<int> Ints(int length)
    {
        long bytes = (long)length * sizeof(int);
        if (_used + bytes > _bytes)
            throw new InvalidOperationException("the scratch file is full");
        var column = new Column<int>((int*)(_base + _used), length, this);
        _used += bytes;
        return column;
    }

    public void Dispose()
    {
        Release();
        GC.SuppressFinalize(this);
    }

    ~ScratchFile() => Release();

    private void Release()
    {
        if (!_mapped)
            return;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
        _stream.Dispose();
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

/// <summary>
/// Asks Linux to back a big, fresh array with 2 MiB pages (transparent huge
/// pages, "madvise" mode): the graph's arrays are written once from end to
/// end, and one fault per 2 MiB instead of per 4 KiB takes most of the
/// kernel's time out of the build (a page fault costs most in a VM). Only
/// the array's own whole huge pages are advised; elsewhere it does nothing.
/// </summary>
internal static unsafe class HugePages
{
    private const int AdviseHugePage = 14;
    public const long Size = 2L << 20;

    public static T[] Advise<T>(T[] array) where T : unmanaged
    {
        fixed (T* items = array)
            Advise(items, (long)array.Length * sizeof(T));
        return array;
    }

    public static void Advise(void* items, long bytes)
    {
        if (!OperatingSystem.IsLinux() || bytes < Size)
            return;
        long start = ((long)items + Size - 1) & ~(Size - 1);
        long end = ((long)items + bytes) & ~(Size - 1);
        if (end > start)
            Libc.Madvise((void*)start, (nuint)(end - start), AdviseHugePage);
    }
}

/// <summary>
/// A growing run of T outside the GC heap (NativePages), for the build's
/// temporaries: it is given back to the system the moment it is freed (no
/// collection to wait for). The owner frees it exactly once.
/// </summary>
internal unsafe struct NativeGrowing<T> where T : unmanaged
{
    private T* _items;
    private long _capacity;

    public int Count { get; private set; }

    public NativeGrowing(int capacity)
    {
        long bytes = NativePages.Allocation(Math.Max(16, capacity) * (long)sizeof(T));
        _items = (T*)NativePages.Allocate(bytes);
        _capacity = bytes / sizeof(T);
    }

    /// <summary>A fixed run of this many slots, not cleared (untouched
    /// pages take no memory).</summary>
    public static NativeGrowing<T> OfLength(int length) => new(length) { Count = length };

    public readonly Span<T> Span => new(_items, Count);

    /// <summary>Its slots' memory, for Prefault.</summary>
    public readonly (nint Start, long Bytes) Range => ((nint)_items, (long)Count * sizeof(T));

    /// <summary>The same memory, seen as its first count slots (the owner frees one of the two).</summary>
    public readonly NativeGrowing<T> Prefix(int count) => this with { Count = Math.Min(count, Count) };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Add(T item)
    {
        if (Count == _capacity)
            Grow();
        _items[Count++] = item;
    }

    private void Grow()
    {
        long bigger = Math.Min(Array.MaxLength, _capacity * 2);
        if (bigger <= Count)
            throw new OutOfMemoryException("a heap-graph array would exceed the largest array");
        // A copy, not mremap: the advice for huge pages splits the mapping,
        // which mremap cannot move. Growing is rare (sized from the heap).
        long bytes = NativePages.Allocation(bigger * sizeof(T));
        T* items = (T*)NativePages.Allocate(bytes);
        new Span<T>(_items, Count).CopyTo(new Span<T>(items, Count));
        Release();
        _items = items;
        _capacity = bytes / sizeof(T);
    }

    /// <summary>Gives back the memory past the first <paramref name="bytes"/>
    /// bytes (Linux; elsewhere it stays until freed); the run keeps the slots
    /// that hold them.</summary>
    public void Keep(long bytes)
    {
        long kept = Math.Min(_capacity, (bytes + NativePages.PageBytes - 1) / NativePages.PageBytes * NativePages.PageBytes / sizeof(T));
        Count = (int)Math.Min(Count, (bytes + sizeof(T) - 1) / sizeof(T));
        if (!OperatingSystem.IsLinux() || kept >= _capacity || _items == null)
            return;
        Libc.Munmap(_items + kept, (nuint)((_capacity - kept) * sizeof(T)));
        _capacity = kept;
    }

    /// <summary>Hands its memory over to a NativeBlock (a column's owner,
    /// which frees it once no column over it is left); the run is empty then.</summary>
    public NativeBlock Detach()
    {
        var block = new NativeBlock(_items, _capacity * sizeof(T));
        _items = null;
        _capacity = 0;
        Count = 0;
        return block;
    }

    public void Free()
    {
        if (_items == null)
            return;
        Release();
        _items = null;
        _capacity = 0;
        Count = 0;
    }

    private readonly void Release() => NativePages.Free(_items, _capacity * sizeof(T));
}

/// <summary>
/// Memory outside the GC heap for the build: Linux, an anonymous mapping
/// of its own (given back the moment it is freed), a big one in whole huge
/// pages; elsewhere the C heap.
/// </summary>
internal static unsafe class NativePages
{
    private const int ProtReadWrite = 3;
    private const int MapPrivateAnonymous = 0x22;

    /// <summary>The unit a mapping is cut in (a multiple of every column's item).</summary>
    public const long PageBytes = 4096;

    /// <summary>The bytes a run of this many is given: big ones whole huge
    /// pages (address space only: an untouched page takes no memory).</summary>
    public static long Allocation(long bytes) =>
        OperatingSystem.IsLinux() && bytes >= HugePages.Size ? (bytes + HugePages.Size - 1) & ~(HugePages.Size - 1) : bytes;

    /// <summary>At least this many bytes (Allocation's), zeroed on Linux only.</summary>
    public static void* Allocate(long bytes)
    {
        if (!OperatingSystem.IsLinux())
            return NativeMemory.Alloc((nuint)bytes);
        if (bytes < HugePages.Size)
            return Map(bytes);
        // A mapping starts at any page: one a huge page longer is cut to
        // start at a huge page, so that all of it can be huge pages. Else
        // its first and last partial huge pages take 4 KiB pages, a fault
        // each, up to a thousand a run, and faults cost most in a VM.
        byte* p = (byte*)Map(bytes + HugePages.Size);
        byte* start = (byte*)(((long)p + HugePages.Size - 1) & ~(HugePages.Size - 1));
        if (start > p)
            Libc.Munmap(p, (nuint)(start - p));
        Libc.Munmap(start + bytes, (nuint)(p + HugePages.Size - start));
        HugePages.Advise(start, bytes);
        return start;
    }

    private static void* Map(long bytes)
    {
        void* p = Libc.Mmap(null, (nuint)bytes, ProtReadWrite, MapPrivateAnonymous, -1, 0);
        if ((long)p == -1)
            throw new OutOfMemoryException("no memory for the heap graph");
        return p;
    }

    public static void Free(void* items, long bytes)
    {
        if (OperatingSystem.IsLinux())
            Libc.Munmap(items, (nuint)bytes);
        else
            NativeMemory.Free(items);
    }
}

/// <summary>
/// One big column's memory outside the GC heap (NativePages), owned by
/// the columns over it: given back once the last of them is collected.
/// The GC is told of its size, so that it collects as it would for an
/// array of that size.
/// </summary>
internal sealed unsafe class NativeBlock
{
    private long _bytes;

    public void* Pointer { get; }

    public NativeBlock(long bytes, bool zeroed)
        : this(NativePages.Allocate(NativePages.Allocation(bytes)), NativePages.Allocation(bytes))
    {
        // A fresh anonymous mapping is zeroed already.
        if (zeroed && !OperatingSystem.IsLinux())
            NativeMemory.Clear(Pointer, (nuint)_bytes);
    }

    /// <summary>Takes over memory from NativePages.Allocate (NativeGrowing.Detach).</summary>
    public NativeBlock(void* pointer, long bytes)
    {
        Pointer = pointer;
        _bytes = bytes;
        GC.AddMemoryPressure(Math.Max(1, _bytes));
    }

    /// <summary>For the build only: gives back the memory past the first
    /// <paramref name="bytes"/> (Linux; elsewhere it stays until freed).</summary>
    public void Keep(long bytes)
    {
        long kept = (bytes + NativePages.PageBytes - 1) / NativePages.PageBytes * NativePages.PageBytes;
        if (!OperatingSystem.IsLinux() || kept >= _bytes)
            return;
        Libc.Munmap((byte*)Pointer + kept, (nuint)(_bytes - kept));
        GC.RemoveMemoryPressure(_bytes - Math.Max(1, kept));
        _bytes = kept;
    }

    ~NativeBlock()
    {
        NativePages.Free(Pointer, _bytes);
        GC.RemoveMemoryPressure(Math.Max(1, _bytes));
    }
}

/// <summary>
/// Backs fresh memory with pages ahead of its first use, on another
/// processor (Linux 5.14 and later: MADV_POPULATE_WRITE; elsewhere, or on
/// one processor, it does nothing). On a VM the first touch of memory is
/// the dear part of a single-threaded step that writes a fresh array
/// (docs/PERFORMANCE.md, bench/fresh_memory.py): done beside the step, it leaves
/// the step's path. Backing changes no byte, so it may run while the owner
/// writes the same memory; the memory must not be freed before Wait.
/// </summary>
internal static unsafe class Prefault
{
    private const int PopulateWrite = 23;

    /// <summary>Backs the ranges, in this order (the one needed first,
    /// first), on a thread-pool thread.</summary>
    public static Task Start(params (nint Start, long Bytes)[] ranges)
    {
        if (!OperatingSystem.IsLinux() || Environment.ProcessorCount < 2)
            return Task.CompletedTask;
        return Task.Run(() =>
        {
            foreach ((nint start, long bytes) in ranges)
                Populate(start, bytes);
        });
    }

    /// <summary>Waits for the backing to end (it cannot fail: an older kernel
    /// refuses the advice, which leaves the memory to be backed on first touch).</summary>
    public static void Wait(Task backing) => backing.Wait();

    private static void Populate(nint start, long bytes)
    {
        // Small runs are not worth a thread's time; only the range's own
        // whole pages are advised (a small array shares its pages).
        if (bytes < HugePages.Size)
            return;
        long from = (start + NativePages.PageBytes - 1) & ~(NativePages.PageBytes - 1);
        long to = (start + bytes) & ~(NativePages.PageBytes - 1);
        if (to > from)
            Libc.Madvise((void*)from, (nuint)(to - from), PopulateWrite);
    }
}

/// <summary>The Linux calls the graph's build, its scratch files and the walks use (only called on Linux).</summary>
internal static unsafe class Libc
{
    [DllImport("libc", EntryPoint = "madvise")]
    public static extern int Madvise(void* address, nuint length, int advice);

    [DllImport("libc", EntryPoint = "mmap")]
    public static extern void* Mmap(void* address, nuint length, int protection, int flags, int fd, long offset);

    [DllImport("libc", EntryPoint = "munmap")]
    public static extern int Munmap(void* address, nuint length);

    [DllImport("libc", EntryPoint = "fallocate", SetLastError = true)]
    public static extern int Fallocate(int fd, int mode, long offset, long length);
}
