using DumpScope.Engine.Analysis;
using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Tests;

public class CoreFileViewTests
{
    // The view the walker makes of a dump ClrMD opened (a Linux core: never null here).
    private static CoreFileView ViewOf(OpenedDump opened) => CoreFileView.Of(opened.Target.DataReader)!;

    // The walker reads the heap in place in the core file: every segment's
    // bytes there are the bytes ClrMD reads at the same addresses.
    [Fact]
    public void The_heap_read_in_place_is_what_ClrMD_reads()
    {
        using var core = OpenedDump.Of("event-leak");
        var (target, view) = (core.Target, ViewOf(core));
        foreach (ClrSegment segment in core.Runtime.Heap.Segments.Where(s => s.ObjectRange.Length > 0))
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
        using var core = OpenedDump.Of("event-leak");
        CoreFileView view = ViewOf(core);
        var segments = core.Runtime.Heap.Segments.Where(s => s.ObjectRange.Length > 0).ToArray();
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

    // A core whose fullest GC region is cut short in the file (its PT_LOAD
    // ends at the page of the region's middle object, as a dump written
    // short leaves it; the rest of the file, which the DAC needs, stays).
    // Where the file's bytes end, the view holds nothing and the walker
    // reads through ClrMD, as before the view: the objects and the logged
    // damage are those of a walk through ClrMD alone (a reader that is no
    // IDataReader gets no view), and the walk says where it stopped.
    [Fact]
    public void A_core_with_a_region_cut_short_is_walked_as_through_ClrMD_alone()
    {
        var (dump, runtimeDir) = ScenarioDumps.Get("event-leak", "net10");
        ulong cut, middle;
        using (var whole = new OpenedDump(dump, runtimeDir))
        {
            // The region of most objects, cut at its middle object's page.
            ClrSegment fullest = whole.Runtime.Heap.Segments.OrderByDescending(s => s.EnumerateObjects().Count()).First();
            var objects = fullest.EnumerateObjects().Select(o => o.Address).ToArray();
            middle = objects[objects.Length / 2];
            cut = Assert.Single(ViewOf(whole).FileRanges([(middle, middle + 1)])).Start;
        }
        string path = Path.Combine(Path.GetTempPath(), $"cut-{Guid.NewGuid():n}.core");
        try
        {
            File.Copy(dump, path);
            using (var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
            {
                var (headers, _) = DumpFileCheck.ProgramHeaders(file, 1 << 20);
                int i = Array.FindIndex(headers!, h => h.Type == DumpFileCheck.ProgramHeader.Load && h.Offset <= cut && cut < h.Offset + h.FileSize);
                Assert.True(i >= 0);
                var elf = new byte[64];
                file.Position = 0;
                file.ReadExactly(elf);
                // p_filesz of header i (64-bit: 56-byte headers, the field at 32).
                file.Position = (long)BitConverter.ToUInt64(elf, 32) + i * 56 + 32;
                file.Write(BitConverter.GetBytes(cut - headers![i].Offset));
            }
            using var core = new OpenedDump(path, runtimeDir);
            var inPlace = Walk(core, core.Target.DataReader);
            var throughClrMd = Walk(core, new ThroughReader(core.Target.DataReader));
            Assert.Equal(throughClrMd.Objects, inPlace.Objects);
            Assert.Equal(throughClrMd.Damage, inPlace.Damage);
            // The view holds nothing from the cut on: there the walk read through ClrMD.
            Assert.True(ViewOf(core).At(middle, 8, 8).IsEmpty);
            // The walk stopped at the cut and said why (the objects past it are not read).
            HeapDamage cutShort = Assert.Single(inPlace.Damage);
            Assert.Equal("memory not in the dump", cutShort.Reason);
            Assert.DoesNotContain(inPlace.Objects, o => o.Item1 == middle);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static (List<(ulong, ulong, ulong)> Objects, List<HeapDamage> Damage) Walk(OpenedDump core, IMemoryReader memory)
    {
        var walker = new HeapWalker(core.Runtime, memory);
        var damage = new HeapDamageLog(1000);
        var objects = new List<(ulong, ulong, ulong)>();
        foreach (ClrSegment segment in core.Runtime.Heap.Segments)
        {
            var visitor = new Collect();
            walker.Walk(segment, ref visitor, CancellationToken.None, damage);
            objects.AddRange(visitor.Objects);
        }
        return (objects, damage.Ranges.ToList());
    }

    private struct Collect() : IObjectVisitor
    {
        public readonly List<(ulong, ulong, ulong)> Objects = [];

        public void Visit(ulong address, ulong methodTable, ClrType type, ulong size) => Objects.Add((address, methodTable, size));
    }

    /// <summary>The same reader, seen as a plain memory reader: the walker makes no view of it.</summary>
    private sealed class ThroughReader(IMemoryReader inner) : IMemoryReader
    {
        public int PointerSize => inner.PointerSize;
        public int Read(ulong address, Span<byte> buffer) => inner.Read(address, buffer);
        public bool Read<T>(ulong address, out T value) where T : unmanaged => inner.Read(address, out value);
        public T Read<T>(ulong address) where T : unmanaged => inner.Read<T>(address);
        public bool ReadPointer(ulong address, out ulong value) => inner.ReadPointer(address, out value);
        public ulong ReadPointer(ulong address) => inner.ReadPointer(address);
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
