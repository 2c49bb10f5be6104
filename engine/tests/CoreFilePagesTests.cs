using DumpScope.Engine.Analysis;
using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Tests;

public class CoreFilePagesTests
{
    // The pages read ahead of a walk are the core file's pages of the GC
    // heap: each segment's first object (its method table) is found in the
    // file where the advised range says, and the ranges are whole pages of
    // the file, ascending and apart.
    [Fact]
    public void The_pages_read_ahead_hold_the_heaps_segments()
    {
        var (dump, runtimeDir) = ScenarioDumps.Get("event-leak", "net10");
        using var target = DataTarget.LoadDump(dump, new DataTargetOptions { SymbolPaths = [], UseLockFreeMemoryMapReader = true });
        using var clr = target.ClrVersions[0].CreateRuntime(Path.Combine(runtimeDir, "libmscordaccore.so"), ignoreMismatch: true);
        var segments = clr.Heap.Segments.Where(s => s.ObjectRange.Length > 0).ToArray();
        long length = new FileInfo(dump).Length;

        var all = CoreFilePages.FileRanges(dump, segments.Select(s => (s.ObjectRange.Start, s.ObjectRange.End)));
        Assert.NotEmpty(all);
        for (int i = 0; i < all.Count; i++)
        {
            Assert.Equal(0UL, all[i].Start % 4096);
            Assert.True(all[i].Start < all[i].End && all[i].End <= (ulong)length + 4095);
            Assert.True(i == 0 || all[i - 1].End < all[i].Start);
        }

        using var file = File.OpenHandle(dump);
        foreach (ClrSegment segment in segments)
        {
            ulong first = segment.FirstObjectAddress;
            var range = Assert.Single(CoreFilePages.FileRanges(dump, [(first, first + 8)]));
            Assert.Contains(all, r => r.Start <= range.Start && range.End <= r.End);
            var inFile = new byte[8];
            RandomAccess.Read(file, inFile, (long)(range.Start + first % 4096));
            Assert.True(target.DataReader.ReadPointer(first, out ulong methodTable));
            Assert.Equal(methodTable, BitConverter.ToUInt64(inFile));
            Assert.NotNull(clr.Heap.GetObjectType(first));
        }
    }

    // Read ahead, the heap's pages are mapped in ClrMD's own view of the
    // file: its resident size grows by about the heap's bytes.
    [Fact]
    public void Reading_ahead_maps_the_heaps_pages_in_ClrMDs_view_of_the_file()
    {
        var (dump, runtimeDir) = ScenarioDumps.Get("event-leak", "net10");
        using var target = DataTarget.LoadDump(dump, new DataTargetOptions { SymbolPaths = [], UseLockFreeMemoryMapReader = true });
        using var clr = target.ClrVersions[0].CreateRuntime(Path.Combine(runtimeDir, "libmscordaccore.so"), ignoreMismatch: true);
        var segments = clr.Heap.Segments.Where(s => s.ObjectRange.Length > 0).ToArray();
        ulong heap = segments.Aggregate(0UL, (sum, s) => sum + s.ObjectRange.Length);

        long before = ResidentKib(dump);
        CoreFilePages.Populate(target.DataReader, segments);
        long after = ResidentKib(dump);
        Assert.True((ulong)(after - before) * 1024 >= heap / 2, $"{before} KiB, then {after} KiB resident; the heap holds {heap} bytes");
    }

    // The resident KiB of this process's mappings of the file (smaps).
    private static long ResidentKib(string path)
    {
        long kib = 0;
        bool inFile = false;
        foreach (string line in File.ReadLines("/proc/self/smaps"))
        {
            if (char.IsAsciiHexDigit(line[0]) && line.Contains('-'))
                inFile = line.EndsWith(" " + Path.GetFullPath(path), StringComparison.Ordinal);
            else if (inFile && line.StartsWith("Rss:", StringComparison.Ordinal))
                kib += long.Parse(line["Rss:".Length..].Trim().Split(' ')[0]);
        }
        return kib;
    }

    [Fact]
    public void A_file_that_is_not_a_core_has_no_pages_to_read_ahead()
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(path, new byte[4096]);
            Assert.Empty(CoreFilePages.FileRanges(path, [(0x1000, 0x2000)]));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
