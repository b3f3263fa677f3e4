"""Value-level defences of the KM-S, end to end against the real broker and
database: every kind of broken value the issue lists, each in a test of its
own.

Every test sends its hostile values keyed by a VAL server identity of its
own, so they land on one partition in order, and then checks the contract's
promise for bad input:

- each value goes to the DLQ with its original key, value and headers plus
  Kafka Connect's error headers naming its coordinates, or gets a FAILURE
  Result, or both (both exactly when the requestId and requesterIdentity can
  still be read);
- nothing is stored but the audit record (no VAL server, no key format, no
  decision for an undecodable value);
- the KM-S serves the next request: a valid request of the same VAL server,
  sent after the hostile values on the same partition, succeeds. Because it
  comes after them, its Result also proves that no other Result is coming
  for them (Results of one VAL server are published in order on one
  partition).

The values are built by ``hostile.layout`` from a valid request, one piece
changed at a time.
"""

import base64
import os
import time

import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

import hostile
import kmswire

INVALID = ("FAILURE", "INVALID_REQUEST")
HEADERS = [("kafka_correlationId", b"\x00\x01corr\xff"), ("x-trace", b"hostile-test")]
JWK = {"alg": "A256GCM", "kty": "oct", "use": "enc"}


# ---------------------------------------------------------------- helpers


def base_request(kms, identity, vsp, services=None, **kw):
    """A valid request with formatVersion, content and suppFeat set, so that
    every piece of the layout exists."""
    services = services or [kmswire.service("svc-a", "JWK", "1.0", JWK)]
    return kms.request(identity, services, vsp, supp_feat="0a", **kw)


def check_round(kms, identity, vsp, cases, headers=HEADERS, key=None, timeout=60.0):
    """Send the hostile values of cases, a list of (label, value, request_id,
    result_expected), in one go; check the DLQ records, the Results, the
    audit rows and that nothing was stored; then check that a valid request
    of the same VAL server still succeeds, and that no Result came for the
    values that should have none. Returns {label: DLQ exception message}."""
    key = identity if key is None else key
    values = [c[1] for c in cases]
    coords = hostile.send_all(kms, values, key, headers)
    by_coords = hostile.dlq_by_offset(kms, coords, timeout)

    messages = {}
    for (label, value, rid, want_result), c in zip(cases, coords):
        recs = by_coords[c]
        assert len(recs) == 1, f"{label}: {len(recs)} DLQ records"
        messages[label] = hostile.assert_dlq_record(recs[0], value, key, c, headers)

    wanted = [c for c in cases if c[3]]
    if wanted:
        recs = kms.records([c[2] for c in wanted], timeout=timeout)
        for label, value, rid, _ in wanted:
            mine = [r for r in recs if r.request_id == rid]
            assert len(mine) == 1, f"{label}: {len(mine)} Results"
            resp = mine[0].response
            assert (resp["result"], resp["cause"]) == INVALID, f"{label}: {resp}"
            assert resp["requesterIdentity"] == identity
            assert resp["kmsId"] == kms.kms_id
            assert mine[0].key == identity.encode()
            assert isinstance(resp["detail"], str) and 3 <= len(resp["detail"]) <= 300
            corr = dict(headers).get("kafka_correlationId")
            if corr is not None:
                assert mine[0].headers["kafka_correlationId"] == corr

    # audit: one row per value, DLQ, naming the request only when readable
    for (label, value, rid, want_result), c in zip(cases, coords):
        row = hostile.audit_at(kms, c)
        assert row is not None, f"{label}: no audit row at {c}"
        assert row["outcome"] == "DLQ", f"{label}: {row}"
        assert row["has_result"] == want_result, f"{label}: {row}"
        if want_result:
            assert (row["request_id"], row["requester_identity"]) == (rid, identity), row
            assert (row["result"], row["cause"]) == INVALID, row
        # an undecodable value makes no decision, so its requestId stays free
        if rid is not None:
            assert hostile.decision_rows(kms, rid) == 0, f"{label}: a decision was stored"
    if wanted:
        mine = [a for a in hostile.audit(kms, identity) if a["outcome"] == "DLQ"]
        assert len(mine) == len(wanted), mine
    hostile.assert_nothing_stored(kms, identity)

    # the service serves the next request, and nothing more came for these
    hostile.serve_next(kms, identity, vsp)
    seen = kms.seen()
    for label, value, rid, want_result in cases:
        if rid is None:
            continue
        n = len([r for r in seen if r.request_id == rid])
        assert n == (1 if want_result else 0), f"{label}: {n} Results"
    return messages


def case(label, lay, rid, result):
    return (label, lay.value() if isinstance(lay, hostile.Layout) else lay, rid, result)


@pytest.fixture(scope="module")
def world(kms):
    """One provider with an SLA for svc-a, svc-b, shared by the module."""
    vsp = hostile.provisioned(kms, ["svc-a", "svc-b"], ("JWK", "RAW"), max_val_servers=1000)
    return kms, vsp


def fresh(world, stem="hv"):
    kms, vsp = world
    ident = kms.unique(stem)
    req = base_request(kms, ident, vsp)
    return kms, vsp, ident, req, hostile.layout(req)


# ---------------------------------------------------------------- framing


def test_wrong_magic_bytes(world):
    kms, vsp, ident, req, lay = fresh(world)
    rid = req["requestId"]
    datum = lay.value()[10:]
    cases = [
        case("C3 02", lay.replace("magic", b"\xc3\x02"), rid, False),
        case("00 00", lay.replace("magic", b"\x00\x00"), rid, False),
        case("swapped", lay.replace("magic", b"\x01\xc3"), rid, False),
        # Confluent Schema Registry framing: 0x00 and a 4-byte schema id
        case("confluent", b"\x00\x00\x00\x00\x07" + datum, rid, False),
        # no framing at all: the bare datum
        case("bare datum", datum, rid, False),
    ]
    msgs = check_round(kms, ident, vsp, cases)
    for m in msgs.values():
        assert "magic" in m.lower() or "header" in m.lower(), m


def test_unknown_fingerprint(world):
    kms, vsp, ident, req, lay = fresh(world)
    fp = bytearray(lay.get("fingerprint"))
    fp[0] ^= 0x01
    other = bytes(8)
    reqs = [req] + [base_request(kms, ident, vsp) for _ in range(2)]
    lays = [lay] + [hostile.layout(r) for r in reqs[1:]]
    cases = [
        # an unknown schema, but a request by its first fields: salvaged
        case("one bit", lays[0].replace("fingerprint", bytes(fp)), reqs[0]["requestId"], True),
        case("zeros", lays[1].replace("fingerprint", other), reqs[1]["requestId"], True),
        # a known schema that is not a request (a Result sent back in): the
        # first fields are not read as a request's
        case("response schema", lays[2].replace("fingerprint", kmswire.RESPONSE.fingerprint),
             reqs[2]["requestId"], False),
    ]
    msgs = check_round(kms, ident, vsp, cases)
    assert "fingerprint" in msgs["one bit"].lower(), msgs


def test_truncated_at_every_length(world):
    """Every proper prefix of a valid value (lengths 1 .. n-1; length 0 is
    the empty value's test): n-1 DLQ records with their own offsets; those
    long enough to hold requestId and requesterIdentity also get a Result."""
    kms, vsp, ident, req, lay = fresh(world, "trunc")
    value = lay.value()
    n = len(value)
    rid = req["requestId"]
    values = [value[:k] for k in range(1, n)]
    coords = hostile.send_all(kms, values, ident, HEADERS)
    assert len({c[1] for c in coords}) == 1, "not one partition"
    offsets = [c[2] for c in coords]
    assert offsets == list(range(offsets[0], offsets[0] + n - 1))

    by_coords = hostile.dlq_by_offset(kms, coords, timeout=120)
    for k, c in zip(range(1, n), coords):
        recs = by_coords[c]
        assert len(recs) == 1, f"length {k}: {len(recs)} DLQ records"
        hostile.assert_dlq_record(recs[0], value[:k], ident, c, HEADERS,
                                  token=req["credentials"]["accessToken"])

    # a Result exactly for the prefixes that hold both named fields whole
    readable_from = lay.end("requesterIdentity")
    want = n - readable_from
    deadline = time.monotonic() + 60
    while True:
        got = kms.records(rid, timeout=60) if want else []
        if len(got) >= want or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(got) == want, f"{len(got)} Results, expected {want}"
    for r in got:
        assert (r.response["result"], r.response["cause"]) == INVALID
    rows = kms.sql("SELECT kafka_offset, outcome, has_result FROM audit WHERE topic = '"
                   f"{coords[0][0]}' AND kafka_partition = {coords[0][1]}"
                   f" AND kafka_offset BETWEEN {offsets[0]} AND {offsets[-1]}"
                   " ORDER BY kafka_offset")
    assert [int(r[0]) for r in rows] == offsets
    assert all(r[1] == "DLQ" for r in rows)
    has = [r[2] == "t" for r in rows]
    assert has == [k >= readable_from for k in range(1, n)]
    assert hostile.decision_rows(kms, rid) == 0
    hostile.assert_nothing_stored(kms, ident)
    assert len([a for a in hostile.audit(kms, ident) if a["outcome"] == "DLQ"]) == want

    # the whole value, with the same requestId, is then served: the broken
    # copies took nothing from it
    coords_ok = hostile.send_all(kms, [value], ident)[0]
    deadline = time.monotonic() + 60
    while True:
        got = kms.records(rid, timeout=60)
        if len(got) > want or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(got) == want + 1
    assert (got[-1].response["result"], got[-1].response["cause"]) == ("SUCCESS", None)
    vs = hostile.valserver(kms, ident)
    assert hostile.request_ids(vs) == {rid}
    assert hostile.audit_at(kms, coords_ok)["outcome"] == "DECIDED"
    assert kms.readyz()[0] == 200


def test_trailing_bytes_after_a_valid_datum(world):
    kms, vsp, ident, _, _ = fresh(world)
    cases = []
    for label, extra in (("one zero byte", lambda v: b"\x00"),
                         ("100 bytes", lambda v: bytes(range(100))),
                         ("the datum twice", lambda v: v[10:])):
        req = base_request(kms, ident, vsp)
        v = kmswire.encode_request(req)
        cases.append(case(label, v + extra(v), req["requestId"], True))
    msgs = check_round(kms, ident, vsp, cases)
    assert all("trailing" in m.lower() for m in msgs.values()), msgs


# ---------------------------------------------------------------- size


def _set_topic_limit(kms, topics, limit):
    res = [ConfigResource("topic", t, incremental_configs=[
        ConfigEntry("max.message.bytes", str(limit),
                    incremental_operation=AlterConfigOpType.SET)]) for t in topics]
    for f in kms.stack.admin.incremental_alter_configs(res).values():
        f.result(timeout=30)

    def applied():
        got = kms.stack.admin.describe_configs(
            [ConfigResource("topic", t) for t in topics])
        return all(f.result(timeout=30)["max.message.bytes"].value == str(limit)
                   for f in got.values())
    hostile_wait(applied, 30, "topic max.message.bytes")


def hostile_wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _filler(n):
    """n characters that no compression shrinks (the KM-S's producer
    compresses, and the broker's record limit applies to the compressed
    batch)."""
    return base64.urlsafe_b64encode(os.urandom(n))[:n].decode()


def _big_request(kms, ident, vsp, size):
    """A request of exactly size bytes: content values of 8000 random
    characters, then a pad to the byte."""
    base = kms.request(ident, [kmswire.service("svc-a", "JWK", None, {"k000": _filler(8000)})],
                       vsp)
    content = base["valServices"][0]["keyFormat"]["content"]
    i = 1
    while len(kmswire.encode_request(base)) < size - 9000:
        content[f"k{i:03d}"] = _filler(8000)
        i += 1
    return hostile.pad_request_to(base, size)


def test_value_over_the_default_size_limit(kms_factory):
    """One byte over the default limit of 1 MiB. The topics allow larger
    records (as a deployment may), so the value reaches the KM-S, which must
    refuse it by its own limit, copy it whole to the DLQ, answer it (its
    first fields are readable) and go on."""
    kms = kms_factory()
    _set_topic_limit(kms, [kms.requests_topic, kms.dlq_topic], 4 * 1048576)
    vsp = hostile.provisioned(kms, ["svc-a"])
    ident = kms.unique("big")
    req = _big_request(kms, ident, vsp, 1048576 + 1)
    value = kmswire.encode_request(req)
    assert len(value) == 1048577
    coords = hostile.send_all(kms, [value], ident, HEADERS,
                              producer_conf={"message.max.bytes": 4 * 1048576})
    recs = hostile.dlq_by_offset(kms, coords, timeout=30)[coords[0]]
    msg = hostile.assert_dlq_record(recs[0], value, ident, coords[0], HEADERS)
    assert "1048576" in msg or "limit" in msg.lower(), msg
    _, resp = kms.result(req["requestId"])
    assert (resp["result"], resp["cause"]) == INVALID
    assert hostile.audit_at(kms, coords[0])["outcome"] == "DLQ"
    assert hostile.decision_rows(kms, req["requestId"]) == 0
    hostile.assert_nothing_stored(kms, ident)
    hostile.serve_next(kms, ident, vsp)


def test_undecodable_value_just_under_the_default_size_limit(kms_factory):
    """An undecodable value of 1,040,000 bytes, within the broker's default
    record limit and under the KM-S's 1 MiB: it must reach the DLQ whole
    (a producer that refuses records the requests topic accepted would hold
    the partition forever)."""
    kms = kms_factory()
    vsp = hostile.provisioned(kms, ["svc-a"])
    ident = kms.unique("big")
    req = _big_request(kms, ident, vsp, 1040000 - 1)
    value = kmswire.encode_request(req) + b"\x00"  # one trailing byte
    assert len(value) == 1040000
    coords = hostile.send_all(kms, [value], ident, HEADERS,
                              producer_conf={"message.max.bytes": 2 * 1048576})
    recs = hostile.dlq_by_offset(kms, coords, timeout=30)[coords[0]]
    hostile.assert_dlq_record(recs[0], value, ident, coords[0], HEADERS)
    _, resp = kms.result(req["requestId"])
    assert (resp["result"], resp["cause"]) == INVALID
    hostile.assert_nothing_stored(kms, ident)
    hostile.serve_next(kms, ident, vsp)


def test_value_the_dlq_topic_cannot_hold(kms_factory):
    """The requests topic takes 4 MiB records, the DLQ topic only Kafka's
    usual default (1048588 bytes): a 1.5 MiB value cannot be copied whole.
    The DLQ still gets a record for it, with the Connect headers, its key
    and original headers, and a note of the size it left out; the Result is
    sent and the KM-S goes on (the value itself stays in the requests
    topic)."""
    kms = kms_factory()
    _set_topic_limit(kms, [kms.requests_topic], 4 * 1048576)
    _set_topic_limit(kms, [kms.dlq_topic], 1048588)
    vsp = hostile.provisioned(kms, ["svc-a"])
    ident = kms.unique("big")
    req = _big_request(kms, ident, vsp, 1536 * 1024)
    value = kmswire.encode_request(req)
    coords = hostile.send_all(kms, [value], ident, HEADERS,
                              producer_conf={"message.max.bytes": 4 * 1048576})
    recs = hostile.dlq_by_offset(kms, coords, timeout=60)[coords[0]]
    assert len(recs) == 1
    rec = recs[0]
    assert rec.key == ident.encode()
    assert not rec.value, "a value the DLQ topic cannot hold was not left out"
    assert [(n, v) for n, v in rec.header_list[:len(HEADERS)]] == HEADERS
    h = rec.headers
    assert (h["__connect.errors.topic"].decode(), int(h["__connect.errors.partition"]),
            int(h["__connect.errors.offset"])) == coords[0]
    noted = [n for n, v in rec.header_list if v == str(len(value)).encode()]
    assert noted, f"no header notes the {len(value)} bytes left out: {rec.header_list}"
    _, resp = kms.result(req["requestId"])
    assert (resp["result"], resp["cause"]) == INVALID
    hostile.assert_nothing_stored(kms, ident)
    hostile.serve_next(kms, ident, vsp)


def test_value_over_a_configured_size_limit(kms_factory):
    kms = kms_factory(extra_args=("--max-value-bytes", "4096"))
    vsp = hostile.provisioned(kms, ["svc-a"])
    ident = kms.unique("lim")
    # exactly at the limit: decoded and served
    at = hostile.pad_request_to(base_request(kms, ident, vsp), 4096)
    assert len(kmswire.encode_request(at)) == 4096
    kms.send(at)
    _, resp = kms.result(at["requestId"])
    assert (resp["result"], resp["cause"]) == ("SUCCESS", None), resp
    # one byte over: refused by size, although it would decode
    other = kms.unique("lim")
    over = hostile.pad_request_to(base_request(kms, other, vsp), 4097)
    msgs = check_round(kms, other, vsp,
                       [case("4097 bytes", kmswire.encode_request(over), over["requestId"],
                             True)])
    assert "4096" in msgs["4097 bytes"], msgs


# ---------------------------------------------------------------- lengths


def _varint_overlong():
    return b"\xff" * 10 + b"\x01"  # 11 bytes: more than any 64-bit varint


def test_string_lengths_negative_or_past_the_value(world):
    kms, vsp, ident, _, _ = fresh(world)
    cases = []

    def add(label, mutate, readable):
        req = base_request(kms, ident, vsp)
        lay = hostile.layout(req)
        cases.append(case(label, mutate(lay), req["requestId"], readable))

    big = lambda lay: kmswire.avro_long(len(lay) + 1)  # noqa: E731
    huge = kmswire.avro_long(1 << 62)
    for field, readable in (("requestId", False), ("requesterIdentity", False),
                            ("endpoint", True), ("accessToken", True),
                            ("valServices[0].valServiceId", True),
                            ("valServices[0].formatVersion", True),
                            ("valServices[0].content[0].key", True),
                            ("valServices[0].content[1].value", True),
                            ("suppFeat", True)):
        add(f"{field} -1", lambda lay, f=field: lay.replace(f + ".len", kmswire.avro_long(-1)),
            readable)
        add(f"{field} past the value", lambda lay, f=field: lay.replace(f + ".len", big(lay)),
            readable)
    add("requestId 2^62", lambda lay: lay.replace("requestId.len", huge), False)
    add("endpoint -2^63", lambda lay: lay.replace("endpoint.len", kmswire.avro_long(-(1 << 63))),
        True)
    add("requesterIdentity overlong varint",
        lambda lay: lay.replace("requesterIdentity.len", _varint_overlong()), False)
    add("accessToken overlong varint",
        lambda lay: lay.replace("accessToken.len", _varint_overlong()), True)
    add("sentAt overlong varint", lambda lay: lay.replace("sentAt", _varint_overlong()), True)
    check_round(kms, ident, vsp, cases)


def test_array_and_map_lengths_negative_or_past_the_value(world):
    kms, vsp, ident, _, _ = fresh(world)
    cases = []

    def add(label, mutate, readable=True):
        req = base_request(kms, ident, vsp)
        lay = hostile.layout(req)
        cases.append(case(label, mutate(lay), req["requestId"], readable))

    def neg_services(lay, size_delta):
        out = hostile.negative_block(lay, "valServices.count", "valServices[0].valServiceId.len",
                                     "valServices[0].content.end")
        size = hostile._read_long(out.get("valServices.count.size"))
        return out.replace("valServices.count.size", kmswire.avro_long(size + size_delta))

    def neg_content(lay, size_delta):
        out = hostile.negative_block(lay, "valServices[0].content.count",
                                     "valServices[0].content[0].key.len",
                                     "valServices[0].content[2].value")
        size = hostile._read_long(out.get("valServices[0].content.count.size"))
        return out.replace("valServices[0].content.count.size",
                           kmswire.avro_long(size + size_delta))

    add("services: 2 items, 1 present",
        lambda lay: lay.replace("valServices.count", kmswire.avro_long(2)))
    add("services: 2^40 items", lambda lay: lay.replace("valServices.count",
                                                         kmswire.avro_long(1 << 40)))
    add("services: -(2^40) items",
        lambda lay: lay.replace("valServices.count", kmswire.avro_long(-(1 << 40))))
    add("services: 999 items, within the limit, past the value",
        lambda lay: lay.replace("valServices.count", kmswire.avro_long(999)))
    add("services: -1 with a byte size too large", lambda lay: neg_services(lay, 1000))
    add("services: -1 with a byte size too small", lambda lay: neg_services(lay, -3))
    add("services: -1 with a negative byte size",
        lambda lay: neg_services(lay, -hostile._read_long(
            neg_services(lay, 0).get("valServices.count.size")) - 5))
    add("content: 4 entries, 3 present",
        lambda lay: lay.replace("valServices[0].content.count", kmswire.avro_long(4)))
    add("content: 2^31 entries",
        lambda lay: lay.replace("valServices[0].content.count", kmswire.avro_long(1 << 31)))
    add("content: -3 with a byte size too large", lambda lay: neg_content(lay, 7))
    add("content: no end marker",
        lambda lay: lay.replace("valServices[0].content.end", b""))
    check_round(kms, ident, vsp, cases)


def test_negative_block_counts_with_true_sizes_are_valid_avro(world):
    """The control of the test above: Avro allows a block of an array or map
    to be written as a negative count and its byte size. Such a value is
    valid and is served like any other."""
    kms, vsp, _, _, _ = fresh(world)
    ident = kms.unique("negblk")
    req = base_request(kms, ident, vsp)
    lay = hostile.layout(req)
    # the inner block first: its size field is part of the outer block
    lay = hostile.negative_block(lay, "valServices[0].content.count",
                                 "valServices[0].content[0].key.len",
                                 "valServices[0].content[2].value")
    lay = hostile.negative_block(lay, "valServices.count", "valServices[0].valServiceId.len",
                                 "valServices[0].content.end")
    value = lay.value()
    assert kmswire.decode_request(value) == req  # fastavro reads it as the same request
    coords = hostile.send_all(kms, [value], ident)
    _, resp = kms.result(req["requestId"])
    assert (resp["result"], resp["cause"]) == ("SUCCESS", None), \
        f"{resp['result']} {resp['cause']}: {resp['detail']}"
    assert not [r for r in kms.reader.records[kms.dlq_topic]
                if r.headers.get("__connect.errors.offset") == str(coords[0][2]).encode()
                and r.headers.get("__connect.errors.partition") == str(coords[0][1]).encode()]
    vs = hostile.valserver(kms, ident)
    assert [(h["val_service_id"], h["format_version"], h["content"], h["request_id"])
            for h in hostile.history(vs)] == [("svc-a", "1.0", JWK, req["requestId"])]


# ---------------------------------------------------------------- UTF-8


BAD_UTF8 = {
    "lone continuation byte": b"ab\x80cd",
    "overlong encoding of /": b"ab\xc0\xafcd",
    "UTF-16 surrogate": b"ab\xed\xa0\x80cd",
    "beyond U+10FFFF": b"ab\xf4\x90\x80\x80cd",
    "truncated sequence at the end": b"abcd\xe2\x82",
    "0xFF byte": b"ab\xffcd",
    # valid UTF-8, but a C string cannot hold it: refused as well
    "NUL byte": b"ab\x00cd",
}

UTF8_FIELDS = [
    ("requestId", False), ("requesterIdentity", False), ("endpoint", True),
    ("accessToken", True), ("valServices[0].valServiceId", True),
    ("valServices[0].formatVersion", True), ("valServices[0].content[0].key", True),
    ("valServices[0].content[0].value", True), ("suppFeat", True),
]


@pytest.mark.parametrize("field,readable", UTF8_FIELDS, ids=[f for f, _ in UTF8_FIELDS])
def test_invalid_utf8_in_strings(world, field, readable):
    kms, vsp, ident, _, _ = fresh(world, "utf8")
    cases = []
    for label, raw in BAD_UTF8.items():
        req = base_request(kms, ident, vsp)
        lay = hostile.layout(req)
        if field == "requestId":
            # keep the UUID's length and shape, spoil its middle
            raw = req["requestId"][:10].encode() + raw + req["requestId"][10 + len(raw):].encode()
        cases.append(case(label, lay.set_string(field, raw), req["requestId"], readable))
    check_round(kms, ident, vsp, cases)


# ---------------------------------------------------------------- unions, enums


def test_union_branch_index_out_of_range(world):
    kms, vsp, ident, _, _ = fresh(world)
    cases = []
    for field in ("suppFeat", "valServices[0].formatVersion"):
        for idx in (2, 3, -1, 1 << 31, -(1 << 40)):
            req = base_request(kms, ident, vsp)
            lay = hostile.layout(req)
            cases.append(case(f"{field} branch {idx}",
                              lay.replace(field + ".branch", kmswire.avro_long(idx)),
                              req["requestId"], True))
        # branch 0 (null) followed by the string's bytes: trailing or misread
        req = base_request(kms, ident, vsp)
        lay = hostile.layout(req)
        cases.append(case(f"{field} null branch with a value",
                          lay.replace(field + ".branch", kmswire.avro_long(0)),
                          req["requestId"], True))
    check_round(kms, ident, vsp, cases)


def test_enum_symbol_out_of_range(world):
    kms, vsp, ident, _, _ = fresh(world)
    cases = []
    for idx in (len(kmswire.KEY_FORMAT_TYPES), 10, 127, -1, 1 << 31, -(1 << 62)):
        req = base_request(kms, ident, vsp)
        lay = hostile.layout(req)
        cases.append(case(f"formatType {idx}",
                          lay.replace("valServices[0].formatType", kmswire.avro_long(idx)),
                          req["requestId"], True))
    check_round(kms, ident, vsp, cases)


# ---------------------------------------------------------------- limits


def test_ten_thousand_services_in_one_request(world):
    """Decodable Avro, but ten times the configured max_services (1000):
    the request gets FAILURE INVALID_REQUEST; nothing is stored."""
    kms, vsp = world
    ident = kms.unique("many")
    services = [kmswire.service(f"svc-{i:05d}", "JWK") for i in range(10000)]
    req = kms.request(ident, services, vsp)
    value = kmswire.encode_request(req)
    assert len(value) < 1048576
    assert len(kmswire.decode_request(value)["valServices"]) == 10000
    coords = hostile.send_all(kms, [value], ident, HEADERS)
    _, resp = kms.result(req["requestId"], timeout=60)
    assert (resp["result"], resp["cause"]) == INVALID, resp
    assert "1000" in resp["detail"] or "services" in resp["detail"].lower(), resp["detail"]
    row = hostile.audit_at(kms, coords[0])
    assert row["has_result"] and (row["result"], row["cause"]) == INVALID, row
    # Either decision is within the contract: a decodable value refused by
    # a limit may also be parked in the DLQ. Record which one it is.
    dlq = [r for r in kms.reader.records[kms.dlq_topic]
           if r.headers.get("__connect.errors.offset") == str(coords[0][2]).encode()
           and r.headers.get("__connect.errors.topic") == coords[0][0].encode()]
    if row["outcome"] == "DLQ":
        dlq = hostile.dlq_by_offset(kms, coords)[coords[0]]
        hostile.assert_dlq_record(dlq[0], value, ident, coords[0], HEADERS)
        assert hostile.decision_rows(kms, req["requestId"]) == 0
    else:
        assert row["outcome"] == "DECIDED", row
        assert not dlq
        assert hostile.decision(kms, req["requestId"])["cause"] == "INVALID_REQUEST"
    print(f"10,000 services: audit outcome {row['outcome']}, detail {resp['detail']!r}")
    hostile.assert_nothing_stored(kms, ident)
    hostile.serve_next(kms, ident, vsp)


# ---------------------------------------------------------------- empty, null


def test_empty_value(world):
    """A zero-length value, and a null value (a tombstone): nothing to
    read, so a DLQ record and no Result."""
    kms, vsp, ident, req, _ = fresh(world)
    msgs = check_round(kms, ident, vsp, [case("empty", b"", req["requestId"], False),
                                         case("null", None, req["requestId"], False)])
    assert all("empty" in m.lower() for m in msgs.values()), msgs


def test_null_key(world):
    """A valid value with a null key gets FAILURE INVALID_REQUEST (the key
    must be the requesterIdentity) and stores nothing; an undecodable value
    with a null key goes to the DLQ with its null key kept."""
    kms, vsp, ident, req, lay = fresh(world, "nullkey")
    coords = hostile.send_all(kms, [lay.value()], None, HEADERS)
    _, resp = kms.result(req["requestId"])
    assert (resp["result"], resp["cause"]) == INVALID, resp
    assert "key" in resp["detail"].lower(), resp["detail"]
    row = hostile.audit_at(kms, coords[0])
    assert (row["outcome"], row["result"], row["cause"]) == ("DECIDED",) + INVALID, row
    assert hostile.decision_rows(kms, req["requestId"]) == 1
    hostile.assert_nothing_stored(kms, ident)
    assert not [r for r in kms.reader.records[kms.dlq_topic] if r.key is None
                and r.headers.get("__connect.errors.offset") == str(coords[0][2]).encode()]

    broken = base_request(kms, ident, vsp)
    bl = hostile.layout(broken).replace("valServices[0].formatType", kmswire.avro_long(99))
    coords2 = hostile.send_all(kms, [bl.value()], None, HEADERS)
    rec = hostile.dlq_by_offset(kms, coords2)[coords2[0]]
    assert len(rec) == 1
    hostile.assert_dlq_record(rec[0], bl.value(), None, coords2[0], HEADERS)
    _, resp2 = kms.result(broken["requestId"])
    assert (resp2["result"], resp2["cause"]) == INVALID
    assert hostile.audit_at(kms, coords2[0])["outcome"] == "DLQ"
    hostile.assert_nothing_stored(kms, ident)
    # a null key lands on any partition: the next request is sent keyed
    hostile.serve_next(kms, ident, vsp)
