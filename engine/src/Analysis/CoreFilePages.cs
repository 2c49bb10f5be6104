using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Analysis;

/// <summary>
/// Maps ahead of a heap walk the pages of a Linux core dump that hold the
/// GC heap's segments, in ClrMD's own read-only mapping of the file
/// (madvise MADV_POPULATE_READ, Linux 5.14+): the walk then copies out of
/// pages already mapped instead of taking a page fault every few pages,
/// and a fault costs most in a VM. The pages are found through the core's
/// program headers (PT_LOAD: address, file offset, size) and the mapping
/// through /proc/self/maps. An advice only: whatever fails (an older
/// kernel, a minidump, a reader that maps nothing) leaves the walk as it was.
/// </summary>
internal static class CoreFilePages
{
    private const int PopulateRead = 22;
    private const uint PtLoad = 1;
    private const ulong Page = 4096;
    // More program headers than any core this reads ahead for (a bigger one
    // is walked without it).
    private const int MaxProgramHeaders = 1 << 20;

    /// <summary>Maps ahead the dump's pages of these segments, when the dump
    /// is a core file ClrMD reads through a mapping of this process.</summary>
    public static void Populate(IMemoryReader memory, IEnumerable<ClrSegment> segments)
    {
        if (!OperatingSystem.IsLinux() || memory is not IDataReader reader || reader.TargetPlatform != OSPlatform.Linux)
            return;
        try
        {
            string path = Path.GetFullPath(reader.DisplayName);
            var views = Views(path);
            if (views.Count == 0)
                return;
            foreach (var (start, end) in FileRanges(path, segments.Select(s => (s.ObjectRange.Start, s.ObjectRange.End))))
                Advise(views, start, end);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    /// <summary>The file ranges (page-aligned, ascending, merged) holding
    /// these address ranges, from the core's PT_LOAD headers.</summary>
    internal static List<(ulong Start, ulong End)> FileRanges(string core, IEnumerable<(ulong Start, ulong End)> addresses)
    {
        var loads = Loads(core);
        var ranges = new List<(ulong Start, ulong End)>();
        foreach (var (start, end) in addresses)
        {
            foreach (var (vaddr, offset, size) in loads)
            {
                ulong from = Math.Max(start, vaddr), to = Math.Min(end, vaddr + size);
                if (from < to)
                    ranges.Add(((offset + (from - vaddr)) & ~(Page - 1), (offset + (to - vaddr) + Page - 1) & ~(Page - 1)));
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

    /// <summary>The PT_LOAD headers of a 64-bit little-endian core (none for
    /// anything else): address, file offset and bytes in the file.</summary>
    private static List<(ulong Address, ulong Offset, ulong Size)> Loads(string core)
    {
        var loads = new List<(ulong, ulong, ulong)>();
        using var file = new FileStream(core, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1);
        Span<byte> header = stackalloc byte[64];
        if (RandomAccess.Read(file.SafeFileHandle, header, 0) < 64 || !header[..4].SequenceEqual("\u007fELF"u8) || header[4] != 2 || header[5] != 1)
            return loads;
        long phoff = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(header[32..]), long.MaxValue);
        int entry = BinaryPrimitives.ReadUInt16LittleEndian(header[54..]);
        long count = BinaryPrimitives.ReadUInt16LittleEndian(header[56..]);
        if (count == 0xffff)
        {
            // Extended numbering: the count is section header 0's sh_info.
            Span<byte> section = stackalloc byte[64];
            long shoff = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(header[40..]), long.MaxValue);
            if (RandomAccess.Read(file.SafeFileHandle, section, shoff) < 64)
                return loads;
            count = BinaryPrimitives.ReadUInt32LittleEndian(section[44..]);
        }
        if (entry != 56 || count > MaxProgramHeaders)
            return loads;
        byte[] table = new byte[count * entry];
        if (RandomAccess.Read(file.SafeFileHandle, table, phoff) < table.Length)
            return loads;
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> ph = table.AsSpan(i * entry, entry);
            if (BinaryPrimitives.ReadUInt32LittleEndian(ph) == PtLoad)
                loads.Add((BinaryPrimitives.ReadUInt64LittleEndian(ph[16..]), BinaryPrimitives.ReadUInt64LittleEndian(ph[8..]),
                    BinaryPrimitives.ReadUInt64LittleEndian(ph[32..])));
        }
        return loads;
    }

    /// <summary>This process's mappings of the file: address range and the
    /// file offset at its start.</summary>
    private static List<(ulong Start, ulong End, ulong Offset)> Views(string path)
    {
        string? real = RealPath(path);
        var views = new List<(ulong, ulong, ulong)>();
        foreach (string line in File.ReadLines("/proc/self/maps"))
        {
            // "start-end perms offset dev inode   path": the path is the rest, after the inode.
            string[] fields = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length < 6 || (fields[5] != path && fields[5] != real))
                continue;
            string[] range = fields[0].Split('-');
            if (range.Length == 2
                && ulong.TryParse(range[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong start)
                && ulong.TryParse(range[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong end)
                && ulong.TryParse(fields[2], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong offset))
                views.Add((start, end, offset));
        }
        return views;
    }

    // The maps file names a file by its path with every link resolved.
    private static string? RealPath(string path)
    {
        nint resolved = Libc.Realpath(path, 0);
        if (resolved == 0)
            return null;
        try
        {
            return Marshal.PtrToStringUTF8(resolved);
        }
        finally
        {
            Libc.Free(resolved);
        }
    }

    private static unsafe void Advise(List<(ulong Start, ulong End, ulong Offset)> views, ulong start, ulong end)
    {
        foreach (var (viewStart, viewEnd, viewOffset) in views)
        {
            ulong viewFileEnd = viewOffset + (viewEnd - viewStart);
            ulong from = Math.Max(start, viewOffset), to = Math.Min(end, viewFileEnd);
            if (from < to)
                Libc.Madvise((void*)(viewStart + (from - viewOffset)), (nuint)(to - from), PopulateRead);
        }
    }
}
