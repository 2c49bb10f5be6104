using System.Diagnostics;
using DumpScope.Engine.Rpc;

namespace DumpScope.Engine.Front;

/// <summary>
/// The engine's worker: the same program started with `--worker`, which
/// reads the dump with ClrMD and the DAC. Its stdin and stdout are pipes to
/// the front; its stderr is the front's, so its log reaches the client.
/// </summary>
public sealed class WorkerProcess : IDisposable
{
    public const string Flag = "--worker";

    private readonly Process _process;
    private readonly Stream _input;
    private readonly LineReader _lines;

    private WorkerProcess(Process process)
    {
        _process = process;
        _input = process.StandardInput.BaseStream;
        // Answers (a heap's types, a page of 100,000 objects) are longer
        // than any request: the worker is trusted to write whole lines.
        _lines = new LineReader(process.StandardOutput.BaseStream, int.MaxValue);
    }

    /// <summary>Starts the worker with the front's own flags.</summary>
    public static WorkerProcess Start(IEnumerable<string> flags)
    {
        var start = new ProcessStartInfo
        {
            FileName = SelfCommand(out string? assembly),
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = false,
            UseShellExecute = false,
        };
        // The engine's own executable (Native AOT on Linux, self-contained on
        // Windows and under Wine); a JIT build started as `dotnet
        // DumpScope.Engine.dll` runs in the dotnet host, which needs the dll.
        if (assembly is not null)
            start.ArgumentList.Add(assembly);
        start.ArgumentList.Add(Flag);
        start.ArgumentList.Add(Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        foreach (string flag in flags)
            start.ArgumentList.Add(flag);
        Process process = Process.Start(start) ?? throw new InvalidOperationException($"{start.FileName} did not start");
        return new WorkerProcess(process);
    }

    private static string SelfCommand(out string? assembly)
    {
        string self = Environment.ProcessPath ?? throw new InvalidOperationException("the engine's own executable is unknown");
        bool host = Path.GetFileNameWithoutExtension(self).Equals("dotnet", StringComparison.OrdinalIgnoreCase);
        assembly = host ? Path.Combine(AppContext.BaseDirectory, "DumpScope.Engine.dll") : null;
        return self;
    }

    public int Id => _process.Id;

    /// <summary>Sends one line; false when the worker no longer reads (it died).</summary>
    public bool Send(ReadOnlySpan<byte> line)
    {
        try
        {
            _input.Write(line);
            _input.WriteByte((byte)'\n');
            _input.Flush();
            return true;
        }
        catch (IOException)
        {
            return false;
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
    }

    /// <summary>End of the worker's input: it answers what it has, then exits.</summary>
    public void CloseInput()
    {
        try
        {
            _input.Close();
        }
        catch (IOException)
        {
            // Already gone: nothing is left to tell it.
        }
    }

    /// <summary>The next line the worker wrote, null once it has ended.</summary>
    public byte[]? ReadLine() => _lines.ReadLine()?.Bytes;

    /// <summary>Waits for the worker to end and says how: "SIGSEGV", "exit code 3".</summary>
    public string WaitForEnd()
    {
        _process.WaitForExit();
        return Ending(_process.ExitCode, OperatingSystem.IsWindows());
    }

    public static string Ending(int exitCode, bool windows)
    {
        if (windows)
        {
            return unchecked((uint)exitCode) switch
            {
                0xC0000005 => "access violation (0xC0000005)",
                0xC00000FD => "stack overflow (0xC00000FD)",
                0xC0000409 => "fail-fast (0xC0000409)",
                // The runtime's own fail-fast after an access violation in
                // native code it called (seen under Wine).
                0xC0000602 => "fatal error (0xC0000602)",
                0xE0434352 => "unhandled .NET exception (0xE0434352)",
                uint code when code >= 0x80000000 => $"exit code 0x{code:X8}",
                _ => $"exit code {exitCode}",
            };
        }
        // .NET reports a process ended by signal N as exit code 128 + N.
        return exitCode switch
        {
            > 128 and < 128 + 65 => SignalName(exitCode - 128),
            _ => $"exit code {exitCode}",
        };
    }

    private static string SignalName(int signal) => signal switch
    {
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        _ => $"signal {signal}",
    };

    public void Kill()
    {
        try
        {
            _process.Kill();
        }
        catch (InvalidOperationException)
        {
            // It has ended already.
        }
    }

    public void Dispose() => _process.Dispose();
}
