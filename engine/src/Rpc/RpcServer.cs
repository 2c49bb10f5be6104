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
/// ClrMD runtime is not safe to share between calls. The one exception is
/// the heap graph's build that `heap_stats` with `graph` leaves going on in
/// the background, on a thread-safe runtime only (DumpSession.CanBuildBeside).
/// </summary>
public sealed class RpcServer
{
    public const int ProtocolVersion = 1;

    public static readonly JsonSerializerOptions Json = RpcJson.Options;

    private readonly Stream _input;
    private readonly MessageWriter _output;
    private readonly EngineLimits _limits;
    private readonly GraphIndex? _index;
    private readonly BlockingCollection<IncomingRequest> _queue = new();
    private readonly ConcurrentDictionary<string, CancellationTokenSource> _running = new();
    private DumpSession? _session;
    private bool _shutdown;

    /// <summary>Test hook (the engine's worker process only): the method whose
    /// call crashes the process natively, as a DAC reading a damaged dump can.</summary>
    public string? CrashOnMethod { get; init; }

    /// <param name="index">where heap graphs are saved for reopening (null: nowhere).</param>
    public RpcServer(Stream input, Stream output, EngineLimits limits, GraphIndex? index = null)
    {
        _input = input;
        _output = new MessageWriter(output);
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
            IncomingRequest.ReadAll(_input, _limits.MaxRequestBytes, _output, (request, _) => Take(request));
            _queue.CompleteAdding();
        })
        { Name = "rpc-reader", IsBackground = true };
        reader.Start();
        WorkLoop();
        if (_session is { } last)
        {
            last.SaveGrace = DumpSession.ExitSaveGrace;
            last.Dispose();
        }
        _session = null;
    }

    private void Take(IncomingRequest request)
    {
        if (request.Method == IncomingRequest.CancelMethod)
        {
            Cancel(request);
            return;
        }
        // The CTS exists before the worker starts the call, so a cancel
        // sent right after the request is never lost.
        if (request.Key is { } key && !_running.TryAdd(key, new CancellationTokenSource()))
        {
            _output.SendError(request.AlreadyInUse());
            return;
        }
        _queue.Add(request);
    }

    // A cancel is a notification: one that names no request is dropped (a
    // cancel sent as a request gets its error).
    private void Cancel(IncomingRequest request)
    {
        if (request.CancelTarget is not { } target)
        {
            Console.Error.WriteLine("engine: $/cancelRequest without params {\"id\": number or string} ignored");
            if (request.BadCancel() is { } refusal)
                _output.SendError(refusal);
            return;
        }
        if (_running.TryGetValue(IncomingRequest.IdKey(target), out var cts))
            cts.Cancel();
    }

    private void WorkLoop()
    {
        foreach (IncomingRequest request in _queue.GetConsumingEnumerable())
        {
            JsonElement? id = request.Id;
            string method = request.Method;
            var cts = request.Key is { } key ? _running.GetValueOrDefault(key) ?? new CancellationTokenSource() : new CancellationTokenSource();
            try
            {
                var progress = id is { } progressId ? new ProgressSink(_output, progressId) : null;
                if (method == CrashOnMethod)
                    NativeCrash.Now();
                object? result = Dispatch(method, Params.From(request.Params), progress, cts.Token);
                if (id is { } replyId)
                    _output.SendResult(replyId, result, Json);
            }
            catch (EngineException e)
            {
                _output.SendError(id, e.Code, e.Message, e.Details);
            }
            catch (OperationCanceledException)
            {
                _output.SendError(id, ErrorCodes.Cancelled, $"{method} was cancelled.");
            }
            catch (OutOfMemoryException e)
            {
                // ClrMD raises it for dumps whose headers ask for more than
                // can be mapped; the engine itself goes on.
                Console.Error.WriteLine($"engine: {method} ran out of memory: {e}");
                _output.SendError(id, ErrorCodes.Internal, $"{method} ran out of memory: {e.Message}");
            }
            catch (Exception e)
            {
                Console.Error.WriteLine($"engine: {method} failed: {e}");
                _output.SendError(id, ErrorCodes.Internal, $"{method} failed inside the engine: {e.GetType().Name}: {e.Message}");
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
                return EngineVersions.Info;
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
                var hints = ModuleHints.Parse(p.Node("modules"), _limits);
                DumpSession opened = DumpSession.Open(dump, dacOptions, _limits, hints);
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
            {
                bool graph = p.Bool("graph", false);
                return Session.HeapStatistics(progress, cancel, graph);
            }
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

    /// <summary>Sends `$/progress` notifications, at most ten a second.</summary>
    private sealed class ProgressSink(MessageWriter output, JsonElement id) : IProgress<ProgressReport>
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
            output.Send(new JsonObject
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
