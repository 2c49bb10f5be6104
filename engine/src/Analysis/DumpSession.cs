using System.Collections.Immutable;
using System.Runtime.InteropServices;
using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Analysis;

/// <summary>Progress of a long call: done out of total (total 0 = unknown).</summary>
public readonly record struct ProgressReport(long Done, long Total, string Message);

/// <summary>
/// One open dump: DataTarget -> ClrRuntime -> heap and threads, mirroring
/// ClrMD's own path. Every public method returns the engine's records.
/// This file holds the lifetime (open, runtime, DAC, close); the analyses
/// sit beside it by concern, as ClrMD splits heap, threads and roots:
/// DumpSession.HeapStatistics.cs, .ThreadsAndLocks.cs, .ObjectInspector.cs,
/// .Roots.cs. Not thread-safe (the RPC server calls it from one worker
/// thread), except the thread walk, which is cached behind a lock, and the
/// heap graph's build that heap_stats may leave going on in the background
/// (DumpSession.HeapGraph.cs says what it shares with the calls meanwhile).
/// </summary>
public sealed partial class DumpSession : IDisposable
{
    private readonly DataTarget _target;
    // The target whose reader _target reads through (module hints), disposed after it.
    private readonly DataTarget? _readerOwner;
    private readonly ClrRuntime _runtime;
    private readonly EngineLimits _limits;
    private HeapWalker? _walker;

    public RuntimeInfo Info { get; }
    public string DumpPath { get; }

    private DumpSession(string dumpPath, DataTarget target, DataTarget? readerOwner, ClrRuntime runtime, RuntimeInfo info, EngineLimits limits)
    {
        DumpPath = dumpPath;
        _target = target;
        _readerOwner = readerOwner;
        _runtime = runtime;
        Info = info;
        _limits = limits;
    }

    /// <param name="hints">modules the client found in the dump another way
    /// (ModuleHint), used only when ClrMD's own module list holds no runtime.</param>
    public static DumpSession Open(string dumpPath, DacOptions dac, EngineLimits limits, ImmutableArray<ModuleHint> hints = default)
    {
        if (!File.Exists(dumpPath))
            throw new EngineException(ErrorCodes.DumpUnreadable, $"The dump file '{dumpPath}' does not exist: check the path.");

        // The file's own headers first: ClrMD trusts them, and a file cut
        // inside them made it fail with a misleading "out of memory".
        DumpFileCheck check;
        try
        {
            check = DumpFileCheck.Inspect(dumpPath, limits.MaxProgramHeaders);
        }
        catch (IOException e)
        {
            throw new EngineException(ErrorCodes.DumpUnreadable, $"'{dumpPath}' could not be read ({e.Message}).");
        }
        catch (UnauthorizedAccessException e)
        {
            throw new EngineException(ErrorCodes.DumpUnreadable, $"'{dumpPath}' could not be read ({e.Message}): check its permissions.");
        }
        if (check.Refusal is { } refusal)
            throw new EngineException(ErrorCodes.DumpUnreadable, $"'{dumpPath}': {refusal}");

        DataTarget target;
        DataTargetOptions options;
        try
        {
            // Offline on purpose: no symbol server is asked for a DAC unless
            // the caller names one (DacLocator); the lock-free memory-mapped
            // reader makes heap walks much faster. ClrMD checks every DAC's
            // signature on Windows; only the one file the user said to trust
            // is loaded without the check.
            string? trusted = dac.TrustDac is null ? null : Path.GetFullPath(dac.TrustDac);
            options = new DataTargetOptions
            {
                SymbolPaths = [],
                UseLockFreeMemoryMapReader = true,
                Limits = limits.ForClrMd(),
                VerifyDacOnWindows = true,
                DacSignatureVerificationOverride = path =>
                    trusted is null || !string.Equals(Path.GetFullPath(path), trusted, StringComparison.OrdinalIgnoreCase),
            };
            target = DataTarget.LoadDump(dumpPath, options);
        }
        catch (Exception e)
        {
            // ClrMD reports some damaged headers as OutOfMemoryException.
            throw new EngineException(ErrorCodes.DumpUnreadable,
                $"'{dumpPath}' could not be read as a dump ({e.Message}): is it a Windows minidump or a Linux core dump, and is it complete?"
                + (check.Damage is { } damage ? $" {damage}" : ""));
        }

        DataTarget? hinted = null;
        try
        {
            (hinted, ImmutableArray<ModuleInfo> added) = WithHints(target, options, hints);
            return OpenRuntime(dumpPath, hinted ?? target, hinted is null ? null : target, added, hints, dac, limits, check.Damage);
        }
        catch
        {
            hinted?.Dispose();
            target.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A target over the same reader with the client's module hints added,
    /// when ClrMD's own module list holds no runtime and a hint adds a
    /// module (a core whose NT_FILE note is damaged lists only part of its
    /// files); otherwise none, and ClrMD's list stands as it is.
    /// </summary>
    private static (DataTarget?, ImmutableArray<ModuleInfo>) WithHints(DataTarget target, DataTargetOptions options, ImmutableArray<ModuleHint> hints)
    {
        if (hints.IsDefaultOrEmpty || target.ClrVersions.Length > 0)
            return (null, []);
        var reader = new HintedDataReader(target.DataReader, hints, options.Limits);
        return reader.Added.IsEmpty ? (null, []) : (new DataTarget(reader, options), reader.Added);
    }

    private static DumpSession OpenRuntime(string dumpPath, DataTarget target, DataTarget? readerOwner, ImmutableArray<ModuleInfo> hinted,
        ImmutableArray<ModuleHint> hints, DacOptions dac, EngineLimits limits, string? damage)
    {
        // On a damaged file the likely cause of a missing or unreadable
        // runtime is the damage, not the dump's process or the DAC.
        string among = hints.IsDefaultOrEmpty ? "" : $", neither in the dump's module list nor among the {hints.Length} modules the client found in it";
        if (target.ClrVersions.Length == 0)
            throw damage is null
                ? new EngineException(ErrorCodes.NoRuntime,
                    $"No .NET runtime in this dump (no coreclr or clr module was found{among}): only the native analyses apply.")
                : new EngineException(ErrorCodes.DumpUnreadable, $"{damage} No .NET runtime was found in what remains{among}.");

        ClrInfo clr = target.ClrVersions[0];
        string moduleSource = hinted.Contains(clr.ModuleInfo) ? "hint" : "module_list";
        OSPlatform platform = target.DataReader.TargetPlatform;
        if (platform == OSPlatform.Windows && !OperatingSystem.IsWindows())
            throw new EngineException(ErrorCodes.WindowsDumpOnThisHost,
                "This is a Windows dump: its .NET runtime can only be read with the Windows DAC (mscordaccore.dll), which does not load on this host. Open the dump on Windows for the managed analyses; the native analyses work here.");

        var search = DacLocator.Find(target, clr, dac, dumpPath);
        var candidates = search.Tried.Where(t => t.Where != "off").Select(t => t.Path).ToImmutableArray();
        string? chosen = search.Found;
        if (chosen is null)
            throw new EngineException(ErrorCodes.DacNotFound,
                $"The runtime's data-access library (DAC) was not found: this dump needs {search.Wanted}. " +
                $"Looked in: {string.Join("; ", search.Tried)}. " +
                "Pass the DAC of exactly this runtime build with --dac FILE, or set the DAC folder to the runtime folder of the machine that wrote the dump.",
                new Dictionary<string, object?> { ["wanted"] = search.Wanted, ["tried"] = candidates });

        ClrRuntime runtime;
        try
        {
            // ELF dumps report the runtime as 0.0.0.0, so the version check
            // would refuse every DAC: the caller vouches for the file.
            runtime = clr.CreateRuntime(chosen, ignoreMismatch: true);
        }
        catch (Exception e) when (e is ClrDiagnosticsException && e.Message.Contains("not properly signed", StringComparison.Ordinal))
        {
            throw new EngineException(ErrorCodes.DacNotTrusted,
                $"The DAC '{chosen}' was refused: it does not carry a valid Microsoft DAC signature, and the DAC runs inside the analyser. " +
                $"If you trust this file, open the dump again with --trust-dac \"{chosen}\" (only that file then loads without the check).",
                new Dictionary<string, object?> { ["dac"] = chosen });
        }
        catch (Exception e) when (damage is not null)
        {
            throw new EngineException(ErrorCodes.DumpUnreadable, $"{damage} The .NET runtime could not be read from what remains ({e.Message}).");
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new EngineException(ErrorCodes.DacLoadFailed,
                $"The DAC '{chosen}' could not read this dump ({e.Message}): it must come from exactly the runtime build that wrote the dump (.NET {RuntimeVersion(clr).Item1}).");
        }

        try
        {
            var info = Describe(target, clr, runtime, chosen, dac.Explicit, candidates) with { DumpDamage = damage, RuntimeModuleSource = moduleSource };
            return new DumpSession(dumpPath, target, readerOwner, runtime, info, limits);
        }
        catch
        {
            runtime.Dispose();
            throw;
        }
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
            RuntimeModuleBase: clr.ModuleInfo.ImageBase,
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
            IsThreadSafe: runtime.IsThreadSafe,
            Engine: EngineDescription());
    }

    private delegate IntPtr WineGetVersion();

    /// <summary>Which engine this is and where it runs, for the report and
    /// the status bar: "linux-x64 engine", "win-x64 engine under Wine 8.0".
    /// Wine's ntdll exports wine_get_version; Windows' does not.</summary>
    private static string EngineDescription()
    {
        string engine = $"{RuntimeInformation.RuntimeIdentifier} engine";
        if (OperatingSystem.IsWindows()
            && NativeLibrary.TryLoad("ntdll.dll", out IntPtr ntdll)
            && NativeLibrary.TryGetExport(ntdll, "wine_get_version", out IntPtr export))
        {
            string? version = Marshal.PtrToStringAnsi(Marshal.GetDelegateForFunctionPointer<WineGetVersion>(export)());
            return $"{engine} under Wine {version}";
        }
        return engine;
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

    // Shared by the heap statistics and the instance search.
    private HeapWalker Walker => _walker ??= new HeapWalker(_runtime, _target.DataReader);

    /// <summary>A type's name as every result shows it.</summary>
    internal static string TypeName(ClrType? type) => type switch
    {
        null => "<unknown type>",
        { IsFree: true } => "Free",
        _ => type.Name ?? $"<unnamed type 0x{type.MethodTable:x}>",
    };

    public void Dispose()
    {
        StopBuilding();
        FinishSaving(SaveGrace);
        _stopSaving.Dispose();
        _graph = null;
        _runtime.Dispose();
        _target.Dispose();
        _readerOwner?.Dispose();
    }
}
