namespace DumpScope.Engine.Analysis;

/// <summary>Error codes of the protocol (PROTOCOL.md, "Errors").</summary>
public static class ErrorCodes
{
    public const int ParseError = -32700;
    public const int InvalidRequest = -32600;
    public const int MethodNotFound = -32601;
    public const int InvalidParams = -32602;
    public const int Internal = -32603;
    public const int Cancelled = -32800;
    public const int NoDumpOpen = 1001;
    public const int DumpUnreadable = 1002;
    public const int NoRuntime = 1003;
    public const int DacNotFound = 1004;
    public const int WindowsDumpOnThisHost = 1005;
    public const int NoHeapMemory = 1006;
    public const int DacLoadFailed = 1007;
    public const int NotFound = 1008;
    public const int DacNotTrusted = 1009;
    // Sent by the engine's front process: its worker died reading the dump.
    public const int DumpCrashedReader = 1012;
    // Sent by the front: the dump's file changed on disk while it was open.
    public const int DumpChanged = 1013;
}

/// <summary>An error the user can act on; the message says what to do.
/// Details, when given, are sent as the error's <c>data</c> for a program
/// (the refused DAC's path, the places a DAC was looked for).</summary>
public sealed class EngineException(int code, string message, IReadOnlyDictionary<string, object?>? details = null) : Exception(message)
{
    public int Code { get; } = code;
    public IReadOnlyDictionary<string, object?>? Details { get; } = details;
}
