"""Injection, smuggling and secrets, end to end.

Injection: VAL server identities, VAL service IDs, provider IDs and key
format content holding quotes, backslashes, %, control characters (no NUL:
the wire refuses it) and 4-byte UTF-8 go through the whole pipeline (kmsctl
provider and SLA, request, SUCCESS Result, PostgreSQL) and come back
verbatim from ``kmsctl --json``; kmsctl's table output shows them with the
control characters escaped, so that a hostile identity cannot drive the
operator's terminal.

Secrets: the access token is never stored, logged or echoed. A KM-S at
debug log level gets successful and failing requests of every kind; then its
log file, a plain-text ``pg_dump`` of its database, the results topic and
the DLQ are searched for every token and for its signature and payload
parts. (A DLQ record keeps the original value by contract, token included:
there the test checks that the value is the original, byte for byte, and
that nothing the KM-S added quotes the token.) Passwords in connection
strings and librdkafka properties are masked by ``kms config`` and never
reach the log.
"""

import json
import os
import shutil
import signal
import subprocess
import time
import unicodedata
import urllib.request

import pytest

import hostile
import kmswire
from conftest import free_port, new_ec_key

# ---------------------------------------------------------------- injection

NASTY = {
    "quotes": "val-'single\"double`back",
    "backslashes": "val\\back\\\\slash\\",
    "percent": "val-%s%n%x%%-%00-%d",
    "sql": "x'); DROP TABLE val_servers; --",
    "json": "{\"requester_identity\":\"admin\"}\\u0000",
    "controls": "val-\t\r\n\x1b[31mred\x1b[0m\x07\x08\x7f-end",
    "c1 controls": "val-\u009b31m\u0085\u009d-end",
    "4-byte utf-8": "val-\U0001F600\U0001D11E\U00010348",
    "bidi override": "val-\u202eexe.txt",
    "all at once": "'\"\\%\t\x1b\U0001F600",
}


def _clean_id(s):
    """A service ID of the same spirit that can be listed after --services
    (which takes a comma-separated list)."""
    return "svc-" + s.replace(",", ";")


def _is_control(ch):
    return unicodedata.category(ch) == "Cc"


def kmsctl_table(kms, *args):
    """kmsctl without --json: what an operator sees."""
    cp = subprocess.run([kms.stack.binary("kmsctl"), "--dsn", kms.dsn, *args],
                        capture_output=True, timeout=60)
    assert cp.returncode == 0, f"kmsctl {args} exited {cp.returncode}: {cp.stderr!r}"
    return cp.stdout.decode("utf-8")


ESCAPED_ESC = ("\\x1b", "\\x1B", "\\e", "\\033", "\\u001b", "\\u001B", "^[")


@pytest.fixture(scope="module")
def injected(kms):
    """Provision every nasty identity, with a nasty service ID, content and
    provider, through the real pipeline. Returns {label: (ident, svc, vsp,
    content, request, response)}."""
    out = {}
    reqs = {}
    for label, s in NASTY.items():
        vsp = kms.provider("vsp-" + s + "-" + kms.unique("p"))
        svc = _clean_id(s)
        kms.sla(vsp, [svc], ("JWK", "RAW"))
        ident = s + "-" + kms.unique("v")
        content = {s: s, "k" + s: "v\\\"%" + s}
        req = kms.request(ident, [kmswire.service(svc, "RAW", s, content)], vsp,
                          endpoint="https://vals.test/seal?id=%27%22%5C%25%F0%9F%98%80")
        reqs[label] = req
        out[label] = (ident, svc, vsp, content, req)
    for req in reqs.values():
        kms.send(req)
    recs = kms.records([r["requestId"] for r in reqs.values()], timeout=60)
    final = {}
    for label, (ident, svc, vsp, content, req) in out.items():
        mine = [r for r in recs if r.request_id == req["requestId"]]
        assert len(mine) == 1
        assert mine[0].key == ident.encode("utf-8")
        final[label] = (ident, svc, vsp, content, req, mine[0].response)
    return final


@pytest.mark.parametrize("label", list(NASTY))
def test_hostile_text_is_stored_and_shown_verbatim(kms, injected, label):
    ident, svc, vsp, content, req, resp = injected[label]
    assert (resp["result"], resp["cause"]) == ("SUCCESS", None), resp
    assert resp["requesterIdentity"] == ident
    vs = hostile.valserver(kms, ident)
    assert vs is not None
    assert vs["requester_identity"] == ident
    assert vs["vsp_id"] == vsp
    assert vs["endpoint"] == req["endpoint"]
    assert [(k["val_service_id"], k["format_type"], k["format_version"], k["content"],
             k["request_id"]) for k in hostile.history(vs)] == [
        (svc, "RAW", NASTY[label], content, req["requestId"])]
    assert list(vs["services"]) == [svc]
    assert vs["services"][svc]["content"] == content
    assert ident in hostile.valserver_ids(kms)
    rows = hostile.audit(kms, ident)
    assert [(a["request_id"], a["outcome"], a["result"]) for a in rows] == [
        (req["requestId"], "DECIDED", "SUCCESS")]
    providers = {p["vsp_id"] for p in kms.kmsctl("provider", "list")}
    assert vsp in providers
    sla_services = [s for row in kms.kmsctl("sla", "list") for s in row.get("services", [])]
    assert svc in sla_services


def test_other_identities_do_not_match_by_pattern(kms, injected):
    """A % or _ in an identity is no wildcard: looking up a pattern-like
    name finds nothing, and each lookup finds exactly its own."""
    ident = injected["percent"][0]
    assert hostile.valserver(kms, ident.replace("%s", "%")) is None
    assert hostile.valserver(kms, "%") is None
    assert hostile.valserver(kms, "_%") is None
    rc, out, _ = kms.kmsctl_raw("audit", "%")
    assert rc == hostile.NOT_FOUND or (rc == 0 and json.loads(out) == []), out
    sql_ident = injected["sql"][0]
    assert hostile.valserver(kms, sql_ident)["requester_identity"] == sql_ident
    assert int(kms.sql("SELECT count(*) FROM val_servers")[0][0]) >= len(NASTY)


VIEWS = ["valserver show", "valserver list", "decision", "provider list", "sla list"]


@pytest.mark.parametrize("view", VIEWS)
def test_table_output_escapes_control_characters(kms, injected, view):
    for label in ("controls", "c1 controls", "all at once", "4-byte utf-8", "quotes"):
        ident, svc, vsp, content, req, resp = injected[label]
        if view == "valserver show":
            out = kmsctl_table(kms, "valserver", "show", ident)
        elif view == "decision":
            out = kmsctl_table(kms, "decision", req["requestId"])
        else:
            out = kmsctl_table(kms, *view.split())
        bad = sorted({f"U+{ord(c):04X}" for c in out if _is_control(c) and c != "\n"})
        assert not bad, f"{view} of {label!r} prints raw control characters {bad}"
        if label in ("controls", "all at once"):
            assert any(e in out for e in ESCAPED_ESC), \
                f"{view}: the ESC of {label!r} is not shown escaped:\n{out[:2000]}"
        if label == "4-byte utf-8":
            assert "\U0001F600\U0001D11E" in out, f"{view}: 4-byte UTF-8 not shown as is"
        if label == "quotes":
            assert "'single\"double`back" in out, f"{view}: quotes not shown as is"


# ---------------------------------------------------------------- secrets


def _pg_dump():
    p = shutil.which("pg_dump")
    if p:
        return p
    for cand in ("/usr/lib/postgresql/15/bin/pg_dump",):
        if os.path.exists(cand):
            return cand
    pytest.fail("pg_dump not found")


def _fragments(token):
    """The token and the parts of it that must not appear anywhere."""
    h, p, s = token.split(".")
    out = {"token": token, "signature": s, "payload": p, "signing input": h + "." + p}
    return {k: v for k, v in out.items() if len(v) >= 16}


def _search(haystacks, tokens):
    """[(where, label, fragment kind)] of every fragment found."""
    found = []
    for where, data in haystacks.items():
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        for label, token in tokens.items():
            for kind, frag in _fragments(token).items():
                if frag.encode() in data:
                    found.append((where, label, kind))
    return found


def test_access_token_is_never_stored_logged_or_echoed(kms_factory):
    kms = kms_factory(extra_args=("--log-level", "debug"))
    vsp = hostile.provisioned(kms, ["svc-a"], ("JWK",))
    other_vsp = hostile.provisioned(kms, ["svc-b"], ("JWK",))
    now = int(time.time())
    tokens = {}
    requests = {}

    def add(label, ident, token, services=(("svc-a", "JWK"),), **kw):
        tokens[label] = token
        req = kms.request(ident, list(services), vsp, token=token, **kw)
        requests[label] = req
        return req

    v_ok = kms.unique("sec")
    add("success", v_ok, kms.token(v_ok, vsp))
    v = kms.unique("sec")
    add("rogue signature", v, kms.token(v, vsp, key=new_ec_key()))
    v = kms.unique("sec")
    add("expired", v, kms.token(v, vsp, iat=now - 900, nbf=now - 900, exp=now - 600))
    v = kms.unique("sec")
    add("another VAL server's token", v, kms.token(v_ok, vsp))
    v = kms.unique("sec")
    add("not allowed by SLA", v, kms.token(v, other_vsp))
    v = kms.unique("sec")
    add("invalid request", v, kms.token(v, vsp), endpoint="not a uri")
    v = kms.unique("sec")
    add("alg none", v, kms.token(v, vsp, alg="none") + "c2lnbmF0dXJlLXBhcnQtaGVyZQ")
    v = kms.unique("sec")
    add("HS256", v, hostile.hs256_token(b"a-shared-secret-of-32-bytes-long", {
        "alg": "HS256", "typ": "JWT", "kid": "k1"}, {"iss": kms.issuer, "client_id": v,
                                                   "exp": now + 300}))
    v = kms.unique("sec")
    add("oversized", v, kms.token(v, vsp, extra_claims={"pad": "x" * 9000}))

    for req in requests.values():
        kms.send(req)
    kms.result(requests["success"]["requestId"])
    # the successful one again (REPLAYED), and its requestId with other
    # content and a fresh token (REQUEST_ID_CONFLICT)
    kms.send(requests["success"])
    conflict_token = kms.token(v_ok, vsp)
    tokens["conflict"] = conflict_token
    conflict = dict(requests["success"], endpoint="https://elsewhere.test/",
                    credentials={"accessToken": conflict_token})
    kms.send(conflict)

    # undecodable values that still carry a token: one with readable ids
    # (DLQ and a Result), one without (DLQ only)
    v = kms.unique("sec")
    t = kms.token(v, vsp)
    tokens["undecodable, readable ids"] = t
    r1 = kms.request(v, [("svc-a", "JWK")], vsp, token=t)
    dlq_values = [kmswire.encode_request(r1) + b"\x00"]
    v2 = kms.unique("sec")
    t2 = kms.token(v2, vsp)
    tokens["undecodable, no ids"] = t2
    r2 = kms.request(v2, [("svc-a", "JWK")], vsp, token=t2)
    dlq_values.append(b"\xc3\x02" + kmswire.encode_request(r2)[2:])
    coords = hostile.send_all(kms, dlq_values[:1], v) + hostile.send_all(kms, dlq_values[1:], v2)

    ids = [r["requestId"] for r in requests.values()] + [r1["requestId"]]
    kms.records(ids, timeout=60)
    hostile_wait = time.monotonic() + 60
    while len(kms.records(requests["success"]["requestId"])) < 3:
        assert time.monotonic() < hostile_wait, "no Results for the replay and the conflict"
        time.sleep(0.2)
    got = hostile.dlq_by_offset(kms, coords)
    outcomes = {}
    for label, req in requests.items():
        recs = kms.records(req["requestId"])
        outcomes[label] = [(r.response["result"], r.response["cause"]) for r in recs]
    assert outcomes["success"][0] == ("SUCCESS", None)
    assert len(outcomes["success"]) >= 3  # decided, replayed, conflict
    assert ("FAILURE", "REQUEST_ID_CONFLICT") in outcomes["success"]
    for label in requests:
        if label != "success":
            assert outcomes[label] and outcomes[label][0][0] == "FAILURE", (label, outcomes)

    # let the log settle: stop the KM-S, so every line is written
    assert kms.stop() == 0
    log = kms.log_text()
    assert "started" in log and "stopped" in log

    dump = subprocess.run([_pg_dump(), "-d", kms.dsn, "--no-owner"], capture_output=True,
                          timeout=120)
    assert dump.returncode == 0, dump.stderr
    assert b"CREATE TABLE" in dump.stdout and b"COPY public.audit" in dump.stdout
    assert v_ok.encode() in dump.stdout  # the dump does hold the data

    results = kms.seen()
    assert len(results) >= len(requests) + 3
    result_bytes = b"".join((r.key or b"") + (r.value or b"")
                            + b"".join(n.encode() + v for n, v in r.header_list)
                            for r in results)

    dlq_recs = [r for recs in got.values() for r in recs]
    dlq_added = b""
    for rec, sent in zip([got[c][0] for c in coords], dlq_values):
        assert rec.value == sent  # the original, as the contract keeps it
        dlq_added += (rec.key or b"") + b"".join(
            n.encode() + v for n, v in rec.header_list)
    assert len(dlq_recs) == 2

    found = _search({"kms log": log, "pg_dump": dump.stdout, "results topic": result_bytes,
                     "DLQ keys and headers": dlq_added}, tokens)
    assert not found, f"token material found: {found}"


# ---------------------------------------------------------------- passwords

PW = "s3cr3t-PW-7f1c"


def kms_config(*args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("KMS_")}
    e.update(env or {})
    cp = subprocess.run([os.path.join(kmswire.REPO, os.environ.get("KMS_BUILD", "build"), "kms"),
                         "config", *args], capture_output=True, text=True, timeout=30, env=e)
    return cp


DSNS = {
    "URI user:password": f"postgresql://u:{PW}@h/db",
    "URI with port and query": f"postgresql://kms:{PW}@db.example:5432/kms?sslmode=require",
    "URI percent-encoded password": f"postgres://u:{PW}%40x@h/db",
    "URI password in the query": f"postgresql://u@h/db?password={PW}",
    "URI password in the query, after another":
        f"postgresql://u@h/db?sslmode=disable&password={PW}",
    "key=value": f"host=h user=u password={PW} dbname=db",
    "key=value quoted": f"host=h password='{PW} with space' dbname=db",
    "key=value spaced": f"host=h password = {PW} dbname=db",
    "key=value first": f"password={PW} host=h",
}


@pytest.mark.parametrize("label", list(DSNS))
def test_kms_config_masks_dsn_passwords(label):
    cp = kms_config("--dsn", DSNS[label])
    assert cp.returncode == 0, cp.stderr
    assert PW not in cp.stdout + cp.stderr, f"{label}: {cp.stdout}"
    line = next(ln for ln in cp.stdout.splitlines() if ln.startswith("dsn"))
    assert "****" in line, line


def test_kms_config_masks_passwords_from_every_source(tmp_path):
    conf = tmp_path / "kms.conf"
    conf.write_text(f"dsn = postgresql://u:{PW}-file@h/db\n"
                    f"rdkafka.sasl.password = {PW}-file-sasl\n")
    cp = kms_config("--config", str(conf))
    assert cp.returncode == 0, cp.stderr
    assert PW not in cp.stdout, cp.stdout
    cp = kms_config(env={"KMS_DSN": f"postgresql://u:{PW}-env@h/db"})
    assert cp.returncode == 0 and PW not in cp.stdout, cp.stdout
    cp = kms_config("-X", f"sasl.password={PW}", "-X", f"ssl.key.password={PW}",
                    "-X", f"ssl.keystore.password={PW}",
                    "-X", f"sasl.oauthbearer.client.secret={PW}")
    assert cp.returncode == 0, cp.stderr
    assert PW not in cp.stdout, cp.stdout
    assert cp.stdout.count("****") >= 4


def _run_briefly(args, seconds, ready=None):
    """Run kms with args for a while (or until ready() is true), then stop
    it; returns (exit code, combined output)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMS_")}
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and p.poll() is None:
        if ready is not None and ready():
            break
        time.sleep(0.2)
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=60)
    return p.returncode, out.decode("utf-8", "replace")


def test_startup_log_does_not_show_the_dsn_password(kms_factory):
    """The stack's PostgreSQL trusts local connections, so a DSN with a
    password works: the KM-S starts, becomes ready, stops, and its log never
    holds the password. A KM-S whose database is unreachable logs why, without the
    password either; so does `kms migrate`."""
    kms = kms_factory(start=False)
    u = kms.dsn.split("://", 1)
    dsn = f"{u[0]}://postgres:{PW}@{u[1].split('@', 1)[1]}"
    port = free_port()
    args = [*kms.args(), "--dsn", dsn, "--health-port", str(port), "--log-level", "debug"]

    def ready():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                return r.status == 200
        except Exception:
            return False
    rc, out = _run_briefly(args, 60, ready)
    assert '"started"' in out, out[-2000:]
    assert PW not in out, "the password is in the startup log"

    bad_port = free_port()
    leaks = []
    for unreachable in (f"postgresql://postgres:{PW}@127.0.0.1:{bad_port}/kms",
                        f"host=127.0.0.1 port={bad_port} user=postgres password={PW}",
                        f"postgresql://postgres@127.0.0.1:{bad_port}/kms?password={PW}",
                        # libpq quotes a malformed token back in its error
                        f"postgresql://postgres:{PW}%zz@127.0.0.1:{bad_port}/kms"):
        rc, out = _run_briefly([*kms.args(), "--dsn", unreachable, "--health-port", "0"], 3)
        if "%zz" in unreachable:
            # a DSN libpq cannot parse is misuse, refused before any retry
            assert rc == 2 and "dsn is not a valid connection string" in out, out[-2000:]
        else:
            assert "database_unreachable" in out, out[-2000:]
        if PW in out:
            line = next(ln for ln in out.splitlines() if PW in ln)
            leaks.append(f"kms run, DSN {unreachable!r}: {line[:300]}")
        cp = subprocess.run([kms.stack.binary("kms"), "migrate", "--dsn", unreachable],
                            capture_output=True, text=True, timeout=60)
        assert cp.returncode != 0
        if PW in cp.stdout + cp.stderr:
            leaks.append(f"kms migrate, DSN {unreachable!r}: {cp.stderr.strip()[:300]}")
    assert not leaks, "the password is printed:\n" + "\n".join(leaks)
