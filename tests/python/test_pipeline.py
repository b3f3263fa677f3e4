"""The provisioning pipeline end to end, one test per case of the contract.

Each test sends requests to a real KM-S (one per module, see conftest.py),
reads the Result it publishes, and checks through ``kmsctl --json`` what was
stored: for a success exactly the VAL server and key format versions the
request implies, for a failure nothing but the audit row (and the decision,
for a well-formed requestId). Every test uses VAL server identities and
providers of its own, so the tests do not see each other's data.
"""

import datetime
import json
import struct
import time
import uuid

import pytest

import kmswire
from conftest import assert_detail_sentence, new_ec_key

JWK_CONTENT = {"alg": "A256GCM", "kty": "oct", "use": "enc"}


# ---------------------------------------------------------------- kmsctl views


NOT_FOUND = 4  # kmsctl's exit code for an unknown VAL server or requestId


def valserver(kms, identity):
    """`kmsctl valserver show`: the stored VAL server, or None when the KM-S
    has not stored it."""
    rc, out, err = kms.kmsctl_raw("valserver", "show", identity)
    if rc == NOT_FOUND:
        return None
    assert rc == 0, f"valserver show exited {rc}: {err}"
    return json.loads(out)


def valserver_ids(kms):
    rows = kms.kmsctl("valserver", "list")
    return {r["requester_identity"] for r in rows}


def formats(vs):
    """{service: [(version, formatType, formatVersion, content), ...]}: the
    whole history of a `valserver show`, versions ascending."""
    out = {}
    for kf in vs["history"]:
        out.setdefault(kf["val_service_id"], []).append(
            (kf["version"], kf["format_type"], kf["format_version"], kf["content"]))
    return {k: sorted(v, key=lambda t: t[0]) for k, v in out.items()}


def current(vs):
    """{service: (version, formatType)}: the current formats of a `valserver
    show`, checked against the last version of its history."""
    cur = {svc: (f["version"], f["format_type"]) for svc, f in vs["services"].items()}
    assert cur == {svc: (v[-1][0], v[-1][1]) for svc, v in formats(vs).items()}
    return cur


def decision(kms, request_id):
    rc, out, err = kms.kmsctl_raw("decision", request_id)
    if rc == NOT_FOUND:
        return None
    assert rc == 0, f"decision exited {rc}: {err}"
    return json.loads(out)


def audit(kms, identity):
    return kms.kmsctl("audit", identity)


def counts(kms):
    """The figures of `kmsctl stats` that a request can change."""
    st = kms.kmsctl("stats")
    return {"decisions": st["decisions"]["total"], "audit": st["audit"]["total"],
            "val_servers": st["val_servers"], "key_format_versions": st["key_format_versions"]}


def delta(before, after):
    return {k: after[k] - before[k] for k in before}


def val_server_count(kms, vsp_id):
    """How many VAL servers `kmsctl valserver list` shows for a provider."""
    rows = kms.kmsctl("valserver", "list", "--provider", vsp_id)
    assert all(r["vsp_id"] == vsp_id for r in rows)
    return len(rows)


# ---------------------------------------------------------------- helpers


def provisioned(kms, services, key_formats=("JWK", "RAW"), max_val_servers=10, **sla_kw):
    """A provider with one active SLA; returns the vsp_id."""
    vsp = kms.provider()
    kms.sla(vsp, services, key_formats, max_val_servers, **sla_kw)
    return vsp


def ask(kms, req, **send_kw):
    """Send req and wait for its one Result; returns (headers, response)."""
    before = kmswire.now_ms()
    rid = kms.send(req, **send_kw)
    headers, resp = kms.result(rid)
    after = kmswire.now_ms()
    assert resp is not None, "the Result did not decode"
    assert resp["requestId"] == req["requestId"]
    assert resp["requesterIdentity"] == req["requesterIdentity"]
    assert resp["kmsId"] == kms.kms_id
    assert before - 1000 <= resp["processedAt"] <= after + 1000
    return headers, resp


def assert_failure(kms, req, cause, detail_has=None, **send_kw):
    """Send req; its Result is FAILURE with cause; nothing of it is stored
    but its audit row (and its decision, for a well-formed requestId)."""
    before = counts(kms)
    _, resp = ask(kms, req, **send_kw)
    token = req["credentials"]["accessToken"]
    assert (resp["result"], resp["cause"]) == ("FAILURE", cause), resp
    assert_detail_sentence(resp["detail"], token)
    if detail_has is not None:
        assert detail_has.lower() in resp["detail"].lower(), resp["detail"]
    ident = req["requesterIdentity"]
    assert valserver(kms, ident) is None
    assert ident not in valserver_ids(kms)
    rows = [a for a in audit(kms, ident) if a["request_id"] == req["requestId"]]
    assert len(rows) == 1, rows
    topic, partition, offset = kms.sent[req["requestId"]][-1]
    row = rows[0]
    assert (row["topic"], row["partition"], row["offset"]) == (topic, partition, offset)
    assert (row["outcome"], row["result"], row["cause"]) == ("DECIDED", "FAILURE", cause)
    assert row["detail"] == resp["detail"]
    d = decision(kms, req["requestId"])
    try:
        uuid.UUID(req["requestId"])
        well_formed = len(req["requestId"]) == 36
    except ValueError:
        well_formed = False
    if well_formed:
        assert d is not None
        assert (d["result"], d["cause"]) == ("FAILURE", cause)
        assert d["processed_at"] == resp["processedAt"]
    else:
        assert d is None
    assert delta(before, counts(kms)) == {"decisions": 1 if well_formed else 0, "audit": 1,
                                          "val_servers": 0, "key_format_versions": 0}
    return resp


def ok(kms, req, **send_kw):
    headers, resp = ask(kms, req, **send_kw)
    assert (resp["result"], resp["cause"]) == ("SUCCESS", None), resp
    return headers, resp


# ---------------------------------------------------------------- success


def test_success_one_service(kms):
    vsp = provisioned(kms, ["svc-a"])
    val = kms.unique("val")
    req = kms.request(val, [kmswire.service("svc-a", "JWK", "1.0", JWK_CONTENT)], vsp)
    before = counts(kms)
    _, resp = ok(kms, req)
    assert delta(before, counts(kms)) == {"decisions": 1, "audit": 1, "val_servers": 1,
                                          "key_format_versions": 1}

    vs = valserver(kms, val)
    assert vs["requester_identity"] == val
    assert vs["vsp_id"] == vsp
    assert vs["endpoint"] == req["endpoint"]
    assert formats(vs) == {"svc-a": [(1, "JWK", "1.0", JWK_CONTENT)]}
    assert current(vs) == {"svc-a": (1, "JWK")}
    assert [h["request_id"] for h in vs["history"]] == [req["requestId"]]
    assert vs["first_provisioned_at"] == vs["last_provisioned_at"]
    assert val in valserver_ids(kms)
    assert val_server_count(kms, vsp) == 1

    d = decision(kms, req["requestId"])
    assert (d["result"], d["cause"], d["processed_at"]) == ("SUCCESS", None,
                                                              resp["processedAt"])
    rows = audit(kms, val)
    assert len(rows) == 1
    assert (rows[0]["outcome"], rows[0]["result"]) == ("DECIDED", "SUCCESS")
    assert (rows[0]["topic"], rows[0]["partition"], rows[0]["offset"]) == \
        kms.sent[req["requestId"]][0]


def test_success_several_services(kms):
    vsp = provisioned(kms, ["svc-a", "svc-b", "svc-c"], ("JWK", "RAW", "X509"))
    val = kms.unique("val")
    req = kms.request(val, [
        kmswire.service("svc-a", "JWK", None, JWK_CONTENT),
        kmswire.service("svc-b", "RAW", None, {"bits": "256"}),
        kmswire.service("svc-c", "X509", "v3", {"sig": "ecdsa-with-SHA256"}),
    ], vsp)
    before = counts(kms)
    ok(kms, req)
    assert delta(before, counts(kms)) == {"decisions": 1, "audit": 1, "val_servers": 1,
                                          "key_format_versions": 3}
    vs = valserver(kms, val)
    assert formats(vs) == {
        "svc-a": [(1, "JWK", None, JWK_CONTENT)],
        "svc-b": [(1, "RAW", None, {"bits": "256"})],
        "svc-c": [(1, "X509", "v3", {"sig": "ecdsa-with-SHA256"})],
    }
    assert current(vs) == {"svc-a": (1, "JWK"), "svc-b": (1, "RAW"), "svc-c": (1, "X509")}
    assert val_server_count(kms, vsp) == 1


def test_success_second_request_versions_formats(kms):
    vsp = provisioned(kms, ["svc-a", "svc-b", "svc-c"], ("JWK", "RAW"))
    val = kms.unique("val")
    first = kms.request(val, [("svc-a", "JWK"), ("svc-b", "RAW")], vsp)
    ok(kms, first)
    vs1 = valserver(kms, val)

    # svc-a changes format, svc-c is new, svc-b is not listed: left as it was
    second = kms.request(val, [("svc-a", "RAW"), ("svc-c", "JWK")], vsp,
                         endpoint=f"https://{val}.vals.test/seal/v2")
    before = counts(kms)
    ok(kms, second)
    assert delta(before, counts(kms)) == {"decisions": 1, "audit": 1, "val_servers": 0,
                                          "key_format_versions": 2}
    vs2 = valserver(kms, val)
    assert formats(vs2) == {
        "svc-a": [(1, "JWK", None, JWK_CONTENT), (2, "RAW", None, {})],
        "svc-b": [(1, "RAW", None, {})],
        "svc-c": [(1, "JWK", None, JWK_CONTENT)],
    }
    assert current(vs2) == {"svc-a": (2, "RAW"), "svc-b": (1, "RAW"), "svc-c": (1, "JWK")}
    assert vs2["endpoint"] == second["endpoint"]
    assert vs2["first_provisioned_at"] == vs1["first_provisioned_at"]
    assert vs2["last_provisioned_at"] >= vs1["last_provisioned_at"]
    # the version of each row names the request that made it
    by_version = {(k["val_service_id"], k["version"]): k["request_id"]
                  for k in vs2["history"]}
    assert by_version == {("svc-a", 1): first["requestId"], ("svc-a", 2): second["requestId"],
                          ("svc-b", 1): first["requestId"], ("svc-c", 1): second["requestId"]}
    assert val_server_count(kms, vsp) == 1
    assert [a["outcome"] for a in audit(kms, val)] == ["DECIDED", "DECIDED"]


# ---------------------------------------------------------------- INVALID_REQUEST


def test_invalid_empty_service_list(kms):
    vsp = provisioned(kms, ["svc-a"])
    val = kms.unique("val")
    assert_failure(kms, kms.request(val, [], vsp), "INVALID_REQUEST", "valServices")


def test_invalid_duplicate_service_ids(kms):
    vsp = provisioned(kms, ["svc-a"])
    val = kms.unique("val")
    req = kms.request(val, [("svc-a", "JWK"), ("svc-a", "RAW")], vsp)
    assert_failure(kms, req, "INVALID_REQUEST", "valServiceId")


def test_invalid_relative_endpoint(kms):
    vsp = provisioned(kms, ["svc-a"])
    val = kms.unique("val")
    req = kms.request(val, [("svc-a", "JWK")], vsp, endpoint="/vals/seal")
    assert_failure(kms, req, "INVALID_REQUEST", "endpoint")


def test_invalid_empty_endpoint(kms):
    vsp = provisioned(kms, ["svc-a"])
    val = kms.unique("val")
    req = kms.request(val, [("svc-a", "JWK")], vsp, endpoint="")
    assert_failure(kms, req, "INVALID_REQUEST", "endpoint")


def test_invalid_malformed_request_id(kms):
    vsp = provisioned(kms, ["svc-a"])
    val = kms.unique("val")
    req = kms.request(val, [("svc-a", "JWK")], vsp, request_id="not-a-uuid-" + val)
    # no decision is kept for an id that is not a UUID; the audit row is
    assert_failure(kms, req, "INVALID_REQUEST", "requestId")


# ---------------------------------------------------------------- UNAUTHORIZED


def unauthorized(kms, token_fn, detail_has=None):
    vsp = provisioned(kms, ["svc-a"])
    val = kms.unique("val")
    req = kms.request(val, [("svc-a", "JWK")], vsp, token=token_fn(val, vsp))
    return assert_failure(kms, req, "UNAUTHORIZED", detail_has)


def test_unauthorized_bad_signature(kms):
    other = new_ec_key()
    unauthorized(kms, lambda val, vsp: kms.token(val, vsp, key=other), "signature")


def test_unauthorized_unknown_issuer(kms):
    unauthorized(kms, lambda val, vsp: kms.token(val, vsp, iss="https://unknown.test"),
                 "issuer")


def _none_with_signature(kms, val, vsp):
    """alg none, but carrying the signature of a valid token, so that it is
    the algorithm that is refused, not an empty part."""
    unsigned = kms.token(val, vsp, alg="none")
    signed = kms.token(val, vsp)
    return unsigned + signed.rsplit(".", 1)[1]


@pytest.mark.parametrize("variant", ["empty-signature", "with-signature"])
def test_unauthorized_alg_none(kms, variant):
    if variant == "empty-signature":
        unauthorized(kms, lambda val, vsp: kms.token(val, vsp, alg="none"))
    else:
        unauthorized(kms, lambda val, vsp: _none_with_signature(kms, val, vsp), "none")


def test_unauthorized_expired_beyond_leeway(kms):
    now = int(time.time())
    unauthorized(kms, lambda val, vsp: kms.token(val, vsp, iat=now - 600, nbf=now - 600,
                                                 exp=now - 120), "expired")


def test_unauthorized_client_id_of_another_val_server(kms):
    unauthorized(kms, lambda val, vsp: kms.token(val + "-other", vsp), "client_id")


def test_unauthorized_no_skeyprov(kms):
    unauthorized(kms, lambda val, vsp: kms.token(val, vsp, SKeyProv=None), "SKeyProv")


def test_unauthorized_scope_without_ss_kpp(kms):
    unauthorized(kms, lambda val, vsp: kms.token(val, vsp, scope="openid ss-kppx kpp"),
                 "scope")


# ---------------------------------------------------------------- NOT_ALLOWED_BY_SLA


def test_sla_no_sla_for_the_service(kms):
    vsp = provisioned(kms, ["svc-a"])
    val = kms.unique("val")
    req = kms.request(val, [("svc-z", "JWK")], vsp)
    assert_failure(kms, req, "NOT_ALLOWED_BY_SLA", "svc-z")


def test_sla_expired(kms):
    vsp = provisioned(kms, ["svc-a"], valid_from="2020-01-01T00:00:00Z",
                      valid_until="2021-01-01T00:00:00Z")
    val = kms.unique("val")
    assert_failure(kms, kms.request(val, [("svc-a", "JWK")], vsp), "NOT_ALLOWED_BY_SLA")


def test_sla_revoked(kms):
    vsp = kms.provider()
    sla_id = kms.sla(vsp, ["svc-a"], ("JWK",))
    kms.kmsctl("sla", "revoke", str(sla_id))
    val = kms.unique("val")
    assert_failure(kms, kms.request(val, [("svc-a", "JWK")], vsp), "NOT_ALLOWED_BY_SLA")


def test_sla_provider_at_max_val_servers(kms):
    vsp = provisioned(kms, ["svc-a"], ("JWK",), max_val_servers=1)
    first, second = kms.unique("val"), kms.unique("val")
    ok(kms, kms.request(first, [("svc-a", "JWK")], vsp))
    assert val_server_count(kms, vsp) == 1
    assert_failure(kms, kms.request(second, [("svc-a", "JWK")], vsp), "NOT_ALLOWED_BY_SLA",
                   "limit")
    assert val_server_count(kms, vsp) == 1
    # the admitted VAL server may still come back: it is within the limit
    ok(kms, kms.request(first, [("svc-a", "JWK")], vsp))


def test_sla_one_service_covered_one_not_applies_nothing(kms):
    vsp = provisioned(kms, ["svc-a"], ("JWK", "RAW"))
    val = kms.unique("val")
    ok(kms, kms.request(val, [("svc-a", "JWK")], vsp))
    before = valserver(kms, val)

    req = kms.request(val, [("svc-a", "RAW"), ("svc-x", "JWK")], vsp,
                      endpoint=f"https://{val}.vals.test/moved")
    n0 = counts(kms)
    _, resp = ask(kms, req)
    assert delta(n0, counts(kms)) == {"decisions": 1, "audit": 1, "val_servers": 0,
                                      "key_format_versions": 0}
    assert (resp["result"], resp["cause"]) == ("FAILURE", "NOT_ALLOWED_BY_SLA")
    assert "svc-x" in resp["detail"]
    after = valserver(kms, val)
    assert after == before  # svc-a still JWK version 1, endpoint not moved
    assert formats(after) == {"svc-a": [(1, "JWK", None, JWK_CONTENT)]}
    assert [(a["outcome"], a["result"], a["cause"]) for a in audit(kms, val)] == [
        ("DECIDED", "SUCCESS", None), ("DECIDED", "FAILURE", "NOT_ALLOWED_BY_SLA")]


# ---------------------------------------------------------------- KEY_FORMAT_NOT_ALLOWED


def test_key_format_not_allowed(kms):
    vsp = provisioned(kms, ["svc-a", "svc-b"], ("JWK",))
    val = kms.unique("val")
    req = kms.request(val, [("svc-a", "JWK"), ("svc-b", "PKCS8")], vsp)
    resp = assert_failure(kms, req, "KEY_FORMAT_NOT_ALLOWED", "PKCS8")
    assert "svc-b" in resp["detail"]


# ---------------------------------------------------------------- idempotency


def test_same_request_id_same_content_replays(kms):
    vsp = provisioned(kms, ["svc-a"])
    val = kms.unique("val")
    req = kms.request(val, [("svc-a", "JWK")], vsp)
    h1, r1 = ok(kms, req)
    vs1 = valserver(kms, val)
    n1 = counts(kms)

    # the very same bytes again, then a retry with a renewed token and sentAt
    kms.send(req)
    retry = dict(req, credentials={"accessToken": kms.token(val, vsp)},
                 sentAt=req["sentAt"] + 1500)
    kms.send(retry)
    recs = _wait_count(kms, req["requestId"], 3)
    assert len(recs) == 3
    for rec in recs:
        assert rec.response == r1  # every field, processedAt and kmsId included
        assert rec.headers["ce_id"] == h1["ce_id"]
        assert rec.value == recs[0].value
    assert valserver(kms, val) == vs1
    assert formats(vs1) == {"svc-a": [(1, "JWK", None, JWK_CONTENT)]}
    assert [a["outcome"] for a in audit(kms, val)] == ["DECIDED", "REPLAYED", "REPLAYED"]
    assert delta(n1, counts(kms)) == {"decisions": 0, "audit": 2, "val_servers": 0,
                                      "key_format_versions": 0}
    d = decision(kms, req["requestId"])
    assert (d["result"], d["processed_at"]) == ("SUCCESS", r1["processedAt"])


def _wait_count(kms, request_id, n, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        recs = kms.records(request_id)
        if len(recs) >= n or time.monotonic() > deadline:
            return recs
        time.sleep(0.1)


def test_same_request_id_other_content_conflicts(kms):
    vsp = provisioned(kms, ["svc-a"])
    val = kms.unique("val")
    req = kms.request(val, [("svc-a", "JWK")], vsp)
    _, r1 = ok(kms, req)
    vs1 = valserver(kms, val)
    n1 = counts(kms)

    other = dict(req, valServices=[kmswire.service("svc-a", "RAW")])
    kms.send(other)
    recs = _wait_count(kms, req["requestId"], 2)
    assert len(recs) == 2
    r2 = recs[1].response
    assert (r2["result"], r2["cause"]) == ("FAILURE", "REQUEST_ID_CONFLICT")
    assert r2["requestId"] == req["requestId"] and r2["kmsId"] == kms.kms_id
    assert_detail_sentence(r2["detail"], req["credentials"]["accessToken"])
    assert r2["processedAt"] >= r1["processedAt"]

    assert valserver(kms, val) == vs1
    assert formats(vs1) == {"svc-a": [(1, "JWK", None, JWK_CONTENT)]}
    d = decision(kms, req["requestId"])
    assert (d["result"], d["cause"], d["processed_at"]) == ("SUCCESS", None, r1["processedAt"])
    assert [(a["outcome"], a["cause"]) for a in audit(kms, val)] == [
        ("DECIDED", None), ("CONFLICT", "REQUEST_ID_CONFLICT")]
    assert delta(n1, counts(kms)) == {"decisions": 0, "audit": 1, "val_servers": 0,
                                      "key_format_versions": 0}


# ---------------------------------------------------------------- reply routing


def _sentinel(kms, val, vsp):
    """A request of the same VAL server without reply headers: once its Result
    is on the default topic, an earlier Result sent there would be too (one
    VAL server's requests are keyed alike, decided and answered in order)."""
    req = kms.request(val, [("svc-a", "JWK")], vsp)
    ok(kms, req)
    return req


def test_reply_topic(kms):
    vsp = provisioned(kms, ["svc-a"])
    val = kms.unique("val")
    replies = kms.create_topic(f"{kms.prefix}.replies-{val}", partitions=2)
    req = kms.request(val, [("svc-a", "JWK")], vsp)
    kms.send(req, headers={"kafka_replyTopic": replies.encode()})
    headers, resp = kms.result(req["requestId"], topic=replies)
    assert (resp["result"], resp["requestId"]) == ("SUCCESS", req["requestId"])
    _sentinel(kms, val, vsp)
    assert len(kms.records(req["requestId"], topic=replies)) == 1
    assert [r for r in kms.seen() if r.request_id == req["requestId"]] == []
    rows = audit(kms, val)
    assert rows[0]["reply_note"] is None


def test_reply_partition(kms):
    vsp = provisioned(kms, ["svc-a"])
    val = kms.unique("val")
    replies = kms.create_topic(f"{kms.prefix}.replies-{val}", partitions=4)
    for partition in (3, 0, 2):
        req = kms.request(val, [("svc-a", "JWK")], vsp)
        kms.send(req, headers={"kafka_replyTopic": replies.encode(),
                               "kafka_replyPartition": struct.pack(">i", partition)})
        recs = kms.records(req["requestId"], topic=replies)
        assert [(r.partition, r.response["result"]) for r in recs] == [(partition, "SUCCESS")]


def test_correlation_id_echoed_byte_for_byte(kms):
    vsp = provisioned(kms, ["svc-a"])
    val = kms.unique("val")
    corr = b"\xff\xfe\x00\x80\xc3(corr\x00id\xff"
    req = kms.request(val, [("svc-a", "JWK")], vsp)
    kms.send(req, headers={"kafka_correlationId": corr})
    headers, resp = kms.result(req["requestId"])
    assert headers["kafka_correlationId"] == corr
    assert resp["result"] == "SUCCESS"


def test_refused_reply_topic_goes_to_default(kms):
    vsp = provisioned(kms, ["svc-a"])
    val = kms.unique("val")
    req = kms.request(val, [("svc-a", "JWK")], vsp)
    kms.send(req, headers={"kafka_replyTopic": kms.requests_topic.encode()})
    headers, resp = kms.result(req["requestId"])  # on the default results topic
    assert resp["result"] == "SUCCESS"
    rows = audit(kms, val)
    assert len(rows) == 1
    note = rows[0]["reply_note"]
    assert note and "kafka_replyTopic" in note and kms.requests_topic in note, note
    # nothing of it came back on the requests topic as a Result
    back = [r for r in kms.seen(kms.requests_topic)
            if r.response is not None and r.request_id == req["requestId"]]
    assert back == []


def test_cloudevents_headers(kms):
    vsp = provisioned(kms, ["svc-a"])
    val = kms.unique("val")
    req = kms.request(val, [("svc-a", "JWK")], vsp)
    headers, resp = ok(kms, req)
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_source"] == kms.kms_id.encode()
    assert headers["ce_type"] == b"org.threegpp.seal.km.provisioning.result.v1"
    assert headers["content-type"] == b"application/avro"
    ce_id = headers["ce_id"].decode()
    assert 8 <= len(ce_id) <= 128
    t = datetime.datetime.fromisoformat(headers["ce_time"].decode().replace("Z", "+00:00"))
    assert t.tzinfo is not None
    assert round(t.timestamp() * 1000) == resp["processedAt"]
    # every Result carries a correlation id, the requestId when none was sent
    assert headers["kafka_correlationId"] == req["requestId"].encode()
    # ce_id is per Result: another request gets another one
    h2, _ = ok(kms, kms.request(val, [("svc-a", "RAW")], vsp))
    assert h2["ce_id"] != headers["ce_id"]


# ---------------------------------------------------------------- undecodable values


def test_undecodable_value_goes_to_dlq(kms):
    vsp = provisioned(kms, ["svc-a"])
    val = kms.unique("val")
    before = valserver_ids(kms)
    n0 = counts(kms)
    # right magic and fingerprint; the datum's first string claims 2^40 bytes
    value = kmswire.REQUEST.header() + kmswire.avro_long(1 << 40) + b"\x00" * 5
    key = val.encode()
    headers = [("trace", b"\x00\xfftrace"), ("ce_id", b"req-1")]
    kms.send(value, key=key, headers=headers)
    topic, partition, offset = kms.last_sent

    [rec] = kms.dlq(1, key=key)
    # its audit row is the only trace: no decision, nothing stored
    assert delta(n0, counts(kms)) == {"decisions": 0, "audit": 1, "val_servers": 0,
                                      "key_format_versions": 0}
    assert rec.key == key
    assert rec.value == value
    assert rec.header_list[:2] == headers
    h = rec.headers
    assert h["__connect.errors.topic"] == topic.encode()
    assert h["__connect.errors.partition"] == str(partition).encode()
    assert h["__connect.errors.offset"] == str(offset).encode()
    for name in ("stage", "exception.class.name", "exception.message"):
        assert h.get("__connect.errors." + name), name

    # no Result (nothing names the request), nothing stored, still serving
    req = kms.request(val, [("svc-a", "JWK")], vsp)
    ok(kms, req)
    assert [r for r in kms.seen() if r.key == key and r.request_id != req["requestId"]] == []
    assert valserver_ids(kms) - before == {val}
    assert [(a["outcome"], a["result"]) for a in audit(kms, val)] == [("DECIDED", "SUCCESS")]


def test_undecodable_value_with_readable_ids_gets_dlq_and_result(kms):
    val = kms.unique("val")
    rid = str(uuid.uuid4())
    # requestId and requesterIdentity are readable, the endpoint is cut short
    value = (kmswire.REQUEST.header() + kmswire.avro_string(rid) + kmswire.avro_string(val)
             + kmswire.avro_long(100) + b"https://")
    n0 = counts(kms)
    kms.send(value, key=val)
    [rec] = kms.dlq(1, key=val)
    assert rec.value == value
    headers, resp = kms.result(rid)
    assert (resp["result"], resp["cause"]) == ("FAILURE", "INVALID_REQUEST")
    assert resp["requesterIdentity"] == val
    assert_detail_sentence(resp["detail"])
    assert valserver(kms, val) is None
    [row] = audit(kms, val)
    assert (row["outcome"], row["request_id"], row["cause"]) == ("DLQ", rid, "INVALID_REQUEST")
    assert (row["topic"], row["partition"], row["offset"]) == kms.last_sent
    assert delta(n0, counts(kms)) == {"decisions": 0, "audit": 1, "val_servers": 0,
                                      "key_format_versions": 0}
