using System.Text;
using System.Text.Json;
using DumpScope.Engine.Analysis;
using DumpScope.Engine.Rpc;

namespace DumpScope.Engine.Tests;

public class RpcServerTests
{
    // Runs the server over in-memory streams and returns every line it wrote.
    private static List<JsonElement> Converse(params string[] lines)
    {
        var input = new StringReader(string.Join("\n", lines) + "\n");
        var output = new MemoryStream();
        new RpcServer(input, output, EngineLimits.Default).Run();
        return Encoding.UTF8.GetString(output.ToArray())
            .Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => JsonDocument.Parse(l).RootElement.Clone())
            .ToList();
    }

    private static JsonElement Reply(List<JsonElement> replies, int id) =>
        replies.Single(r => r.TryGetProperty("id", out var i) && i.ValueKind == JsonValueKind.Number && i.GetInt32() == id);

    [Fact]
    public void Version_names_the_protocol_version()
    {
        var replies = Converse("""{"jsonrpc":"2.0","id":1,"method":"version"}""");
        Assert.Equal(1, Reply(replies, 1).GetProperty("result").GetProperty("protocol_version").GetInt32());
    }

    [Fact]
    public void Malformed_and_unknown_requests_get_json_rpc_errors_and_the_server_goes_on()
    {
        var replies = Converse(
            "{not json",
            """{"jsonrpc":"2.0","id":2,"method":"no_such_method"}""",
            """{"jsonrpc":"2.0","id":3,"method":"heap_stats"}""",
            """{"jsonrpc":"2.0","id":4,"method":"object","params":{"address":"zebra"}}""",
            """{"jsonrpc":"2.0","id":5,"method":"version"}""");
        Assert.Equal(ErrorCodes.ParseError, replies[0].GetProperty("error").GetProperty("code").GetInt32());
        Assert.Equal(ErrorCodes.MethodNotFound, Reply(replies, 2).GetProperty("error").GetProperty("code").GetInt32());
        var noDump = Reply(replies, 3).GetProperty("error");
        Assert.Equal(ErrorCodes.NoDumpOpen, noDump.GetProperty("code").GetInt32());
        Assert.Contains("call open first", noDump.GetProperty("message").GetString());
        Assert.Equal(ErrorCodes.NoDumpOpen, Reply(replies, 4).GetProperty("error").GetProperty("code").GetInt32());
        Assert.True(Reply(replies, 5).TryGetProperty("result", out _));
    }

    [Fact]
    public void Open_of_a_missing_file_says_which_file()
    {
        var replies = Converse("""{"jsonrpc":"2.0","id":1,"method":"open","params":{"dump":"/nonexistent/x.core"}}""");
        var error = Reply(replies, 1).GetProperty("error");
        Assert.Equal(ErrorCodes.DumpUnreadable, error.GetProperty("code").GetInt32());
        Assert.Contains("/nonexistent/x.core", error.GetProperty("message").GetString());
    }

    [Fact]
    public void Open_then_heap_stats_reports_progress_notifications_for_that_request()
    {
        var (dump, _) = ScenarioDumps.Get("blocked-finalizer", "net10");
        var replies = Converse(
            $$$"""{"jsonrpc":"2.0","id":1,"method":"open","params":{"dump":{{{JsonSerializer.Serialize(dump)}}}}}""",
            """{"jsonrpc":"2.0","id":2,"method":"heap_stats"}""");
        Assert.Equal("Core", Reply(replies, 1).GetProperty("result").GetProperty("flavor").GetString());
        var progress = replies.Where(r => r.TryGetProperty("method", out var m) && m.GetString() == "$/progress").ToList();
        Assert.NotEmpty(progress);
        Assert.All(progress, p => Assert.Equal(2, p.GetProperty("params").GetProperty("id").GetInt32()));
        var last = progress[^1].GetProperty("params");
        Assert.Equal(last.GetProperty("total").GetInt64(), last.GetProperty("done").GetInt64());
        Assert.True(Reply(replies, 2).GetProperty("result").GetProperty("total_objects").GetInt64() > 5000);
    }

    // Input that never ends, as a client that keeps its pipe open.
    private sealed class OpenEndedReader(string firstLine) : TextReader
    {
        private bool _sent;

        public override string? ReadLine()
        {
            if (!_sent)
            {
                _sent = true;
                return firstLine;
            }
            Thread.Sleep(Timeout.Infinite);
            return null;
        }
    }

    [Fact]
    public async Task Shutdown_ends_the_server_even_while_the_client_keeps_stdin_open()
    {
        var output = new MemoryStream();
        var server = new RpcServer(new OpenEndedReader("""{"jsonrpc":"2.0","id":9,"method":"shutdown"}"""), output, EngineLimits.Default);
        var run = Task.Run(server.Run);
        Assert.Same(run, await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(10))));
        Assert.Contains("\"id\":9", Encoding.UTF8.GetString(output.ToArray()));
    }
}
