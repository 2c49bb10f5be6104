using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Analysis;

/// <summary>
/// Limits against untrusted input, in one place: a corrupt or hostile dump can
/// claim millions of threads or endless stacks, and a client can ask for huge
/// pages. Every loop over dump-controlled data is bounded by one of these.
/// </summary>
public sealed record EngineLimits
{
    public int MaxThreads { get; init; } = 10_000;
    public int MaxFramesPerThread { get; init; } = 1_000;
    public int MaxStackRootsPerThread { get; init; } = 20_000;
    public int MaxPageSize { get; init; } = 100_000;
    public int MaxRootPaths { get; init; } = 100;
    public int MaxPathLength { get; init; } = 10_000;
    public int MaxStringChars { get; init; } = 4_096;
    public int MaxFields { get; init; } = 2_000;
    public int MaxArrayElements { get; init; } = 256;
    public int MaxSyncBlocks { get; init; } = 1_000_000;
    public int MaxRequestBytes { get; init; } = Rpc.IncomingRequest.DefaultMaxBytes;
    public int MaxNativeRanges { get; init; } = 20_000;
    public int MaxNativePointers { get; init; } = 1_000_000;
    // The bytes of a native structure searched for a pointer (one indirection).
    public int NativeStructureBytes { get; init; } = 512;
    // Native pointer fields a heap walk made for something else records for
    // native_pointers (24 bytes each); past it, native_pointers walks itself.
    public int MaxRecordedNativeFields { get; init; } = 4_000_000;
    public int MaxCorruptRanges { get; init; } = 1_000;

    // Dump headers, checked before ClrMD reads them and handed to ClrMD as
    // its own limits: a hostile count cannot make either allocate gigabytes.
    public int MaxProgramHeaders { get; init; } = 100_000;
    public int MaxFileTableEntries { get; init; } = 100_000;
    public int MaxMinidumpMemoryRanges { get; init; } = 1_000_000;
    public int MaxModules { get; init; } = 100_000;

    public DataTargetLimits ForClrMd() => new()
    {
        MaxElfProgramHeaders = MaxProgramHeaders,
        MaxElfFileTableEntries = MaxFileTableEntries,
        MaxMinidumpMemoryRanges = MaxMinidumpMemoryRanges,
        MaxModules = MaxModules,
        MaxThreads = MaxThreads,
        MaxStackFrames = MaxFramesPerThread,
    };

    public static EngineLimits Default { get; } = new();
}
