using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using DumpScope.Engine.Analysis;
using DumpScope.Engine.Rpc;

namespace DumpScope.Engine.Front;

/// <summary>
/// The process a client talks to. Everything that reads the dump (ClrMD and
/// the runtime's DAC, native code that a damaged dump can crash, which .NET
/// cannot catch) runs in a worker process; the front relays lines both ways
/// and survives the worker. When the worker dies, the request it was running
/// is answered with 1012 naming the crash, a new worker re-opens the last
/// opened dump, and the requests queued behind are sent to it. A method that
/// crashed two workers on one dump is answered at once from then on.
/// A dump whose file changed on disk while it was open (a new dump written
/// over it, which is also what makes a worker reading it in place die of
/// SIGBUS) is not opened again: requests are answered 1013 saying so until
/// the client opens a dump. The front never loads ClrMD.
/// </summary>
public sealed class EngineFront
{
    private const string ReplayPrefix = "dumpscope-front:reopen:";

    private readonly Stream _input;
    private readonly MessageWriter _output;
    private readonly int _maxRequestBytes;
    private readonly Func<WorkerProcess> _startWorker;
    private readonly object _gate = new();
    // Requests sent to the worker and not answered yet, oldest first: the
    // worker runs them in this order, so the oldest is the one it was in.
    private readonly List<Forwarded> _inFlight = [];
    // Requests that came while a new worker re-opens the dump: sent once
    // it is open, or answered with why it is not.
    private readonly List<Forwarded> _held = [];
    private readonly Dictionary<(string Dump, string Method), (int Count, string How)> _crashes = [];
    private readonly ManualResetEventSlim _done = new();
    private WorkerProcess? _worker;
    private Opened? _open;
    // Why the dump open before is no longer open (a crash it could not be
    // opened again after, or its file changed), and the code that says so.
    private Refusal? _lost;
    private bool _inputEnded;
    private bool _shutdown;
    private int _replays;

    // Key and Id null: a notification. Dump: the dump an `open` opens
    // (null for other methods), and Identity the file it was when sent
    // (null: not readable then, the worker says why).
    private sealed record Forwarded(string? Key, JsonElement? Id, string Method, string? Dump, DumpIdentity? Identity,
        JsonElement? Params, byte[] Line, bool Replay);

    private sealed record Opened(string Dump, DumpIdentity? Identity, JsonElement Params);

    /// <param name="startWorker">starts a worker (WorkerProcess.Start with the front's flags).</param>
    public EngineFront(Stream input, Stream output, int maxRequestBytes, Func<WorkerProcess> startWorker)
    {
        _input = input;
        _output = new MessageWriter(output);
        _maxRequestBytes = maxRequestBytes;
        _startWorker = startWorker;
    }

    /// <summary>Serves until end of input or `shutdown`, whichever comes first.</summary>
    public void Run()
    {
        // As in the worker, the reader is a background thread: after
        // `shutdown` the process exits though the client keeps stdin open.
        // The worker starts with the first request it is needed for: started
        // with the front, it slowed the front's own start as much as it
        // saved (measured on Linux and under Wine on two busy cores).
        new Thread(ReadLoop) { Name = "front-reader", IsBackground = true }.Start();
        _done.Wait();
    }

    private void ReadLoop()
    {
        IncomingRequest.ReadAll(_input, _maxRequestBytes, _output, Take);
        lock (_gate)
        {
            _inputEnded = true;
            if (_worker is null)
                _done.Set();
            else
                _worker.CloseInput();
        }
    }

    private void Take(IncomingRequest request, byte[] line)
    {
        if (request.Method == "version")
        {
            if (request.Id is { } id)
                Answer(id, JsonSerializer.SerializeToNode(EngineVersions.Info, RpcJson.TypeInfo<VersionInfo>()));
            return;
        }
        if (request.Method == IncomingRequest.CancelMethod)
        {
            Cancel(request, line);
            return;
        }
        Refusal? answer;
        try
        {
            answer = Forward(request, line);
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"engine: {request.Method} could not be passed on: {e}");
            answer = new Refusal(request.Id, ErrorCodes.Internal, $"{request.Method} could not be passed on: {e.GetType().Name}: {e.Message}");
        }
        if (answer is { } instead && request.Id is not null)
            _output.SendError(instead);
    }

    private void Cancel(IncomingRequest request, byte[] line)
    {
        if (request.CancelTarget is not { } target)
        {
            Console.Error.WriteLine("engine: $/cancelRequest without params {\"id\": number or string} ignored");
            if (request.BadCancel() is { } refusal)
                _output.SendError(refusal);
            return;
        }
        string key = IncomingRequest.IdKey(target);
        Forwarded? held;
        lock (_gate)
        {
            if (_worker is not null && _inFlight.Any(f => f.Key == key && !f.Replay))
                _worker.Send(line);
            held = _held.FirstOrDefault(f => f.Key == key);
            if (held is not null)
                _held.Remove(held);
        }
        if (held is { Id: { } id })
            _output.SendError(id, ErrorCodes.Cancelled, $"{held.Method} was cancelled.");
    }

    /// <summary>Sends the request to the worker, or gives the error that answers it instead.</summary>
    private Refusal? Forward(IncomingRequest request, byte[] line)
    {
        // Read before the gate: the file may be slow to read.
        DumpIdentity? identity = request.Method == "open" && PathOf(request.Params) is { } path ? DumpIdentity.Of(path) : null;
        lock (_gate)
        {
            if (request.Key is { } key && _inFlight.Concat(_held).Any(f => f.Key == key))
                return request.AlreadyInUse();
            if (request.Method == "shutdown" && _worker is null)
            {
                _shutdown = true;
                if (request.Id is { } id)
                    Answer(id, null);
                _done.Set();
                return null;
            }
            if (TryEnsureWorker() is { } failure)
                return new Refusal(request.Id, ErrorCodes.Internal, failure);
            if (request.Id is null && request.Method == "shutdown")
                // No answer will say it was done: the worker's end will.
                _shutdown = true;
            string? opens = request.Method == "open" ? DumpOf(request.Params) : null;
            return Submit(new Forwarded(request.Key, request.Id, request.Method, opens, identity, request.Params, line, Replay: false));
        }
    }

    /// <summary>Under the gate, with a worker: sends, holds, or gives the answer instead.</summary>
    private Refusal? Submit(Forwarded request)
    {
        if (_inFlight.Any(f => f.Replay))
        {
            _held.Add(request);
            return null;
        }
        // The dump the request will run on: the one it opens, else the
        // one the last open sent (and not answered yet) or done opened.
        string? opening = _inFlight.LastOrDefault(f => f.Method == "open")?.Dump;
        string? dump = request.Dump ?? opening ?? _open?.Dump;
        if (request.Dump is null && opening is null)
            LoseIfChanged(quick: true);
        if (Instead(request.Id, request.Method, dump) is { } instead)
            return instead;
        if (request.Key is not null)
            _inFlight.Add(request);
        // A worker that no longer reads has died: its end is handled
        // where its output ends, this request with it.
        _worker!.Send(request.Line);
        return null;
    }

    /// <summary>Under the gate: submits `first` then what was held, in order; the answers due instead.</summary>
    private List<Refusal> Release(IEnumerable<Forwarded> first)
    {
        var queue = first.Concat(_held).ToList();
        _held.Clear();
        var answers = new List<Refusal>();
        foreach (Forwarded request in queue)
        {
            if (Submit(request) is { } instead && request.Id is not null)
                answers.Add(instead);
        }
        return answers;
    }

    /// <summary>
    /// The answer the front gives instead of the worker: to a request that
    /// needs the dump a crash lost, and to a method that crashed two workers
    /// on this dump (it is not tried again).
    /// </summary>
    private Refusal? Instead(JsonElement? id, string method, string? dump)
    {
        if (_lost is { } lost && method is not ("open" or "close" or "shutdown"))
            return lost with { Id = id };
        return dump is not null && _crashes.TryGetValue((dump, method), out var crashes) && crashes.Count >= 2
            ? new Refusal(id, ErrorCodes.DumpCrashedReader, CrashMessage(method, crashes.How, crashes.Count, restarted: false))
            : null;
    }

    // Which dump, as a key: its JSON text, which needs no decoding (text
    // with a lone surrogate is the worker's to refuse).
    private static string? DumpOf(JsonElement? parameters) =>
        parameters is { ValueKind: JsonValueKind.Object } p && p.TryGetProperty("dump", out JsonElement d)
        && d.ValueKind == JsonValueKind.String ? d.GetRawText() : null;

    // Which dump, as a path; null when it is none (the worker says why).
    private static string? PathOf(JsonElement? parameters)
    {
        if (parameters is not { ValueKind: JsonValueKind.Object } p || !p.TryGetProperty("dump", out JsonElement d)
            || d.ValueKind != JsonValueKind.String)
            return null;
        try
        {
            return d.GetString();
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>
    /// Under the gate: when the open dump's file is no longer the one
    /// opened, the dump counts as no longer open (nothing read from the
    /// other file is shown as its) and the reason is returned. quick: by
    /// size and time alone, as before each request and after each answer
    /// (a file gone from the path is still read by the worker that has it
    /// open); else its first bytes too, and a file gone counts, as before
    /// opening it again.
    /// </summary>
    private string? LoseIfChanged(bool quick)
    {
        if (_open is not { Identity: { } identity } open)
            return null;
        if (quick && !identity.OtherFileMayBeThere())
            return null;
        if (identity.Change() is not { } change)
            return null;
        _open = null;
        _lost = new Refusal(null, ErrorCodes.DumpChanged, change);
        // Crashes counted on the old file say nothing of the next one there.
        foreach (var key in _crashes.Keys.Where(k => k.Dump == open.Dump).ToList())
            _crashes.Remove(key);
        Console.Error.WriteLine($"engine: {change}");
        return change;
    }

    /// <summary>Starts a worker if none runs, re-opening the open dump in it; the reason when it cannot start.</summary>
    private string? TryEnsureWorker()
    {
        if (_worker is not null)
            return null;
        WorkerProcess worker;
        try
        {
            worker = _startWorker();
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception or IOException)
        {
            Console.Error.WriteLine($"engine: the worker process could not start: {e}");
            return $"The engine's worker process could not start: {e.Message}";
        }
        _worker = worker;
        new Thread(() => Relay(worker)) { Name = $"front-relay-{worker.Id}", IsBackground = true }.Start();
        // A worker that died while idle (a heap graph built in the
        // background reads the dump) was not checked when it ended.
        LoseIfChanged(quick: false);
        if (_open is { } open)
        {
            var id = JsonSerializer.SerializeToElement($"{ReplayPrefix}{++_replays}", RpcJson.TypeInfo<string>());
            byte[] line = Encoding.UTF8.GetBytes(new JsonObject
            {
                ["jsonrpc"] = "2.0",
                ["id"] = JsonValue.Create(id),
                ["method"] = "open",
                ["params"] = JsonNode.Parse(open.Params.GetRawText()),
            }.ToJsonString());
            _inFlight.Add(new Forwarded(IncomingRequest.IdKey(id), id, "open", open.Dump, open.Identity, open.Params, line, Replay: true));
            worker.Send(line);
        }
        return null;
    }

    private void Relay(WorkerProcess worker)
    {
        while (worker.ReadLine() is { } line)
            FromWorker(line);
        string how = worker.WaitForEnd();
        worker.Dispose();
        WorkerEnded(worker, how);
    }

    private void FromWorker(byte[] line)
    {
        string? key;
        bool succeeded;
        string? error;
        try
        {
            using var doc = JsonDocument.Parse(line);
            JsonElement root = doc.RootElement;
            key = root.ValueKind == JsonValueKind.Object && root.TryGetProperty("id", out JsonElement id)
                && id.ValueKind != JsonValueKind.Null ? IncomingRequest.IdKey(id) : null;
            succeeded = key is not null && root.TryGetProperty("result", out _);
            error = root.ValueKind == JsonValueKind.Object && root.TryGetProperty("error", out JsonElement e)
                && e.ValueKind == JsonValueKind.Object && e.TryGetProperty("message", out JsonElement m) ? m.ToString() : null;
        }
        catch (JsonException e)
        {
            Console.Error.WriteLine($"engine: the worker wrote a line that is not JSON, dropped: {e.Message}");
            return;
        }
        bool relay = true;
        List<Refusal> answers = [];
        lock (_gate)
        {
            int at = key is null ? -1 : _inFlight.FindIndex(f => f.Key == key);
            if (at >= 0)
            {
                Forwarded answered = _inFlight[at];
                _inFlight.RemoveAt(at);
                if (answered.Replay)
                {
                    relay = false;
                    if (!succeeded)
                    {
                        _open = null;
                        string lost = $"The engine's reader crashed earlier on this dump and could not open it again: {error}";
                        _lost = new Refusal(null, ErrorCodes.DumpCrashedReader, lost);
                        Console.Error.WriteLine($"engine: {lost}");
                    }
                    answers = Release([]);
                }
                else if (Changed(answered, succeeded) is { } change && answered.Id is not null)
                {
                    // Read, in part or whole, from another file than the one opened.
                    relay = false;
                    answers.Add(new Refusal(answered.Id, ErrorCodes.DumpChanged, change));
                }
                else
                {
                    Answered(answered, succeeded);
                }
            }
        }
        if (relay)
            _output.SendLine(line);
        SendAll(answers);
    }

    /// <summary>Under the gate: why the answer to `request` may come from
    /// another file than the dump it ran on; null when it does not.</summary>
    private string? Changed(Forwarded request, bool succeeded)
    {
        if (request.Method != "open")
            return request.Method is "close" or "shutdown" ? null : LoseIfChanged(quick: true);
        if (request.Identity is not { } identity || !identity.OtherFileMayBeThere() || identity.Change() is not { } change)
            return null;
        if (succeeded)
        {
            // The worker opened it (closing the dump open before): nothing is open that can be shown.
            _open = null;
            _lost = new Refusal(null, ErrorCodes.DumpChanged, change);
        }
        return change;
    }

    private void Answered(Forwarded request, bool succeeded)
    {
        switch (request.Method)
        {
            case "open" when succeeded && request.Dump is not null && request.Params is { } parameters:
                _open = new Opened(request.Dump, request.Identity, parameters);
                _lost = null;
                break;
            case "close" when succeeded:
                _open = null;
                _lost = null;
                break;
            case "shutdown":
                _shutdown = true;
                break;
        }
    }

    private void WorkerEnded(WorkerProcess worker, string how)
    {
        var answers = new List<Refusal>();
        lock (_gate)
        {
            if (_worker == worker)
                _worker = null;
            if (_shutdown)
            {
                _done.Set();
                return;
            }
            var pending = _inFlight.ToList();
            _inFlight.Clear();
            if (pending.Count == 0)
            {
                if (!_inputEnded)
                    Console.Error.WriteLine($"engine: the worker process ended ({how}) while idle; the next request starts another");
                else
                    _done.Set();
                return;
            }
            Forwarded crashed = pending[0];
            // The worker answered in order up to the crash, so the dump open
            // now is the one the crashed request ran on (or the one it opened).
            // Its file changed: that is what crashed the reader (a page
            // mapped past the file's new end), not damage; it is not opened
            // again. The dump the crashed request opened is checked too.
            string? openChanged = LoseIfChanged(quick: false);
            string? changed = crashed.Dump is null || crashed.Replay ? openChanged
                : crashed.Identity?.Change();
            if (changed is not null)
            {
                Console.Error.WriteLine($"engine: the worker process ended ({how}) during {crashed.Method}: the dump file changed");
                // A re-open that crashed has no one to answer: _lost says it.
                if (!crashed.Replay)
                    answers.Add(new Refusal(crashed.Id, ErrorCodes.DumpChanged, $"{changed} (The engine's reader stopped on it: {how} during {crashed.Method}.)"));
            }
            else
            {
                var crashKey = (crashed.Dump ?? _open?.Dump ?? "", crashed.Method);
                int count = _crashes.GetValueOrDefault(crashKey).Count + 1;
                _crashes[crashKey] = (count, how);
                Console.Error.WriteLine($"engine: the worker process ended ({how}) during {crashed.Method} (crash {count} of this method on this dump)");
                if (crashed.Replay)
                {
                    _open = null;
                    _lost = new Refusal(null, ErrorCodes.DumpCrashedReader,
                        CrashMessage("open", how, count, restarted: false) + " The dump is no longer open: open it again.");
                }
                else
                {
                    answers.Add(new Refusal(crashed.Id, ErrorCodes.DumpCrashedReader, CrashMessage(crashed.Method, how, count, restarted: !_inputEnded)));
                }
            }
            // Behind the crash: what was sent to the worker, then what waited
            // for a re-open. They did nothing wrong.
            var rest = pending.Skip(1).Where(f => !f.Replay).ToList();
            if (_inputEnded)
            {
                // No new worker for a client that has gone: each is told why it was not run.
                answers.AddRange(rest.Concat(_held).Where(f => f.Id is not null).Select(f => new Refusal(f.Id,
                    ErrorCodes.DumpCrashedReader, $"Not run: the engine's reader crashed ({how}) during {crashed.Method} before it.")));
                _held.Clear();
                _done.Set();
            }
            else if (TryEnsureWorker() is { } failure)
            {
                answers.AddRange(rest.Concat(_held).Where(f => f.Id is not null)
                    .Select(f => new Refusal(f.Id, ErrorCodes.Internal, failure)));
                _held.Clear();
            }
            else
            {
                // Started at once, not on the next request: the dump is open
                // again by the time the client asks its next question. The new
                // worker runs the rest, unless the front answers one instead.
                answers.AddRange(Release(rest));
            }
        }
        SendAll(answers);
    }

    private void SendAll(IEnumerable<Refusal> answers)
    {
        foreach (Refusal answer in answers)
            _output.SendError(answer);
    }

    private static string CrashMessage(string method, string how, int count, bool restarted)
    {
        string what = $"The runtime's debugging library (DAC) crashed reading this dump ({how} during {method}): the dump is probably damaged.";
        if (count >= 2)
            return $"{what} {method} crashed it {count} times on this dump and is not tried again; the rest of the dump can still be read. Take a new dump for this part.";
        string goesOn = method == "open" ? "the dump open before stays open" : "the dump stays open and the rest of it can still be read";
        return restarted
            ? $"{what} The engine started a new reader ({goesOn}). Take a new dump if this part matters."
            : what;
    }

    private void Answer(JsonElement id, JsonNode? result) =>
        _output.Send(new JsonObject { ["jsonrpc"] = "2.0", ["id"] = JsonValue.Create(id), ["result"] = result });
}
