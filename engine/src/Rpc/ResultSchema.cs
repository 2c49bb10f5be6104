using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization.Metadata;
using DumpScope.Engine.Analysis;

namespace DumpScope.Engine.Rpc;

/// <summary>
/// The engine's answers described from its own types (`--schema`): for each
/// method the record it returns, for each record its fields as
/// System.Text.Json writes them (wire name, JSON type, nullability). The
/// Python client's result types are checked against this, so the two sides
/// cannot drift apart silently.
/// </summary>
public static class ResultSchema
{
    /// <summary>
    /// The record each method answers with; null when the answer is JSON null.
    /// Dispatch returns object?, so the result types are declared here;
    /// the engine tests check this table against the answers Dispatch sends.
    /// </summary>
    public static IReadOnlyDictionary<string, Type?> MethodResults { get; } = new Dictionary<string, Type?>
    {
        ["version"] = typeof(VersionInfo),
        ["open"] = typeof(RuntimeInfo),
        ["runtime_info"] = typeof(RuntimeInfo),
        ["close"] = null,
        ["shutdown"] = null,
        ["heap_stats"] = typeof(HeapStats),
        ["gc_heap"] = typeof(GcHeap),
        ["finalizer_queue"] = typeof(FinalizerQueue),
        ["threads"] = typeof(ThreadList),
        ["thread_pool"] = typeof(ThreadPoolInfo),
        ["stack"] = typeof(ThreadStack),
        ["monitors"] = typeof(Monitors),
        ["instances"] = typeof(Instances),
        ["object"] = typeof(ObjectDetail),
        ["root_paths"] = typeof(RootPaths),
        ["native_pointers"] = typeof(NativePointers),
        ["finalizer_objects"] = typeof(Instances),
        ["graph"] = typeof(GraphSummary),
        ["dominators"] = typeof(DominatorPage),
        ["retained_by_type"] = typeof(TypeRetainedPage),
        ["why_alive"] = typeof(RetentionPaths),
        ["holders"] = typeof(InstanceHolders),
    };

    /// <summary>
    /// `{protocol_version, methods: {method: record or null}, records:
    /// {record: [field]}}`; a field is `{name, type, nullable}` with `record`
    /// when type is "object" and `items` (a type without a name) when it is
    /// "array". Types: string, integer, number, boolean, object, array.
    /// </summary>
    public static JsonObject Describe(JsonSerializerOptions options)
    {
        // What the first serialisation does: the contracts are fixed from then on.
        options.MakeReadOnly();
        var nullability = new NullabilityInfoContext();
        var records = new SortedDictionary<string, JsonArray>(StringComparer.Ordinal);
        var seen = new Dictionary<string, Type>();
        var pending = new Queue<Type>();
        var methods = new JsonObject();
        foreach (var (method, type) in MethodResults)
        {
            methods[method] = type is null ? null : RecordName(type, seen, pending);
        }
        while (pending.TryDequeue(out Type? record))
        {
            var fields = new JsonArray();
            foreach (JsonPropertyInfo property in options.GetTypeInfo(record).Properties)
            {
                if (property.Get is null)
                    continue;
                NullabilityInfo? info = property.AttributeProvider switch
                {
                    PropertyInfo p => nullability.Create(p),
                    FieldInfo f => nullability.Create(f),
                    _ => null,
                };
                JsonObject field = new() { ["name"] = property.Name };
                foreach (var (key, value) in Describe(property.PropertyType, info, options, seen, pending, $"{record.Name}.{property.Name}"))
                    field[key] = value?.DeepClone();
                fields.Add((JsonNode)field);
            }
            records[record.Name] = fields;
        }
        var recordsNode = new JsonObject();
        foreach (var (name, fields) in records)
            recordsNode[name] = fields;
        return new JsonObject
        {
            ["protocol_version"] = RpcServer.ProtocolVersion,
            ["methods"] = methods,
            ["records"] = recordsNode,
        };
    }

    private static JsonObject Describe(
        Type type, NullabilityInfo? info, JsonSerializerOptions options, Dictionary<string, Type> seen, Queue<Type> pending, string where)
    {
        bool nullable = false;
        if (Nullable.GetUnderlyingType(type) is { } underlying)
        {
            type = underlying;
            nullable = true;
        }
        else if (!type.IsValueType)
        {
            // A reference without annotations (nullable context off) could
            // be null at any time: say so rather than guess.
            nullable = info is null || info.ReadState != NullabilityState.NotNull;
        }
        JsonTypeInfo typeInfo = options.GetTypeInfo(type);
        var node = new JsonObject();
        switch (typeInfo.Kind)
        {
            case JsonTypeInfoKind.Object:
                node["type"] = "object";
                node["nullable"] = nullable;
                node["record"] = RecordName(type, seen, pending);
                break;
            case JsonTypeInfoKind.Enumerable:
                Type element = typeInfo.ElementType
                    ?? throw new InvalidOperationException($"{where}: a list whose element type System.Text.Json does not know.");
                NullabilityInfo? elementInfo = info?.ElementType
                    ?? (info?.GenericTypeArguments is [var only] ? only : null);
                node["type"] = "array";
                node["nullable"] = nullable;
                node["items"] = Describe(element, elementInfo, options, seen, pending, $"{where}[]");
                break;
            case JsonTypeInfoKind.None:
                node["type"] = Scalar(type, options, where);
                node["nullable"] = nullable;
                break;
            default:
                throw new InvalidOperationException(
                    $"{where}: {type.Name} is a {typeInfo.Kind}; results use records and lists only, so the client can type every key.");
        }
        return node;
    }

    private static string RecordName(Type type, Dictionary<string, Type> seen, Queue<Type> pending)
    {
        if (type.IsGenericType || !type.IsPublic || type.Name.Contains('<'))
            throw new InvalidOperationException(
                $"{type} is not a public named record: results must be records the client can name (no anonymous types).");
        if (seen.TryGetValue(type.Name, out Type? known))
        {
            if (known != type)
                throw new InvalidOperationException($"Two result records are named {type.Name}: {known} and {type}.");
            return type.Name;
        }
        seen[type.Name] = type;
        pending.Enqueue(type);
        return type.Name;
    }

    private static string Scalar(Type type, JsonSerializerOptions options, string where)
    {
        if (type.IsEnum)
        {
            // Numbers unless a string-enum converter is registered: ask the
            // serialiser rather than guess.
            JsonValueKind kind = JsonSerializer.SerializeToElement(Enum.ToObject(type, 0), options.GetTypeInfo(type)).ValueKind;
            return kind == JsonValueKind.String ? "string" : "integer";
        }
        return Type.GetTypeCode(type) switch
        {
            TypeCode.String or TypeCode.Char => "string",
            TypeCode.Boolean => "boolean",
            TypeCode.SByte or TypeCode.Byte or TypeCode.Int16 or TypeCode.UInt16 or TypeCode.Int32 or TypeCode.UInt32
                or TypeCode.Int64 or TypeCode.UInt64 => "integer",
            TypeCode.Single or TypeCode.Double or TypeCode.Decimal => "number",
            _ => throw new InvalidOperationException($"{where}: no fixed JSON type for {type}."),
        };
    }
}
