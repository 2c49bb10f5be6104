using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;

namespace DumpScope.Engine.Analysis;

// The graph as a file, for the index (GraphIndex): a header with a table of
// sections (offset, length, checksum) and its own checksum, then every array
// as raw little-endian bytes, each section 64-byte aligned. Loading maps the
// file read-only and uses the sections in place: nothing is copied, the
// pages come from the page cache as they are touched. Every section's
// checksum is verified at load (in parallel, at memory speed); a file whose
// header, checksums, format or counts do not add up is refused whole.
public sealed unsafe partial class HeapGraph
{
    private static readonly byte[] Magic = "DSGRAPH1"u8.ToArray();
    // 5: addresses as 32-bit offsets within their segment, retained sizes
    // in 32 bits (4 GiB and more aside), types in 16 bits when they fit; 4: the damage the build walked
    // around (GraphDamage); 3: sections mapped in place (2: one stream,
    // read and copied whole).
    private const int FormatVersion = 5;
    private const int KeyBytes = 32;
    // Magic, version, section count, key.
    private const int FixedHeaderBytes = 8 + 4 + 4 + KeyBytes;
    private const int EntryBytes = 24;
    private const int Alignment = 64;
    // Per segment in the Segments section: start, end, first object, shift.
    private const int SegmentFields = 4;

    /// <summary>The sections every file has, in this order; then each
    /// segment's address offsets and buckets.</summary>
    private enum Section
    {
        Segments,
        Type,
        Size,
        HugeKeys,
        HugeValues,
        EdgeStart,
        Edges,
        TypeMethodTables,
        TypeNameEnds,
        TypeNameBytes,
        Roots,
        RootNameEnds,
        RootNameBytes,
        RootTargets,
        Idom,
        Retained,
        Tail,
        TotalCount,
        TotalShallow,
        TotalReachable,
        TotalRetained,
        DominatedStart,
        DominatedChildren,
        DamageCounts,
        DamageStarts,
        DamageEnds,
        DamageKindEnds,
        DamageKindBytes,
        DamageReasonEnds,
        DamageReasonBytes,
        HugeRetainedKeys,
        HugeRetainedValues,
        FirstSegment,
    }

    /// <summary>Writes the graph; the caller names and places the file (a seekable stream).</summary>
    public void Save(Stream stream, byte[] key)
    {
        if (key.Length != KeyBytes)
            throw new ArgumentException($"an index key has {KeyBytes} bytes", nameof(key));
        int count = (int)Section.FirstSegment + 2 * _segments.Length;
        var table = new (long Offset, long Bytes, ulong Sum)[count];
        long headerBytes = FixedHeaderBytes + (long)count * EntryBytes + sizeof(ulong);
        stream.Position = 0;
        stream.Write(new byte[Align(headerBytes)]);

        void Write(Section section, byte* bytes, long length)
        {
            long at = stream.Position;
            table[(int)section] = (at, length, SectionChecksum.Of(bytes, length, CancellationToken.None));
            for (long done = 0; done < length;)
            {
                int piece = (int)Math.Min(length - done, 1 << 30);
                stream.Write(new ReadOnlySpan<byte>(bytes + done, piece));
                done += piece;
            }
            stream.Write(new byte[Align(stream.Position) - stream.Position]);
        }
        void WriteColumn<T>(Section section, Column<T> column) where T : unmanaged => Write(section, (byte*)column.Pointer, column.Bytes);
        void WriteArray<T>(Section section, T[] array) where T : unmanaged
        {
            fixed (T* p = array)
                Write(section, (byte*)p, (long)array.Length * sizeof(T));
        }
        void Texts(Section ends, Section bytes, IEnumerable<string> texts)
        {
            var all = new List<byte>();
            var end = new List<int>();
            foreach (string text in texts)
            {
                all.AddRange(Encoding.UTF8.GetBytes(text));
                end.Add(all.Count);
            }
            WriteArray(ends, end.ToArray());
            WriteArray(bytes, all.ToArray());
        }

        WriteArray(Section.Segments, _segments.SelectMany(s => new[] { s.Start, s.End, (ulong)s.First, (ulong)s.Shift }).ToArray());
        Write(Section.Type, _type.Pointer, _type.Bytes);
        WriteColumn(Section.Size, _size);
        WriteArray(Section.HugeKeys, _hugeSizes.Keys.ToArray());
        WriteArray(Section.HugeValues, _hugeSizes.Values.ToArray());
        WriteColumn(Section.EdgeStart, _edgeStart);
        WriteColumn(Section.Edges, _edges);
        WriteArray(Section.TypeMethodTables, _types.Select(t => t.MethodTable).ToArray());
        Texts(Section.TypeNameEnds, Section.TypeNameBytes, _types.Select(t => t.Name));
        WriteArray(Section.Roots, _roots);
        Texts(Section.RootNameEnds, Section.RootNameBytes, _rootNames);
        WriteArray(Section.RootTargets, _rootTargets);
        WriteColumn(Section.Idom, _idom);
        WriteColumn(Section.Retained, _retained);
        WriteArray(Section.HugeRetainedKeys, _hugeRetained.Keys.ToArray());
        WriteArray(Section.HugeRetainedValues, _hugeRetained.Values.ToArray());
        WriteArray(Section.Tail, new[] { (long)DominatorPasses, BitConverter.DoubleToInt64Bits(BuildSeconds) });
        // The dominator tree's rows: made in a scratch file beside the index
        // when no question has made them yet (GraphIndex.Save says where).
        var dominated = Dominated;
        // Retained size per type takes a walk of the whole tree: saved too,
        // so a reopened dump answers at once.
        TypeTotals totals = Totals(CancellationToken.None);
        WriteArray(Section.TotalCount, totals.Count);
        WriteArray(Section.TotalShallow, totals.Shallow);
        WriteArray(Section.TotalReachable, totals.Reachable);
        WriteArray(Section.TotalRetained, totals.Retained);
        _typeRetained ??= Sorted(totals);
        // The rows saved, so that a reopened dump pages through the tree
        // without a pass over every object.
        var (dominatedStart, dominatedChildren) = dominated;
        WriteColumn(Section.DominatedStart, dominatedStart);
        WriteColumn(Section.DominatedChildren, dominatedChildren);
        WriteArray(Section.DamageCounts, new[] { _damage.RangeCount, (long)_damage.UnwalkedBytes, _damage.DanglingReferences });
        WriteArray(Section.DamageStarts, _damage.Ranges.Select(r => r.Start).ToArray());
        WriteArray(Section.DamageEnds, _damage.Ranges.Select(r => r.End).ToArray());
        Texts(Section.DamageKindEnds, Section.DamageKindBytes, _damage.Ranges.Select(r => r.Kind));
        Texts(Section.DamageReasonEnds, Section.DamageReasonBytes, _damage.Ranges.Select(r => r.Reason));
        for (int s = 0; s < _segments.Length; s++)
        {
            WriteColumn((Section)((int)Section.FirstSegment + 2 * s), _segments[s].Offset);
            WriteColumn((Section)((int)Section.FirstSegment + 2 * s + 1), _segments[s].Buckets);
        }

        var header = new byte[headerBytes];
        Magic.CopyTo(header, 0);
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(8), FormatVersion);
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(12), count);
        key.CopyTo(header, 16);
        for (int i = 0; i < count; i++)
        {
            Span<byte> entry = header.AsSpan(FixedHeaderBytes + i * EntryBytes, EntryBytes);
            BinaryPrimitives.WriteInt64LittleEndian(entry, table[i].Offset);
            BinaryPrimitives.WriteInt64LittleEndian(entry[8..], table[i].Bytes);
            BinaryPrimitives.WriteUInt64LittleEndian(entry[16..], table[i].Sum);
        }
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan((int)headerBytes - sizeof(ulong)), HeaderSum(header));
        stream.Position = 0;
        stream.Write(header);
        stream.Position = stream.Length;
    }

    /// <summary>Maps a graph written by Save for this key; null when the file
    /// is of another dump, another format, cut short or damaged. The graph
    /// reads the file in place: the stream may be closed afterwards.</summary>
    public static HeapGraph? Load(FileStream stream, byte[] key, CancellationToken cancel)
    {
        long length = stream.Length;
        if (length < FixedHeaderBytes || key.Length != KeyBytes)
            return null;
        var start = new byte[FixedHeaderBytes];
        stream.Position = 0;
        stream.ReadExactly(start);
        int count = BinaryPrimitives.ReadInt32LittleEndian(start.AsSpan(12));
        if (!start.AsSpan(0, 8).SequenceEqual(Magic) || BinaryPrimitives.ReadInt32LittleEndian(start.AsSpan(8)) != FormatVersion
            || !start.AsSpan(16, KeyBytes).SequenceEqual(key))
            return null;
        if (count < (int)Section.FirstSegment || (count - (int)Section.FirstSegment) % 2 != 0
            || count > (length - FixedHeaderBytes) / EntryBytes)
            return null;
        long headerBytes = FixedHeaderBytes + (long)count * EntryBytes + sizeof(ulong);
        var header = new byte[headerBytes];
        start.CopyTo(header, 0);
        stream.ReadExactly(header.AsSpan(FixedHeaderBytes));
        if (BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan((int)headerBytes - sizeof(ulong))) != HeaderSum(header))
            return null;
        var table = new (long Offset, long Bytes, ulong Sum)[count];
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> entry = header.AsSpan(FixedHeaderBytes + i * EntryBytes, EntryBytes);
            table[i] = (BinaryPrimitives.ReadInt64LittleEndian(entry), BinaryPrimitives.ReadInt64LittleEndian(entry[8..]),
                BinaryPrimitives.ReadUInt64LittleEndian(entry[16..]));
            if (table[i].Offset < headerBytes || table[i].Offset % Alignment != 0 || table[i].Bytes < 0 || table[i].Bytes > length - table[i].Offset)
                return null;
        }

        var file = new MappedFile(stream);
        foreach (var (offset, bytes, sum) in table)
        {
            if (SectionChecksum.Of(file.Base + offset, bytes, cancel) != sum)
                return null;
        }

        // A section as a column of T; null when its length is not a whole number of T.
        Column<T>? Part<T>(Section section) where T : unmanaged
        {
            var (offset, bytes, _) = table[(int)section];
            return bytes % sizeof(T) != 0 || bytes / sizeof(T) > int.MaxValue
                ? null
                : new Column<T>((T*)(file.Base + offset), (int)(bytes / sizeof(T)), file);
        }
        T[]? Copy<T>(Section section) where T : unmanaged => Part<T>(section)?.Span.ToArray();
        string[]? Texts(Section ends, Section bytes)
        {
            if (Copy<int>(ends) is not { } end || Part<byte>(bytes) is not { } all)
                return null;
            var texts = new string[end.Length];
            int from = 0;
            for (int i = 0; i < end.Length; i++)
            {
                if (end[i] < from || end[i] > all.Length)
                    return null;
                texts[i] = Encoding.UTF8.GetString(all.Slice(from, end[i] - from));
                from = end[i];
            }
            return texts;
        }

        if (Copy<ulong>(Section.Segments) is not { } meta || meta.Length != SegmentFields * ((count - (int)Section.FirstSegment) / 2)
            || Part<uint>(Section.Size) is not { } size
            || Copy<int>(Section.HugeKeys) is not { } hugeKeys || Copy<ulong>(Section.HugeValues) is not { } hugeValues
            || Part<int>(Section.EdgeStart) is not { } edgeStart || Part<int>(Section.Edges) is not { } edges
            || Copy<ulong>(Section.TypeMethodTables) is not { } mts || Texts(Section.TypeNameEnds, Section.TypeNameBytes) is not { } names
            || Copy<GraphRoot>(Section.Roots) is not { } roots || Texts(Section.RootNameEnds, Section.RootNameBytes) is not { } rootNames
            || Copy<int>(Section.RootTargets) is not { } rootTargets
            || Part<int>(Section.Idom) is not { } idom || Part<uint>(Section.Retained) is not { } retained
            || Copy<int>(Section.HugeRetainedKeys) is not { } hugeRetainedKeys
            || Copy<ulong>(Section.HugeRetainedValues) is not { } hugeRetainedValues
            || Copy<long>(Section.Tail) is not { Length: 2 } tail
            || Copy<long>(Section.TotalCount) is not { } totalCount || Copy<ulong>(Section.TotalShallow) is not { } totalShallow
            || Copy<long>(Section.TotalReachable) is not { } totalReachable || Copy<ulong>(Section.TotalRetained) is not { } totalRetained
            || Part<int>(Section.DominatedStart) is not { } dominatedStart || Part<int>(Section.DominatedChildren) is not { } dominatedChildren
            || Copy<long>(Section.DamageCounts) is not { Length: 3 } damageCounts
            || Copy<ulong>(Section.DamageStarts) is not { } damageStarts || Copy<ulong>(Section.DamageEnds) is not { } damageEnds
            || Texts(Section.DamageKindEnds, Section.DamageKindBytes) is not { } damageKinds
            || Texts(Section.DamageReasonEnds, Section.DamageReasonBytes) is not { } damageReasons)
            return null;

        int n = edgeStart.Length - 1;
        // Two bytes per object, or four for more than 65,536 types.
        TypeColumn type;
        if (table[(int)Section.Type].Bytes == 2L * n && Part<ushort>(Section.Type) is { } narrow)
            type = new TypeColumn(narrow);
        else if (table[(int)Section.Type].Bytes == 4L * n && Part<int>(Section.Type) is { } wide)
            type = new TypeColumn(wide);
        else
            return null;
        var segments = new SegmentIndex[meta.Length / SegmentFields];
        long objects = 0;
        for (int s = 0; s < segments.Length; s++)
        {
            ReadOnlySpan<ulong> fields = meta.AsSpan(SegmentFields * s, SegmentFields);
            ulong segmentStart = fields[0], end = fields[1];
            if (Part<uint>((Section)((int)Section.FirstSegment + 2 * s)) is not { } offsets
                || Part<int>((Section)((int)Section.FirstSegment + 2 * s + 1)) is not { } buckets
                || end < segmentStart || fields[2] != (ulong)objects || fields[3] > 3
                || buckets.Length != (long)((end - segmentStart) >> BucketShift) + 1)
                return null;
            segments[s] = new SegmentIndex(segmentStart, end, (int)objects, (int)fields[3], offsets, buckets);
            objects += offsets.Length;
        }
        var types = mts.Zip(names, (mt, name) => new GraphType(mt, name)).ToArray();
        bool consistent = objects == n && size.Length == n && edgeStart.Length == n + 1 && idom.Length == n + 1 && retained.Length == n + 1
            && hugeKeys.Length == hugeValues.Length && hugeRetainedKeys.Length == hugeRetainedValues.Length && mts.Length == names.Length
            && dominatedStart.Length == n + 2 && dominatedStart[n + 1] == dominatedChildren.Length
            && new[] { totalCount.Length, totalShallow.Length, totalReachable.Length, totalRetained.Length }.All(l => l == types.Length)
            && new[] { damageEnds.Length, damageKinds.Length, damageReasons.Length }.All(l => l == damageStarts.Length)
            && damageCounts.All(c => c >= 0) && damageStarts.Length <= damageCounts[0];
        if (!consistent)
            return null;
        var huge = hugeKeys.Zip(hugeValues).ToDictionary(p => p.First, p => p.Second);
        var hugeRetained = hugeRetainedKeys.Zip(hugeRetainedValues).ToDictionary(p => p.First, p => p.Second);
        var graph = new HeapGraph(type, size, huge, edgeStart, edges, segments, types, roots, rootNames, rootTargets,
            idom, retained, hugeRetained, (int)tail[0], BitConverter.Int64BitsToDouble(tail[1]),
            new GraphDamage(
                [.. damageStarts.Select((start, i) => new CorruptRange(start, damageEnds[i], damageKinds[i], damageReasons[i]))],
                damageCounts[0], (ulong)damageCounts[1], damageCounts[2]));
        graph._typeRetained = graph.Sorted(new TypeTotals(totalCount, totalShallow, totalReachable, totalRetained));
        graph._dominated = (dominatedStart, dominatedChildren);
        return graph;
    }

    private static long Align(long at) => (at + Alignment - 1) / Alignment * Alignment;

    // Over the header up to its last 8 bytes, which hold the result.
    internal static ulong HeaderSum(byte[] header)
    {
        fixed (byte* p = header)
            return SectionChecksum.Of(p, header.Length - sizeof(ulong), CancellationToken.None);
    }

    /// <summary>For each bucket of 2^BucketShift bytes of a segment of this
    /// many bytes, the first object at or after it (offsets as in SegmentIndex).</summary>
    private static Column<int> Buckets(ulong bytes, int shift, ReadOnlySpan<uint> offsets)
    {
        var column = Column<int>.Allocate((int)((bytes >> BucketShift) + 1), zeroed: false);
        Span<int> buckets = column.Writable;
        int at = 0;
        for (int b = 0; b < buckets.Length; b++)
        {
            ulong bucketStart = (ulong)b << BucketShift;
            while (at < offsets.Length && (ulong)offsets[at] << shift < bucketStart)
                at++;
            buckets[b] = at;
        }
        return column;
    }
}
