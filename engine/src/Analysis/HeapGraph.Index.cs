using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace DumpScope.Engine.Analysis;

// The graph as a file, for the index (GraphIndex): every array as raw
// little-endian bytes, each section folded into a checksum written last. A
// file whose checksum, format or counts do not add up is refused whole.
public sealed partial class HeapGraph
{
    private static readonly byte[] Magic = "DSGRAPH1"u8.ToArray();
    private const int FormatVersion = 2;

    /// <summary>Writes the graph; the caller names and places the file.</summary>
    public void Save(Stream stream, byte[] key)
    {
        var sum = new Checksum();
        using var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        void Raw<T>(T[] array) where T : struct
        {
            writer.Write(array.Length);
            ReadOnlySpan<byte> bytes = MemoryMarshal.AsBytes(array.AsSpan());
            sum.Add(bytes);
            writer.Write(bytes);
        }
        void Text(string s)
        {
            byte[] bytes = Encoding.UTF8.GetBytes(s);
            Raw(bytes);
        }

        writer.Write(Magic);
        writer.Write(FormatVersion);
        Raw(key);
        writer.Write(_segments.Length);
        foreach (SegmentIndex seg in _segments)
        {
            Raw(new[] { seg.Start, seg.End, (ulong)seg.First });
            Raw(seg.Address);
        }
        Raw(_type);
        Raw(_size);
        Raw(_hugeSizes.Keys.ToArray());
        Raw(_hugeSizes.Values.ToArray());
        Raw(_edgeStart);
        Raw(_edges);
        Raw(_types.Select(t => t.MethodTable).ToArray());
        foreach (GraphType t in _types)
            Text(t.Name);
        Raw(_roots);
        writer.Write(_rootNames.Length);
        foreach (string name in _rootNames)
            Text(name);
        Raw(_rootTargets);
        Raw(_idom);
        Raw(_retained);
        Raw(new[] { (long)DominatorPasses, BitConverter.DoubleToInt64Bits(BuildSeconds) });
        // Retained size per type takes a walk of the whole tree: saved too,
        // so a reopened dump answers at once.
        TypeTotals totals = Totals(CancellationToken.None);
        Raw(totals.Count);
        Raw(totals.Shallow);
        Raw(totals.Reachable);
        Raw(totals.Retained);
        _typeRetained ??= Sorted(totals);
        writer.Write(sum.Value);
    }

    /// <summary>Reads a graph written by Save for this key; null when the
    /// file is of another dump, another format, cut short or damaged.</summary>
    public static HeapGraph? Load(Stream stream, byte[] key, CancellationToken cancel)
    {
        var sum = new Checksum();
        using var reader = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
        long left = stream.Length;
        T[] Raw<T>() where T : struct
        {
            int length = reader.ReadInt32();
            long bytes = (long)length * Unsafe.SizeOf<T>();
            if (length < 0 || bytes > left)
                throw new InvalidDataException("a section is longer than the file");
            var array = new T[length];
            Span<byte> span = MemoryMarshal.AsBytes(array.AsSpan());
            stream.ReadExactly(span);
            sum.Add(span);
            left -= bytes;
            cancel.ThrowIfCancellationRequested();
            return array;
        }
        string Text() => Encoding.UTF8.GetString(Raw<byte>());

        try
        {
            if (!reader.ReadBytes(Magic.Length).AsSpan().SequenceEqual(Magic) || reader.ReadInt32() != FormatVersion)
                return null;
            if (!Raw<byte>().AsSpan().SequenceEqual(key))
                return null;
            int segmentCount = reader.ReadInt32();
            if (segmentCount < 0 || segmentCount > left)
                return null;
            var segments = new SegmentIndex[segmentCount];
            for (int s = 0; s < segmentCount; s++)
            {
                ulong[] range = Raw<ulong>();
                ulong[] addresses = Raw<ulong>();
                if (range.Length != 3 || range[1] < range[0])
                    return null;
                segments[s] = new SegmentIndex(range[0], range[1], (int)range[2], addresses, Buckets(range[0], range[1], addresses));
            }
            int[] type = Raw<int>();
            uint[] size = Raw<uint>();
            int[] hugeKeys = Raw<int>();
            ulong[] hugeValues = Raw<ulong>();
            int[] edgeStart = Raw<int>();
            int[] edges = Raw<int>();
            ulong[] mts = Raw<ulong>();
            var types = new GraphType[mts.Length];
            for (int t = 0; t < mts.Length; t++)
                types[t] = new GraphType(mts[t], Text());
            GraphRoot[] roots = Raw<GraphRoot>();
            int nameCount = reader.ReadInt32();
            if (nameCount < 0 || nameCount > left)
                return null;
            var rootNames = new string[nameCount];
            for (int i = 0; i < nameCount; i++)
                rootNames[i] = Text();
            int[] rootTargets = Raw<int>();
            int[] idom = Raw<int>();
            ulong[] retained = Raw<ulong>();
            long[] tail = Raw<long>();
            var totals = new TypeTotals(Raw<long>(), Raw<ulong>(), Raw<long>(), Raw<ulong>());
            if (reader.ReadUInt64() != sum.Value || tail.Length != 2)
                return null;
            int n = type.Length;
            bool consistent = size.Length == n && edgeStart.Length == n + 1 && idom.Length == n + 1 && retained.Length == n + 1
                && hugeKeys.Length == hugeValues.Length && segments.Sum(s => (long)s.Address.Length) == n
                && type.All(t => (uint)t < (uint)types.Length)
                && new[] { totals.Count.Length, totals.Shallow.Length, totals.Reachable.Length, totals.Retained.Length }.All(l => l == types.Length);
            if (!consistent)
                return null;
            var huge = hugeKeys.Zip(hugeValues).ToDictionary(p => p.First, p => p.Second);
            var graph = new HeapGraph(type, size, huge, edgeStart, edges, segments, types, roots, rootNames, rootTargets,
                idom, retained, (int)tail[0], BitConverter.Int64BitsToDouble(tail[1]));
            graph._typeRetained = graph.Sorted(totals);
            return graph;
        }
        catch (Exception e) when (e is EndOfStreamException or InvalidDataException or IOException or ArgumentException)
        {
            return null;
        }
    }

    private static int[] Buckets(ulong start, ulong end, ulong[] addresses)
    {
        var buckets = new int[(int)(((end - start) >> BucketShift) + 1)];
        int at = 0;
        for (int b = 0; b < buckets.Length; b++)
        {
            ulong bucketStart = start + ((ulong)b << BucketShift);
            while (at < addresses.Length && addresses[at] < bucketStart)
                at++;
            buckets[b] = at;
        }
        return buckets;
    }

    /// <summary>A fast 64-bit checksum (not cryptographic: it guards against
    /// damage, the key against a file of another dump).</summary>
    private sealed class Checksum
    {
        private const ulong Prime1 = 0x9E3779B185EBCA87UL;
        private const ulong Prime2 = 0xC2B2AE3D27D4EB4FUL;

        public ulong Value { get; private set; } = 0x27D4EB2F165667C5UL;

        public void Add(ReadOnlySpan<byte> bytes)
        {
            ulong h = Value ^ ((ulong)bytes.Length * Prime1);
            ReadOnlySpan<ulong> words = MemoryMarshal.Cast<byte, ulong>(bytes);
            foreach (ulong word in words)
                h = BitOperations.RotateLeft(h ^ (word * Prime2), 31) * Prime1;
            foreach (byte b in bytes[(words.Length * 8)..])
                h = BitOperations.RotateLeft(h ^ (b * Prime2), 11) * Prime1;
            Value = h;
        }
    }
}
