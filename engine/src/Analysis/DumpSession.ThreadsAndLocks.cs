using System.Collections.Immutable;
using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Analysis;

// Threads, their stacks and waits, monitors (`clrthreads`, `syncblk`) and
// the thread pool.
public sealed partial class DumpSession
{
    // The walk both `threads` and `monitors` are served from: every thread's
    // frames and wait, and the monitors. Reading the stacks is the slow part
    // and the Python session asks for both, so it is done once per open dump.
    private sealed record ThreadWalk(
        ImmutableDictionary<ulong, Lock> Locks,
        ImmutableDictionary<ulong, uint> OsIds,
        ImmutableArray<WalkedThread> Threads);

    private readonly record struct WalkedThread(ClrThread Thread, ImmutableArray<Frame> Frames, bool FramesTruncated, WaitInfo? WaitsFor);

    private readonly object _threadWalkGate = new();
    private ThreadWalk? _threadWalk;

    /// <summary>How often the thread walk ran (once per open dump when all is well).</summary>
    internal int ThreadWalkCount { get; private set; }

    // A cancelled walk leaves nothing behind, so the next call starts afresh.
    private ThreadWalk WalkThreads(CancellationToken cancel)
    {
        lock (_threadWalkGate)
        {
            if (_threadWalk is { } done)
                return done;
            var locks = CollectMonitors(cancel);
            var threads = _runtime.Threads.Take(_limits.MaxThreads).ToArray();
            var osIds = threads.ToDictionary(t => t.Address, t => t.OSThreadId);
            var walked = ImmutableArray.CreateBuilder<WalkedThread>(threads.Length);
            foreach (ClrThread thread in threads)
            {
                cancel.ThrowIfCancellationRequested();
                var (frames, truncated) = Frames(thread);
                walked.Add(new WalkedThread(thread, frames, truncated, WaitOf(thread, frames, locks, osIds)));
            }
            ThreadWalkCount++;
            _threadWalk = new ThreadWalk(locks.ToImmutableDictionary(), osIds.ToImmutableDictionary(), walked.MoveToImmutable());
            return _threadWalk;
        }
    }

    public ImmutableArray<ManagedThread> Threads(CancellationToken cancel)
    {
        var names = ThreadNames();
        ThreadWalk walk = WalkThreads(cancel);
        // The Locks column: monitors owned per the lock table (a recursive
        // hold counts once); unknown when the heap, and so the table, is not readable.
        var held = walk.Locks.Values.Where(l => l.Held).GroupBy(l => l.Owner).ToDictionary(g => g.Key, g => g.Count());
        var result = ImmutableArray.CreateBuilder<ManagedThread>(walk.Threads.Length);
        foreach (var (thread, frames, truncated, waitsFor) in walk.Threads)
        {
            cancel.ThrowIfCancellationRequested();
            uint state = (uint)thread.State;
            string? name = names.TryGetValue(thread.ManagedThreadId, out string? n) ? n : null;
            result.Add(new ManagedThread(
                OsId: thread.OSThreadId,
                ManagedId: thread.ManagedThreadId,
                Address: thread.Address,
                Name: name,
                State: state,
                StateFlags: StateFlags(thread.State),
                Apartment: thread.State.HasFlag(ClrThreadState.TS_InSTA) ? "STA"
                    : thread.State.HasFlag(ClrThreadState.TS_InMTA) ? "MTA" : "none",
                IsFinalizer: thread.IsFinalizer,
                IsGc: thread.IsGc,
                IsThreadpool: (thread.State & (ClrThreadState.TS_TPWorkerThread | ClrThreadState.TS_CompletionPortThread)) != 0,
                IsBackground: thread.State.HasFlag(ClrThreadState.TS_Background),
                IsAlive: thread.IsAlive,
                GcMode: thread.GCMode == GCMode.Cooperative ? "cooperative" : "preemptive",
                // .NET Core does not track it and reports 0xFFFFFFFF, which SOS prints as -1.
                LockCount: unchecked((int)thread.LockCount),
                MonitorsHeld: Info.HeapReadable ? held.GetValueOrDefault(thread.Address) : null,
                Exception: ExceptionOf(thread),
                Teb: Teb(thread.OSThreadId),
                StackBase: thread.StackBase == 0 ? null : thread.StackBase,
                StackLimit: thread.StackLimit == 0 ? null : thread.StackLimit,
                WaitsFor: waitsFor,
                Frames: frames,
                FramesTruncated: truncated));
        }
        return result.MoveToImmutable();
    }

    private static readonly ClrThreadState[] KnownStates = Enum.GetValues<ClrThreadState>();

    private static ImmutableArray<string> StateFlags(ClrThreadState state) =>
        KnownStates.Where(f => f != 0 && state.HasFlag(f)).Select(f => f.ToString()).ToImmutableArray();

    private ulong? Teb(uint osId)
    {
        if (_target.DataReader is Microsoft.Diagnostics.Runtime.DataReaders.Implementation.IThreadReader reader)
        {
            ulong teb = reader.GetThreadTeb(osId);
            return teb == 0 ? null : teb;
        }
        return null;
    }

    private ExceptionInfo? ExceptionOf(ClrThread thread)
    {
        ClrException? ex = thread.CurrentException;
        if (ex is null)
            return null;
        string? message = null;
        try
        {
            message = ex.Message;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Console.Error.WriteLine($"engine: message of exception 0x{ex.Address:x} unreadable: {e.Message}");
        }
        if (message is { Length: > 0 } && message.Length > _limits.MaxStringChars)
            message = message[.._limits.MaxStringChars];
        return new ExceptionInfo(ex.Address, TypeName(ex.Type), message, ex.HResult);
    }

    // Thread names live in the managed Thread object (`_name`; `m_Name` and
    // `m_ManagedThreadId` in .NET Framework), which ClrMD does not link to
    // ClrThread; every Thread object is finalizable, so the finalization
    // queue finds them without a heap walk.
    private Dictionary<int, string> ThreadNames()
    {
        var names = new Dictionary<int, string>();
        if (!Info.HeapReadable)
            return names;
        foreach (ClrObject obj in _runtime.Heap.EnumerateFinalizableObjects())
        {
            if (obj.Type?.Name != "System.Threading.Thread")
                continue;
            if (!obj.TryReadField("_managedThreadId", out int id) && !obj.TryReadField("m_ManagedThreadId", out id))
                continue;
            if ((obj.TryReadStringField("_name", _limits.MaxStringChars, out string? name)
                    || obj.TryReadStringField("m_Name", _limits.MaxStringChars, out name))
                && name is not null)
                names[id] = name;
        }
        return names;
    }

    public ThreadStack Stack(uint osId)
    {
        ClrThread thread = _runtime.Threads.FirstOrDefault(t => t.OSThreadId == osId)
            ?? throw new EngineException(ErrorCodes.NotFound, $"No managed thread with OS id {osId} (0x{osId:x}) in this dump.");
        var (frames, truncated) = Frames(thread);
        return new ThreadStack(osId, frames, truncated);
    }

    private (ImmutableArray<Frame>, bool) Frames(ClrThread thread)
    {
        var frames = ImmutableArray.CreateBuilder<Frame>();
        bool truncated = false;
        try
        {
            foreach (ClrStackFrame f in thread.EnumerateStackTrace(includeContext: false, maxFrames: _limits.MaxFramesPerThread + 1))
            {
                if (frames.Count == _limits.MaxFramesPerThread)
                {
                    truncated = true;
                    break;
                }
                frames.Add(new Frame(
                    f.Kind switch
                    {
                        ClrStackFrameKind.ManagedMethod => "managed",
                        ClrStackFrameKind.Runtime => "runtime",
                        _ => "unknown",
                    },
                    f.InstructionPointer,
                    f.StackPointer,
                    FrameName(f),
                    f.Method?.Type?.Module?.Name is { } module ? Path.GetFileName(module) : null));
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // A torn stack still shows the frames read before the tear.
            Console.Error.WriteLine($"engine: stack of thread {thread.OSThreadId:x} stopped early: {e.Message}");
            truncated = true;
        }
        return (frames.ToImmutable(), truncated);
    }

    private static string FrameName(ClrStackFrame frame)
    {
        string? method = frame.Method is { } m ? (m.Signature ?? $"{m.Type?.Name}.{m.Name}") : null;
        if (frame.Kind == ClrStackFrameKind.Runtime)
            return method is null ? $"[{frame.FrameName}]" : $"[{frame.FrameName}: {method}]";
        return method ?? frame.FrameName ?? $"0x{frame.InstructionPointer:x}";
    }

    /// <summary>The thread pool as SOS's `threadpool` shows it.</summary>
    public ThreadPoolInfo ThreadPool()
    {
        var workers = _runtime.Threads.Take(_limits.MaxThreads)
            .Where(t => t.IsAlive && t.State.HasFlag(ClrThreadState.TS_TPWorkerThread))
            .Select(t => t.OSThreadId)
            .ToImmutableArray();
        // A process that never queued work has no pool yet (SOS: "Failed to
        // obtain ThreadPool data").
        if (_runtime.ThreadPool is not { } pool)
            return new ThreadPoolInfo(false, null, null, null, null, null, null, null, null, workers);
        string kind = pool.UsingWindowsThreadPool ? "windows" : pool.UsingPortableThreadPool ? "portable" : "legacy";
        return new ThreadPoolInfo(
            true,
            kind,
            pool.CpuUtilization,
            pool.ActiveWorkerThreads + pool.IdleWorkerThreads,
            pool.ActiveWorkerThreads,
            pool.IdleWorkerThreads,
            pool.RetiredWorkerThreads,
            pool.MinThreads,
            pool.MaxThreads,
            workers);
    }


    private readonly record struct Lock(ulong Object, ClrType? Type, string Source, int? Index, bool Held, ulong Owner, int Recursion, int? Waiters);

    private Dictionary<ulong, Lock> CollectMonitors(CancellationToken cancel)
    {
        var locks = new Dictionary<ulong, Lock>();
        if (!Info.HeapReadable)
            return locks;
        ClrHeap heap = _runtime.Heap;
        foreach (SyncBlock sb in heap.EnumerateSyncBlocks().Take(_limits.MaxSyncBlocks))
        {
            cancel.ThrowIfCancellationRequested();
            if (sb.Object == 0 || (!sb.IsMonitorHeld && sb.WaitingThreadCount == 0))
                continue;
            // The waiter count of a free monitor reads as noise (1000 where
            // four threads sit in Monitor.Wait) and SOS does not show it.
            locks[sb.Object] = new Lock(sb.Object, heap.GetObjectType(sb.Object), "syncblock", sb.Index,
                sb.IsMonitorHeld, sb.HoldingThreadAddress, sb.RecursionCount, sb.IsMonitorHeld ? sb.WaitingThreadCount : null);
        }

        // Thin locks live in object headers; finding all of them needs a full
        // heap walk, so only objects referenced from thread stacks are checked
        // (a lock statement keeps its object alive on the holder's stack).
        foreach (ClrThread thread in _runtime.Threads.Take(_limits.MaxThreads))
        {
            foreach (ClrObject obj in StackObjects(thread))
            {
                cancel.ThrowIfCancellationRequested();
                if (locks.ContainsKey(obj.Address))
                    continue;
                ClrThinLock? thin = obj.GetThinLock();
                if (thin?.Thread is { } owner)
                    locks[obj.Address] = new Lock(obj.Address, obj.Type, "thinlock", null, true, owner.Address, thin.Recursion, 0);
            }
        }
        return locks;
    }

    private IEnumerable<ClrObject> StackObjects(ClrThread thread)
    {
        var seen = new HashSet<ulong>();
        IEnumerable<ClrStackRoot> roots;
        try
        {
            roots = thread.EnumerateStackRoots().Take(_limits.MaxStackRootsPerThread).ToList();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Console.Error.WriteLine($"engine: stack roots of thread {thread.OSThreadId:x} unreadable: {e.Message}");
            yield break;
        }
        foreach (ClrStackRoot root in roots)
        {
            ClrObject obj = root.Object;
            if (obj.IsValid && seen.Add(obj.Address))
                yield return obj;
        }
    }

    private static bool IsMonitorFrame(string name, out bool isWait)
    {
        isWait = name.Contains("System.Threading.Monitor.Wait", StringComparison.Ordinal)
            || name.Contains("System.Threading.Monitor.ObjWait", StringComparison.Ordinal);
        return isWait
            || name.Contains("System.Threading.Monitor.Enter", StringComparison.Ordinal)
            || name.Contains("System.Threading.Monitor.ReliableEnter", StringComparison.Ordinal)
            || name.Contains("System.Threading.Monitor.TryEnter", StringComparison.Ordinal);
    }

    // A thread waits on a monitor when a Monitor.Enter/Wait frame is on top
    // of its managed stack; the object is the first locked object among its
    // stack roots that another thread holds (for Wait: any monitor object).
    private WaitInfo? WaitOf(ClrThread thread, ImmutableArray<Frame> frames, Dictionary<ulong, Lock> locks, Dictionary<ulong, uint> osIds)
    {
        string? monitorFrame = null;
        bool isWait = false;
        foreach (Frame frame in frames.Take(8))
        {
            if (IsMonitorFrame(frame.Name, out isWait))
            {
                monitorFrame = frame.Name;
                break;
            }
        }
        if (monitorFrame is null)
            return null;
        foreach (ClrObject obj in StackObjects(thread))
        {
            if (!locks.TryGetValue(obj.Address, out Lock l))
                continue;
            if (!isWait && (!l.Held || l.Owner == thread.Address))
                continue;
            uint? owner = l.Held && osIds.TryGetValue(l.Owner, out uint os) ? os : null;
            return new WaitInfo(obj.Address, TypeName(l.Type), owner, isWait ? "wait" : "enter", monitorFrame);
        }
        return null;
    }

    public Monitors MonitorList(CancellationToken cancel)
    {
        RequireHeap();
        ThreadWalk walk = WalkThreads(cancel);
        var waiters = new Dictionary<ulong, List<uint>>();
        foreach (WalkedThread walked in walk.Threads)
        {
            if (walked.WaitsFor is { } wait)
            {
                if (!waiters.TryGetValue(wait.Object, out var list))
                    waiters[wait.Object] = list = [];
                list.Add(walked.Thread.OSThreadId);
            }
        }
        var items = walk.Locks.Values
            .OrderBy(l => l.Index ?? int.MaxValue).ThenBy(l => l.Object)
            .Select(l => new MonitorInfo(
                l.Object,
                TypeName(l.Type),
                l.Source,
                l.Index,
                l.Held,
                l.Held && walk.OsIds.TryGetValue(l.Owner, out uint os) ? os : null,
                l.Owner,
                l.Recursion,
                l.Waiters,
                waiters.TryGetValue(l.Object, out var w) ? [.. w] : []))
            .ToImmutableArray();
        return new Monitors(items, ThinLocksFromStacksOnly: true);
    }
}
