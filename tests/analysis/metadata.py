"""Just enough of ECMA-335 metadata (II.24) to find things in a managed
assembly's file by name: the MethodDef rows of a method, a string of the
#Strings heap. Damage tests zero the page that holds one, whatever build of
the assembly it is."""

from __future__ import annotations

import struct

# Tables (II.22) up to MethodDef, and those whose sizes the coded indexes
# before it depend on.
MODULE, TYPE_REF, TYPE_DEF, FIELD_PTR, FIELD, METHOD_PTR, METHOD_DEF = range(7)
PARAM, MODULE_REF, TYPE_SPEC, ASSEMBLY_REF = 0x08, 0x1A, 0x1B, 0x23


def _file_offset(data: bytes, rva: int) -> int:
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    (count,) = struct.unpack_from("<H", data, pe + 6)
    (optional,) = struct.unpack_from("<H", data, pe + 20)
    table = pe + 24 + optional
    for i in range(count):
        size, va, raw_size, raw = struct.unpack_from("<IIII", data, table + 40 * i + 8)
        if va <= rva < va + max(size, raw_size):
            return raw + rva - va
    raise LookupError(f"RVA 0x{rva:x} is in no section")


def streams(data: bytes) -> dict[str, int]:
    """File offset of each metadata stream ("#~", "#Strings", ...)."""
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    (magic,) = struct.unpack_from("<H", data, pe + 24)
    directories = pe + 24 + (112 if magic == 0x20B else 96)
    (clr_rva,) = struct.unpack_from("<I", data, directories + 14 * 8)
    cor20 = _file_offset(data, clr_rva)
    root = _file_offset(data, struct.unpack_from("<I", data, cor20 + 8)[0])
    assert data[root : root + 4] == b"BSJB", "no metadata root"
    (length,) = struct.unpack_from("<I", data, root + 12)
    at = root + 16 + length + 2
    (count,) = struct.unpack_from("<H", data, at)
    at += 2
    found = {}
    for _ in range(count):
        (offset,) = struct.unpack_from("<I", data, at)
        end = data.index(b"\0", at + 8)
        found[data[at + 8 : end].decode()] = root + offset
        at = (end + 4) & ~3
    return found


def string_offset(data: bytes, text: str) -> int:
    """File offset of `text` as a whole string of the #Strings heap."""
    heap = streams(data)["#Strings"]
    at = data.index(b"\0" + text.encode() + b"\0", heap)
    return at + 1


def method_def_rows(data: bytes, name: str) -> list[int]:
    """File offsets of the MethodDef rows whose Name is `name`."""
    heaps = streams(data)
    tables, strings = heaps["#~"], heaps["#Strings"]
    heap_sizes = data[tables + 6]
    (valid,) = struct.unpack_from("<Q", data, tables + 8)
    rows = {}
    at = tables + 24
    for table in range(64):
        if valid >> table & 1:
            (rows[table],) = struct.unpack_from("<I", data, at)
            at += 4

    def index(*tagged: int, tag_bits: int = 0) -> int:
        most = max(rows.get(t, 0) for t in tagged)
        return 2 if most < 1 << (16 - tag_bits) else 4

    string = 4 if heap_sizes & 1 else 2
    guid = 4 if heap_sizes & 2 else 2
    blob = 4 if heap_sizes & 4 else 2
    scope = index(MODULE, MODULE_REF, ASSEMBLY_REF, TYPE_REF, tag_bits=2)
    type_def_or_ref = index(TYPE_DEF, TYPE_REF, TYPE_SPEC, tag_bits=2)
    widths = {
        MODULE: 2 + string + 3 * guid,
        TYPE_REF: scope + 2 * string,
        TYPE_DEF: 4 + 2 * string + type_def_or_ref + index(FIELD) + index(METHOD_DEF),
        FIELD_PTR: index(FIELD),
        FIELD: 2 + string + blob,
        METHOD_PTR: index(METHOD_DEF),
    }
    for table in range(METHOD_DEF):
        at += rows.get(table, 0) * widths[table]
    width = 8 + string + blob + index(PARAM)
    wanted = name.encode() + b"\0"
    name_format = "<I" if string == 4 else "<H"
    found = []
    for row in range(rows.get(METHOD_DEF, 0)):
        offset = at + row * width
        (name_at,) = struct.unpack_from(name_format, data, offset + 8)
        if data[strings + name_at : strings + name_at + len(wanted)] == wanted:
            found.append(offset)
    return found
