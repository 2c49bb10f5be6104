using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace DumpScope.Scenarios;

/// <summary>
/// Plants one scenario's state, prints <c>READY {facts}</c> on one line, then
/// sleeps until the driver has written the dump and kills the process. A
/// scenario with later stages moves to the next one on each line the driver
/// writes to its stdin (once it has dumped the stage before) and prints
/// <c>READY</c> again with that stage's facts.
/// </summary>
internal static class Program
{
    private static readonly Dictionary<string, Func<string[], Facts>> Plants = new()
    {
        ["blocked-finalizer"] = BlockedFinalizer.Plant,
        ["deadlock"] = Deadlock.Plant,
        ["event-leak"] = EventLeak.Plant,
        ["threadpool-starvation"] = ThreadPoolStarvation.Plant,
        ["loh-fragmentation"] = LohFragmentation.Plant,
        ["healthy"] = Healthy.Plant,
        ["big-heap"] = BigHeap.Plant,
        ["retention"] = Retention.Plant,
        ["growth"] = Growth.Plant,
    };

    private static readonly Dictionary<string, Func<Facts>[]> LaterStages = new()
    {
        ["growth"] = [Growth.Grow],
    };

    private static int Main(string[] args)
    {
        if (args.Length == 3 && args[0] == "dump" && OperatingSystem.IsWindows())
        {
            return MiniDump.Write(int.Parse(args[1]), args[2]);
        }
        if (args.Length == 0 || !Plants.TryGetValue(args[0], out var plant))
        {
            Console.Error.WriteLine($"usage: Scenarios <{string.Join('|', Plants.Keys)}> [options]");
            Console.Error.WriteLine("       Scenarios dump PID FILE   (Windows: a full-memory minidump of PID)");
            return 2;
        }

        // The program sleeps forever once ready; if the driver dies before it
        // kills the program (Ctrl-C, a killed test run), the kernel does.
        // (Under Wine the driver ends the prefix's processes itself.)
        if (!OperatingSystem.IsWindows() && Native.DieWithParent(Native.PR_SET_PDEATHSIG, Native.SIGKILL) != 0)
        {
            Console.Error.WriteLine("warning: prctl(PR_SET_PDEATHSIG) failed");
        }

        Func<Facts>[] later = LaterStages.GetValueOrDefault(args[0], []);
        Announce(args[0], plant(args[1..]), 1, later.Length + 1);
        if (later.Length > 0)
        {
            using Stream stdin = Console.OpenStandardInput();
            for (int i = 0; i < later.Length; i++)
            {
                if (!NextLine(stdin))
                {
                    Console.Error.WriteLine($"stdin closed before stage {i + 2}");
                    return 1;
                }
                Announce(args[0], later[i](), i + 2, later.Length + 1);
            }
        }
        Thread.Sleep(Timeout.Infinite);
        return 0;
    }

    private static void Announce(string scenario, Facts facts, int stage, int stages)
    {
        facts["scenario"] = scenario;
        facts["stage"] = stage;
        facts["stages"] = stages;
        facts["pid"] = Environment.ProcessId;
        facts["runtime_version"] = Environment.Version.ToString();
        facts["framework_description"] = RuntimeInformation.FrameworkDescription;
        facts["runtime_dir"] = RuntimeEnvironment.GetRuntimeDirectory();
        facts["pointer_size"] = IntPtr.Size;
        facts["os"] = OperatingSystem.IsWindows() ? "windows" : "linux";
        facts["main_thread"] = ThreadFacts.Current();

        // Straight to the stdout stream, not through Console.Out: its
        // SyncTextWriter holds a monitor while it writes, and a dump taken the
        // moment this line arrives could catch that monitor still held.
        using Stream stdout = Console.OpenStandardOutput();
        stdout.Write(Encoding.UTF8.GetBytes("READY " + JsonSerializer.Serialize(facts) + "\n"));
        stdout.Flush();
    }

    /// <summary>
    /// Waits for the driver's next line; false when stdin ends. The raw
    /// stream, not Console.In: its SyncTextReader would hold a monitor in the
    /// dump of the stage that waits here.
    /// </summary>
    private static bool NextLine(Stream stdin)
    {
        int b;
        while ((b = stdin.ReadByte()) != -1)
        {
            if (b == '\n')
            {
                return true;
            }
        }
        return false;
    }
}

/// <summary>The facts a scenario planted; keys are the facts.json keys.</summary>
internal sealed class Facts : Dictionary<string, object?>
{
}

internal static partial class Native
{
    // Environment has no OS thread id; ClrMD and SOS report the kernel tid.
    internal const int PR_SET_PDEATHSIG = 1;
    internal const nint SIGKILL = 9;

    [LibraryImport("libc.so.6", EntryPoint = "gettid")]
    internal static partial int GetTid();

    [LibraryImport("libc.so.6", EntryPoint = "prctl")]
    internal static partial int DieWithParent(int option, nint signal);

    [LibraryImport("kernel32.dll", EntryPoint = "GetCurrentThreadId")]
    internal static partial uint GetCurrentThreadId();

    /// <summary>The OS thread id ClrMD and SOS report: the kernel tid on Linux, the Win32 one on Windows.</summary>
    internal static long OsThreadId() => OperatingSystem.IsWindows() ? GetCurrentThreadId() : GetTid();
}

/// <summary>
/// Writes a full-memory minidump of another process with dbghelp, as a user
/// would with Task Manager or procdump: the Windows twins of the scenarios are
/// dumped this way (createdump.exe refuses a pid on .NET 8 and later).
/// </summary>
internal static partial class MiniDump
{
    private const uint ProcessQueryInformation = 0x0400;
    private const uint ProcessVmRead = 0x0010;
    private const uint MiniDumpWithFullMemory = 0x2;

    internal static int Write(int pid, string path)
    {
        nint process = OpenProcess(ProcessQueryInformation | ProcessVmRead, false, (uint)pid);
        if (process == 0)
        {
            Console.Error.WriteLine($"OpenProcess({pid}) failed: error {Marshal.GetLastPInvokeError()}");
            return 1;
        }
        using var file = new FileStream(path, FileMode.Create, FileAccess.ReadWrite);
        bool written = MiniDumpWriteDump(
            process, (uint)pid, file.SafeFileHandle.DangerousGetHandle(), MiniDumpWithFullMemory, 0, 0, 0);
        if (!written)
        {
            Console.Error.WriteLine($"MiniDumpWriteDump({pid}) failed: error {Marshal.GetLastPInvokeError()}");
            return 1;
        }
        return 0;
    }

    [LibraryImport("kernel32.dll", SetLastError = true)]
    private static partial nint OpenProcess(uint access, [MarshalAs(UnmanagedType.Bool)] bool inherit, uint pid);

    [LibraryImport("dbghelp.dll", SetLastError = true)]
    [return: MarshalAs(UnmanagedType.Bool)]
    private static partial bool MiniDumpWriteDump(
        nint process, uint pid, nint file, uint type, nint exception, nint userStream, nint callback);
}

internal static class ThreadFacts
{
    /// <summary>Name and ids of the calling thread, as SOS and ClrMD show them.</summary>
    internal static Dictionary<string, object?> Current() => new()
    {
        ["name"] = Thread.CurrentThread.Name,
        ["os_thread_id"] = Native.OsThreadId(),
        ["managed_thread_id"] = Environment.CurrentManagedThreadId,
        // What the CLR set for this thread: STA, MTA or Unknown (never set; always on Linux).
        ["apartment"] = Thread.CurrentThread.GetApartmentState().ToString(),
    };
}

internal static class Args
{
    /// <summary>Reads <c>--name VALUE</c> as an integer, or the default.</summary>
    internal static long Long(string[] args, string name, long fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? long.Parse(args[i + 1]) : fallback;
    }
}

internal static class Wait
{
    /// <summary>Fails the scenario (and so the driver, with this message) instead of hanging.</summary>
    internal static void For(ManualResetEventSlim signal, string what)
    {
        if (!signal.Wait(TimeSpan.FromSeconds(30)))
        {
            throw new TimeoutException($"timed out waiting for {what}");
        }
    }

    internal static void Until(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"timed out waiting for {what}");
            }
            Thread.Sleep(10);
        }
    }

    /// <summary>
    /// A thread that has announced it is about to block on a monitor spins for
    /// a moment first; give it time to reach the real wait before dumping.
    /// </summary>
    internal static void ForBlockingToSettle() => Thread.Sleep(300);
}
