using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Tests;

/// <summary>A core dump opened by ClrMD as the engine opens it (the
/// lock-free mapped reader), with its .NET runtime through the dump's own
/// DAC.</summary>
internal sealed class OpenedDump : IDisposable
{
    public string Dump { get; }
    public DataTarget Target { get; }
    public ClrRuntime Runtime { get; }

    public OpenedDump(string dump, string runtimeDir)
    {
        Dump = dump;
        Target = DataTarget.LoadDump(dump, new DataTargetOptions { SymbolPaths = [], UseLockFreeMemoryMapReader = true });
        try
        {
            Runtime = Target.ClrVersions[0].CreateRuntime(Path.Combine(runtimeDir, "libmscordaccore.so"), ignoreMismatch: true);
        }
        catch
        {
            Target.Dispose();
            throw;
        }
    }

    /// <summary>A scenario's dump (made on first use).</summary>
    public static OpenedDump Of(string scenario, string runtime = "net10")
    {
        var (dump, runtimeDir) = ScenarioDumps.Get(scenario, runtime);
        return new OpenedDump(dump, runtimeDir);
    }

    public void Dispose()
    {
        Runtime.Dispose();
        Target.Dispose();
    }
}
