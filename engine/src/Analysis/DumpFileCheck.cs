using System.Buffers.Binary;

namespace DumpScope.Engine.Analysis;

/// <summary>
/// What the dump file's own headers say about its completeness, checked
/// before ClrMD reads it: a file cut inside its headers (or not a dump at
/// all) is refused with what is wrong, and a file shorter than its headers
/// describe is named as truncated, so a later failure is not blamed on the
/// DAC. Only headers are read, each count bounded before it is used.
/// </summary>
public sealed record DumpFileCheck(
    // Why the file cannot be read at all (null: it can be tried).
    string? Refusal,
    // Damage that still lets it be read, in part (null: none found).
    string? Damage)
{
    private const uint PtLoad = 1;
    private const ushort ElfXNum = 0xffff;
    private const uint MemoryListStream = 5;
    private const uint Memory64ListStream = 9;
    private const uint MaxMinidumpStreams = 10_000;

    public static DumpFileCheck Inspect(string path, int maxProgramHeaders)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
        long length = file.Length;
        Span<byte> magic = stackalloc byte[4];
        if (file.ReadAtLeast(magic, 4, throwOnEndOfStream: false) < 4)
            return Refused($"The file holds {length} bytes: too short for a dump header. It is not a dump, or it was cut.");
        if (magic.SequenceEqual("\u007fELF"u8))
            return Elf(file, length, maxProgramHeaders);
        if (magic.SequenceEqual("MDMP"u8))
            return Minidump(file, length);
        return Refused($"The file does not start like a Linux core dump (ELF) or a Windows minidump (MDMP) " +
            $"but with bytes {Convert.ToHexString(magic)}: its header is damaged, or it is not a dump.");
    }

    private static DumpFileCheck Refused(string why) => new(why, null);

    private static bool ReadAt(FileStream file, long offset, Span<byte> into)
    {
        if (offset < 0 || offset > file.Length - into.Length)
            return false;
        file.Position = offset;
        return file.ReadAtLeast(into, into.Length, throwOnEndOfStream: false) == into.Length;
    }

    /// <summary>One ELF program header: its type, where its bytes lie in
    /// the file, the address they are mapped at.</summary>
    public readonly record struct ProgramHeader(uint Type, ulong Offset, ulong Address, ulong FileSize)
    {
        public const uint Load = PtLoad;
    }

    /// <summary>
    /// The program headers of a 64-bit little-endian core, each count
    /// bounded before it is used; else why they cannot be read. Shared by
    /// this check and the heap walker's view of the core (CoreFileView).
    /// </summary>
    public static (ProgramHeader[]? Headers, string? Refusal) ProgramHeaders(FileStream file, int maxProgramHeaders)
    {
        long length = file.Length;
        Span<byte> header = stackalloc byte[64];
        if (!ReadAt(file, 0, header))
            return (null, $"The core dump is cut inside its ELF header: the file holds {length} of its 64 bytes.");
        if (!header[..4].SequenceEqual("\u007fELF"u8))
            return (null, "The file does not start like a Linux core dump (ELF).");
        if (header[4] != 2 || header[5] != 1)
            return (null, "The ELF header is damaged or not of a 64-bit little-endian core (class " +
                $"{header[4]}, data {header[5]}): DumpScope reads 64-bit little-endian cores.");
        ulong phoff = BinaryPrimitives.ReadUInt64LittleEndian(header[32..]);
        ulong shoff = BinaryPrimitives.ReadUInt64LittleEndian(header[40..]);
        ushort phentsize = BinaryPrimitives.ReadUInt16LittleEndian(header[54..]);
        long phnum = BinaryPrimitives.ReadUInt16LittleEndian(header[56..]);
        if (phentsize != 56)
            return (null, $"The ELF header is damaged: program headers of {phentsize} bytes (a 64-bit core has 56).");
        if (phnum == ElfXNum)
        {
            // Extended numbering: the count is in section header 0's sh_info.
            Span<byte> section = stackalloc byte[64];
            if (!ReadAt(file, (long)Math.Min(shoff, long.MaxValue), section))
                return (null, $"The core dump is cut before its section header 0 (at offset {shoff}), which holds its program-header count.");
            phnum = BinaryPrimitives.ReadUInt32LittleEndian(section[44..]);
        }
        if (phnum == 0 || phnum > maxProgramHeaders)
            return (null, $"The ELF header is damaged: it counts {phnum} program headers (a readable core has 1 to {maxProgramHeaders}).");
        ulong tableEnd = phoff + (ulong)(phnum * phentsize);
        if (phoff > (ulong)length || tableEnd > (ulong)length || tableEnd < phoff)
            return (null, $"The core dump is cut inside its program headers: they need bytes up to offset {tableEnd}, " +
                $"the file holds {length}. Nothing of the process can be read from it; take the dump again.");

        byte[] table = new byte[phnum * phentsize];
        ReadAt(file, (long)phoff, table);
        var headers = new ProgramHeader[phnum];
        for (int i = 0; i < phnum; i++)
        {
            ReadOnlySpan<byte> ph = table.AsSpan(i * phentsize, phentsize);
            headers[i] = new ProgramHeader(BinaryPrimitives.ReadUInt32LittleEndian(ph), BinaryPrimitives.ReadUInt64LittleEndian(ph[8..]),
                BinaryPrimitives.ReadUInt64LittleEndian(ph[16..]), BinaryPrimitives.ReadUInt64LittleEndian(ph[32..]));
        }
        return (headers, null);
    }

    private static DumpFileCheck Elf(FileStream file, long length, int maxProgramHeaders)
    {
        var (headers, refusal) = ProgramHeaders(file, maxProgramHeaders);
        if (headers is null)
            return Refused(refusal!);
        ulong described = 0;
        ulong missingLoad = 0, totalLoad = 0;
        foreach (var (type, offset, _, filesz) in headers)
        {
            ulong end = offset + filesz < offset ? ulong.MaxValue : offset + filesz;
            described = Math.Max(described, end);
            if (type == PtLoad)
            {
                totalLoad += filesz;
                if (end > (ulong)length)
                    missingLoad += end - Math.Max(offset, (ulong)length);
            }
        }
        if (described <= (ulong)length)
            return new DumpFileCheck(null, null);
        string share = totalLoad == 0 ? "" : $" ({100.0 * missingLoad / totalLoad:0.#}% of the memory it describes is missing)";
        return new DumpFileCheck(null,
            $"The core dump is truncated: the file holds {length} bytes, its headers describe {described}{share}. " +
            "Whatever lay in the missing part cannot be read; take the dump again with enough disk space.");
    }

    private static DumpFileCheck Minidump(FileStream file, long length)
    {
        Span<byte> header = stackalloc byte[32];
        if (!ReadAt(file, 0, header))
            return Refused($"The minidump is cut inside its header: the file holds {length} of its 32 bytes.");
        uint streams = BinaryPrimitives.ReadUInt32LittleEndian(header[8..]);
        uint directory = BinaryPrimitives.ReadUInt32LittleEndian(header[12..]);
        if (streams > MaxMinidumpStreams)
            return Refused($"The minidump header is damaged: it counts {streams} streams (a readable one has at most {MaxMinidumpStreams}).");
        if ((ulong)directory + 12UL * streams > (ulong)length)
            return Refused($"The minidump is cut inside its stream directory ({streams} streams at offset {directory}; " +
                $"the file holds {length} bytes): its header is damaged or the file was cut.");
        byte[] entries = new byte[12 * streams];
        ReadAt(file, directory, entries);
        ulong described = 0;
        Span<byte> list = stackalloc byte[16];
        for (int i = 0; i < streams; i++)
        {
            ReadOnlySpan<byte> entry = entries.AsSpan(i * 12, 12);
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(entry);
            uint size = BinaryPrimitives.ReadUInt32LittleEndian(entry[4..]);
            uint rva = BinaryPrimitives.ReadUInt32LittleEndian(entry[8..]);
            described = Math.Max(described, (ulong)rva + size);
            if (type == MemoryListStream && ReadAt(file, rva, list[..4]))
            {
                // Each MINIDUMP_MEMORY_DESCRIPTOR: start u64, DataSize u32, Rva u32.
                uint ranges = BinaryPrimitives.ReadUInt32LittleEndian(list);
                if (ranges <= (ulong)(length / 16))
                    described = Math.Max(described, EndOfRanges(file, rva + 4L, ranges));
            }
            if (type == Memory64ListStream && ReadAt(file, rva, list))
            {
                // The memory of a full dump follows its list: BaseRva + the sum of the ranges' sizes.
                ulong ranges = BinaryPrimitives.ReadUInt64LittleEndian(list);
                ulong baseRva = BinaryPrimitives.ReadUInt64LittleEndian(list[8..]);
                if (ranges <= (ulong)(length / 16))
                    described = Math.Max(described, baseRva + SumOfSizes(file, rva + 16L, (long)ranges));
            }
        }
        return described <= (ulong)length
            ? new DumpFileCheck(null, null)
            : new DumpFileCheck(null, $"The minidump is truncated: the file holds {length} bytes, its streams describe {described}. " +
                "Whatever lay in the missing part cannot be read; take the dump again.");
    }

    // The sizes (second u64 of each 16-byte MINIDUMP_MEMORY_DESCRIPTOR64) of
    // `count` ranges, read a chunk at a time.
    private static ulong SumOfSizes(FileStream file, long at, long count)
    {
        byte[] chunk = new byte[16 * 4096];
        ulong sum = 0;
        for (long done = 0; done < count;)
        {
            int n = (int)Math.Min(4096, count - done);
            if (!ReadAt(file, at + done * 16, chunk.AsSpan(0, n * 16)))
                break;
            for (int r = 0; r < n; r++)
                sum += BinaryPrimitives.ReadUInt64LittleEndian(chunk.AsSpan(r * 16 + 8));
            done += n;
        }
        return sum;
    }

    // The end in the file of the farthest of `count` 32-bit memory descriptors.
    private static ulong EndOfRanges(FileStream file, long at, long count)
    {
        byte[] chunk = new byte[16 * 4096];
        ulong end = 0;
        for (long done = 0; done < count;)
        {
            int n = (int)Math.Min(4096, count - done);
            if (!ReadAt(file, at + done * 16, chunk.AsSpan(0, n * 16)))
                break;
            for (int r = 0; r < n; r++)
            {
                ReadOnlySpan<byte> d = chunk.AsSpan(r * 16);
                end = Math.Max(end, (ulong)BinaryPrimitives.ReadUInt32LittleEndian(d[12..]) + BinaryPrimitives.ReadUInt32LittleEndian(d[8..]));
            }
            done += n;
        }
        return end;
    }
}
