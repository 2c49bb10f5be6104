using System.Collections.Immutable;
using System.Text.Json.Serialization;
using DumpScope.Engine.Analysis;

namespace DumpScope.Engine.Rpc;

/// <summary>
/// The answers' JSON contracts, made when the engine is built rather than
/// by reflection on each kind of answer's first sending: that first time
/// cost more than the answer's own work (a 10 M-object heap_stats answer
/// was sent in 0.17 s, a thread list in 0.05 s). Every method's result
/// record is listed (ResultSchema.MethodResults; a test checks the two
/// agree), the records they hold come with them; so are an error's details
/// (a string or a list of strings per key) and the few values the front
/// writes itself. Nothing is written by reflection (RpcJson.Options).
/// </summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(VersionInfo))]
[JsonSerializable(typeof(RuntimeInfo))]
[JsonSerializable(typeof(HeapStats))]
[JsonSerializable(typeof(GcHeap))]
[JsonSerializable(typeof(FinalizerQueue))]
[JsonSerializable(typeof(ThreadList))]
[JsonSerializable(typeof(ThreadPoolInfo))]
[JsonSerializable(typeof(ThreadStack))]
[JsonSerializable(typeof(Monitors))]
[JsonSerializable(typeof(Instances))]
[JsonSerializable(typeof(ObjectDetail))]
[JsonSerializable(typeof(RootPaths))]
[JsonSerializable(typeof(NativePointers))]
[JsonSerializable(typeof(GraphSummary))]
[JsonSerializable(typeof(DominatorPage))]
[JsonSerializable(typeof(TypeRetainedPage))]
[JsonSerializable(typeof(RetentionPaths))]
[JsonSerializable(typeof(InstanceHolders))]
[JsonSerializable(typeof(IReadOnlyDictionary<string, object?>))]
[JsonSerializable(typeof(ImmutableArray<string>))]
[JsonSerializable(typeof(string))]
internal sealed partial class RpcJsonContext : JsonSerializerContext;
