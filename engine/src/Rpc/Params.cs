using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using DumpScope.Engine.Analysis;

namespace DumpScope.Engine.Rpc;

/// <summary>
/// The `params` object of one request, read through typed readers that
/// refuse every value outside the type and range the method declares
/// (-32602 naming the parameter), so a method never sees a truncated,
/// negative or otherwise coerced value. A method reads all its parameters
/// before it does anything, so a refused call changes nothing.
/// </summary>
public sealed class Params
{
    private readonly JsonElement? _object;

    private Params(JsonElement? obj) => _object = obj;

    public static Params None { get; } = new(null);

    /// <summary>Params of a request: absent or null means none; anything but an object is refused.</summary>
    public static Params From(JsonElement? value) => value switch
    {
        null => None,
        { ValueKind: JsonValueKind.Null } => None,
        { ValueKind: JsonValueKind.Object } v => new Params(v),
        _ => throw Invalid("params must be a JSON object of named parameters."),
    };

    private static EngineException Invalid(string message) => new(ErrorCodes.InvalidParams, message);

    private JsonElement? Get(string name) =>
        _object is { } o && o.TryGetProperty(name, out JsonElement v) && v.ValueKind != JsonValueKind.Null ? v : null;

    public string RequiredString(string name) =>
        OptionalString(name) ?? throw Invalid($"Parameter '{name}' (string) is required.");

    /// <summary>A non-empty string; null when absent.</summary>
    public string? OptionalString(string name)
    {
        if (Get(name) is not { } v)
            return null;
        if (v.ValueKind != JsonValueKind.String)
            throw Invalid($"Parameter '{name}' must be a string, not {Kind(v)}.");
        string s = Text(v) ?? throw Invalid($"Parameter '{name}' is not valid Unicode text (it holds an unpaired surrogate escape).");
        if (s.Length == 0)
            throw Invalid($"Parameter '{name}' must not be empty.");
        if (s.Contains('\0'))
            throw Invalid($"Parameter '{name}' must not contain a NUL character.");
        return s;
    }

    /// <summary>One of `choices`; `fallback` when absent.</summary>
    public string Choice(string name, string fallback, params string[] choices)
    {
        string value = OptionalString(name) ?? fallback;
        if (Array.IndexOf(choices, value) < 0)
            throw Invalid($"Parameter '{name}' must be one of {string.Join(", ", choices.Select(c => $"\"{c}\""))}.");
        return value;
    }

    /// <summary>
    /// A 64-bit address: a JSON integer, or a string "0x..." (hex) or decimal
    /// digits, since some JSON writers lose precision above 2^53.
    /// </summary>
    public ulong Address(string name) =>
        OptionalUnsigned(name, ulong.MaxValue) ?? throw Invalid($"Parameter '{name}' (address) is required.");

    /// <summary>An address, or null when absent.</summary>
    public ulong? OptionalAddress(string name) => OptionalUnsigned(name, ulong.MaxValue);

    /// <summary>true or false; `fallback` when absent.</summary>
    public bool Bool(string name, bool fallback) => Get(name) switch
    {
        null => fallback,
        { ValueKind: JsonValueKind.True } => true,
        { ValueKind: JsonValueKind.False } => false,
        _ => throw Invalid($"Parameter '{name}' must be true or false."),
    };

    /// <summary>An OS thread id (32 bits): a larger number is refused, never truncated.</summary>
    public uint UInt32(string name) =>
        (uint)(OptionalUnsigned(name, uint.MaxValue) ?? throw Invalid($"Parameter '{name}' (integer) is required."));

    /// <summary>An integer in [min, max]; `fallback` when absent.</summary>
    public int Int(string name, int min, int max, int fallback)
    {
        if (Get(name) is not { } v)
            return fallback;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long n) || n < min || n > max)
            throw Invalid($"Parameter '{name}' must be an integer from {min} to {max}.");
        return (int)n;
    }

    private ulong? OptionalUnsigned(string name, ulong max)
    {
        if (Get(name) is not { } v)
            return null;
        ulong? parsed = v.ValueKind switch
        {
            JsonValueKind.Number => v.TryGetUInt64(out ulong n) ? n : null,
            JsonValueKind.String => Text(v) is { } text ? ParseUnsigned(text) : null,
            _ => null,
        };
        if (parsed is not { } value || value > max)
            throw Invalid(max == ulong.MaxValue
                ? $"Parameter '{name}' must be an address: a non-negative integer below 2^64, or a string \"0x...\" of hex digits."
                : $"Parameter '{name}' must be an integer from 0 to {max}.");
        return value;
    }

    // An escaped lone surrogate ("\udcff") is valid JSON but no text.
    private static string? Text(JsonElement v)
    {
        try
        {
            return v.GetString();
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>
    /// A parameter with a structure of its own (e.g. `native_pointers`
    /// ranges), for the method's own reader, which must refuse every bad
    /// shape with -32602; null when absent.
    /// </summary>
    public JsonNode? Node(string name) => Get(name) is { } v ? JsonNode.Parse(v.GetRawText()) : null;

    private static ulong? ParseUnsigned(string s)
    {
        // NumberStyles.None / AllowHexSpecifier: digits only, no sign, no
        // white space, and an empty string ("0x") is no number.
        bool hex = s.StartsWith("0x", StringComparison.OrdinalIgnoreCase);
        string digits = hex ? s[2..] : s;
        return ulong.TryParse(digits, hex ? NumberStyles.AllowHexSpecifier : NumberStyles.None, CultureInfo.InvariantCulture, out ulong n)
            ? n : null;
    }

    private static string Kind(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        _ => v.ValueKind.ToString().ToLowerInvariant(),
    };
}
