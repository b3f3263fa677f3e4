"""Avro single-object encoding, written from the Avro specification alone.

A single-object encoded value is the two marker bytes C3 01, the 8-byte
little-endian CRC-64-AVRO (Rabin) fingerprint of the writer schema's Parsing
Canonical Form, then the Avro binary encoding of the datum. fastavro supplies
the canonical form, the fingerprint and the binary datum coding; this module
only frames and unframes.

Logical types are left out of the datum coding on purpose: the binary encoding
of a `string` with logicalType uuid is that of a plain string, and a test
client must be able to send a requestId that is not a UUID (and read the
Result that echoes it) without its own library refusing first. The logical
types do not take part in the Parsing Canonical Form either, so the fingerprint
is the one of the schema file as written.
"""

import copy
import io
import json
import os

import fastavro
import fastavro.schema

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8


class FramingError(ValueError):
    """A value that is not a single-object encoded datum of a known schema."""


def _strip_logical_types(node):
    """A copy of a JSON schema with every logicalType attribute removed."""
    if isinstance(node, dict):
        return {k: _strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical_types(v) for v in node]
    return node


class AvroSchema:
    """One schema file: its canonical form, fingerprint and datum coder."""

    def __init__(self, schema_json):
        self.json = copy.deepcopy(schema_json)
        self.full_name = "%s.%s" % (schema_json["namespace"], schema_json["name"])
        parsed_full = fastavro.parse_schema(copy.deepcopy(schema_json))
        self.canonical_form = fastavro.schema.to_parsing_canonical_form(parsed_full)
        fp_hex = fastavro.schema.fingerprint(self.canonical_form, "CRC-64-AVRO")
        # fastavro gives the eight fingerprint bytes in little-endian order,
        # which is the order single-object encoding puts on the wire.
        self.fingerprint = bytes.fromhex(fp_hex)
        if len(self.fingerprint) != 8:
            raise ValueError("CRC-64-AVRO fingerprint is not 8 bytes: %r" % fp_hex)
        self.fingerprint_int = int.from_bytes(self.fingerprint, "little")
        self._coder = fastavro.parse_schema(_strip_logical_types(copy.deepcopy(schema_json)))

    @classmethod
    def from_file(cls, path):
        with open(path, "r", encoding="utf-8") as f:
            return cls(json.load(f))

    @property
    def header(self):
        return MAGIC + self.fingerprint

    def encode_datum(self, datum):
        """The Avro binary encoding of the datum, without any framing."""
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self._coder, datum)
        return buf.getvalue()

    def encode(self, datum):
        """The single-object encoding of the datum."""
        return self.header + self.encode_datum(datum)

    def decode(self, value):
        """The datum of a single-object encoded value written with this schema.

        Raises FramingError when the marker or fingerprint is wrong, or when
        the datum does not use up the value exactly.
        """
        if value is None or len(value) < HEADER_SIZE:
            raise FramingError("value shorter than the single-object header")
        if value[:2] != MAGIC:
            raise FramingError("bad marker %s" % value[:2].hex())
        if value[2:HEADER_SIZE] != self.fingerprint:
            raise FramingError(
                "fingerprint %s is not %s's %s"
                % (value[2:HEADER_SIZE].hex(), self.full_name, self.fingerprint.hex())
            )
        buf = io.BytesIO(value[HEADER_SIZE:])
        datum = fastavro.schemaless_reader(buf, self._coder, None)
        rest = len(value) - HEADER_SIZE - buf.tell()
        if rest != 0:
            raise FramingError("%d trailing bytes after the datum" % rest)
        return datum


class SchemaSet:
    """The schemas of a folder, by full name and by fingerprint."""

    def __init__(self, folder):
        self.by_name = {}
        self.by_fingerprint = {}
        for entry in sorted(os.listdir(folder)):
            if not entry.endswith(".avsc"):
                continue
            schema = AvroSchema.from_file(os.path.join(folder, entry))
            self.by_name[schema.full_name] = schema
            if schema.fingerprint in self.by_fingerprint:
                raise ValueError("two schemas share fingerprint %s" % schema.fingerprint.hex())
            self.by_fingerprint[schema.fingerprint] = schema

    def __getitem__(self, short_or_full_name):
        if short_or_full_name in self.by_name:
            return self.by_name[short_or_full_name]
        for name, schema in self.by_name.items():
            if name.rsplit(".", 1)[-1] == short_or_full_name:
                return schema
        raise KeyError(short_or_full_name)

    def decode_any(self, value):
        """(schema, datum) of a value written with any schema of the set."""
        if value is None or len(value) < HEADER_SIZE or value[:2] != MAGIC:
            raise FramingError("not a single-object encoded value")
        schema = self.by_fingerprint.get(value[2:HEADER_SIZE])
        if schema is None:
            raise FramingError("unknown fingerprint %s" % value[2:HEADER_SIZE].hex())
        return schema, schema.decode(value)
