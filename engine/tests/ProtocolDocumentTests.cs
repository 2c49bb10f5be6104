using System.Text.Json;
using System.Text.RegularExpressions;
using DumpScope.Engine.Analysis;
using DumpScope.Engine.Rpc;

namespace DumpScope.Engine.Tests;

public class ProtocolDocumentTests
{
    private static readonly string Protocol = File.ReadAllText(Path.Combine(ScenarioDumps.RepoRoot, "engine", "PROTOCOL.md"));

    public static TheoryData<string> ResultRecords()
    {
        var data = new TheoryData<string>();
        foreach (Type type in typeof(RuntimeInfo).Assembly.GetTypes()
            .Where(t => t.IsPublic && t.IsValueType && t.Namespace == typeof(RuntimeInfo).Namespace && !t.IsEnum))
        {
            if (type != typeof(ProgressReport))
                data.Add(type.Name);
        }
        return data;
    }

    [Fact]
    public void The_document_describes_the_served_protocol_version()
    {
        Assert.Contains($"# DumpScope engine protocol, version {RpcServer.ProtocolVersion}", Protocol);
    }

    // Every key the engine can send is written down in PROTOCOL.md.
    [Theory]
    [MemberData(nameof(ResultRecords))]
    public void Every_key_of_a_result_record_is_documented(string recordName)
    {
        Type type = typeof(RuntimeInfo).Assembly.GetTypes().Single(t => t.Name == recordName && t.Namespace == typeof(RuntimeInfo).Namespace);
        var missing = type.GetProperties()
            .Select(p => JsonNamingPolicy.SnakeCaseLower.ConvertName(p.Name))
            .Where(key => !Regex.IsMatch(Protocol, $@"\b{key}\b"))
            .ToList();
        Assert.Empty(missing);
    }
}
