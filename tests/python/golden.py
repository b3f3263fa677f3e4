"""The golden corpus: a recording of a requests topic and of the Results a
KM-S gave it, kept in ``tests/fixtures/golden/`` so that every build can be
replayed against it (``test_golden_replay.py``).

The corpus holds, one case each, every success and failure case of
``test_pipeline.py``, every hostile value of ``test_hostile_values.py`` that a
topic with Kafka's default limits can hold and a KM-S with its default
settings judges the same way (see ``LEFT_OUT``), and the reply-routing
headers (reply topic, reply partition, correlation id, refused reply topics).
Its tokens are signed by the corpus's own development issuer key (committed
next to it, marked as such, trusted nowhere else).

What keeps the Results the same from one run to the next:

- every requestId, VAL server identity and provider name is fixed (derived
  from the case's label), and every run starts from a fresh database set up
  by ``setup.json`` and fresh topics of the same partition counts;
- the requests are replayed to their recorded partitions
  (``--keep-partitions``), so the order within each partition, which is the
  order the KM-S decides in, is the recorded one; a case whose outcome
  depends on another VAL server's request (a provider's VAL server limit)
  puts both on one partition;
- tokens are re-minted for the run (``--resign``), their times moved by the
  time since the recording, so a token that was valid is valid again and
  one that had expired has expired again; tokens the KM-S refused by their
  signature, issuer or algorithm are replayed as they were
  (``--verify-issuers``);
- what differs by design is left out of the comparison: processedAt, kmsId,
  ce_time, ce_source and ce_id (a digest of the Result's bytes).

Regenerate with ``make golden`` (``scripts/golden.sh``), when the contract
changes on purpose, and read the new Results before committing them.

API (for the tests): ``FIXTURES``, ``ISSUER``, ``KID``, ``REPLY_TOPIC``,
``PARTITIONS``, ``paths()``, ``apply_setup(kms, spec)``, ``reset_reply_topic(stack)``,
``wait_drained(kms, timeout)``, ``record(stack, topic, out)``,
``count_records(stack, topic)``, ``valctl(*args)``.
"""

import argparse
import base64
import json
import os
import random
import secrets
import shutil
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field

import jwt as pyjwt
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import hostile
import kmswire

REPO = kmswire.REPO
FIXTURES = os.path.join(REPO, "tests", "fixtures", "golden")
ISSUER = "https://issuer.golden-corpus.dev.test"
KID = "golden-corpus-dev-1"
REPLY_TOPIC = "kms-golden.replies"
PARTITIONS = {"requests": 6, "results": 6, "replies": 4}
NAMESPACE = uuid.UUID("6f1c9a52-0b7e-4c1e-9d52-3a8f0c2e7b41")

KEY_BANNER = (
    "DEVELOPMENT KEY - NOT A SECRET. The token issuer of the golden corpus of\n"
    "tests/fixtures/golden only: it signs the corpus's tokens and nothing else.\n"
    "Never trust it anywhere else.\n")

# Hostile values of test_hostile_values.py that are not in the corpus, and why.
LEFT_OUT = {
    "test_value_over_the_default_size_limit":
        "1 MiB + 1 byte: a topic with Kafka's default max.message.bytes cannot hold it",
    "test_value_the_dlq_topic_cannot_hold":
        "1.5 MiB: a topic with Kafka's default max.message.bytes cannot hold it",
    "test_value_over_a_configured_size_limit":
        "judged by a KM-S started with --max-value-bytes 4096; the default KM-S "
        "that replays the corpus would serve both values",
}

JWK = {"alg": "A256GCM", "kty": "oct", "use": "enc"}
HOSTILE_HEADERS = [("kafka_correlationId", b"\x00\x01corr\xff"), ("x-trace", b"hostile-test")]


def paths(folder=FIXTURES):
    return {name: os.path.join(folder, f) for name, f in (
        ("key", "issuer-dev.key.pem"), ("pub", "issuer-dev.pub.pem"),
        ("issuers", "issuers.json"), ("setup", "setup.json"), ("cases", "cases.json"),
        ("requests", "requests.jsonl"), ("results", "results.jsonl"),
        ("replies", "replies.jsonl"))}


def rid(label):
    """The requestId of a case: fixed, so that the Results pair up."""
    return str(uuid.uuid5(NAMESPACE, label))


# ---------------------------------------------------------------- the corpus


@dataclass
class Msg:
    key: object             # bytes, str or None
    value: object           # bytes or None
    headers: list = field(default_factory=list)
    partition: int = None   # None: the key's partition (murmur2)


@dataclass
class Case:
    label: str
    source: str             # the test it comes from
    identity: str
    expect: list            # [(requestId, result, cause, topic)], in order
    messages: int = 0


class Corpus:
    def __init__(self, key, other_key):
        self.key = key
        self.other_key = other_key
        self.msgs = []
        self.cases = []
        self.providers = {}  # vsp -> [sla dict]
        self.now = int(time.time())

    # -- setup

    def provider(self, vsp, services, formats=("JWK", "RAW"), max_val_servers=10,
                 valid_from=None, valid_until=None, revoked=False):
        sla = {"services": list(services), "key_formats": list(formats),
               "max_val_servers": max_val_servers}
        if valid_from:
            sla["valid_from"] = valid_from
        if valid_until:
            sla["valid_until"] = valid_until
        if revoked:
            sla["revoked"] = True
        self.providers.setdefault(vsp, []).append(sla)
        return vsp

    # -- tokens and requests

    def token(self, client_id, vsp, key=None, alg="ES256", kid=KID, **claims):
        payload = {"iss": ISSUER, "client_id": client_id, "sub": client_id, "vsp_id": vsp,
                   "scope": "ss-kpp", "SKeyProv": True, "iat": self.now, "nbf": self.now,
                   "exp": self.now + 300}
        for k, v in claims.items():
            if v is None:
                payload.pop(k, None)
            else:
                payload[k] = v
        headers = {"kid": kid} if kid else {}
        signing = None if alg == "none" else (key or self.key)
        return pyjwt.encode(payload, signing, algorithm=alg, headers=headers)

    def request(self, label, identity, services, vsp, token=None, **kw):
        kw.setdefault("request_id", rid(label))
        return kmswire.request(identity, token or self.token(identity, vsp), services, **kw)

    # -- cases

    def case(self, label, source, identity):
        c = Case(label, source, identity, [])
        self.cases.append(c)
        return c

    def send(self, case, value, key=None, headers=(), partition=None, expect=None,
             request_id=None, topic="results"):
        """Add one message; expect (result, cause) when a Result is due."""
        if isinstance(value, dict):
            request_id = value["requestId"]
            if key is None:
                key = value["requesterIdentity"]
            value = kmswire.encode_request(value)
        if isinstance(key, str):
            key = key.encode("utf-8")
        self.msgs.append(Msg(key, value, list(headers), partition))
        case.messages += 1
        if expect is not None:
            case.expect.append((request_id, expect[0], expect[1], topic))

    def ok(self, case, req, **kw):
        self.send(case, req, expect=("SUCCESS", None), **kw)

    def fail(self, case, req, cause, **kw):
        self.send(case, req, expect=("FAILURE", cause), **kw)


def pipeline_cases(c):
    """test_pipeline.py, one case per test."""
    src = "test_pipeline.py::"

    def simple(label, services, formats=("JWK", "RAW"), **sla):
        vsp = c.provider(f"vsp-{label}", services, formats, **sla)
        return vsp, f"val-{label}"

    # success
    vsp, val = simple("success-one", ["svc-a"])
    k = c.case("success-one", src + "test_success_one_service", val)
    c.ok(k, c.request("success-one", val, [kmswire.service("svc-a", "JWK", "1.0", JWK)], vsp))

    vsp, val = simple("success-several", ["svc-a", "svc-b", "svc-c"], ("JWK", "RAW", "X509"))
    k = c.case("success-several", src + "test_success_several_services", val)
    c.ok(k, c.request("success-several", val, [
        kmswire.service("svc-a", "JWK", None, JWK),
        kmswire.service("svc-b", "RAW", None, {"bits": "256"}),
        kmswire.service("svc-c", "X509", "v3", {"sig": "ecdsa-with-SHA256"})], vsp))

    vsp, val = simple("success-versions", ["svc-a", "svc-b", "svc-c"])
    k = c.case("success-versions", src + "test_success_second_request_versions_formats", val)
    c.ok(k, c.request("success-versions/1", val, [("svc-a", "JWK"), ("svc-b", "RAW")], vsp))
    c.ok(k, c.request("success-versions/2", val, [("svc-a", "RAW"), ("svc-c", "JWK")], vsp,
                      endpoint=f"https://{val}.vals.test/seal/v2"))

    # INVALID_REQUEST
    for label, test, services, kw in (
            ("invalid-empty-services", "test_invalid_empty_service_list", [], {}),
            ("invalid-duplicate-ids", "test_invalid_duplicate_service_ids",
             [("svc-a", "JWK"), ("svc-a", "RAW")], {}),
            ("invalid-relative-endpoint", "test_invalid_relative_endpoint",
             [("svc-a", "JWK")], {"endpoint": "/vals/seal"}),
            ("invalid-empty-endpoint", "test_invalid_empty_endpoint", [("svc-a", "JWK")],
             {"endpoint": ""}),
            ("invalid-malformed-request-id", "test_invalid_malformed_request_id",
             [("svc-a", "JWK")], {"request_id": "not-a-uuid-val-invalid-malformed-request-id"})):
        vsp, val = simple(label, ["svc-a"])
        k = c.case(label, src + test, val)
        c.fail(k, c.request(label, val, services, vsp, **kw), "INVALID_REQUEST")

    # UNAUTHORIZED
    def unauthorized(label, test, token_fn):
        vsp, val = simple(label, ["svc-a"])
        k = c.case(label, src + test, val)
        c.fail(k, c.request(label, val, [("svc-a", "JWK")], vsp, token=token_fn(val, vsp)),
               "UNAUTHORIZED")

    unauthorized("unauth-bad-signature", "test_unauthorized_bad_signature",
                 lambda val, vsp: c.token(val, vsp, key=c.other_key))
    unauthorized("unauth-unknown-issuer", "test_unauthorized_unknown_issuer",
                 lambda val, vsp: c.token(val, vsp, iss="https://unknown.test"))
    unauthorized("unauth-alg-none", "test_unauthorized_alg_none[empty-signature]",
                 lambda val, vsp: c.token(val, vsp, alg="none"))
    unauthorized("unauth-alg-none-signed", "test_unauthorized_alg_none[with-signature]",
                 lambda val, vsp: c.token(val, vsp, alg="none")
                 + c.token(val, vsp).rsplit(".", 1)[1])
    unauthorized("unauth-expired", "test_unauthorized_expired_beyond_leeway",
                 lambda val, vsp: c.token(val, vsp, iat=c.now - 600, nbf=c.now - 600,
                                          exp=c.now - 120))
    unauthorized("unauth-client-id", "test_unauthorized_client_id_of_another_val_server",
                 lambda val, vsp: c.token(val + "-other", vsp))
    unauthorized("unauth-no-skeyprov", "test_unauthorized_no_skeyprov",
                 lambda val, vsp: c.token(val, vsp, SKeyProv=None))
    unauthorized("unauth-scope", "test_unauthorized_scope_without_ss_kpp",
                 lambda val, vsp: c.token(val, vsp, scope="openid ss-kppx kpp"))

    # NOT_ALLOWED_BY_SLA
    vsp, val = simple("sla-no-sla-for-service", ["svc-a"])
    k = c.case("sla-no-sla-for-service", src + "test_sla_no_sla_for_the_service", val)
    c.fail(k, c.request("sla-no-sla-for-service", val, [("svc-z", "JWK")], vsp),
           "NOT_ALLOWED_BY_SLA")

    vsp, val = simple("sla-expired", ["svc-a"], valid_from="2020-01-01T00:00:00Z",
                      valid_until="2021-01-01T00:00:00Z")
    k = c.case("sla-expired", src + "test_sla_expired", val)
    c.fail(k, c.request("sla-expired", val, [("svc-a", "JWK")], vsp), "NOT_ALLOWED_BY_SLA")

    vsp, val = simple("sla-revoked", ["svc-a"], ("JWK",), revoked=True)
    k = c.case("sla-revoked", src + "test_sla_revoked", val)
    c.fail(k, c.request("sla-revoked", val, [("svc-a", "JWK")], vsp), "NOT_ALLOWED_BY_SLA")

    # Two VAL servers of one provider with room for one: which one is
    # admitted depends on the order, so all three go to one partition.
    vsp = c.provider("vsp-sla-max", ["svc-a"], ("JWK",), max_val_servers=1)
    first, second = "val-sla-max-first", "val-sla-max-second"
    k = c.case("sla-max", src + "test_sla_provider_at_max_val_servers", first)
    c.ok(k, c.request("sla-max/1", first, [("svc-a", "JWK")], vsp), partition=0)
    c.fail(k, c.request("sla-max/2", second, [("svc-a", "JWK")], vsp), "NOT_ALLOWED_BY_SLA",
           partition=0)
    c.ok(k, c.request("sla-max/3", first, [("svc-a", "JWK")], vsp), partition=0)

    vsp, val = simple("sla-partly-covered", ["svc-a"])
    k = c.case("sla-partly-covered",
               src + "test_sla_one_service_covered_one_not_applies_nothing", val)
    c.ok(k, c.request("sla-partly-covered/1", val, [("svc-a", "JWK")], vsp))
    c.fail(k, c.request("sla-partly-covered/2", val, [("svc-a", "RAW"), ("svc-x", "JWK")], vsp,
                        endpoint=f"https://{val}.vals.test/moved"), "NOT_ALLOWED_BY_SLA")

    # KEY_FORMAT_NOT_ALLOWED
    vsp, val = simple("key-format", ["svc-a", "svc-b"], ("JWK",))
    k = c.case("key-format", src + "test_key_format_not_allowed", val)
    c.fail(k, c.request("key-format", val, [("svc-a", "JWK"), ("svc-b", "PKCS8")], vsp),
           "KEY_FORMAT_NOT_ALLOWED")

    # idempotency
    vsp, val = simple("idem-replay", ["svc-a"])
    k = c.case("idem-replay", src + "test_same_request_id_same_content_replays", val)
    req = c.request("idem-replay", val, [("svc-a", "JWK")], vsp)
    c.ok(k, req)
    c.ok(k, req)
    c.ok(k, dict(req, credentials={"accessToken": c.token(val, vsp, jti="renewed")},
                 sentAt=req["sentAt"] + 1500))

    vsp, val = simple("idem-conflict", ["svc-a"])
    k = c.case("idem-conflict", src + "test_same_request_id_other_content_conflicts", val)
    req = c.request("idem-conflict", val, [("svc-a", "JWK")], vsp)
    c.ok(k, req)
    c.fail(k, dict(req, valServices=[kmswire.service("svc-a", "RAW")]), "REQUEST_ID_CONFLICT")

    # reply routing
    vsp, val = simple("reply-topic", ["svc-a"])
    k = c.case("reply-topic", src + "test_reply_topic", val)
    c.ok(k, c.request("reply-topic", val, [("svc-a", "JWK")], vsp),
         headers=[("kafka_replyTopic", REPLY_TOPIC.encode())], topic="replies")

    vsp, val = simple("reply-partition", ["svc-a"])
    k = c.case("reply-partition", src + "test_reply_partition", val)
    for p in (3, 0, 2):
        c.ok(k, c.request(f"reply-partition/{p}", val, [("svc-a", "JWK")], vsp),
             headers=[("kafka_replyTopic", REPLY_TOPIC.encode()),
                      ("kafka_replyPartition", struct.pack(">i", p))], topic="replies")

    vsp, val = simple("reply-correlation", ["svc-a"])
    k = c.case("reply-correlation", src + "test_correlation_id_echoed_byte_for_byte", val)
    c.ok(k, c.request("reply-correlation", val, [("svc-a", "JWK")], vsp),
         headers=[("kafka_correlationId", b"\xff\xfe\x00\x80\xc3(corr\x00id\xff")])

    # A refused reply topic: an internal name and an illegal one (the
    # pipeline test's own requests topic has another name in every world).
    vsp, val = simple("reply-refused", ["svc-a"])
    k = c.case("reply-refused", src + "test_refused_reply_topic_goes_to_default", val)
    for i, topic in enumerate(("__golden_internal", "not a topic!")):
        c.ok(k, c.request(f"reply-refused/{i}", val, [("svc-a", "JWK")], vsp),
             headers=[("kafka_replyTopic", topic.encode())])
    # A kafka_replyPartition of 3 bytes: ignored, the reply topic kept (what
    # service_decide.c's route_reply does and the README's reply routing says).
    c.ok(k, c.request("reply-refused/partition", val, [("svc-a", "JWK")], vsp),
         headers=[("kafka_replyTopic", REPLY_TOPIC.encode()),
                  ("kafka_replyPartition", b"\x00\x01\x02")], topic="replies")

    vsp, val = simple("cloudevents", ["svc-a"])
    k = c.case("cloudevents", src + "test_cloudevents_headers", val)
    c.ok(k, c.request("cloudevents/1", val, [("svc-a", "JWK")], vsp))
    c.ok(k, c.request("cloudevents/2", val, [("svc-a", "RAW")], vsp))

    # undecodable values
    vsp, val = simple("undecodable-dlq", ["svc-a"])
    k = c.case("undecodable-dlq", src + "test_undecodable_value_goes_to_dlq", val)
    c.send(k, kmswire.REQUEST.header() + kmswire.avro_long(1 << 40) + b"\x00" * 5, key=val,
           headers=[("trace", b"\x00\xfftrace"), ("ce_id", b"req-1")])
    c.ok(k, c.request("undecodable-dlq/next", val, [("svc-a", "JWK")], vsp))

    val = "val-undecodable-readable"
    k = c.case("undecodable-readable",
               src + "test_undecodable_value_with_readable_ids_gets_dlq_and_result", val)
    r = rid("undecodable-readable")
    c.send(k, kmswire.REQUEST.header() + kmswire.avro_string(r) + kmswire.avro_string(val)
           + kmswire.avro_long(100) + b"https://", key=val, request_id=r,
           expect=("FAILURE", "INVALID_REQUEST"))


def _filler(rng, n):
    """n characters no compression shrinks, the same in every regeneration."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return "".join(rng.choice(alphabet) for _ in range(n))


def hostile_cases(c):
    """test_hostile_values.py, one case per test (per parameter)."""
    src = "test_hostile_values.py::"
    vsp = c.provider("vsp-hostile", ["svc-a", "svc-b"], ("JWK", "RAW"), max_val_servers=1000)
    invalid = ("FAILURE", "INVALID_REQUEST")
    n = {"i": 0}

    def base(ident):
        n["i"] += 1
        label = f"{ident}/{n['i']}"
        req = c.request(label, ident, [kmswire.service("svc-a", "JWK", "1.0", JWK)], vsp,
                        supp_feat="0a")
        return req, hostile.layout(req)

    def round_(label, test, build, headers=HOSTILE_HEADERS, key="ident"):
        """build(ident) -> [(value, requestId, readable)]; then the next
        valid request of the same VAL server, which must succeed."""
        ident = f"hv-{label}"
        k = c.case(label, src + test, ident)
        for value, r, readable in build(ident):
            c.send(k, value, key=ident if key == "ident" else key, headers=headers,
                   request_id=r, expect=invalid if readable else None)
        c.ok(k, c.request(f"{label}/next", ident, [("svc-a", "JWK")], vsp))

    def framing(ident):
        req, lay = base(ident)
        r, datum = req["requestId"], lay.value()[10:]
        return [(lay.replace("magic", b"\xc3\x02").value(), r, False),
                (lay.replace("magic", b"\x00\x00").value(), r, False),
                (lay.replace("magic", b"\x01\xc3").value(), r, False),
                (b"\x00\x00\x00\x00\x07" + datum, r, False),
                (datum, r, False)]
    round_("wrong-magic", "test_wrong_magic_bytes", framing)

    def fingerprint(ident):
        out = []
        for i, fp in enumerate((None, bytes(8), kmswire.RESPONSE.fingerprint)):
            req, lay = base(ident)
            if fp is None:
                fp = bytearray(lay.get("fingerprint"))
                fp[0] ^= 0x01
            out.append((lay.replace("fingerprint", bytes(fp)).value(), req["requestId"],
                        i < 2))
        return out
    round_("unknown-fingerprint", "test_unknown_fingerprint", fingerprint)

    # every proper prefix, then the whole value with the same requestId
    ident = "hv-truncated"
    k = c.case("truncated", src + "test_truncated_at_every_length", ident)
    req, lay = base(ident)
    value = lay.value()
    readable_from = lay.end("requesterIdentity")
    for i in range(1, len(value)):
        c.send(k, value[:i], key=ident, headers=HOSTILE_HEADERS, request_id=req["requestId"],
               expect=invalid if i >= readable_from else None)
    c.ok(k, req)

    def trailing(ident):
        out = []
        for extra in (lambda v: b"\x00", lambda v: bytes(range(100)), lambda v: v[10:]):
            req, lay = base(ident)
            v = lay.value()
            out.append((v + extra(v), req["requestId"], True))
        return out
    round_("trailing-bytes", "test_trailing_bytes_after_a_valid_datum", trailing)

    def under_limit(ident):
        # test_undecodable_value_just_under_the_default_size_limit: an
        # undecodable value of 1,040,000 bytes (one trailing byte)
        rng = random.Random(1040000)
        req = c.request("under-limit", ident,
                        [kmswire.service("svc-a", "JWK", None, {"k000": _filler(rng, 8000)})],
                        vsp)
        content = req["valServices"][0]["keyFormat"]["content"]
        i = 1
        while len(kmswire.encode_request(req)) < 1040000 - 1 - 9000:
            content[f"k{i:03d}"] = _filler(rng, 8000)
            i += 1
        req = hostile.pad_request_to(req, 1040000 - 1)
        v = kmswire.encode_request(req) + b"\x00"
        assert len(v) == 1040000
        return [(v, req["requestId"], True)]
    round_("under-size-limit", "test_undecodable_value_just_under_the_default_size_limit",
           under_limit)

    def string_lengths(ident):
        out = []

        def add(mutate, readable):
            req, lay = base(ident)
            out.append((mutate(lay).value(), req["requestId"], readable))
        for f, readable in (("requestId", False), ("requesterIdentity", False),
                            ("endpoint", True), ("accessToken", True),
                            ("valServices[0].valServiceId", True),
                            ("valServices[0].formatVersion", True),
                            ("valServices[0].content[0].key", True),
                            ("valServices[0].content[1].value", True), ("suppFeat", True)):
            add(lambda lay, f=f: lay.replace(f + ".len", kmswire.avro_long(-1)), readable)
            add(lambda lay, f=f: lay.replace(f + ".len", kmswire.avro_long(len(lay) + 1)),
                readable)
        overlong = b"\xff" * 10 + b"\x01"
        add(lambda lay: lay.replace("requestId.len", kmswire.avro_long(1 << 62)), False)
        add(lambda lay: lay.replace("endpoint.len", kmswire.avro_long(-(1 << 63))), True)
        add(lambda lay: lay.replace("requesterIdentity.len", overlong), False)
        add(lambda lay: lay.replace("accessToken.len", overlong), True)
        add(lambda lay: lay.replace("sentAt", overlong), True)
        return out
    round_("string-lengths", "test_string_lengths_negative_or_past_the_value", string_lengths)

    def block_lengths(ident):
        out = []

        def add(mutate):
            req, lay = base(ident)
            out.append((mutate(lay).value(), req["requestId"], True))

        def neg_services(lay, delta):
            o = hostile.negative_block(lay, "valServices.count",
                                       "valServices[0].valServiceId.len",
                                       "valServices[0].content.end")
            size = hostile._read_long(o.get("valServices.count.size"))
            return o.replace("valServices.count.size", kmswire.avro_long(size + delta))

        def neg_content(lay, delta):
            o = hostile.negative_block(lay, "valServices[0].content.count",
                                       "valServices[0].content[0].key.len",
                                       "valServices[0].content[2].value")
            size = hostile._read_long(o.get("valServices[0].content.count.size"))
            return o.replace("valServices[0].content.count.size",
                             kmswire.avro_long(size + delta))
        add(lambda lay: lay.replace("valServices.count", kmswire.avro_long(2)))
        add(lambda lay: lay.replace("valServices.count", kmswire.avro_long(1 << 40)))
        add(lambda lay: lay.replace("valServices.count", kmswire.avro_long(-(1 << 40))))
        add(lambda lay: lay.replace("valServices.count", kmswire.avro_long(999)))
        add(lambda lay: neg_services(lay, 1000))
        add(lambda lay: neg_services(lay, -3))
        add(lambda lay: neg_services(lay, -hostile._read_long(
            neg_services(lay, 0).get("valServices.count.size")) - 5))
        add(lambda lay: lay.replace("valServices[0].content.count", kmswire.avro_long(4)))
        add(lambda lay: lay.replace("valServices[0].content.count", kmswire.avro_long(1 << 31)))
        add(lambda lay: neg_content(lay, 7))
        add(lambda lay: lay.replace("valServices[0].content.end", b""))
        return out
    round_("block-lengths", "test_array_and_map_lengths_negative_or_past_the_value",
           block_lengths)

    # valid Avro in the other block form: served
    ident = "hv-negative-blocks"
    k = c.case("negative-blocks", src + "test_negative_block_counts_with_true_sizes_are_valid_avro",
               ident)
    req, lay = base(ident)
    lay = hostile.negative_block(lay, "valServices[0].content.count",
                                 "valServices[0].content[0].key.len",
                                 "valServices[0].content[2].value")
    lay = hostile.negative_block(lay, "valServices.count", "valServices[0].valServiceId.len",
                                 "valServices[0].content.end")
    c.send(k, lay.value(), key=ident, request_id=req["requestId"], expect=("SUCCESS", None))

    bad_utf8 = {"lone continuation byte": b"ab\x80cd", "overlong encoding of /": b"ab\xc0\xafcd",
                "UTF-16 surrogate": b"ab\xed\xa0\x80cd",
                "beyond U+10FFFF": b"ab\xf4\x90\x80\x80cd",
                "truncated sequence at the end": b"abcd\xe2\x82", "0xFF byte": b"ab\xffcd",
                "NUL byte": b"ab\x00cd"}
    for f, readable in (("requestId", False), ("requesterIdentity", False), ("endpoint", True),
                        ("accessToken", True), ("valServices[0].valServiceId", True),
                        ("valServices[0].formatVersion", True),
                        ("valServices[0].content[0].key", True),
                        ("valServices[0].content[0].value", True), ("suppFeat", True)):
        def utf8(ident, f=f, readable=readable):
            out = []
            for raw in bad_utf8.values():
                req, lay = base(ident)
                if f == "requestId":
                    raw = (req["requestId"][:10].encode() + raw
                           + req["requestId"][10 + len(raw):].encode())
                out.append((lay.set_string(f, raw).value(), req["requestId"], readable))
            return out
        name = f.replace("[0]", "").replace(".", "-")
        round_(f"utf8-{name}", f"test_invalid_utf8_in_strings[{f}]", utf8)

    def unions(ident):
        out = []
        for f in ("suppFeat", "valServices[0].formatVersion"):
            for idx in (2, 3, -1, 1 << 31, -(1 << 40)):
                req, lay = base(ident)
                out.append((lay.replace(f + ".branch", kmswire.avro_long(idx)).value(),
                            req["requestId"], True))
            req, lay = base(ident)
            out.append((lay.replace(f + ".branch", kmswire.avro_long(0)).value(),
                        req["requestId"], True))
        return out
    round_("union-branch", "test_union_branch_index_out_of_range", unions)

    def enums(ident):
        out = []
        for idx in (len(kmswire.KEY_FORMAT_TYPES), 10, 127, -1, 1 << 31, -(1 << 62)):
            req, lay = base(ident)
            out.append((lay.replace("valServices[0].formatType", kmswire.avro_long(idx)).value(),
                        req["requestId"], True))
        return out
    round_("enum-symbol", "test_enum_symbol_out_of_range", enums)

    def many_services(ident):
        req = c.request("many-services", ident,
                        [kmswire.service(f"svc-{i:05d}", "JWK") for i in range(10000)], vsp)
        return [(kmswire.encode_request(req), req["requestId"], True)]
    round_("ten-thousand-services", "test_ten_thousand_services_in_one_request", many_services)

    def empty(ident):
        req, _ = base(ident)
        return [(b"", req["requestId"], False), (None, req["requestId"], False)]
    round_("empty-value", "test_empty_value", empty)

    # A null key lands on a random partition: the case is alone on its
    # VAL server, so its order against others does not matter.
    ident = "hv-null-key"
    k = c.case("null-key", src + "test_null_key", ident)
    req, lay = base(ident)
    c.send(k, lay.value(), key=None, headers=HOSTILE_HEADERS, request_id=req["requestId"],
           expect=invalid, partition=0)
    req, lay = base(ident)
    c.send(k, lay.replace("valServices[0].formatType", kmswire.avro_long(99)).value(), key=None,
           headers=HOSTILE_HEADERS, request_id=req["requestId"], expect=invalid, partition=0)
    c.ok(k, c.request("null-key/next", ident, [("svc-a", "JWK")], vsp))


def build(key, other_key):
    c = Corpus(key, other_key)
    pipeline_cases(c)
    hostile_cases(c)
    return c


# ---------------------------------------------------------------- running


def valctl(*args, timeout=600, check=True):
    binary = os.path.join(REPO, os.environ.get("KMS_BUILD", "build"), "valctl")
    cp = subprocess.run([binary, *[str(a) for a in args]], capture_output=True, text=True,
                        timeout=timeout)
    if check and cp.returncode != 0:
        raise AssertionError(f"valctl {args[0]} exited {cp.returncode}: {cp.stderr.strip()}")
    return cp


def apply_setup(kms, spec):
    """Providers and SLAs of setup.json, in its order, through kmsctl."""
    for p in spec["providers"]:
        kms.provider(p["vsp_id"])
        for s in p["slas"]:
            sla_id = kms.sla(p["vsp_id"], s["services"], s["key_formats"],
                             s["max_val_servers"], s.get("valid_from"), s.get("valid_until"))
            if s.get("revoked"):
                kms.kmsctl("sla", "revoke", str(sla_id))


def reset_reply_topic(stack):
    """The reply topic the corpus names, empty: its name is in the
    recorded headers, so it cannot be one of a world's own."""
    stack.delete_topics([REPLY_TOPIC])
    deadline = time.monotonic() + 60
    while True:
        try:
            stack.create_topics({REPLY_TOPIC: PARTITIONS["replies"]})
            return
        except Exception:
            # a deleted topic takes a moment to go
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _ends(stack, topic):
    c = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": "golden-" + secrets.token_hex(4),
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=10)
        parts = sorted(md.topics[topic].partitions)
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in parts}
    finally:
        c.close()


def wait_drained(kms, timeout=300):
    """Until the KM-S's group has committed the end of every requests
    partition: every request decided and its Result published."""
    ends = _ends(kms.stack, kms.requests_topic)
    c = Consumer({"bootstrap.servers": kms.stack.bootstrap, "group.id": kms.group_id,
                  "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + timeout
        while True:
            got = c.committed([TopicPartition(kms.requests_topic, p) for p in ends], timeout=10)
            lag = sum(max(0, ends[t.partition] - max(t.offset, 0)) for t in got)
            if lag == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the KM-S left {lag} requests undecided after {timeout}s")
            if not kms.running:
                raise AssertionError("the KM-S stopped")
            time.sleep(0.5)
    finally:
        c.close()


def count_records(stack, topic, timeout=60):
    """How many committed records the topic holds."""
    ends = _ends(stack, topic)
    c = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": "golden-" + secrets.token_hex(4),
                  "isolation.level": "read_committed", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        n, eof = 0, set(p for p, e in ends.items() if e == 0)
        deadline = time.monotonic() + timeout
        while len(eof) < len(ends):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end")
            for m in c.consume(500, 0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
                        continue
                    raise AssertionError(str(m.error()))
                n += 1
        return n
    finally:
        c.close()


def record(stack, topic, out):
    """valctl record of the whole topic; returns the number of lines."""
    n = count_records(stack, topic)
    if n == 0:
        open(out, "w").close()
        return 0
    valctl("record", "-b", stack.bootstrap, "--topic", topic, "--from-beginning", "--out", out,
           "--count", n, "--idle-exit", 120)
    with open(out) as f:
        got = sum(1 for _ in f)
    assert got == n, f"recorded {got} of {n} records of {topic}"
    return n


def _produce(stack, topic, msgs):
    p = Producer({"bootstrap.servers": stack.bootstrap, "partitioner": "murmur2_random",
                  "linger.ms": 5, "enable.idempotence": True, "message.max.bytes": 2 * 1048576})
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)

    for m in msgs:
        kw = {"key": m.key, "value": m.value, "on_delivery": on_delivery}
        if m.headers:
            kw["headers"] = m.headers
        if m.partition is not None:
            kw["partition"] = m.partition
        while True:
            try:
                p.produce(topic, **kw)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(120) == 0 and not errors, f"produce failed: {errors[:3]}"


def _load_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)


def _write_key(folder):
    p = paths(folder)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    with open(p["key"], "w") as f:
        f.write(KEY_BANNER + "\n" + pem)
    with open(p["pub"], "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    with open(p["issuers"], "w") as f:
        json.dump([{"iss": ISSUER, "kid": KID, "public_key_file": os.path.basename(p["pub"])}],
                  f, indent=2)
        f.write("\n")


def _check_expectations(corpus, results_path, replies_path):
    """Each case's Results are the ones its test expects, in order; no
    Result is unexpected."""
    got = {}
    for topic, path in (("results", results_path), ("replies", replies_path)):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                resp = kmswire.decode_response(base64.b64decode(rec["value"]))
                got.setdefault(resp["requestId"], []).append(
                    (resp["result"], resp["cause"], topic))
    want = {}
    for case in corpus.cases:
        for r, result, cause, topic in case.expect:
            want.setdefault(r, []).append((result, cause, topic))
    problems = []
    for r in sorted(set(got) | set(want)):
        if got.get(r) != want.get(r):
            problems.append(f"{r}: got {got.get(r)}, expected {want.get(r)}")
    if problems:
        raise AssertionError("the Results are not the ones the tests expect:\n"
                             + "\n".join(problems[:40]))


def _runs(expect):
    """The expected Results of a case, a run of equal ones as one entry."""
    out = []
    for r, res, cause, t in expect:
        if out and out[-1][:4] == [r, res, cause, t]:
            out[-1][4] += 1
        else:
            out.append([r, res, cause, t, 1])
    return [{"requestId": r, "result": res, "cause": cause, "topic": t, "count": n}
            for r, res, cause, t, n in out]


def generate(folder, new_key=False):
    """Record the corpus and its Results into folder."""
    import conftest  # the worlds of the tests: database, topics, KM-S

    os.makedirs(folder, exist_ok=True)
    p = paths(folder)
    if new_key or not os.path.exists(p["key"]):
        _write_key(folder)
    corpus = build(_load_key(p["key"]), ec.generate_private_key(ec.SECP256R1()))
    spec = {"providers": [{"vsp_id": v, "slas": s} for v, s in corpus.providers.items()]}

    stack, _ = conftest._stack_from_env_or_up(None)
    kms = conftest.Kms(stack, requests_partitions=PARTITIONS["requests"],
                       results_partitions=PARTITIONS["results"])
    try:
        kms.issuers_file = p["issuers"]
        apply_setup(kms, spec)
        reset_reply_topic(stack)
        kms.start()
        _produce(stack, kms.requests_topic, corpus.msgs)
        wait_drained(kms)
        tmp = kms.tmpdir
        out = {k: os.path.join(tmp, os.path.basename(p[k]))
               for k in ("requests", "results", "replies")}
        n_req = record(stack, kms.requests_topic, out["requests"])
        assert n_req == len(corpus.msgs), (n_req, len(corpus.msgs))
        record(stack, kms.results_topic, out["results"])
        record(stack, REPLY_TOPIC, out["replies"])
        _check_expectations(corpus, out["results"], out["replies"])
        for k in out:
            shutil.copyfile(out[k], p[k])
    finally:
        kms.close()
        stack.delete_topics([REPLY_TOPIC])
    with open(p["setup"], "w") as f:
        json.dump(spec, f, indent=1)
        f.write("\n")
    with open(p["cases"], "w") as f:
        json.dump({"left_out": LEFT_OUT, "cases": [
            {"label": k.label, "test": k.source, "requesterIdentity": k.identity,
             "messages": k.messages, "results": _runs(k.expect)} for k in corpus.cases]},
            f, indent=1)
        f.write("\n")
    return corpus


def main():
    ap = argparse.ArgumentParser(description="Regenerate the golden corpus.")
    ap.add_argument("folder", nargs="?", default=FIXTURES)
    ap.add_argument("--new-key", action="store_true",
                    help="make a new development issuer key too")
    a = ap.parse_args()
    corpus = generate(a.folder, a.new_key)
    results = sum(len(k.expect) for k in corpus.cases)
    print(f"golden corpus: {len(corpus.cases)} cases, {len(corpus.msgs)} requests, "
          f"{results} Results, in {a.folder}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
