using System.Runtime.InteropServices;

namespace DumpScope.Engine.Analysis;

/// <summary>
/// Work nobody waits for (the index's save, memory touched ahead of need)
/// runs on a thread of its own at the lowest priority, so that it takes
/// only the CPU that the user's questions and the client leave idle. The
/// thread is its own (never a pool thread, which would keep the priority
/// for the work it runs next) and ends with the work.
/// </summary>
internal static partial class LowPriority
{
    private const int PrioProcess = 0;
    private const int Lowest = 19;

    public static Task<T> Run<T>(Func<T> work) =>
        Task.Factory.StartNew(() =>
        {
            Lower();
            return work();
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    /// <summary>Lowers the calling thread's priority; best effort (a
    /// refusal leaves it as it was).</summary>
    private static void Lower()
    {
        // Linux: a thread id names one thread to setpriority, where POSIX
        // would take the whole process; .NET leaves Thread.Priority
        // unapplied there.
        if (OperatingSystem.IsLinux())
            _ = SetPriority(PrioProcess, GetThreadId(), Lowest);
        else if (OperatingSystem.IsWindows())
            Thread.CurrentThread.Priority = ThreadPriority.Lowest;
    }

    [LibraryImport("libc", EntryPoint = "setpriority")]
    private static partial int SetPriority(int which, int who, int priority);

    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int GetThreadId();
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
            _ = LowPriority.Run(room.Touch);
            return room;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"engine: no scratch file in {folder} ({e.Message})");
            return null;
        }
    }

    /// <summary>Stops touching pages: the build is over (its rows are made
    /// now, or it failed).</summary>
    public void Stop() => _stop = true;

    private unsafe bool Touch()
    {
        int* items = Ints.Pointer;
        for (int i = 0; i < Ints.Length && !_stop; i += IntsPerPage)
            Interlocked.Add(ref items[i], 0);
        return true;
    }
}
