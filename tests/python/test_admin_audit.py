"""The admin audit, against the real database: every change kmsctl makes
(provider add, disable, enable; sla add, revoke) leaves exactly one row in
its own transaction, with who, when, what, and the row before and after; a
change that fails leaves none, and a row that cannot be written undoes its
change; rows are only ever added; the KM-S's own database role has no right
on the table and still does its work.
"""

import datetime
import os
import pwd
import subprocess

import pytest

from conftest import new_ec_key
from jwkslib import ask, stored

ACTIONS = ("provider.add", "provider.disable", "provider.enable", "sla.add", "sla.revoke")


def rows(kms):
    return kms.kmsctl("admin-audit")


def login_name():
    try:
        return os.getlogin()
    except OSError:
        return pwd.getpwuid(os.geteuid()).pw_name


def since(kms, n):
    """The rows added after the first n."""
    return rows(kms)[n:]


def parse_ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def one_change(kms, *args):
    """Run one kmsctl change that must succeed; returns (its output, its one
    audit row)."""
    n = len(rows(kms))
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
    out = kms.kmsctl(*args)
    new = since(kms, n)
    assert len(new) == 1, new
    row = new[0]
    assert before <= parse_ts(row["changed_at"]) <= \
        datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=5)
    assert row["db_role"] == "postgres"
    return out, row


def failed_change(kms, args, rc, stderr_has):
    n = len(rows(kms))
    code, out, err = kms.kmsctl_raw(*args)
    assert code == rc, (code, out, err)
    assert err.count("\n") == 1 and stderr_has in err, err
    assert since(kms, n) == []


def test_each_change_leaves_one_row_with_before_and_after(kms):
    vsp = kms.unique("vsp")
    _, r = one_change(kms, "provider", "add", vsp, "--name", "V2X operator")
    assert (r["action"], r["subject"], r["actor"], r["before"]) == \
        ("provider.add", vsp, login_name(), None)
    assert {k: r["after"][k] for k in ("vsp_id", "name", "enabled", "disabled_at")} == \
        {"vsp_id": vsp, "name": "V2X operator", "enabled": True, "disabled_at": None}

    _, r = one_change(kms, "provider", "disable", vsp, "--actor", "alice@ops")
    assert (r["action"], r["subject"], r["actor"]) == ("provider.disable", vsp, "alice@ops")
    assert r["before"]["enabled"] is True and r["before"]["disabled_at"] is None
    assert r["after"]["enabled"] is False and r["after"]["disabled_at"] is not None
    assert {k: v for k, v in r["before"].items() if k not in ("enabled", "disabled_at")} == \
        {k: v for k, v in r["after"].items() if k not in ("enabled", "disabled_at")}

    _, r = one_change(kms, "provider", "enable", vsp, "--actor", "bob")
    assert (r["action"], r["actor"]) == ("provider.enable", "bob")
    assert (r["before"]["enabled"], r["after"]["enabled"]) == (False, True)
    assert r["after"]["disabled_at"] is None

    out, r = one_change(kms, "sla", "add", "--provider", vsp, "--services", "v2x.a,v2x.b",
                        "--key-formats", "JWK,RAW", "--max-val-servers", "7",
                        "--valid-from", "2030-01-01", "--valid-until", "2031-01-01T00:00:00Z")
    sla_id = out["sla_id"]
    assert (r["action"], r["subject"], r["before"]) == ("sla.add", str(sla_id), None)
    a = r["after"]
    assert (a["sla_id"], a["vsp_id"], a["services"], a["key_formats"], a["max_val_servers"],
            a["revoked_at"]) == (sla_id, vsp, ["v2x.a", "v2x.b"], ["JWK", "RAW"], 7, None)
    assert parse_ts(a["valid_from"]) == datetime.datetime(2030, 1, 1,
                                                          tzinfo=datetime.timezone.utc)

    _, r = one_change(kms, "sla", "revoke", str(sla_id))
    assert (r["action"], r["subject"]) == ("sla.revoke", str(sla_id))
    assert r["before"]["revoked_at"] is None and r["after"]["revoked_at"] is not None
    assert r["before"]["services"] == r["after"]["services"] == ["v2x.a", "v2x.b"]

    # a revocation of a revoked SLA succeeds and changes nothing: its row
    # says who tried, with before equal to after
    _, r = one_change(kms, "sla", "revoke", str(sla_id))
    assert r["before"] == r["after"]


FAILURES = {
    "provider add of an existing provider": (("provider", "add", "{vsp}"), 3, "already exists"),
    "provider disable of an unknown provider": (("provider", "disable", "nobody-x"), 4,
                                                "no such provider"),
    "provider enable of an unknown provider": (("provider", "enable", "nobody-x"), 4,
                                               "no such provider"),
    "sla add for an unknown provider": (("sla", "add", "--provider", "nobody-x", "--services",
                                         "a", "--key-formats", "JWK", "--max-val-servers", "1"),
                                        4, "no such provider"),
    "sla add with until before from": (("sla", "add", "--provider", "{vsp}", "--services", "a",
                                        "--key-formats", "JWK", "--max-val-servers", "1",
                                        "--valid-from", "2031-01-01",
                                        "--valid-until", "2030-01-01"), 2, "later than"),
    "sla add of an unknown key format": (("sla", "add", "--provider", "{vsp}", "--services",
                                          "a", "--key-formats", "PEM", "--max-val-servers",
                                          "1"), 2, "unknown key format"),
    "sla revoke of an unknown SLA": (("sla", "revoke", "999999999"), 4, "no such SLA"),
    "sla revoke of a malformed id": (("sla", "revoke", "x1"), 2, "SLA_ID"),
    "an empty actor": (("provider", "add", "{new}", "--actor", ""), 2, "--actor"),
    "an actor with a newline": (("provider", "add", "{new}", "--actor", "eve\nmallory"), 2,
                                "--actor"),
    "an actor on a command that changes nothing": (("provider", "list", "--actor", "x"), 2,
                                                   "does not take"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_a_failed_change_leaves_no_row(kms, case):
    vsp = kms.provider()
    new = kms.unique("vsp")
    args, rc, err = FAILURES[case]
    failed_change(kms, [a.format(vsp=vsp, new=new) for a in args], rc, err)
    assert kms.sql(f"SELECT count(*) FROM providers WHERE vsp_id = '{new}'") == [["0"]]


def test_a_row_that_cannot_be_written_undoes_its_change(kms):
    """The change and its row are one transaction: a row the database refuses
    (here, by a trigger the test adds) leaves the change undone."""
    kms.stack.psql("""
        CREATE FUNCTION refuse_actor() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.actor = 'refused-actor' THEN
                RAISE EXCEPTION 'this actor is refused';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_actor BEFORE INSERT ON admin_audit
            FOR EACH ROW EXECUTE FUNCTION refuse_actor();""", dbname=kms.dbname)
    try:
        vsp = kms.provider()
        sla = kms.sla(vsp, ["v2x.a"])
        n = len(rows(kms))
        new = kms.unique("vsp")
        for args in (("provider", "add", new), ("provider", "disable", vsp),
                     ("sla", "add", "--provider", vsp, "--services", "b", "--key-formats",
                      "JWK", "--max-val-servers", "1"), ("sla", "revoke", str(sla))):
            code, out, err = kms.kmsctl_raw(*args, "--actor", "refused-actor")
            assert code == 1 and "this actor is refused" in err and err.count("\n") == 1, err
            assert out == ""
        assert since(kms, n) == []
        assert kms.sql(f"SELECT count(*) FROM providers WHERE vsp_id = '{new}'") == [["0"]]
        assert kms.sql(f"SELECT enabled FROM providers WHERE vsp_id = '{vsp}'") == [["t"]]
        assert kms.sql(f"SELECT count(*) FROM slas WHERE vsp_id = '{vsp}'") == [["1"]]
        assert kms.sql(f"SELECT revoked_at IS NULL FROM slas WHERE sla_id = {sla}") == [["t"]]
    finally:
        kms.stack.psql("DROP TRIGGER refuse_actor ON admin_audit; DROP FUNCTION refuse_actor()",
                       dbname=kms.dbname)


def test_rows_are_only_ever_added(kms):
    kms.provider()
    assert rows(kms)
    for sql in ("UPDATE admin_audit SET actor = 'someone else'",
                "DELETE FROM admin_audit",
                "TRUNCATE admin_audit"):
        cp = subprocess.run([kms.stack.psql_bin, "-X", "-q", "-v", "ON_ERROR_STOP=1",
                             "-d", kms.dsn, "-c", sql], capture_output=True, text=True,
                            timeout=60)
        assert cp.returncode != 0 and "append-only" in cp.stderr, (sql, cp.stderr)
    assert all(r["actor"] != "someone else" for r in rows(kms))


def test_admin_audit_table(kms):
    vsp = kms.provider()
    kms.kmsctl("provider", "disable", vsp, "--actor", "carol")
    cp = subprocess.run([kms.stack.binary("kmsctl"), "--dsn", kms.dsn, "admin-audit"],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.splitlines()
    assert lines[0].split() == ["ID", "CHANGED_AT", "ACTOR", "DB_ROLE", "ACTION", "SUBJECT",
                                "BEFORE", "AFTER"]
    mine = [ln for ln in lines if "carol" in ln]
    assert len(mine) == 1
    # the table shows what changed; --json has the whole rows
    assert '{"enabled": true, "disabled_at": null}' in mine[0]
    assert "provider.disable" in mine[0] and vsp in mine[0]


# ---------------------------------------------------------------- the KM-S's role


@pytest.fixture
def kms_role(kms_factory):
    """A KM-S world, and a login role of the group role kms_service that the
    migration made, with the DSN the KM-S runs with."""
    k = kms_factory(start=False)
    role = "kmsapp_" + k.prefix
    k.stack.psql(f'CREATE ROLE "{role}" LOGIN IN ROLE kms_service')
    dsn = k.dsn.replace("postgres@", f"{role}@", 1)
    assert dsn != k.dsn
    yield k, role, dsn
    k.stop()
    k.stack.psql(f'DROP ROLE IF EXISTS "{role}"')


def as_role(kms, dsn, sql):
    return subprocess.run([kms.stack.psql_bin, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn,
                           "-c", sql], capture_output=True, text=True, timeout=60)


def test_the_kms_role_has_no_right_on_the_admin_audit(kms_role):
    k, role, dsn = kms_role
    for sql in ("SELECT * FROM admin_audit",
                "INSERT INTO admin_audit (actor, action, subject, after) "
                "VALUES ('kms', 'provider.add', 'x', '{}')",
                "UPDATE providers SET enabled = false",
                "INSERT INTO providers (vsp_id) VALUES ('sneaky')",
                "UPDATE slas SET max_val_servers = 1000000"):
        cp = as_role(k, dsn, sql)
        assert cp.returncode != 0 and "permission denied" in cp.stderr, (sql, cp.stderr)

    # and yet it does all of its work with that role
    k.extra_args += ["--dsn", dsn]
    k.start()
    vsp = k.provider()
    k.sla(vsp, ["v2x.a"], key_formats=("JWK",), max_val_servers=1)
    val, val2, val3 = k.unique("val"), k.unique("val"), k.unique("val")
    assert ask(k, val, k.token(val, vsp))["result"] == "SUCCESS"
    assert stored(k, val) == (1, 1)
    assert ask(k, val, k.token(val, vsp))["result"] == "SUCCESS"  # provisioned again
    resp = ask(k, val2, k.token(val2, vsp))
    assert (resp["result"], resp["cause"]) == ("FAILURE", "NOT_ALLOWED_BY_SLA")
    resp = ask(k, val3, k.token(val3, vsp, key=new_ec_key()))
    assert (resp["result"], resp["cause"]) == ("FAILURE", "UNAUTHORIZED")
    # an undecodable value goes to the DLQ with an audit row
    k.send(b"not an Avro value", key=val3)
    k.dlq(1, key=val3)
    sessions = k.sql(f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}'")
    assert sessions == [["1"]]
    assert k.sql("SELECT count(*) FROM audit")[0][0] == "5"
