"""Token-level defences of the KM-S, end to end: each hostile access token
rides in an otherwise valid request through the real broker to the real
KM-S, whose Result must be FAILURE UNAUTHORIZED (NOT_ALLOWED_BY_SLA for a
token that names another provider), with nothing stored but the audit
record and the decision. The unit tests of the same cases (test_jwt.c) check
the verifier alone; these check that the service wires it in.

Tokens are built here, not with the project's signer: ``hostile.es256_token``
signs any header and payload bytes with the trusted issuer's key, so that a
token is refused for the one thing that is wrong with it and not for a bad
signature. Each test has a control: the same construction with nothing wrong
succeeds.
"""

import json
import os
import time

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import hostile
from conftest import new_ec_key

UNAUTHORIZED = ("FAILURE", "UNAUTHORIZED")
SLA = ("FAILURE", "NOT_ALLOWED_BY_SLA")


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def world(kms):
    vsp = hostile.provisioned(kms, ["svc-a", "svc-b"], ("JWK", "RAW"), max_val_servers=1000)
    return kms, vsp


def claims(kms, ident, vsp, now=None, **over):
    now = int(time.time()) if now is None else now
    c = {"iss": kms.issuer, "client_id": ident, "sub": ident, "vsp_id": vsp,
         "scope": "ss-kpp", "SKeyProv": True, "iat": now, "nbf": now, "exp": now + 300}
    for k, v in over.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def header(**over):
    h = {"alg": "ES256", "typ": "JWT", "kid": "k1"}
    h.update(over)
    return {k: v for k, v in h.items() if v is not None}


def signed(kms, ident, vsp, hdr=None, **over):
    """A correct token, built here: the control of every test."""
    return hostile.es256_token(kms.issuer_key, hdr or header(), claims(kms, ident, vsp, **over))


def send_tokens(kms, vsp, makers, services=(("svc-a", "JWK"),)):
    """makers: {label: fn(ident) -> token}. One request per label, each of a
    VAL server of its own, sent together. Returns {label: (req, resp)}."""
    reqs = {}
    for label, make in makers.items():
        ident = kms.unique("tok")
        token = make(ident)
        reqs[label] = kms.request(ident, list(services), vsp, token=token)
    for req in reqs.values():
        kms.send(req)
    recs = kms.records([r["requestId"] for r in reqs.values()], timeout=60)
    out = {}
    for label, req in reqs.items():
        mine = [r for r in recs if r.request_id == req["requestId"]]
        assert len(mine) == 1, f"{label}: {len(mine)} Results"
        out[label] = (req, mine[0].response)
    return out


def assert_refused(kms, label, req, resp, want=UNAUTHORIZED, stored_before=None):
    """FAILURE with the cause; detail one sentence quoting no part of the
    token; nothing stored but the audit row and the decision."""
    token = req["credentials"]["accessToken"]
    ident = req["requesterIdentity"]
    assert (resp["result"], resp["cause"]) == want, f"{label}: {resp}"
    detail = resp["detail"]
    assert isinstance(detail, str) and 3 <= len(detail) <= 300 and "\n" not in detail, \
        f"{label}: detail {detail!r}"
    for part in [token] + [p for p in token.split(".") if len(p) >= 8]:
        assert not part or part not in detail, f"{label}: the detail quotes the token"
    if stored_before is None:
        hostile.assert_nothing_stored(kms, ident)
    else:
        assert hostile.valserver(kms, ident) == stored_before, f"{label}: stored data changed"
    rows = [a for a in hostile.audit(kms, ident) if a["request_id"] == req["requestId"]]
    assert len(rows) == 1, f"{label}: audit rows {rows}"
    assert (rows[0]["outcome"], rows[0]["result"], rows[0]["cause"]) == ("DECIDED",) + want
    d = hostile.decision(kms, req["requestId"])
    assert d is not None and (d["result"], d["cause"]) == want, f"{label}: decision {d}"


def check(kms, vsp, bad, control=None, want=UNAUTHORIZED, services=(("svc-a", "JWK"),)):
    """Send the bad tokens (and the control, which must succeed); check
    each refusal. Returns {label: detail}."""
    makers = dict(bad)
    if control is not None:
        makers["control"] = control
    got = send_tokens(kms, vsp, makers, services)
    if control is not None:
        req, resp = got.pop("control")
        assert (resp["result"], resp["cause"]) == ("SUCCESS", None), f"control: {resp}"
        assert hostile.valserver(kms, req["requesterIdentity"]) is not None
    for label, (req, resp) in got.items():
        assert_refused(kms, label, req, resp, want)
    return {label: resp["detail"] for label, (req, resp) in got.items()}


# ---------------------------------------------------------------- algorithms


def test_alg_none(world):
    kms, vsp = world

    def none(alg, with_sig):
        def make(ident):
            t = hostile.es256_token(kms.issuer_key, header(alg=alg), claims(kms, ident, vsp))
            return t if with_sig else t.rsplit(".", 1)[0] + "."
        return make

    bad = {f"alg {a}{' with a signature' if s else ''}": none(a, s)
           for a in ("none", "None", "NONE", "nOnE") for s in (False, True)}
    bad["alg none from PyJWT"] = lambda ident: kms.token(ident, vsp, alg="none")
    bad["no alg at all"] = lambda ident: hostile.es256_token(
        kms.issuer_key, header(alg=None), claims(kms, ident, vsp))
    check(kms, vsp, bad, control=lambda ident: signed(kms, ident, vsp))


def _public_key_forms(kms):
    pub = kms.issuer_key.public_key()
    with open(kms.issuers_file) as f:
        pem_file = json.load(f)[0]["public_key_file"]
    with open(os.path.join(os.path.dirname(kms.issuers_file), pem_file), "rb") as f:
        pem = f.read()
    return {
        "PEM as in the issuers file": pem,
        "PEM without the final newline": pem.rstrip(b"\n"),
        "DER SubjectPublicKeyInfo": pub.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "X9.62 uncompressed point": pub.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint),
    }


def test_hs256_keyed_with_the_issuers_public_key(world):
    """Algorithm confusion: an HMAC token whose secret is the trusted
    issuer's public key, which a verifier that takes the algorithm from the
    token would accept."""
    kms, vsp = world
    bad = {}
    for form, secret in _public_key_forms(kms).items():
        bad[f"HS256, {form}"] = (lambda ident, s=secret: hostile.hs256_token(
            s, header(alg="HS256"), claims(kms, ident, vsp)))
    # the same, with the header claiming ES256 (the signature is then 32
    # bytes of HMAC where 64 of ECDSA belong)
    pem = _public_key_forms(kms)["PEM as in the issuers file"]
    bad["ES256 header, HMAC signature"] = lambda ident: hostile.hs256_token(
        pem, header(), claims(kms, ident, vsp))
    details = check(kms, vsp, bad, control=lambda ident: signed(kms, ident, vsp))
    for label, d in details.items():
        if label.startswith("HS"):
            assert "alg" in d.lower() or "hs256" in d.lower(), f"{label}: {d}"


def test_unknown_kid(world):
    kms, vsp = world
    bad = {}
    for kid in ("k2", "K1", "k1 ", "", "../k1", "k1\u0000"):
        bad[f"kid {kid!r}"] = lambda ident, k=kid: signed(kms, ident, vsp, hdr=header(kid=k))
    bad["kid a number"] = lambda ident: signed(kms, ident, vsp, hdr=header(kid=1))
    bad["kid null"] = lambda ident: hostile.es256_token(
        kms.issuer_key, b'{"alg":"ES256","typ":"JWT","kid":null}', claims(kms, ident, vsp))
    details = check(kms, vsp, bad, control=lambda ident: signed(kms, ident, vsp))
    assert "kid" in details["kid 'k2'"].lower() or "key" in details["kid 'k2'"].lower()


def test_untrusted_key_claiming_the_trusted_issuer(world):
    kms, vsp = world
    rogue = new_ec_key()
    rogue_pub = rogue.public_key().public_numbers()

    def b64n(n):
        return hostile.b64u(n.to_bytes(32, "big"))

    jwk = {"kty": "EC", "crv": "P-256", "x": b64n(rogue_pub.x), "y": b64n(rogue_pub.y)}
    bad = {
        "rogue key, trusted iss and kid": lambda ident: hostile.es256_token(
            rogue, header(), claims(kms, ident, vsp)),
        "rogue key, no kid": lambda ident: hostile.es256_token(
            rogue, header(kid=None), claims(kms, ident, vsp)),
        # the key shipped in the token itself (jwk), or by reference (jku,
        # x5u): a verifier must only use its own configured keys
        "rogue key in the jwk header": lambda ident: hostile.es256_token(
            rogue, header(jwk=jwk), claims(kms, ident, vsp)),
        "rogue key behind jku": lambda ident: hostile.es256_token(
            rogue, header(jku="https://attacker.test/jwks.json"), claims(kms, ident, vsp)),
        "rogue key behind x5u": lambda ident: hostile.es256_token(
            rogue, header(x5u="https://attacker.test/cert.pem"), claims(kms, ident, vsp)),
        "rogue P-384 key, ES384": lambda ident: kms.token(ident, vsp, alg="ES384",
                                                          key=new_ec_key(ec.SECP384R1())),
        # a valid signature of the trusted key on other claims, spliced
        "trusted signature spliced onto other claims": lambda ident: _spliced(kms, ident, vsp),
    }
    details = check(kms, vsp, bad, control=lambda ident: signed(kms, ident, vsp))
    assert "signature" in details["rogue key, trusted iss and kid"].lower()


def _spliced(kms, ident, vsp):
    good = signed(kms, ident + "-x", vsp)
    mine = signed(kms, ident, vsp)
    h, p, _ = mine.split(".")
    return f"{h}.{p}.{good.split('.')[2]}"


# ---------------------------------------------------------------- form


def _variants(part_b64):
    """Spellings of a base64url string that a lenient decoder reads as the
    same bytes, and a strict one refuses; plus two that are simply broken."""
    out = {}
    if "-" in part_b64 or "_" in part_b64:
        out["standard alphabet (+ /)"] = part_b64.replace("-", "+").replace("_", "/")
    pad = (-len(part_b64)) % 4
    if pad:
        out["with = padding"] = part_b64 + "=" * pad
    out["line break inside"] = part_b64[:10] + "\n" + part_b64[10:]
    out["space inside"] = part_b64[:10] + " " + part_b64[10:]
    # unused low bits of the last character set (a different character that
    # lenient decoders map to the same bytes)
    if len(part_b64) % 4:
        alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        unused = 4 if len(part_b64) % 4 == 2 else 2
        last = alpha.index(part_b64[-1])
        out["nonzero unused bits"] = part_b64[:-1] + alpha[last | ((1 << unused) - 1)]
    out["character outside the alphabet"] = part_b64[:5] + "*" + part_b64[6:]
    # a length no base64 text can have: 4n+1
    cut = {0: None, 2: 1, 3: 2}[len(part_b64) % 4]
    out["length 4n+1"] = part_b64 + "A" if cut is None else part_b64[:-cut]
    return out


def _shaped_parts(kms, ident, vsp):
    """Header and payload JSON texts whose base64url holds '-' or '_' and
    has a length that is not a multiple of 4 (so that every variant
    applies), found by varying insignificant JSON whitespace and a filler
    claim."""
    def good(s):
        b = hostile.b64u(s)
        return ("-" in b or "_" in b) and len(b) % 4 != 0
    hdr = None
    for note in ("", "?>~", "~~?", ">?~>"):
        for spaces in range(0, 12):
            for kid_sp in range(0, 4):
                text = ('{"alg":' + " " * spaces + '"ES256","typ":"JWT",' + " " * kid_sp
                        + '"kid":"k1"' + (f',"x-note":"{note}"' if note else "") + "}").encode()
                if good(text):
                    hdr = text
                    break
            if hdr:
                break
        if hdr:
            break
    body = None
    base = claims(kms, ident, vsp)
    for n in range(0, 200):
        c = dict(base, note="~" * n + "?>")
        text = json.dumps(c, separators=(",", ":")).encode()
        if good(text):
            body = text
            break
    assert hdr and body, "no shape found"
    return hdr, body


@pytest.mark.parametrize("part", ["header", "payload", "signature"])
def test_malformed_base64url(world, part):
    kms, vsp = world
    idx = ("header", "payload", "signature").index(part)

    def shaped_token(ident):
        hdr, body = _shaped_parts(kms, ident, vsp)
        # an ECDSA signature is random: sign until its base64url holds a
        # '-' or '_', so that every spelling applies to it too
        while True:
            token = hostile.es256_token(kms.issuer_key, hdr, body)
            sig = token.rsplit(".", 1)[1]
            if "-" in sig or "_" in sig:
                return token

    def maker(variant):
        def make(ident):
            parts = shaped_token(ident).split(".")
            parts[idx] = _variants(parts[idx])[variant]
            if idx < 2:
                # re-sign over the spoiled text, so only its spelling is wrong
                signing_input = ".".join(parts[:2]).encode()
                parts[2] = hostile.es256_signature(kms.issuer_key, signing_input)
            return ".".join(parts)
        return make

    names = list(_variants(shaped_token(kms.unique("tok")).split(".")[idx]))
    assert len(names) == 7, names
    bad = {v: maker(v) for v in names}
    bad["empty part"] = lambda ident: _empty_part(kms, ident, vsp, idx)
    check(kms, vsp, bad, control=shaped_token)


def _empty_part(kms, ident, vsp, idx):
    parts = signed(kms, ident, vsp).split(".")
    parts[idx] = ""
    if idx < 2:
        parts[2] = hostile.es256_signature(kms.issuer_key, ".".join(parts[:2]).encode())
    return ".".join(parts)


def test_wrong_number_of_parts(world):
    kms, vsp = world
    bad = {
        "two parts": lambda ident: signed(kms, ident, vsp).rsplit(".", 1)[0],
        "four parts": lambda ident: signed(kms, ident, vsp) + ".AAAA",
        "JWE-like five parts": lambda ident: signed(kms, ident, vsp) + ".AAAA.AAAA",
        "one part": lambda ident: signed(kms, ident, vsp).replace(".", ""),
        "empty token": lambda ident: "",
    }
    check(kms, vsp, bad)


def _token_of_length(kms, ident, vsp, target):
    """A correctly signed token of exactly target characters (a filler
    claim sized to fit, and header whitespace for the last step)."""
    sig_len = 86
    for hsp in range(4):
        hdr = ('{"alg":"ES256","typ":"JWT",' + " " * hsp + '"kid":"k1"}').encode()
        h64 = len(hostile.b64u(hdr))
        want_p64 = target - h64 - sig_len - 2
        if want_p64 % 4 == 1:
            continue
        base = claims(kms, ident, vsp, pad="")
        base_len = len(json.dumps(base, separators=(",", ":")).encode())
        want_len = (want_p64 * 3) // 4
        n = want_len - base_len
        if n < 0:
            continue
        body = json.dumps(dict(base, pad="x" * n), separators=(",", ":")).encode()
        if len(hostile.b64u(body)) != want_p64:
            continue
        t = hostile.es256_token(kms.issuer_key, hdr, body)
        assert len(t) == target
        return t
    raise AssertionError(f"no token of {target} characters")


def test_token_over_the_size_limit(world):
    """The limit is max_token_bytes, 8192 by default: a token of 8192
    characters is served, one of 8193 is refused, and so is a far larger
    one."""
    kms, vsp = world
    bad = {
        "8193 characters": lambda ident: _token_of_length(kms, ident, vsp, 8193),
        "60000 characters": lambda ident: _token_of_length(kms, ident, vsp, 60000),
    }
    details = check(kms, vsp, bad,
                    control=lambda ident: _token_of_length(kms, ident, vsp, 8192))
    assert "8192" in details["8193 characters"] or "large" in details["8193 characters"] \
        or "long" in details["8193 characters"], details


# ---------------------------------------------------------------- JSON


def test_header_or_payload_not_a_json_object(world):
    kms, vsp = world
    bad = {}
    for text in (b"[]", b'"ES256"', b"1", b"null", b"true",
                 b'[{"alg":"ES256","typ":"JWT","kid":"k1"}]', b'{"alg":"ES256"',
                 b"\xff\xfe", b""):
        bad[f"header {text!r}"] = lambda ident, t=text: hostile.es256_token(
            kms.issuer_key, t, claims(kms, ident, vsp))
    for text in (b"[]", b'"claims"', b"42", b"null", b"false", b"{", b"\xc3\x28"):
        bad[f"payload {text!r}"] = lambda ident, t=text: hostile.es256_token(
            kms.issuer_key, header(), t)
    bad["payload an array of the claims"] = lambda ident: hostile.es256_token(
        kms.issuer_key, header(), json.dumps([claims(kms, ident, vsp)]).encode())
    bad["payload with trailing text"] = lambda ident: hostile.es256_token(
        kms.issuer_key, header(), json.dumps(claims(kms, ident, vsp)).encode() + b" {}")
    check(kms, vsp, bad, control=lambda ident: signed(kms, ident, vsp))


def _dup(obj, key, first, second):
    """JSON text of obj with key written twice: first, then second."""
    rest = {k: v for k, v in obj.items() if k != key}
    text = json.dumps(rest, separators=(",", ":"))
    return (text[:-1] + "," + json.dumps(key) + ":" + json.dumps(first) + ","
            + json.dumps(key) + ":" + json.dumps(second) + "}").encode()


def test_duplicate_claims(world):
    kms, vsp = world
    now = int(time.time())
    bad = {
        "exp twice, expired last": lambda ident: hostile.es256_token(
            kms.issuer_key, header(), _dup(claims(kms, ident, vsp), "exp", now + 300, now - 600)),
        "exp twice, expired first": lambda ident: hostile.es256_token(
            kms.issuer_key, header(), _dup(claims(kms, ident, vsp), "exp", now - 600, now + 300)),
        "client_id twice": lambda ident: hostile.es256_token(
            kms.issuer_key, header(),
            _dup(claims(kms, ident, vsp), "client_id", ident + "-other", ident)),
        "vsp_id twice": lambda ident: hostile.es256_token(
            kms.issuer_key, header(), _dup(claims(kms, ident, vsp), "vsp_id", "vsp-other", vsp)),
        "iss twice": lambda ident: hostile.es256_token(
            kms.issuer_key, header(),
            _dup(claims(kms, ident, vsp), "iss", "https://evil.test", kms.issuer)),
        "SKeyProv twice": lambda ident: hostile.es256_token(
            kms.issuer_key, header(), _dup(claims(kms, ident, vsp), "SKeyProv", False, True)),
        "scope twice": lambda ident: hostile.es256_token(
            kms.issuer_key, header(), _dup(claims(kms, ident, vsp), "scope", "openid", "ss-kpp")),
        "header alg twice": lambda ident: hostile.es256_token(
            kms.issuer_key, _dup(header(), "alg", "none", "ES256"), claims(kms, ident, vsp)),
        "header kid twice": lambda ident: hostile.es256_token(
            kms.issuer_key, _dup(header(), "kid", "k2", "k1"), claims(kms, ident, vsp)),
        # the same member spelled with a JSON escape: a duplicate after
        # unescaping
        "exp twice, once escaped": lambda ident: hostile.es256_token(
            kms.issuer_key, header(), _dup(claims(kms, ident, vsp), "exp", now + 300,
                                           now - 600).replace(b'"exp":' + str(now - 600).encode(),
                                                              b'"\\u0065xp":'
                                                              + str(now - 600).encode())),
    }
    check(kms, vsp, bad, control=lambda ident: signed(kms, ident, vsp))


# ---------------------------------------------------------------- time claims


def _with_exp_null(c):
    text = json.dumps(dict(c, exp=None))
    assert '"exp": null' in text
    return text.encode()


def test_exp_as_a_string(world):
    kms, vsp = world
    now = int(time.time())
    bad = {
        "exp a numeric string": lambda ident: signed(kms, ident, vsp, exp=str(now + 300)),
        "exp a date string": lambda ident: signed(kms, ident, vsp, exp="2099-01-01T00:00:00Z"),
        "exp true": lambda ident: signed(kms, ident, vsp, exp=True),
        "exp an object": lambda ident: signed(kms, ident, vsp, exp={"$numberLong": str(now)}),
        "exp an array": lambda ident: signed(kms, ident, vsp, exp=[now + 300]),
        "exp null": lambda ident: hostile.es256_token(
            kms.issuer_key, header(), _with_exp_null(claims(kms, ident, vsp))),
        "nbf a string": lambda ident: signed(kms, ident, vsp, nbf=str(now)),
        "iat a string": lambda ident: signed(kms, ident, vsp, iat=str(now)),
        "no exp": lambda ident: signed(kms, ident, vsp, exp=None),
    }
    check(kms, vsp, bad, control=lambda ident: signed(kms, ident, vsp))


def test_nbf_in_the_future_beyond_the_leeway(world):
    """The leeway is 30 s: nbf 10 s ahead is served, 60 s and an hour
    ahead are not; the same for iat."""
    kms, vsp = world
    now = int(time.time())
    bad = {
        "nbf +60 s": lambda ident: signed(kms, ident, vsp, nbf=now + 60),
        "nbf +1 h": lambda ident: signed(kms, ident, vsp, nbf=now + 3600, exp=now + 7200),
        "nbf +2^40 s": lambda ident: signed(kms, ident, vsp, nbf=1 << 40, exp=(1 << 40) + 10),
        "iat +60 s": lambda ident: signed(kms, ident, vsp, iat=now + 60),
        "exp 60 s ago": lambda ident: signed(kms, ident, vsp, iat=now - 600, nbf=now - 600,
                                             exp=now - 60),
    }
    details = check(kms, vsp, bad,
                    control=lambda ident: signed(kms, ident, vsp, nbf=now + 10, iat=now + 10))
    assert "nbf" in details["nbf +60 s"].lower() or "not yet" in details["nbf +60 s"].lower() \
        or "before" in details["nbf +60 s"].lower(), details["nbf +60 s"]


# ---------------------------------------------------------------- whose token


def test_token_of_val_server_a_in_a_request_of_val_server_b(world):
    kms, vsp = world
    a = kms.unique("val-a")
    req_a = kms.request(a, [("svc-a", "JWK")], vsp)
    kms.send(req_a)
    _, resp = kms.result(req_a["requestId"])
    assert resp["result"] == "SUCCESS", resp
    stored_a = hostile.valserver(kms, a)
    token_a = req_a["credentials"]["accessToken"]

    b = kms.unique("val-b")
    cases = {
        # B presents A's valid token as its own
        "A's token, B's request": kms.request(b, [("svc-a", "JWK")], vsp, token=token_a),
        # and B claims to be A in the body while keying the record as B
        "A's token and identity, B's key": kms.request(a, [("svc-b", "RAW")], vsp,
                                                       token=token_a),
    }
    kms.send(cases["A's token, B's request"])
    kms.send(cases["A's token and identity, B's key"], key=b)
    for label, req in cases.items():
        _, resp = kms.result(req["requestId"])
        if label.startswith("A's token, B's"):
            assert_refused(kms, label, req, resp)
            assert "client_id" in resp["detail"], resp["detail"]
        else:
            # the key must be the requesterIdentity: refused before the token
            assert (resp["result"], resp["cause"]) == ("FAILURE", "INVALID_REQUEST"), resp
    assert hostile.valserver(kms, a) == stored_a, "A's stored data changed"
    hostile.assert_nothing_stored(kms, b)


def test_vsp_id_of_another_provider(world):
    """The token is valid, but its vsp_id names a provider other than the
    one whose SLA covers the services: NOT_ALLOWED_BY_SLA. A VAL server
    stored under one provider cannot be moved under another by a token
    naming it, either."""
    kms, _ = world
    own = hostile.provisioned(kms, ["svc-own"], ("JWK",))
    other = hostile.provisioned(kms, ["svc-other"], ("JWK",))
    both = hostile.provisioned(kms, ["svc-own"], ("JWK", "RAW"))
    bad = {
        "another provider's vsp_id": lambda ident: signed(kms, ident, other),
        "a provider that does not exist": lambda ident: signed(kms, ident, "vsp-nonexistent"),
    }
    got = send_tokens(kms, own, bad, services=(("svc-own", "JWK"),))
    for label, (req, resp) in got.items():
        assert_refused(kms, label, req, resp, SLA)
    # an empty vsp_id names no provider at all: the token is incomplete
    got = send_tokens(kms, own, {"vsp_id empty": lambda ident: signed(kms, ident, "")},
                      services=(("svc-own", "JWK"),))
    assert_refused(kms, "vsp_id empty", *got["vsp_id empty"], UNAUTHORIZED)

    # V is provisioned under own; a token naming both (whose SLA also covers
    # svc-own) must not take V over
    v = kms.unique("val")
    first = kms.request(v, [("svc-own", "JWK")], own)
    kms.send(first)
    assert kms.result(first["requestId"])[1]["result"] == "SUCCESS"
    before = hostile.valserver(kms, v)
    assert before["vsp_id"] == own
    move = kms.request(v, [("svc-own", "RAW")], both, token=signed(kms, v, both))
    kms.send(move)
    _, resp = kms.result(move["requestId"])
    assert_refused(kms, "takeover", move, resp, SLA, stored_before=before)
    assert hostile.valserver(kms, v)["vsp_id"] == own


def test_pyjwt_agrees_the_control_token_is_valid(world):
    """The construction used by every control is a token an independent
    library accepts (so the controls prove what they claim)."""
    kms, vsp = world
    t = signed(kms, "val-x", vsp)
    got = pyjwt.decode(t, kms.issuer_key.public_key(), algorithms=["ES256"],
                       options={"verify_aud": False})
    assert got == claims(kms, "val-x", vsp, now=got["iat"])
