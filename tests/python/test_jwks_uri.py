"""Issuers' keys from a JWKS URI, against the real broker and database and a
small HTTP(S) server in the test (certificates by scripts/certs.sh): the
keys fetched at start, the periodic refresh (a key added, a key removed),
the fetch at once for an unknown kid and its rate limit, a reload that
fetches again and adds an issuer, every bad input answered by keeping the
last good keys with a clear log line, and readiness when the keys go
stale.
"""

import json
import os
import subprocess
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import kmswire
from conftest import assert_detail_sentence, new_ec_key, wait_until
from jwkslib import (JwksServer, ask, events, hup, jwk, jwks, stored, wait_event)

pytestmark = pytest.mark.filterwarnings("ignore:The RSA key is 1024 bits")

ISS_U = "https://as.uri.test"
ISS_R = "https://as.rate.test"
ISS_N = "https://as.new.test"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    cp = subprocess.run([os.path.join(kmswire.REPO, "scripts", "certs.sh"), str(d)],
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    return {name: str(d / name) for name in ("ca.pem", "server-chain.pem", "server.key",
                                             "wrong-ca.pem", "wrong-ca.key")}


def https_server(certs):
    return JwksServer(tls=(certs["server-chain.pem"], certs["server.key"]),
                      bad_tls=(certs["wrong-ca.pem"], certs["wrong-ca.key"]))


def issuers_file(kms, entries):
    with open(kms.issuers_file, "w") as f:
        json.dump(entries, f)


def uri_entry(iss, vsp, server, ca=None, **settings):
    e = {"iss": iss, "vsp_ids": [vsp], "jwks_uri": server.url}
    if ca is not None:
        e["jwks_ca_file"] = ca
    e.update(settings)
    return e


def provider_with_sla(kms):
    vsp = kms.provider()
    kms.sla(vsp, ["v2x.a"], key_formats=("JWK", "RAW"), max_val_servers=1000)
    return vsp


def granted(kms, vsp, key, kid, iss):
    val = kms.unique("val")
    resp = ask(kms, val, kms.token(val, vsp, key=key, kid=kid, iss=iss))
    assert (resp["result"], resp["cause"]) == ("SUCCESS", None), resp
    assert stored(kms, val) == (1, 1)


def denied(kms, vsp, key, kid, iss, detail_has="kid names no key", alg="ES256"):
    val = kms.unique("val")
    token = kms.token(val, vsp, key=key, kid=kid, iss=iss, alg=alg)
    resp = ask(kms, val, token)
    assert (resp["result"], resp["cause"]) == ("FAILURE", "UNAUTHORIZED"), resp
    assert detail_has in resp["detail"], resp["detail"]
    assert_detail_sentence(resp["detail"], token)
    assert stored(kms, val) == (0, 0)


# ---------------------------------------------------------------- refresh


@pytest.fixture(scope="module")
def refreshed(kms_module_factory, certs):
    """A KM-S whose issuer's keys come from an HTTPS JWKS URI refreshed every
    second (last good keys kept for an hour)."""
    server = https_server(certs)
    k1 = new_ec_key()
    server.body = jwks(jwk(k1, "k1"))
    k = kms_module_factory(start=False)
    vsp = provider_with_sla(k)
    issuers_file(k, [uri_entry(ISS_U, vsp, server, certs["ca.pem"], jwks_refresh_s=1,
                               jwks_max_stale_s=3600, jwks_timeout_ms=1000,
                               jwks_refetch_min_s=1)])
    k.start()
    yield k, server, vsp, k1
    server.close()


def test_keys_fetched_at_start(refreshed):
    k, server, vsp, k1 = refreshed
    first = events(k, "jwks_fetched")[0]
    assert (first["iss"], first["keys"], first["source"]) == (ISS_U, 1, server.url)
    granted(k, vsp, k1, "k1", ISS_U)


def test_periodic_refresh_adds_and_removes_keys(refreshed):
    k, server, vsp, k1 = refreshed
    k2 = new_ec_key()
    val = k.unique("val")
    old_token = k.token(val, vsp, key=k1, kid="k1", iss=ISS_U)
    resp = ask(k, val, old_token)
    assert resp["result"] == "SUCCESS"

    before = len(events(k, "jwks_fetched"))
    server.body = jwks(jwk(k1, "k1"), jwk(k2, "k2"))
    ev = wait_event(k, "jwks_fetched", after=before, match=lambda e: e["keys"] == 2)
    assert ev["changed"] is True
    granted(k, vsp, k2, "k2", ISS_U)

    before = len(events(k, "jwks_fetched"))
    server.body = jwks(jwk(k2, "k2"))
    wait_event(k, "jwks_fetched", after=before, match=lambda e: e["keys"] == 1)
    # the same token, verified and cached before, is refused now
    resp = ask(k, val, old_token)
    assert (resp["result"], resp["cause"]) == ("FAILURE", "UNAUTHORIZED")
    denied(k, vsp, k1, "k1", ISS_U)
    granted(k, vsp, k2, "k2", ISS_U)
    # back to k1 for the tests that follow
    before = len(events(k, "jwks_fetched"))
    server.body = jwks(jwk(k1, "k1"))
    wait_event(k, "jwks_fetched", after=before, match=lambda e: e["keys"] == 1)
    granted(k, vsp, k1, "k1", ISS_U)


def _bad_inputs():
    weak = rsa.generate_private_key(65537, 1024)
    p521 = new_ec_key(ec.SECP521R1())
    # a key of the bad document, how a token signs with it, what its refusal says
    k9 = {"RSA under 2048 bits": (weak, "RS256", "kid names no key"),
          "EC curve P-521": (p521, "ES512", "algorithm is not supported")}
    docs = {
        "not JSON": (b"{\"keys\": [", "not valid JSON"),
        "missing member": (jwks({"kty": "RSA", "kid": "k9", "e": "AQAB"}),
                           "member n is missing"),
        "malformed member": (jwks({"kty": "OKP", "crv": "Ed25519", "kid": "k9", "x": "A*B"}),
                             "member x is not base64url"),
        "RSA under 2048 bits": (jwks(jwk(weak, "k9")), "RSA key of 1024 bits is under 2048"),
        "EC curve P-521": (jwks(jwk(p521, "k9")), "EC curve P-521 is not supported"),
        "oct key": (jwks({"kty": "oct", "kid": "k9", "k": "c2VjcmV0LXNlY3JldA"}),
                    "symmetric (oct) key is never trusted"),
        "10 MB document": (b"{\"keys\":[" + b" " * (10 * 1024 * 1024) + b"]}",
                           "the document is larger than 1048576 bytes"),
    }
    return docs, k9


BAD_DOCS, K9 = _bad_inputs()
BAD_SERVER = {
    "server answers 500": ("the server answered HTTP 500",
                           lambda s: setattr(s, "status", 500)),
    "server times out": ("timed out after 1000 ms", lambda s: setattr(s, "delay", 3.0)),
    "certificate does not verify": ("certificate", lambda s: setattr(s, "bad_cert", True)),
}


def _keeps_old_keys(k, server, vsp, k1, said, mark, key9=None):
    """After the bad input (log lines from mark on): a jwks_refused line
    saying why, the last good key still accepted, a key of the bad document
    not."""
    before_ok = len(events(k, "jwks_fetched"))
    ev = wait_event(k, "jwks_refused", after=mark,
                    match=lambda e: said in e["error"])
    assert ev["iss"] == ISS_U and ev["source"] == server.url
    assert ev["kept_last_good"] is True and ev["kept_keys"] == 1
    granted(k, vsp, k1, "k1", ISS_U)
    if key9 is not None:
        key, alg, detail = key9
        denied(k, vsp, key, "k9", ISS_U, detail, alg=alg)
    assert len(events(k, "jwks_fetched")) == before_ok  # nothing was taken
    status, body = k.readyz()
    assert status == 200 and body["keys_fresh"] is True  # an hour of staleness is allowed


@pytest.mark.parametrize("case", list(BAD_DOCS) + list(BAD_SERVER))
def test_bad_jwks_input_keeps_the_last_good_keys(refreshed, case):
    k, server, vsp, k1 = refreshed
    mark = len(events(k, "jwks_refused"))
    try:
        if case in BAD_DOCS:
            server.body, said = BAD_DOCS[case]
            server.length = case != "10 MB document"  # that one ends with the connection
            _keeps_old_keys(k, server, vsp, k1, said, mark, K9.get(case))
            if case in K9 or case == "oct key":
                skip = [e for e in events(k, "jwk_skipped") if e["kid"] == "k9"]
                assert skip and skip[-1]["source"] == server.url
        else:
            said, spoil = BAD_SERVER[case]
            spoil(server)
            _keeps_old_keys(k, server, vsp, k1, said, mark)
    finally:
        server.body = jwks(jwk(k1, "k1"))
        server.status, server.delay, server.length, server.bad_cert = 200, 0.0, True, False
    # and it recovers by itself
    hits = server.hits
    wait_until(lambda: server.hits >= hits + 2, 30, 0.1, "two more fetches")
    granted(k, vsp, k1, "k1", ISS_U)


# ---------------------------------------------------------------- unknown kid, reload


@pytest.fixture
def slow_refresh(kms_factory, certs):
    """Two JWKS URI issuers refreshed only hourly: U fetches for an unknown
    kid once a second at most, R once an hour."""
    su, sr = https_server(certs), https_server(certs)
    u1, r1 = new_ec_key(), new_ec_key()
    su.body, sr.body = jwks(jwk(u1, "u1")), jwks(jwk(r1, "r1"))
    k = kms_factory(start=False)
    vsp = provider_with_sla(k)
    entries = [uri_entry(ISS_U, vsp, su, certs["ca.pem"], jwks_refresh_s=3600,
                         jwks_refetch_min_s=1),
               uri_entry(ISS_R, vsp, sr, certs["ca.pem"], jwks_refresh_s=3600,
                         jwks_refetch_min_s=3600)]
    issuers_file(k, entries)
    k.start()
    yield k, vsp, (su, u1), (sr, r1), entries
    su.close()
    sr.close()


def test_unknown_kid_is_fetched_at_once(slow_refresh):
    k, vsp, (su, u1), _, _ = slow_refresh
    u2 = new_ec_key()
    granted(k, vsp, u1, "u1", ISS_U)
    su.body = jwks(jwk(u1, "u1"), jwk(u2, "u2"))
    hits = su.hits
    # the first token of the new key is accepted: its kid made the KM-S fetch
    granted(k, vsp, u2, "u2", ISS_U)
    assert su.hits == hits + 1
    fetched = events(k, "jwks_fetch_for_kid")
    assert [(e["iss"], e["kid"]) for e in fetched] == [(ISS_U, "u2")]
    # a kid nobody publishes: fetched for (past jwks_refetch_min_s), still refused
    time.sleep(1.1)
    denied(k, vsp, u2, "nobody", ISS_U)
    assert su.hits == hits + 2
    granted(k, vsp, u1, "u1", ISS_U)


def test_unknown_kid_fetches_are_rate_limited(slow_refresh):
    k, vsp, _, (sr, r1), _ = slow_refresh
    r2, r3 = new_ec_key(), new_ec_key()
    sr.body = jwks(jwk(r1, "r1"), jwk(r2, "r2"))
    granted(k, vsp, r2, "r2", ISS_R)
    hits = sr.hits
    sr.body = jwks(jwk(r1, "r1"), jwk(r2, "r2"), jwk(r3, "r3"))
    # within jwks_refetch_min_s: no fetch, the unknown kid is refused
    for _ in range(3):
        denied(k, vsp, r3, "r3", ISS_R)
    assert sr.hits == hits
    assert [e["kid"] for e in events(k, "jwks_fetch_for_kid") if e["iss"] == ISS_R] == ["r2"]
    # a reload fetches every JWKS URI again
    before = len(events(k, "jwks_fetched"))
    hup(k)
    wait_event(k, "jwks_fetched", after=before, match=lambda e: e["iss"] == ISS_R)
    granted(k, vsp, r3, "r3", ISS_R)


def test_reload_adds_a_jwks_uri_issuer(slow_refresh, certs):
    k, vsp, (su, u1), _, entries = slow_refresh
    sn = JwksServer()  # plain HTTP: allowed on the loopback
    n1 = new_ec_key()
    sn.body = jwks(jwk(n1, "n1"))
    try:
        denied(k, vsp, n1, "n1", ISS_N, "token issuer is not trusted")
        issuers_file(k, entries + [uri_entry(ISS_N, vsp, sn, jwks_refresh_s=3600)])
        assert hup(k)["issuers_applied"] is True
        granted(k, vsp, n1, "n1", ISS_N)
        granted(k, vsp, u1, "u1", ISS_U)  # the other issuers kept their keys
    finally:
        sn.close()


# ---------------------------------------------------------------- staleness


def test_readiness_says_when_keys_are_stale(kms_factory):
    server = JwksServer()
    k1 = new_ec_key()
    server.body = jwks(jwk(k1, "k1"))
    k = kms_factory(start=False)
    vsp = provider_with_sla(k)
    issuers_file(k, [uri_entry(ISS_U, vsp, server, jwks_refresh_s=1, jwks_max_stale_s=2,
                               jwks_timeout_ms=500)])
    try:
        k.start()
        server.status = 503
        status, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(k.readyz()),
                                  30, 0.2, "readiness to say the keys are stale")
        assert body["keys_fresh"] is False and body["stale_keys"] == ISS_U
        assert wait_event(k, "jwks_stale")["issuers"] == ISS_U
        # stale keys are still the last good ones
        granted(k, vsp, k1, "k1", ISS_U)
        server.status = 200
        wait_until(lambda: k.readyz()[0] == 200, 30, 0.2, "ready again")
        wait_event(k, "jwks_fresh")
        assert "stale_keys" not in k.readyz()[1]
    finally:
        server.close()


def test_jwks_uri_over_plain_http_elsewhere_refused_at_start(kms_factory):
    k = kms_factory(start=False)
    issuers_file(k, [{"iss": ISS_U, "vsp_ids": ["v"],
                      "jwks_uri": "http://as.example.com/.well-known/jwks.json"}])
    k.start(wait=False)
    k.proc.wait(60)
    assert k.proc.returncode != 0
    failed = events(k, "start_failed")
    assert len(failed) == 1
    assert "plain http is allowed only to a loopback address" in failed[0]["error"]


def test_stop_does_not_wait_out_a_hanging_jwks_server(kms_factory):
    server = JwksServer()
    k1 = new_ec_key()
    server.body = jwks(jwk(k1, "k1"))
    k = kms_factory(start=False)
    vsp = provider_with_sla(k)
    issuers_file(k, [uri_entry(ISS_U, vsp, server, jwks_refresh_s=1, jwks_timeout_ms=60000)])
    try:
        k.start()
        server.delay = 120.0
        hits = server.hits
        wait_until(lambda: server.hits > hits, 30, 0.1, "a fetch under way")
        started = time.monotonic()
        assert k.stop() == 0
        # a fetch may take 60 s; the stop gives it up within about a second
        assert time.monotonic() - started < 20
    finally:
        server.close()
