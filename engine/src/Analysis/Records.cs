using System.Collections.Immutable;

namespace DumpScope.Engine.Analysis;

// The engine's own result records. Nothing of ClrMD crosses the process
// boundary: every record here is plain data, serialised with snake_case keys
// that are the field names of the Python dataclasses (see PROTOCOL.md).

public readonly record struct VersionInfo(int ProtocolVersion, string EngineVersion, string ClrmdVersion);

public readonly record struct RuntimeInfo(
    string Flavor,
    string Version,
    string VersionSource,
    string DacPath,
    bool DacExplicit,
    ImmutableArray<string> DacCandidates,
    string RuntimeModule,
    ulong RuntimeModuleBase,
    int PointerSize,
    string TargetPlatform,
    string Architecture,
    bool IsServerGc,
    int HeapCount,
    bool UsesRegions,
    int SegmentCount,
    bool CanWalkHeap,
    bool HeapReadable,
    string? HeapProblem,
    bool IsThreadSafe,
    string Engine,
    string? DumpDamage = null,
    string RuntimeModuleSource = "module_list");

public readonly record struct TypeStat(ulong MethodTable, string Name, long Count, ulong Size);

public readonly record struct FreeSpace(string Kind, long Count, ulong Size);

public readonly record struct CorruptRange(ulong Start, ulong End, string Kind, string Reason);

public readonly record struct HeapStats(
    ImmutableArray<TypeStat> Types,
    long TotalObjects,
    ulong TotalBytes,
    ImmutableArray<FreeSpace> FreeByKind,
    bool Parallel,
    double ElapsedSeconds,
    ImmutableArray<CorruptRange> CorruptRanges,
    long CorruptRangeCount,
    ulong UnwalkedBytes);

public readonly record struct GcSegment(
    int Heap,
    string Kind,
    ulong Address,
    ulong Start,
    ulong Allocated,
    ulong CommittedStart,
    ulong CommittedEnd,
    ulong ReservedStart,
    ulong ReservedEnd,
    ulong AllocatedSize,
    ulong CommittedSize);

public readonly record struct GcSubHeap(int Index, ulong Address, bool HasRegions, ImmutableArray<GcSegment> Segments);

public readonly record struct GcHeap(
    bool IsServer,
    bool UsesRegions,
    ImmutableArray<GcSubHeap> Heaps,
    ImmutableArray<GcSegment> Segments,
    ulong TotalAllocated,
    ulong TotalCommitted);

public readonly record struct TypeCount(ulong MethodTable, string Name, long Count, ulong Size);

public readonly record struct FinalizerHeap(int Heap, long Gen0, long Gen1, long Gen2, long Ready);

public readonly record struct FinalizerQueue(
    ImmutableArray<TypeCount> Finalizable,
    ImmutableArray<TypeCount> Ready,
    long FinalizableCount,
    long ReadyCount,
    ImmutableArray<long> GenerationCounts,
    ImmutableArray<FinalizerHeap> Heaps,
    int RcwSta,
    int RcwMta,
    int RcwFreeThreaded,
    int SyncBlocksToCleanUp);

public readonly record struct ExceptionInfo(ulong Address, string Type, string? Message, int HResult);

public readonly record struct Frame(string Kind, ulong InstructionPointer, ulong StackPointer, string Name, string? Module);

public readonly record struct WaitInfo(ulong Object, string? Type, uint? OwnerOsId, string Kind, string Via);

public readonly record struct ManagedThread(
    uint OsId,
    int ManagedId,
    ulong Address,
    string? Name,
    uint State,
    ImmutableArray<string> StateFlags,
    string Apartment,
    bool IsFinalizer,
    bool IsGc,
    bool IsThreadpool,
    bool IsBackground,
    bool IsAlive,
    string GcMode,
    int LockCount,
    int? MonitorsHeld,
    ExceptionInfo? Exception,
    ulong? Teb,
    ulong? StackBase,
    ulong? StackLimit,
    WaitInfo? WaitsFor,
    ImmutableArray<Frame> Frames,
    bool FramesTruncated);

public readonly record struct ThreadList(ImmutableArray<ManagedThread> Threads);

public readonly record struct ThreadStack(uint OsId, ImmutableArray<Frame> Frames, bool Truncated);

public readonly record struct MonitorInfo(
    ulong Object,
    string? Type,
    string Source,
    int? SyncBlockIndex,
    bool IsHeld,
    uint? OwnerOsId,
    ulong OwnerThreadAddress,
    int Recursion,
    int? WaiterCount,
    ImmutableArray<uint> WaitingOsIds);

public readonly record struct Monitors(ImmutableArray<MonitorInfo> Items, bool ThinLocksFromStacksOnly);

public readonly record struct Instance(ulong Address, ulong Size);

public readonly record struct Instances(ulong MethodTable, string? Name, long Total, int Offset, string Sort, ImmutableArray<Instance> Items, ulong UnwalkedBytes);

public readonly record struct FieldValue(
    string Name,
    string Type,
    int Offset,
    string Kind,
    string? Value,
    ulong? Address,
    string? ReferenceType);

public readonly record struct ObjectDetail(
    ulong Address,
    ulong MethodTable,
    string Type,
    ulong Size,
    string Generation,
    bool IsArray,
    int? Length,
    string? StringValue,
    ImmutableArray<FieldValue> Fields,
    ImmutableArray<FieldValue> Elements,
    bool Truncated);

public readonly record struct PathLink(ulong Address, string? Type);

public readonly record struct RootPath(string RootKind, ulong RootAddress, bool IsPinned, bool IsInterior, uint? ThreadOsId, ImmutableArray<PathLink> Chain);

public readonly record struct RootPaths(ulong Target, ImmutableArray<RootPath> Paths, bool Truncated);

public readonly record struct ThreadPoolInfo(
    bool Started,
    string? Kind,
    int? CpuUtilization,
    int? WorkersTotal,
    int? WorkersRunning,
    int? WorkersIdle,
    int? WorkersRetired,
    int? MinWorkers,
    int? MaxWorkers,
    ImmutableArray<uint> WorkerOsIds);
