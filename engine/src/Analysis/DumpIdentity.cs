using System.Security.Cryptography;
using System.Text;

namespace DumpScope.Engine.Analysis;

/// <summary>
/// Which file a dump path holds: its full path, length, last write time and
/// a hash of its first bytes. The heap-graph index is keyed by it
/// (IndexKey); the front keeps it for the dump it opened. A new dump
/// written over the path (`cp`, `dotnet-dump collect -o` again) changes it;
/// the front then opens nothing again at that path, which would show
/// another dump's answers as the open one's.
/// </summary>
public sealed record DumpIdentity(string Path, long Length, DateTime LastWriteUtc, string HeaderHash)
{
    private const int HeaderBytes = 64 * 1024;

    /// <summary>The identity of the file at `path` now; throws what opening
    /// and reading it throws.</summary>
    public static DumpIdentity Read(string path)
    {
        string full = System.IO.Path.GetFullPath(path);
        using var stream = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1);
        var header = new byte[HeaderBytes];
        int read = stream.ReadAtLeast(header, HeaderBytes, throwOnEndOfStream: false);
        // Length and time of the open file, not the path: one file's, with its bytes.
        return new DumpIdentity(full, stream.Length, File.GetLastWriteTimeUtc(stream.SafeFileHandle),
            Convert.ToHexString(SHA256.HashData(header.AsSpan(0, read))));
    }

    /// <summary>The heap-graph index's key for this file.</summary>
    public byte[] IndexKey => SHA256.HashData(Encoding.UTF8.GetBytes($"{Path}\n{Length}\n{LastWriteUtc.Ticks}\n{HeaderHash}"));

    /// <summary>The identity of the file at `path` now; null when there is
    /// none to read (gone, not a file, no permission).</summary>
    public static DumpIdentity? Of(string path)
    {
        try
        {
            return Read(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            return null;
        }
    }

    /// <summary>Whether another file may be at the path now, from its size
    /// and time alone (a stat, cheap enough for every request). A file gone
    /// from the path is not: a reader that has it open still reads it.</summary>
    public bool OtherFileMayBeThere()
    {
        var info = new FileInfo(Path);
        return info.Exists && (info.Length != Length || info.LastWriteTimeUtc != LastWriteUtc);
    }

    /// <summary>Why the file at the path is no longer this one, for the
    /// user; null while it is.</summary>
    public string? Change()
    {
        if (Of(Path) is not { } now)
            return $"The dump file {Path} is gone from disk, or can no longer be read, since it was opened: open it again where it is now.";
        if (now == this)
            return null;
        string sizes = now.Length != Length
            ? $"{Length} bytes when opened, {now.Length} now"
            : $"{Length} bytes then and now, rewritten";
        return $"The dump file changed on disk while it was open ({sizes}): open it again.";
    }
}
