"""Operations: /metrics, the consumer lag, readiness that notices a stuck
consumer, the health address, and the log lines of batches and outages.

Every test runs the real KM-S against the stack's broker and PostgreSQL;
/metrics is scraped over HTTP as Prometheus would, and checked by Prometheus's
own promtool (extracted from Debian's prometheus package by scripts/deps.sh).
"""

import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
from cryptography.hazmat.primitives import serialization

from conftest import new_ec_key, wait_until

CACHE = os.environ.get("KMS_CACHE") or os.path.expanduser("~/.cache/seal-kms")
PROMTOOL = os.path.join(CACHE, "bin", "promtool")

FAMILIES = {
    "kms_requests_total": "counter",
    "kms_dlq_records_total": "counter",
    "kms_results_published_total": "counter",
    "kms_replies_rerouted_total": "counter",
    "kms_batch_size": "histogram",
    "kms_batch_duration_seconds": "histogram",
    "kms_request_latency_seconds": "histogram",
    "kms_consumer_lag": "gauge",
    "kms_token_cache_hits_total": "counter",
    "kms_token_cache_misses_total": "counter",
    "kms_database_up": "gauge",
    "kms_broker_up": "gauge",
    "kms_outage_seconds_total": "counter",
    "kms_partitions_paused": "gauge",
    "kms_build_info": "gauge",
}
CAUSES = ("INVALID_REQUEST", "UNAUTHORIZED", "NOT_ALLOWED_BY_SLA", "KEY_FORMAT_NOT_ALLOWED",
          "REQUEST_ID_CONFLICT", "INTERNAL_ERROR")

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


# ---------------------------------------------------------------- helpers


def get(k, path, host="127.0.0.1", timeout=5):
    """(status, content type, body text) of GET path on k's health port."""
    url = f"http://{host}:{k.health_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def scrape(k):
    status, ctype, text = get(k, "/metrics")
    assert status == 200, (status, text)
    assert ctype == "text/plain; version=0.0.4; charset=utf-8"
    return text


def try_samples(k):
    """The samples of a scrape, or {} while nothing answers (starting)."""
    try:
        return samples(scrape(k))
    except urllib.error.URLError:
        return {}


def samples(text):
    """{(name, ((label, value), ...)): float} of an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = tuple(sorted(_LABEL.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def val(s, name, **labels):
    return s.get((name, tuple(sorted(labels.items()))))


def series(s, name):
    """{labels dict as a tuple: value} of one metric name."""
    return {labels: v for (n, labels), v in s.items() if n == name}


def lag(s):
    return {dict(labels)["partition"]: v for labels, v in series(s, "kms_consumer_lag").items()}


def promtool_check(text):
    if not os.access(PROMTOOL, os.X_OK):
        pytest.fail(f"{PROMTOOL} is missing: run scripts/deps.sh")
    return subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60)


def issuer_pem(k, key=None):
    path = os.path.join(k.tmpdir, f"issuer-{id(key)}.pem")
    with open(path, "wb") as f:
        f.write((key or k.issuer_key).private_bytes(serialization.Encoding.PEM,
                                                    serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    return path


def fleet_cmd(k, servers, requests, vsps, *, prefix, key=None, formats="JWK", rate=None,
              acked=None, timeout=120):
    cmd = [k.stack.binary("valctl"), "fleet", "-b", k.stack.bootstrap, "--requests-topic",
           k.requests_topic, "--reply-topic", k.results_topic, "--servers", str(servers),
           "--requests", str(requests), "--key", issuer_pem(k, key), "--iss", k.issuer,
           "--kid", k.kid, "--services", "v2x.a", "--formats", formats, "--prefix", prefix,
           "--json", "--timeout", str(timeout)]
    for v in vsps:
        cmd += ["--vsp-id", v]
    if rate:
        cmd += ["--rate", str(rate)]
    if acked:
        cmd += ["--acked-file", acked]
    return cmd


def fleet(k, *args, **kw):
    cp = subprocess.run(fleet_cmd(k, *args, **kw), capture_output=True, text=True, timeout=600)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    s = json.loads(cp.stdout)
    assert (s["missing"], s["duplicates"], s["out_of_order"]) == (0, 0, 0), s
    return s


def stack_cmd(k, cmd):
    cp = subprocess.run([os.path.join(k.stack.repo, "scripts", "stack"), cmd],
                        capture_output=True, text=True, timeout=180)
    assert cp.returncode == 0, cp.stderr[-2000:]


class Psql:
    """A psql session held open, to take a lock and keep it."""

    def __init__(self, k):
        self.p = subprocess.Popen([k.stack.psql_bin, "-X", "-q", "-v", "ON_ERROR_STOP=1",
                                   "-d", k.dsn], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def run(self, sql):
        self.p.stdin.write(sql + "\n")
        self.p.stdin.flush()

    def close(self):
        if self.p.poll() is None:
            self.p.stdin.close()
            self.p.wait(30)


# ---------------------------------------------------------------- the scrape


def test_a_scrape_mid_fleet_passes_promtool(kms_factory):
    k = kms_factory()
    vsp = k.provider()
    k.sla(vsp, ["v2x.a"], key_formats=("JWK",), max_val_servers=1000)
    proc = subprocess.Popen(fleet_cmd(k, 200, 10, [vsp], prefix=k.unique("pt") + "-",
                                      rate=400), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # In the middle of the run: some Results out, the fleet still sending.
        text = wait_until(lambda: (lambda t: t if 0 < sum(
            series(samples(t), "kms_requests_total").values()) < 2000 else None)(scrape(k)),
            60, 0.05, "the first decisions")
        assert proc.poll() is None, "the fleet ended before the scrape"
    finally:
        out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, (out, err)

    cp = promtool_check(text)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert cp.stdout.strip() == "" and cp.stderr.strip() == "", cp.stdout + cp.stderr
    for name, kind in FAMILIES.items():
        assert f"# TYPE {name} {kind}\n" in text, name
        assert f"# HELP {name} " in text, name
    s = samples(text)
    assert set(lag(s)) == {str(p) for p in range(6)}, lag(s)
    (build,) = series(s, "kms_build_info").items()
    info = dict(build[0])
    assert set(info) == {"version", "librdkafka", "avro_c", "openssl", "libpq"}
    assert info["librdkafka"].startswith("2.") and info["avro_c"].startswith("1.11")
    assert info["openssl"].startswith("3.") and info["libpq"].startswith("15.")
    assert build[1] == 1
    assert val(s, "kms_database_up") == 1 and val(s, "kms_broker_up") == 1
    for phase in ("decode", "authorize", "database", "publish", "commit"):
        assert val(s, "kms_batch_duration_seconds_count", phase=phase) > 0, phase
    # after the run: the histograms hold every request and every batch
    s = samples(scrape(k))
    assert val(s, "kms_request_latency_seconds_count") == 2000
    assert val(s, "kms_batch_size_sum") == 2000
    assert val(s, "kms_batch_size_count") == val(
        s, "kms_batch_duration_seconds_count", phase="database")
    assert val(s, "kms_results_published_total", topic_kind="default") == 2000
    assert val(s, "kms_token_cache_misses_total") == 200  # one verification per token
    assert val(s, "kms_token_cache_hits_total") == 1800


def test_metrics_of_get_only_and_unknown_paths(kms):
    status, _, _ = get(kms, "/metrics/x")
    assert status == 404
    req = urllib.request.Request(f"http://127.0.0.1:{kms.health_port}/metrics", method="POST",
                                 data=b"x")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 405


# ---------------------------------------------------------------- the counters


def test_counters_agree_with_kmsctl_stats_and_the_fleet(kms_factory):
    """A known mix of successes and each failure cause a client can cause
    (INTERNAL_ERROR, a data error of the database, has no input that makes it
    on purpose: its series is there at 0)."""
    k = kms_factory()
    vsp, no_sla = k.provider(), k.provider()
    k.sla(vsp, ["v2x.a"], key_formats=("JWK",), max_val_servers=1000)
    stem = k.unique("mix")
    fleets = [
        # servers 0 and 2 under vsp: SUCCESS; 1 and 3 under no_sla: NOT_ALLOWED_BY_SLA
        fleet(k, 4, 5, [vsp, no_sla], prefix=f"{stem}-a-"),
        fleet(k, 2, 3, [vsp], prefix=f"{stem}-b-", formats="RAW"),  # KEY_FORMAT_NOT_ALLOWED
        fleet(k, 2, 2, [vsp], prefix=f"{stem}-c-", key=new_ec_key()),  # UNAUTHORIZED
    ]
    by_fleet = {}
    for f in fleets:
        for r, n in f["by_result"].items():
            by_fleet[r] = by_fleet.get(r, 0) + n
        for c, n in f["by_cause"].items():
            by_fleet[c] = by_fleet.get(c, 0) + n
    assert by_fleet == {"SUCCESS": 10, "FAILURE": 20, "NOT_ALLOWED_BY_SLA": 10,
                        "KEY_FORMAT_NOT_ALLOWED": 6, "UNAUTHORIZED": 4}, by_fleet

    # By hand: two invalid requests, a requestId reused with other content,
    # and a value that cannot be decoded (DLQ, no Result).
    ids = []
    for i in range(2):
        val_id = f"{stem}-inv-{i}"
        ids.append(k.send(k.request(val_id, [], vsp_id=vsp)))
    val_id = f"{stem}-conflict"
    first = k.request(val_id, [("v2x.a", "JWK")], vsp_id=vsp)
    ids.append(k.send(first))
    k.result(first["requestId"])
    again = dict(first, endpoint=f"https://{val_id}.elsewhere.test/seal")
    k.send(again)
    k.send(b"not avro at all", key=b"junk")
    k.dlq(1)
    want = {"SUCCESS": 11, "INVALID_REQUEST": 3, "UNAUTHORIZED": 4, "NOT_ALLOWED_BY_SLA": 10,
            "KEY_FORMAT_NOT_ALLOWED": 6, "REQUEST_ID_CONFLICT": 1, "INTERNAL_ERROR": 0}

    def counted():
        s = samples(scrape(k))
        got = {"SUCCESS": val(s, "kms_requests_total", result="SUCCESS", cause="none")}
        for c in CAUSES:
            got[c] = val(s, "kms_requests_total", result="FAILURE", cause=c)
        return (got, s) if got == want else None

    got, s = wait_until(counted, 60, 0.2, f"kms_requests_total to be {want}")
    stats = k.kmsctl("stats")
    dec, audit = stats["decisions"], stats["audit"]
    # what kmsctl stats shows: decisions per result and cause, and the audit
    # outcomes of the requests without a decision of their own
    assert got["SUCCESS"] == dec["by_result"]["SUCCESS"] == by_fleet["SUCCESS"] + 1
    for c in ("UNAUTHORIZED", "NOT_ALLOWED_BY_SLA", "KEY_FORMAT_NOT_ALLOWED"):
        assert got[c] == dec["by_cause"][c] == by_fleet[c], c
    assert got["INVALID_REQUEST"] == dec["by_cause"]["INVALID_REQUEST"] + \
        audit["by_outcome"]["DLQ"]
    assert got["REQUEST_ID_CONFLICT"] == audit["by_outcome"]["CONFLICT"]
    assert sum(got.values()) == audit["total"] == 30 + 5
    assert val(s, "kms_dlq_records_total", reason="magic") == 1
    assert sum(series(s, "kms_dlq_records_total").values()) == 1
    results = len(k.seen())
    assert results == 34
    assert val(s, "kms_results_published_total", topic_kind="default") == results
    assert val(s, "kms_results_published_total", topic_kind="reply") == 0
    assert val(s, "kms_request_latency_seconds_count") == results


def test_reroutes_counted_by_reason(kms_factory):
    k = kms_factory()
    vsp = k.provider()
    k.sla(vsp, ["v2x.a"], key_formats=("JWK",))
    reply = k.create_topic()
    cases = [({"kafka_replyTopic": b"bad topic!"}, k.results_topic),
             ({"kafka_replyTopic": k.requests_topic.encode()}, k.results_topic),
             ({"kafka_replyTopic": reply.encode(), "kafka_replyPartition": b"\x01"}, reply),
             ({"kafka_replyTopic": reply.encode()}, reply)]
    for i, (headers, topic) in enumerate(cases):
        req = k.request(k.unique("rr"), [("v2x.a", "JWK")], vsp_id=vsp)
        k.send(req, headers=headers)
        k.result(req["requestId"], topic=topic)

    def counted():
        s = samples(scrape(k))
        return s if val(s, "kms_results_published_total", topic_kind="reply") == 2 else None

    s = wait_until(counted, 30, 0.2, "the Results to be counted")
    assert val(s, "kms_results_published_total", topic_kind="default") == 2
    assert {dict(lb)["reason"]: v for lb, v in series(s, "kms_replies_rerouted_total").items()} \
        == {"topic_invalid": 1, "topic_not_allowed": 1, "partition_invalid": 1,
            "topic_unavailable": 0}


# ---------------------------------------------------------------- lag and outages


def refuse_records(k, topic, refuse):
    """Make a topic refuse every record (max.message.bytes below any Result:
    the broker answers MESSAGE_TOO_LARGE, which the KM-S retries with
    backoff), or take them again (the broker's default). 100 bytes, not
    less: a transaction's commit or abort marker (about 70 bytes) must still
    fit, or the broker can never complete the KM-S's aborted transaction."""
    entry = ConfigEntry("max.message.bytes", "100",
                        incremental_operation=AlterConfigOpType.SET) if refuse else \
        ConfigEntry("max.message.bytes", None, incremental_operation=AlterConfigOpType.DELETE)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
    for f in k.stack.admin.incremental_alter_configs([res]).values():
        f.result(timeout=60)


@pytest.mark.slow
def test_lag_of_a_backlog_falls_to_zero(kms_factory):
    """The KM-S stopped, 1,000 requests produced, the KM-S started: the first
    scrape with the lag of every partition shows the backlog, 1,000, and the
    lag falls to 0. So that the first scrape cannot come after the drain
    (1,000 requests take well under librdkafka's first statistics), the
    results topic refuses Results until that scrape (the KM-S decides its
    first batch and retries publishing it, its offsets unmoved), then takes
    them again."""
    k = kms_factory()
    vsp = k.provider()
    k.sla(vsp, ["v2x.a"], key_formats=("JWK",), max_val_servers=1000)
    # A committed offset on every partition, as a KM-S in service has: a
    # partition without one waits for its offset reset, which a paused
    # partition does not get, and its lag stays unknown.
    warm = []
    for p in range(6):
        warm.append(k.send(k.request(k.unique("warm"), [("v2x.a", "JWK")], vsp_id=vsp),
                           partition=p))
    k.results(warm)
    wait_until(lambda: (lambda s: s if len(lag(s)) == 6 and sum(lag(s).values()) == 0
                        else None)(samples(scrape(k))), 30, 0.2, "no lag")
    k.stop()
    acked = os.path.join(k.tmpdir, "lag.acked")
    proc = subprocess.Popen(fleet_cmd(k, 100, 10, [vsp], prefix=k.unique("lag") + "-",
                                      acked=acked, timeout=300),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: os.path.exists(acked) or proc.poll() is not None, 120, 0.1,
                   "the backlog to be acknowledged")
        assert os.path.exists(acked), proc.communicate()
        refuse_records(k, k.results_topic, True)
        try:
            k.start(wait=False)
            last = []

            def six():
                s = try_samples(k)
                last[:] = [lag(s)]
                return s if len(lag(s)) == 6 else None

            try:
                first = wait_until(six, 60, 0.05, "the lag of six partitions")
            except AssertionError:
                raise AssertionError(f"lag {last}: {k.log_path}")
            assert sum(lag(first).values()) == 1000, lag(first)
            assert val(first, "kms_results_published_total", topic_kind="default") == 0
        finally:
            refuse_records(k, k.results_topic, False)
        wait_until(lambda: (lambda s: s if len(lag(s)) == 6 and sum(lag(s).values()) == 0
                            else None)(samples(scrape(k))), 120, 0.5, "the lag to fall to 0")
        out, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, (out, err)
        assert json.loads(out)["results"] == 1000
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    s = samples(scrape(k))
    assert val(s, "kms_results_published_total", topic_kind="default") == 1000


@pytest.mark.slow
def test_database_outage_in_metrics_readiness_and_logs(kms_factory):
    """PostgreSQL stopped while requests wait: kms_database_up 0, the
    partitions paused, /readyz 503 with the reason; back: every request
    answered, the outage's seconds counted, one log line at its start and one
    at its end."""
    k = kms_factory()
    vsp = k.provider()
    k.sla(vsp, ["v2x.a"], key_formats=("JWK",), max_val_servers=1000)
    wait_until(lambda: len(lag(samples(scrape(k)))) == 6, 30, 0.2, "the first statistics")
    stack_cmd(k, "pg-stop")
    try:
        ids = [k.send(k.request(k.unique("out"), [("v2x.a", "JWK")], vsp_id=vsp))
               for _ in range(5)]
        wait_until(lambda: val(samples(scrape(k)), "kms_database_up") == 0, 30, 0.2,
                   "kms_database_up 0")
        wait_until(lambda: val(samples(scrape(k)), "kms_partitions_paused") == 6, 30, 0.2,
                   "the partitions to be paused")
        # the batch in hand, at least (paused partitions are not fetched, so
        # librdkafka does not learn of what came after)
        wait_until(lambda: sum(lag(samples(scrape(k))).values()) >= 1, 30, 0.2, "lag")
        status, body = k.readyz()
        assert status == 503 and not body["database"], body
        assert "the database is unreachable" in body["reasons"], body
        time.sleep(1)
    finally:
        stack_cmd(k, "pg-start")
    k.results(ids, timeout=120)
    s = wait_until(lambda: (lambda s: s if val(s, "kms_database_up") == 1 and
                            val(s, "kms_partitions_paused") == 0 else None)(samples(scrape(k))),
                   60, 0.2, "the database up again")
    assert val(s, "kms_outage_seconds_total", dependency="database") >= 1
    assert val(s, "kms_outage_seconds_total", dependency="broker") == 0
    events = [e for e in k.log_events() if e.get("dependency") == "database"]
    assert [e["event"] for e in events] == ["outage_started", "outage_ended"], events
    assert events[0]["level"] == "warn" and events[1]["seconds"] >= 1


# ---------------------------------------------------------------- readiness


def test_readyz_notices_a_consumer_stuck_behind_a_lock(kms_factory):
    """A lock on the audit table holds the batch in the database: the
    database is up, nothing else is wrong, but the consumer does not move.
    Not ready after stall_timeout_ms, with the reason; ready again once the
    lock is gone, and the request is answered."""
    k = kms_factory(extra_args=["--stall-timeout-ms", "3000"])
    vsp = k.provider()
    k.sla(vsp, ["v2x.a"], key_formats=("JWK",))
    status, body = k.readyz()
    assert status == 200 and body["consumer_progressing"] and body["reasons"] == []
    lock = Psql(k)
    try:
        lock.run("BEGIN; LOCK TABLE audit IN ACCESS EXCLUSIVE MODE; SELECT 'locked';")
        wait_until(lambda: k.sql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON "
                                 "c.oid = l.relation WHERE c.relname = 'audit' AND "
                                 "l.mode = 'AccessExclusiveLock' AND l.granted")[0][0] == "1",
                   30, 0.2, "the lock")
        req = k.request(k.unique("stuck"), [("v2x.a", "JWK")], vsp_id=vsp)
        k.send(req)
        t0 = time.monotonic()
        status, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(k.readyz()),
                                  60, 0.2, "/readyz to say 503")
        assert time.monotonic() - t0 >= 2.5, "not ready before the stall timeout"
        assert body["status"] == "not ready" and body["consumer_progressing"] is False, body
        assert body["database"] and body["broker"] and body["group_joined"], body
        assert len(body["reasons"]) == 1 and (
            "has not polled" in body["reasons"][0] or "unchanged for" in body["reasons"][0]), \
            body
    finally:
        lock.run("COMMIT;")
        lock.close()
    wait_until(lambda: k.readyz()[0] == 200, 60, 0.2, "/readyz to say 200 again")
    _, resp = k.result(req["requestId"])
    assert resp["result"] == "SUCCESS"


def test_readyz_stays_ready_when_idle_and_when_busy(kms_factory):
    """No stall while nothing waits, nor while a backlog is worked off."""
    k = kms_factory(extra_args=["--stall-timeout-ms", "2000"])
    vsp = k.provider()
    k.sla(vsp, ["v2x.a"], key_formats=("JWK",), max_val_servers=1000)
    bad = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            st, body = k.readyz()
            if st != 200:
                bad.append(body)
            time.sleep(0.1)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        time.sleep(4)  # idle longer than the stall timeout
        fleet(k, 50, 10, [vsp], prefix=k.unique("busy") + "-")
        time.sleep(4)
    finally:
        stop.set()
        t.join(10)
    assert bad == []


# ---------------------------------------------------------------- address, logs


def test_health_address(kms_factory):
    # The default listens on 127.0.0.1 only: 127.0.0.2 (loopback too) is refused.
    k = kms_factory()
    assert get(k, "/livez")[0] == 200
    with pytest.raises(urllib.error.URLError):
        get(k, "/livez", host="127.0.0.2")
    k.stop()
    k.extra_args += ["--health-address", "0.0.0.0"]
    k.start()
    assert get(k, "/readyz", host="127.0.0.2")[0] == 200
    assert get(k, "/metrics", host="127.0.0.2")[0] == 200


@pytest.mark.parametrize("address", ["localhost", "127.0.0.300", "", "1.2.3.4:80"])
def test_health_address_must_be_an_ip_address(stack, address):
    cp = subprocess.run([stack.binary("kms"), "config", "--health-address", address],
                        capture_output=True, text=True, timeout=30,
                        env={k: v for k, v in os.environ.items() if not k.startswith("KMS_")})
    assert cp.returncode == 2, cp
    assert cp.stdout == "" and cp.stderr.count("\n") == 1, cp.stderr
    assert "health_address" in cp.stderr


def test_settings_shown_by_kms_config(stack):
    cp = subprocess.run([stack.binary("kms"), "config"], capture_output=True, text=True,
                        timeout=30,
                        env={k: v for k, v in os.environ.items() if not k.startswith("KMS_")})
    assert cp.returncode == 0, cp.stderr
    assert "health_address = 127.0.0.1\n" in cp.stdout
    assert "stall_timeout_ms = 60000\n" in cp.stdout


def test_batch_log_line(kms):
    vsp = kms.provider()
    kms.sla(vsp, ["v2x.a"], key_formats=("JWK",))
    ok = kms.request(kms.unique("log"), [("v2x.a", "JWK")], vsp_id=vsp)
    kms.send(ok)
    kms.result(ok["requestId"])
    kms.send(ok)  # the same again: replayed
    wait_until(lambda: len([e for e in kms.log_events() if e["event"] == "batch_done"]) >= 2,
               30, 0.1, "two batch lines")
    lines = [e for e in kms.log_events() if e["event"] == "batch_done"]
    ids = [e["batch"] for e in lines]
    assert ids == list(range(1, len(ids) + 1)), ids
    for e in lines:
        assert e["level"] == "info"
        outcomes = ("decided", "replayed", "conflict", "redelivered", "dlq", "error")
        assert sum(e[o] for o in outcomes) == e["messages"], e
        assert e["success"] + e["failure"] == e["messages"] - e["redelivered"], e
        assert e["ms"] >= 0
    assert sum(e["decided"] for e in lines) >= 1 and sum(e["replayed"] for e in lines) >= 1


# ---------------------------------------------------------------- under load


@pytest.mark.slow
def test_scrapes_under_load_change_no_result(kms_factory):
    """100 scrapes a second during a fleet run: every request answered once,
    in order, as it would be without them."""
    k = kms_factory()
    vsp, no_sla = k.provider(), k.provider()
    k.sla(vsp, ["v2x.a"], key_formats=("JWK",), max_val_servers=1000)
    stop = threading.Event()
    scrapes, errors = [], []

    def scraper():
        while not stop.is_set():
            t = time.monotonic()
            try:
                text = scrape(k)
                scrapes.append(len(text))
            except Exception as e:  # counted, the test fails on it below
                errors.append(repr(e))
            time.sleep(max(0.0, 0.01 - (time.monotonic() - t)))

    th = threading.Thread(target=scraper, daemon=True)
    t0 = time.monotonic()
    th.start()
    try:
        s = fleet(k, 300, 10, [vsp, no_sla], prefix=k.unique("load") + "-", rate=1000)
    finally:
        stop.set()
        th.join(10)
    took = time.monotonic() - t0
    assert errors == []
    assert len(scrapes) >= 20 * took, f"{len(scrapes)} scrapes in {took:.1f} s"
    assert s["by_result"] == {"SUCCESS": 1500, "FAILURE": 1500}
    assert s["by_cause"] == {"NOT_ALLOWED_BY_SLA": 1500}
    stats = k.kmsctl("stats")
    assert stats["decisions"]["total"] == 3000 and stats["audit"]["total"] == 3000
    assert len({r.request_id for r in k.records(3000)}) == 3000
    assert len(k.seen()) == 3000
