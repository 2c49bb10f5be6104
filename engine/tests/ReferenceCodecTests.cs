using DumpScope.Engine.Analysis;

namespace DumpScope.Engine.Tests;

public class ReferenceCodecTests
{
    private const ulong GiB = 1UL << 30;
    private const ulong MiB = 1UL << 20;

    // .NET 10 on Linux: regions of 4 MiB and 32 MiB near one another, and
    // the frozen segment (string literals) some 50 GiB above them.
    private static readonly (ulong Start, ulong End)[] Regions =
    [
        (0x7f4200400028, 0x7f42007fffd0),
        (0x7f4200800028, 0x7f4202800000),
        (0x7f4203000028, 0x7f4203000400),
        (0x7f4200000000 + 50 * GiB + 0x28, 0x7f4200000000 + 50 * GiB + 0x9e00),
    ];

    [Fact]
    public void Every_aligned_address_of_a_segment_comes_back_from_its_32_bit_code()
    {
        ReferenceCodec codec = ReferenceCodec.For(Regions, 8)!;
        var codes = new HashSet<uint>();
        foreach (var (start, end) in Regions)
        {
            for (ulong address = start; address < end; address += address + 4096 < end ? 4088UL : 8UL)
            {
                uint code = codec.Encode(address);
                Assert.NotEqual(ReferenceCodec.Escaped, code);
                Assert.Equal(address, codec.Decode(code));
                Assert.True(codes.Add(code));
            }
        }
    }

    [Fact]
    public void An_address_no_code_names_exactly_is_escaped_to_be_kept_whole()
    {
        ReferenceCodec codec = ReferenceCodec.For(Regions, 8)!;
        // Below the lowest segment's chunk, between chunks that hold no
        // segment, above the highest, off the pointer alignment, null-ish.
        foreach (ulong address in new ulong[] { 0x18, 0x7f41ffff0000, 0x7f4200000000 + 20 * GiB, 0x7f4200000000 + 60 * GiB,
            0x7f4200400024, ulong.MaxValue - 7 })
            Assert.Equal(ReferenceCodec.Escaped, codec.Encode(address));
    }

    [Fact]
    public void A_32_bit_process_is_coded_at_its_4_byte_alignment()
    {
        (ulong, ulong)[] segments = [(0x02001000, 0x02400000), (0x03000000, 0x04000000)];
        ReferenceCodec codec = ReferenceCodec.For(segments, 4)!;
        foreach (ulong address in new ulong[] { 0x02001004, 0x02001008, 0x033ffffc })
            Assert.Equal(address, codec.Decode(codec.Encode(address)));
        Assert.Equal(ReferenceCodec.Escaped, codec.Encode(0x02001002));
    }

    // Segments whose chunks hold more than 32 GiB (old-style segments of a
    // very big heap) have no 32-bit code for every pointer-aligned address:
    // the walk keeps every reference in 64 bits.
    [Fact]
    public void Segments_past_32_GiB_of_chunks_get_no_codec()
    {
        (ulong, ulong)[] big = [(0x10000000000, 0x10000000000 + 20 * GiB), (0x20000000000, 0x20000000000 + 13 * GiB)];
        Assert.Null(ReferenceCodec.For(big, 8));
        (ulong, ulong)[] fits = [(0x10000000000, 0x10000000000 + 20 * GiB), (0x20000000000, 0x20000000000 + 11 * GiB)];
        ReferenceCodec codec = ReferenceCodec.For(fits, 8)!;
        ulong last = 0x20000000000 + 11 * GiB - 8;
        Assert.Equal(last, codec.Decode(codec.Encode(last)));
    }

    // Segments spread over terabytes (Windows, old segments) take bigger
    // chunks rather than a huge table.
    [Fact]
    public void Segments_terabytes_apart_take_bigger_chunks()
    {
        (ulong, ulong)[] spread = [(0x10000000000, 0x10000000000 + 256 * MiB), (0x7f0000000000, 0x7f0000000000 + 256 * MiB)];
        ReferenceCodec codec = ReferenceCodec.For(spread, 8)!;
        Assert.True(codec.ChunkBytes > 4 * MiB);
        foreach (var (start, end) in spread)
        {
            Assert.Equal(start, codec.Decode(codec.Encode(start)));
            Assert.Equal(end - 8, codec.Decode(codec.Encode(end - 8)));
        }
    }
}
