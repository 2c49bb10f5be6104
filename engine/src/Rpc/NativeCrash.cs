using System.Runtime.InteropServices;

namespace DumpScope.Engine.Rpc;

/// <summary>
/// Crashes the process the way a DAC reading a damaged dump does: an access
/// violation inside native code, which .NET cannot catch. For the tests of
/// the front process only (`DUMPSCOPE_ENGINE_TEST_CRASH`).
/// </summary>
internal static class NativeCrash
{
    [DllImport("libc", EntryPoint = "strlen")]
    private static extern nuint UnixStrlen(nint text);

    [DllImport("msvcrt", EntryPoint = "strlen")]
    private static extern nuint WindowsStrlen(nint text);

    public static void Now()
    {
        Console.Error.WriteLine("engine: DUMPSCOPE_ENGINE_TEST_CRASH: crashing in native code");
        if (OperatingSystem.IsWindows())
            WindowsStrlen(0);
        else
            UnixStrlen(0);
        Environment.FailFast("DUMPSCOPE_ENGINE_TEST_CRASH: strlen(NULL) returned");
    }
}
