using System.Collections.Immutable;

namespace DumpScope.Engine.Analysis;

// Results of the heap-graph queries (PROTOCOL.md, "Heap graph"). Plain data,
// snake_case on the wire, the field names of analysis/managed/results.py.

public readonly record struct RootKindCount(string Kind, int Count);

public readonly record struct GraphSummary(
    long Objects,
    long ReachableObjects,
    ulong ReachableBytes,
    long UnreachableObjects,
    ulong UnreachableBytes,
    long References,
    int RootCount,
    ImmutableArray<RootKindCount> RootsByKind,
    int DominatorPasses,
    double ElapsedSeconds,
    bool FromIndex,
    ImmutableArray<CorruptRange> CorruptRanges,
    long CorruptRangeCount,
    ulong UnwalkedBytes,
    long DanglingReferences);

/// <summary>One GC root: its kind, the static field's name, the handle or stack slot, the thread.</summary>
public readonly record struct RootRef(string Kind, string? Name, ulong Address, uint? ThreadOsId);

/// <summary>A run of one or more objects of one type along a chain (a linked list is one link).</summary>
public readonly record struct ChainLink(ulong Address, string Type, int Repeat);

public readonly record struct DominatorItem(
    ulong Address,
    ulong MethodTable,
    string Type,
    ulong Size,
    ulong Retained,
    int Dominated,
    ImmutableArray<RootRef> Roots);

public readonly record struct DominatorPage(
    ulong? Parent,
    ulong ParentRetained,
    ulong ReachableBytes,
    int Total,
    int Offset,
    ImmutableArray<DominatorItem> Items);

public readonly record struct TypeRetained(ulong MethodTable, string Name, long Count, ulong Size, long ReachableCount, ulong Retained);

public readonly record struct TypeRetainedPage(ulong ReachableBytes, int Total, int Offset, ImmutableArray<TypeRetained> Items);

public readonly record struct RetentionPath(RootRef Root, ImmutableArray<ChainLink> Chain);

public readonly record struct RetentionPaths(
    ulong Target,
    bool Reachable,
    ImmutableArray<RetentionPath> ByRootKind,
    ImmutableArray<ChainLink> DominatorChain);

public readonly record struct HolderGroup(
    ulong? Holder,
    string? HolderType,
    ulong HolderRetained,
    long Count,
    ulong Size,
    ulong Retained,
    ImmutableArray<RootRef> Roots,
    ImmutableArray<ChainLink> Chain);

public readonly record struct InstanceHolders(
    ulong MethodTable,
    string Name,
    long Count,
    long ReachableCount,
    ulong Size,
    ulong ReachableBytes,
    int TotalGroups,
    ImmutableArray<HolderGroup> Groups);
