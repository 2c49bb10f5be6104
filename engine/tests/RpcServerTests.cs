using System.Text;
using System.Text.Json;
using DumpScope.Engine.Analysis;
using DumpScope.Engine.Rpc;

namespace DumpScope.Engine.Tests;

public class RpcServerTests
{
    private static List<JsonElement> Converse(params string[] lines) => ServerConversation.Converse(lines);

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
        Assert.Equal(ErrorCodes.InvalidParams, Reply(replies, 4).GetProperty("error").GetProperty("code").GetInt32());
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
    private sealed class OpenEndedStream(string firstLine) : ReadOnlyStream
    {
        private readonly byte[] _line = Encoding.UTF8.GetBytes(firstLine + "\n");
        private bool _sent;

        public override int Read(byte[] buffer, int offset, int count)
        {
            if (!_sent)
            {
                _sent = true;
                _line.CopyTo(buffer, offset);
                return _line.Length;
            }
            Thread.Sleep(Timeout.Infinite);
            return 0;
        }
    }

    [Fact]
    public async Task Shutdown_ends_the_server_even_while_the_client_keeps_stdin_open()
    {
        var output = new MemoryStream();
        var server = new RpcServer(new OpenEndedStream("""{"jsonrpc":"2.0","id":9,"method":"shutdown"}"""), output, EngineLimits.Default);
        var run = Task.Run(server.Run);
        Assert.Same(run, await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(10))));
        Assert.Contains("\"id\":9", Encoding.UTF8.GetString(output.ToArray()));
    }
    private static int ErrorCode(List<JsonElement> replies, int id) =>
        Reply(replies, id).GetProperty("error").GetProperty("code").GetInt32();

    [Theory]
    [InlineData("""{"jsonrpc":"2.0","method":"$/cancelRequest","params":[1]}""")]
    [InlineData("""{"jsonrpc":"2.0","method":"$/cancelRequest","params":7}""")]
    [InlineData("""{"jsonrpc":"2.0","method":"$/cancelRequest","params":"1"}""")]
    [InlineData("""{"jsonrpc":"2.0","method":"$/cancelRequest"}""")]
    [InlineData("""{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":{"a":1}}}""")]
    [InlineData("""{"jsonrpc":"2.0","method":"version","params":{"a":1,"a":2},"id":1}""")]
    [InlineData("""{"jsonrpc":"2.0","id":1,"id":2,"method":"version"}""")]
    [InlineData("""[{"jsonrpc":"2.0","id":1,"method":"version"}]""")]
    [InlineData("""{"jsonrpc":"2.0","id":{"x":1},"method":"version"}""")]
    [InlineData("\"just a string\"")]
    public void A_hostile_line_never_ends_the_server(string line)
    {
        var replies = Converse(line, """{"jsonrpc":"2.0","id":99,"method":"version"}""");
        Assert.True(Reply(replies, 99).TryGetProperty("result", out _));
    }

    [Fact]
    public void Duplicate_keys_are_refused_as_not_json()
    {
        var replies = Converse("""{"jsonrpc":"2.0","id":1,"method":"stack","params":{"os_id":1,"os_id":2}}""");
        Assert.Equal(ErrorCodes.ParseError, replies.Single().GetProperty("error").GetProperty("code").GetInt32());
        Assert.Contains("Duplicate", replies.Single().GetProperty("error").GetProperty("message").GetString());
    }

    [Theory]
    [InlineData("stack", """{"os_id":4294967301}""", "os_id")]
    [InlineData("stack", """{"os_id":-1}""", "os_id")]
    [InlineData("stack", """{"os_id":1.5}""", "os_id")]
    [InlineData("stack", """{"os_id":"12x"}""", "os_id")]
    [InlineData("stack", """{}""", "os_id")]
    [InlineData("object", """{"address":"0x"}""", "address")]
    [InlineData("object", """{"address":""}""", "address")]
    [InlineData("object", """{"address":"0x-1"}""", "address")]
    [InlineData("object", """{"address":" 12"}""", "address")]
    [InlineData("object", """{"address":18446744073709551616}""", "address")]
    [InlineData("object", """{"address":true}""", "address")]
    [InlineData("object", """{"address":[1]}""", "address")]
    [InlineData("instances", """{"method_table":1,"offset":-1}""", "offset")]
    [InlineData("instances", """{"method_table":1,"limit":100001}""", "limit")]
    [InlineData("instances", """{"method_table":1,"limit":-5}""", "limit")]
    [InlineData("instances", """{"method_table":1,"sort":"name"}""", "sort")]
    [InlineData("root_paths", """{"address":1,"max_paths":0}""", "max_paths")]
    [InlineData("root_paths", """{"address":1,"max_paths":4294967306}""", "max_paths")]
    [InlineData("open", """{"dump":7}""", "dump")]
    [InlineData("open", """{"dump":""}""", "dump")]
    [InlineData("open", """{"dump":"/x.core","dac":["a"]}""", "dac")]
    [InlineData("open", """{"dump":"/tmp/a\udcff.core"}""", "dump")]
    [InlineData("open", """{"dump":"/x.core","modules":{"path":"/a.so","base":1}}""", "modules")]
    [InlineData("open", """{"dump":"/x.core","modules":[{"path":"/a.so"}]}""", "modules[0]")]
    [InlineData("open", """{"dump":"/x.core","modules":[{"path":"/a.so","base":-1}]}""", "modules[0]")]
    [InlineData("open", """{"dump":"/x.core","modules":[{"path":"/a.so","base":"0x10"}]}""", "modules[0]")]
    [InlineData("open", """{"dump":"/x.core","modules":[{"path":"","base":1}]}""", "modules[0]")]
    [InlineData("open", """{"dump":"/x.core","modules":[{"path":"/a\udcff.so","base":1}]}""", "modules[0]")]
    [InlineData("open", """{"dump":"/x.core","modules":[{"path":"/a.so","base":1},7]}""", "modules[1]")]
    [InlineData("heap_stats", "[1]", "params")]
    [InlineData("heap_stats", "5", "params")]
    public void Every_bad_parameter_is_refused_with_invalid_params_naming_it(string method, string parameters, string name)
    {
        var replies = Converse($$"""{"jsonrpc":"2.0","id":1,"method":"{{method}}","params":{{parameters}}}""");
        var error = Reply(replies, 1).GetProperty("error");
        Assert.Equal(ErrorCodes.InvalidParams, error.GetProperty("code").GetInt32());
        Assert.Contains(name, error.GetProperty("message").GetString());
    }

    [Theory]
    [InlineData("""{"address":"0x7f0012345678"}""")]
    [InlineData("""{"address":"0X7F0012345678"}""")]
    [InlineData("""{"address":"139637976819320"}""")]
    [InlineData("""{"address":139637976819320}""")]
    public void Addresses_are_read_as_hex_strings_decimal_strings_or_numbers(string parameters)
    {
        // No dump is open: a well-formed address gets past the parameters
        // to the session, which is then missing.
        var replies = Converse($$"""{"jsonrpc":"2.0","id":1,"method":"object","params":{{parameters}}}""");
        Assert.Equal(ErrorCodes.NoDumpOpen, ErrorCode(replies, 1));
    }

    [Fact]
    public void A_request_id_still_running_cannot_be_reused()
    {
        var (dump, _) = ScenarioDumps.Get("blocked-finalizer", "net10");
        var replies = Converse(
            $$$"""{"jsonrpc":"2.0","id":1,"method":"open","params":{"dump":{{{JsonSerializer.Serialize(dump)}}}}}""",
            """{"jsonrpc":"2.0","id":1,"method":"version"}""");
        var answers = replies.Where(r => r.TryGetProperty("id", out var i) && i.ValueKind == JsonValueKind.Number).ToList();
        Assert.Equal(2, answers.Count);
        Assert.Contains(answers, a => a.TryGetProperty("error", out var e) && e.GetProperty("code").GetInt32() == ErrorCodes.InvalidRequest);
        Assert.Contains(answers, a => a.TryGetProperty("result", out var r) && r.TryGetProperty("flavor", out _));
    }

    [Fact]
    public void A_failed_open_leaves_the_open_dump_open()
    {
        var (dump, _) = ScenarioDumps.Get("blocked-finalizer", "net10");
        var replies = Converse(
            $$$"""{"jsonrpc":"2.0","id":1,"method":"open","params":{"dump":{{{JsonSerializer.Serialize(dump)}}}}}""",
            """{"jsonrpc":"2.0","id":2,"method":"open","params":{"dump":5}}""",
            """{"jsonrpc":"2.0","id":3,"method":"open","params":{"dump":"/nonexistent/x.core"}}""",
            """{"jsonrpc":"2.0","id":4,"method":"runtime_info"}""");
        Assert.Equal(ErrorCodes.InvalidParams, ErrorCode(replies, 2));
        Assert.Equal(ErrorCodes.DumpUnreadable, ErrorCode(replies, 3));
        Assert.Equal("Core", Reply(replies, 4).GetProperty("result").GetProperty("flavor").GetString());
    }

    [Fact]
    public void A_line_over_the_limit_is_refused_and_the_next_one_answered()
    {
        string huge = """{"jsonrpc":"2.0","id":1,"method":"version","params":{"pad":" """ + new string('x', 2 << 20) + "\"}}";
        var replies = Converse(huge, """{"jsonrpc":"2.0","id":2,"method":"version"}""");
        Assert.Equal(ErrorCodes.InvalidRequest, replies[0].GetProperty("error").GetProperty("code").GetInt32());
        Assert.True(Reply(replies, 2).TryGetProperty("result", out _));
    }
}
