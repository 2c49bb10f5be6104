using System.Runtime.InteropServices;

namespace DumpScope.Engine.Analysis;

/// <summary>
/// Work nobody waits for (the index's file written, memory touched ahead
/// of need) runs on a thread of its own at the lowest priority, so that it
/// takes only the CPU that the user's questions and the client leave idle.
/// Such a thread must neither start threads nor queue work to the pool: on
/// Linux a thread inherits its creator's priority, and the pool starts its
/// threads from the thread that queues work (a pool thread lowered for
/// good would slow every later question). So it is a plain thread, never a
/// task's, and it ends with its work.
/// </summary>
internal static partial class LowPriority
{
    private const int PrioProcess = 0;
    private const int Lowest = 19;

    public static Thread Start(string name, Action work)
    {
        var thread = new Thread(() =>
        {
            Lower();
            work();
        })
        { IsBackground = true, Name = name };
        thread.Start();
        return thread;
    }

    /// <summary>Lowers the calling thread's priority; best effort (a
    /// refusal, or a C library without gettid, leaves it as it was).</summary>
    private static void Lower()
    {
        try
        {
            // Linux: a thread id names one thread to setpriority, where
            // POSIX would take the whole process; .NET leaves
            // Thread.Priority unapplied there.
            if (OperatingSystem.IsLinux())
                _ = SetPriority(PrioProcess, GetThreadId(), Lowest);
            else if (OperatingSystem.IsWindows())
                Thread.CurrentThread.Priority = ThreadPriority.Lowest;
        }
        catch (EntryPointNotFoundException)
        {
        }
    }

    [LibraryImport("libc", EntryPoint = "setpriority")]
    private static partial int SetPriority(int which, int who, int priority);

    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int GetThreadId();
}

/// <summary>
/// A file written by a thread at the lowest priority: each write waits
/// while that thread copies the bytes into the file, so that the kernel's
/// work for them (most of a save: every new page of the file) yields to
/// the questions asked meanwhile, while the writer's own work (checksums
/// on the pool) keeps its priority. Seeking, flushing and closing happen
/// on the caller's thread.
/// </summary>
internal sealed unsafe class LowPriorityStream : WritingThrough
{
    private readonly SemaphoreSlim _asked = new(0);
    private readonly SemaphoreSlim _done = new(0);
    private readonly Thread _writer;
    private byte* _bytes;
    private int _length;
    private bool _closing;
    private Exception? _failed;

    public LowPriorityStream(Stream inner)
        : base(inner)
    {
        _writer = LowPriority.Start("index writer", WriteAsked);
    }

    private void WriteAsked()
    {
        while (true)
        {
            _asked.Wait();
            if (_closing)
                return;
            try
            {
                Inner.Write(new ReadOnlySpan<byte>(_bytes, _length));
            }
            catch (Exception e)
            {
                _failed = e;
            }
            _done.Release();
        }
    }

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        fixed (byte* bytes = buffer)
        {
            _bytes = bytes;
            _length = buffer.Length;
            _failed = null;
            _asked.Release();
            _done.Wait();
        }
        if (_failed is { } failed)
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failed);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing && !_closing)
        {
            _closing = true;
            _asked.Release();
            _writer.Join();
            _asked.Dispose();
            _done.Dispose();
        }
        base.Dispose(disposing);
    }
}

/// <summary>
/// A stream that writes through to another, a file being written: its
/// subclasses decide how each write goes; the rest is the file's.
/// </summary>
internal abstract class WritingThrough(Stream inner) : Stream
{
    protected Stream Inner => inner;

    public abstract override void Write(ReadOnlySpan<byte> buffer);

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override bool CanRead => false;
    public override bool CanSeek => inner.CanSeek;
    public override bool CanWrite => true;
    public override long Length => inner.Length;

    public override long Position
    {
        get => inner.Position;
        set => inner.Position = value;
    }

    public override void Flush() => inner.Flush();

    public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);

    public override void SetLength(long value) => inner.SetLength(value);

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>
/// Room for the dominator tree's rows (8 bytes per object, as
/// HeapGraph.RowsIn takes it) in a scratch file beside the index, made as
/// soon as the walk has counted the objects, whose pages are touched at the
/// lowest priority while the build goes on. On this kind of machine the
/// first touch of a file-backed page costs far more than writing it, so
/// the rows are made after the build in memory already touched; pages not
/// touched yet when the rows are made fault then, as without this.
/// File-backed: the anonymous memory of the engine is not raised.
/// </summary>
internal sealed class RowsRoom
{
    // Each touch is a locked add of 0: it writes every page without
    // changing a value the rows may already hold there.
    private const int IntsPerPage = 4096 / sizeof(int);
    private volatile bool _stop;

    public Column<int> Ints { get; }

    private RowsRoom(Column<int> ints) => Ints = ints;

    /// <summary>The room for a graph of this many objects, its pages
    /// being touched; null when no scratch file can be made there (the
    /// rows are then made as without it).</summary>
    public static RowsRoom? Prepare(string folder, int objects)
    {
        int length = HeapGraph.RowsLength(objects);
        try
        {
            Directory.CreateDirectory(folder);
            var room = new RowsRoom(new ScratchFile(folder, (long)length * sizeof(int)).Ints(length));
            LowPriority.Start("rows room", room.Touch);
            return room;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"engine: no scratch file in {folder} ({e.Message}); the dominator rows will take anonymous memory");
            return null;
        }
    }

    /// <summary>Stops touching pages: the build is over (its rows are made
    /// now, or it failed).</summary>
    public void Stop() => _stop = true;

    private unsafe void Touch()
    {
        int* items = Ints.Pointer;
        for (int i = 0; i < Ints.Length && !_stop; i += IntsPerPage)
            Interlocked.Add(ref items[i], 0);
    }
}
