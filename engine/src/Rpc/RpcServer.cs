using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using DumpScope.Engine.Analysis;

namespace DumpScope.Engine.Rpc;

/// <summary>
/// JSON-RPC 2.0 over newline-delimited JSON (one message per line, UTF-8).
/// A reader thread takes messages as they come, so `$/cancelRequest` reaches
/// a running call; requests run one at a time on a worker thread because a
/// ClrMD runtime is not safe to share between calls.
/// </summary>
public sealed class RpcServer
{
    public const int ProtocolVersion = 1;

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = false,
    };

    private readonly TextReader _input;
    private readonly Stream _output;
    private readonly EngineLimits _limits;
    private readonly GraphIndex? _index;
    private readonly object _writeLock = new();
    private readonly BlockingCollection<JsonObject> _queue = new();
    private readonly ConcurrentDictionary<string, CancellationTokenSource> _running = new();
    private DumpSession? _session;
    private bool _shutdown;

    /// <param name="index">where heap graphs are saved for reopening (null: nowhere).</param>
    public RpcServer(TextReader input, Stream output, EngineLimits limits, GraphIndex? index = null)
    {
        _input = input;
        _output = output;
        _limits = limits;
        _index = index;
    }

    /// <summary>Serves until end of input or `shutdown`, whichever comes first.</summary>
    public void Run()
    {
        // The reader is a background thread: after `shutdown` the process
        // exits even though the client has not closed stdin.
        var reader = new Thread(() =>
        {
            ReadLoop();
            _queue.CompleteAdding();
        })
        { Name = "rpc-reader", IsBackground = true };
        reader.Start();
        WorkLoop();
        _session?.Dispose();
        _session = null;
    }

    private void ReadLoop()
    {
        string? line;
        while ((line = _input.ReadLine()) is not null)
        {
            if (string.IsNullOrWhiteSpace(line))
                continue;
            if (line.Length > _limits.MaxRequestBytes)
            {
                SendError(null, ErrorCodes.InvalidRequest, $"Request longer than {_limits.MaxRequestBytes} bytes.");
                continue;
            }
            JsonObject? message;
            try
            {
                message = JsonNode.Parse(line) as JsonObject;
            }
            catch (JsonException e)
            {
                SendError(null, ErrorCodes.ParseError, $"Not JSON: {e.Message}");
                continue;
            }
            if (message is null || message["method"]?.GetValueKind() != JsonValueKind.String)
            {
                SendError(message?["id"]?.DeepClone(), ErrorCodes.InvalidRequest, "A request needs a string \"method\".");
                continue;
            }
            if ((string?)message["method"] == "$/cancelRequest")
            {
                if (message["params"]?["id"] is { } id && _running.TryGetValue(IdKey(id), out var cts))
                    cts.Cancel();
                continue;
            }
            // The CTS exists before the worker starts the call, so a cancel
            // sent right after the request is never lost.
            if (message["id"] is { } reqId)
                _running[IdKey(reqId)] = new CancellationTokenSource();
            _queue.Add(message);
        }
    }

    private static string IdKey(JsonNode id) => id.ToJsonString();

    private void WorkLoop()
    {
        foreach (JsonObject message in _queue.GetConsumingEnumerable())
        {
            JsonNode? id = message["id"]?.DeepClone();
            string method = (string)message["method"]!;
            var cts = id is null ? new CancellationTokenSource() : _running.GetValueOrDefault(IdKey(id)) ?? new CancellationTokenSource();
            try
            {
                var progress = id is null ? null : new ProgressSink(this, id);
                object? result = Dispatch(method, message["params"] as JsonObject, progress, cts.Token);
                if (id is not null)
                    Send(new JsonObject { ["jsonrpc"] = "2.0", ["id"] = id, ["result"] = JsonSerializer.SerializeToNode(result, Json) });
            }
            catch (EngineException e)
            {
                SendError(id, e.Code, e.Message);
            }
            catch (OperationCanceledException)
            {
                SendError(id, ErrorCodes.Cancelled, $"{method} was cancelled.");
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                Console.Error.WriteLine($"engine: {method} failed: {e}");
                SendError(id, ErrorCodes.Internal, $"{method} failed inside the engine: {e.GetType().Name}: {e.Message}");
            }
            finally
            {
                if (id is not null && _running.TryRemove(IdKey(id), out var done))
                    done.Dispose();
            }
            if (_shutdown)
                return;
        }
    }

    private DumpSession Session => _session
        ?? throw new EngineException(ErrorCodes.NoDumpOpen, "No dump is open: call open first.");

    private object? Dispatch(string method, JsonObject? p, IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        switch (method)
        {
            case "version":
                return new VersionInfo(ProtocolVersion, EngineVersion, ClrMdVersion);
            case "open":
                _session?.Dispose();
                _session = null;
                _session = DumpSession.Open(RequiredString(p, "dump"), OptionalString(p, "dac"), OptionalString(p, "dac_folder"), _limits);
                _session.Index = OptionalBool(p, "index") == false ? null : _index;
                return _session.Info;
            case "runtime_info":
                return Session.Info;
            case "close":
                _session?.Dispose();
                _session = null;
                return null;
            case "shutdown":
                _shutdown = true;
                return null;
            case "heap_stats":
                return Session.HeapStatistics(progress, cancel);
            case "gc_heap":
                return Session.GcHeapLayout();
            case "finalizer_queue":
                return Session.FinalizerQueueInfo(cancel);
            case "threads":
                return new ThreadList(Session.Threads(cancel));
            case "thread_pool":
                return Session.ThreadPool();
            case "stack":
                return Session.Stack((uint)RequiredULong(p, "os_id"));
            case "monitors":
                return Session.MonitorList(cancel);
            case "instances":
                return Session.InstancesOf(RequiredULong(p, "method_table"),
                    (int)(OptionalULong(p, "offset") ?? 0), (int)(OptionalULong(p, "limit") ?? 100),
                    OptionalString(p, "sort") ?? "size", progress, cancel);
            case "object":
                return Session.ObjectAt(RequiredULong(p, "address"));
            case "finalizer_objects":
                return Session.FinalizerObjectsOf(RequiredULong(p, "method_table"), OptionalString(p, "queue") ?? "ready",
                    (int)Math.Min(OptionalULong(p, "offset") ?? 0, int.MaxValue), (int)Math.Min(OptionalULong(p, "limit") ?? 100, int.MaxValue), cancel);
            case "native_pointers":
                return Session.NativePointersInto(NativePointerScan.ParseRanges(p?["ranges"], _limits), NativePointerScan.ParseIndirect(p?["indirect"]),
                    (int)Math.Min(OptionalULong(p, "limit") ?? 100_000, int.MaxValue), progress, cancel);
            case "root_paths":
                return Session.RootPathsTo(RequiredULong(p, "address"), (int)(OptionalULong(p, "max_paths") ?? 10), progress, cancel);
            case "graph":
                return Session.GraphSummary(progress, cancel);
            case "dominators":
                return Session.Dominators(OptionalULong(p, "address"), OptionalInt(p, "offset") ?? 0, OptionalInt(p, "limit") ?? 100,
                    OptionalString(p, "type"), progress, cancel);
            case "retained_by_type":
                return Session.RetainedByType(OptionalInt(p, "offset") ?? 0, OptionalInt(p, "limit") ?? 100, progress, cancel);
            case "why_alive":
                return Session.WhyAlive(RequiredULong(p, "address"), progress, cancel);
            case "holders":
                return Session.Holders(RequiredULong(p, "method_table"), OptionalInt(p, "limit") ?? 20, progress, cancel);
            default:
                throw new EngineException(ErrorCodes.MethodNotFound, $"Unknown method '{method}' (protocol version {ProtocolVersion}).");
        }
    }

    public static string EngineVersion => typeof(RpcServer).Assembly.GetName().Version?.ToString() ?? "0";

    public static string ClrMdVersion =>
        typeof(Microsoft.Diagnostics.Runtime.DataTarget).Assembly.GetName().Version?.ToString() ?? "unknown";

    private static string RequiredString(JsonObject? p, string name) =>
        OptionalString(p, name) ?? throw new EngineException(ErrorCodes.InvalidParams, $"Parameter '{name}' (string) is required.");

    private static string? OptionalString(JsonObject? p, string name)
    {
        JsonNode? node = p?[name];
        if (node is null)
            return null;
        if (node.GetValueKind() != JsonValueKind.String)
            throw new EngineException(ErrorCodes.InvalidParams, $"Parameter '{name}' must be a string.");
        return (string?)node;
    }

    private static ulong RequiredULong(JsonObject? p, string name) =>
        OptionalULong(p, name) ?? throw new EngineException(ErrorCodes.InvalidParams, $"Parameter '{name}' (integer) is required.");

    // Addresses are JSON integers; "0x..." strings are accepted too because
    // some JSON writers lose precision above 2^53.
    private static ulong? OptionalULong(JsonObject? p, string name)
    {
        JsonNode? node = p?[name];
        if (node is null)
            return null;
        try
        {
            if (node.GetValueKind() == JsonValueKind.Number)
                return node.GetValue<ulong>();
            if (node.GetValueKind() == JsonValueKind.String)
            {
                string s = (string)node!;
                return s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
                    ? Convert.ToUInt64(s[2..], 16)
                    : ulong.Parse(s, System.Globalization.CultureInfo.InvariantCulture);
            }
        }
        catch (Exception e) when (e is FormatException or OverflowException or InvalidOperationException)
        {
        }
        throw new EngineException(ErrorCodes.InvalidParams, $"Parameter '{name}' must be a non-negative integer.");
    }

    private static int? OptionalInt(JsonObject? p, string name) =>
        OptionalULong(p, name) is { } value
            ? value <= int.MaxValue ? (int)value : throw new EngineException(ErrorCodes.InvalidParams, $"Parameter '{name}' is too large.")
            : null;

    private static bool? OptionalBool(JsonObject? p, string name) => p?[name] switch
    {
        null => null,
        JsonNode node when node.GetValueKind() is JsonValueKind.True or JsonValueKind.False => node.GetValue<bool>(),
        _ => throw new EngineException(ErrorCodes.InvalidParams, $"Parameter '{name}' must be true or false."),
    };

    private void SendError(JsonNode? id, int code, string message) =>
        Send(new JsonObject
        {
            ["jsonrpc"] = "2.0",
            ["id"] = id,
            ["error"] = new JsonObject { ["code"] = code, ["message"] = message },
        });

    private void Send(JsonObject message)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(message.ToJsonString() + "\n");
        lock (_writeLock)
        {
            _output.Write(bytes);
            _output.Flush();
        }
    }

    /// <summary>Sends `$/progress` notifications, at most ten a second.</summary>
    private sealed class ProgressSink(RpcServer server, JsonNode id) : IProgress<ProgressReport>
    {
        private readonly Stopwatch _since = Stopwatch.StartNew();
        private long _lastMs = -1000;

        public void Report(ProgressReport value)
        {
            long now = _since.ElapsedMilliseconds;
            bool final = value.Total > 0 && value.Done >= value.Total;
            if (!final && now - Interlocked.Read(ref _lastMs) < 100)
                return;
            Interlocked.Exchange(ref _lastMs, now);
            server.Send(new JsonObject
            {
                ["jsonrpc"] = "2.0",
                ["method"] = "$/progress",
                ["params"] = new JsonObject
                {
                    ["id"] = id.DeepClone(),
                    ["done"] = value.Done,
                    ["total"] = value.Total,
                    ["message"] = value.Message,
                },
            });
        }
    }
}
