"""The wire format of the provisioning topics, in Python.

This module is written from the contract and the Avro specification alone and
shares no code with the C service, so that the tests check the service
against an independent implementation:

- every value is Avro single-object encoded: the two bytes C3 01, the 8-byte
  little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing
  Canonical Form, then the schemaless Avro binary datum;
- the schemas are read from the repository's ``schemas/*.avsc``.

Logical types (uuid, timestamp-millis) are kept as their plain Avro types
when reading and writing, so that a test sees exactly what is on the wire:
``requestId`` is the string that was sent (even when it is not a UUID) and
``processedAt`` is the integer number of milliseconds.

API:

- ``SCHEMAS``: name -> ``Schema`` (``name``, ``fingerprint`` (8 bytes, as on
  the wire), ``canonical_form``, ``parsed``), for every file in ``schemas/``;
  ``REQUEST`` and ``RESPONSE`` are the current request and response schemas.
- ``encode(schema, datum) -> bytes``, ``decode(data, expect=None) -> (schema,
  datum)``.
- ``encode_request(dict) -> bytes``, ``decode_request(bytes) -> dict``,
  ``decode_response(bytes) -> dict``, ``encode_response(dict) -> bytes``.
- ``header(schema) -> bytes``: the 10-byte single-object header.
- ``service(id, fmt='JWK', version=None, content=None) -> dict``: one
  ``ValServiceInfo``.
- ``request(requester, token, services, endpoint=None, request_id=None,
  sent_at=None, supp_feat=None) -> dict``: a request with a random v4
  ``requestId`` and ``sentAt`` now in milliseconds.
- ``crc64_avro(data) -> int``: the Rabin fingerprint, computed here from its
  definition (a cross-check of fastavro's).
- ``avro_long(n)``, ``avro_string(s)``: raw Avro binary pieces, for building
  broken values by hand.
"""

import copy
import io
import json
import os
import struct
import time
import uuid
from dataclasses import dataclass

import fastavro
import fastavro.schema

MAGIC = b"\xc3\x01"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA_DIR = os.path.join(REPO, "schemas")

REQUEST_NAME = "org.threegpp.seal.km.v1.ValServerProvisioningRequest"
RESPONSE_NAME = "org.threegpp.seal.km.v1.ValServerProvisioningResponse"

KEY_FORMAT_TYPES = ("RAW", "OPAQUE", "PKCS1", "PKCS8", "X509", "EC_PRIVATE_KEY",
                    "TRANSPARENT_SYMMETRIC_KEY", "JWK", "MIKEY_SAKKE")
CAUSES = ("INVALID_REQUEST", "UNAUTHORIZED", "NOT_ALLOWED_BY_SLA", "KEY_FORMAT_NOT_ALLOWED",
          "REQUEST_ID_CONFLICT", "INTERNAL_ERROR")


# ---------------------------------------------------------------- fingerprint

_CRC64_EMPTY = 0xC15D213AA4D7A795


def _crc64_table():
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_CRC64_EMPTY & -(fp & 1))
        table.append(fp)
    return table


_CRC64_TABLE = _crc64_table()


def crc64_avro(data):
    """The CRC-64-AVRO (Rabin) fingerprint of bytes, as an unsigned int."""
    fp = _CRC64_EMPTY
    for b in data:
        fp = (fp >> 8) ^ _CRC64_TABLE[(fp ^ b) & 0xFF]
    return fp


# ---------------------------------------------------------------- schemas


def _strip_logical_types(node):
    """A copy of a schema without logicalType annotations: the datum is then
    read and written as its plain Avro type."""
    if isinstance(node, dict):
        return {k: _strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical_types(v) for v in node]
    return node


@dataclass(frozen=True)
class Schema:
    name: str             # full name, e.g. org.threegpp.seal.km.v1.ValServerProvisioningRequest
    path: str             # the .avsc file
    canonical_form: str   # Parsing Canonical Form
    fingerprint: bytes    # 8 bytes, little-endian, as framed on the wire
    parsed: object        # fastavro's parsed schema, logical types stripped

    def header(self):
        return MAGIC + self.fingerprint


def _load_schemas():
    out = {}
    by_fp = {}
    for fn in sorted(os.listdir(SCHEMA_DIR)):
        if not fn.endswith(".avsc"):
            continue
        path = os.path.join(SCHEMA_DIR, fn)
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        canonical = fastavro.schema.to_parsing_canonical_form(
            fastavro.parse_schema(copy.deepcopy(raw)))
        fp_hex = fastavro.schema.fingerprint(canonical, "CRC-64-AVRO")
        fp = bytes.fromhex(fp_hex)
        # fastavro prints the fingerprint's little-endian bytes; check that
        # against the definition so that a change of convention is caught.
        own = struct.pack("<Q", crc64_avro(canonical.encode("utf-8")))
        if own != fp:
            raise RuntimeError(f"fingerprint mismatch for {fn}: fastavro {fp_hex}, "
                               f"Rabin {own.hex()}")
        parsed = fastavro.parse_schema(_strip_logical_types(raw), _write_hint=False)
        name = parsed["name"] if isinstance(parsed, dict) else fn
        s = Schema(name=name, path=path, canonical_form=canonical, fingerprint=fp,
                   parsed=parsed)
        if fp in by_fp:
            raise RuntimeError(f"{fn} and {by_fp[fp].path} share a fingerprint")
        by_fp[fp] = s
        # A later file of the same name (a newer version) does not hide the
        # older one from decode(), which looks up by fingerprint.
        out.setdefault(name, s)
    return out, by_fp


SCHEMAS, SCHEMAS_BY_FINGERPRINT = _load_schemas()
REQUEST = SCHEMAS[REQUEST_NAME]
RESPONSE = SCHEMAS[RESPONSE_NAME]


def header(schema):
    return schema.header()


# ---------------------------------------------------------------- framing


def encode(schema, datum):
    buf = io.BytesIO()
    buf.write(schema.header())
    fastavro.schemaless_writer(buf, schema.parsed, datum)
    return buf.getvalue()


class WireError(ValueError):
    pass


def decode(data, expect=None):
    """Split and decode a single-object value. Returns (schema, datum).
    expect: a Schema the value must use. Raises WireError."""
    if len(data) < 10:
        raise WireError(f"value of {len(data)} bytes is shorter than the 10-byte header")
    if data[:2] != MAGIC:
        raise WireError(f"bad magic {data[:2].hex()}")
    schema = SCHEMAS_BY_FINGERPRINT.get(bytes(data[2:10]))
    if schema is None:
        raise WireError(f"unknown fingerprint {bytes(data[2:10]).hex()}")
    if expect is not None and schema.name != expect.name:
        raise WireError(f"expected {expect.name}, got {schema.name}")
    buf = io.BytesIO(data[10:])
    try:
        datum = fastavro.schemaless_reader(buf, schema.parsed)
    except Exception as e:  # fastavro raises EOFError, ValueError, ...
        raise WireError(f"datum does not decode: {type(e).__name__}: {e}") from e
    rest = len(data) - 10 - buf.tell()
    if rest:
        raise WireError(f"{rest} trailing bytes after the datum")
    return schema, datum


def encode_request(req):
    return encode(REQUEST, req)


def decode_request(data):
    return decode(data, REQUEST)[1]


def encode_response(resp):
    return encode(RESPONSE, resp)


def decode_response(data):
    return decode(data, RESPONSE)[1]


# ---------------------------------------------------------------- raw pieces


def avro_long(n):
    """Avro's zig-zag varint encoding of a long."""
    z = (n << 1) ^ (n >> 63)
    z &= (1 << 64) - 1
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def avro_string(s):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return avro_long(len(b)) + b


# ---------------------------------------------------------------- builders


def now_ms():
    return int(time.time() * 1000)


def service(service_id, fmt="JWK", version=None, content=None):
    """One ValServiceInfo."""
    if content is None:
        content = {"alg": "A256GCM", "kty": "oct", "use": "enc"} if fmt == "JWK" else {}
    return {
        "valServiceId": service_id,
        "keyFormat": {"formatType": fmt, "formatVersion": version, "content": dict(content)},
    }


def request(requester, token, services, endpoint=None, request_id=None, sent_at=None,
            supp_feat=None):
    """A ValServerProvisioningRequest as a dict. services: a list of dicts
    from service(), or of (id, fmt) pairs."""
    svcs = []
    for s in services:
        svcs.append(service(*s) if isinstance(s, tuple) else s)
    return {
        "requestId": request_id if request_id is not None else str(uuid.uuid4()),
        "requesterIdentity": requester,
        "endpoint": endpoint if endpoint is not None else f"https://{requester}.vals.test/seal",
        "credentials": {"accessToken": token},
        "valServices": svcs,
        "sentAt": sent_at if sent_at is not None else now_ms(),
        "suppFeat": supp_feat,
    }
