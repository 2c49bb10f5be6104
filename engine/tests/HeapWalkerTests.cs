using DumpScope.Engine.Analysis;
using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Tests;

/// <summary>
/// The dump as a walker sees it with bytes changed (replacement) or missing
/// (replacement null: holeLength bytes from start); ClrMD (the truth) reads
/// it whole.
/// </summary>
internal sealed class DamagedMemory(IMemoryReader inner, ulong start, byte[]? replacement, ulong holeLength) : IMemoryReader
{
    public int PointerSize => inner.PointerSize;

    public int Read(ulong address, Span<byte> buffer)
    {
        ulong holeEnd = start + holeLength;
        if (replacement is null && address < holeEnd && address + (ulong)buffer.Length > start)
        {
            if (address >= start)
                return 0;
            buffer = buffer[..(int)(start - address)];
        }
        int read = inner.Read(address, buffer);
        if (replacement is not null)
        {
            for (int i = 0; i < replacement.Length; i++)
            {
                ulong at = start + (ulong)i;
                if (at >= address && at < address + (ulong)read)
                    buffer[(int)(at - address)] = replacement[i];
            }
        }
        return read;
    }

    public bool Read<T>(ulong address, out T value) where T : unmanaged => throw new NotSupportedException();
    public T Read<T>(ulong address) where T : unmanaged => throw new NotSupportedException();

    public bool ReadPointer(ulong address, out ulong value)
    {
        Span<byte> bytes = stackalloc byte[8];
        bool read = Read(address, bytes[..PointerSize]) == PointerSize;
        value = read ? (PointerSize == 8 ? BitConverter.ToUInt64(bytes) : BitConverter.ToUInt32(bytes)) : 0;
        return read;
    }

    public ulong ReadPointer(ulong address) => ReadPointer(address, out ulong value) ? value : 0;
}

public class HeapWalkerTests
{
    private struct Collect() : IObjectVisitor
    {
        public readonly List<(ulong Address, ulong Mt, ulong Size)> Objects = [];

        public void Visit(ulong address, ulong methodTable, ClrType type, ulong size) =>
            Objects.Add((address, methodTable, size));
    }

    // The walker replaces ClrMD's enumeration for speed; it must find the
    // very same objects, with the same sizes, segment by segment.
    [Theory]
    [InlineData("blocked-finalizer", "net10")]
    [InlineData("loh-fragmentation", "net10")]
    [InlineData("threadpool-starvation", "net10")]
    [InlineData("event-leak", "net8")]
    [InlineData("healthy", "net8")]
    public void The_walker_finds_exactly_the_objects_ClrMD_enumerates(string scenario, string runtime)
    {
        using var opened = OpenedDump.Of(scenario, runtime);
        var (target, clr) = (opened.Target, opened.Runtime);
        var walker = new HeapWalker(clr, target.DataReader);
        foreach (ClrSegment segment in clr.Heap.Segments)
        {
            var visitor = new Collect();
            long count = walker.Walk(segment, ref visitor, CancellationToken.None);
            var expected = segment.EnumerateObjects(carefully: false)
                .Select(o => (o.Address, o.Type!.MethodTable, o.Size))
                .ToList();
            Assert.Equal(expected.Count, count);
            Assert.Equal(expected, visitor.Objects);
        }
    }
    public enum Where { FirstObjectOfLargestRegion, PageInsideLargestLoh, ArrayLengthInLargestRegion }

    // Damages one place of a real dump and walks it: every real object
    // outside the logged damage is found, every other object found lies in
    // the span of the damaged object, the damage is logged where it was made, and no
    // segment's objects and damage add up to more than the segment holds.
    [Theory]
    [InlineData("deadlock", "net10", Where.FirstObjectOfLargestRegion, 8, false)]
    [InlineData("loh-fragmentation", "net10", Where.PageInsideLargestLoh, 4096, false)]
    [InlineData("loh-fragmentation", "net10", Where.PageInsideLargestLoh, 4096, true)]
    [InlineData("event-leak", "net8", Where.FirstObjectOfLargestRegion, 8, false)]
    [InlineData("event-leak", "net8", Where.ArrayLengthInLargestRegion, 4, false)]
    public void A_damaged_heap_is_walked_around_and_the_damage_logged(string scenario, string runtime, Where where, int length, bool hole)
    {
        using var opened = OpenedDump.Of(scenario, runtime);
        var (target, clr) = (opened.Target, opened.Runtime);
        var segments = clr.Heap.Segments;
        ClrSegment largest(Func<ClrSegment, bool> which) => segments.Where(which).OrderByDescending(s => s.ObjectRange.Length).First();
        ulong at = where switch
        {
            Where.FirstObjectOfLargestRegion => largest(s => s.Kind is not (GCSegmentKind.Large or GCSegmentKind.Frozen)).FirstObjectAddress,
            Where.PageInsideLargestLoh => (largest(s => s.Kind == GCSegmentKind.Large) is var loh ? loh.ObjectRange.Start + loh.ObjectRange.Length / 2 : 0) & ~0xFFFUL,
            _ => largest(s => s.Kind is not (GCSegmentKind.Large or GCSegmentKind.Frozen)).EnumerateObjects()
                .First(o => o.IsArray && o.AsArray().Length > 4).Address + (ulong)target.DataReader.PointerSize,
        };
        byte[]? replacement = hole ? null : where == Where.ArrayLengthInLargestRegion ? [0xff, 0xff, 0xff, 0x7f] : new byte[length];
        var walker = new HeapWalker(clr, new DamagedMemory(target.DataReader, at, replacement, (ulong)length));
        var damage = new HeapDamageLog(1000);
        long found = 0, missedTotal = 0;
        foreach (ClrSegment segment in segments)
        {
            var visitor = new Collect();
            walker.Walk(segment, ref visitor, CancellationToken.None, damage);
            var truth = segment.EnumerateObjects(carefully: false).Select(o => (o.Address, o.Type!.MethodTable, o.Size)).ToList();
            var inSegment = damage.Ranges.Where(r => r.Start >= segment.ObjectRange.Start && r.Start < segment.ObjectRange.End).ToList();
            // A resynchronised walk can land on stale objects left in the
            // body of the damaged object (free space keeps old headers):
            // such objects lie inside a real object that starts in the
            // damage, never over an intact one.
            foreach (var stale in visitor.Objects.Except(truth))
            {
                var host = truth.Last(t => t.Address <= stale.Address);
                Assert.Contains(inSegment, r => host.Address >= r.Start && host.Address < r.End);
                Assert.True(stale.Address + stale.Size <= host.Address + host.Size);
            }
            var missed = truth.Except(visitor.Objects).ToList();
            Assert.All(missed, o => Assert.Contains(inSegment, r => o.Address >= r.Start && o.Address < r.End));
            ulong walked = visitor.Objects.Aggregate(0UL, (sum, o) => sum + o.Size);
            ulong damaged = inSegment.Aggregate(0UL, (sum, r) => sum + (r.End - r.Start));
            Assert.True(walked + damaged <= segment.ObjectRange.Length, $"{walked} + {damaged} > {segment.ObjectRange.Length}");
            found += visitor.Objects.Count;
            missedTotal += missed.Count;
        }
        HeapDamage first = Assert.Single(damage.Ranges);
        Assert.Equal(1, damage.Count);
        Assert.True(first.Start < at + (ulong)length && at < first.End, $"damage at 0x{at:x} logged as 0x{first.Start:x}-0x{first.End:x}");
        Assert.True(found > 0 && missedTotal > 0);
        Assert.Contains(hole ? "not in the dump" : where == Where.ArrayLengthInLargestRegion ? "past the segment end" : "not a type", first.Reason);
    }
}
