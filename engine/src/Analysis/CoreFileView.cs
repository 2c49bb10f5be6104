using System.Runtime.InteropServices;
using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Analysis;

/// <summary>
/// A Linux core dump mapped read-only by the heap walker itself, through
/// which it reads the GC heap in place: ClrMD's reader copies every byte
/// out of its own mapping into the walker's buffer (a tenth of a graph
/// build's time). An address is found in the file through the core's
/// program headers (PT_LOAD: address, file offset, bytes in the file);
/// bytes the file does not hold (a truncated dump, a segment cut short)
/// are left to ClrMD, which the walker then reads as before.
///
/// Before a walk, the pages of the GC heap's segments can be mapped ahead
/// (madvise MADV_POPULATE_READ, Linux 5.14+): the walk then takes no page
/// fault every few pages, and a fault costs most in a VM. An advice only:
/// an older kernel ignores it.
/// </summary>
internal sealed unsafe class CoreFileView
{
    private const int PopulateRead = 22;
    private const ulong Page = 4096;
    // More program headers than any core the view is made for (a bigger
    // one is read through ClrMD alone).
    private const int MaxProgramHeaders = 1 << 20;

    private readonly MappedFile _file;
    // Ascending and apart: the address range of each PT_LOAD's bytes in
    // the file (End: past the last one), and their offset.
    private readonly (ulong Address, ulong End, ulong Offset)[] _loads;
    private readonly ulong _length;

    private CoreFileView(MappedFile file, (ulong, ulong, ulong)[] loads, ulong length)
    {
        _file = file;
        _loads = loads;
        _length = length;
    }

    /// <summary>Where the file is mapped (the tests find its pages there).</summary>
    internal ulong MappedAt => (ulong)_file.Base;

    /// <summary>A view of the core file ClrMD reads, when it reads one (a
    /// Linux target through ClrMD's own data reader); else null.</summary>
    public static CoreFileView? Of(IMemoryReader memory) =>
        memory is IDataReader reader && reader.TargetPlatform == OSPlatform.Linux ? Open(reader.DisplayName) : null;

    /// <summary>A view of a 64-bit little-endian core file; null for
    /// anything else, or a file that cannot be read or mapped.</summary>
    public static CoreFileView? Open(string path)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1);
            var loads = Loads(stream);
            return loads is null ? null : new CoreFileView(new MappedFile(stream), loads, (ulong)stream.Length);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            // Not a file (a reader's name that is no path), gone, or not to be mapped.
            return null;
        }
    }

    /// <summary>
    /// The bytes from <paramref name="address"/> on that the mapped file
    /// holds, up to <paramref name="want"/> of them; empty unless it holds
    /// at least the <paramref name="need"/> first.
    /// </summary>
    public ReadOnlySpan<byte> At(ulong address, int need, int want)
    {
        int lo = 0, hi = _loads.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            if (_loads[mid].Address <= address)
                lo = mid + 1;
            else
                hi = mid - 1;
        }
        if (hi < 0 || address >= _loads[hi].End || _loads[hi].End - address < (ulong)need)
            return [];
        var (start, end, offset) = _loads[hi];
        return new ReadOnlySpan<byte>(_file.Base + (offset + (address - start)), (int)Math.Min((ulong)want, end - address));
    }

    /// <summary>Maps ahead (Linux) the file's pages of these address ranges.</summary>
    public void ReadAhead(IEnumerable<(ulong Start, ulong End)> ranges)
    {
        if (!OperatingSystem.IsLinux())
            return;
        foreach (var (start, end) in FileRanges(ranges))
            Libc.Madvise(_file.Base + start, (nuint)(Math.Min(end, _length) - start), PopulateRead);
    }

    /// <summary>The file ranges (whole pages, ascending, apart) that hold
    /// these address ranges.</summary>
    internal List<(ulong Start, ulong End)> FileRanges(IEnumerable<(ulong Start, ulong End)> addresses)
    {
        var ranges = new List<(ulong Start, ulong End)>();
        foreach (var (start, end) in addresses)
        {
            foreach (var (address, loadEnd, offset) in _loads)
            {
                ulong from = Math.Max(start, address), to = Math.Min(end, loadEnd);
                if (from < to)
                    ranges.Add(((offset + (from - address)) & ~(Page - 1), (offset + (to - address) + Page - 1) & ~(Page - 1)));
            }
        }
        ranges.Sort();
        var merged = new List<(ulong Start, ulong End)>();
        foreach (var range in ranges)
        {
            if (merged.Count > 0 && range.Start <= merged[^1].End)
                merged[^1] = (merged[^1].Start, Math.Max(merged[^1].End, range.End));
            else
                merged.Add(range);
        }
        return merged;
    }

    /// <summary>The PT_LOAD headers of a 64-bit little-endian core (read
    /// as the dump's own check reads them), the bytes of each the file
    /// holds; null for anything else, or headers whose address ranges
    /// overlap (which of two ClrMD would read is its own affair).</summary>
    private static (ulong, ulong, ulong)[]? Loads(FileStream file)
    {
        ulong length = (ulong)file.Length;
        var (headers, _) = DumpFileCheck.ProgramHeaders(file, MaxProgramHeaders);
        if (headers is null)
            return null;
        var loads = new List<(ulong Address, ulong End, ulong Offset)>();
        foreach (var (type, offset, address, fileSize) in headers)
        {
            if (type != DumpFileCheck.ProgramHeader.Load || offset >= length || address + fileSize < address)
                continue;
            ulong size = Math.Min(fileSize, length - offset);
            if (size > 0)
                loads.Add((address, address + size, offset));
        }
        loads.Sort();
        for (int i = 1; i < loads.Count; i++)
        {
            if (loads[i].Address < loads[i - 1].End)
                return null;
        }
        return [.. loads];
    }
}
