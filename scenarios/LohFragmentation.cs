using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace DumpScope.Scenarios;

// Large arrays allocated and every other one released, so the large-object
// heap (never compacted by default) is left with free gaps between live
// arrays; small buffers pinned by handles fragment the small-object heap.

[StructLayout(LayoutKind.Sequential)]
public struct Sample
{
    public long Ticks;
    public double Value;
}

[StructLayout(LayoutKind.Sequential)]
public struct Packet
{
    public long Header;
    public long Payload;
}

internal static class LohFragmentation
{
    private static readonly List<Sample[]> Live = new();
    private static readonly List<GCHandle> Pins = new();
    private static readonly List<object> Survivors = new();

    internal static Facts Plant(string[] args)
    {
        int largeCount = (int)Args.Long(args, "--large", 64);
        int largeLength = (int)Args.Long(args, "--large-length", 8192);
        int pinnedCount = (int)Args.Long(args, "--pinned", 16);
        int pinnedLength = (int)Args.Long(args, "--pinned-length", 256);

        AllocateLarge(largeCount, largeLength);
        AllocatePinned(pinnedCount, pinnedLength);
        GC.Collect();

        return new Facts
        {
            ["large_array_type"] = typeof(Sample[]).FullName,
            ["large_array_length"] = largeLength,
            ["large_array_element_size"] = Marshal.SizeOf<Sample>(),
            ["large_arrays_allocated"] = largeCount,
            ["live_large_arrays"] = Live.Count,
            ["released_large_arrays"] = largeCount - Live.Count,
            ["pinned_type"] = typeof(Packet[]).FullName,
            ["pinned_length"] = pinnedLength,
            ["pinned_handles"] = Pins.Count,
            ["pinned_addresses"] = Pins.Select(h => $"0x{h.AddrOfPinnedObject():x}").ToList(),
        };
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void AllocateLarge(int count, int length)
    {
        // All stay alive until the last is allocated, so no GC in between can
        // reuse a gap; then every other one is dropped, the last one kept so
        // each gap lies between two live arrays.
        var all = new Sample[count][];
        for (int i = 0; i < count; i++)
        {
            all[i] = new Sample[length];
        }
        for (int i = count - 1; i >= 0; i -= 2)
        {
            Live.Add(all[i]);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void AllocatePinned(int count, int length)
    {
        for (int i = 0; i < count; i++)
        {
            Pins.Add(GCHandle.Alloc(new Packet[length], GCHandleType.Pinned));
            // Garbage between the pins becomes holes the GC cannot compact away,
            // and a survivor keeps each hole from spanning to the next pin.
            for (int j = 0; j < 64; j++)
            {
                _ = new byte[512];
            }
            Survivors.Add(new byte[64]);
        }
    }
}
