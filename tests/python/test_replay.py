"""valctl record, replay and diff: replayable test topics, against the real
broker of the stack.

What is produced is produced and checked with confluent-kafka (a client we
did not write), requests are built and read with ``kmswire`` (fastavro) and
re-minted tokens verified with PyJWT, so that valctl is checked against
code that shares nothing with it.

- a faithful replay: 2,000 requests with headers, recorded and replayed with
  --keep-timestamps --keep-partitions, identical record for record;
- pacing (--rate, --speed), filters (--key, --grep), the summary line and
  the progress line on a terminal;
- bad recordings: each kind of bad line, --skip-bad, a last line cut short;
- record: whole lines when stopped by SIGINT or SIGKILL (a SIGKILL in the
  middle of a write is repaired by the recorder's guard process), committed
  messages only;
- --resign: the token re-minted, nothing else of the request changed, and
  what is kept as it was;
- diff: equal, different, missing on either side, --json, bad input.
"""

import base64
import json
import os
import pty
import re
import secrets
import signal
import subprocess
import threading
import time
import uuid

import jwt as pyjwt
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka import TIMESTAMP_CREATE_TIME
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import kmswire

BUILD = os.path.join(kmswire.REPO, os.environ.get("KMS_BUILD", "build"))
VALCTL = os.path.join(BUILD, "valctl")
SUMMARY = re.compile(r"^valctl replay: (\d+) produced, (\d+) failed, (\d+) unacknowledged in "
                     r"[0-9.]+ s \(\d+/s\); (\d+) filtered out, (\d+) bad lines skipped, "
                     r"(\d+) cut short(; (\d+) tokens re-signed, (\d+) kept, (\d+) values not "
                     r"requests)?$", re.M)


def valctl(*args, timeout=300, stdin=None):
    if not os.access(VALCTL, os.X_OK):
        pytest.fail(f"{VALCTL} is missing: run make (or set KMS_BUILD)")
    env = {k: v for k, v in os.environ.items() if k != "KMS_BOOTSTRAP"}
    return subprocess.run([VALCTL, *[str(a) for a in args]], capture_output=True, text=True,
                          timeout=timeout, env=env, input=stdin)


def one_line(text):
    return text.endswith("\n") and text.count("\n") == 1 and text.strip() != ""


def summary(stderr):
    m = SUMMARY.search(stderr)
    assert m, f"no summary line in {stderr!r}"
    keys = ("produced", "failed", "unacked", "filtered", "bad", "cut", None, "resigned",
            "kept", "not_requests")
    return {k: int(v) for k, v in zip(keys, m.groups()) if k and v is not None}


def b64(data):
    return None if data is None else base64.b64encode(data).decode("ascii")


def line(topic, key, value, headers=(), partition=0, timestamp=None, offset=None):
    """One recording line, as valctl record writes it."""
    d = {"topic": topic, "partition": partition, "offset": offset or 0,
         "timestamp": timestamp if timestamp is not None else kmswire.now_ms(),
         "key": b64(key.encode() if isinstance(key, str) else key), "headers":
         [{"name": n, "value": b64(v)} for n, v in headers], "value": b64(value)}
    return json.dumps(d, separators=(",", ":"))


def write_lines(path, lines, end="\n"):
    with open(path, "w") as f:
        f.write("\n".join(lines) + end)
    return path


@pytest.fixture
def topics(stack):
    made = []

    def make(*partitions):
        names = [f"replay-{secrets.token_hex(5)}-{i}" for i in range(len(partitions))]
        stack.create_topics(dict(zip(names, partitions)))
        made.extend(names)
        return names

    yield make
    stack.delete_topics(made)


def read_all(bootstrap, topic, partitions=1, expect=None, timeout=60, committed=True):
    """Every record of the topic, by partition in offset order."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "replay-" + secrets.token_hex(4),
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "isolation.level": "read_committed" if committed else "read_uncommitted"})
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        out = {p: [] for p in range(partitions)}
        eof = set()
        deadline = time.monotonic() + timeout
        while True:
            n = sum(len(v) for v in out.values())
            if len(eof) == partitions and (expect is None or n >= expect):
                break
            assert time.monotonic() < deadline, f"{n} records on {topic}, expected {expect}"
            for m in c.consume(500, 0.5):
                if m.error():
                    assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                    eof.add(m.partition())
                    continue
                out[m.partition()].append(m)
        return out
    finally:
        c.close()


def count(bootstrap, topic, partitions=1):
    return sum(len(v) for v in read_all(bootstrap, topic, partitions, timeout=30).values())


# ---------------------------------------------------------------- faithful replay


def test_record_and_replay_2000_requests_record_for_record(stack, topics, tmp_path):
    """2,000 requests with headers from confluent-kafka, recorded, replayed
    with --keep-timestamps --keep-partitions: key, value, headers, partition
    and timestamp identical record for record."""
    src, dst = topics(4, 4)
    key = ec.generate_private_key(ec.SECP256R1())
    p = Producer({"bootstrap.servers": stack.bootstrap, "partitioner": "murmur2_random",
                  "linger.ms": 5, "enable.idempotence": True})
    base_ts = kmswire.now_ms() - 86_400_000  # recorded yesterday
    for i in range(2000):
        requester = f"val-{i % 97:03d}"
        token = pyjwt.encode({"iss": "https://auth.prod.test", "client_id": requester,
                              "exp": base_ts // 1000 + 300}, key, algorithm="ES256")
        req = kmswire.request(requester, token, [("svc-a", "JWK")], sent_at=base_ts + i)
        headers = [("kafka_replyTopic", b"replies"), ("kafka_correlationId", os.urandom(12)),
                   ("ce_id", req["requestId"].encode()), ("dup", b"one"), ("dup", b"two"),
                   ("empty", b""), ("null", None)]
        kw = {}
        if i % 5 == 0:
            kw["partition"] = i % 4  # not where the key would go, sometimes
        while True:
            try:
                p.produce(src, key=requester, value=kmswire.encode_request(req), headers=headers,
                          timestamp=base_ts + i * 37 + (i % 7) * 1000, **kw)
                break
            except BufferError:
                p.poll(0.1)
    assert p.flush(60) == 0

    rec = tmp_path / "rec.jsonl"
    cp = valctl("record", "-b", stack.bootstrap, "--topic", src, "--from-beginning", "--out", rec,
                "--count", 2000, "--idle-exit", 60)
    assert cp.returncode == 0, cp.stderr
    cp = valctl("replay", "-b", stack.bootstrap, "--in", rec, "--topic", dst,
                "--keep-timestamps", "--keep-partitions")
    assert cp.returncode == 0, cp.stderr
    assert summary(cp.stderr)["produced"] == 2000

    a = read_all(stack.bootstrap, src, 4, 2000)
    b = read_all(stack.bootstrap, dst, 4, 2000)
    for part in range(4):
        assert len(a[part]) == len(b[part]), part
        for x, y in zip(a[part], b[part]):
            assert (y.partition(), y.offset()) == (x.partition(), x.offset())
            assert y.key() == x.key()
            assert y.value() == x.value()
            assert y.headers() == x.headers()
            assert y.timestamp() == x.timestamp()
            assert y.timestamp()[0] == TIMESTAMP_CREATE_TIME
    assert sum(len(v) for v in b.values()) == 2000


def test_without_keep_options_the_timestamp_is_new(stack, topics, tmp_path):
    (dst,) = topics(1)
    old = kmswire.now_ms() - 3_600_000
    rec = write_lines(tmp_path / "r.jsonl", [line(dst, "k", b"v", timestamp=old)])
    before = kmswire.now_ms()
    cp = valctl("replay", "-b", stack.bootstrap, "--in", rec)
    assert cp.returncode == 0, cp.stderr
    [m] = read_all(stack.bootstrap, dst, 1, 1)[0]
    assert m.timestamp()[1] >= before - 1000


def test_keep_partitions_needs_as_many_partitions(stack, topics, tmp_path):
    (dst,) = topics(2)
    rec = write_lines(tmp_path / "r.jsonl", [line(dst, "k", b"v", partition=p)
                                             for p in (0, 1, 3, 1)])
    cp = valctl("replay", "-b", stack.bootstrap, "--in", rec, "--keep-partitions")
    assert cp.returncode == 2, cp.stderr
    assert one_line(cp.stderr), cp.stderr
    assert ":3:" in cp.stderr and "2 partitions" in cp.stderr and "partition 3" in cp.stderr
    assert count(stack.bootstrap, dst, 2) == 0, "something was sent"
    # a line without its partition, with --keep-partitions, is a bad line
    bad = {"topic": dst, "key": None, "headers": [], "value": b64(b"x")}
    rec2 = write_lines(tmp_path / "r2.jsonl", [json.dumps(bad)])
    cp = valctl("replay", "-b", stack.bootstrap, "--in", rec2, "--keep-partitions")
    assert cp.returncode == 2 and "lacks \"partition\"" in cp.stderr, cp.stderr


# ---------------------------------------------------------------- pacing, filters, output


def test_rate_paces_the_replay(stack, topics, tmp_path):
    (dst,) = topics(1)
    rec = write_lines(tmp_path / "r.jsonl", [line(dst, f"k{i}", b"v") for i in range(21)])
    t0 = time.monotonic()
    cp = valctl("replay", "-b", stack.bootstrap, "--in", rec, "--rate", 20)
    took = time.monotonic() - t0
    assert cp.returncode == 0, cp.stderr
    assert took >= 0.95, f"21 messages at 20/s took {took:.2f} s"
    assert summary(cp.stderr)["produced"] == 21


def test_speed_follows_the_recorded_timestamps(stack, topics, tmp_path):
    (dst,) = topics(1)
    t = kmswire.now_ms() - 60_000
    # recorded over 3 s; replayed at twice the pace: at least 1.5 s
    rec = write_lines(tmp_path / "r.jsonl", [line(dst, f"k{i}", b"v", timestamp=t + ms)
                                             for i, ms in enumerate((0, 1000, 1500, 3000))])
    t0 = time.monotonic()
    cp = valctl("replay", "-b", stack.bootstrap, "--in", rec, "--speed", 2, "--keep-timestamps")
    took = time.monotonic() - t0
    assert cp.returncode == 0, cp.stderr
    assert took >= 1.45, f"3 s of recording at speed 2 took {took:.2f} s"
    got = read_all(stack.bootstrap, dst, 1, 4)[0]
    assert [m.timestamp()[1] - t for m in got] == [0, 1000, 1500, 3000]


def test_rate_and_speed_exclude_each_other(tmp_path):
    cp = valctl("replay", "--in", tmp_path / "x", "--rate", 5, "--speed", 2)
    assert cp.returncode == 2 and one_line(cp.stderr), cp.stderr


def test_key_and_grep_filter_by_record_key(stack, topics, tmp_path):
    (dst,) = topics(1)
    keys = ["val-1", "val-10", "val-2", "other", None, b"\xffval-1\x00", "val-1"]
    rec = write_lines(tmp_path / "r.jsonl", [line(dst, k, f"v{i}".encode())
                                             for i, k in enumerate(keys)])
    cp = valctl("replay", "-b", stack.bootstrap, "--in", rec, "--key", "val-2", "--key", "other")
    assert cp.returncode == 0, cp.stderr
    s = summary(cp.stderr)
    assert (s["produced"], s["filtered"]) == (2, 5)
    cp = valctl("replay", "-b", stack.bootstrap, "--in", rec, "--grep", "^val-1")
    assert cp.returncode == 0, cp.stderr
    assert summary(cp.stderr)["produced"] == 3
    got = read_all(stack.bootstrap, dst, 1, 5)[0]
    assert [(m.key(), m.value()) for m in got] == [
        (b"val-2", b"v2"), (b"other", b"v3"), (b"val-1", b"v0"), (b"val-10", b"v1"),
        (b"val-1", b"v6")]
    cp = valctl("replay", "-b", stack.bootstrap, "--in", rec, "--grep", "(")
    assert cp.returncode == 2 and one_line(cp.stderr), cp.stderr


def test_progress_line_only_on_a_terminal(stack, topics, tmp_path):
    (dst,) = topics(1)
    rec = write_lines(tmp_path / "r.jsonl", [line(dst, f"k{i}", b"v") for i in range(16)])
    # stderr a pipe: the summary only
    cp = valctl("replay", "-b", stack.bootstrap, "--in", rec, "--rate", 10)
    assert cp.returncode == 0
    assert "\r" not in cp.stderr and one_line(cp.stderr), repr(cp.stderr)
    # stderr a terminal: progress lines, overwritten in place, then the summary
    master, slave = pty.openpty()
    proc = subprocess.Popen([VALCTL, "replay", "-b", stack.bootstrap, "--in", str(rec),
                             "--rate", "10"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(60) == 0
    os.close(master)
    text = out.decode()
    assert re.search(r"\r\x1b\[Kvalctl replay: \d+ of 16 \(\d+%\), \d+ produced, 0 failed",
                     text), repr(text)
    assert summary(text.replace("\r\n", "\n").replace("\r\x1b[K", "\n"))["produced"] == 16


# ---------------------------------------------------------------- bad recordings

BAD_LINES = {
    "not JSON": "{\"topic\": ",
    "a JSON array": "[1, 2]",
    "lacks value": json.dumps({"key": None, "headers": []}),
    "lacks key": json.dumps({"value": b64(b"x"), "headers": []}),
    "lacks headers": json.dumps({"key": None, "value": b64(b"x")}),
    "value not base64": json.dumps({"key": None, "headers": [], "value": "not base64!"}),
    "key not base64": json.dumps({"key": "a===", "headers": [], "value": None}),
    "header value not base64": json.dumps({"key": None, "value": None,
                                           "headers": [{"name": "h", "value": "%%"}]}),
    "header without name": json.dumps({"key": None, "value": None, "headers": [{"value": None}]}),
}


@pytest.mark.parametrize("bad", BAD_LINES.values(), ids=BAD_LINES.keys())
def test_a_bad_line_stops_the_replay_and_nothing_is_sent(stack, topics, tmp_path, bad):
    (dst,) = topics(1)
    rec = write_lines(tmp_path / "r.jsonl", [line(dst, "k", b"first"), bad,
                                             line(dst, "k", b"third")])
    cp = valctl("replay", "-b", stack.bootstrap, "--in", rec, "--topic", dst)
    assert cp.returncode == 2, cp.stderr
    assert one_line(cp.stderr), cp.stderr
    assert f"{rec}:2: " in cp.stderr, cp.stderr
    assert count(stack.bootstrap, dst) == 0, "a broken recording sent something"


def test_a_line_without_topic_needs_topic_option(stack, topics, tmp_path):
    (dst,) = topics(1)
    rec = write_lines(tmp_path / "r.jsonl",
                      [json.dumps({"key": None, "headers": [], "value": b64(b"x")})])
    cp = valctl("replay", "-b", stack.bootstrap, "--in", rec)
    assert cp.returncode == 2 and one_line(cp.stderr) and ":1: lacks \"topic\"" in cp.stderr
    cp = valctl("replay", "-b", stack.bootstrap, "--in", rec, "--topic", dst)
    assert cp.returncode == 0, cp.stderr


def test_from_stdin_the_lines_before_a_bad_one_are_sent(stack, topics, tmp_path):
    """stdin cannot be read twice: it is sent as it is read; nothing of the
    bad line or after it."""
    (dst,) = topics(1)
    text = "\n".join([line(dst, "k", b"first"), BAD_LINES["value not base64"],
                      line(dst, "k", b"third")]) + "\n"
    cp = valctl("replay", "-b", stack.bootstrap, "--in", "-", "--topic", dst, stdin=text)
    assert cp.returncode == 2, cp.stderr
    assert "-:2: " in cp.stderr and "base64" in cp.stderr, cp.stderr
    got = read_all(stack.bootstrap, dst, 1, 1)[0]
    assert [m.value() for m in got] == [b"first"]


def test_skip_bad_sends_the_rest_and_counts(stack, topics, tmp_path):
    (dst,) = topics(1)
    rec = write_lines(tmp_path / "r.jsonl", [
        line(dst, "k", b"1"), BAD_LINES["not JSON"], line(dst, "k", b"3"),
        BAD_LINES["value not base64"], "", line(dst, "k", b"6")])
    cp = valctl("replay", "-b", stack.bootstrap, "--in", rec, "--topic", dst, "--skip-bad")
    assert cp.returncode == 0, cp.stderr
    assert f"{rec}:2: " in cp.stderr and f"{rec}:4: " in cp.stderr, cp.stderr
    s = summary(cp.stderr)
    assert (s["produced"], s["bad"]) == (3, 2), s
    got = read_all(stack.bootstrap, dst, 1, 3)[0]
    assert [m.value() for m in got] == [b"1", b"3", b"6"]


def test_a_last_line_cut_short_is_reported_and_skipped(stack, topics, tmp_path):
    (dst,) = topics(1)
    whole = [line(dst, "k", f"v{i}".encode()) for i in range(4)]
    rec = write_lines(tmp_path / "r.jsonl", whole[:3] + [whole[3][:len(whole[3]) // 2]], end="")
    cp = valctl("replay", "-b", stack.bootstrap, "--in", rec)
    assert cp.returncode == 0, cp.stderr
    assert f"{rec}:4: the last line is cut short" in cp.stderr, cp.stderr
    s = summary(cp.stderr)
    assert (s["produced"], s["cut"], s["bad"]) == (3, 1, 0)
    # a whole last line without its newline (a file written by hand) is sent
    rec2 = write_lines(tmp_path / "r2.jsonl", whole, end="")
    cp = valctl("replay", "-b", stack.bootstrap, "--in", rec2)
    assert cp.returncode == 0 and summary(cp.stderr)["produced"] == 4, cp.stderr
    assert count(stack.bootstrap, dst) == 7


# ---------------------------------------------------------------- record


class Stream:
    """A producer writing records of varied sizes to a topic until stopped."""

    def __init__(self, bootstrap, topic):
        self.p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2})
        self.topic = topic
        self.n = 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        sizes = (10, 700, 3000, 5000, 9000, 20000)
        while not self.stop.is_set():
            try:
                self.p.produce(self.topic, key=f"k{self.n}".encode(),
                               value=os.urandom(sizes[self.n % len(sizes)]),
                               headers=[("n", str(self.n).encode())])
                self.n += 1
            except BufferError:
                self.p.poll(0.05)
            self.p.poll(0)
        self.p.flush(30)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        self.t.join(60)


def assert_whole_lines(path, partitions):
    data = open(path, "rb").read()
    assert data == b"" or data.endswith(b"\n"), f"the file ends mid-line: {data[-80:]!r}"
    nexts = {}
    for i, raw in enumerate(data.split(b"\n")[:-1], 1):
        rec = json.loads(raw)  # every line whole
        base64.b64decode(rec["value"], validate=True)
        assert rec["offset"] == nexts.get(rec["partition"], 0), f"line {i}: a gap"
        nexts[rec["partition"]] = rec["offset"] + 1
    return sum(nexts.values())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_record_leaves_whole_lines_when_stopped(stack, topics, tmp_path, sig):
    (t,) = topics(2)
    total = 0
    with Stream(stack.bootstrap, t):
        for run in range(4):
            out = tmp_path / f"rec{run}.jsonl"
            proc = subprocess.Popen([VALCTL, "record", "-b", stack.bootstrap, "--topic", t,
                                     "--from-beginning", "--out", str(out)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True)
            try:
                assert proc.stderr.readline().startswith("valctl record: reading")
                # stop it while it writes: at a different moment each time
                deadline = time.monotonic() + 30
                while (not out.exists() or out.stat().st_size < 200_000 * (run + 1)) and \
                        time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.013 * run)
                proc.send_signal(sig)
                err = proc.communicate(timeout=60)[1]
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            if sig == signal.SIGINT:
                assert proc.returncode == 0, err
                m = re.search(r"valctl record: (\d+) messages", err)
                assert m, err
            else:
                assert proc.returncode == -signal.SIGKILL
                # the recorder's guard cuts a line the kill left half
                # written: give it a moment
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    data = out.read_bytes()
                    if data == b"" or data.endswith(b"\n"):
                        break
                    time.sleep(0.05)
            n = assert_whole_lines(out, 2)
            assert n > 0
            if sig == signal.SIGINT:
                assert n == int(m.group(1))
            total += n
    assert total > 0


def test_record_reads_committed_messages_only(stack, topics, tmp_path):
    """A transaction that was aborted is not recorded (isolation.level
    read_committed, whatever librdkafka's default); -X can say otherwise."""
    (t,) = topics(1)
    p = Producer({"bootstrap.servers": stack.bootstrap,
                  "transactional.id": "replay-test-" + secrets.token_hex(4)})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(t, key=b"k", value=b"aborted")
    p.flush(30)
    p.abort_transaction(30)
    p.begin_transaction()
    p.produce(t, key=b"k", value=b"committed")
    p.commit_transaction(30)

    def recorded(*extra):
        out = tmp_path / f"rec{len(extra)}.jsonl"
        cp = valctl("record", "-b", stack.bootstrap, "--topic", t, "--from-beginning", "--out",
                    out, "--idle-exit", 3, *extra)
        assert cp.returncode == 0, cp.stderr
        return [base64.b64decode(json.loads(x)["value"]) for x in out.read_text().splitlines()]

    assert recorded() == [b"committed"]
    assert recorded("-X", "isolation.level=read_uncommitted") == [b"aborted", b"committed"]


# ---------------------------------------------------------------- --resign


def _pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pub(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
def keys(tmp_path):
    """prod (the recorded issuer), dev (the staging one), files for both."""
    prod, dev = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "dev.pem").write_bytes(_pem(dev))
    (tmp_path / "prod.pub.pem").write_bytes(_pub(prod))
    (tmp_path / "prod-issuers.json").write_text(json.dumps(
        [{"iss": "https://auth.prod.test", "kid": "prod-1", "public_key_file": "prod.pub.pem"}]))
    return {"prod": prod, "dev": dev, "dev_pem": tmp_path / "dev.pem",
            "prod_issuers": tmp_path / "prod-issuers.json"}


def _prod_token(key, iat, alg="ES256", **extra):
    claims = {"iss": "https://auth.prod.test", "sub": "val-r", "client_id": "val-r",
              "vsp_id": "vsp-r", "scope": "ss-kpp openid", "SKeyProv": True, "iat": iat,
              "nbf": iat, "exp": iat + 300, "jti": str(uuid.uuid4()),
              "custom": {"nested": [1, "two"]}}
    claims.update(extra)
    return pyjwt.encode(claims, key, algorithm=alg, headers={"kid": "prod-1", "typ": "at+jwt"})


def _request(token, **kw):
    return kmswire.request("val-r", token, [kmswire.service("svc-a", "JWK", "1.0"),
                                            kmswire.service("svc-b", "RAW", None, {"b": "256"})],
                           supp_feat="0a", **kw)


def test_resign_re_mints_the_token_and_changes_nothing_else(stack, topics, tmp_path, keys):
    (dst,) = topics(1)
    recorded_ms = kmswire.now_ms() - 3_600_000  # an hour ago
    iat = recorded_ms // 1000
    token = _prod_token(keys["prod"], iat)
    req = _request(token, sent_at=recorded_ms)
    value = kmswire.encode_request(req)
    confluent = b"\x00\x00\x00\x00\x2a" + value[10:]
    rec = write_lines(tmp_path / "r.jsonl", [
        line(dst, "val-r", value, [("kafka_correlationId", b"\x01\x02")], timestamp=recorded_ms),
        line(dst, "val-r", confluent, timestamp=recorded_ms)])
    t0 = int(time.time())
    cp = valctl("replay", "-b", stack.bootstrap, "--in", rec, "--resign", keys["dev_pem"],
                "--iss", "https://auth.staging.test", "--kid", "dev-1")
    t1 = int(time.time())
    assert cp.returncode == 0, cp.stderr
    s = summary(cp.stderr)
    assert (s["produced"], s["resigned"], s["kept"], s["not_requests"]) == (2, 2, 0, 0), s
    got = read_all(stack.bootstrap, dst, 1, 2)[0]
    assert got[0].headers() == [("kafka_correlationId", b"\x01\x02")]

    for m, original in zip(got, (value, confluent)):
        v = m.value()
        head = 10 if original[0] == 0xC3 else 5
        assert v[:head] == original[:head], "the framing changed"
        again = kmswire.decode_request(b"\xc3\x01" + kmswire.REQUEST.fingerprint + v[head:])
        new_token = again["credentials"]["accessToken"]
        assert new_token != token
        # nothing but the token changed, byte for byte
        assert again == dict(req, credentials={"accessToken": new_token})
        start = original.index(token.encode())
        prefix = start - len(kmswire.avro_long(len(token)))
        assert v[:prefix] == original[:prefix]
        assert v[start + len(new_token):] == original[start + len(token):]

        hdr = pyjwt.get_unverified_header(new_token)
        assert hdr == {"alg": "ES256", "kid": "dev-1", "typ": "at+jwt"}
        claims = pyjwt.decode(new_token, keys["dev"].public_key(), algorithms=["ES256"],
                              options={"verify_aud": False})
        old = pyjwt.decode(token, options={"verify_signature": False})
        shift = claims["iat"] - old["iat"]
        assert t0 - iat - 2 <= shift <= t1 - iat + 2, shift
        assert claims["nbf"] - old["nbf"] == shift and claims["exp"] - old["exp"] == shift
        assert claims["iss"] == "https://auth.staging.test"
        for name in ("iss", "iat", "nbf", "exp"):
            old.pop(name)
            claims.pop(name)
        assert claims == old  # client_id, vsp_id, scope, SKeyProv, jti, custom...


def test_resign_keeps_what_it_cannot_re_mint_faithfully(stack, topics, tmp_path, keys):
    (dst,) = topics(1)
    ts = kmswire.now_ms() - 60_000
    iat = ts // 1000
    other = ec.generate_private_key(ec.SECP256R1())
    none_token = pyjwt.encode({"iss": "https://auth.prod.test", "client_id": "val-r",
                               "exp": iat + 300}, None, algorithm="none")
    hmac_token = pyjwt.encode({"iss": "https://auth.prod.test", "exp": iat + 300},
                              "secret-of-32-bytes-for-hs256-key", algorithm="HS256")
    good = kmswire.encode_request(_request(_prod_token(keys["prod"], iat)))
    cases = {
        "not a request": b"hello",
        "empty": b"",
        "a request cut short": good[:-3],
        "trailing bytes": good + b"\x00",
        "alg none": kmswire.encode_request(_request(none_token)),
        "HMAC": kmswire.encode_request(_request(hmac_token)),
        "not a JWS": kmswire.encode_request(_request("not.a-token")),
        "signed by another key": kmswire.encode_request(_request(_prod_token(other, iat))),
        "another issuer": kmswire.encode_request(_request(_prod_token(
            keys["prod"], iat, iss="https://elsewhere.test"))),
        "good": good,
    }
    lines = [line(dst, "val-r", v, timestamp=ts) for v in cases.values()]
    lines.append(line(dst, "val-r", None, timestamp=ts))
    rec = write_lines(tmp_path / "r.jsonl", lines)
    cp = valctl("replay", "-b", stack.bootstrap, "--in", rec, "--resign", keys["dev_pem"],
                "--iss", "https://auth.staging.test", "--verify-issuers", keys["prod_issuers"])
    assert cp.returncode == 0, cp.stderr
    s = summary(cp.stderr)
    assert (s["resigned"], s["kept"], s["not_requests"]) == (1, 5, 5), s
    got = read_all(stack.bootstrap, dst, 1, len(lines))[0]
    for (label, v), m in zip(cases.items(), got):
        if label == "good":
            assert m.value() != v
            tok = kmswire.decode_request(m.value())["credentials"]["accessToken"]
            assert "kid" not in pyjwt.get_unverified_header(tok)  # no --kid: none
            pyjwt.decode(tok, keys["dev"].public_key(), algorithms=["ES256"])
        else:
            assert m.value() == v, f"{label}: changed"
    assert got[-1].value() is None

    # without --verify-issuers every well-formed asymmetric token is
    # re-minted; alg none and HMAC still are not
    cp = valctl("replay", "-b", stack.bootstrap, "--in", rec, "--resign", keys["dev_pem"],
                "--iss", "https://auth.staging.test")
    assert cp.returncode == 0, cp.stderr
    s = summary(cp.stderr)
    assert (s["resigned"], s["kept"], s["not_requests"]) == (3, 3, 5), s


def test_resign_with_an_eddsa_key_signs_eddsa(stack, topics, tmp_path, keys):
    (dst,) = topics(1)
    cp = valctl("keygen", "--alg", "EdDSA", "--out-private", tmp_path / "ed.pem",
                "--out-public", tmp_path / "ed.pub.pem")
    assert cp.returncode == 0, cp.stderr
    ts = kmswire.now_ms()
    rec = write_lines(tmp_path / "r.jsonl", [line(dst, "val-r", kmswire.encode_request(
        _request(_prod_token(keys["prod"], ts // 1000))), timestamp=ts)])
    cp = valctl("replay", "-b", stack.bootstrap, "--in", rec, "--resign", tmp_path / "ed.pem",
                "--iss", "https://auth.staging.test")
    assert cp.returncode == 0, cp.stderr
    [m] = read_all(stack.bootstrap, dst, 1, 1)[0]
    tok = kmswire.decode_request(m.value())["credentials"]["accessToken"]
    pub = serialization.load_pem_public_key((tmp_path / "ed.pub.pem").read_bytes())
    assert pyjwt.get_unverified_header(tok)["alg"] == "EdDSA"
    pyjwt.decode(tok, pub, algorithms=["EdDSA"])


RESIGN_MISUSE = {
    "--resign without --iss": ["--resign", "k.pem"],
    "--iss without --resign": ["--iss", "https://x.test"],
    "--kid without --resign": ["--kid", "k1"],
    "--verify-issuers without --resign": ["--verify-issuers", "f.json"],
    "empty --iss": ["--resign", "k.pem", "--iss", ""],
}


@pytest.mark.parametrize("args", RESIGN_MISUSE.values(), ids=RESIGN_MISUSE.keys())
def test_resign_misuse(tmp_path, args):
    cp = valctl("replay", "--in", tmp_path / "r.jsonl", *args)
    assert cp.returncode == 2 and one_line(cp.stderr), cp.stderr


def test_resign_with_a_key_that_is_not_one(tmp_path):
    rec = write_lines(tmp_path / "r.jsonl", [line("t", "k", b"v")])
    (tmp_path / "bad.pem").write_text("not a key\n")
    cp = valctl("replay", "-b", "127.0.0.1:1", "--in", rec, "--resign", tmp_path / "bad.pem",
                "--iss", "https://x.test")
    assert cp.returncode == 4 and one_line(cp.stderr) and "--resign" in cp.stderr, cp.stderr


# ---------------------------------------------------------------- diff


def result_line(request_id, result="SUCCESS", cause=None, detail=None, kms_id="kms-a",
                processed_at=1_700_000_000_000, requester="val-d", headers=None, partition=0,
                ce_id=None):
    resp = {"requestId": request_id, "requesterIdentity": requester, "result": result,
            "cause": cause, "detail": detail, "kmsId": kms_id, "processedAt": processed_at}
    h = [("kafka_correlationId", request_id.encode()), ("ce_specversion", b"1.0"),
         ("ce_id", (ce_id or request_id + "-ce").encode()), ("ce_source", kms_id.encode()),
         ("ce_type", b"org.threegpp.seal.km.provisioning.result.v1"),
         ("ce_time", str(processed_at).encode()), ("content-type", b"application/avro")]
    if headers is not None:
        h = headers
    return line("results", requester, kmswire.encode_response(resp), h, partition=partition)


IDS = [str(uuid.UUID(int=i)) for i in range(1, 6)]


def diff(tmp_path, a_lines, b_lines, *args):
    a = write_lines(tmp_path / "a.jsonl", a_lines)
    b = write_lines(tmp_path / "b.jsonl", b_lines)
    return valctl("diff", *args, a, b)


def test_diff_equal_but_for_what_differs_by_design(tmp_path):
    a = [result_line(i) for i in IDS]
    b = [result_line(i, kms_id="kms-b", processed_at=1_800_000_000_000) for i in reversed(IDS)]
    cp = diff(tmp_path, a, b)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert cp.stdout == "valctl diff: A has 5 Results, B has 5: 5 equal, 0 differ, 0 only in " \
                        "A, 0 only in B\n"
    assert cp.stderr == ""


def test_diff_ce_id_is_compared_unless_asked(tmp_path):
    a = [result_line(IDS[0])]
    b = [result_line(IDS[0], ce_id="another")]
    assert diff(tmp_path, a, b).returncode == 1
    assert diff(tmp_path, a, b, "--ignore-ce-id").returncode == 0


def test_diff_shows_field_by_field_and_missing_on_either_side(tmp_path):
    a = [result_line(IDS[0]), result_line(IDS[1], "FAILURE", "UNAUTHORIZED", "token has expired"),
         result_line(IDS[2]), result_line(IDS[3])]
    b = [result_line(IDS[0]),
         result_line(IDS[1], "FAILURE", "NOT_ALLOWED_BY_SLA", "no SLA covers svc-a"),
         result_line(IDS[3], headers=[]), result_line(IDS[4])]
    cp = diff(tmp_path, a, b)
    assert cp.returncode == 1, cp.stderr
    rows = cp.stdout.splitlines()
    assert rows[0].split() == ["REQUEST", "ID", "FIELD", "A", "B"]
    assert rows[-1] == "valctl diff: A has 4 Results, B has 4: 1 equal, 2 differ, 1 only in A, " \
                       "1 only in B"
    table = "\n".join(rows)
    assert re.search(rf"^{IDS[2]}\s+\(Result\)\s+present\s+missing$", table, re.M), table
    assert re.search(rf"^{IDS[4]}\s+\(Result\)\s+missing\s+present$", table, re.M), table
    assert re.search(rf'^{IDS[1]}\s+cause\s+"UNAUTHORIZED"\s+"NOT_ALLOWED_BY_SLA"$', table, re.M)
    assert re.search(r'^\s+detail\s+"token has expired"\s+"no SLA covers svc-a"$', table, re.M)
    assert re.search(rf'^{IDS[3]}\s+kafka_correlationId\s+"{IDS[3]}"\s+\(absent\)$', table,
                     re.M), table

    cp = diff(tmp_path, a, b, "--json")
    assert cp.returncode == 1
    r = json.loads(cp.stdout)
    assert r["equal"] == 1 and r["a"]["results"] == 4
    assert [x["requestId"] for x in r["onlyInA"]] == [IDS[2]]
    assert [x["requestId"] for x in r["onlyInB"]] == [IDS[4]]
    d = {x["requestId"]: x for x in r["differ"]}
    assert d[IDS[1]]["fields"] == [
        {"name": "cause", "a": "UNAUTHORIZED", "b": "NOT_ALLOWED_BY_SLA"},
        {"name": "detail", "a": "token has expired", "b": "no SLA covers svc-a"}]
    assert {f["name"] for f in d[IDS[3]]["fields"]} >= {"kafka_correlationId", "ce_id"}
    assert all("b" not in f for f in d[IDS[3]]["fields"])


def test_diff_pairs_repeated_request_ids_in_order(tmp_path):
    a = [result_line(IDS[0]), result_line(IDS[0], "FAILURE", "REQUEST_ID_CONFLICT", "x")]
    b = [result_line(IDS[0]), result_line(IDS[0]),
         result_line(IDS[0], "FAILURE", "REQUEST_ID_CONFLICT", "x")]
    cp = diff(tmp_path, a, b, "--json")
    r = json.loads(cp.stdout)
    assert cp.returncode == 1
    assert [(x["requestId"], x["occurrence"]) for x in r["onlyInB"]] == [(IDS[0], 3)]
    assert [(x["occurrence"], [f["name"] for f in x["fields"]]) for x in r["differ"]] == [
        (2, ["result", "cause", "detail"])]
    cp = diff(tmp_path, a, b)
    assert f"{IDS[0]}#3" in cp.stdout and f"{IDS[0]}#2" in cp.stdout


def test_diff_ignore_and_partition(tmp_path):
    a = [result_line(IDS[0], detail="one", partition=1)]
    b = [result_line(IDS[0], detail="two", partition=2)]
    assert diff(tmp_path, a, b).returncode == 1
    assert diff(tmp_path, a, b, "--ignore", "detail").returncode == 0
    cp = diff(tmp_path, a, b, "--ignore", "detail", "--partition")
    assert cp.returncode == 1 and re.search(r"partition\s+1\s+2", cp.stdout), cp.stdout


DIFF_BAD = {
    "not JSON": "{",
    "lacks value": json.dumps({"key": None, "headers": []}),
    "value not base64": json.dumps({"key": None, "headers": [], "value": "!!"}),
    "value not a Result": line("results", "k", b"\xc3\x01garbage"),
    "null value": line("results", "k", None),
}


@pytest.mark.parametrize("bad", DIFF_BAD.values(), ids=DIFF_BAD.keys())
def test_diff_bad_line_is_exit_2_naming_the_line(tmp_path, bad):
    a = write_lines(tmp_path / "a.jsonl", [result_line(IDS[0])])
    b = write_lines(tmp_path / "b.jsonl", [result_line(IDS[0]), bad])
    cp = valctl("diff", a, b)
    assert cp.returncode == 2, (cp.returncode, cp.stdout, cp.stderr)
    assert one_line(cp.stderr) and f"{b}:2: " in cp.stderr, cp.stderr
    assert cp.stdout == ""


def test_diff_last_line_cut_short_is_skipped(tmp_path):
    whole = result_line(IDS[1])
    a = write_lines(tmp_path / "a.jsonl", [result_line(IDS[0])])
    b = write_lines(tmp_path / "b.jsonl", [result_line(IDS[0]), whole[:40]], end="")
    cp = valctl("diff", a, b)
    assert cp.returncode == 0, cp.stderr
    assert f"{b}:2: the last line is cut short" in cp.stderr


@pytest.mark.parametrize("args", [[], ["one.jsonl"], ["a", "b", "c"], ["--frobnicate", "a", "b"],
                                  ["--ignore", "", "a", "b"]],
                         ids=["no files", "one file", "three files", "unknown option",
                              "empty --ignore"])
def test_diff_misuse(args):
    cp = valctl("diff", *args)
    assert cp.returncode == 2 and one_line(cp.stderr), cp.stderr


def test_diff_missing_file_is_a_runtime_error(tmp_path):
    a = write_lines(tmp_path / "a.jsonl", [result_line(IDS[0])])
    cp = valctl("diff", a, tmp_path / "missing.jsonl")
    assert cp.returncode == 4 and one_line(cp.stderr), cp.stderr
