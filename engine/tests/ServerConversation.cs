using System.Text;
using System.Text.Json;
using DumpScope.Engine.Analysis;
using DumpScope.Engine.Rpc;

namespace DumpScope.Engine.Tests;

internal static class ServerConversation
{
    /// <summary>Runs the server over in-memory streams until the lines end; every line it wrote, in order.</summary>
    public static List<JsonElement> Converse(IEnumerable<string> lines)
    {
        var input = new MemoryStream(Encoding.UTF8.GetBytes(string.Join("\n", lines) + "\n"));
        var output = new MemoryStream();
        new RpcServer(input, output, EngineLimits.Default).Run();
        return Encoding.UTF8.GetString(output.ToArray())
            .Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => JsonDocument.Parse(l).RootElement.Clone())
            .ToList();
    }
}
