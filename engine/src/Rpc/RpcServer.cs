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

    private readonly Stream _input;
    private readonly Stream _output;
    private readonly EngineLimits _limits;
    private readonly GraphIndex? _index;
    private readonly object _writeLock = new();
    private readonly BlockingCollection<Request> _queue = new();
    private readonly ConcurrentDictionary<string, CancellationTokenSource> _running = new();
    private DumpSession? _session;
    private bool _shutdown;

    // Duplicate keys are refused: which of two "id"s or "address"es was
    // meant is a guess the engine does not make.
    private static readonly JsonDocumentOptions ParseOptions = new() { AllowDuplicateProperties = false, MaxDepth = 64 };

    /// <summary>A request as validated by the reader: `Id` null for a notification.</summary>
    private sealed record Request(JsonElement? Id, string Method, JsonElement? Params)
    {
        public string? Key => Id is { } id ? IdKey(id) : null;
    }

    /// <param name="index">where heap graphs are saved for reopening (null: nowhere).</param>
    public RpcServer(Stream input, Stream output, EngineLimits limits, GraphIndex? index = null)
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
        var lines = new LineReader(_input, _limits.MaxRequestBytes);
        while (lines.ReadLine() is { } line)
        {
            // Nothing a client sends may end the reader: a failure here
            // answers that line and the next one is read.
            try
            {
                Take(line);
            }
            catch (Exception e)
            {
                Console.Error.WriteLine($"engine: a request could not be read: {e}");
                SendError(null, ErrorCodes.Internal, $"The request could not be read: {e.GetType().Name}: {e.Message}");
            }
        }
    }

    private void Take(InputLine line)
    {
        if (line.TooLong)
        {
            SendError(null, ErrorCodes.InvalidRequest,
                $"Request of {line.Length} bytes refused: the limit is {_limits.MaxRequestBytes} bytes.");
            return;
        }
        if (line.Bytes!.All(b => b is (byte)' ' or (byte)'\t' or (byte)'\r'))
            return;
        JsonElement message;
        try
        {
            using var doc = JsonDocument.Parse(line.Bytes, ParseOptions);
            message = doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            SendError(null, ErrorCodes.ParseError, $"Not JSON (UTF-8, one message per line, no duplicate keys): {e.Message}");
            return;
        }
        if (message.ValueKind != JsonValueKind.Object)
        {
            SendError(null, ErrorCodes.InvalidRequest, "A request is a JSON object.");
            return;
        }
        JsonElement? id = message.TryGetProperty("id", out JsonElement i) && i.ValueKind != JsonValueKind.Null ? i : null;
        if (id is { ValueKind: not (JsonValueKind.Number or JsonValueKind.String) })
        {
            SendError(null, ErrorCodes.InvalidRequest, "A request \"id\" is a number or a string.");
            return;
        }
        if (!message.TryGetProperty("method", out JsonElement m) || m.ValueKind != JsonValueKind.String)
        {
            SendError(id, ErrorCodes.InvalidRequest, "A request needs a string \"method\".");
            return;
        }
        JsonElement? parameters = message.TryGetProperty("params", out JsonElement p) ? p : null;
        var request = new Request(id, m.GetString()!, parameters);
        if (request.Method == "$/cancelRequest")
        {
            Cancel(request);
            return;
        }
        // The CTS exists before the worker starts the call, so a cancel
        // sent right after the request is never lost.
        if (request.Key is { } key && !_running.TryAdd(key, new CancellationTokenSource()))
        {
            SendError(id, ErrorCodes.InvalidRequest, $"Request id {key} is already in use by a request that has not been answered.");
            return;
        }
        _queue.Add(request);
    }

    // A cancel is a notification: one that names no request is dropped (a
    // cancel sent as a request gets its error).
    private void Cancel(Request request)
    {
        JsonElement? target = request.Params is { ValueKind: JsonValueKind.Object } p && p.TryGetProperty("id", out JsonElement t)
            && t.ValueKind is JsonValueKind.Number or JsonValueKind.String ? t : null;
        if (target is null)
        {
            Console.Error.WriteLine("engine: $/cancelRequest without params {\"id\": number or string} ignored");
            if (request.Id is not null)
                SendError(request.Id, ErrorCodes.InvalidParams, "$/cancelRequest takes params {\"id\": the id of the request to cancel}.");
            return;
        }
        if (_running.TryGetValue(IdKey(target.Value), out var cts))
            cts.Cancel();
    }

    private static string IdKey(JsonElement id) => id.GetRawText();

    private void WorkLoop()
    {
        foreach (Request request in _queue.GetConsumingEnumerable())
        {
            JsonElement? id = request.Id;
            string method = request.Method;
            var cts = request.Key is { } key ? _running.GetValueOrDefault(key) ?? new CancellationTokenSource() : new CancellationTokenSource();
            try
            {
                var progress = id is { } progressId ? new ProgressSink(this, progressId) : null;
                object? result = Dispatch(method, Params.From(request.Params), progress, cts.Token);
                if (id is { } replyId)
                    Send(new JsonObject { ["jsonrpc"] = "2.0", ["id"] = JsonValue.Create(replyId), ["result"] = JsonSerializer.SerializeToNode(result, Json) });
            }
            catch (EngineException e)
            {
                SendError(id, e.Code, e.Message, e.Details);
            }
            catch (OperationCanceledException)
            {
                SendError(id, ErrorCodes.Cancelled, $"{method} was cancelled.");
            }
            catch (OutOfMemoryException e)
            {
                // ClrMD raises it for dumps whose headers ask for more than
                // can be mapped; the engine itself goes on.
                Console.Error.WriteLine($"engine: {method} ran out of memory: {e}");
                SendError(id, ErrorCodes.Internal, $"{method} ran out of memory: {e.Message}");
            }
            catch (Exception e)
            {
                Console.Error.WriteLine($"engine: {method} failed: {e}");
                SendError(id, ErrorCodes.Internal, $"{method} failed inside the engine: {e.GetType().Name}: {e.Message}");
            }
            finally
            {
                if (request.Key is { } done && _running.TryRemove(done, out var finished))
                    finished.Dispose();
            }
            if (_shutdown)
                return;
        }
    }

    private DumpSession Session => _session
        ?? throw new EngineException(ErrorCodes.NoDumpOpen, "No dump is open: call open first.");

    // Every method reads its parameters through `p` (Params) into locals
    // before it touches the session, so a refused parameter answers -32602
    // (whether or not a dump is open) and changes nothing.
    private object? Dispatch(string method, Params p, IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        switch (method)
        {
            case "version":
                return new VersionInfo(ProtocolVersion, EngineVersion, ClrMdVersion);
            case "open":
            {
                string dump = p.RequiredString("dump");
                string? dac = p.OptionalString("dac");
                string? dacFolder = p.OptionalString("dac_folder");
                bool useIndex = p.Bool("index", true);
                // The open dump stays open until the new one is: a failed
                // open leaves the client where it was.
                var dacOptions = new DacOptions(dac, dacFolder, p.OptionalString("trust_dac"),
                    p.OptionalString("symbol_server"), p.OptionalString("symbol_cache"));
                DumpSession opened = DumpSession.Open(dump, dacOptions, _limits);
                _session?.Dispose();
                _session = opened;
                _session.Index = useIndex ? _index : null;
                return opened.Info;
            }
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
            {
                uint osId = p.UInt32("os_id");
                return Session.Stack(osId);
            }
            case "monitors":
                return Session.MonitorList(cancel);
            case "instances":
            {
                ulong methodTable = p.Address("method_table");
                int offset = p.Int("offset", 0, int.MaxValue, 0);
                int limit = p.Int("limit", 0, _limits.MaxPageSize, 100);
                string sort = p.Choice("sort", "size", "size", "address");
                return Session.InstancesOf(methodTable, offset, limit, sort, progress, cancel);
            }
            case "object":
            {
                ulong address = p.Address("address");
                return Session.ObjectAt(address);
            }
            case "finalizer_objects":
            {
                ulong methodTable = p.Address("method_table");
                string queue = p.Choice("queue", "ready", "ready", "finalizable");
                int offset = p.Int("offset", 0, int.MaxValue, 0);
                int limit = p.Int("limit", 0, _limits.MaxPageSize, 100);
                return Session.FinalizerObjectsOf(methodTable, queue, offset, limit, cancel);
            }
            case "native_pointers":
            {
                var ranges = NativePointerScan.ParseRanges(p.Node("ranges"), _limits);
                bool indirect = NativePointerScan.ParseIndirect(p.Node("indirect"));
                int limit = p.Int("limit", 1, _limits.MaxNativePointers, 100_000);
                return Session.NativePointersInto(ranges, indirect, limit, progress, cancel);
            }
            case "root_paths":
            {
                ulong address = p.Address("address");
                int maxPaths = p.Int("max_paths", 1, _limits.MaxRootPaths, 10);
                return Session.RootPathsTo(address, maxPaths, progress, cancel);
            }
            case "graph":
                return Session.GraphSummary(progress, cancel);
            case "dominators":
            {
                ulong? address = p.OptionalAddress("address");
                int offset = p.Int("offset", 0, int.MaxValue, 0);
                int limit = p.Int("limit", 0, int.MaxValue, 100);
                string? type = p.OptionalString("type");
                return Session.Dominators(address, offset, limit, type, progress, cancel);
            }
            case "retained_by_type":
            {
                int offset = p.Int("offset", 0, int.MaxValue, 0);
                int limit = p.Int("limit", 0, int.MaxValue, 100);
                return Session.RetainedByType(offset, limit, progress, cancel);
            }
            case "why_alive":
            {
                ulong address = p.Address("address");
                return Session.WhyAlive(address, progress, cancel);
            }
            case "holders":
            {
                ulong methodTable = p.Address("method_table");
                int limit = p.Int("limit", 0, int.MaxValue, 20);
                return Session.Holders(methodTable, limit, progress, cancel);
            }
            default:
                throw new EngineException(ErrorCodes.MethodNotFound, $"Unknown method '{method}' (protocol version {ProtocolVersion}).");
        }
    }

    public static string EngineVersion => typeof(RpcServer).Assembly.GetName().Version?.ToString() ?? "0";

    public static string ClrMdVersion =>
        typeof(Microsoft.Diagnostics.Runtime.DataTarget).Assembly.GetName().Version?.ToString() ?? "unknown";

    private void SendError(JsonElement? id, int code, string message, IReadOnlyDictionary<string, object?>? data = null)
    {
        var error = new JsonObject { ["code"] = code, ["message"] = message };
        if (data is not null)
            error["data"] = JsonSerializer.SerializeToNode(data, Json);
        Send(new JsonObject
        {
            ["jsonrpc"] = "2.0",
            ["id"] = id is { } i ? JsonValue.Create(i) : null,
            ["error"] = error,
        });
    }

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
    private sealed class ProgressSink(RpcServer server, JsonElement id) : IProgress<ProgressReport>
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
                    ["id"] = JsonValue.Create(id),
                    ["done"] = value.Done,
                    ["total"] = value.Total,
                    ["message"] = value.Message,
                },
            });
        }
    }
}
