using System.Collections.Immutable;
using System.Globalization;
using Microsoft.Diagnostics.Runtime;

namespace DumpScope.Engine.Analysis;

// One type's instances (`dumpheap -mt`) and one object's fields (`dumpobj`).
public sealed partial class DumpSession
{
    // The last type asked for, in both orders: paging through it re-sorts nothing.
    private (ulong Mt, Instance[] ByAddress, Instance[] BySize, ulong Unwalked)? _instanceCache;

    private struct InstanceVisitor(ulong methodTable) : IObjectVisitor
    {
        public readonly List<Instance> Found = [];

        public void Visit(ulong address, ulong mt, ClrType type, ulong size)
        {
            if (mt == methodTable)
                Found.Add(new Instance(address, size));
        }
    }


    public Instances InstancesOf(ulong methodTable, int offset, int limit, string sort, IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        ClrHeap heap = RequireHeap();
        if (offset < 0 || limit < 0 || limit > _limits.MaxPageSize)
            throw new EngineException(ErrorCodes.InvalidParams, $"offset must be >= 0 and limit between 0 and {_limits.MaxPageSize}.");
        if (sort is not ("size" or "address"))
            throw new EngineException(ErrorCodes.InvalidParams, "sort must be \"size\" or \"address\".");
        ClrType? type = _runtime.GetTypeByMethodTable(methodTable);

        if (_instanceCache is not { } cache || cache.Mt != methodTable)
        {
            var visitor = new InstanceVisitor(methodTable);
            var damage = new HeapDamageLog(0);
            var segments = heap.Segments;
            for (int i = 0; i < segments.Length; i++)
            {
                Walker.Walk(segments[i], ref visitor, cancel, damage);
                progress?.Report(new ProgressReport(i + 1, segments.Length, "looking for instances"));
            }
            Instance[] byAddress = visitor.Found.OrderBy(x => x.Address).ToArray();
            Instance[] bySize = byAddress.OrderByDescending(x => x.Size).ThenBy(x => x.Address).ToArray();
            cache = (methodTable, byAddress, bySize, damage.Bytes);
            _instanceCache = cache;
        }

        Instance[] ordered = sort == "size" ? cache.BySize : cache.ByAddress;
        int start = Math.Min(offset, ordered.Length);
        int count = Math.Min(limit, ordered.Length - start);
        return new Instances(methodTable, type is null ? null : TypeName(type), ordered.Length, offset, sort,
            ordered.AsSpan(start, count).ToImmutableArray(), cache.Unwalked);
    }


    // An address inside an object (a field, an array element, string
    // characters) names that object; free space names none.
    private static ClrObject ObjectHolding(ClrHeap heap, ulong address)
    {
        ClrObject before = heap.FindPreviousObjectOnSegment(address);
        bool holds = before.IsValid && before.Type is { IsFree: false } && address < before.Address + before.Size;
        return holds ? before : default;
    }

    public ObjectDetail ObjectAt(ulong address)
    {
        ClrHeap heap = RequireHeap();
        ClrObject obj = heap.GetObject(address);
        if (!obj.IsValid || obj.Type is null)
            obj = ObjectHolding(heap, address);
        if (!obj.IsValid || obj.Type is null)
            throw new EngineException(ErrorCodes.NotFound, $"0x{address:x} is not in a managed object of this dump.");
        ClrType type = obj.Type;
        ClrSegment? segment = heap.GetSegmentByAddress(address);
        string generation = segment is null ? "unknown" : segment.GetGeneration(address) switch
        {
            Generation.Generation0 => "gen0",
            Generation.Generation1 => "gen1",
            Generation.Generation2 => "gen2",
            Generation.Large => "loh",
            Generation.Pinned => "poh",
            Generation.Frozen => "frozen",
            _ => "unknown",
        };

        var fields = ImmutableArray.CreateBuilder<FieldValue>();
        bool truncated = false;
        foreach (ClrInstanceField field in type.Fields)
        {
            if (fields.Count == _limits.MaxFields)
            {
                truncated = true;
                break;
            }
            fields.Add(ReadField(field.Name ?? "<unnamed>", field.Type, field.ElementType, field.Offset, field.GetAddress(obj.Address), field.Size));
        }

        string? text = null;
        if (type.IsString)
            text = obj.AsString(_limits.MaxStringChars);

        int? length = null;
        var elements = ImmutableArray.CreateBuilder<FieldValue>();
        if (obj.IsArray)
        {
            ClrArray array = obj.AsArray();
            length = array.Length;
            ClrType? component = type.ComponentType;
            int shown = Math.Min(array.Length, _limits.MaxArrayElements);
            truncated |= shown < array.Length;
            for (int i = 0; i < shown && array.Rank == 1; i++)
            {
                ulong at = type.GetArrayElementAddress(obj.Address, i);
                elements.Add(ReadField($"[{i}]", component, component?.ElementType ?? ClrElementType.Unknown, i * type.ComponentSize, at, type.ComponentSize));
            }
        }

        return new ObjectDetail(obj.Address, type.MethodTable, TypeName(type), obj.Size, generation, obj.IsArray, length, text,
            fields.ToImmutable(), elements.ToImmutable(), truncated);
    }

    private FieldValue ReadField(string name, ClrType? type, ClrElementType element, int offset, ulong at, int size)
    {
        string typeName = type?.Name ?? element.ToString();
        if (element is ClrElementType.Class or ClrElementType.Object or ClrElementType.String or ClrElementType.Array or ClrElementType.SZArray)
        {
            if (!_target.DataReader.ReadPointer(at, out ulong target))
                return new FieldValue(name, typeName, offset, "reference", null, null, null);
            if (target == 0)
                return new FieldValue(name, typeName, offset, "reference", "null", 0, null);
            ClrObject referenced = _runtime.Heap.GetObject(target);
            string? value = referenced.Type?.IsString == true ? referenced.AsString(_limits.MaxStringChars) : null;
            return new FieldValue(name, typeName, offset, "reference", value, target, referenced.Type is null ? null : TypeName(referenced.Type));
        }
        if (type is { IsEnum: true })
            return new FieldValue(name, typeName, offset, "value", ReadEnum(type, at), null, null);
        if (element == ClrElementType.Struct)
        {
            return WellKnownValue(type, at) is { } text
                ? new FieldValue(name, typeName, offset, "value", text, null, null)
                : new FieldValue(name, typeName, offset, "struct", null, at, null);
        }
        return new FieldValue(name, typeName, offset, "value", ReadPrimitive(at, element, size), null, null);
    }

    // The value types people read as values, formatted as .NET prints them
    // (invariant culture, round-trip forms). Fields are found by name, so the
    // .NET Framework layouts (flags/hi/lo/mid, dateData) read as well.
    private string? WellKnownValue(ClrType? type, ulong at)
    {
        var inv = CultureInfo.InvariantCulture;
        switch (type?.Name)
        {
            case "System.Decimal":
            {
                if (StructField(type, at, "_flags", "flags") is not { } flags || StructField(type, at, "_hi32", "hi") is not { } hi)
                    return null;
                ulong low;
                if (StructField(type, at, "_lo64") is { } lo64)
                    low = lo64;
                else if (StructField(type, at, "lo") is { } lo && StructField(type, at, "mid") is { } mid)
                    low = (uint)lo | ((ulong)(uint)mid << 32);
                else
                    return null;
                try
                {
                    return new decimal([(int)(uint)low, (int)(uint)(low >> 32), (int)(uint)hi, (int)(uint)flags]).ToString(inv);
                }
                catch (ArgumentException)
                {
                    return null;
                }
            }
            case "System.DateTime":
            {
                if (StructField(type, at, "_dateData", "dateData") is not { } data)
                    return null;
                long ticks = (long)(data & 0x3FFF_FFFF_FFFF_FFFF);
                if (ticks > DateTime.MaxValue.Ticks)
                    return null;
                // Kind bits: 0 unspecified, 1 UTC, 2 and 3 local. A local time's
                // offset is the dumped machine's, which the dump does not say.
                return (data >> 62) switch
                {
                    0 => new DateTime(ticks, DateTimeKind.Unspecified).ToString("o", inv),
                    1 => new DateTime(ticks, DateTimeKind.Utc).ToString("o", inv),
                    _ => new DateTime(ticks, DateTimeKind.Unspecified).ToString("o", inv) + " (local)",
                };
            }
            case "System.TimeSpan":
                return StructField(type, at, "_ticks") is { } t ? TimeSpan.FromTicks((long)t).ToString("c", inv) : null;
            case "System.Guid":
            {
                Span<byte> bytes = stackalloc byte[16];
                return _target.DataReader.Read(at, bytes) == 16 ? new Guid(bytes).ToString("D") : null;
            }
            default:
                return null;
        }
    }

    private ulong? StructField(ClrType type, ulong at, params string[] names)
    {
        ClrInstanceField? field = type.Fields.FirstOrDefault(f => names.Contains(f.Name));
        if (field is null || field.Size is not (4 or 8))
            return null;
        Span<byte> bytes = stackalloc byte[8];
        bytes.Clear();
        if (_target.DataReader.Read(at + (ulong)field.Offset, bytes[..field.Size]) != field.Size)
            return null;
        return BitConverter.ToUInt64(bytes);
    }

    private static ulong? EnumBits(object? value) => value switch
    {
        sbyte v => (byte)v,
        short v => (ushort)v,
        int v => (uint)v,
        long v => (ulong)v,
        byte v => v,
        ushort v => v,
        uint v => v,
        ulong v => v,
        char v => v,
        bool v => v ? 1UL : 0UL,
        _ => null,
    };

    // The member name, or names joined as .NET joins [Flags] values ("Retry,
    // Notify"), or the number when no combination of members makes it.
    private string? ReadEnum(ClrType type, ulong at)
    {
        ClrEnum enumType = type.AsEnum();
        int size = enumType.ElementType switch
        {
            ClrElementType.Int8 or ClrElementType.UInt8 or ClrElementType.Boolean => 1,
            ClrElementType.Int16 or ClrElementType.UInt16 or ClrElementType.Char => 2,
            ClrElementType.Int64 or ClrElementType.UInt64 => 8,
            _ => 4,
        };
        Span<byte> bytes = stackalloc byte[8];
        bytes.Clear();
        if (_target.DataReader.Read(at, bytes[..size]) != size)
            return null;
        ulong mask = size == 8 ? ulong.MaxValue : (1UL << (size * 8)) - 1;
        ulong raw = BitConverter.ToUInt64(bytes) & mask;
        bool signed = enumType.ElementType is ClrElementType.Int8 or ClrElementType.Int16 or ClrElementType.Int32 or ClrElementType.Int64;
        string number = signed
            ? (((long)(raw << (64 - size * 8))) >> (64 - size * 8)).ToString(CultureInfo.InvariantCulture)
            : raw.ToString(CultureInfo.InvariantCulture);
        var members = enumType.EnumerateValues()
            .Select(v => (v.Name, Value: EnumBits(v.Value) & mask, Known: EnumBits(v.Value) is not null))
            .Where(m => m.Known)
            .Select(m => (m.Name, Value: m.Value!.Value))
            .ToList();
        if (members.FirstOrDefault(m => m.Value == raw) is { Name: not null } exact)
            return exact.Name;
        var parts = members.Where(m => m.Value != 0 && (raw & m.Value) == m.Value).OrderBy(m => m.Value).ToList();
        ulong covered = parts.Aggregate(0UL, (acc, m) => acc | m.Value);
        return raw != 0 && covered == raw ? string.Join(", ", parts.Select(m => m.Name)) : number;
    }

    private string? ReadPrimitive(ulong at, ClrElementType element, int size)
    {
        Span<byte> buffer = stackalloc byte[8];
        int want = element switch
        {
            ClrElementType.Boolean or ClrElementType.Int8 or ClrElementType.UInt8 => 1,
            ClrElementType.Char or ClrElementType.Int16 or ClrElementType.UInt16 => 2,
            ClrElementType.Int32 or ClrElementType.UInt32 or ClrElementType.Float => 4,
            ClrElementType.Int64 or ClrElementType.UInt64 or ClrElementType.Double => 8,
            ClrElementType.NativeInt or ClrElementType.NativeUInt or ClrElementType.Pointer or ClrElementType.FunctionPointer => _target.DataReader.PointerSize,
            _ => Math.Clamp(size, 0, 8),
        };
        if (want == 0 || _target.DataReader.Read(at, buffer[..want]) != want)
            return null;
        var b = buffer[..want];
        var inv = CultureInfo.InvariantCulture;
        return element switch
        {
            ClrElementType.Boolean => (b[0] != 0) ? "true" : "false",
            ClrElementType.Int8 => ((sbyte)b[0]).ToString(inv),
            ClrElementType.UInt8 => b[0].ToString(inv),
            ClrElementType.Char => ((int)BitConverter.ToChar(b)).ToString(inv),
            ClrElementType.Int16 => BitConverter.ToInt16(b).ToString(inv),
            ClrElementType.UInt16 => BitConverter.ToUInt16(b).ToString(inv),
            ClrElementType.Int32 => BitConverter.ToInt32(b).ToString(inv),
            ClrElementType.UInt32 => BitConverter.ToUInt32(b).ToString(inv),
            ClrElementType.Float => BitConverter.ToSingle(b).ToString("R", inv),
            ClrElementType.Int64 => BitConverter.ToInt64(b).ToString(inv),
            ClrElementType.UInt64 => BitConverter.ToUInt64(b).ToString(inv),
            ClrElementType.Double => BitConverter.ToDouble(b).ToString("R", inv),
            _ => want == 8 ? $"0x{BitConverter.ToUInt64(b):x}" : want == 4 ? $"0x{BitConverter.ToUInt32(b):x}" : Convert.ToHexString(b),
        };
    }
}
