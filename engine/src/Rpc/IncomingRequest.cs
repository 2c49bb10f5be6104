using System.Text.Json;
using DumpScope.Engine.Analysis;

namespace DumpScope.Engine.Rpc;

/// <summary>A request as the protocol accepts it: `Id` null for a notification.</summary>
public sealed record IncomingRequest(JsonElement? Id, string Method, JsonElement? Params)
{
    /// <summary>The longest line a client may send (PROTOCOL.md, "Transport").</summary>
    public const int DefaultMaxBytes = 1 << 20;

    public const string CancelMethod = "$/cancelRequest";

    // Duplicate keys are refused: which of two "id"s or "address"es was
    // meant is a guess the engine does not make.
    private static readonly JsonDocumentOptions ParseOptions = new() { AllowDuplicateProperties = false, MaxDepth = 64 };

    /// <summary>How the id is matched between a request, its cancel and its answer.</summary>
    public string? Key => Id is { } id ? IdKey(id) : null;

    public static string IdKey(JsonElement id) => id.GetRawText();

    /// <summary>The id a `$/cancelRequest` names, or null when its params are not `{"id": number or string}`.</summary>
    public JsonElement? CancelTarget =>
        Params is { ValueKind: JsonValueKind.Object } p && p.TryGetProperty("id", out JsonElement t)
        && t.ValueKind is JsonValueKind.Number or JsonValueKind.String ? t : null;

    /// <summary>
    /// Reads one line: the request, or the error that answers it (`Refusal`),
    /// or neither for a blank line.
    /// </summary>
    public static (IncomingRequest? Request, Refusal? Refusal) Read(InputLine line, int maxBytes)
    {
        if (line.TooLong)
            return (null, new Refusal(null, ErrorCodes.InvalidRequest,
                $"Request of {line.Length} bytes refused: the limit is {maxBytes} bytes."));
        if (line.Bytes!.All(b => b is (byte)' ' or (byte)'\t' or (byte)'\r'))
            return (null, null);
        JsonElement message;
        try
        {
            using var doc = JsonDocument.Parse(line.Bytes, ParseOptions);
            message = doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            return (null, new Refusal(null, ErrorCodes.ParseError,
                $"Not JSON (UTF-8, one message per line, no duplicate keys): {e.Message}"));
        }
        if (message.ValueKind != JsonValueKind.Object)
            return (null, new Refusal(null, ErrorCodes.InvalidRequest, "A request is a JSON object."));
        JsonElement? id = message.TryGetProperty("id", out JsonElement i) && i.ValueKind != JsonValueKind.Null ? i : null;
        if (id is { ValueKind: not (JsonValueKind.Number or JsonValueKind.String) })
            return (null, new Refusal(null, ErrorCodes.InvalidRequest, "A request \"id\" is a number or a string."));
        if (!message.TryGetProperty("method", out JsonElement m) || m.ValueKind != JsonValueKind.String)
            return (null, new Refusal(id, ErrorCodes.InvalidRequest, "A request needs a string \"method\"."));
        JsonElement? parameters = message.TryGetProperty("params", out JsonElement p) ? p : null;
        return (new IncomingRequest(id, m.GetString()!, parameters), null);
    }

    /// <summary>
    /// Reads lines from `input` until it ends: a line that is not a request
    /// is answered with its refusal, a request goes to `take` with its line.
    /// Nothing a client sends may end the loop: a failure answers that line
    /// and the next one is read.
    /// </summary>
    public static void ReadAll(Stream input, int maxBytes, MessageWriter output, Action<IncomingRequest, byte[]> take)
    {
        var lines = new LineReader(input, maxBytes);
        while (lines.ReadLine() is { } line)
        {
            try
            {
                var (request, refusal) = Read(line, maxBytes);
                if (refusal is { } refused)
                    output.SendError(refused);
                if (request is not null)
                    take(request, line.Bytes!);
            }
            catch (Exception e)
            {
                Console.Error.WriteLine($"engine: a request could not be read: {e}");
                output.SendError(null, ErrorCodes.Internal, $"The request could not be read: {e.GetType().Name}: {e.Message}");
            }
        }
    }

    public Refusal AlreadyInUse() =>
        new(Id, ErrorCodes.InvalidRequest, $"Request id {Key} is already in use by a request that has not been answered.");

    public Refusal? BadCancel() => Id is null
        ? null
        : new Refusal(Id, ErrorCodes.InvalidParams, "$/cancelRequest takes params {\"id\": the id of the request to cancel}.");
}

/// <summary>The error that answers a line instead of a result.</summary>
public readonly record struct Refusal(JsonElement? Id, int Code, string Message);
