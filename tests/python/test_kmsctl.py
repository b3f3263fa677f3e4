"""kmsctl, the admin command, against a live PostgreSQL.

The server is KMS_DSN's, or else the project's stack (the ``stack``
fixture); the module works in a database of its own, created for it and
dropped after it (or, when it may not create one, in the given database:
every name is unique per run). The binary is KMS_BUILD's (default "build").
Rows the KM-S itself would write (VAL servers, key formats, decisions, audit)
are seeded with psql, whose :'var' quoting keeps the seeding parameterized.
"""

import glob
import json
import os
import shutil
import subprocess
import urllib.parse
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(REPO, os.environ.get("KMS_BUILD", "build"))
KMSCTL = os.path.join(BUILD, "kmsctl")
MIGRATIONS = len(glob.glob(os.path.join(REPO, "services", "kms", "migrations", "*.sql")))

RUN = uuid.uuid4().hex[:10]
DSN = ""  # this module's database, set by the db fixture
FRESH = {"applied": None}  # what the first migrate applied, on a new database

# Names that must survive a round trip: quotes, backslashes, LIKE wildcards,
# C0 and C1 control characters, 4-byte UTF-8.
STRANGE = [
    f"quote'\"-{RUN}",
    f"back\\slash\\\\-{RUN}",
    f"percent%_-{RUN}",
    f"ctl\x01\x1b[31m\n\t-{RUN}",
    f"c1\u0085\u009b-{RUN}",
    f"emoji\U0001F600\U0001D11E-{RUN}",
]


def run(*args, env=None, dsn=True):
    """Run kmsctl; returns (exit code, stdout text, stderr text)."""
    e = dict(os.environ)
    if env is not None:
        e.update(env)
    if dsn:
        e["KMS_DSN"] = DSN
    else:
        e.pop("KMS_DSN", None)
    p = subprocess.run([KMSCTL, *args], capture_output=True, env=e, timeout=60)
    return p.returncode, p.stdout.decode("utf-8"), p.stderr.decode("utf-8")


def run_json(*args):
    rc, out, err = run("--json", *args)
    assert rc == 0, err
    assert err == ""
    return json.loads(out)


def escaped(s):
    """What a table shows for s: control characters, C1 controls and the
    backslash as \\xNN of their UTF-8 bytes."""
    out = []
    for ch in s:
        cp = ord(ch)
        if cp < 0x20 or cp == 0x7F or ch == "\\" or 0x80 <= cp <= 0x9F:
            out.append("".join(f"\\x{b:02x}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


def one_error_line(err):
    assert err.endswith("\n")
    assert err.count("\n") == 1, err
    assert err.startswith("kmsctl: ")


def psql_bin():
    for p in (shutil.which("psql"), "/usr/lib/postgresql/15/bin/psql"):
        if p and os.path.exists(p):
            return p
    pytest.skip("psql is not installed")


def dsn_for(dsn, dbname):
    if "://" in dsn:
        u = urllib.parse.urlsplit(dsn)
        return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + dbname, u.query, u.fragment))
    return f"{dsn} dbname={dbname}"


def psql(sql, dsn=None, check=True, **variables):
    cmd = [psql_bin(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn or DSN]
    for k, v in variables.items():
        cmd += ["-v", f"{k}={v}"]
    p = subprocess.run(cmd, input=sql.encode("utf-8"), capture_output=True, timeout=60)
    if check:
        assert p.returncode == 0, p.stderr.decode("utf-8", "replace")
    return p.returncode


@pytest.fixture(scope="module", autouse=True)
def db(request):
    global DSN
    base = os.environ.get("KMS_DSN") or request.getfixturevalue("stack").dsn
    name = "kmsctl_" + RUN
    created = psql(f"CREATE DATABASE {name}", dsn=base, check=False) == 0
    DSN = dsn_for(base, name) if created else base
    rc, out, err = run("--json", "migrate")
    assert rc == 0, err
    if created:
        FRESH["applied"] = json.loads(out)["applied"]
    yield DSN
    DSN = base
    if created:
        psql(f"DROP DATABASE {name} WITH (FORCE)", dsn=base, check=False)


def test_help_and_misuse():
    rc, out, err = run("--help", dsn=False)
    assert rc == 0 and err == ""
    assert out.startswith("usage: kmsctl")
    for args in (["bogus"], ["provider"], ["provider", "frobnicate"], []):
        rc, out, err = run(*args)
        assert rc == 2, args
        assert out == ""
        one_error_line(err)
    # an option the command does not take, a missing argument, a stray one
    for args in (
        ["provider", "list", "--name", "x"],
        ["provider", "add"],
        ["provider", "list", "extra"],
        ["--nonsense", "stats"],
        ["sla", "list", "--provider"],
    ):
        rc, out, err = run(*args)
        assert rc == 2, args
        one_error_line(err)


def test_no_database_is_misuse():
    rc, out, err = run("stats", dsn=False)
    assert rc == 2
    one_error_line(err)


def test_unreachable_database_is_a_runtime_failure():
    rc, out, err = run("--dsn", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", "stats")
    assert rc == 1
    assert out == ""
    one_error_line(err)
    # misuse is found before connecting
    rc, out, err = run(
        "--dsn", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", "sla", "add",
        "--provider", "p", "--services", "a", "--key-formats", "NOPE", "--max-val-servers", "1",
    )
    assert rc == 2
    one_error_line(err)


def test_migrate_twice():
    if FRESH["applied"] is not None:  # every migration, once, on a new database
        assert FRESH["applied"] == MIGRATIONS >= 1
    rc, out, err = run("migrate")
    assert rc == 0 and err == ""
    assert out == "0 migrations applied\n"
    assert run_json("migrate") == {"applied": 0}


def test_provider_add_list_disable():
    vsp = f"vsp-{RUN}"
    assert run_json("provider", "add", vsp, "--name", "Acme VAL services") == {
        "vsp_id": vsp,
        "name": "Acme VAL services",
        "enabled": True,
    }
    rc, out, err = run("provider", "add", vsp)
    assert rc == 3
    one_error_line(err)
    listed = [p for p in run_json("provider", "list") if p["vsp_id"] == vsp]
    assert listed == [{"vsp_id": vsp, "name": "Acme VAL services", "enabled": True}]

    rc, out, err = run("provider", "disable", vsp)
    assert rc == 0, err
    listed = [p for p in run_json("provider", "list") if p["vsp_id"] == vsp]
    assert listed[0]["enabled"] is False
    # disabling twice is fine; an unknown provider is not found
    assert run_json("provider", "disable", vsp)["enabled"] is False
    rc, out, err = run("provider", "disable", f"nobody-{RUN}")
    assert rc == 4
    one_error_line(err)
    assert run_json("provider", "enable", vsp)["enabled"] is True

    rc, out, err = run("provider", "list")
    assert rc == 0
    line = [l for l in out.splitlines() if l.startswith(vsp + " ")]
    assert len(line) == 1 and "Acme VAL services" in line[0] and "yes" in line[0]


def test_sla_add_list_revoke():
    vsp = f"vsp-sla-{RUN}"
    run_json("provider", "add", vsp)
    rc, out, err = run(
        "sla", "add", "--provider", vsp, "--services", "svc-a,svc-b,svc-a",
        "--key-formats", "JWK,RAW", "--max-val-servers", "25",
    )
    assert rc == 0, err
    first = int(out.strip())
    second = run_json(
        "sla", "add", "--provider", vsp, "--services", "svc-c", "--key-formats",
        "MIKEY_SAKKE", "--max-val-servers", "1", "--valid-from", "2030-01-01",
        "--valid-until", "2031-06-30T12:30:15.5+02:00",
    )["sla_id"]
    assert second > first

    slas = run_json("sla", "list", "--provider", vsp)
    assert [s["sla_id"] for s in slas] == [first, second]
    a, b = slas
    assert a["vsp_id"] == vsp
    assert a["services"] == ["svc-a", "svc-b"]  # the repeated one dropped
    assert a["key_formats"] == ["JWK", "RAW"]
    assert a["max_val_servers"] == 25
    assert a["revoked"] is False
    # valid for a year from now by default
    assert int(a["valid_until"][:4]) == int(a["valid_from"][:4]) + 1
    assert a["valid_until"][4:] == a["valid_from"][4:]
    assert b["valid_from"] == "2030-01-01T00:00:00.000Z"
    assert b["valid_until"] == "2031-06-30T10:30:15.500Z"

    rc, out, err = run("sla", "list", "--provider", vsp)
    assert rc == 0
    rows = out.splitlines()
    assert rows[0].split() == [
        "SLA_ID", "VSP_ID", "SERVICES", "KEY_FORMATS", "MAX_VAL_SERVERS",
        "VALID_FROM", "VALID_UNTIL", "STATE",
    ]
    assert rows[1].split()[:5] == [str(first), vsp, "svc-a,svc-b", "JWK,RAW", "25"]
    assert rows[1].split()[-1] == "active"
    assert rows[2].split()[-1] == "pending"

    assert run_json("sla", "revoke", str(first)) == {"sla_id": first, "revoked": True}
    assert run_json("sla", "revoke", str(first)) == {"sla_id": first, "revoked": True}
    assert [s["revoked"] for s in run_json("sla", "list", "--provider", vsp)] == [True, False]
    rc, out, err = run("sla", "revoke", "999999999999")
    assert rc == 4
    one_error_line(err)
    rc, out, err = run("sla", "revoke", "12abc")
    assert rc == 2
    one_error_line(err)


@pytest.mark.parametrize(
    "extra",
    [
        ["--key-formats", "JWK,NOT_A_FORMAT"],
        ["--key-formats", "jwk"],
        ["--key-formats", "JWK,"],
        ["--key-formats", "JWK", "--max-val-servers", "0"],
        ["--key-formats", "JWK", "--max-val-servers", "-1"],
        ["--key-formats", "JWK", "--max-val-servers", "2147483648"],
        ["--key-formats", "JWK", "--valid-from", "yesterday"],
        ["--key-formats", "JWK", "--valid-from", "2030-02-30"],
        ["--key-formats", "JWK", "--valid-until", "2030-01-01T25:00:00Z"],
        ["--key-formats", "JWK", "--valid-from", "2031-01-01", "--valid-until", "2030-01-01"],
        ["--key-formats", "JWK", "--valid-until", "2001-01-01"],
    ],
)
def test_sla_add_refuses_bad_input(extra):
    vsp = f"vsp-bad-{RUN}"
    run("provider", "add", vsp)
    args = ["sla", "add", "--provider", vsp, "--services", "svc-a"]
    if "--max-val-servers" not in extra:
        args += ["--max-val-servers", "5"]
    rc, out, err = run(*args, *extra)
    assert rc == 2, err
    assert out == ""
    one_error_line(err)
    assert run_json("sla", "list", "--provider", vsp) == []


def test_sla_add_needs_its_options_and_a_provider():
    rc, out, err = run("sla", "add", "--provider", f"vsp-{RUN}", "--services", "a")
    assert rc == 2
    one_error_line(err)
    rc, out, err = run(
        "sla", "add", "--provider", f"nobody-{RUN}", "--services", "a",
        "--key-formats", "JWK", "--max-val-servers", "1",
    )
    assert rc == 4
    one_error_line(err)


def test_strange_names_round_trip():
    for name in STRANGE:
        got = run_json("provider", "add", name, "--name", "n:" + name)
        assert got == {"vsp_id": name, "name": "n:" + name, "enabled": True}
        sla = run_json(
            "sla", "add", "--provider", name, "--services", name + ",plain",
            "--key-formats", "JWK", "--max-val-servers", "1",
        )["sla_id"]
        listed = run_json("sla", "list", "--provider", name)
        assert [(s["sla_id"], s["vsp_id"], s["services"]) for s in listed] == [
            (sla, name, [name, "plain"])
        ]
    providers = {p["vsp_id"]: p for p in run_json("provider", "list")}
    for name in STRANGE:
        assert providers[name]["name"] == "n:" + name

    # the table shows every one escaped, and nothing raw that drives a terminal
    rc, out, err = run("provider", "list")
    assert rc == 0
    for name in STRANGE:
        assert escaped(name) in out
    for bad in ("\x01", "\x1b", "\t", "\u0085", "\u009b"):
        assert bad not in out
    assert out.count("\n") == len(out.splitlines())
    rows = [l for l in out.splitlines() if RUN in l and l.startswith("ctl")]
    assert len(rows) == 1  # the newline in the name did not split the row
    assert "\U0001F600\U0001D11E" in out  # 4-byte UTF-8 shown as it is

    # % and _ are not wildcards
    assert run_json("sla", "list", "--provider", f"percent%-{RUN}") == []


def seed_val_server(identity, vsp, topic):
    """What the KM-S would have written for two requests of identity."""
    r1, r2 = str(uuid.uuid4()), str(uuid.uuid4())
    psql(
        """
        INSERT INTO val_servers VALUES (:'id', :'vsp', :'ep',
            '2030-01-01T00:00:00Z', '2030-01-02T00:00:00Z', :'r2');
        INSERT INTO key_formats VALUES
            (:'id', :'svc', 1, 'JWK', NULL, :'c1'::jsonb, :'r1', '2030-01-01T00:00:00Z'),
            (:'id', :'svc', 2, 'JWK', '2', :'c2'::jsonb, :'r2', '2030-01-02T00:00:00Z'),
            (:'id', 'plain', 1, 'RAW', NULL, '{}', :'r1', '2030-01-01T00:00:00Z');
        INSERT INTO decisions VALUES (:'r1', :'id', NULL, 'SUCCESS', NULL, NULL, 'kms-a',
            1893456000000, 't', 0, 1);
        INSERT INTO decisions VALUES (:'r2', :'id', NULL, 'SUCCESS', NULL, NULL, 'kms-a',
            1893542400000, 't', 0, 2);
        INSERT INTO audit (topic, kafka_partition, kafka_offset, request_id,
            requester_identity, outcome, has_result, result, cause, detail, kms_id,
            processed_at, reply_note) VALUES
            (:'topic', 3, 10, :'r1', :'id', 'DECIDED', true, 'SUCCESS', NULL, NULL,
             'kms-a', 1893456000000, NULL),
            (:'topic', 3, 11, :'r2', :'id', 'DECIDED', true, 'SUCCESS', NULL, NULL,
             'kms-a', 1893542400000, :'note'),
            (:'topic', 3, 12, :'r2', :'id', 'REPLAYED', true, 'SUCCESS', NULL, NULL,
             'kms-a', 1893542400000, NULL);
        """,
        id=identity, vsp=vsp, ep="https://val.example/" + RUN, svc="svc\\" + identity,
        c1=json.dumps({"kty": "oct", "alg": "A128GCM"}),
        c2=json.dumps({"kty": "oct", "alg": identity}),
        r1=r1, r2=r2, topic=topic, note="reply topic " + identity,
    )
    return r1, r2


def test_val_server_audit_decision_shown_exactly():
    vsp = f"vsp-show-{RUN}"
    run_json("provider", "add", vsp)
    identity = STRANGE[3] + STRANGE[5] + "'\\%"
    r1, r2 = seed_val_server(identity, vsp, f"requests-{RUN}")
    svc = "svc\\" + identity

    servers = run_json("valserver", "list", "--provider", vsp)
    current = {
        svc: {
            "format_type": "JWK",
            "format_version": "2",
            "content": {"alg": identity, "kty": "oct"},
            "version": 2,
        },
        "plain": {"format_type": "RAW", "format_version": None, "content": {}, "version": 1},
    }
    assert servers == [
        {
            "requester_identity": identity,
            "vsp_id": vsp,
            "endpoint": "https://val.example/" + RUN,
            "first_provisioned_at": "2030-01-01T00:00:00.000Z",
            "last_provisioned_at": "2030-01-02T00:00:00.000Z",
            "services": current,
        }
    ]
    shown = run_json("valserver", "show", identity)
    history = shown.pop("history")
    assert shown == servers[0]
    assert [(h["val_service_id"], h["version"], h["request_id"]) for h in history] == [
        ("plain", 1, r1),
        (svc, 1, r1),
        (svc, 2, r2),
    ]
    assert history[1]["content"] == {"alg": "A128GCM", "kty": "oct"}
    assert history[1]["format_version"] is None
    assert history[2]["provisioned_at"] == "2030-01-02T00:00:00.000Z"

    rc, out, err = run("valserver", "show", identity)
    assert rc == 0, err
    assert escaped(identity) in out and "\x1b" not in out
    rc, out, err = run("valserver", "list", "--provider", vsp)
    assert rc == 0 and escaped(identity) in out

    trail = run_json("audit", identity)
    assert [(a["offset"], a["outcome"], a["request_id"]) for a in trail] == [
        (10, "DECIDED", r1),
        (11, "DECIDED", r2),
        (12, "REPLAYED", r2),
    ]
    assert trail[1] == {
        "topic": f"requests-{RUN}",
        "partition": 3,
        "offset": 11,
        "request_id": r2,
        "outcome": "DECIDED",
        "result": "SUCCESS",
        "cause": None,
        "detail": None,
        "kms_id": "kms-a",
        "processed_at": 1893542400000,
        "reply_note": "reply topic " + identity,
    }
    rc, out, err = run("audit", identity)
    assert rc == 0 and escaped("reply topic " + identity) in out
    assert run_json("audit", f"nobody-{RUN}") == []

    assert run_json("decision", r2) == {
        "request_id": r2,
        "requester_identity": identity,
        "result": "SUCCESS",
        "cause": None,
        "detail": None,
        "kms_id": "kms-a",
        "processed_at": 1893542400000,
    }
    rc, out, err = run("decision", str(uuid.uuid4()))
    assert rc == 4 and out == ""
    one_error_line(err)
    rc, out, err = run("valserver", "show", f"nobody-{RUN}")
    assert rc == 4
    one_error_line(err)


def test_stats():
    before = run_json("stats")
    assert set(before) == {
        "decisions", "audit", "providers", "slas", "val_servers", "key_format_versions",
    }
    assert set(before["decisions"]) == {"total", "by_result", "by_cause"}
    assert before["decisions"]["total"] == sum(before["decisions"]["by_result"].values())
    assert before["audit"]["total"] == sum(before["audit"]["by_outcome"].values())
    vsp = f"vsp-stats-{RUN}"
    run_json("provider", "add", vsp)
    seed_val_server(f"stats-{RUN}", vsp, f"stats-{RUN}")
    after = run_json("stats")
    assert after["providers"] == before["providers"] + 1
    assert after["val_servers"] == before["val_servers"] + 1
    assert after["key_format_versions"] == before["key_format_versions"] + 3
    assert after["decisions"]["by_result"].get("SUCCESS", 0) == (
        before["decisions"]["by_result"].get("SUCCESS", 0) + 2
    )
    assert after["audit"]["by_outcome"]["REPLAYED"] == (
        before["audit"]["by_outcome"].get("REPLAYED", 0) + 1
    )
    rc, out, err = run("stats")
    assert rc == 0 and out.startswith("COUNT")


def test_argument_not_utf8_is_misuse():
    e = dict(os.environ, KMS_DSN=DSN)
    p = subprocess.run(
        [KMSCTL.encode(), b"provider", b"add", b"bad-\xff-" + RUN.encode()],
        capture_output=True, env=e, timeout=60,
    )
    assert p.returncode == 2
    one_error_line(p.stderr.decode("utf-8"))
