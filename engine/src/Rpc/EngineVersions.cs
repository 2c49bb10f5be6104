using DumpScope.Engine.Analysis;

namespace DumpScope.Engine.Rpc;

/// <summary>
/// The `version` answer. ClrMD's version is the one the engine was built
/// with (ClrMdBuild, written by the csproj) rather than read from a loaded
/// type, so the front process (which never loads ClrMD) gives the same
/// answer as the worker.
/// </summary>
public static class EngineVersions
{
    public static VersionInfo Info { get; } = new(RpcServer.ProtocolVersion, Engine, ClrMdBuild.Version);

    private static string Engine => typeof(EngineVersions).Assembly.GetName().Version?.ToString() ?? "0";
}
