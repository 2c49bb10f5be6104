using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Analysis;

/// <summary>Progress of a long call: done out of total (total 0 = unknown).</summary>
public readonly record struct ProgressReport(long Done, long Total, string Message);

/// <summary>
/// One open dump: DataTarget -> ClrRuntime -> heap and threads, mirroring
/// ClrMD's own path. Every public method returns the engine's records.
/// Not thread-safe: the RPC server calls it from one worker thread.
/// </summary>
public sealed class DumpSession : IDisposable
{
    private readonly DataTarget _target;
    private readonly ClrRuntime _runtime;
    private readonly EngineLimits _limits;
    private HeapStats? _heapStats;
    // The last type asked for, in both orders: paging through it re-sorts nothing.
    private (ulong Mt, Instance[] ByAddress, Instance[] BySize)? _instanceCache;
    private HeapWalker? _walker;

    public RuntimeInfo Info { get; }
    public string DumpPath { get; }

    private DumpSession(string dumpPath, DataTarget target, ClrRuntime runtime, RuntimeInfo info, EngineLimits limits)
    {
        DumpPath = dumpPath;
        _target = target;
        _runtime = runtime;
        Info = info;
        _limits = limits;
    }

    public static DumpSession Open(string dumpPath, string? dacPath, string? dacFolder, EngineLimits limits)
    {
        if (!File.Exists(dumpPath))
            throw new EngineException(ErrorCodes.DumpUnreadable, $"The dump file '{dumpPath}' does not exist: check the path.");

        DataTarget target;
        try
        {
            // Offline on purpose: no symbol server is asked for a DAC; the
            // lock-free memory-mapped reader makes heap walks much faster.
            target = DataTarget.LoadDump(dumpPath, new DataTargetOptions
            {
                SymbolPaths = [],
                UseLockFreeMemoryMapReader = true,
            });
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new EngineException(ErrorCodes.DumpUnreadable,
                $"'{dumpPath}' could not be read as a dump ({e.Message}): is it a Windows minidump or a Linux core dump, and is it complete?");
        }

        try
        {
            return OpenRuntime(dumpPath, target, dacPath, dacFolder, limits);
        }
        catch
        {
            target.Dispose();
            throw;
        }
    }

    private static DumpSession OpenRuntime(string dumpPath, DataTarget target, string? dacPath, string? dacFolder, EngineLimits limits)
    {
        if (target.ClrVersions.Length == 0)
            throw new EngineException(ErrorCodes.NoRuntime,
                "No .NET runtime in this dump (no coreclr or clr module was found): only the native analyses apply.");

        ClrInfo clr = target.ClrVersions[0];
        OSPlatform platform = target.DataReader.TargetPlatform;
        if (platform == OSPlatform.Windows && !OperatingSystem.IsWindows())
            throw new EngineException(ErrorCodes.WindowsDumpOnThisHost,
                "This is a Windows dump: its .NET runtime can only be read with the Windows DAC (mscordaccore.dll), which does not load on this host. Open the dump on Windows for the managed analyses; the native analyses work here.");

        var candidates = DacCandidates(clr, platform, dacPath, dacFolder);
        string? chosen = candidates.FirstOrDefault(File.Exists);
        if (chosen is null)
            throw new EngineException(ErrorCodes.DacNotFound,
                $"The runtime's data-access library (DAC) for .NET {RuntimeVersion(clr).Item1} was not found. Looked in: {string.Join(", ", candidates)}. " +
                "Pass the DAC of exactly this runtime build with --dac FILE, or set the DAC folder to the runtime folder of the machine that wrote the dump.");

        ClrRuntime runtime;
        try
        {
            // ELF dumps report the runtime as 0.0.0.0, so the version check
            // would refuse every DAC: the caller vouches for the file.
            runtime = clr.CreateRuntime(chosen, ignoreMismatch: true);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new EngineException(ErrorCodes.DacLoadFailed,
                $"The DAC '{chosen}' could not read this dump ({e.Message}): it must come from exactly the runtime build that wrote the dump (.NET {RuntimeVersion(clr).Item1}).");
        }

        try
        {
            var info = Describe(target, clr, runtime, chosen, dacPath is not null || dacFolder is not null, candidates);
            return new DumpSession(dumpPath, target, runtime, info, limits);
        }
        catch
        {
            runtime.Dispose();
            throw;
        }
    }

    private static ImmutableArray<string> DacCandidates(ClrInfo clr, OSPlatform platform, string? dacPath, string? dacFolder)
    {
        if (dacPath is not null)
            return [Path.GetFullPath(dacPath)];

        string dacName = clr.DebuggingLibraries
            .Where(l => l.Kind == DebugLibraryKind.Dac)
            .Select(l => Path.GetFileName(l.FileName))
            .FirstOrDefault()
            ?? (platform == OSPlatform.Windows ? "mscordaccore.dll" : platform == OSPlatform.OSX ? "libmscordaccore.dylib" : "libmscordaccore.so");

        var list = ImmutableArray.CreateBuilder<string>();
        if (dacFolder is not null)
            list.Add(Path.Combine(Path.GetFullPath(dacFolder), dacName));
        string? runtimeDir = Path.GetDirectoryName(clr.ModuleInfo.FileName);
        if (!string.IsNullOrEmpty(runtimeDir))
            list.Add(Path.Combine(runtimeDir, dacName));
        foreach (var lib in clr.DebuggingLibraries)
        {
            if (lib.Kind == DebugLibraryKind.Dac && Path.IsPathRooted(lib.FileName) && !list.Contains(lib.FileName))
                list.Add(lib.FileName);
        }
        return list.ToImmutable();
    }

    private static RuntimeInfo Describe(DataTarget target, ClrInfo clr, ClrRuntime runtime, string dac, bool dacExplicit, ImmutableArray<string> candidates)
    {
        ClrHeap heap = runtime.Heap;
        (bool readable, string? problem) = CheckHeapMemory(target, heap);
        (string version, string source) = RuntimeVersion(clr);
        return new RuntimeInfo(
            Flavor: clr.Flavor.ToString(),
            Version: version,
            VersionSource: source,
            DacPath: dac,
            DacExplicit: dacExplicit,
            DacCandidates: candidates,
            RuntimeModule: clr.ModuleInfo.FileName,
            PointerSize: target.DataReader.PointerSize,
            TargetPlatform: target.DataReader.TargetPlatform.ToString(),
            Architecture: target.DataReader.Architecture.ToString(),
            IsServerGc: heap.IsServer,
            HeapCount: heap.SubHeaps.Length,
            UsesRegions: heap.SubHeaps.Any(h => h.HasRegions),
            SegmentCount: heap.Segments.Length,
            CanWalkHeap: heap.CanWalkHeap,
            HeapReadable: readable,
            HeapProblem: problem,
            IsThreadSafe: runtime.IsThreadSafe);
    }

    // ELF core dumps carry no version resource for libcoreclr (ClrMD says
    // 0.0.0.0); a shared-framework install names its folder after the
    // version, which is the next best evidence.
    private static (string, string) RuntimeVersion(ClrInfo clr)
    {
        if (clr.Version.Major != 0)
            return (clr.Version.ToString(), "module");
        string folder = Path.GetFileName(Path.GetDirectoryName(clr.ModuleInfo.FileName) ?? "");
        if (Version.TryParse(folder, out Version? fromFolder) && fromFolder.Major > 0)
            return (fromFolder.ToString(), "runtime_folder");
        return ("unknown", "none");
    }

    // A triage or mini dump lists the GC segments but holds none of their
    // bytes; every heap answer would then be empty and wrong, so say so.
    private static (bool, string?) CheckHeapMemory(DataTarget target, ClrHeap heap)
    {
        const string problem = "This dump holds no GC heap memory (a mini or triage dump): take a dump with the heap " +
            "(createdump --withheap or --full, dotnet-dump collect --type Heap or Full).";
        var populated = heap.Segments.Where(s => s.ObjectRange.Length > 0).ToList();
        bool readable = populated.Any(s => target.DataReader.ReadPointer(s.FirstObjectAddress, out ulong mt) && mt != 0);
        return readable ? (true, null) : (false, problem);
    }

    private ClrHeap RequireHeap()
    {
        if (!Info.HeapReadable)
            throw new EngineException(ErrorCodes.NoHeapMemory, Info.HeapProblem ?? "The GC heap is not readable in this dump.");
        return _runtime.Heap;
    }

    // ---------------------------------------------------------------- heap

    private sealed class Tally
    {
        public long Count;
        public ulong Size;
        public ClrType? Type;
    }

    // Aggregates by method table; consecutive objects often share a type,
    // so the last tally is kept at hand. Free space is also counted apart,
    // so each segment's share of it is known.
    private struct StatsVisitor(ulong freeMt) : IObjectVisitor
    {
        public readonly Dictionary<ulong, Tally> Tallies = new();
        public long FreeCount;
        public ulong FreeSize;
        private ulong _lastMt;
        private Tally? _last;

        public void Visit(ulong address, ulong methodTable, ClrType type, ulong size)
        {
            if (methodTable == freeMt)
            {
                FreeCount++;
                FreeSize += size;
            }
            if (methodTable != _lastMt || _last is null)
            {
                if (!Tallies.TryGetValue(methodTable, out _last))
                    Tallies[methodTable] = _last = new Tally { Type = type };
                _lastMt = methodTable;
            }
            _last.Count++;
            _last.Size += size;
        }
    }

    private struct InstanceVisitor(ulong methodTable) : IObjectVisitor
    {
        public readonly List<Instance> Found = [];

        public void Visit(ulong address, ulong mt, ClrType type, ulong size)
        {
            if (mt == methodTable)
                Found.Add(new Instance(address, size));
        }
    }

    private HeapWalker Walker => _walker ??= new HeapWalker(_runtime, _target.DataReader);

    public HeapStats HeapStatistics(IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        if (_heapStats is { } cached)
            return cached;
        ClrHeap heap = RequireHeap();
        var watch = Stopwatch.StartNew();
        HeapWalker walker = Walker;

        // Largest segments first so parallel workers finish together.
        var segments = heap.Segments.OrderByDescending(s => s.ObjectRange.Length).ToArray();
        long totalBytes = segments.Sum(s => (long)s.ObjectRange.Length);
        long doneBytes = 0;
        bool parallel = _runtime.IsThreadSafe && segments.Length > 1 && Environment.ProcessorCount > 1;
        var partials = new ConcurrentBag<Dictionary<ulong, Tally>>();
        ulong freeMt = heap.FreeType?.MethodTable ?? 0;
        var freeByKind = new Dictionary<string, (long Count, ulong Size)>();

        void Walk(ClrSegment segment, ref StatsVisitor visitor)
        {
            (long count, ulong size) = (visitor.FreeCount, visitor.FreeSize);
            walker.Walk(segment, ref visitor, cancel);
            lock (freeByKind)
            {
                string kind = KindName(segment.Kind);
                var (c, s) = freeByKind.GetValueOrDefault(kind);
                freeByKind[kind] = (c + visitor.FreeCount - count, s + visitor.FreeSize - size);
            }
            long done = Interlocked.Add(ref doneBytes, (long)segment.ObjectRange.Length);
            progress?.Report(new ProgressReport(done, totalBytes, "walking the GC heap"));
        }

        if (parallel)
        {
            var options = new ParallelOptions { CancellationToken = cancel, MaxDegreeOfParallelism = Environment.ProcessorCount };
            Parallel.ForEach(segments, options, () => new StatsVisitor(freeMt),
                (segment, _, local) => { Walk(segment, ref local); return local; },
                local => partials.Add(local.Tallies));
        }
        else
        {
            var local = new StatsVisitor(freeMt);
            foreach (var segment in segments)
            {
                cancel.ThrowIfCancellationRequested();
                Walk(segment, ref local);
            }
            partials.Add(local.Tallies);
        }

        var merged = new Dictionary<ulong, Tally>();
        foreach (var part in partials)
        {
            foreach (var (mt, t) in part)
            {
                if (!merged.TryGetValue(mt, out Tally? m))
                    merged[mt] = m = new Tally { Type = t.Type };
                m.Count += t.Count;
                m.Size += t.Size;
            }
        }

        // Names are resolved once per method table, never per object.
        var stats = merged
            .Select(kv => new TypeStat(kv.Key, TypeName(kv.Value.Type), kv.Value.Count, kv.Value.Size))
            .OrderBy(s => s.Size).ThenBy(s => s.Name, StringComparer.Ordinal)
            .ToImmutableArray();
        var result = new HeapStats(
            stats,
            stats.Sum(s => s.Count),
            stats.Aggregate(0UL, (a, s) => a + s.Size),
            freeByKind.OrderBy(kv => kv.Key, StringComparer.Ordinal)
                .Select(kv => new FreeSpace(kv.Key, kv.Value.Count, kv.Value.Size)).ToImmutableArray(),
            parallel,
            watch.Elapsed.TotalSeconds);
        _heapStats = result;
        return result;
    }

    private static string TypeName(ClrType? type) => type switch
    {
        null => "<unknown type>",
        { IsFree: true } => "Free",
        _ => type.Name ?? $"<unnamed type 0x{type.MethodTable:x}>",
    };

    public GcHeap GcHeapLayout()
    {
        ClrHeap heap = _runtime.Heap;
        var subHeaps = ImmutableArray.CreateBuilder<GcSubHeap>();
        var all = ImmutableArray.CreateBuilder<GcSegment>();
        foreach (ClrSubHeap sub in heap.SubHeaps)
        {
            var segs = sub.Segments
                .OrderBy(s => KindOrder(s.Kind)).ThenBy(s => s.Start)
                .Select(s => new GcSegment(
                    Heap: sub.Index,
                    Kind: KindName(s.Kind),
                    Address: s.Address,
                    Start: s.ObjectRange.Start,
                    Allocated: s.ObjectRange.End,
                    CommittedStart: s.CommittedMemory.Start,
                    CommittedEnd: s.CommittedMemory.End,
                    ReservedStart: s.ReservedMemory.Start,
                    ReservedEnd: s.ReservedMemory.End,
                    AllocatedSize: s.ObjectRange.Length,
                    CommittedSize: s.CommittedMemory.Length))
                .ToImmutableArray();
            subHeaps.Add(new GcSubHeap(sub.Index, sub.Address, sub.HasRegions, segs));
            all.AddRange(segs);
        }
        var segments = all.ToImmutable();
        return new GcHeap(
            heap.IsServer,
            heap.SubHeaps.Any(h => h.HasRegions),
            subHeaps.ToImmutable(),
            segments,
            segments.Aggregate(0UL, (a, s) => a + s.AllocatedSize),
            segments.Aggregate(0UL, (a, s) => a + s.CommittedSize));
    }

    private static string KindName(GCSegmentKind kind) => kind switch
    {
        GCSegmentKind.Generation0 => "gen0",
        GCSegmentKind.Generation1 => "gen1",
        GCSegmentKind.Generation2 => "gen2",
        GCSegmentKind.Large => "loh",
        GCSegmentKind.Pinned => "poh",
        GCSegmentKind.Frozen => "frozen",
        GCSegmentKind.Ephemeral => "ephemeral",
        _ => kind.ToString().ToLowerInvariant(),
    };

    // The order `eeheap -gc` prints: generations, then NonGC, LOH, POH.
    private static int KindOrder(GCSegmentKind kind) => kind switch
    {
        GCSegmentKind.Generation0 => 0,
        GCSegmentKind.Generation1 => 1,
        GCSegmentKind.Generation2 => 2,
        GCSegmentKind.Ephemeral => 3,
        GCSegmentKind.Frozen => 4,
        GCSegmentKind.Large => 5,
        GCSegmentKind.Pinned => 6,
        _ => 7,
    };

    // ----------------------------------------------------------- finalizer

    public FinalizerQueue FinalizerQueueInfo(CancellationToken cancel)
    {
        ClrHeap heap = RequireHeap();
        int pointerSize = _target.DataReader.PointerSize;

        var finalizable = GroupByType(heap.EnumerateFinalizableObjects(), cancel);
        var ready = GroupByType(heap.EnumerateFinalizerRoots().Select(r => r.Object), cancel);

        var heaps = ImmutableArray.CreateBuilder<FinalizerHeap>();
        long[] generations = new long[3];
        foreach (ClrSubHeap sub in heap.SubHeaps)
        {
            long[] gens = new long[3];
            for (int g = 0; g < 3 && g < sub.GenerationalFinalizableObjects.Length; g++)
                gens[g] = (long)(sub.GenerationalFinalizableObjects[g].Length / (ulong)pointerSize);
            for (int g = 0; g < 3; g++)
                generations[g] += gens[g];
            heaps.Add(new FinalizerHeap(sub.Index, gens[0], gens[1], gens[2], (long)(sub.FinalizerQueueRoots.Length / (ulong)pointerSize)));
        }

        int sta = 0, mta = 0, free = 0;
        foreach (var rcw in _runtime.EnumerateRcwCleanupData())
        {
            // The same split as SOS: no owning thread means the MTA.
            if (rcw.IsFreeThreaded)
                free++;
            else if (rcw.Thread == 0)
                mta++;
            else
                sta++;
        }

        return new FinalizerQueue(
            finalizable,
            ready,
            finalizable.Sum(t => t.Count),
            ready.Sum(t => t.Count),
            [.. generations],
            heaps.ToImmutable(),
            sta, mta, free,
            _runtime.EnumerateSyncBlockCleanupData().Take(_limits.MaxSyncBlocks).Count());
    }

    private static ImmutableArray<TypeCount> GroupByType(IEnumerable<ClrObject> objects, CancellationToken cancel)
    {
        var tally = new Dictionary<ulong, (ClrType Type, long Count, ulong Size)>();
        foreach (ClrObject obj in objects)
        {
            cancel.ThrowIfCancellationRequested();
            if (obj.Type is not { } type)
                continue;
            tally[type.MethodTable] = tally.TryGetValue(type.MethodTable, out var t)
                ? (type, t.Count + 1, t.Size + obj.Size)
                : (type, 1, obj.Size);
        }
        return tally
            .Select(kv => new TypeCount(kv.Key, TypeName(kv.Value.Type), kv.Value.Count, kv.Value.Size))
            .OrderBy(t => t.Size).ThenBy(t => t.Name, StringComparer.Ordinal)
            .ToImmutableArray();
    }

    // ------------------------------------------------------------- threads

    public ImmutableArray<ManagedThread> Threads(CancellationToken cancel)
    {
        var names = ThreadNames();
        var monitors = CollectMonitors(cancel);
        var threads = _runtime.Threads.Take(_limits.MaxThreads).ToArray();
        var byAddress = threads.ToDictionary(t => t.Address, t => t.OSThreadId);
        var result = ImmutableArray.CreateBuilder<ManagedThread>(threads.Length);
        foreach (ClrThread thread in threads)
        {
            cancel.ThrowIfCancellationRequested();
            var (frames, truncated) = Frames(thread);
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
                Exception: ExceptionOf(thread),
                Teb: Teb(thread.OSThreadId),
                StackBase: thread.StackBase == 0 ? null : thread.StackBase,
                StackLimit: thread.StackLimit == 0 ? null : thread.StackLimit,
                WaitsFor: WaitOf(thread, frames, monitors, byAddress),
                Frames: frames,
                FramesTruncated: truncated));
        }
        return result.ToImmutable();
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

    // Thread names live in the managed Thread object (`_name`), which ClrMD
    // does not link to ClrThread; every Thread object is finalizable, so the
    // finalization queue finds them without a heap walk.
    private Dictionary<int, string> ThreadNames()
    {
        var names = new Dictionary<int, string>();
        if (!Info.HeapReadable)
            return names;
        foreach (ClrObject obj in _runtime.Heap.EnumerateFinalizableObjects())
        {
            if (obj.Type?.Name != "System.Threading.Thread")
                continue;
            if (!obj.TryReadField("_managedThreadId", out int id))
                continue;
            if (obj.TryReadStringField("_name", _limits.MaxStringChars, out string? name) && name is not null)
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

    // ------------------------------------------------------------ monitors

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
        var locks = CollectMonitors(cancel);
        var threads = _runtime.Threads.Take(_limits.MaxThreads).ToArray();
        var osIds = threads.ToDictionary(t => t.Address, t => t.OSThreadId);
        var waiters = new Dictionary<ulong, List<uint>>();
        foreach (ClrThread thread in threads)
        {
            cancel.ThrowIfCancellationRequested();
            var (frames, _) = Frames(thread);
            if (WaitOf(thread, frames, locks, osIds) is { } wait)
            {
                if (!waiters.TryGetValue(wait.Object, out var list))
                    waiters[wait.Object] = list = [];
                list.Add(thread.OSThreadId);
            }
        }
        var items = locks.Values
            .OrderBy(l => l.Index ?? int.MaxValue).ThenBy(l => l.Object)
            .Select(l => new MonitorInfo(
                l.Object,
                TypeName(l.Type),
                l.Source,
                l.Index,
                l.Held,
                l.Held && osIds.TryGetValue(l.Owner, out uint os) ? os : null,
                l.Owner,
                l.Recursion,
                l.Waiters,
                waiters.TryGetValue(l.Object, out var w) ? [.. w] : []))
            .ToImmutableArray();
        return new Monitors(items, ThinLocksFromStacksOnly: true);
    }

    // ----------------------------------------------------------- instances

    public Instances InstancesOf(ulong methodTable, int offset, int limit, string sort, IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        ClrHeap heap = RequireHeap();
        if (offset < 0 || limit < 0 || limit > _limits.MaxPageSize)
            throw new EngineException(ErrorCodes.InvalidParams, $"offset must be >= 0 and limit between 0 and {_limits.MaxPageSize}.");
        if (sort is not ("size" or "address"))
            throw new EngineException(ErrorCodes.InvalidParams, "sort must be \"size\" or \"address\".");
        ClrType? type = _runtime.GetTypeByMethodTable(methodTable);

        if (_instanceCache is not { } cache || cache.Mt != methodTable)
        {
            var visitor = new InstanceVisitor(methodTable);
            var segments = heap.Segments;
            for (int i = 0; i < segments.Length; i++)
            {
                Walker.Walk(segments[i], ref visitor, cancel);
                progress?.Report(new ProgressReport(i + 1, segments.Length, "looking for instances"));
            }
            Instance[] byAddress = visitor.Found.OrderBy(x => x.Address).ToArray();
            Instance[] bySize = byAddress.OrderByDescending(x => x.Size).ThenBy(x => x.Address).ToArray();
            cache = (methodTable, byAddress, bySize);
            _instanceCache = cache;
        }

        Instance[] ordered = sort == "size" ? cache.BySize : cache.ByAddress;
        int start = Math.Min(offset, ordered.Length);
        int count = Math.Min(limit, ordered.Length - start);
        return new Instances(methodTable, type is null ? null : TypeName(type), ordered.Length, offset, sort,
            ordered.AsSpan(start, count).ToImmutableArray());
    }

    // -------------------------------------------------------------- object

    public ObjectDetail ObjectAt(ulong address)
    {
        ClrHeap heap = RequireHeap();
        ClrObject obj = heap.GetObject(address);
        if (!obj.IsValid || obj.Type is null)
            throw new EngineException(ErrorCodes.NotFound, $"0x{address:x} is not the address of a managed object in this dump.");
        ClrType type = obj.Type;
        ClrSegment? segment = heap.GetSegmentByAddress(address);
        string generation = segment is null ? "unknown" : segment.GetGeneration(address) switch
        {
            Generation.Generation0 => "gen0",
            Generation.Generation1 => "gen1",
            Generation.Generation2 => "gen2",
            Generation.Large => "loh",
            Generation.Pinned => "poh",
            Generation.Frozen => "frozen",
            _ => "unknown",
        };

        var fields = ImmutableArray.CreateBuilder<FieldValue>();
        bool truncated = false;
        foreach (ClrInstanceField field in type.Fields)
        {
            if (fields.Count == _limits.MaxFields)
            {
                truncated = true;
                break;
            }
            fields.Add(ReadField(field.Name ?? "<unnamed>", field.Type, field.ElementType, field.Offset, field.GetAddress(obj.Address), field.Size));
        }

        string? text = null;
        if (type.IsString)
            text = obj.AsString(_limits.MaxStringChars);

        int? length = null;
        var elements = ImmutableArray.CreateBuilder<FieldValue>();
        if (obj.IsArray)
        {
            ClrArray array = obj.AsArray();
            length = array.Length;
            ClrType? component = type.ComponentType;
            int shown = Math.Min(array.Length, _limits.MaxArrayElements);
            truncated |= shown < array.Length;
            for (int i = 0; i < shown && array.Rank == 1; i++)
            {
                ulong at = type.GetArrayElementAddress(obj.Address, i);
                elements.Add(ReadField($"[{i}]", component, component?.ElementType ?? ClrElementType.Unknown, i * type.ComponentSize, at, type.ComponentSize));
            }
        }

        return new ObjectDetail(obj.Address, type.MethodTable, TypeName(type), obj.Size, generation, obj.IsArray, length, text,
            fields.ToImmutable(), elements.ToImmutable(), truncated);
    }

    private FieldValue ReadField(string name, ClrType? type, ClrElementType element, int offset, ulong at, int size)
    {
        string typeName = type?.Name ?? element.ToString();
        if (element is ClrElementType.Class or ClrElementType.Object or ClrElementType.String or ClrElementType.Array or ClrElementType.SZArray)
        {
            if (!_target.DataReader.ReadPointer(at, out ulong target))
                return new FieldValue(name, typeName, offset, "reference", null, null, null);
            if (target == 0)
                return new FieldValue(name, typeName, offset, "reference", "null", 0, null);
            ClrObject referenced = _runtime.Heap.GetObject(target);
            string? value = referenced.Type?.IsString == true ? referenced.AsString(_limits.MaxStringChars) : null;
            return new FieldValue(name, typeName, offset, "reference", value, target, referenced.Type is null ? null : TypeName(referenced.Type));
        }
        if (element == ClrElementType.Struct)
            return new FieldValue(name, typeName, offset, "struct", null, at, null);
        return new FieldValue(name, typeName, offset, "value", ReadPrimitive(at, element, size), null, null);
    }

    private string? ReadPrimitive(ulong at, ClrElementType element, int size)
    {
        Span<byte> buffer = stackalloc byte[8];
        int want = element switch
        {
            ClrElementType.Boolean or ClrElementType.Int8 or ClrElementType.UInt8 => 1,
            ClrElementType.Char or ClrElementType.Int16 or ClrElementType.UInt16 => 2,
            ClrElementType.Int32 or ClrElementType.UInt32 or ClrElementType.Float => 4,
            ClrElementType.Int64 or ClrElementType.UInt64 or ClrElementType.Double => 8,
            ClrElementType.NativeInt or ClrElementType.NativeUInt or ClrElementType.Pointer or ClrElementType.FunctionPointer => _target.DataReader.PointerSize,
            _ => Math.Clamp(size, 0, 8),
        };
        if (want == 0 || _target.DataReader.Read(at, buffer[..want]) != want)
            return null;
        var b = buffer[..want];
        var inv = CultureInfo.InvariantCulture;
        return element switch
        {
            ClrElementType.Boolean => (b[0] != 0) ? "true" : "false",
            ClrElementType.Int8 => ((sbyte)b[0]).ToString(inv),
            ClrElementType.UInt8 => b[0].ToString(inv),
            ClrElementType.Char => ((int)BitConverter.ToChar(b)).ToString(inv),
            ClrElementType.Int16 => BitConverter.ToInt16(b).ToString(inv),
            ClrElementType.UInt16 => BitConverter.ToUInt16(b).ToString(inv),
            ClrElementType.Int32 => BitConverter.ToInt32(b).ToString(inv),
            ClrElementType.UInt32 => BitConverter.ToUInt32(b).ToString(inv),
            ClrElementType.Float => BitConverter.ToSingle(b).ToString("R", inv),
            ClrElementType.Int64 => BitConverter.ToInt64(b).ToString(inv),
            ClrElementType.UInt64 => BitConverter.ToUInt64(b).ToString(inv),
            ClrElementType.Double => BitConverter.ToDouble(b).ToString("R", inv),
            _ => want == 8 ? $"0x{BitConverter.ToUInt64(b):x}" : want == 4 ? $"0x{BitConverter.ToUInt32(b):x}" : Convert.ToHexString(b),
        };
    }

    // ---------------------------------------------------------- root paths

    public RootPaths RootPathsTo(ulong address, int maxPaths, IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        ClrHeap heap = RequireHeap();
        ClrObject target = heap.GetObject(address);
        if (!target.IsValid)
            throw new EngineException(ErrorCodes.NotFound, $"0x{address:x} is not the address of a managed object in this dump.");
        maxPaths = Math.Clamp(maxPaths, 1, _limits.MaxRootPaths);
        var gcroot = new GCRoot(heap, [address]);
        var paths = ImmutableArray.CreateBuilder<RootPath>();
        bool truncated = false;

        // GCRoot.EnumerateRootPaths, one root at a time (the same search,
        // sharing what it has seen), so progress can count roots examined.
        var roots = new List<ClrRoot>();
        foreach (ClrRoot root in heap.EnumerateRoots())
        {
            cancel.ThrowIfCancellationRequested();
            roots.Add(root);
        }
        for (int i = 0; i < roots.Count; i++)
        {
            if (paths.Count == maxPaths)
            {
                truncated = true;
                break;
            }
            ClrRoot root = roots[i];
            cancel.ThrowIfCancellationRequested();
            if (gcroot.FindPathFrom(root.Object, cancel) is { } link)
            {
                var chain = ImmutableArray.CreateBuilder<PathLink>();
                for (GCRoot.ChainLink? l = link; l is not null && chain.Count < _limits.MaxPathLength; l = l.Next)
                    chain.Add(new PathLink(l.Object, heap.GetObjectType(l.Object) is { } t ? TypeName(t) : null));
                uint? osId = root is ClrStackRoot stack ? stack.StackFrame?.Thread?.OSThreadId : null;
                paths.Add(new RootPath(RootKindName(root.RootKind), root.Address, root.IsPinned, root.IsInterior, osId, chain.ToImmutable()));
            }
            progress?.Report(new ProgressReport(i + 1, roots.Count, "searching the roots"));
        }
        return new RootPaths(address, paths.ToImmutable(), truncated);
    }

    private static string RootKindName(ClrRootKind kind) => kind switch
    {
        ClrRootKind.FinalizerQueue => "finalizer_queue",
        ClrRootKind.StrongHandle => "strong_handle",
        ClrRootKind.PinnedHandle => "pinned_handle",
        ClrRootKind.Stack => "stack",
        ClrRootKind.RefCountedHandle => "ref_counted_handle",
        ClrRootKind.AsyncPinnedHandle => "async_pinned_handle",
        ClrRootKind.SizedRefHandle => "sized_ref_handle",
        ClrRootKind.ThreadStaticVar => "thread_static",
        ClrRootKind.StaticVar => "static",
        _ => "other",
    };

    public void Dispose()
    {
        _runtime.Dispose();
        _target.Dispose();
    }
}
