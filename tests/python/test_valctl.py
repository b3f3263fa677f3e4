"""Tests of valctl, the VAL-server command line.

Without a broker: the command line contract (help on stdout with exit 0,
misuse as exactly one line on stderr with exit 2, runtime errors as one line
with exit 4), and the issuer side: keys from ``keygen`` and tokens from
``token`` are checked with PyJWT, an implementation that shares nothing with
the project's C code.

Against the real broker of the stack (the ``stack`` fixture): ``record`` and
``replay`` round trips checked with confluent-kafka; ``provision`` against a
stand-in KM-S written here with the independent Avro code of ``kmswire`` (it
checks the request and its headers on the wire, and answers with decoys that
valctl must ignore); and ``provision`` and ``fleet`` against the real KM-S.
"""

import base64
import json
import os
import secrets
import stat
import struct
import subprocess
import threading
import time
import uuid

import jwt as pyjwt
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from cryptography.hazmat.primitives import serialization

import kmswire

BUILD = os.path.join(kmswire.REPO, os.environ.get("KMS_BUILD", "build"))
VALCTL = os.path.join(BUILD, "valctl")
ALGS = ("ES256", "ES384", "RS256", "PS256", "EdDSA")
REQUEST_CE_TYPE = "org.threegpp.seal.km.provisioning.request.v1"


def valctl(*args, timeout=120, env=None):
    """Run valctl; returns the CompletedProcess (text)."""
    if not os.access(VALCTL, os.X_OK):
        pytest.fail(f"{VALCTL} is missing: run make (or set KMS_BUILD)")
    e = {k: v for k, v in os.environ.items() if k != "KMS_BOOTSTRAP"}
    e.update(env or {})
    return subprocess.run([VALCTL, *[str(a) for a in args]], capture_output=True, text=True,
                          timeout=timeout, env=e)


def one_line(text):
    """text is exactly one non-empty line ending in a newline."""
    return text.endswith("\n") and text.count("\n") == 1 and text.strip() != ""


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


# ---------------------------------------------------------------- the command line

SUBCOMMANDS = ("token", "keygen", "provision", "fleet", "record", "replay", "diff")


@pytest.mark.parametrize("args", [["--help"], ["-h"]] + [[s, "--help"] for s in SUBCOMMANDS])
def test_help_goes_to_stdout_with_exit_0(args):
    cp = valctl(*args)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.startswith("Usage: valctl")
    assert cp.stderr == ""


PROVISION_OK = ["provision", "--requester", "val-1", "--endpoint", "https://val-1.test",
                "--token", "t.t.t", "--service", "v2x.a:JWK"]
TOKEN_OK = ["token", "--key", "/nonexistent.pem", "--iss", "https://iss.test", "--client-id",
            "val-1", "--vsp-id", "vsp-1"]
FLEET_OK = ["fleet", "--servers", "2", "--requests", "3", "--key", "/nonexistent.pem",
            "--iss", "https://iss.test", "--vsp-id", "vsp-1"]

MISUSE = {
    "no command": [],
    "unknown command": ["frobnicate"],
    "unknown option": PROVISION_OK + ["--frobnicate"],
    "option without its value": ["provision", "--requester"],
    "unexpected argument": PROVISION_OK + ["extra"],
    "missing --requester": ["provision", "--endpoint", "https://v.test", "--token", "t",
                            "--service", "v2x.a:JWK"],
    "missing --service": PROVISION_OK[:7],
    "--service without format": PROVISION_OK[:-1] + ["v2x.a"],
    "--service with empty id": PROVISION_OK[:-1] + [":JWK"],
    "--service with unknown format": PROVISION_OK[:-1] + ["v2x.a:PEMBERTON"],
    "--content without =": PROVISION_OK + ["--content", "v2x.a:kty"],
    "--content for an unlisted service": PROVISION_OK + ["--content", "v2x.b:kty=oct"],
    "--service twice": PROVISION_OK + ["--service", "v2x.a:RAW"],
    "--reply-partition negative": PROVISION_OK + ["--reply-partition", "-1"],
    "--reply-partition not a number": PROVISION_OK + ["--reply-partition", "two"],
    "--reply-partition trailing junk": PROVISION_OK + ["--reply-partition", "3x"],
    "--reply-partition past int32": PROVISION_OK + ["--reply-partition", "2147483648"],
    "--timeout zero": PROVISION_OK + ["--timeout", "0"],
    "--timeout nan": PROVISION_OK + ["--timeout", "nan"],
    "-X without =": PROVISION_OK + ["-X", "acks"],
    "--token and --token-file": PROVISION_OK + ["--token-file", "/nonexistent"],
    "--raw-value-file with request fields": PROVISION_OK + ["--raw-value-file", "/dev/null"],
    "token without --iss": [a for a in TOKEN_OK if a not in ("--iss", "https://iss.test")],
    "token --claim not JSON": TOKEN_OK + ["--claim", "exp=soon"],
    "token --claim without =": TOKEN_OK + ["--claim", "exp"],
    "token HMAC algorithm": TOKEN_OK + ["--alg", "HS256"],
    "token --ttl not a number": TOKEN_OK + ["--ttl", "1h"],
    "keygen without --out-public": ["keygen", "--out-private", "/tmp/x.pem"],
    "keygen unknown --alg": ["keygen", "--out-private", "a", "--out-public", "b", "--alg",
                             "none"],
    "fleet --servers 0": ["fleet", "--servers", "0"] + FLEET_OK[3:],
    "fleet without --vsp-id": FLEET_OK[:-2],
    "fleet formats do not pair": FLEET_OK + ["--services", "a,b", "--formats", "JWK,RAW,X509"],
    "fleet empty service": FLEET_OK + ["--services", "a,,b"],
    "fleet --rate negative": FLEET_OK + ["--rate", "-1"],
    "record without --out": ["record", "--topic", "t"],
    "record --count 0": ["record", "--topic", "t", "--out", "f", "--count", "0"],
    "replay without --in": ["replay", "--topic", "t"],
}


@pytest.mark.parametrize("args", MISUSE.values(), ids=MISUSE.keys())
def test_misuse_is_one_line_on_stderr_and_exit_2(args):
    cp = valctl(*args, timeout=30)
    assert cp.returncode == 2, (cp.returncode, cp.stdout, cp.stderr)
    assert one_line(cp.stderr), repr(cp.stderr)
    assert cp.stderr.startswith("valctl")
    assert cp.stdout == ""


def test_unreachable_broker_is_a_runtime_error(tmp_path):
    # Port 1 refuses connections: the reply topic cannot be read.
    cp = valctl(*PROVISION_OK, "-b", "127.0.0.1:1", "--timeout", "3", timeout=60)
    assert cp.returncode == 4, (cp.returncode, cp.stderr)
    assert one_line(cp.stderr), repr(cp.stderr)
    assert cp.stdout == ""


def test_unreadable_files_are_runtime_errors(tmp_path):
    missing = tmp_path / "missing"
    for args in (TOKEN_OK[:2] + [missing] + TOKEN_OK[3:],
                 PROVISION_OK[:5] + ["--token-file", missing] + PROVISION_OK[7:],
                 ["provision", "--file", missing],
                 ["provision", "--raw-value-file", missing],
                 ["replay", "--in", missing, "-b", "127.0.0.1:1"]):
        cp = valctl(*args, timeout=30)
        assert cp.returncode == 4, (args, cp.returncode, cp.stderr)
        assert one_line(cp.stderr), (args, cp.stderr)
        assert cp.stdout == ""


def test_a_request_file_that_breaks_the_shape_is_refused(tmp_path):
    f = tmp_path / "req.json"
    for text in ('{"requesterIdentity": 7}', "[1]", "{", '{"valServices": [{}]}',
                 '{"valServices": [{"valServiceId": "a", "keyFormat": {"formatType": "X"}}]}',
                 '{"requestIdd": "typo"}'):
        f.write_text(text)
        cp = valctl("provision", "--file", f, timeout=30)
        assert cp.returncode == 4, (text, cp.returncode, cp.stderr)
        assert one_line(cp.stderr), (text, cp.stderr)


# ---------------------------------------------------------------- keys and tokens


def keygen(tmp_path, alg):
    priv, pub = tmp_path / f"{alg}.key.pem", tmp_path / f"{alg}.pub.pem"
    cp = valctl("keygen", "--out-private", priv, "--out-public", pub, "--alg", alg)
    assert cp.returncode == 0 and cp.stderr == "" and cp.stdout == "", cp.stderr
    return priv, pub


@pytest.mark.parametrize("alg", ALGS)
def test_keygen_then_token_verifies_with_pyjwt(tmp_path, alg):
    priv, pub = keygen(tmp_path, alg)
    assert stat.S_IMODE(os.stat(priv).st_mode) == 0o600
    private_key = serialization.load_pem_private_key(priv.read_bytes(), password=None)
    public_key = serialization.load_pem_public_key(pub.read_bytes())
    assert private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo) == \
        public_key.public_bytes(serialization.Encoding.PEM,
                                serialization.PublicFormat.SubjectPublicKeyInfo)

    before = int(time.time())
    cp = valctl("token", "--key", priv, "--alg", alg, "--iss", "https://iss.test",
                "--client-id", "val-7", "--vsp-id", "vsp-3", "--kid", "k9")
    after = int(time.time())
    assert cp.returncode == 0 and cp.stderr == "", cp.stderr
    token = cp.stdout.strip()
    assert cp.stdout == token + "\n"

    header = pyjwt.get_unverified_header(token)
    assert header == {"alg": alg, "typ": "JWT", "kid": "k9"}
    claims = pyjwt.decode(token, public_key, algorithms=[alg], issuer="https://iss.test")
    assert set(claims) == {"iss", "sub", "client_id", "vsp_id", "scope", "SKeyProv", "iat",
                           "nbf", "exp", "jti"}
    assert claims["sub"] == claims["client_id"] == "val-7"
    assert claims["vsp_id"] == "vsp-3"
    assert claims["scope"] == "ss-kpp"
    assert claims["SKeyProv"] is True
    assert before <= claims["iat"] <= after
    assert claims["nbf"] == claims["iat"]
    assert claims["exp"] == claims["iat"] + 3600
    assert uuid.UUID(claims["jti"]).version == 4

    # Another key of the same kind does not verify it.
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    _, other_pub = keygen(other_dir, alg)
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt.decode(token, serialization.load_pem_public_key(other_pub.read_bytes()),
                     algorithms=[alg])


def test_token_options_shape_the_claims(tmp_path):
    priv, pub = keygen(tmp_path, "ES256")
    public_key = serialization.load_pem_public_key(pub.read_bytes())
    cp = valctl("token", "--key", priv, "--iss", "https://iss.test", "--client-id", "val-1",
                "--vsp-id", "vsp-1", "--scope", "openid ss-kpp", "--ttl", "60", "--no-skeyprov",
                "--claim", 'exp="soon"', "--claim", 'aud=["kms-a","kms-b"]',
                "--claim", "vsp_id=null", "--unset-claim", "jti")
    assert cp.returncode == 0, cp.stderr
    token = cp.stdout.strip()
    assert pyjwt.get_unverified_header(token) == {"alg": "ES256", "typ": "JWT"}
    # Only the signature is checked: the claims are deliberately odd.
    claims = json.loads(pyjwt.PyJWS().decode(token, public_key, algorithms=["ES256"]))
    assert claims["exp"] == "soon"
    assert claims["aud"] == ["kms-a", "kms-b"]
    assert claims["vsp_id"] is None
    assert claims["scope"] == "openid ss-kpp"
    assert "SKeyProv" not in claims and "jti" not in claims


def test_token_with_negative_ttl_is_expired(tmp_path):
    priv, pub = keygen(tmp_path, "EdDSA")
    cp = valctl("token", "--key", priv, "--alg", "EdDSA", "--iss", "i", "--client-id", "c",
                "--vsp-id", "v", "--ttl", "-120")
    assert cp.returncode == 0, cp.stderr
    with pytest.raises(pyjwt.ExpiredSignatureError):
        pyjwt.decode(cp.stdout.strip(), serialization.load_pem_public_key(pub.read_bytes()),
                     algorithms=["EdDSA"])


def test_token_refuses_a_key_of_another_kind(tmp_path):
    priv, _ = keygen(tmp_path, "ES256")
    cp = valctl("token", "--key", priv, "--alg", "RS256", "--iss", "i", "--client-id", "c",
                "--vsp-id", "v")
    assert cp.returncode == 4
    assert one_line(cp.stderr), cp.stderr
    assert cp.stdout == ""


def test_keygen_makes_an_existing_private_key_file_private(tmp_path):
    priv = tmp_path / "k.pem"
    priv.write_text("old")
    os.chmod(priv, 0o644)
    cp = valctl("keygen", "--out-private", priv, "--out-public", tmp_path / "p.pem")
    assert cp.returncode == 0, cp.stderr
    assert stat.S_IMODE(os.stat(priv).st_mode) == 0o600
    assert priv.read_text().startswith("-----BEGIN PRIVATE KEY-----")


# ---------------------------------------------------------------- record and replay


@pytest.fixture
def topics(stack):
    """topics(name: partitions, ...) -> names; unique, deleted afterwards."""
    made = []

    def make(*partitions):
        names = [f"valctl-{secrets.token_hex(5)}-{i}" for i in range(len(partitions))]
        stack.create_topics(dict(zip(names, partitions)))
        made.extend(names)
        return names

    yield make
    stack.delete_topics(made)


def consume_all(bootstrap, topic, n, partitions=1, timeout=30):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "valctl-test-" + secrets.token_hex(4),
                  "enable.auto.commit": False, "enable.partition.eof": False})
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            for m in c.consume(num_messages=n, timeout=0.5):
                assert m.error() is None, m.error()
                out.append(m)
        assert len(out) == n, f"{len(out)} messages on {topic}, expected {n}"
        return out
    finally:
        c.close()


def b64(data):
    return None if data is None else base64.b64encode(data).decode("ascii")


# What is produced, then recorded and replayed: keys and values null, empty,
# binary and large; header names repeated, header values binary, empty and
# null.
MESSAGES = [
    (b"val-1", bytes(range(256)), [("h1", b"\x00\xff"), ("h1", b"again"), ("empty", b""),
                                   ("null", None)]),
    (None, b"", [("ce_id", b"x")]),
    (b"", None, []),
    ("ünïcode-kéy".encode("utf-8"), os.urandom(200_000), [("kafka_correlationId",
                                                           os.urandom(16))]),
]


def test_record_then_replay_round_trip(stack, topics, tmp_path):
    src, dst, crafted = topics(1, 1, 1)
    p = Producer({"bootstrap.servers": stack.bootstrap, "linger.ms": 0})
    for key, value, headers in MESSAGES:
        p.produce(src, key=key, value=value, headers=headers)
    assert p.flush(30) == 0

    rec = tmp_path / "rec.jsonl"
    cp = valctl("record", "-b", stack.bootstrap, "--topic", src, "--out", rec,
                "--from-beginning", "--count", len(MESSAGES), "--idle-exit", 30)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == ""
    lines = [json.loads(line) for line in rec.read_text().splitlines()]
    assert len(lines) == len(MESSAGES)
    for i, (line, (key, value, headers)) in enumerate(zip(lines, MESSAGES)):
        assert line["topic"] == src and line["partition"] == 0 and line["offset"] == i
        assert isinstance(line["timestamp"], int) and line["timestamp"] > 0
        assert line["key"] == b64(key)
        assert line["value"] == b64(value)
        assert line["headers"] == [{"name": n, "value": b64(v)} for n, v in headers]

    cp = valctl("replay", "-b", stack.bootstrap, "--in", rec, "--topic", dst)
    assert cp.returncode == 0, cp.stderr
    got = consume_all(stack.bootstrap, dst, len(MESSAGES))
    for m, (key, value, headers) in zip(got, MESSAGES):
        assert m.key() == key
        assert m.value() == value
        assert (m.headers() or []) == headers

    # A crafted recording without --topic goes to each line's own topic.
    hand = tmp_path / "hand.jsonl"
    hand.write_text(json.dumps({"topic": crafted, "key": b64(b"k"), "value": b64(b"\xc3\x01"),
                                "headers": [{"name": "a", "value": None}]}) + "\n\n")
    cp = valctl("replay", "-b", stack.bootstrap, "--in", hand)
    assert cp.returncode == 0, cp.stderr
    (m,) = consume_all(stack.bootstrap, crafted, 1)
    assert (m.key(), m.value(), m.headers()) == (b"k", b"\xc3\x01", [("a", None)])


def test_record_from_the_end_sees_only_what_comes_after(stack, topics, tmp_path):
    (t,) = topics(3)
    p = Producer({"bootstrap.servers": stack.bootstrap, "linger.ms": 0})
    p.produce(t, key=b"old", value=b"before")
    assert p.flush(30) == 0
    rec = tmp_path / "rec.jsonl"
    proc = subprocess.Popen([VALCTL, "record", "-b", stack.bootstrap, "--topic", t, "--out",
                             str(rec), "--count", "3", "--idle-exit", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # record says when it reads (after taking the high watermarks).
        line = proc.stderr.readline()
        assert line.startswith(f"valctl record: reading {t} (3 partitions) from the end"), line
        for i in range(3):
            p.produce(t, key=f"k{i}".encode(), value=f"after{i}".encode(), partition=i)
        assert p.flush(30) == 0
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in rec.read_text().splitlines()]
    values = sorted(base64.b64decode(x["value"]) for x in lines)
    assert values == [b"after0", b"after1", b"after2"]
    assert sorted(x["partition"] for x in lines) == [0, 1, 2]


# ---------------------------------------------------------------- provision, stand-in KM-S


class StandIn:
    """A stand-in KM-S: reads requests with kmswire (the independent Avro
    code), keeps what it saw, and answers on kafka_replyTopic. Requesters
    named deny-* get FAILURE, silent-* get nothing; every answer is preceded by
    two decoys (our requestId with another correlation id, our correlation id
    with another requestId) that valctl must pass over."""

    def __init__(self, bootstrap, requests_topic, partitions):
        self.bootstrap = bootstrap
        self.seen = []
        self.errors = []
        self._stop = threading.Event()
        self._c = Consumer({"bootstrap.servers": bootstrap,
                            "group.id": "valctl-standin-" + secrets.token_hex(4),
                            "enable.auto.commit": False, "enable.partition.eof": False})
        self._c.assign([TopicPartition(requests_topic, p, OFFSET_BEGINNING)
                        for p in range(partitions)])
        self._p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            for m in self._c.consume(num_messages=10, timeout=0.2):
                try:
                    self._answer(m)
                except Exception as e:  # reported by the test
                    self.errors.append(repr(e))

    def _answer(self, m):
        assert m.error() is None, m.error()
        headers = dict(m.headers() or [])
        req = kmswire.decode_request(m.value())
        self.seen.append((m, headers, req))
        requester = req["requesterIdentity"]
        if requester.startswith("silent-"):
            return
        deny = requester.startswith("deny-")
        reply_topic = headers["kafka_replyTopic"].decode()
        corr = headers["kafka_correlationId"]
        kw = {}
        if "kafka_replyPartition" in headers:
            kw["partition"] = struct.unpack(">i", headers["kafka_replyPartition"])[0]

        def result(request_id, ok, detail=None):
            return kmswire.encode_response({
                "requestId": request_id, "requesterIdentity": requester,
                "result": "SUCCESS" if ok else "FAILURE",
                "cause": None if ok else "UNAUTHORIZED", "detail": detail,
                "kmsId": "stand-in", "processedAt": kmswire.now_ms()})

        rid = req["requestId"]
        self._p.produce(reply_topic, key=requester, value=result(rid, False, "decoy"),
                        headers=[("kafka_correlationId", corr + b"-other")], **kw)
        self._p.produce(reply_topic, key=requester, value=result(str(uuid.uuid4()), False,
                                                                 "decoy"),
                        headers=[("kafka_correlationId", corr)], **kw)
        self._p.produce(reply_topic, key=requester, value=b"\xc3\x01 not avro",
                        headers=[("kafka_correlationId", corr + b"-x")], **kw)
        self._p.produce(reply_topic, key=requester,
                        value=result(rid, not deny, 'the token is "expired"' if deny else None),
                        headers=[("kafka_correlationId", corr),
                                 ("ce_type", b"org.threegpp.seal.km.provisioning.result.v1")],
                        **kw)
        self._p.flush(10)

    def close(self):
        self._stop.set()
        self._t.join(10)
        self._c.close()


@pytest.fixture
def stand_in(stack, topics):
    req, rep = topics(3, 3)
    s = StandIn(stack.bootstrap, req, 3)
    s.requests_topic, s.reply_topic = req, rep
    yield s
    s.close()


def test_provision_builds_the_request_and_finds_its_result(stack, stand_in, tmp_path):
    rid = str(uuid.uuid4())
    f = tmp_path / "req.json"
    f.write_text(json.dumps({
        "requestId": rid, "requesterIdentity": "from-the-file",
        "endpoint": "https://val-9.test/kpp", "credentials": {"accessToken": "a.b.c"},
        "valServices": [kmswire.service("v2x.a", "JWK", None, {"alg": "A256GCM"}),
                        kmswire.service("v2x.b", "RAW", "1")],
        "suppFeat": "0f"}))
    before = kmswire.now_ms()
    cp = valctl("provision", "-b", stack.bootstrap, "--requests-topic", stand_in.requests_topic,
                "--reply-topic", stand_in.reply_topic, "--file", f, "--requester", "val-9",
                "--content", "v2x.a:use=enc", "--content", "v2x.a:alg=A128GCM",
                "--correlation-id", "corr-9", "--reply-partition", "2", "--json",
                "--timeout", 60)
    after = kmswire.now_ms()
    assert stand_in.errors == []
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout)
    assert cp.stdout.count("\n") == 1
    assert out["requestId"] == rid and out["result"] == "SUCCESS"
    assert out["cause"] is None and out["detail"] is None
    assert out["kmsId"] == "stand-in" and out["requesterIdentity"] == "val-9"
    assert before <= out["processedAt"] <= after
    assert out["headers"]["kafka_correlationId"] == b"corr-9".hex()
    assert out["headers"]["ce_type"] == "org.threegpp.seal.km.provisioning.result.v1"

    (m, headers, req) = stand_in.seen[0]
    assert m.key() == b"val-9"
    assert req["requestId"] == rid
    assert req["requesterIdentity"] == "val-9"
    assert req["endpoint"] == "https://val-9.test/kpp"
    assert req["credentials"] == {"accessToken": "a.b.c"}
    assert req["valServices"] == [
        kmswire.service("v2x.a", "JWK", None, {"alg": "A128GCM", "use": "enc"}),
        kmswire.service("v2x.b", "RAW", "1", {})]
    assert req["suppFeat"] == "0f"
    assert before <= req["sentAt"] <= after
    assert headers == {
        "kafka_replyTopic": stand_in.reply_topic.encode(),
        "kafka_correlationId": b"corr-9",
        "kafka_replyPartition": struct.pack(">i", 2),
        "ce_specversion": b"1.0",
        "ce_id": rid.encode(),
        "ce_source": b"valctl/val-9",
        "ce_type": REQUEST_CE_TYPE.encode(),
        "content-type": b"application/avro",
    }


def test_provision_failure_prints_one_line_and_exits_1(stack, stand_in):
    cp = valctl("provision", "-b", stack.bootstrap, "--requests-topic", stand_in.requests_topic,
                "--reply-topic", stand_in.reply_topic, "--requester", "deny-1",
                "--endpoint", "https://deny-1.test", "--token", "x.y.z",
                "--service", "v2x.a:X509", "--timeout", 60)
    assert stand_in.errors == []
    assert cp.returncode == 1, cp.stderr
    (m, headers, req) = stand_in.seen[0]
    rid = req["requestId"]
    assert uuid.UUID(rid).version == 4
    assert len(headers["kafka_correlationId"]) == 16
    assert "kafka_replyPartition" not in headers
    assert req["valServices"] == [kmswire.service("v2x.a", "X509", None, {})]
    assert req["suppFeat"] is None
    assert cp.stdout == (f'FAILURE cause=UNAUTHORIZED detail="the token is \\"expired\\"" '
                         f"requestId={rid}\n")


def test_provision_without_an_answer_times_out_with_exit_3(stack, stand_in):
    start = time.monotonic()
    cp = valctl("provision", "-b", stack.bootstrap, "--requests-topic", stand_in.requests_topic,
                "--reply-topic", stand_in.reply_topic, "--requester", "silent-1",
                "--endpoint", "https://s.test", "--token", "x.y.z", "--service", "v2x.a:JWK",
                "--timeout", 3)
    took = time.monotonic() - start
    assert cp.returncode == 3, cp.stderr
    assert one_line(cp.stderr) and cp.stdout == ""
    assert 3 <= took < 15
    wait_for(lambda: stand_in.seen, 10, "the request to arrive")


def test_provision_raw_value_is_sent_as_is(stack, stand_in, tmp_path):
    f = tmp_path / "raw.bin"
    f.write_bytes(b"\xc3\x01garbage\x00\xff")
    cp = valctl("provision", "-b", stack.bootstrap, "--requests-topic", stand_in.requests_topic,
                "--requester", "raw-1", "--request-id", "not-a-uuid", "--raw-value-file", f,
                "--timeout", 30)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == ""
    wait_for(lambda: stand_in.errors, 10, "the stand-in to fail on the raw value")
    (m,) = consume_all(stack.bootstrap, stand_in.requests_topic, 1, partitions=3)
    assert m.value() == f.read_bytes() and m.key() == b"raw-1"
    assert dict(m.headers())["ce_id"] == b"not-a-uuid"


# ---------------------------------------------------------------- against the real KM-S


@pytest.fixture(scope="module")
def issuer_pem(kms, tmp_path_factory):
    path = tmp_path_factory.mktemp("valctl") / "issuer.pem"
    path.write_bytes(kms.issuer_key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return path


def kms_args(kms):
    return ["-b", kms.stack.bootstrap, "--requests-topic", kms.requests_topic,
            "--reply-topic", kms.results_topic]


def test_provision_against_the_kms(kms, issuer_pem, tmp_path):
    vsp = kms.provider()
    kms.sla(vsp, ["v2x.a"], key_formats=("JWK",), max_val_servers=10)
    val = kms.unique("val")
    cp = valctl("token", "--key", issuer_pem, "--iss", kms.issuer, "--kid", kms.kid,
                "--client-id", val, "--vsp-id", vsp)
    assert cp.returncode == 0, cp.stderr
    token_file = tmp_path / "token"
    token_file.write_text(cp.stdout)

    cp = valctl("provision", *kms_args(kms), "--requester", val, "--endpoint",
                f"https://{val}.test", "--token-file", token_file, "--service", "v2x.a:JWK",
                "--content", "v2x.a:kty=oct", "--json", "--timeout", 60)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    out = json.loads(cp.stdout)
    assert out["result"] == "SUCCESS" and out["kmsId"] == kms.kms_id
    assert out["requesterIdentity"] == val
    assert token_file.read_text().strip() not in cp.stderr

    # The same VAL server with an expired token.
    cp = valctl("token", "--key", issuer_pem, "--iss", kms.issuer, "--kid", kms.kid,
                "--client-id", val, "--vsp-id", vsp, "--ttl", "-300")
    cp = valctl("provision", *kms_args(kms), "--requester", val, "--endpoint",
                f"https://{val}.test", "--token", cp.stdout.strip(), "--service", "v2x.a:JWK",
                "--timeout", 60)
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    assert cp.stdout.startswith("FAILURE cause=UNAUTHORIZED detail=")


def test_fleet_against_the_kms(kms, issuer_pem):
    vsp, no_sla = kms.provider(), kms.provider()
    kms.sla(vsp, ["v2x.a", "v2x.b"], key_formats=("JWK", "RAW"), max_val_servers=10)
    prefix = kms.unique("fleet") + "-"
    # Servers 0, 2 and 4 belong to vsp; 1 and 3 to a provider without an SLA.
    cp = valctl("fleet", *kms_args(kms), "--servers", 5, "--requests", 6, "--key", issuer_pem,
                "--iss", kms.issuer, "--kid", kms.kid, "--vsp-id", vsp, "--vsp-id", no_sla,
                "--services", "v2x.a,v2x.b", "--formats", "JWK,RAW", "--prefix", prefix,
                "--json", "--timeout", 60, timeout=180)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    s = json.loads(cp.stdout)
    assert (s["servers"], s["requests_per_server"], s["sent"], s["results"]) == (5, 6, 30, 30)
    assert (s["missing"], s["duplicates"], s["out_of_order"], s["delivery_errors"]) == \
        (0, 0, 0, 0)
    assert s["by_result"] == {"SUCCESS": 18, "FAILURE": 12}
    assert s["by_cause"] == {"NOT_ALLOWED_BY_SLA": 12}
    lat = s["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert s["requests_per_second"] > 0

    # Request j of server i carried seq=j, and the KM-S versions a key format
    # on each change: version v of every (server, service) must hold seq v-1.
    rows = kms.sql("SELECT requester_identity, val_service_id, version, content->>'seq' "
                   f"FROM key_formats WHERE requester_identity LIKE '{prefix}%'")
    assert sorted({r[0] for r in rows}) == [f"{prefix}{i}" for i in (0, 2, 4)]
    assert len(rows) == 3 * 2 * 6
    assert all(int(r[3]) == int(r[2]) - 1 for r in rows), rows


def test_fleet_sends_what_it_should_and_counts_only_its_results(stack, stand_in,
                                                                issuer_pem_any):
    cp = valctl("fleet", "-b", stack.bootstrap, "--requests-topic", stand_in.requests_topic,
                "--reply-topic", stand_in.reply_topic, "--servers", 3, "--requests", 4,
                "--key", issuer_pem_any, "--iss", "https://iss.test", "--kid", "k2",
                "--vsp-id", "vsp-a", "--vsp-id", "vsp-b", "--services", "v2x.a,v2x.b",
                "--formats", "JWK,RAW", "--prefix", "fl-", "--json", "--timeout", 60,
                timeout=120)
    assert stand_in.errors == []
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    s = json.loads(cp.stdout)
    assert (s["sent"], s["results"], s["missing"], s["duplicates"], s["out_of_order"]) == \
        (12, 12, 0, 0, 0)
    assert s["by_result"] == {"SUCCESS": 12, "FAILURE": 0} and s["by_cause"] == {}
    # Each answer came after three decoys: our requestId with another
    # correlation id, another requestId with ours, and bytes that do not decode.
    assert (s["foreign"], s["undecodable"]) == (24, 12)

    assert len(stand_in.seen) == 12
    seqs = {}
    for m, headers, req in stand_in.seen:
        key = m.key().decode()
        i = int(key.removeprefix("fl-"))
        rid = req["requestId"]
        assert req["requesterIdentity"] == key
        assert req["endpoint"] == f"https://{key}.val.example/kpp"
        claims = pyjwt.decode(req["credentials"]["accessToken"],
                              options={"verify_signature": False})
        assert pyjwt.get_unverified_header(req["credentials"]["accessToken"])["kid"] == "k2"
        assert claims["client_id"] == claims["sub"] == key
        assert claims["vsp_id"] == ("vsp-a", "vsp-b")[i % 2]
        assert claims["iss"] == "https://iss.test" and claims["SKeyProv"] is True
        seq = req["valServices"][0]["keyFormat"]["content"]["seq"]
        assert req["valServices"] == [kmswire.service("v2x.a", "JWK", None, {"seq": seq}),
                                      kmswire.service("v2x.b", "RAW", None, {"seq": seq})]
        assert headers["kafka_correlationId"] == rid.encode() == headers["ce_id"]
        assert headers["ce_source"] == f"valctl/{key}".encode()
        assert headers["kafka_replyTopic"] == stand_in.reply_topic.encode()
        seqs.setdefault(key, []).append(int(seq))
    # In each server's partition, its requests are in the order it sent them.
    assert seqs == {f"fl-{i}": [0, 1, 2, 3] for i in range(3)}


def test_fleet_reports_missing_results_with_exit_1(stack, stand_in, issuer_pem_any):
    cp = valctl("fleet", "-b", stack.bootstrap, "--requests-topic", stand_in.requests_topic,
                "--reply-topic", stand_in.reply_topic, "--servers", 2, "--requests", 2,
                "--key", issuer_pem_any, "--iss", "https://iss.test", "--vsp-id", "v",
                "--prefix", "silent-", "--timeout", 3, timeout=60)
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    assert cp.stdout.startswith("sent=4 results=0 missing=4 ")


def test_fleet_acked_file_lets_a_backlog_build_before_any_result(stack, topics,
                                                                  issuer_pem_any, tmp_path):
    # What make bench does: fleet produces a backlog, says when the broker
    # holds all of it, and only then does a KM-S (here the stand-in) start.
    req, rep = topics(3, 3)
    acked = tmp_path / "acked"
    p = subprocess.Popen(
        [VALCTL, "fleet", "-b", stack.bootstrap, "--requests-topic", req, "--reply-topic", rep,
         "--servers", "3", "--requests", "4", "--key", str(issuer_pem_any), "--iss",
         "https://iss.test", "--vsp-id", "v", "--prefix", "bl-", "--acked-file", str(acked),
         "--json", "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: acked.exists() or p.poll() is not None, 60, "the acked file")
        assert acked.read_text() == "sent=12\n", p.poll()
        assert not (tmp_path / "acked.tmp").exists()
        assert len(consume_all(stack.bootstrap, req, 12, partitions=3)) == 12
        stand_in = StandIn(stack.bootstrap, req, 3)
        try:
            out, err = p.communicate(timeout=120)
        finally:
            stand_in.close()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, (out, err)
    s = json.loads(out)
    assert (s["sent"], s["results"], s["missing"]) == (12, 12, 0)
    # The drain figures span the first to the last Result only.
    assert 0 < s["first_result_s"] <= s["last_result_s"] <= s["elapsed_s"]
    assert s["drain_s"] == pytest.approx(s["last_result_s"] - s["first_result_s"], abs=1e-5)
    if s["drain_s"] > 0:
        assert s["drain_requests_per_second"] == pytest.approx(11 / s["drain_s"], rel=1e-3)


@pytest.fixture
def issuer_pem_any(tmp_path):
    priv, _ = keygen(tmp_path, "ES256")
    return priv
