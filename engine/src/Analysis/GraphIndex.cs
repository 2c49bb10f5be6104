
namespace DumpScope.Engine.Analysis;

/// <summary>
/// The heap-graph index: a built graph saved in the user's cache folder so
/// that reopening a dump skips the walk and the dominators. Never beside the
/// dump (dumps are read-only and may sit on read-only media). Keyed by the
/// dump's identity: full path, size, modification time and a hash of its
/// first 64 KiB; a file of another dump, of another format or damaged
/// (checksum) is deleted and rebuilt, never trusted. The folder is kept
/// under a size cap by deleting the least recently used files first.
/// </summary>
public sealed class GraphIndex
{
    private const string Extension = ".graph";

    public string Folder { get; }
    public long MaxBytes { get; }

    public GraphIndex(string folder, long maxBytes)
    {
        Folder = folder;
        MaxBytes = maxBytes;
    }

    /// <summary>$DUMPSCOPE_INDEX, else $DUMPSCOPE_CACHE/index, else
    /// ~/.cache/dumpscope/index; the cap from $DUMPSCOPE_INDEX_MAX_BYTES, else 20 GiB.</summary>
    public static GraphIndex Default()
    {
        string? folder = Environment.GetEnvironmentVariable("DUMPSCOPE_INDEX");
        string? cache = Environment.GetEnvironmentVariable("DUMPSCOPE_CACHE");
        if (string.IsNullOrEmpty(folder))
        {
            string root = !string.IsNullOrEmpty(cache)
                ? cache
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "dumpscope");
            folder = Path.Combine(root, "index");
        }
        long cap = long.TryParse(Environment.GetEnvironmentVariable("DUMPSCOPE_INDEX_MAX_BYTES"), out long c) && c >= 0 ? c : 20L << 30;
        return new GraphIndex(folder, cap);
    }

    /// <summary>The identity of the dump as it is now.</summary>
    public static byte[] KeyOf(string dumpPath) => DumpIdentity.Read(dumpPath).IndexKey;

    public string PathOf(byte[] key) => Path.Combine(Folder, Convert.ToHexString(key).ToLowerInvariant() + Extension);

    /// <summary>Whether a file is kept for this dump (whole or not: only
    /// loading tells), without reading it.</summary>
    public bool Holds(string dumpPath) => File.Exists(PathOf(KeyOf(dumpPath)));

    /// <summary>The saved graph of this dump, or null (none, stale or damaged: then deleted).</summary>
    public HeapGraph? TryLoad(string dumpPath, CancellationToken cancel)
    {
        byte[] key = KeyOf(dumpPath);
        string path = PathOf(key);
        if (!File.Exists(path))
            return null;
        HeapGraph? graph;
        var watch = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            // The graph maps the file: closing the stream leaves the mapping.
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1);
            graph = HeapGraph.Load(stream, key, cancel);
        }
        // ArgumentException: a view larger than the process can map (a
        // 32-bit engine and a big index).
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            Console.Error.WriteLine($"engine: index {path} unreadable ({e.Message}); rebuilding");
            return null;
        }
        if (graph is null)
        {
            Console.Error.WriteLine($"engine: index {path} is damaged or of another format; rebuilding");
            TryDelete(path);
            return null;
        }
        Console.Error.WriteLine($"engine: index {path} loaded in {watch.Elapsed.TotalSeconds:F3} s");
        // Marks it as recently used for the eviction order.
        try
        {
            File.SetLastWriteTimeUtc(path, DateTime.UtcNow);
        }
        catch (IOException)
        {
        }
        return graph;
    }

    /// <summary>Saves the graph (through a temporary file, so a crash leaves
    /// no half file under the real name), then evicts down to the cap.
    /// Failing to save costs only the next open's time: it is logged.
    /// Returns the saved graph mapped from its file, which takes no
    /// anonymous memory (the built one's arrays can go), or, when it could
    /// not be saved, the graph itself. A save cancelled while writing
    /// deletes its temporary file and returns the graph itself; cancelled
    /// while mapping the saved file, it throws OperationCanceledException
    /// (the file is complete). <paramref name="yielding"/>: the file is
    /// written at the lowest priority (LowPriorityStream), for a save in
    /// the background of the user's questions.</summary>
    public HeapGraph Save(string dumpPath, HeapGraph graph, CancellationToken cancel = default, bool yielding = false)
    {
        byte[] key = KeyOf(dumpPath);
        string path = PathOf(key);
        string temporary = path + $".{Environment.ProcessId}.tmp";
        try
        {
            Directory.CreateDirectory(Folder);
            // The rows saving needs, if no question has made them yet, take
            // file-backed pages here rather than anonymous memory.
            graph.RowsIn(Folder);
            using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            using (Stream stream = yielding ? new LowPriorityStream(file) : file)
                // Only a save that can be cancelled goes through the wrapper.
                graph.Save(cancel.CanBeCanceled ? new CancellableStream(stream, cancel) : stream, key);
            if (new FileInfo(temporary).Length > MaxBytes)
            {
                TryDelete(temporary);
                return graph;
            }
            File.Move(temporary, path, overwrite: true);
            Evict(keep: path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"engine: could not save the index {path}: {e.Message}");
            TryDelete(temporary);
            return graph;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine($"engine: saving the index {path} was abandoned; the next open builds the graph again");
            TryDelete(temporary);
            return graph;
        }
        return TryLoad(dumpPath, cancel) ?? graph;
    }

    private void Evict(string keep)
    {
        // A save's temporary file whose engine is gone (killed while it
        // wrote): nothing else would ever delete it. One whose engine
        // still runs may be a save under way in another process.
        foreach (FileInfo temporary in new DirectoryInfo(Folder).GetFiles("*" + Extension + ".*.tmp"))
        {
            if (WriterGone(temporary.Name))
                TryDelete(temporary.FullName);
        }
        var files = new DirectoryInfo(Folder).GetFiles("*" + Extension).OrderBy(f => f.LastWriteTimeUtc).ToList();
        long total = files.Sum(f => f.Length);
        foreach (FileInfo file in files)
        {
            if (total <= MaxBytes)
                break;
            if (file.FullName == Path.GetFullPath(keep))
                continue;
            total -= file.Length;
            TryDelete(file.FullName);
        }
    }

    /// <summary>Whether the process that named a temporary file
    /// (KEY.graph.PID.tmp) has ended; false when the name holds no pid.</summary>
    internal static bool WriterGone(string name)
    {
        string[] parts = name.Split('.');
        if (parts.Length < 4 || !int.TryParse(parts[^2], out int pid) || pid <= 0)
            return false;
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return process.HasExited;
        }
        catch (ArgumentException)
        {
            return true;
        }
        catch (InvalidOperationException)
        {
            return true;
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"engine: could not delete {path}: {e.Message}");
        }
    }

    /// <summary>A file being written that stops at the next write once
    /// cancelled: a save that is abandoned ends within one piece.</summary>
    private sealed class CancellableStream(Stream inner, CancellationToken cancel) : WritingThrough(inner)
    {
        private const int Piece = 16 << 20;

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            for (int done = 0; done < buffer.Length; done += Piece)
            {
                cancel.ThrowIfCancellationRequested();
                Inner.Write(buffer.Slice(done, Math.Min(Piece, buffer.Length - done)));
            }
        }
    }
}
