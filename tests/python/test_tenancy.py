"""Trust per tenant, against the real broker and database: issuers bound to
their VAL service providers, keys rotated with a JWKS file and SIGHUP, a
broken issuers file refused whole, a fleet running through reloads, the
database connection renewed by a reload.

Each test has a KM-S world of its own (conftest.py), whose issuers file it
rewrites; the issuers' keys are made in the test.
"""

import json
import os
import signal
import subprocess
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conftest import assert_detail_sentence, new_ec_key, wait_until
from jwkslib import ask, events, hup, jwk, jwks, private_pem, public_pem, stored, wait_event

ISS_A = "https://as.vsp-a.test"
ISS_B = "https://as.vsp-b.test"


def write(kms, name, data):
    path = os.path.join(kms.tmpdir, name)
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return path


def issuers(kms, entries):
    write(kms, "issuers.json", json.dumps(entries))


def provider_with_sla(kms, services=("v2x.a",)):
    vsp = kms.provider()
    kms.sla(vsp, list(services), key_formats=("JWK", "RAW"), max_val_servers=1000)
    return vsp


def denied(kms, requester, token, cause, detail_has):
    """The request is refused with cause, the detail says why, and nothing of
    it is stored."""
    resp = ask(kms, requester, token)
    assert (resp["result"], resp["cause"]) == ("FAILURE", cause), resp
    assert detail_has in resp["detail"], resp["detail"]
    assert_detail_sentence(resp["detail"], token)
    assert stored(kms, requester) == (0, 0)
    return resp


def granted(kms, requester, token):
    resp = ask(kms, requester, token)
    assert (resp["result"], resp["cause"]) == ("SUCCESS", None), resp
    assert stored(kms, requester) == (1, 1)
    return resp


# ---------------------------------------------------------------- bindings


@pytest.fixture
def two_tenants(kms_factory):
    """A KM-S trusting two issuers, each bound to its own provider."""
    k = kms_factory(start=False)
    key_a, key_b = new_ec_key(), new_ec_key()
    write(k, "a.pub.pem", public_pem(key_a))
    write(k, "b.pub.pem", public_pem(key_b))
    vsp_a, vsp_b = provider_with_sla(k), provider_with_sla(k)
    issuers(k, [
        {"iss": ISS_A, "vsp_ids": [vsp_a], "kid": "a1", "public_key_file": "a.pub.pem"},
        {"iss": ISS_B, "vsp_ids": [vsp_b], "kid": "b1", "public_key_file": "b.pub.pem"},
    ])
    k.start()
    return k, (key_a, vsp_a), (key_b, vsp_b)


def test_issuer_of_a_naming_provider_b_is_unauthorized(two_tenants):
    k, (key_a, vsp_a), (key_b, vsp_b) = two_tenants
    val = k.unique("val")
    token = k.token(val, vsp_b, key=key_a, kid="a1", iss=ISS_A)
    resp = denied(k, val, token, "UNAUTHORIZED", "not bound to the VAL service provider")
    # the reason is in the audit trail too, and no decision admitted anything
    rows = k.kmsctl("audit", val)
    assert [(r["cause"], r["detail"]) for r in rows] == [("UNAUTHORIZED", resp["detail"])]
    assert k.sql(f"SELECT val_server_count FROM providers WHERE vsp_id = '{vsp_b}'") == [["0"]]

    # the same token naming A succeeds; B's issuer speaks for B only, too
    val2 = k.unique("val")
    granted(k, val2, k.token(val2, vsp_a, key=key_a, kid="a1", iss=ISS_A))
    val3 = k.unique("val")
    granted(k, val3, k.token(val3, vsp_b, key=key_b, kid="b1", iss=ISS_B))
    val4 = k.unique("val")
    denied(k, val4, k.token(val4, vsp_a, key=key_b, kid="b1", iss=ISS_B), "UNAUTHORIZED",
           "not bound")


def test_several_issuers_without_binding_refused_at_start(kms_factory):
    k = kms_factory(start=False)
    write(k, "a.pub.pem", public_pem(new_ec_key()))
    write(k, "b.pub.pem", public_pem(new_ec_key()))
    issuers(k, [{"iss": ISS_A, "vsp_ids": ["vsp-a"], "public_key_file": "a.pub.pem"},
                {"iss": ISS_B, "public_key_file": "b.pub.pem"}])
    k.start(wait=False)
    k.proc.wait(60)
    assert k.proc.returncode != 0
    failed = events(k, "start_failed")
    assert len(failed) == 1
    assert f"issuer {ISS_B} has no vsp_ids" in failed[0]["error"]


def test_single_issuer_without_binding_speaks_for_all_said_once(kms_factory):
    k = kms_factory()  # the world's own issuers file: one issuer, no vsp_ids
    said = events(k, "issuer_binding_default")
    assert [(e["iss"], e["vsp_ids"]) for e in said] == [(k.issuer, "*")]
    vsp = provider_with_sla(k)
    val = k.unique("val")
    granted(k, val, k.token(val, vsp))


# ---------------------------------------------------------------- JWKS file


@pytest.fixture
def jwks_file_kms(kms_factory):
    k = kms_factory(start=False)
    k1, k2 = new_ec_key(), new_ec_key()
    write(k, "keys.jwks", jwks(jwk(k1, "k1")))
    vsp = provider_with_sla(k)
    issuers(k, [{"iss": ISS_A, "vsp_ids": [vsp], "jwks_file": "keys.jwks"}])
    k.start()
    return k, vsp, k1, k2


def test_rotation_with_a_jwks_file_and_sighup(jwks_file_kms):
    k, vsp, k1, k2 = jwks_file_kms
    val1, val2 = k.unique("val"), k.unique("val")
    t1 = k.token(val1, vsp, key=k1, kid="k1", iss=ISS_A)
    t2 = k.token(val2, vsp, key=k2, kid="k2", iss=ISS_A)
    granted(k, val1, t1)
    # the new key is refused before the file changes...
    denied(k, val2, t2, "UNAUTHORIZED", "kid names no key")
    # ...and after the file changes, until the reload
    write(k, "keys.jwks", jwks(jwk(k1, "k1"), jwk(k2, "k2")))
    val2b = k.unique("val")
    denied(k, val2b, k.token(val2b, vsp, key=k2, kid="k2", iss=ISS_A), "UNAUTHORIZED",
           "kid names no key")
    done = hup(k)
    assert done["issuers_applied"] is True
    # the very token refused before is accepted now (a new requestId)
    granted(k, val2, t2)
    # k1 is removed: its token, verified (and cached) before, is refused
    write(k, "keys.jwks", jwks(jwk(k2, "k2")))
    hup(k)
    val1b = k.unique("val")
    t1b = k.token(val1b, vsp, key=k1, kid="k1", iss=ISS_A)
    denied(k, val1b, t1b, "UNAUTHORIZED", "kid names no key")
    resp = ask(k, val1, t1)  # the token that succeeded before the reload
    assert (resp["result"], resp["cause"]) == ("FAILURE", "UNAUTHORIZED")
    # the group was never left
    assert events(k, "partitions_revoked") == []


def bad_documents():
    """Each bad JWKS input: (document, what the log line says)."""
    weak = rsa.generate_private_key(65537, 1024)
    p521 = new_ec_key(ec.SECP521R1())
    return {
        "not JSON": (b"{\"keys\": [", "not valid JSON"),
        "missing member": (json.dumps({"keys": [{"kty": "RSA", "kid": "k9", "e": "AQAB"}]})
                           .encode(), "member n is missing"),
        "malformed member": (json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k9",
                                                   "x": "AQAB", "y": "not base64url!"}]})
                             .encode(), "not base64url"),
        "RSA under 2048 bits": (jwks(jwk(weak, "k9")), "RSA key of 1024 bits is under 2048"),
        "EC curve P-521": (jwks(jwk(p521, "k9")), "EC curve P-521 is not supported"),
        "oct key": (jwks({"kty": "oct", "kid": "k9", "k": "c2VjcmV0LXNlY3JldA"}),
                    "symmetric (oct) key is never trusted"),
        "10 MB document": (b"{\"keys\":[" + b" " * (10 * 1024 * 1024) + b"]}",
                           "larger than 1048576 bytes"),
    }


BAD_DOCUMENTS = bad_documents()
SKIPPED = ("RSA under 2048 bits", "EC curve P-521", "oct key")


@pytest.mark.parametrize("case", list(BAD_DOCUMENTS))
def test_bad_jwks_file_keeps_the_old_keys(jwks_file_kms, case):
    k, vsp, k1, _ = jwks_file_kms
    doc, said = BAD_DOCUMENTS[case]
    write(k, "keys.jwks", doc)
    refused_before = len(events(k, "reload_refused"))
    done = hup(k)
    assert done["issuers_applied"] is False
    ev = wait_event(k, "reload_refused", after=refused_before)
    assert ev["what"] == "issuers_file" and said in ev["error"], ev
    assert ev["effect"] == "the issuers in force stay"
    if case in SKIPPED:
        skip = [e for e in events(k, "jwk_skipped") if e["kid"] == "k9"]
        assert skip and said in skip[-1]["reason"]
    # readiness shows it
    status, body = k.readyz()
    assert status == 503 and body["issuers_reloaded"] is False
    assert said in body["reload_error"]
    # the old key still works, nothing else does
    val = k.unique("val")
    granted(k, val, k.token(val, vsp, key=k1, kid="k1", iss=ISS_A))
    # a good file again: ready again
    write(k, "keys.jwks", jwks(jwk(k1, "k1")))
    assert hup(k)["issuers_applied"] is True
    wait_until(lambda: k.readyz()[0] == 200, 30, 0.1, "ready after a good reload")


def test_unsupported_key_beside_good_ones_is_skipped(jwks_file_kms):
    k, vsp, k1, k2 = jwks_file_kms
    write(k, "keys.jwks", jwks(jwk(k1, "k1"), {"kty": "oct", "kid": "h1", "k": "c2VjcmV0"},
                               jwk(k2, "k2", use="sig", alg="ES256")))
    before = len(events(k, "jwk_skipped"))
    assert hup(k)["issuers_applied"] is True
    skip = events(k, "jwk_skipped")[before:]
    assert [(e["kid"], e["index"]) for e in skip] == [("h1", 1)]
    for key, kid in ((k1, "k1"), (k2, "k2")):
        val = k.unique("val")
        granted(k, val, k.token(val, vsp, key=key, kid=kid, iss=ISS_A))
    # a token that names the oct key with HMAC is refused as ever
    val = k.unique("val")
    denied(k, val, k.token(val, vsp, alg="HS256", key=b"s" * 32, kid="h1", iss=ISS_A),
           "UNAUTHORIZED", "HMAC algorithms are not allowed")


def test_broken_issuers_file_refused_whole(two_tenants):
    k, (key_a, vsp_a), (key_b, vsp_b) = two_tenants
    key_c = new_ec_key()
    write(k, "c.pub.pem", public_pem(key_c))
    # a good new entry beside a broken one: neither is taken
    issuers(k, [
        {"iss": ISS_A, "vsp_ids": [vsp_a], "kid": "a1", "public_key_file": "a.pub.pem"},
        {"iss": ISS_A, "vsp_ids": [vsp_a], "kid": "a2", "public_key_file": "c.pub.pem"},
        {"iss": ISS_B, "vsp_ids": [vsp_b], "kid": "b1", "public_key_file": "missing.pem"},
    ])
    before = len(events(k, "reload_refused"))
    assert hup(k)["issuers_applied"] is False
    ev = wait_event(k, "reload_refused", after=before)
    assert "entry 3" in ev["error"] and "missing.pem" in ev["error"]
    status, body = k.readyz()
    assert status == 503 and "missing.pem" in body["reload_error"]
    val = k.unique("val")
    denied(k, val, k.token(val, vsp_a, key=key_c, kid="a2", iss=ISS_A), "UNAUTHORIZED",
           "kid names no key")
    val = k.unique("val")
    granted(k, val, k.token(val, vsp_b, key=key_b, kid="b1", iss=ISS_B))
    # not JSON at all
    write(k, "issuers.json", "[{")
    assert hup(k)["issuers_applied"] is False
    val = k.unique("val")
    granted(k, val, k.token(val, vsp_a, key=key_a, kid="a1", iss=ISS_A))
    # fixed: the new key is in, readiness is back
    issuers(k, [
        {"iss": ISS_A, "vsp_ids": [vsp_a], "kid": "a1", "public_key_file": "a.pub.pem"},
        {"iss": ISS_A, "vsp_ids": [vsp_a], "kid": "a2", "public_key_file": "c.pub.pem"},
        {"iss": ISS_B, "vsp_ids": [vsp_b], "kid": "b1", "public_key_file": "b.pub.pem"},
    ])
    assert hup(k)["issuers_applied"] is True
    val = k.unique("val")
    granted(k, val, k.token(val, vsp_a, key=key_c, kid="a2", iss=ISS_A))
    wait_until(lambda: k.readyz()[0] == 200, 30, 0.1, "ready after a good reload")


# ---------------------------------------------------------------- a fleet through reloads


def test_fleet_through_reloads_loses_nothing_and_decides_nothing_twice(kms_factory):
    k = kms_factory(start=False)
    fleet_key, other = new_ec_key(), new_ec_key()
    key_file = write(k, "fleet.pem", private_pem(fleet_key))
    vsp = provider_with_sla(k, ("v2x.a", "v2x.b"))
    files = [jwks(jwk(fleet_key, "f1")), jwks(jwk(fleet_key, "f1"), jwk(other, "o1"))]
    write(k, "keys.jwks", files[0])
    issuers(k, [{"iss": ISS_A, "vsp_ids": [vsp], "jwks_file": "keys.jwks"}])
    k.start()
    assigned = len(events(k, "partitions_assigned"))

    servers, per_server = 40, 25
    prefix = k.unique("fl") + "-"
    fleet = subprocess.Popen(
        [k.stack.binary("valctl"), "fleet", "-b", k.stack.bootstrap,
         "--requests-topic", k.requests_topic, "--reply-topic", k.results_topic,
         "--servers", str(servers), "--requests", str(per_server), "--key", key_file,
         "--iss", ISS_A, "--kid", "f1", "--vsp-id", vsp, "--services", "v2x.a,v2x.b",
         "--formats", "JWK,RAW", "--prefix", prefix, "--rate", "150", "--json",
         "--timeout", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reloads = 0
    try:
        # reload while the fleet runs: a key comes and goes each time
        wait_until(lambda: k.sql("SELECT count(*) FROM audit")[0][0] != "0", 60, 0.1,
                   "the first decisions")
        while fleet.poll() is None and reloads < 12:
            write(k, "keys.jwks", files[reloads % 2 == 0])
            assert hup(k)["issuers_applied"] is True
            reloads += 1
            time.sleep(0.3)
        out, err = fleet.communicate(timeout=240)
    finally:
        if fleet.poll() is None:
            fleet.kill()
            fleet.wait()
    assert reloads >= 3, "the fleet ended before three reloads"
    assert fleet.returncode == 0, err
    s = json.loads(out)
    total = servers * per_server
    assert (s["sent"], s["results"], s["missing"], s["duplicates"], s["out_of_order"]) == \
        (total, total, 0, 0, 0)
    assert s["by_result"] == {"SUCCESS": total, "FAILURE": 0}
    # one decision and one audit row per request, each decided (none replayed)
    rows = k.sql("SELECT outcome, count(*), count(DISTINCT request_id) FROM audit "
                 f"WHERE requester_identity LIKE '{prefix}%' GROUP BY outcome")
    assert rows == [["DECIDED", str(total), str(total)]]
    assert k.sql("SELECT count(*) FROM decisions "
                 f"WHERE requester_identity LIKE '{prefix}%'") == [[str(total)]]
    # the instance never left its group
    assert events(k, "partitions_revoked") == []
    assert len(events(k, "partitions_assigned")) == assigned
    assert len(events(k, "reload_done")) == reloads


# ---------------------------------------------------------------- the database connection


def test_reload_opens_a_new_database_connection(kms):
    def backends():
        return {r[0] for r in kms.sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'")}
    vsp = provider_with_sla(kms)
    val = kms.unique("val")
    granted(kms, val, kms.token(val, vsp))
    before = backends()
    assert len(before) == 1
    hup(kms)
    after = wait_until(lambda: backends() if backends() - before else None, 30, 0.2,
                       "a new connection")
    assert len(after) == 1 and not after & before
    val = kms.unique("val")
    granted(kms, val, kms.token(val, vsp))


def test_repeated_sighups_coalesce(kms_factory):
    """SIGHUPs in a row ask for one reload at the next batch boundary; the
    process neither dies (SIGHUP's default action) nor leaves its group."""
    k = kms_factory()
    for _ in range(3):
        os.kill(k.pid, signal.SIGHUP)
    wait_until(lambda: len(events(k, "reload_done")) >= 1, 30, 0.1, "a reload")
    assert k.running
    assert events(k, "partitions_revoked") == []
    vsp = provider_with_sla(k)
    val = k.unique("val")
    granted(k, val, k.token(val, vsp))
