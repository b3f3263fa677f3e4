"""Hostile input for the security tests: values and tokens built by hand.

Values
------
A valid request is laid out by ``layout(req)`` as the ordered pieces of its
Avro single-object encoding, each named, so that a test can change exactly
one piece (a length, a branch index, the bytes of one string) and know where
in the value the change sits. The layout follows the Avro specification
(zig-zag varints; a string is its byte length then its bytes; an array or map
is blocks of a count and items, ended by a zero count; a union is the branch
index then the branch's value; an enum is the symbol's index) and the order of
the fields in ``schemas/ValServerProvisioningRequest.avsc``:

    magic, fingerprint,
    requestId, requesterIdentity, endpoint, credentials.accessToken,
    valServices (count, then per service: valServiceId, keyFormat.formatType,
        keyFormat.formatVersion (branch [+ string]), keyFormat.content (count,
        key/value strings, end)), end,
    sentAt, suppFeat (branch [+ string])

``layout()`` checks itself against ``kmswire.encode_request`` (fastavro), so
a test never runs on a layout that does not match the real encoding.

Piece names: ``magic``, ``fingerprint``, ``requestId.len``, ``requestId``,
the same for ``requesterIdentity``, ``endpoint`` and ``accessToken``;
``valServices.count``; ``valServices[i].valServiceId.len`` and
``valServices[i].valServiceId``; ``valServices[i].formatType``;
``valServices[i].formatVersion.branch`` (and ``.len`` / the string itself
when not null); ``valServices[i].content.count``,
``valServices[i].content[k].key.len`` / ``.key`` / ``.value.len`` /
``.value``, ``valServices[i].content.end``; ``valServices.end``; ``sentAt``;
``suppFeat.branch`` (and ``suppFeat.len`` / ``suppFeat``).

Tokens
------
``b64u()``, ``es256_token(key, header, payload)`` (header and payload as
bytes, used verbatim, or as dicts), ``es256_signature(key, signing_input)``,
``hs256_token(secret, header, payload)``.

Checks shared by the security tests
-----------------------------------
``send_all(kms, values, key, headers)``: produce many values at once and
return their coordinates. ``assert_dlq_record(kms, rec, sent_value, coords,
...)``: the DLQ record keeps key, value and headers and adds Kafka Connect's
error headers with the right coordinates. ``assert_nothing_stored(kms,
identity)``, ``audit_at(kms, coords)``, ``decision_rows(kms, request_id)``,
``serve_next(kms, identity, vsp)``: the KM-S still answers a valid request
of the same VAL server (same partition, so it comes after what was sent
before). ``valserver``, ``history``, ``audit``, ``decision`` read kmsctl's
JSON (the shapes are in services/kmsctl/main.c and its cmd_*.c).
"""

import base64
import hashlib
import hmac
import json
import re
import time

from confluent_kafka import Producer
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

import kmswire

# ---------------------------------------------------------------- values

KEY_FORMAT_INDEX = {name: i for i, name in enumerate(kmswire.KEY_FORMAT_TYPES)}


class Layout:
    """The named pieces of one encoded value, in order."""

    def __init__(self, pieces):
        self.pieces = list(pieces)  # [(name, bytes)]

    def names(self):
        return [n for n, _ in self.pieces]

    def _index(self, name):
        for i, (n, _) in enumerate(self.pieces):
            if n == name:
                return i
        raise KeyError(name)

    def get(self, name):
        return self.pieces[self._index(name)][1]

    def start(self, name):
        """Byte offset of the piece in the value."""
        i = self._index(name)
        return sum(len(b) for _, b in self.pieces[:i])

    def end(self, name):
        i = self._index(name)
        return sum(len(b) for _, b in self.pieces[:i + 1])

    def value(self):
        return b"".join(b for _, b in self.pieces)

    def replace(self, name, data):
        """A new layout with the piece's bytes replaced."""
        i = self._index(name)
        p = list(self.pieces)
        p[i] = (name, bytes(data))
        return Layout(p)

    def replace_many(self, changes):
        out = self
        for name, data in changes.items():
            out = out.replace(name, data)
        return out

    def insert_after(self, name, new_name, data):
        i = self._index(name)
        p = list(self.pieces)
        p.insert(i + 1, (new_name, bytes(data)))
        return Layout(p)

    def set_string(self, name, raw):
        """Replace a string's bytes and its length prefix together, so that
        only the content changes (raw: the new bytes, any bytes at all)."""
        return self.replace_many({name + ".len": kmswire.avro_long(len(raw)), name: raw})

    def __len__(self):
        return sum(len(b) for _, b in self.pieces)


def _string(pieces, name, s):
    b = s.encode("utf-8")
    pieces.append((name + ".len", kmswire.avro_long(len(b))))
    pieces.append((name, b))


def layout(req):
    """The layout of kmswire.encode_request(req); checked against it."""
    p = [("magic", kmswire.MAGIC), ("fingerprint", kmswire.REQUEST.fingerprint)]
    _string(p, "requestId", req["requestId"])
    _string(p, "requesterIdentity", req["requesterIdentity"])
    _string(p, "endpoint", req["endpoint"])
    _string(p, "accessToken", req["credentials"]["accessToken"])
    services = req["valServices"]
    if services:
        p.append(("valServices.count", kmswire.avro_long(len(services))))
    for i, s in enumerate(services):
        base = f"valServices[{i}]"
        kf = s["keyFormat"]
        _string(p, base + ".valServiceId", s["valServiceId"])
        p.append((base + ".formatType", kmswire.avro_long(KEY_FORMAT_INDEX[kf["formatType"]])))
        if kf.get("formatVersion") is None:
            p.append((base + ".formatVersion.branch", kmswire.avro_long(0)))
        else:
            p.append((base + ".formatVersion.branch", kmswire.avro_long(1)))
            _string(p, base + ".formatVersion", kf["formatVersion"])
        content = kf.get("content") or {}
        if content:
            p.append((base + ".content.count", kmswire.avro_long(len(content))))
            for k, (ck, cv) in enumerate(content.items()):
                _string(p, f"{base}.content[{k}].key", ck)
                _string(p, f"{base}.content[{k}].value", cv)
        p.append((base + ".content.end", kmswire.avro_long(0)))
    p.append(("valServices.end", kmswire.avro_long(0)))
    p.append(("sentAt", kmswire.avro_long(req["sentAt"])))
    if req.get("suppFeat") is None:
        p.append(("suppFeat.branch", kmswire.avro_long(0)))
    else:
        p.append(("suppFeat.branch", kmswire.avro_long(1)))
        _string(p, "suppFeat", req["suppFeat"])
    lay = Layout(p)
    real = kmswire.encode_request(req)
    if lay.value() != real:
        raise AssertionError("hostile.layout does not match fastavro's encoding")
    return lay


def negative_block(lay, name_count, items_from, items_to):
    """Rewrite an array or map block to Avro's other form: a negative count
    followed by the block's size in bytes (valid Avro). items_from /
    items_to: the names of the first and last piece of the block's items.
    byte_size may be overridden by the caller afterwards ("<count>.size")."""
    count = _read_long(lay.get(name_count))
    size = lay.start(items_to) + len(lay.get(items_to)) - lay.start(items_from)
    out = lay.replace(name_count, kmswire.avro_long(-count))
    return out.insert_after(name_count, name_count + ".size", kmswire.avro_long(size))


def _read_long(b):
    shift = 0
    z = 0
    for byte in b:
        z |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return (z >> 1) ^ -(z & 1)


def pad_request_to(req, size, entry="pad"):
    """A copy of req whose encoding is exactly size bytes, by the length of
    a content entry of its first service (added if missing)."""
    out = json.loads(json.dumps(req))
    content = out["valServices"][0]["keyFormat"]["content"]
    content[entry] = ""
    base = len(kmswire.encode_request(out))
    if base > size:
        raise ValueError(f"the request is already {base} bytes, more than {size}")
    n = size - base
    # the length prefix grows with the string: step back until it fits
    for guess in range(n, max(n - 10, -1), -1):
        content[entry] = "p" * guess
        if len(kmswire.encode_request(out)) == size:
            return out
    raise ValueError(f"cannot pad the request to exactly {size} bytes")


# ---------------------------------------------------------------- tokens


def b64u(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_bytes(part):
    if isinstance(part, (bytes, bytearray)):
        return bytes(part)
    return json.dumps(part, separators=(",", ":")).encode("utf-8")


def es256_signature(key, signing_input):
    """The base64url ES256 signature (r || s, 64 bytes) of signing_input,
    whatever those bytes are."""
    r, s = decode_dss_signature(key.sign(bytes(signing_input), ec.ECDSA(hashes.SHA256())))
    return b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def es256_token(key, header, payload):
    """A compact JWS over header and payload exactly as given (bytes used
    verbatim; a dict is serialised), signed ES256 with key."""
    signing_input = b64u(_json_bytes(header)) + "." + b64u(_json_bytes(payload))
    return signing_input + "." + es256_signature(key, signing_input.encode())


def hs256_token(secret, header, payload):
    """A compact JWS with an HMAC-SHA256 signature keyed by secret."""
    signing_input = (b64u(_json_bytes(header)) + "." + b64u(_json_bytes(payload))).encode()
    mac = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return signing_input.decode() + "." + b64u(mac)


# ---------------------------------------------------------------- Kafka


def send_all(kms, values, key, headers=None, producer_conf=None, topic=None):
    """Produce values (bytes or None) in order with one flush; returns their
    (topic, partition, offset) in the same order."""
    conf = {"bootstrap.servers": kms.stack.bootstrap, "partitioner": "murmur2_random",
            "linger.ms": 5, "enable.idempotence": True}
    conf.update(producer_conf or {})
    p = Producer(conf)
    coords = [None] * len(values)
    errors = []

    def cb(i):
        def on_delivery(err, msg):
            if err is not None:
                errors.append((i, err))
            else:
                coords[i] = (msg.topic(), msg.partition(), msg.offset())
        return on_delivery

    if isinstance(key, str):
        key = key.encode("utf-8")
    for i, v in enumerate(values):
        kw = {"value": v, "key": key, "on_delivery": cb(i)}
        if headers:
            kw["headers"] = list(headers.items()) if isinstance(headers, dict) else headers
        while True:
            try:
                p.produce(topic or kms.requests_topic, **kw)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    left = p.flush(60)
    assert left == 0, f"{left} values not acknowledged"
    assert not errors, f"produce failed: {errors[:3]}"
    return coords


CONNECT_HEADERS = ("__connect.errors.topic", "__connect.errors.partition",
                   "__connect.errors.offset", "__connect.errors.stage",
                   "__connect.errors.exception.class.name",
                   "__connect.errors.exception.message")
# Kafka Connect's ErrorHandlingMetrics / Stage enum
CONNECT_STAGES = {"KEY_CONVERTER", "VALUE_CONVERTER", "HEADER_CONVERTER", "TRANSFORMATION",
                  "TASK_PUT", "TASK_POLL", "KAFKA_PRODUCE", "KAFKA_CONSUME"}
JAVA_CLASS = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.[A-Z][A-Za-z0-9_$]*$")


def dlq_by_offset(kms, coords_list, timeout=60.0):
    """Wait for one DLQ record per coordinate; returns {coords: [Record]}
    matched by the __connect.errors.* headers."""
    want = set(coords_list)
    rd = kms.reader

    def index():
        out = {}
        for r in rd.records[kms.dlq_topic]:
            h = r.headers
            try:
                c = (h["__connect.errors.topic"].decode(),
                     int(h["__connect.errors.partition"]),
                     int(h["__connect.errors.offset"]))
            except (KeyError, ValueError):
                continue
            out.setdefault(c, []).append(r)
        return out

    deadline = time.monotonic() + timeout
    while True:
        idx = index()
        if want <= set(idx):
            return {c: idx[c] for c in want}
        if time.monotonic() > deadline:
            missing = sorted(want - set(idx))
            raise AssertionError(f"{len(missing)} of {len(want)} DLQ records missing after "
                                 f"{timeout:.0f}s, e.g. {missing[:3]}; log tail:\n"
                                 + "\n".join(kms.log_text().splitlines()[-20:]))
        rd.pump(0.2)


def assert_dlq_record(rec, sent_value, sent_key, coords, sent_headers=(), token=None):
    """The DLQ record keeps the original key, value and headers, and adds
    Kafka Connect's error headers naming where the value came from."""
    topic, partition, offset = coords
    assert rec.key == (sent_key.encode() if isinstance(sent_key, str) else sent_key), \
        f"DLQ key {rec.key!r}"
    assert (rec.value or b"") == (sent_value or b""), "the DLQ value is not the original"
    names = [n for n, _ in rec.header_list]
    # the original headers first, untouched and in order
    orig = [(n, v) for n, v in rec.header_list if not n.startswith("__connect.errors.")]
    assert orig == [(n, v if isinstance(v, bytes) else v.encode()) for n, v in sent_headers], \
        f"original headers changed: {orig!r}"
    for h in CONNECT_HEADERS:
        assert names.count(h) == 1, f"{h} appears {names.count(h)} times in {names}"
    h = rec.headers
    assert h["__connect.errors.topic"].decode() == topic
    assert int(h["__connect.errors.partition"]) == partition
    assert int(h["__connect.errors.offset"]) == offset
    assert h["__connect.errors.stage"].decode() in CONNECT_STAGES, h["__connect.errors.stage"]
    assert JAVA_CLASS.match(h["__connect.errors.exception.class.name"].decode()), \
        h["__connect.errors.exception.class.name"]
    msg = h["__connect.errors.exception.message"].decode("utf-8")
    assert 3 <= len(msg) <= 1000 and "\n" not in msg, f"exception message {msg!r}"
    # what the KM-S added quotes no JWS part ("eyJ" starts the base64url of
    # any JSON object)
    for n, v in rec.header_list:
        if n.startswith("__connect.errors."):
            assert b"eyJ" not in v, f"{n} seems to quote a token: {v[:200]!r}"
    if token:
        for part in [token] + [p for p in token.split(".") if len(p) >= 8]:
            for n, v in rec.header_list:
                assert part.encode() not in v, f"header {n} quotes the token"
    return msg


# ---------------------------------------------------------------- storage


NOT_FOUND = 4  # kmsctl's exit code for "not found"


def valserver(kms, identity):
    """`kmsctl valserver show`: the stored VAL server, or None."""
    rc, out, err = kms.kmsctl_raw("valserver", "show", identity)
    if rc == NOT_FOUND:
        return None
    assert rc == 0, f"valserver show exited {rc}: {err}"
    return json.loads(out)


def history(vs):
    """Every stored key format version of a `valserver show`, as dicts with
    val_service_id, version, format_type, format_version, content,
    request_id."""
    return vs["history"]


def request_ids(vs):
    return {h["request_id"] for h in history(vs)}


def valserver_ids(kms):
    return {r["requester_identity"] for r in kms.kmsctl("valserver", "list")}


def audit(kms, identity):
    return kms.kmsctl("audit", identity)


def decision(kms, request_id):
    rc, out, err = kms.kmsctl_raw("decision", request_id)
    if rc == NOT_FOUND:
        return None
    assert rc == 0, f"decision exited {rc}: {err}"
    return json.loads(out)


def _lit(s):
    return "'" + s.replace("'", "''") + "'"


def audit_at(kms, coords):
    """The audit row of one consumed message, by its coordinates (kmsctl
    lists audit rows by identity; an undecodable value may have none)."""
    topic, partition, offset = coords
    rows = kms.sql("SELECT outcome, has_result, result, cause, request_id, requester_identity,"
                   " detail FROM audit WHERE topic = " + _lit(topic)
                   + f" AND kafka_partition = {int(partition)} AND kafka_offset = {int(offset)}")
    assert len(rows) <= 1
    if not rows:
        return None
    o, hr, res, cause, rid, ident, detail = rows[0]
    return {"outcome": o, "has_result": hr == "t", "result": res or None,
            "cause": cause or None, "request_id": rid or None,
            "requester_identity": ident or None, "detail": detail}


def decision_rows(kms, request_id):
    """How many decisions are kept for request_id (0 or 1)."""
    return 0 if decision(kms, request_id) is None else 1


def assert_nothing_stored(kms, identity):
    assert valserver(kms, identity) is None
    assert identity not in valserver_ids(kms)


def provisioned(kms, services, key_formats=("JWK", "RAW"), max_val_servers=10):
    vsp = kms.provider()
    kms.sla(vsp, services, key_formats, max_val_servers)
    return vsp


def serve_next(kms, identity, vsp, services=(("svc-a", "JWK"),), request_id=None):
    """A valid request of identity after whatever was sent: it must succeed
    (the KM-S still serves), and it is stored."""
    req = kms.request(identity, list(services), vsp, request_id=request_id)
    rid = kms.send(req)
    recs = [r for r in kms.records(rid, timeout=60) if r.response]
    last = recs[-1].response
    assert (last["result"], last["cause"]) == ("SUCCESS", None), last
    assert kms.running, "the KM-S stopped"
    vs = valserver(kms, identity)
    assert vs is not None and req["requestId"] in request_ids(vs)
    return req, last
