using System.Text.Json;
using DumpScope.Engine.Analysis;
using DumpScope.Engine.Rpc;

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
// --no-index: never read or write saved heap graphs (GraphIndex).
GraphIndex? index = args.Contains("--no-index") ? null : GraphIndex.Default();
new RpcServer(input, protocolOut, EngineLimits.Default, index).Run();
return 0;
