using System.Collections.Immutable;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Analysis;

/// <summary>
/// How the caller wants the DAC found and trusted (the <c>open</c>
/// parameters). SymbolServer is opt-in: a URL or a folder laid out as a
/// symbol store; SymbolCache keeps what a server sent.
/// </summary>
public sealed record DacOptions(
    string? Dac = null,
    string? DacFolder = null,
    string? TrustDac = null,
    string? SymbolServer = null,
    string? SymbolCache = null)
{
    public bool Explicit => Dac is not null || DacFolder is not null;
}

/// <summary>One place a DAC was looked for, and what was found there.</summary>
internal readonly record struct DacPlace(string Path, string Where, string? Problem = null)
{
    public override string ToString() => Problem is null ? $"{Path} ({Where})" : $"{Path} ({Where}: {Problem})";
}

/// <summary>
/// Finds the DAC of the dump's runtime: mscordaccore.dll / libmscordaccore.so
/// for .NET Core and .NET 5+, mscordacwks.dll for .NET Framework (clr.dll).
/// Places, in order: the explicit file; the DAC folder; the runtime folder
/// recorded in the dump; for .NET Framework the host's own Framework folder
/// when its DAC has exactly the dump's version; the rooted paths ClrMD
/// lists; and, only when asked, a symbol store. A symbol store keeps a DAC
/// under its long name (mscordacwks_amd64_amd64_4.8.4515.00.dll) at
/// NAME/TIMESTAMP(%08X)SIZEOFIMAGE(%x)/NAME, indexed by the runtime module.
/// </summary>
internal static class DacLocator
{
    public sealed record Result(string? Found, ImmutableArray<DacPlace> Tried, string Wanted);

    public static Result Find(DataTarget target, ClrInfo clr, DacOptions options, string dumpPath)
    {
        var tried = ImmutableArray.CreateBuilder<DacPlace>();
        Version version = clr.Version.Major != 0 ? clr.Version : MinidumpFileVersion(dumpPath, clr.ModuleInfo.ImageBase);
        var names = DacNames(clr, target.DataReader.TargetPlatform, target.DataReader.Architecture, version);
        string wanted = Wanted(clr, names, version);
        if (options.Dac is not null)
        {
            string file = Path.GetFullPath(options.Dac);
            tried.Add(new DacPlace(file, "--dac"));
            return new Result(File.Exists(file) ? file : null, tried.ToImmutable(), wanted);
        }

        string? found = null;
        void Try(string path, string where, string? problem = null)
        {
            if (tried.Any(t => string.Equals(t.Path, path, StringComparison.OrdinalIgnoreCase)))
                return;
            tried.Add(new DacPlace(path, where, problem));
            if (found is null && problem is null && File.Exists(path))
                found = path;
        }

        if (options.DacFolder is not null)
        {
            foreach (string name in names)
                Try(Path.Combine(Path.GetFullPath(options.DacFolder), name), "DAC folder");
        }
        string? runtimeDir = Path.GetDirectoryName(clr.ModuleInfo.FileName);
        if (!string.IsNullOrEmpty(runtimeDir))
            Try(Path.Combine(runtimeDir, names[0]), "beside the runtime recorded in the dump");
        if (clr.Flavor == ClrFlavor.Desktop && OperatingSystem.IsWindows())
        {
            string host = HostFrameworkDac(target.DataReader.PointerSize);
            Try(host, "this machine's .NET Framework", HostVersionProblem(host, version));
        }
        foreach (var lib in clr.DebuggingLibraries)
        {
            if (lib.Kind == DebugLibraryKind.Dac && Path.IsPathRooted(lib.FileName))
                Try(lib.FileName, "listed by ClrMD");
        }
        if (found is null)
        {
            if (options.SymbolServer is null)
                tried.Add(new DacPlace("symbol server", "off", "pass --symbol-server URL to ask one"));
            else
                found = FromSymbolStore(clr, names, options, tried);
        }
        return new Result(found, tried.ToImmutable(), wanted);
    }

    /// <summary>The DAC's short name (beside the runtime) first, then the
    /// long names a symbol store and a DAC folder may use:
    /// NAME_HOSTARCH_TARGETARCH_VERSION.dll, the host being this engine (the
    /// process the DAC loads into).</summary>
    private static ImmutableArray<string> DacNames(ClrInfo clr, OSPlatform platform, Architecture target, Version version)
    {
        string shortName = clr.Flavor == ClrFlavor.Desktop ? "mscordacwks.dll"
            : platform == OSPlatform.Windows ? "mscordaccore.dll"
            : platform == OSPlatform.OSX ? "libmscordaccore.dylib" : "libmscordaccore.so";
        var names = ImmutableArray.CreateBuilder<string>();
        names.Add(shortName);
        if (platform == OSPlatform.Windows && version.Major != 0)
        {
            static string Arch(Architecture a) => a == Architecture.X64 ? "amd64" : a.ToString().ToLowerInvariant();
            string stem = Path.GetFileNameWithoutExtension(shortName);
            names.Add($"{stem}_{Arch(RuntimeInformation.ProcessArchitecture)}_{Arch(target)}_"
                + $"{version.Major}.{version.Minor}.{version.Build}.{version.Revision:D2}.dll".ToLowerInvariant());
        }
        foreach (var lib in clr.DebuggingLibraries)
        {
            string name = Path.GetFileName(lib.FileName);
            if (lib.Kind == DebugLibraryKind.Dac && !names.Contains(name, StringComparer.OrdinalIgnoreCase))
                names.Add(name);
        }
        return names.ToImmutable();
    }

    /// <summary>What file and version the dump needs, said for the user.</summary>
    private static string Wanted(ClrInfo clr, ImmutableArray<string> names, Version version)
    {
        string runtime = clr.Flavor == ClrFlavor.Desktop ? ".NET Framework" : ".NET";
        string versionText = version.Major != 0 ? $"version {version}" : "of the runtime build that wrote the dump";
        string? key = IndexKey(clr);
        return $"{names[0]} {versionText} ({runtime}, for {clr.ModuleInfo.FileName}"
            + (key is null ? ")" : $"; in a symbol store: {names[^1]} {key})");
    }

    // A symbol store files a DAC under its runtime module's PE time stamp
    // and image size.
    private static string? IndexKey(ClrInfo clr) =>
        clr.ModuleInfo.IndexTimeStamp != 0 && clr.ModuleInfo.IndexFileSize != 0
            ? $"{clr.ModuleInfo.IndexTimeStamp:X8}{clr.ModuleInfo.IndexFileSize:x}"
            : null;

    /// <summary>
    /// The file version a minidump's module list records for the module at
    /// imageBase (VS_FIXEDFILEINFO): ClrMD reads versions from the image in
    /// memory, which a minidump without image pages lacks.
    /// </summary>
    private static Version MinidumpFileVersion(string dumpPath, ulong imageBase)
    {
        const int ModuleListStream = 4, ModuleSize = 108;
        try
        {
            using var file = File.OpenRead(dumpPath);
            using var reader = new BinaryReader(file);
            if (reader.ReadUInt32() != 0x504D444D)
                return new Version();
            reader.ReadUInt32();
            uint streams = reader.ReadUInt32();
            uint directory = reader.ReadUInt32();
            for (uint i = 0; i < Math.Min(streams, 1024u); i++)
            {
                file.Position = directory + i * 12L;
                if (reader.ReadUInt32() != ModuleListStream)
                    continue;
                reader.ReadUInt32();
                file.Position = reader.ReadUInt32();
                uint count = reader.ReadUInt32();
                long first = file.Position;
                for (uint m = 0; m < Math.Min(count, 65536u); m++)
                {
                    file.Position = first + m * (long)ModuleSize;
                    if (reader.ReadUInt64() != imageBase)
                        continue;
                    file.Position += 4 + 4 + 4 + 4 + 8; // size, checksum, stamp, name; signature, struct version
                    uint ms = reader.ReadUInt32(), ls = reader.ReadUInt32();
                    return new Version((int)(ms >> 16), (int)(ms & 0xFFFF), (int)(ls >> 16), (int)(ls & 0xFFFF));
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
        }
        return new Version();
    }

    private static string HostFrameworkDac(int pointerSize)
    {
        string windows = Environment.GetFolderPath(Environment.SpecialFolder.Windows);
        string framework = pointerSize == 8 ? "Framework64" : "Framework";
        return Path.Combine(windows, "Microsoft.NET", framework, "v4.0.30319", "mscordacwks.dll");
    }

    // The host's DAC fits only a dump of exactly the host's clr.dll build.
    private static string? HostVersionProblem(string path, Version wanted)
    {
        if (!File.Exists(path))
            return null;
        var info = FileVersionInfo.GetVersionInfo(path);
        var version = new Version(info.FileMajorPart, info.FileMinorPart, info.FileBuildPart, info.FilePrivatePart);
        return version == wanted ? null : $"version {version}, not {wanted}";
    }

    private static string? FromSymbolStore(ClrInfo clr, ImmutableArray<string> names, DacOptions options, ImmutableArray<DacPlace>.Builder tried)
    {
        string server = options.SymbolServer!;
        bool isUrl = server.Contains("://", StringComparison.Ordinal);
        string cache = Path.GetFullPath(options.SymbolCache
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "dumpscope", "symbols"));
        string? key = IndexKey(clr);
        if (key is null)
        {
            tried.Add(new DacPlace(server, "symbol server", "the dump does not record the runtime's time stamp and size"));
            return null;
        }
        // The long name first: that is how a symbol server files a DAC.
        foreach (string name in names.Reverse())
        {
            foreach (string store in isUrl ? [cache] : new[] { Path.GetFullPath(server) })
            {
                string path = Path.Combine(store, name, key, name);
                tried.Add(new DacPlace(path, isUrl ? "symbol cache" : "symbol store"));
                if (File.Exists(path))
                    return path;
            }
            if (isUrl)
            {
                var locator = new DataTargetOptions { SymbolPaths = [server], SymbolCachePath = cache }.FileLocator;
                string? downloaded = locator.FindPEImage(name, clr.ModuleInfo.IndexTimeStamp, clr.ModuleInfo.IndexFileSize, checkProperties: false);
                tried.Add(new DacPlace($"{server.TrimEnd('/')}/{name}/{key}/{name}", "symbol server",
                    downloaded is null ? "not there" : null));
                if (downloaded is not null)
                    return downloaded;
            }
        }
        return null;
    }
}
