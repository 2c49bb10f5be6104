using System.Text.Json;
using System.Text.RegularExpressions;
using DumpScope.Engine.Analysis;
using DumpScope.Engine.Rpc;

namespace DumpScope.Engine.Tests;

// The schema (`--schema`) is what the Python contract test trusts: these
// check it against what Dispatch really sends and what PROTOCOL.md names.
public class ResultSchemaTests
{
    private static readonly JsonElement Schema =
        JsonDocument.Parse(ResultSchema.Describe(RpcServer.Json).ToJsonString()).RootElement.Clone();

    // The answers only: progress notifications have no id.
    private static List<JsonElement> Converse(IEnumerable<string> lines) =>
        ServerConversation.Converse(lines).Where(r => r.TryGetProperty("id", out _)).ToList();

    private static string Request(int id, string method, string parameters = "{}") =>
        $$"""{"jsonrpc":"2.0","id":{{id}},"method":"{{method}}","params":{{parameters}}}""";

    private static string Open(int id) =>
        Request(id, "open", $$"""{"dump":{{JsonSerializer.Serialize(ScenarioDumps.Get("blocked-finalizer", "net10").Dump)}}}""");

    [Fact]
    public void Every_method_in_the_table_is_served()
    {
        var methods = ResultSchema.MethodResults.Keys.Where(m => m != "shutdown").Append("shutdown").ToList();
        var replies = Converse(methods.Select((m, i) => Request(i, m)));
        var unknown = replies
            .Where(r => r.TryGetProperty("error", out var e) && e.GetProperty("code").GetInt32() == ErrorCodes.MethodNotFound)
            .Select(r => methods[r.GetProperty("id").GetInt32()]);
        Assert.Empty(unknown);
        Assert.Equal(methods.Count, replies.Count);
    }

    // Each answer is written through a contract made at build time: a
    // method whose record the context lacks would be written by
    // reflection, slowly the first time (RpcJsonContext).
    [Fact]
    public void Every_method_s_record_has_a_contract_made_at_build_time()
    {
        var missing = ResultSchema.MethodResults
            .Where(m => m.Value is { } type && RpcJsonContext.Default.GetTypeInfo(type) is null)
            .Select(m => m.Key);
        Assert.Empty(missing);
    }

    [Fact]
    public void The_table_lists_exactly_the_methods_protocol_md_documents()
    {
        string protocol = File.ReadAllText(Path.Combine(ScenarioDumps.RepoRoot, "engine", "PROTOCOL.md"));
        var documented = protocol.Split('\n')
            .Where(l => l.StartsWith("### ", StringComparison.Ordinal))
            .SelectMany(l => Regex.Matches(l, @"`([a-z_]+)`\s+(?:→|`\{)").Select(m => m.Groups[1].Value))
            .ToHashSet();
        Assert.Equal(documented.Order(), ResultSchema.MethodResults.Keys.Order());
    }

    [Fact]
    public void Every_record_has_a_name_and_every_field_a_json_type()
    {
        var types = new HashSet<string> { "string", "integer", "number", "boolean", "object", "array" };
        foreach (var record in Schema.GetProperty("records").EnumerateObject())
        {
            Assert.Matches("^[A-Z][A-Za-z0-9]*$", record.Name);
            foreach (var field in record.Value.EnumerateArray())
            {
                Assert.Matches("^[a-z][a-z0-9_]*$", field.GetProperty("name").GetString());
                Assert.Contains(field.GetProperty("type").GetString()!, types);
            }
        }
        var thread = Schema.GetProperty("records").GetProperty("ManagedThread").EnumerateArray()
            .ToDictionary(f => f.GetProperty("name").GetString()!);
        Assert.Equal("WaitInfo", thread["waits_for"].GetProperty("record").GetString());
        Assert.True(thread["waits_for"].GetProperty("nullable").GetBoolean());
        Assert.True(thread["teb"].GetProperty("nullable").GetBoolean());
        Assert.False(thread["os_id"].GetProperty("nullable").GetBoolean());
        Assert.Equal("Frame", thread["frames"].GetProperty("items").GetProperty("record").GetString());
    }

    // Every answer on a real dump has exactly the fields of the record the
    // table declares for its method, with their JSON types, null only where
    // nullable: the table cannot claim a record Dispatch does not send.
    [Fact]
    public void Every_answer_on_a_scenario_dump_matches_its_declared_record()
    {
        var answers = new Dictionary<string, JsonElement>();
        void Ask(params (string Method, string Params)[] calls)
        {
            var replies = Converse(calls.Select((c, i) => c.Method == "open" ? Open(i) : Request(i, c.Method, c.Params)));
            foreach (var reply in replies)
            {
                int id = reply.GetProperty("id").GetInt32();
                Assert.False(reply.TryGetProperty("error", out var error), $"{calls[id].Method}: {error}");
                answers[calls[id].Method] = reply.GetProperty("result");
            }
        }
        Ask(("open", ""), ("version", "{}"), ("runtime_info", "{}"), ("heap_stats", "{}"), ("gc_heap", "{}"),
            ("finalizer_queue", "{}"), ("threads", "{}"), ("thread_pool", "{}"), ("monitors", "{}"),
            ("native_pointers", """{"ranges":[[1,4294967296]],"limit":10}"""));
        uint osId = answers["threads"].GetProperty("threads")[0].GetProperty("os_id").GetUInt32();
        ulong methodTable = answers["heap_stats"].GetProperty("types").EnumerateArray()
            .Where(t => t.GetProperty("name").GetString() != "Free")
            .MaxBy(t => t.GetProperty("count").GetInt64()).GetProperty("method_table").GetUInt64();
        ulong finalizable = answers["finalizer_queue"].GetProperty("ready")[0].GetProperty("method_table").GetUInt64();
        Ask(("open", ""), ("stack", $$"""{"os_id":{{osId}}}"""), ("instances", $$"""{"method_table":{{methodTable}},"limit":1}"""),
            ("finalizer_objects", $$"""{"method_table":{{finalizable}},"limit":2}"""));
        ulong address = answers["instances"].GetProperty("items")[0].GetProperty("address").GetUInt64();
        Ask(("open", ""), ("object", $$"""{"address":{{address}}}"""), ("root_paths", $$"""{"address":{{address}},"max_paths":1}"""),
            ("graph", "{}"), ("dominators", """{"limit":3}"""), ("retained_by_type", """{"limit":3}"""),
            ("why_alive", $$"""{"address":{{address}}}"""), ("holders", $$"""{"method_table":{{methodTable}},"limit":3}"""),
            ("close", "{}"), ("shutdown", "{}"));

        var unasked = ResultSchema.MethodResults.Keys.Except(answers.Keys).ToList();
        if (unasked.Count > 0)
            Assert.Fail($"Not asked here, so their answers are unchecked: {string.Join(", ", unasked)}; add a call above.");
        var problems = new List<string>();
        foreach (var (method, answer) in answers)
        {
            JsonElement record = Schema.GetProperty("methods").GetProperty(method);
            if (record.ValueKind == JsonValueKind.Null)
            {
                if (answer.ValueKind != JsonValueKind.Null)
                    problems.Add($"{method}: declared null, sent {answer.ValueKind}");
                continue;
            }
            CheckRecord(answer, record.GetString()!, method, problems);
        }
        Assert.Empty(problems);
    }

    private static void CheckRecord(JsonElement value, string record, string where, List<string> problems)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            problems.Add($"{where}: {record} expected, sent {value.ValueKind}");
            return;
        }
        var fields = Schema.GetProperty("records").GetProperty(record).EnumerateArray()
            .ToDictionary(f => f.GetProperty("name").GetString()!);
        var sent = value.EnumerateObject().Select(p => p.Name).ToHashSet();
        foreach (string extra in sent.Except(fields.Keys))
            problems.Add($"{where}: '{extra}' is not a field of {record}");
        foreach (var (name, field) in fields)
        {
            if (!value.TryGetProperty(name, out JsonElement v))
                problems.Add($"{where}: {record}.{name} is missing");
            else
                CheckValue(v, field, $"{where}.{name}", problems);
        }
    }

    private static void CheckValue(JsonElement v, JsonElement type, string where, List<string> problems)
    {
        if (v.ValueKind == JsonValueKind.Null)
        {
            if (!type.GetProperty("nullable").GetBoolean())
                problems.Add($"{where}: null, declared not nullable");
            return;
        }
        switch (type.GetProperty("type").GetString())
        {
            case "object":
                CheckRecord(v, type.GetProperty("record").GetString()!, where, problems);
                return;
            case "array" when v.ValueKind == JsonValueKind.Array:
                int i = 0;
                foreach (JsonElement item in v.EnumerateArray())
                    CheckValue(item, type.GetProperty("items"), $"{where}[{i++}]", problems);
                return;
            case "string" when v.ValueKind == JsonValueKind.String:
            case "boolean" when v.ValueKind is JsonValueKind.True or JsonValueKind.False:
            case "integer" when v.ValueKind == JsonValueKind.Number && Regex.IsMatch(v.GetRawText(), "^-?[0-9]+$"):
            case "number" when v.ValueKind == JsonValueKind.Number:
                return;
            default:
                problems.Add($"{where}: declared {type.GetProperty("type").GetString()}, sent {v.GetRawText()}");
                return;
        }
    }
}
