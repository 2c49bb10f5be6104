using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using DumpScope.Engine.Analysis;
using DumpScope.Engine.Front;
using DumpScope.Engine.Rpc;

// Native AOT (.NET 10): the process's first contended lock sets up the
// lock's statics from AppContext, whose class constructor is itself guarded
// by a lock. Two threads racing through both at start-up spin on each other
// for ever (seen: a worker's main thread and its front-watch thread, at 100%
// CPU, never answering `open`, 2 of ~300 starts on two busy cores). Reading
// AppContext here, before the engine starts any thread, runs that class
// constructor alone and leaves nothing to race.
_ = AppContext.GetData("DumpScope.Engine");

// `--schema`: print every method's result record and its fields (as they go
// on the wire) and exit; the Python contract test reads it.
if (args is ["--schema"])
{
    Console.WriteLine(ResultSchema.Describe(RpcServer.Json).ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    return 0;
}

// stdout carries JSON-RPC only: keep the raw stream for the protocol and send
// anything else that writes to Console.Out (ours or a library's) to stderr.
Stream protocolOut = Console.OpenStandardOutput();
Console.SetOut(Console.Error);
using Stream input = Console.OpenStandardInput();
if (args is [WorkerProcess.Flag, string front, .. var flags])
    Worker.Serve(input, protocolOut, int.Parse(front, CultureInfo.InvariantCulture), flags);
else
    new EngineFront(input, protocolOut, IncomingRequest.DefaultMaxBytes, () => WorkerProcess.Start(args)).Run();
return 0;

/// <summary>
/// The worker process (`--worker FRONT_PID FLAGS...`): the JSON-RPC server
/// that reads the dump. Kept out of the front's code path so the front never
/// loads ClrMD.
/// </summary>
internal static class Worker
{
    public static void Serve(Stream input, Stream output, int frontId, string[] flags)
    {
        WatchFront(frontId);
        // --no-index: never read or write saved heap graphs (GraphIndex).
        GraphIndex? index = flags.Contains("--no-index") ? null : GraphIndex.Default();
        new RpcServer(input, output, EngineLimits.Default, index)
        {
            CrashOnMethod = Environment.GetEnvironmentVariable("DUMPSCOPE_ENGINE_TEST_CRASH"),
        }.Run();
    }

    // A front that is killed (a stalled call, a cancel the DAC did not
    // heed) cannot stop its worker: the worker goes with it instead of
    // running on alone.
    private static void WatchFront(int frontId)
    {
        Process front;
        try
        {
            front = Process.GetProcessById(frontId);
        }
        catch (ArgumentException)
        {
            Environment.Exit(1);
            return;
        }
        new Thread(() =>
        {
            front.WaitForExit();
            Environment.Exit(1);
        })
        { Name = "front-watch", IsBackground = true }.Start();
    }
}
