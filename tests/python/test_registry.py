"""Confluent-framed Avro and schema evolution, against the stack's real
Apicurio Registry, with clients we did not write.

confluent-kafka-python's ``SchemaRegistryClient`` and ``AvroSerializer``
produce requests (the serializer registers its schema under the
TopicNameStrategy subject ``<topic>-value``); its ``AvroDeserializer`` reads
the Results. Evolution is tried both ways in both framings; bad input (an
unknown schema id, a frame shorter than 5 bytes, a schema of another record
type or none, a schema that cannot be resolved) must end in the DLQ (with a
Result when the request can still be named) and store nothing; the registry
stopped for 15 s under load must lose nothing and decide nothing twice.
"""

import base64
import copy
import json
import os
import struct
import subprocess
import time
import uuid

import fastavro
import fastavro.schema
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

import kmswire
from conftest import wait_until

SERVICE = "v2x.platooning"
CE_TYPE = "org.threegpp.seal.km.provisioning.result.v1"
NOT_FOUND = 4  # kmsctl: unknown VAL server


def request_schema_text():
    with open(os.path.join(kmswire.SCHEMA_DIR, "ValServerProvisioningRequest.avsc")) as f:
        return f.read()


def request_schema():
    return json.loads(request_schema_text())


def without_supp_feat():
    s = request_schema()
    s["fields"] = [x for x in s["fields"] if x["name"] != "suppFeat"]
    return s


def with_vehicle_class():
    s = request_schema()
    s["fields"].append({"name": "vehicleClass", "type": ["null", "string"], "default": None,
                        "doc": "a field of a newer VAL server"})
    return s


@pytest.fixture(scope="module")
def registry_url():
    url = os.environ.get("KMS_REGISTRY_URL")
    assert url, "KMS_REGISTRY_URL is not set: eval \"$(scripts/stack env)\" first"
    return url


@pytest.fixture(scope="module")
def sr(registry_url):
    return SchemaRegistryClient({"url": registry_url})


def migrate(kms, registry_url):
    cp = subprocess.run([kms.stack.binary("kms"), "migrate", "--dsn", kms.dsn,
                         "--registry-url", registry_url,
                         "--requests-topic", kms.requests_topic,
                         "--results-topic", kms.results_topic],
                        capture_output=True, text=True, timeout=120, env=kms._env())
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


def new_kms(factory, registry_url, extra=(), start=True):
    k = factory(start=False, extra_args=["--registry-url", registry_url, *extra])
    migrate(k, registry_url)
    if start:
        k.start()
    return k


@pytest.fixture(scope="module")
def rk(kms_module_factory, registry_url):
    """One KM-S with the registry for the module's ordinary cases."""
    return new_kms(kms_module_factory, registry_url)


def setup_provider(kms, services=(SERVICE,)):
    vsp = kms.provider()
    kms.sla(vsp, list(services), key_formats=("JWK", "RAW"), max_val_servers=100)
    return vsp


def serializer(sr, schema, auto_register=True):
    text = schema if isinstance(schema, str) else json.dumps(schema)
    return AvroSerializer(sr, text, conf={"auto.register.schemas": auto_register})


def produce_confluent(kms, ser, req, headers=None):
    value = ser(req, SerializationContext(kms.requests_topic, MessageField.VALUE))
    assert value[0] == 0
    kms.send(value, key=req["requesterIdentity"], headers=headers)
    return value


def confluent_results(kms, sr, n, timeout=60, settle=0.5):
    """{requestId: [(record, response dict)]} of the Confluent-framed Results
    (of at least n Results), read with confluent-kafka's AvroDeserializer.
    Single-object Results (of the single-object requests of this module) are
    left out."""
    deser = AvroDeserializer(sr)
    out = {}
    for rec in kms.records(n, timeout=timeout, settle=settle):
        if rec.value[:1] != b"\x00":
            continue
        r = deser(rec.value, SerializationContext(kms.results_topic, MessageField.VALUE))
        out.setdefault(str(r["requestId"]), []).append((rec, r))
    return out


def stored(kms, identity):
    rc, out, err = kms.kmsctl_raw("valserver", "show", identity)
    if rc == NOT_FOUND:
        return None
    assert rc == 0, err
    return json.loads(out)


def results_schema_id(sr, kms):
    return sr.get_latest_version(f"{kms.results_topic}-value").schema_id


# ---------------------------------------------------------------- a client we did not write


def test_confluent_client_round_trip(rk, sr):
    vsp = setup_provider(rk)
    ser = serializer(sr, request_schema_text())
    sent = {}
    for i in range(20):
        who = rk.unique(f"val-cf{i % 4}")
        req = rk.request(who, [kmswire.service(SERVICE, "JWK", content={"alg": "ES256"})],
                         vsp_id=vsp)
        corr = os.urandom(16)
        produce_confluent(rk, ser, req, headers={"kafka_correlationId": corr})
        sent[req["requestId"]] = (req, corr)
    got = confluent_results(rk, sr, len(sent))
    rid = results_schema_id(sr, rk)
    for request_id, (req, corr) in sent.items():
        assert len(got[request_id]) == 1
        rec, r = got[request_id][0]
        assert r["result"] == "SUCCESS" and r["cause"] is None
        assert r["requesterIdentity"] == req["requesterIdentity"]
        assert r["kmsId"] == rk.kms_id
        assert struct.unpack(">I", rec.value[1:5])[0] == rid
        h = rec.headers
        assert h["kafka_correlationId"] == corr
        assert h["ce_specversion"] == b"1.0" and h["ce_type"] == CE_TYPE.encode()
        assert h["ce_source"] == rk.kms_id.encode()
        assert h["ce_subject"] == request_id.encode()
        assert h["content-type"] == b"application/avro" and len(h["ce_id"]) == 36
        assert rec.key == req["requesterIdentity"].encode()
        vs = stored(rk, req["requesterIdentity"])
        assert vs is not None and vs["services"][SERVICE]["format_type"] == "JWK"
    # the serializer registered its schema under the TopicNameStrategy subject
    assert f"{rk.requests_topic}-value" in sr.get_subjects()


def test_registration_is_idempotent(kms_factory, registry_url, sr):
    k = kms_factory(start=False)
    first = migrate(k, registry_url)
    subjects = [f"{k.requests_topic}-value", f"{k.results_topic}-value"]
    versions = {s: sr.get_versions(s) for s in subjects}
    second = migrate(k, registry_url)
    assert "registered as id" in first and "already registered as id" in second
    assert second.count("already registered") == 2
    for s in subjects:
        assert sr.get_versions(s) == versions[s]
        assert sr.get_compatibility(s) == "BACKWARD"
    assert json.loads(sr.get_latest_version(subjects[0]).schema.schema_str)["name"] == \
        "ValServerProvisioningRequest"


# ---------------------------------------------------------------- evolution, Confluent framing


def test_newer_confluent_writer_decided_as_before(rk, sr):
    vsp = setup_provider(rk)
    who = rk.unique("val-newer")
    req = rk.request(who, [kmswire.service(SERVICE, "JWK")], vsp_id=vsp)
    req["vehicleClass"] = "truck"
    value = produce_confluent(rk, serializer(sr, with_vehicle_class()), req)
    sid = struct.unpack(">I", value[1:5])[0]
    assert json.loads(sr.get_schema(sid).schema_str)["fields"][-1]["name"] == "vehicleClass"
    (rec, r), = find_result(rk, sr, req["requestId"])
    assert r["result"] == "SUCCESS"
    assert stored(rk, who)["services"][SERVICE]["format_type"] == "JWK"


def find_result(kms, sr, request_id, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        got = confluent_results(kms, sr, 1, timeout=timeout, settle=0.2)
        if request_id in got:
            return got[request_id]
        assert time.monotonic() < deadline, f"no Result for {request_id}"
        time.sleep(0.2)


def test_older_confluent_writer_takes_the_default(rk, sr):
    """Without suppFeat, the request is decoded with its default (null): the
    same request sent again by a current writer with suppFeat null is the
    same request (its stored Result again), with suppFeat set it is not
    (REQUEST_ID_CONFLICT)."""
    vsp = setup_provider(rk)
    who = rk.unique("val-older")
    req = rk.request(who, [kmswire.service(SERVICE, "RAW")], vsp_id=vsp)
    old = {k: v for k, v in req.items() if k != "suppFeat"}
    produce_confluent(rk, serializer(sr, without_supp_feat()), old)
    (rec, r), = find_result(rk, sr, req["requestId"])
    assert r["result"] == "SUCCESS"
    again = dict(req, suppFeat=None)
    produce_confluent(rk, serializer(sr, request_schema_text()), again)
    conflict = dict(req, suppFeat="0F")
    produce_confluent(rk, serializer(sr, request_schema_text()), conflict)
    results = wait_until(lambda: (lambda g: g if len(g) >= 3 else None)(
        find_result(rk, sr, req["requestId"])), 60, what="three Results")
    outcomes = sorted((r["result"], r["cause"] or "") for _, r in results)
    assert outcomes == [("FAILURE", "REQUEST_ID_CONFLICT"), ("SUCCESS", ""), ("SUCCESS", "")]


def test_backward_breaking_writer_refused_at_registration(rk, sr):
    breaking = request_schema()
    breaking["fields"].append({"name": "mandatoryNew", "type": "string"})  # no default
    with pytest.raises(SchemaRegistryError) as e:
        sr.register_schema(f"{rk.requests_topic}-value", Schema(json.dumps(breaking), "AVRO"))
    assert e.value.http_status_code == 409
    req = rk.request(rk.unique("val-break"), [kmswire.service(SERVICE)], vsp_id="vsp-x")
    req["mandatoryNew"] = "x"
    with pytest.raises(SchemaRegistryError):
        serializer(sr, breaking)(req, SerializationContext(rk.requests_topic,
                                                           MessageField.VALUE))


# ---------------------------------------------------------------- evolution, single-object


def single_object(schema, datum):
    canonical = fastavro.schema.to_parsing_canonical_form(fastavro.parse_schema(
        copy.deepcopy(schema)))
    fp = kmswire.crc64_avro(canonical.encode())
    import io
    b = io.BytesIO()
    fastavro.schemaless_writer(b, fastavro.parse_schema(copy.deepcopy(schema)), datum)
    return b"\xc3\x01" + struct.pack("<Q", fp) + b.getvalue()


def test_single_object_versions_known_by_fingerprint(kms_factory, registry_url, tmp_path):
    d = tmp_path / "schemas"
    d.mkdir()
    (d / "ValServerProvisioningRequest-v0.avsc").write_text(json.dumps(without_supp_feat()))
    (d / "ValServerProvisioningRequest-v2.avsc").write_text(json.dumps(with_vehicle_class()))
    k = new_kms(kms_factory, registry_url, extra=["--schemas-dir", str(d)])
    vsp = setup_provider(k)
    newer = k.request(k.unique("val-so-new"), [kmswire.service(SERVICE, "JWK")], vsp_id=vsp)
    newer["vehicleClass"] = "drone"
    older = k.request(k.unique("val-so-old"), [kmswire.service(SERVICE, "RAW")], vsp_id=vsp)
    older_datum = {x: v for x, v in older.items() if x != "suppFeat"}
    unknown = copy.deepcopy(with_vehicle_class())
    unknown["fields"].append({"name": "other", "type": "int", "default": 0})
    stranger = k.request(k.unique("val-so-unk"), [kmswire.service(SERVICE)], vsp_id=vsp)
    k.send(single_object(with_vehicle_class(), newer), key=newer["requesterIdentity"])
    k.send(single_object(without_supp_feat(), older_datum), key=older["requesterIdentity"])
    k.send(single_object(unknown, dict(stranger, vehicleClass=None, other=1)),
           key=stranger["requesterIdentity"])
    for req in (newer, older):
        h, r = k.result(req["requestId"])
        assert r["result"] == "SUCCESS", r
        assert stored(k, req["requesterIdentity"]) is not None
    # older decoded with suppFeat's default: the current writer's null is a repeat
    k.send(dict(older, suppFeat=None))
    # the repeat's Result is visible once its transaction commits: wait for
    # it (bounded) rather than for a fixed half second
    deadline = time.monotonic() + 30
    got = k.results(older["requestId"])
    while len(got) < 2 and time.monotonic() < deadline:
        got = k.results(older["requestId"], settle=0.5)
    assert [r["result"] for _, r in got] == ["SUCCESS", "SUCCESS"]
    # an unknown fingerprint: the DLQ as ever, and a Result naming it
    dl = k.dlq(1, key=stranger["requesterIdentity"])
    assert b"fingerprint" in dl[0].headers["__connect.errors.exception.message"]
    h, r = k.result(stranger["requestId"])
    assert r["result"] == "FAILURE" and r["cause"] == "INVALID_REQUEST"
    assert stored(k, stranger["requesterIdentity"]) is None


# ---------------------------------------------------------------- bad input


def body_of(req):
    """The Avro datum of a current-schema request, without any framing."""
    return kmswire.encode_request(req)[10:]


def check_dlq(kms, key, stage_word):
    rec, = kms.dlq(1, key=key)
    h = rec.headers
    assert h["__connect.errors.topic"] == kms.requests_topic.encode()
    assert h["__connect.errors.stage"] == b"VALUE_CONVERTER"
    assert h["__connect.errors.exception.class.name"] == \
        b"org.apache.kafka.connect.errors.DataException"
    assert int(h["__connect.errors.offset"]) >= 0 and int(h["__connect.errors.partition"]) >= 0
    assert stage_word.encode() in h["__connect.errors.exception.message"], h
    return rec


def test_unknown_schema_id(rk, sr):
    vsp = setup_provider(rk)
    who = rk.unique("val-unk-id")
    req = rk.request(who, [kmswire.service(SERVICE)], vsp_id=vsp)
    value = b"\x00" + struct.pack(">I", 0x7FFFFF00) + body_of(req)
    rk.send(value, key=who)
    rec = check_dlq(rk, who, "schema_id")
    assert rec.value == value
    (res, r), = find_result(rk, sr, req["requestId"])
    assert r["result"] == "FAILURE" and r["cause"] == "INVALID_REQUEST"
    assert "schema" in r["detail"]
    assert stored(rk, who) is None


def test_confluent_frame_shorter_than_5_bytes(rk):
    who = rk.unique("val-short")
    for value in (b"\x00", b"\x00\x00\x00\x01"):
        rk.send(value, key=who)
    recs = rk.dlq(2, key=who)
    assert sorted(r.value for r in recs) == [b"\x00", b"\x00\x00\x00\x01"]
    for r in recs:
        assert b"magic" in r.headers["__connect.errors.exception.message"]
        assert b"Confluent header" in r.headers["__connect.errors.exception.message"]
    assert stored(rk, who) is None
    # nothing could be named, so no Result: the next request is served
    vsp = setup_provider(rk)
    nxt = rk.request(who, [kmswire.service(SERVICE)], vsp_id=vsp)
    h, r = rk.result(rk.send(nxt))
    assert r["result"] == "SUCCESS"


@pytest.mark.parametrize("schema, word, named", [
    ({"type": "record", "name": "Telemetry", "namespace": "org.example",
      "fields": [{"name": "requestId", "type": "string"},
                 {"name": "requesterIdentity", "type": "string"}]}, "neither kind", False),
    ({"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN"]}, "not a record", False),
    ("RESPONSE", "is not a ValServerProvisioningRequest", False),
    ("NO_ENDPOINT", "resolve", True),
], ids=["other-record", "not-a-record", "result-schema", "unresolvable-request"])
def test_registered_schema_of_another_kind(rk, sr, schema, word, named):
    if schema == "RESPONSE":
        with open(os.path.join(kmswire.SCHEMA_DIR, "ValServerProvisioningResponse.avsc")) as f:
            schema = json.load(f)
    elif schema == "NO_ENDPOINT":
        schema = request_schema()
        schema["fields"] = [x for x in schema["fields"] if x["name"] != "endpoint"]
    subject = f"{rk.prefix}.other-{uuid.uuid4().hex[:8]}-value"
    sid = sr.register_schema(subject, Schema(json.dumps(schema), "AVRO"))
    vsp = setup_provider(rk)
    who = rk.unique("val-kind")
    req = rk.request(who, [kmswire.service(SERVICE)], vsp_id=vsp)
    value = b"\x00" + struct.pack(">I", sid) + body_of(req)
    rk.send(value, key=who)
    check_dlq(rk, who, word)
    if named:
        (res, r), = find_result(rk, sr, req["requestId"])
        assert r["result"] == "FAILURE" and r["cause"] == "INVALID_REQUEST"
    else:
        time.sleep(1.0)
        got = confluent_results(rk, sr, 0, timeout=5, settle=0.5)
        assert req["requestId"] not in got
    assert stored(rk, who) is None


# ---------------------------------------------------------------- the registry away


def stack_cmd(stack, *args):
    cp = subprocess.run([os.path.join(stack.repo, "scripts", "stack"), *args],
                        capture_output=True, text=True, timeout=400)
    assert cp.returncode == 0, cp.stderr[-2000:]


def decisions(kms, request_ids):
    rows = kms.sql("select request_id, count(*) from decisions group by request_id")
    counts = {r[0]: int(r[1]) for r in rows}
    return {rid: counts.get(rid, 0) for rid in request_ids}


@pytest.mark.slow
def test_registry_stopped_15s_under_load(kms_factory, registry_url, sr, stack):
    k = new_kms(kms_factory, registry_url)
    vsp = setup_provider(k)
    ser = serializer(sr, request_schema_text())
    servers = [k.unique(f"val-out{i}") for i in range(10)]
    sent = []

    def burst(n):
        for i in range(n):
            who = servers[i % len(servers)]
            req = k.request(who, [kmswire.service(SERVICE)], vsp_id=vsp)
            produce_confluent(k, ser, req)
            sent.append(req["requestId"])

    burst(50)
    confluent_results(k, sr, 50, timeout=90)
    # A KM-S that has not seen the schema yet meets the outage: stop the
    # first, stop the registry, start another, keep producing.
    assert k.stop() == 0
    stack_cmd(stack, "registry-stop")
    try:
        p = k.peer()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 15:
            burst(10)
            time.sleep(1.0)
        status, body = p.readyz()
        assert status == 503 and body.get("registry") is False, body
        assert len(k.seen()) == 50  # nothing answered while the registry was away
        assert any(e.get("event") == "registry_unavailable" for e in p.log_events())
    finally:
        stack_cmd(stack, "registry-start")
    got = wait_until(lambda: (lambda g: g if len(g) >= len(sent) else None)(
        confluent_results(k, sr, len(sent), timeout=180, settle=1.0)), 200,
        what="every Result")
    assert set(got) == set(sent)
    assert all(r["result"] == "SUCCESS" for recs in got.values() for _, r in recs)
    # repeats (at least once) are byte-identical
    for recs in got.values():
        assert len({rec.value for rec, _ in recs}) == 1
    assert set(decisions(k, sent).values()) == {1}
    wait_until(lambda: p.readyz()[0] == 200, 60, what="ready again")


# ---------------------------------------------------------------- valctl


def valctl(stack, *args, timeout=120):
    cp = subprocess.run([stack.binary("valctl"), *args], capture_output=True, text=True,
                        timeout=timeout, env={k: v for k, v in os.environ.items()
                                              if not k.startswith("KMS_")})
    return cp.returncode, cp.stdout, cp.stderr


def key_file(kms):
    from cryptography.hazmat.primitives import serialization
    path = os.path.join(kms.tmpdir, "issuer.pem")
    with open(path, "wb") as f:
        f.write(kms.issuer_key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    return path


def test_valctl_confluent_provision_fleet_replay(rk, sr, stack, registry_url):
    vsp = setup_provider(rk)
    common = ["--bootstrap", stack.bootstrap, "--requests-topic", rk.requests_topic,
              "--reply-topic", rk.results_topic, "--framing", "confluent",
              "--registry", registry_url]
    who = rk.unique("val-ctl")
    token = rk.token(who, vsp)
    rc, out, err = valctl(stack, "provision", *common, "--requester", who, "--endpoint",
                          "https://ctl.example/kpp", "--token", token, "--service",
                          f"{SERVICE}:JWK", "--timeout", "60")
    assert rc == 0, err
    assert stored(rk, who) is not None
    mine = wait_until(lambda: [r for r in k_records(rk) if r.key == who.encode()], 30,
                      what="the request on the requests topic")
    assert all(r.value[:1] == b"\x00" for r in mine)

    rc, out, err = valctl(stack, "fleet", *common, "--servers", "3", "--requests", "2",
                          "--key", key_file(rk), "--iss", rk.issuer, "--kid", rk.kid,
                          "--vsp-id", vsp, "--services", SERVICE, "--formats", "JWK",
                          "--prefix", rk.unique("fl") + "-", "--timeout", "90")
    assert rc == 0, err + out

    # replay: a recorded single-object request goes out Confluent-framed
    who2 = rk.unique("val-replay")
    req = rk.request(who2, [kmswire.service(SERVICE)], vsp_id=vsp)
    line = {"topic": rk.requests_topic, "key": base64.b64encode(who2.encode()).decode(),
            "value": base64.b64encode(kmswire.encode_request(req)).decode(), "headers": []}
    path = os.path.join(rk.tmpdir, "replay.jsonl")
    with open(path, "w") as f:
        f.write(json.dumps(line) + "\n")
    rc, out, err = valctl(stack, "replay", "--bootstrap", stack.bootstrap, "--in", path,
                          "--framing", "confluent", "--registry", registry_url)
    assert rc == 0, err
    (rec, r), = find_result(rk, sr, req["requestId"])
    assert r["result"] == "SUCCESS"

    # misuse: one line, exit 2
    rc, out, err = valctl(stack, "provision", "--framing", "confluent", "--requester", "x",
                          "--endpoint", "https://x", "--token", "t", "--service", "s:JWK")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--registry" in err
    rc, out, err = valctl(stack, "fleet", "--framing", "avro")
    assert rc == 2 and len(err.strip().splitlines()) == 1


def k_records(kms):
    """Every record of the requests topic, read from the beginning."""
    return kms.seen(kms.requests_topic)
