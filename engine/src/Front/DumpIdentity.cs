using System.Security.Cryptography;

namespace DumpScope.Engine.Front;

/// <summary>
/// Which file a dump path held when it was opened: what the heap-graph
/// index keys a dump by (length, last write time, a hash of its first
/// bytes). A new dump written over the path (`cp`, `dotnet-dump collect -o`
/// again) changes it; the front then opens nothing again at that path, which
/// would show another dump's answers as the open one's.
/// </summary>
public sealed record DumpIdentity(string Path, long Length, DateTime LastWriteUtc, string HeaderHash)
{
    private const int HeaderBytes = 64 * 1024;

    /// <summary>The identity of the file at `path` now; null when there is
    /// none to read (gone, not a file, no permission).</summary>
    public static DumpIdentity? Of(string path)
    {
        try
        {
            string full = System.IO.Path.GetFullPath(path);
            using var stream = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1);
            var header = new byte[HeaderBytes];
            int read = stream.ReadAtLeast(header, HeaderBytes, throwOnEndOfStream: false);
            // Length and time of the open file, not the path: one file's, with its bytes.
            return new DumpIdentity(full, stream.Length, File.GetLastWriteTimeUtc(stream.SafeFileHandle),
                Convert.ToHexString(SHA256.HashData(header.AsSpan(0, read))));
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
