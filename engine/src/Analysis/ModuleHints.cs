using System.Collections.Immutable;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Diagnostics.Runtime;
using Microsoft.Diagnostics.Runtime.DataReaders.Implementation;

namespace DumpScope.Engine.Analysis;

/// <summary>
/// A module the client found in the dump by other means than the list
/// ClrMD reads (a core's NT_FILE note): the dynamic linker's list in memory,
/// an ELF header at the start of a mapping. Path names the file (its folder
/// is where the DAC is looked for); Base is where its header is mapped.
/// </summary>
public readonly record struct ModuleHint(string Path, ulong Base);

public static class ModuleHints
{
    /// <summary>Parses the `open` parameter `modules`: a list of {path, base}.</summary>
    public static ImmutableArray<ModuleHint> Parse(JsonNode? node, EngineLimits limits)
    {
        if (node is null)
            return [];
        if (node is not JsonArray array)
            throw Invalid("Parameter 'modules' must be a list of {\"path\": text, \"base\": address} objects.");
        if (array.Count > limits.MaxModules)
            throw Invalid($"Parameter 'modules' holds {array.Count} modules; at most {limits.MaxModules} are accepted.");
        var hints = ImmutableArray.CreateBuilder<ModuleHint>(array.Count);
        for (int i = 0; i < array.Count; i++)
        {
            if (array[i] is not JsonObject item
                || item["path"] is not JsonValue path || path.GetValueKind() != JsonValueKind.String
                || item["base"] is not JsonValue address || address.GetValueKind() != JsonValueKind.Number)
                throw Invalid($"modules[{i}] must be an object {{\"path\": text, \"base\": integer}}.");
            string text;
            ulong at;
            try
            {
                text = path.GetValue<string>();
                at = address.GetValue<ulong>();
            }
            catch (Exception e) when (e is FormatException or InvalidOperationException or OverflowException)
            {
                throw Invalid($"modules[{i}] must have a text path and a base address from 0 to 2^64-1.");
            }
            if (text.Length == 0 || text.Contains('\0'))
                throw Invalid($"modules[{i}].path must be a non-empty text without NUL characters.");
            hints.Add(new ModuleHint(text, at));
        }
        return hints.MoveToImmutable();
    }

    private static EngineException Invalid(string message) => new(ErrorCodes.InvalidParams, message);
}

/// <summary>
/// The dump's own reader, with the client's module hints in the modules it
/// lists: ClrMD finds the runtime only among the modules the reader
/// enumerates, and a core reader enumerates NT_FILE alone. A damaged
/// NT_FILE loses modules or pairs their addresses with the wrong names
/// (a zeroed run of its names shifts every name after it), so a hint is
/// added where no listed module starts and replaces a listed module of
/// another name at its address; either only when its ELF or PE header is
/// readable there (ClrMD's own ModuleInfo.TryCreate reads it). Everything
/// else is the inner reader's, the thread list (IThreadReader) and the
/// dump's kind (IDumpInfoProvider) included, which ClrMD and the thread
/// walk ask the reader for.
/// </summary>
internal sealed class HintedDataReader : IDataReader, IThreadReader, IDumpInfoProvider
{
    private readonly IDataReader _inner;
    private readonly ImmutableArray<ModuleInfo> _added;
    private readonly HashSet<ulong> _replaced = [];

    public HintedDataReader(IDataReader inner, IEnumerable<ModuleHint> hints, DataTargetLimits limits)
    {
        _inner = inner;
        var listed = new Dictionary<ulong, string>();
        foreach (ModuleInfo module in inner.EnumerateModules())
            listed.TryAdd(module.ImageBase, module.FileName);
        var added = ImmutableArray.CreateBuilder<ModuleInfo>();
        var seen = new HashSet<ulong>();
        foreach (ModuleHint hint in hints)
        {
            bool known = listed.TryGetValue(hint.Base, out string? name);
            if (!seen.Add(hint.Base) || (known && name == hint.Path))
                continue;
            if (ModuleInfo.TryCreate(inner, hint.Base, hint.Path, limits) is not { } module)
                continue;
            added.Add(module);
            if (known)
                _replaced.Add(hint.Base);
        }
        _added = added.ToImmutable();
    }

    /// <summary>The hinted modules that were added to the list.</summary>
    public ImmutableArray<ModuleInfo> Added => _added;

    public string DisplayName => _inner.DisplayName;
    public bool IsThreadSafe => _inner.IsThreadSafe;
    public OSPlatform TargetPlatform => _inner.TargetPlatform;
    public Architecture Architecture => _inner.Architecture;
    public int ProcessId => _inner.ProcessId;
    public int PointerSize => _inner.PointerSize;

    public IEnumerable<ModuleInfo> EnumerateModules() =>
        _inner.EnumerateModules().Where(m => !_replaced.Contains(m.ImageBase)).Concat(_added);

    public bool GetThreadContext(uint threadID, uint contextFlags, Span<byte> context) =>
        _inner.GetThreadContext(threadID, contextFlags, context);

    public void FlushCachedData() => _inner.FlushCachedData();

    public int Read(ulong address, Span<byte> buffer) => _inner.Read(address, buffer);

    public bool Read<T>(ulong address, out T value) where T : unmanaged => _inner.Read(address, out value);

    public T Read<T>(ulong address) where T : unmanaged => _inner.Read<T>(address);

    public bool ReadPointer(ulong address, out ulong value) => _inner.ReadPointer(address, out value);

    public ulong ReadPointer(ulong address) => _inner.ReadPointer(address);

    public IEnumerable<uint> EnumerateOSThreadIds() =>
        _inner is IThreadReader threads ? threads.EnumerateOSThreadIds() : [];

    public ulong GetThreadTeb(uint osThreadId) =>
        _inner is IThreadReader threads ? threads.GetThreadTeb(osThreadId) : 0;

    // Unknown kinds read as a full dump written by the runtime: ClrMD then
    // neither refuses the heap nor blames another dump writer.
    public bool IsMiniOrTriage => _inner is IDumpInfoProvider { IsMiniOrTriage: true };

    public bool IsCreatedByDotNetRuntime => _inner is not IDumpInfoProvider { IsCreatedByDotNetRuntime: false };
}
