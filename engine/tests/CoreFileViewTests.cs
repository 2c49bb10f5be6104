using DumpScope.Engine.Analysis;
using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Tests;

public class CoreFileViewTests
{
    private static (DataTarget Target, ClrRuntime Runtime) Open(string scenario)
    {
        var (dump, runtimeDir) = ScenarioDumps.Get(scenario, "net10");
        var target = DataTarget.LoadDump(dump, new DataTargetOptions { SymbolPaths = [], UseLockFreeMemoryMapReader = true });
        return (target, target.ClrVersions[0].CreateRuntime(Path.Combine(runtimeDir, "libmscordaccore.so"), ignoreMismatch: true));
    }

    // The walker reads the heap in place in the core file: every segment's
    // bytes there are the bytes ClrMD reads at the same addresses.
    [Fact]
    public void The_heap_read_in_place_is_what_ClrMD_reads()
    {
        var (target, clr) = Open("event-leak");
        using DataTarget owned = target;
        using ClrRuntime runtime = clr;
        CoreFileView view = CoreFileView.Of(target.DataReader)!;
        foreach (ClrSegment segment in clr.Heap.Segments.Where(s => s.ObjectRange.Length > 0))
        {
            foreach (ulong address in new[] { segment.ObjectRange.Start, segment.FirstObjectAddress, segment.ObjectRange.End - 64 })
            {
                byte[] held = view.At(address, 64, 4096).ToArray();
                Assert.InRange(held.Length, 64, 4096);
                var expected = new byte[held.Length];
                Assert.Equal(held.Length, target.DataReader.Read(address, expected));
                Assert.Equal(expected, held);
            }
        }
        Assert.True(view.At(0x10, 8, 8).IsEmpty);
    }

    // The pages read ahead of a walk are the core file's pages of the GC
    // heap: whole pages, ascending and apart, each segment's first object
    // in them; once read ahead they are mapped (resident) in the view.
    [Fact]
    public void Reading_ahead_maps_the_pages_of_the_heaps_segments()
    {
        var (target, clr) = Open("event-leak");
        using DataTarget owned = target;
        using ClrRuntime runtime = clr;
        CoreFileView view = CoreFileView.Of(target.DataReader)!;
        var segments = clr.Heap.Segments.Where(s => s.ObjectRange.Length > 0).ToArray();
        var ranges = segments.Select(s => (s.ObjectRange.Start, s.ObjectRange.End)).ToArray();
        ulong heap = segments.Aggregate(0UL, (sum, s) => sum + s.ObjectRange.Length);

        var all = view.FileRanges(ranges);
        Assert.NotEmpty(all);
        for (int i = 0; i < all.Count; i++)
        {
            Assert.Equal(0UL, all[i].Start % 4096);
            Assert.True(all[i].Start < all[i].End);
            Assert.True(i == 0 || all[i - 1].End < all[i].Start);
        }
        foreach (ClrSegment segment in segments)
        {
            var first = Assert.Single(view.FileRanges([(segment.FirstObjectAddress, segment.FirstObjectAddress + 8)]));
            Assert.Contains(all, r => r.Start <= first.Start && first.End <= r.End);
        }

        long before = ResidentKib(view.MappedAt);
        view.ReadAhead(ranges);
        long after = ResidentKib(view.MappedAt);
        Assert.True((ulong)(after - before) * 1024 >= heap / 2, $"{before} KiB, then {after} KiB resident; the heap holds {heap} bytes");
    }

    // The resident KiB of this process's mapping that starts there (smaps).
    private static long ResidentKib(ulong start)
    {
        bool inView = false;
        foreach (string line in File.ReadLines("/proc/self/smaps"))
        {
            if (char.IsAsciiHexDigit(line[0]) && line.Contains('-'))
                inView = line.StartsWith($"{start:x}-", StringComparison.Ordinal);
            else if (inView && line.StartsWith("Rss:", StringComparison.Ordinal))
                return long.Parse(line["Rss:".Length..].Trim().Split(' ')[0]);
        }
        throw new InvalidOperationException($"no mapping at 0x{start:x}");
    }

    [Fact]
    public void A_file_that_is_not_a_core_gets_no_view()
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(path, new byte[4096]);
            Assert.Null(CoreFileView.Open(path));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
