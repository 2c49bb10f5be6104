using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization.Metadata;

namespace DumpScope.Engine.Rpc;

/// <summary>Writes whole protocol lines to one stream; several threads may write.</summary>
public sealed class MessageWriter(Stream output)
{
    private readonly object _lock = new();

    public void Send(JsonObject message) => SendLine(Encoding.UTF8.GetBytes(message.ToJsonString()));

    /// <summary>An answer, its result serialised straight into the line:
    /// a large page (retained sizes by type, 10 M objects: 155 KB) is not
    /// built as a tree of nodes first.</summary>
    public void SendResult(JsonElement id, object? result, JsonSerializerOptions options)
    {
        var line = new ArrayBufferWriter<byte>(4096);
        using (var writer = new Utf8JsonWriter(line))
        {
            writer.WriteStartObject();
            writer.WriteString("jsonrpc", "2.0");
            writer.WritePropertyName("id");
            id.WriteTo(writer);
            writer.WritePropertyName("result");
            // By the result's own contract (RpcJsonContext): the engine has
            // no reflection-based serialiser to fall back on.
            if (result is null)
                writer.WriteNullValue();
            else
                JsonSerializer.Serialize(writer, result, options.GetTypeInfo(result.GetType()));
            writer.WriteEndObject();
        }
        SendLine(line.WrittenSpan);
    }

    public void SendError(JsonElement? id, int code, string message, IReadOnlyDictionary<string, object?>? data = null)
    {
        var error = new JsonObject { ["code"] = code, ["message"] = message };
        if (data is not null)
            error["data"] = JsonSerializer.SerializeToNode(data, RpcJson.TypeInfo<IReadOnlyDictionary<string, object?>>());
        Send(new JsonObject
        {
            ["jsonrpc"] = "2.0",
            ["id"] = id is { } i ? JsonValue.Create(i) : null,
            ["error"] = error,
        });
    }

    public void SendError(Refusal refusal) => SendError(refusal.Id, refusal.Code, refusal.Message);

    /// <summary>One message already serialised, without its `\n`.</summary>
    public void SendLine(ReadOnlySpan<byte> line)
    {
        lock (_lock)
        {
            output.Write(line);
            output.WriteByte((byte)'\n');
            output.Flush();
        }
    }
}

/// <summary>The serialiser options every answer is written with.</summary>
public static class RpcJson
{
    /// <summary>Only the contracts made at build time (RpcJsonContext): the
    /// Linux engine is compiled ahead of time, where reflection cannot make
    /// new ones, and the csproj turns the reflection serialiser off so that
    /// every build (and its tests) fails the same way on a type left out.</summary>
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = false,
        TypeInfoResolver = RpcJsonContext.Default,
    };

    public static JsonTypeInfo<T> TypeInfo<T>() => (JsonTypeInfo<T>)Options.GetTypeInfo(typeof(T));
}
