using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Analysis;

/// <summary>
/// The object graph of one dump, built once: every live-or-dead object of the
/// GC heap (free space left out) as an index into flat arrays sorted by
/// address, its references as compressed rows (no per-object allocation),
/// the GC roots with their kind, the dominator tree over a virtual
/// super-root and the retained size of every object.
///
/// Memory per object: address 8, type 4, size 4, edge row start 4, idom 4,
/// retained 8 bytes, plus 4 per reference; while the dominators are
/// computed, also a postorder number, the postorder and the predecessor rows.
/// Immutable once built, so queries may run while another call waits.
/// </summary>
public sealed partial class HeapGraph
{
    // Objects are looked up by address through per-segment buckets of this
    // many bytes (2^9): a bucket holds a handful of objects.
    private const int BucketShift = 9;
    private const int ReadWindow = 1 << 20;

    private readonly ulong[] _address;
    private readonly int[] _type;
    private readonly uint[] _size;
    // Objects of 4 GB and more (arrays with gcAllowVeryLargeObjects) keep
    // their size here; _size holds uint.MaxValue for them.
    private readonly Dictionary<int, ulong> _hugeSizes;
    private readonly int[] _edgeStart;
    private readonly int[] _edges;
    private readonly SegmentIndex[] _segments;
    private readonly GraphType[] _types;
    private readonly GraphRoot[] _roots;
    private readonly string[] _rootNames;
    private readonly int[] _rootTargets;
    private readonly int[] _idom;
    private readonly ulong[] _retained;

    /// <summary>Objects in the graph (free space excluded).</summary>
    public int ObjectCount => _address.Length;

    public int EdgeCount => _edges.Length;

    public int SuperRoot => _address.Length;

    public double BuildSeconds { get; }

    public int DominatorPasses { get; }

    private readonly record struct SegmentIndex(ulong Start, ulong End, int First, int Count, int[] Buckets);

    /// <summary>A type of the graph: its method table and name, resolved once.</summary>
    internal readonly record struct GraphType(ulong MethodTable, string Name);

    /// <summary>One GC root: the object it holds and how (see RootKinds).</summary>
    internal readonly record struct GraphRoot(int Object, RootKind Kind, ulong Address, uint ThreadOsId, int Name);

    internal enum RootKind : byte
    {
        Stack,
        StaticField,
        ThreadStatic,
        StrongHandle,
        PinnedHandle,
        AsyncPinnedHandle,
        RefCountedHandle,
        SizedRefHandle,
        StaticsBucket,
        FinalizerQueue,
        Other,
    }

    internal static string KindName(RootKind kind) => kind switch
    {
        RootKind.Stack => "stack",
        RootKind.StaticField => "static",
        RootKind.ThreadStatic => "thread_static",
        RootKind.StrongHandle => "strong_handle",
        RootKind.PinnedHandle => "pinned_handle",
        RootKind.AsyncPinnedHandle => "async_pinned_handle",
        RootKind.RefCountedHandle => "ref_counted_handle",
        RootKind.SizedRefHandle => "sized_ref_handle",
        RootKind.StaticsBucket => "statics_bucket",
        RootKind.FinalizerQueue => "finalizer_queue",
        _ => "other",
    };

    private HeapGraph(ulong[] address, int[] type, uint[] size, Dictionary<int, ulong> hugeSizes, int[] edgeStart, int[] edges,
        SegmentIndex[] segments, GraphType[] types, GraphRoot[] roots, string[] rootNames, int[] rootTargets,
        int[] idom, ulong[] retained, int passes, double seconds)
    {
        _address = address;
        _type = type;
        _size = size;
        _hugeSizes = hugeSizes;
        _edgeStart = edgeStart;
        _edges = edges;
        _segments = segments;
        _types = types;
        _roots = roots;
        _rootNames = rootNames;
        _rootTargets = rootTargets;
        _idom = idom;
        _retained = retained;
        DominatorPasses = passes;
        BuildSeconds = seconds;
    }

    // Per-object accessors, by index (0..ObjectCount-1, objects in address order).
    public ulong AddressOf(int index) => _address[index];

    public ulong SizeOf(int index) => _size[index] == uint.MaxValue && _hugeSizes.TryGetValue(index, out ulong huge) ? huge : _size[index];

    public string TypeNameOf(int index) => _types[_type[index]].Name;

    public ReadOnlySpan<int> ReferencesOf(int index) => _edges.AsSpan(_edgeStart[index], _edgeStart[index + 1] - _edgeStart[index]);

    /// <summary>The immediate dominator's index, SuperRoot, or DominatorTree.Unreachable.</summary>
    public int ImmediateDominator(int index) => _idom[index];

    public ulong RetainedSize(int index) => _retained[index];

    /// <summary>Indices of the objects the GC roots hold, each once.</summary>
    public ReadOnlySpan<int> RootObjects => _rootTargets;

    /// <summary>The index of the object at exactly this address, or -1.</summary>
    public int IndexOf(ulong address) => IndexOf(_segments, _address, address);

    private static int IndexOf(SegmentIndex[] segments, ulong[] addresses, ulong address)
    {
        int lo = 0, hi = segments.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            if (segments[mid].Start <= address)
                lo = mid + 1;
            else
                hi = mid - 1;
        }
        if (hi < 0)
            return -1;
        SegmentIndex seg = segments[hi];
        if (address >= seg.End)
            return -1;
        int bucket = (int)((address - seg.Start) >> BucketShift);
        int i = seg.Buckets[bucket];
        int end = bucket + 1 < seg.Buckets.Length ? seg.Buckets[bucket + 1] : seg.First + seg.Count;
        for (; i < end; i++)
        {
            if (addresses[i] == address)
                return i;
            if (addresses[i] > address)
                break;
        }
        return -1;
    }

    // ------------------------------------------------------------- building

    /// <summary>What one segment's walk found, before the arrays are joined.</summary>
    private sealed class SegmentObjects
    {
        public ulong[] Address = new ulong[1024];
        public int[] Type = new int[1024];
        public ulong[] Size = new ulong[1024];
        public int Count;

        public void Add(ulong address, int type, ulong size)
        {
            if (Count == Address.Length)
            {
                Array.Resize(ref Address, Count * 2);
                Array.Resize(ref Type, Count * 2);
                Array.Resize(ref Size, Count * 2);
            }
            Address[Count] = address;
            Type[Count] = type;
            Size[Count] = size;
            Count++;
        }
    }

    /// <summary>Assigns one type index per method table, shared by the walkers.</summary>
    private sealed class TypeTable
    {
        private readonly ConcurrentDictionary<ulong, int> _byMt = new();
        private readonly List<ClrType> _types = [];

        public int IndexOf(ClrType type) => _byMt.GetOrAdd(type.MethodTable, _ =>
        {
            lock (_types)
            {
                _types.Add(type);
                return _types.Count - 1;
            }
        });

        public ClrType[] All()
        {
            lock (_types)
                return [.. _types];
        }
    }

    private struct CollectVisitor(SegmentObjects into, TypeTable types, ulong freeMt) : IObjectVisitor
    {
        private ulong _lastMt;
        private int _lastType;
        private Dictionary<ulong, int>? _local;

        public void Visit(ulong address, ulong methodTable, ClrType type, ulong size)
        {
            if (methodTable == freeMt)
                return;
            if (methodTable != _lastMt)
            {
                _local ??= new Dictionary<ulong, int>();
                if (!_local.TryGetValue(methodTable, out _lastType))
                    _local[methodTable] = _lastType = types.IndexOf(type);
                _lastMt = methodTable;
            }
            into.Add(address, _lastType, size);
        }
    }

    /// <summary>
    /// Walks the heap, records every reference, enumerates the roots and
    /// computes the dominator tree and retained sizes. Reports progress as
    /// steps of the build; honours cancellation within every step.
    /// </summary>
    public static HeapGraph Build(ClrRuntime runtime, HeapWalker walker, IMemoryReader memory,
        IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        var watch = Stopwatch.StartNew();
        ClrHeap heap = runtime.Heap;
        var segments = heap.Segments.Where(s => s.ObjectRange.Length > 0).OrderBy(s => s.ObjectRange.Start).ToArray();
        bool parallel = runtime.IsThreadSafe && segments.Length > 1 && Environment.ProcessorCount > 1;
        var options = new ParallelOptions { CancellationToken = cancel, MaxDegreeOfParallelism = parallel ? Environment.ProcessorCount : 1 };
        long totalBytes = segments.Sum(s => (long)s.ObjectRange.Length);
        long doneBytes = 0;
        const long Steps = 3;

        // 1. Objects, segment by segment (largest first so workers end together).
        var found = new SegmentObjects[segments.Length];
        var typeTable = new TypeTable();
        ulong freeMt = heap.FreeType?.MethodTable ?? 0;
        var bySize = Enumerable.Range(0, segments.Length).OrderByDescending(i => segments[i].ObjectRange.Length).ToArray();
        Parallel.ForEach(bySize, options, i =>
        {
            var objects = new SegmentObjects();
            var visitor = new CollectVisitor(objects, typeTable, freeMt);
            walker.Walk(segments[i], ref visitor, cancel);
            found[i] = objects;
            long done = Interlocked.Add(ref doneBytes, (long)segments[i].ObjectRange.Length);
            progress?.Report(new ProgressReport(done, totalBytes * Steps, "walking the GC heap"));
        });

        int n = checked(found.Sum(f => f.Count));
        var address = new ulong[n];
        var type = new int[n];
        var size = new uint[n];
        var huge = new Dictionary<int, ulong>();
        var index = new SegmentIndex[segments.Length];
        int first = 0;
        for (int s = 0; s < segments.Length; s++)
        {
            SegmentObjects objects = found[s];
            Array.Copy(objects.Address, 0, address, first, objects.Count);
            Array.Copy(objects.Type, 0, type, first, objects.Count);
            for (int k = 0; k < objects.Count; k++)
            {
                ulong sz = objects.Size[k];
                if (sz >= uint.MaxValue)
                {
                    size[first + k] = uint.MaxValue;
                    huge[first + k] = sz;
                }
                else
                {
                    size[first + k] = (uint)sz;
                }
            }
            found[s] = null!;
            ulong start = segments[s].ObjectRange.Start;
            ulong end = segments[s].ObjectRange.End;
            var buckets = new int[(int)(((end - start) >> BucketShift) + 1)];
            int at = first;
            for (int b = 0; b < buckets.Length; b++)
            {
                ulong bucketStart = start + ((ulong)b << BucketShift);
                while (at < first + objects.Count && address[at] < bucketStart)
                    at++;
                buckets[b] = at;
            }
            index[s] = new SegmentIndex(start, end, first, objects.Count, buckets);
            first += objects.Count;
        }
        ClrType[] clrTypes = typeTable.All();
        var types = clrTypes.Select(t => new GraphType(t.MethodTable, TypeNames.Of(t))).ToArray();
        cancel.ThrowIfCancellationRequested();

        // 2. References, segment by segment, through each type's pointer layout.
        var layouts = clrTypes.Select(t => ReferenceLayout.Of(t, memory)).ToArray();
        foreach (ReferenceLayout layout in layouts)
        {
            if (layout.LoaderAllocatorAddress != 0)
                layout.LoaderAllocator = IndexOf(index, address, layout.LoaderAllocatorAddress);
        }
        (int Source, int Target)[] dependents = DependentEdges(runtime, index, address);
        var edgeStart = new int[n + 1];
        var chunks = new int[segments.Length][];
        var chunkLengths = new int[segments.Length];
        Parallel.ForEach(bySize, options, s =>
        {
            var edges = new EdgeWriter(ArrayPool<int>.Shared.Rent(1 << 16));
            ReadReferences(index[s], address, type, size, huge, layouts, dependents, index, memory, edgeStart, ref edges, cancel);
            chunks[s] = edges.ToArrayAndReturn();
            chunkLengths[s] = chunks[s].Length;
            long done = Interlocked.Add(ref doneBytes, (long)segments[s].ObjectRange.Length);
            progress?.Report(new ProgressReport(done, totalBytes * Steps, "reading references"));
        });
        long edgeCount = chunkLengths.Sum(c => (long)c);
        if (edgeCount > Array.MaxLength)
            throw new EngineException(ErrorCodes.Internal, $"The heap has {edgeCount:N0} references, more than one graph can hold.");
        var allEdges = new int[edgeCount];
        int edgeBase = 0;
        for (int s = 0; s < segments.Length; s++)
        {
            SegmentIndex seg = index[s];
            for (int i = seg.First; i < seg.First + seg.Count; i++)
                edgeStart[i] += edgeBase;
            Array.Copy(chunks[s], 0, allEdges, edgeBase, chunks[s].Length);
            edgeBase += chunks[s].Length;
            chunks[s] = null!;
        }
        edgeStart[n] = edgeBase;
        cancel.ThrowIfCancellationRequested();

        // 3. Roots, then dominators and retained sizes.
        var rootNames = new List<string>();
        GraphRoot[] roots = Roots(runtime, index, address, rootNames, cancel);
        int[] rootTargets = roots.Select(r => r.Object).Distinct().Order().ToArray();
        var sub = new ScaledProgress(progress, 2 * totalBytes, totalBytes, Steps * totalBytes);
        DominatorTree tree = DominatorTree.Compute(n, edgeStart, allEdges, rootTargets, sub, cancel);
        ulong[] retained = tree.RetainedSizes(i => size[i] == uint.MaxValue && huge.TryGetValue(i, out ulong h) ? h : size[i]);
        progress?.Report(new ProgressReport(Steps * totalBytes, Steps * totalBytes, "computing retained sizes"));
        return new HeapGraph(address, type, size, huge, edgeStart, allEdges, index, types, roots, [.. rootNames], rootTargets,
            tree.Idom, retained, tree.Passes, watch.Elapsed.TotalSeconds);
    }

    /// <summary>Maps the dominator step's 0..4 onto the last third of the build.</summary>
    private sealed class ScaledProgress(IProgress<ProgressReport>? inner, long from, long span, long total) : IProgress<ProgressReport>
    {
        public void Report(ProgressReport value) =>
            inner?.Report(new ProgressReport(from + span * value.Done / Math.Max(1, value.Total), total, value.Message));
    }

    /// <summary>A growing list of edge targets in a pooled array.</summary>
    private struct EdgeWriter(int[] buffer)
    {
        private int[] _buffer = buffer;
        public int Count;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Add(int target)
        {
            if (Count == _buffer.Length)
            {
                int[] bigger = ArrayPool<int>.Shared.Rent(_buffer.Length * 2);
                Array.Copy(_buffer, bigger, Count);
                ArrayPool<int>.Shared.Return(_buffer);
                _buffer = bigger;
            }
            _buffer[Count++] = target;
        }

        public int[] ToArrayAndReturn()
        {
            int[] result = _buffer.AsSpan(0, Count).ToArray();
            ArrayPool<int>.Shared.Return(_buffer);
            _buffer = [];
            return result;
        }
    }

    // Writes the edges of one segment's objects; edgeStart gets offsets
    // relative to the segment's first edge (the caller rebases them).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ReadReferences(SegmentIndex seg, ulong[] address, int[] type, uint[] size, Dictionary<int, ulong> huge,
        ReferenceLayout[] layouts, (int Source, int Target)[] dependents, SegmentIndex[] index, IMemoryReader memory,
        int[] edgeStart, ref EdgeWriter edges, CancellationToken cancel)
    {
        int pointerSize = memory.PointerSize;
        byte[] window = ArrayPool<byte>.Shared.Rent(ReadWindow);
        ulong windowBase = 0;
        int windowLength = 0;
        int dependent = FirstDependentAtOrAfter(dependents, seg.First);
        try
        {
            for (int i = seg.First; i < seg.First + seg.Count; i++)
            {
                edgeStart[i] = edges.Count;
                if (((i - seg.First) & 0xFFFF) == 0)
                    cancel.ThrowIfCancellationRequested();
                while (dependent < dependents.Length && dependents[dependent].Source == i)
                    edges.Add(dependents[dependent++].Target);
                ReferenceLayout layout = layouts[type[i]];
                if (layout.LoaderAllocator >= 0)
                    edges.Add(layout.LoaderAllocator);
                if (!layout.HasReferences)
                    continue;
                ulong obj = address[i];
                ulong objSize = size[i] == uint.MaxValue && huge.TryGetValue(i, out ulong h) ? h : size[i];
                ReadOnlySpan<byte> bytes;
                byte[]? rented = null;
                if (obj >= windowBase && obj + objSize <= windowBase + (ulong)windowLength)
                {
                    bytes = window.AsSpan((int)(obj - windowBase), (int)objSize);
                }
                else if (objSize <= ReadWindow)
                {
                    int want = (int)Math.Min(ReadWindow, seg.End - obj);
                    windowBase = obj;
                    windowLength = memory.Read(obj, window.AsSpan(0, want));
                    if ((ulong)windowLength < objSize)
                        continue;
                    bytes = window.AsSpan(0, (int)objSize);
                }
                else
                {
                    if (objSize > int.MaxValue)
                        continue;
                    rented = ArrayPool<byte>.Shared.Rent((int)objSize);
                    int read = memory.Read(obj, rented.AsSpan(0, (int)objSize));
                    bytes = rented.AsSpan(0, read);
                }
                layout.Visit(bytes, pointerSize, index, address, ref edges);
                if (rented is not null)
                    ArrayPool<byte>.Shared.Return(rented);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(window);
        }
    }

    private static int FirstDependentAtOrAfter((int Source, int Target)[] dependents, int first)
    {
        int lo = 0, hi = dependents.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) >> 1;
            if (dependents[mid].Source < first)
                lo = mid + 1;
            else
                hi = mid;
        }
        return lo;
    }

    /// <summary>
    /// Where one type keeps its references. Objects: fixed offsets. Arrays:
    /// the offsets within element 0, repeated every component size. Taken
    /// once per type from ClrMD's GCDesc, by walking a synthetic object whose
    /// every slot is non-zero (the walk reports exactly the pointer slots).
    /// </summary>
    private sealed class ReferenceLayout
    {
        public int[] Offsets = [];
        public bool IsArray;
        public int ComponentSize;
        public int LoaderAllocator = -1;
        public ulong LoaderAllocatorAddress;

        public bool HasReferences => Offsets.Length > 0;

        public static ReferenceLayout Of(ClrType type, IMemoryReader memory)
        {
            var layout = new ReferenceLayout();
            if (type.IsCollectible && type.LoaderAllocatorHandle != 0 && memory.ReadPointer(type.LoaderAllocatorHandle, out ulong la))
                layout.LoaderAllocatorAddress = la;
            if (!type.ContainsPointers)
                return layout;
            GCDesc gcdesc = type.GCDesc;
            if (gcdesc.IsEmpty)
                return layout;
            int baseSize = type.StaticSize;
            layout.IsArray = type.IsArray || type.ComponentSize != 0;
            layout.ComponentSize = type.ComponentSize;
            int sample = layout.IsArray ? baseSize + layout.ComponentSize : baseSize;
            var buffer = new byte[Math.Max(sample, memory.PointerSize * 3)];
            Array.Fill(buffer, (byte)1);
            layout.Offsets = gcdesc.WalkObject(buffer, sample).Select(r => r.Offset).Distinct().Order().ToArray();
            return layout;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Visit(ReadOnlySpan<byte> bytes, int pointerSize, SegmentIndex[] index, ulong[] address, ref EdgeWriter edges)
        {
            if (!IsArray)
            {
                foreach (int offset in Offsets)
                    Add(bytes, offset, pointerSize, index, address, ref edges);
                return;
            }
            if (bytes.Length < pointerSize + 4)
                return;
            long length = BinaryPrimitives.ReadUInt32LittleEndian(bytes[pointerSize..]);
            for (long k = 0; k < length; k++)
            {
                long elementBase = k * ComponentSize;
                foreach (int offset in Offsets)
                {
                    long at = elementBase + offset;
                    if (at + pointerSize > bytes.Length)
                        return;
                    Add(bytes, (int)at, pointerSize, index, address, ref edges);
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Add(ReadOnlySpan<byte> bytes, int offset, int pointerSize, SegmentIndex[] index, ulong[] address, ref EdgeWriter edges)
        {
            if (offset + pointerSize > bytes.Length)
                return;
            ulong target = pointerSize == 8
                ? BinaryPrimitives.ReadUInt64LittleEndian(bytes[offset..])
                : BinaryPrimitives.ReadUInt32LittleEndian(bytes[offset..]);
            if (target == 0)
                return;
            int t = IndexOf(index, address, target);
            if (t >= 0)
                edges.Add(t);
        }
    }

    // A dependent handle (ConditionalWeakTable) keeps its secondary object
    // alive as long as its primary is: the GC treats it as a reference from
    // primary to secondary, and so does the graph.
    private static (int Source, int Target)[] DependentEdges(ClrRuntime runtime, SegmentIndex[] index, ulong[] address)
    {
        var list = new List<(int, int)>();
        foreach (ClrHandle handle in runtime.EnumerateHandles())
        {
            if (handle.HandleKind != ClrHandleKind.Dependent)
                continue;
            int source = IndexOf(index, address, handle.Object.Address);
            int target = IndexOf(index, address, handle.Dependent.Address);
            if (source >= 0 && target >= 0)
                list.Add((source, target));
        }
        return [.. list.OrderBy(p => p.Item1)];
    }

    private static GraphRoot[] Roots(ClrRuntime runtime, SegmentIndex[] index, ulong[] address, List<string> names, CancellationToken cancel)
    {
        var roots = new List<GraphRoot>();
        foreach (ClrRoot root in runtime.Heap.EnumerateRoots())
        {
            cancel.ThrowIfCancellationRequested();
            int target = IndexOf(index, address, root.Object.Address);
            if (target < 0)
                continue;
            RootKind kind = root.RootKind switch
            {
                ClrRootKind.Stack => RootKind.Stack,
                ClrRootKind.FinalizerQueue => RootKind.FinalizerQueue,
                ClrRootKind.StrongHandle => RootKind.StrongHandle,
                ClrRootKind.PinnedHandle => RootKind.PinnedHandle,
                ClrRootKind.AsyncPinnedHandle => RootKind.AsyncPinnedHandle,
                ClrRootKind.RefCountedHandle => RootKind.RefCountedHandle,
                ClrRootKind.SizedRefHandle => RootKind.SizedRefHandle,
                ClrRootKind.ThreadStaticVar => RootKind.ThreadStatic,
                ClrRootKind.StaticVar => RootKind.StaticsBucket,
                _ => RootKind.Other,
            };
            uint thread = root is ClrStackRoot stack ? stack.StackFrame?.Thread?.OSThreadId ?? 0 : 0;
            roots.Add(new GraphRoot(target, kind, root.Address, thread, -1));
        }

        // The runtime keeps static reference fields in slots of shared
        // object arrays held by handles: reached that way, every static
        // would hang under one anonymous array. Each initialised static
        // field is a root of its own, named, as the GC sees it in effect.
        var seen = new HashSet<(ulong, ulong)>();
        foreach (ClrAppDomain domain in runtime.AppDomains)
        {
            foreach (ClrModule module in domain.Modules)
            {
                foreach (ClrType type in module.EnumerateTypesWithStaticFields())
                {
                    cancel.ThrowIfCancellationRequested();
                    foreach (ClrStaticField field in type.StaticFields)
                    {
                        if (!field.IsObjectReference || !field.IsInitialized(domain))
                            continue;
                        ulong slot = field.GetAddress(domain);
                        ClrObject value = field.ReadObject(domain);
                        if (value.Address == 0 || !seen.Add((slot, value.Address)))
                            continue;
                        int target = IndexOf(index, address, value.Address);
                        if (target < 0)
                            continue;
                        names.Add($"{TypeNames.Of(type)}.{field.Name}");
                        roots.Add(new GraphRoot(target, RootKind.StaticField, slot, 0, names.Count - 1));
                    }
                }
            }
        }
        return [.. roots];
    }
}

/// <summary>Type names as every result shows them.</summary>
internal static class TypeNames
{
    public static string Of(ClrType? type) => type switch
    {
        null => "<unknown type>",
        { IsFree: true } => "Free",
        _ => type.Name ?? $"<unnamed type 0x{type.MethodTable:x}>",
    };
}
