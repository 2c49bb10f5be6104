using System.Reflection;
using DumpScope.Engine.Analysis;

namespace DumpScope.Engine.Rpc;

/// <summary>
/// The `version` answer. ClrMD's version is read from its file beside the
/// engine rather than from a loaded type, so the front process (which never
/// loads ClrMD) gives the same answer as the worker.
/// </summary>
public static class EngineVersions
{
    public static VersionInfo Info { get; } = new(RpcServer.ProtocolVersion, Engine, ClrMd());

    private static string Engine => typeof(EngineVersions).Assembly.GetName().Version?.ToString() ?? "0";

    private static string ClrMd()
    {
        try
        {
            string file = Path.Combine(AppContext.BaseDirectory, "Microsoft.Diagnostics.Runtime.dll");
            return AssemblyName.GetAssemblyName(file).Version?.ToString() ?? "unknown";
        }
        catch (Exception e) when (e is IOException or BadImageFormatException or UnauthorizedAccessException)
        {
            return "unknown";
        }
    }
}
