using System.Text.Json;
using DumpScope.Engine.Analysis;
using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Tests;

public class NativePointersTests
{
    private sealed class Opened(OpenedDump dump, JsonElement facts) : IDisposable
    {
        public DataTarget Target => dump.Target;
        public ClrRuntime Runtime => dump.Runtime;
        public JsonElement Facts => facts;

        public NativePointerScan Scan() =>
            new(Runtime, new HeapWalker(Runtime, Target.DataReader), Target.DataReader, EngineLimits.Default);

        public void Dispose() => dump.Dispose();
    }

    private static Opened Open(string scenario)
    {
        var dump = OpenedDump.Of(scenario);
        using var facts = JsonDocument.Parse(File.ReadAllText(dump.Dump + ".facts.json"));
        return new Opened(dump, facts.RootElement.Clone());
    }

    private static NativeRange[] Buffers(JsonElement facts)
    {
        ulong size = facts.GetProperty("buffer_size").GetUInt64();
        return facts.GetProperty("buffer_addresses").EnumerateArray()
            .Select(a => Convert.ToUInt64(a.GetString()![2..], 16))
            .Select(a => new NativeRange(a, a + size))
            .ToArray();
    }

    // The 40 planted AllocHGlobal buffers are each owned by one
    // UnmanagedBuffer object, through its IntPtr field, and by nothing else.
    [Fact]
    public void Each_planted_native_buffer_is_found_from_its_owning_object()
    {
        using var opened = Open("blocked-finalizer");
        NativeRange[] buffers = Buffers(opened.Facts);
        string bufferType = opened.Facts.GetProperty("buffer_type").GetString()!;

        NativePointers result = opened.Scan().Scan(buffers, indirect: true, 1000, null, CancellationToken.None);

        Assert.False(result.Truncated);
        Assert.Equal(40, result.RangeCount);
        Assert.Equal(40, result.Items.Length);
        Assert.All(result.Items, item =>
        {
            Assert.Equal(bufferType, item.Type);
            Assert.Equal("_memory", item.Field);
            Assert.Null(item.Through);
            Assert.Equal(item.RangeStart, item.Value);
        });
        Assert.Equal(buffers.Select(b => b.Start).Order(), result.Items.Select(i => i.RangeStart!.Value).Order());
        Assert.Equal(40, result.Items.Select(i => i.Object).Distinct().Count());
        Assert.All(result.Items, item => Assert.Equal(bufferType, opened.Runtime.Heap.GetObject(item.Object).Type?.Name));
    }

    // One native indirection: asked about libcoreclr.so's image, the scan
    // also finds objects whose field points at a native runtime structure
    // (a Module, an EventPipe provider...) that itself points into the image.
    // Each such hit is checked against the dump's own bytes.
    [Fact]
    public void A_pointer_held_by_a_native_structure_is_found_through_it()
    {
        using var opened = Open("blocked-finalizer");
        ModuleInfo coreclr = opened.Target.DataReader.EnumerateModules()
            .First(m => Path.GetFileName(m.FileName) == "libcoreclr.so");
        var range = new NativeRange(coreclr.ImageBase, coreclr.ImageBase + (ulong)coreclr.ImageSize);

        NativePointers both = opened.Scan().Scan([range], indirect: true, 100_000, null, CancellationToken.None);
        NativePointers direct = opened.Scan().Scan([range], indirect: false, 100_000, null, CancellationToken.None);

        var through = both.Items.Where(i => i.Through is not null).ToList();
        Assert.NotEmpty(through);
        Assert.All(through, item =>
        {
            Assert.Equal(item.Value, item.Through);
            Assert.False(item.Value >= range.Start && item.Value < range.End);
            Assert.Null(opened.Runtime.Heap.GetSegmentByAddress(item.Value));
            Assert.True(opened.Target.DataReader.ReadPointer(item.Value + (ulong)item.ThroughOffset!.Value, out ulong word));
            Assert.True(word >= range.Start && word < range.End);
            Assert.Equal(range.Start, item.RangeStart);
        });
        // The direct hits are the same either way; the indirect ones come on top.
        Assert.All(direct.Items, item => Assert.Null(item.Through));
        Assert.Equal(direct.Items, both.Items.Where(i => i.Through is null));
    }

    [Fact]
    public void Without_ranges_every_native_pointer_field_is_listed_up_to_the_limit()
    {
        using var opened = Open("blocked-finalizer");
        var scan = opened.Scan();
        NativePointers all = scan.Scan([], indirect: true, 1_000_000, null, CancellationToken.None);
        Assert.False(all.Truncated);
        Assert.Equal(all.PointerFields, all.Items.Length);
        var buffers = Buffers(opened.Facts).Select(b => b.Start).ToHashSet();
        Assert.Equal(40, all.Items.Count(i => i.Field == "_memory" && buffers.Contains(i.Value)));
        Assert.All(all.Items, i => Assert.Null(i.RangeStart));

        NativePointers page = opened.Scan().Scan([], indirect: true, 5, null, CancellationToken.None);
        Assert.True(page.Truncated);
        Assert.Equal(5, page.Items.Length);
    }

    // The segments are walked in parallel; the answer is the one a walk of
    // them in ClrMD's order gives: each limit's items are the first ones of
    // the whole list, which is in that order, and the counts do not change.
    [Fact]
    public void A_limited_scan_lists_the_first_items_of_the_whole_scan_in_segment_order()
    {
        using var opened = Open("blocked-finalizer");
        NativePointers all = opened.Scan().Scan([], indirect: true, 1_000_000, null, CancellationToken.None);
        ClrSegment[] segments = [.. opened.Runtime.Heap.Segments];
        int SegmentOf(ulong address) => Array.FindIndex(segments, s => s.ObjectRange.Contains(address));
        var order = all.Items.Select(i => (SegmentOf(i.Object), i.Object)).ToArray();
        Assert.All(order, o => Assert.True(o.Item1 >= 0));
        Assert.Equal(order.OrderBy(o => o.Item1).ThenBy(o => o.Object), order);
        Assert.True(all.Items.Length > 10);
        foreach (int limit in new[] { 1, 7, all.Items.Length - 1, all.Items.Length })
        {
            NativePointers page = opened.Scan().Scan([], indirect: true, limit, null, CancellationToken.None);
            Assert.Equal(all.Items.Take(limit), page.Items);
            Assert.Equal(limit < all.Items.Length, page.Truncated);
            Assert.Equal((all.ObjectsWalked, all.PointerFields), (page.ObjectsWalked, page.PointerFields));
        }
    }

    [Fact]
    public void Bad_ranges_are_refused_with_a_clear_message()
    {
        var e = Assert.Throws<EngineException>(() =>
            NativePointerScan.ParseRanges(System.Text.Json.Nodes.JsonNode.Parse("[[16, 8]]"), EngineLimits.Default));
        Assert.Equal(ErrorCodes.InvalidParams, e.Code);
        Assert.Contains("ends", e.Message);
        Assert.Equal([new NativeRange(8, 16)], NativePointerScan.ParseRanges(System.Text.Json.Nodes.JsonNode.Parse("[[8, 16]]"), EngineLimits.Default));
    }
}
