"""The wire format against an independent Avro implementation (fastavro).

For both schemas in schemas/: fastavro parses them, and its Parsing Canonical
Form and CRC-64-AVRO fingerprint equal ours. Then, on requests and responses
from a seeded generator, the C codec and fastavro agree byte for byte in
both directions. The C side is the test_codec_vectors program that `make`
builds (its directory is $KMS_BUILD, "build" by default).
"""

import copy
import datetime
import io
import json
import os
import random
import subprocess
import uuid
from pathlib import Path

import fastavro
import pytest
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = {
    "request": ROOT / "schemas" / "ValServerProvisioningRequest.avsc",
    "response": ROOT / "schemas" / "ValServerProvisioningResponse.avsc",
}
KEY_FORMAT_TYPES = [
    "RAW", "OPAQUE", "PKCS1", "PKCS8", "X509", "EC_PRIVATE_KEY",
    "TRANSPARENT_SYMMETRIC_KEY", "JWK", "MIKEY_SAKKE",
]
RESULTS = ["SUCCESS", "FAILURE"]
CAUSES = [
    "INVALID_REQUEST", "UNAUTHORIZED", "NOT_ALLOWED_BY_SLA",
    "KEY_FORMAT_NOT_ALLOWED", "REQUEST_ID_CONFLICT", "INTERNAL_ERROR",
]


def vectors_binary():
    build = Path(os.environ.get("KMS_BUILD", "build"))
    if not build.is_absolute():
        build = ROOT / build
    path = build / "tests" / "test_codec_vectors"
    if not path.exists():
        pytest.fail(f"{path} is missing: run make first")
    return path


def run_c(*args, stdin=""):
    proc = subprocess.run(
        [str(vectors_binary()), *args], input=stdin.encode("utf-8"),
        capture_output=True, cwd=ROOT, timeout=60, check=False)
    return proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")


def load(kind):
    with open(SCHEMAS[kind], encoding="utf-8") as f:
        return json.load(f)


def without_logical_types(node):
    """The schema with logicalType dropped: same canonical form and bytes, but
    fastavro then reads plain strings and longs, which compare directly."""
    if isinstance(node, dict):
        return {k: without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [without_logical_types(v) for v in node]
    return node


def header(kind):
    canonical = to_parsing_canonical_form(parse_schema(load(kind)))
    # fastavro gives the fingerprint as the hex of its little-endian bytes,
    # which is the order of the single-object header.
    return b"\xc3\x01" + bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def fastavro_encode(kind, record):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parse_schema(without_logical_types(load(kind))), record)
    return header(kind) + buf.getvalue()


def fastavro_decode(kind, value):
    assert value[:10] == header(kind)
    buf = io.BytesIO(value[10:])
    record = fastavro.schemaless_reader(buf, parse_schema(without_logical_types(load(kind))))
    assert buf.read() == b"", "fastavro left bytes unread"
    return record


def c_encode(kind, record):
    rc, out, err = run_c(f"encode-{kind}", stdin=json.dumps(record))
    assert rc == 0, err
    return bytes.fromhex(out.strip())


def c_decode(kind, value):
    rc, out, err = run_c(f"decode-{kind}", stdin=value.hex())
    return rc, json.loads(out) if out.strip() else None, err


# ---- The schemas themselves ----

@pytest.mark.parametrize("kind", ["request", "response"])
def test_fastavro_parses(kind):
    parsed = parse_schema(load(kind))
    assert parsed["name"] == "org.threegpp.seal.km.v1.ValServerProvisioning" + kind.capitalize()


@pytest.mark.parametrize("kind", ["request", "response"])
def test_canonical_form_matches_fastavro(kind):
    rc, out, err = run_c("canonical", str(SCHEMAS[kind]))
    assert rc == 0, err
    assert out.strip() == to_parsing_canonical_form(parse_schema(load(kind)))


@pytest.mark.parametrize("kind", ["request", "response"])
def test_fingerprint_matches_fastavro(kind):
    rc, out, err = run_c("fingerprint", str(SCHEMAS[kind]))
    assert rc == 0, err
    ours = int(out.strip(), 16).to_bytes(8, "little")
    canonical = to_parsing_canonical_form(parse_schema(load(kind)))
    assert ours.hex() == fingerprint(canonical, "CRC-64-AVRO")


def walk_named(node, found):
    if isinstance(node, dict):
        if node.get("type") in ("record", "enum", "fixed"):
            found.append(node)
        for v in node.values():
            walk_named(v, found)
    elif isinstance(node, list):
        for v in node:
            walk_named(v, found)
    return found


@pytest.mark.parametrize("kind", ["request", "response"])
def test_every_record_and_field_has_a_doc(kind):
    for named in walk_named(load(kind), []):
        assert named.get("doc"), named["name"]
        for field in named.get("fields", []):
            assert field.get("doc"), f"{named['name']}.{field['name']}"


def docs_by_field(kind):
    return {f["name"]: f["doc"] for n in walk_named(load(kind), []) for f in n.get("fields", [])}


def test_docs_name_the_information_elements():
    req = docs_by_field("request")
    assert req["requesterIdentity"].startswith("Requester Identity (M)")
    assert req["valServices"].startswith("List of VAL service specific information (M)")
    assert req["valServiceId"].startswith("VAL service ID (M)")
    assert req["keyFormat"].startswith("key-format (M)")
    assert docs_by_field("response")["result"].startswith("Result (M)")


def test_contract_shape():
    req = parse_schema(load("request"))
    assert [f["name"] for f in req["fields"]] == [
        "requestId", "requesterIdentity", "endpoint", "credentials", "valServices",
        "sentAt", "suppFeat"]
    kf = req["fields"][4]["type"]["items"]["fields"][1]["type"]
    assert kf["fields"][0]["type"]["symbols"] == KEY_FORMAT_TYPES
    assert kf["fields"][1]["default"] is None
    assert kf["fields"][2]["default"] == {}
    resp = parse_schema(load("response"))
    assert [f["name"] for f in resp["fields"]] == [
        "requestId", "requesterIdentity", "result", "cause", "detail", "kmsId",
        "processedAt"]
    assert resp["fields"][3]["type"][1]["symbols"] == CAUSES


# ---- Generated data ----

def random_text(rng, max_len=24):
    """Unicode across the encodings: 1- to 4-byte UTF-8, never a surrogate or
    NUL (which the codec refuses by design)."""
    pools = [
        (0x20, 0x7E), (0x01, 0x1F), (0x80, 0x7FF), (0x800, 0xD7FF),
        (0xE000, 0xFFFD), (0x10000, 0x10FFFF), (0x1F300, 0x1F64F),
    ]
    out = []
    for _ in range(rng.randint(0, max_len)):
        lo, hi = rng.choice(pools)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def random_request(rng, index):
    services = []
    count = rng.choice([1, 1, 2, 3, 8, 40]) if index % 17 else 1000
    for i in range(count):
        entries = rng.choice([0, 0, 1, 3, 20])
        services.append({
            "valServiceId": random_text(rng),
            "keyFormat": {
                # index + i walks every symbol across the run
                "formatType": KEY_FORMAT_TYPES[(index + i) % len(KEY_FORMAT_TYPES)],
                "formatVersion": rng.choice([None, random_text(rng, 6)]),
                "content": {f"{j}:{random_text(rng, 8)}": random_text(rng, 40)
                            for j in range(entries)},
            },
        })
    return {
        "requestId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "requesterIdentity": random_text(rng),
        "endpoint": "https://" + random_text(rng, 40),
        "credentials": {"accessToken": random_text(rng, 400)},
        "valServices": services,
        "sentAt": rng.choice([0, -1, 2**63 - 1, -2**63, rng.randint(-2**63, 2**63 - 1),
                              1700000000000]),
        "suppFeat": rng.choice([None, "", random_text(rng, 8)]),
    }


def random_response(rng, index):
    result = RESULTS[index % 2]
    cause = None if result == "SUCCESS" else CAUSES[(index // 2) % len(CAUSES)]
    return {
        "requestId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "requesterIdentity": random_text(rng),
        "result": result,
        "cause": cause,
        "detail": rng.choice([None, random_text(rng, 80)]),
        "kmsId": random_text(rng, 12),
        "processedAt": rng.randint(-2**63, 2**63 - 1),
    }


REQUESTS = [random_request(random.Random(20240601 + i), i) for i in range(60)]
RESPONSES = [random_response(random.Random(7 + i), i) for i in range(24)]


@pytest.mark.parametrize("record", REQUESTS, ids=[f"request{i}" for i in range(len(REQUESTS))])
def test_request_both_directions(record):
    theirs = fastavro_encode("request", record)
    ours = c_encode("request", record)
    assert ours == theirs
    assert fastavro_decode("request", ours) == record
    rc, decoded, err = c_decode("request", theirs)
    assert rc == 0, decoded or err
    assert decoded == record


@pytest.mark.parametrize("record", RESPONSES, ids=[f"response{i}" for i in range(len(RESPONSES))])
def test_response_both_directions(record):
    theirs = fastavro_encode("response", record)
    ours = c_encode("response", record)
    assert ours == theirs
    assert fastavro_decode("response", ours) == record
    rc, decoded, err = c_decode("response", theirs)
    assert rc == 0, decoded or err
    assert decoded == record


def test_generator_covers_the_cases():
    symbols = {s["keyFormat"]["formatType"] for r in REQUESTS for s in r["valServices"]}
    assert symbols == set(KEY_FORMAT_TYPES)
    assert {r["cause"] for r in RESPONSES} == set(CAUSES) | {None}
    services = [s for r in REQUESTS for s in r["valServices"]]
    assert any(not s["keyFormat"]["content"] for s in services)
    assert any(s["keyFormat"]["formatVersion"] is None for s in services)
    assert any(s["keyFormat"]["formatVersion"] is not None for s in services)
    assert any(len(r["valServices"]) == 1000 for r in REQUESTS)
    assert any(r["suppFeat"] is None for r in REQUESTS)
    assert any(r["suppFeat"] for r in REQUESTS)
    text = "".join(r["requesterIdentity"] + r["credentials"]["accessToken"] for r in REQUESTS)
    assert any(len(ch.encode("utf-8")) == 4 for ch in text)


def test_logical_types_as_a_client_writes_them():
    """A client using the schema's logical types (a UUID object, an aware
    datetime) produces what the C codec reads as the string and the millis."""
    when = datetime.datetime(2024, 6, 1, 12, 0, 0, 123000, tzinfo=datetime.timezone.utc)
    rid = uuid.UUID("0b6f2f3e-4a7c-4b8e-9d10-2f3a4b5c6d7e")
    record = {
        "requestId": rid, "requesterIdentity": "val-1", "endpoint": "https://v",
        "credentials": {"accessToken": "t"},
        "valServices": [{"valServiceId": "s", "keyFormat": {"formatType": "JWK"}}],
        "sentAt": when,
    }
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parse_schema(load("request")), record)
    rc, decoded, err = c_decode("request", header("request") + buf.getvalue())
    assert rc == 0, decoded or err
    assert decoded["requestId"] == str(rid)
    assert decoded["sentAt"] == int(when.timestamp() * 1000)
    # formatVersion and content were left out: their defaults were written.
    assert decoded["valServices"][0]["keyFormat"] == {
        "formatType": "JWK", "formatVersion": None, "content": {}}
    assert decoded["suppFeat"] is None


def test_c_refuses_what_fastavro_truncated():
    value = fastavro_encode("request", REQUESTS[1])
    for cut in sorted({10, 11, len(value) // 2, len(value) - 1}):
        rc, decoded, _ = c_decode("request", value[:cut])
        assert rc == 1
        assert decoded["status"] == "datum"


def test_c_refuses_unknown_fingerprint_but_salvages():
    record = copy.deepcopy(REQUESTS[2])
    value = bytearray(fastavro_encode("request", record))
    value[9] ^= 0xFF
    rc, decoded, _ = c_decode("request", bytes(value))
    assert rc == 1
    assert decoded["status"] == "fingerprint"
    assert decoded["salvage"] == {
        "requestId": record["requestId"], "requesterIdentity": record["requesterIdentity"]}


def test_c_refuses_a_response_as_request():
    value = fastavro_encode("response", RESPONSES[0])
    rc, decoded, _ = c_decode("request", value)
    assert rc == 1
    assert decoded["status"] == "wrong_schema"
    assert decoded["salvage"] == {"requestId": None, "requesterIdentity": None}
