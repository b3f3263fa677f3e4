"""End to end with a client the KM-S team did not write.

The client (tests/python/e2e_client) is built from the wire contract and the
.avsc files alone: Avro single-object encoding with fastavro, access tokens
with PyJWT, Kafka request/reply with confluent-kafka in the manner of Spring's
ReplyingKafkaTemplate. It shares no code with the service.

Fifty VAL servers of two providers (vsp-a: svc.alpha and svc.beta, JWK and RAW,
at most 40 VAL servers; vsp-b: svc.gamma, JWK only, at most 5), plus one of a
third provider whose SLA was revoked, send requests whose outcome is known
beforehand: successes (one service, several services, updates), and each
failure cause of the contract. Everything is sent without waiting for any
reply, in two waves: the first fills vsp-b up to its limit of five VAL servers
(five requests, sent together), so that in the second wave the sixth vsp-b VAL
server is refused for a known reason rather than for whichever arrived last.
Every Result is then collected by kafka_correlationId and checked, field by
field and header by header, and `kmsctl --json` must show exactly the VAL
servers that succeeded, with exactly the expected current key format of each
VAL service and every earlier version, one decision per requestId equal to the
Result sent, one audit record per request at the Kafka coordinates it was
produced at, and counts that add up.

The KM-S world (topics, database, trusted issuer, the kms process, kmsctl)
comes from the conftest fixtures; nothing else of the project is used.
"""

import collections
import datetime
import os
import time
import uuid

import pytest

from e2e_client import (
    CORRELATION_ID,
    DROP,
    FramingError,
    ReplyingClient,
    SchemaSet,
    TokenMinter,
    new_ec_key,
    read_whole_topic,
    tamper_signature,
)

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = os.path.join(HERE, "..", "..", "schemas")

CE_TYPE = b"org.threegpp.seal.km.provisioning.result.v1"
REPLY_PARTITIONS = 3

VSP_A, VSP_B, VSP_C = "vsp-a", "vsp-b", "vsp-c"
ALPHA, BETA, GAMMA = "svc.alpha", "svc.beta", "svc.gamma"

SUCCESS = ("SUCCESS", None)
INVALID = ("FAILURE", "INVALID_REQUEST")
UNAUTH = ("FAILURE", "UNAUTHORIZED")
NOT_SLA = ("FAILURE", "NOT_ALLOWED_BY_SLA")
BAD_FORMAT = ("FAILURE", "KEY_FORMAT_NOT_ALLOWED")
CONFLICT = ("FAILURE", "REQUEST_ID_CONFLICT")

CONTENT = {
    "JWK": {"kty": "oct", "alg": "A256GCM", "use": "enc"},
    "RAW": {"alg": "AES", "length": "256"},
    "PKCS8": {"alg": "EC", "crv": "P-256"},
}


# ---------------------------------------------------------------- the scenario


class Case:
    """One request, what it must get back, and what it does to the store."""

    def __init__(self, label, identity, vsp, request, expect, wave, value=None):
        self.label = label
        self.identity = identity
        self.vsp = vsp
        self.request = request
        self.expect = expect
        self.wave = wave
        self.value = value  # the bytes sent, when not the encoding of request
        self.reply_partition = None
        self.correlation_id = None  # None: a random one
        self.sent = None

    def __repr__(self):
        return "%s(%s)" % (self.label, self.identity)


def service(service_id, fmt, version=None, content=None):
    return {
        "valServiceId": service_id,
        "keyFormat": {
            "formatType": fmt,
            "formatVersion": version,
            "content": dict(CONTENT.get(fmt, {}) if content is None else content),
        },
    }


class Scenario:
    """Builds every case from the issuer of a KM-S world."""

    def __init__(self, kms, schemas):
        self.kms = kms
        self.req_schema = schemas["ValServerProvisioningRequest"]
        self.tokens = TokenMinter(kms.issuer, kms.issuer_key, kid=kms.kid)
        self.rogue_key = new_ec_key()
        self.rogue = TokenMinter("https://rogue.test", self.rogue_key, kid=kms.kid)
        self.cases = []
        tag = kms.prefix
        self.ident = lambda stem: "val-%s.%s.e2e.test" % (stem, tag)

    def request(self, identity, services, token=None, vsp=None, request_id=None, endpoint=None,
                supp_feat=None):
        return {
            "requestId": request_id or str(uuid.uuid4()),
            "requesterIdentity": identity,
            "endpoint": endpoint or "https://%s:8443/seal/km" % identity,
            "credentials": {
                "accessToken": token if token is not None else self.tokens.mint(identity, vsp)
            },
            "valServices": services,
            "sentAt": int(time.time() * 1000),
            "suppFeat": supp_feat,
        }

    def add(self, label, stem, vsp, services, expect, wave=2, **kw):
        identity = self.ident(stem)
        req = self.request(identity, services, vsp=vsp, **kw)
        case = Case(label, identity, vsp, req, expect, wave)
        self.cases.append(case)
        return case

    def add_raw(self, label, base, expect, value):
        """A case that re-sends bytes (identical or altered) of another case."""
        case = Case(label, base.identity, base.vsp, None, expect, base.wave, value=value)
        self.cases.append(case)
        return case

    def build(self):
        t = self.tokens
        fmts = ("JWK", "RAW")

        # vsp-b fills its SLA (max 5) in wave 1.
        for n in range(1, 6):
            self.add("vsp-b success", "b%02d" % n, VSP_B, [service(GAMMA, "JWK")], SUCCESS,
                     wave=1)

        # vsp-a: 15 VAL servers with one service.
        for n in range(1, 16):
            svc = ALPHA if n % 2 else BETA
            self.add("one service", "a%02d" % n, VSP_A, [service(svc, fmts[n % 2])], SUCCESS)
        # 8 with both services, every combination of formats.
        for n in range(16, 24):
            fa, fb = fmts[n % 2], fmts[(n // 2) % 2]
            self.add(
                "two services", "a%02d" % n, VSP_A,
                [service(ALPHA, fa, version="1"), service(BETA, fb)], SUCCESS,
            )
        # 4 updates changing one format: both JWK, then svc.alpha to RAW.
        for n in range(24, 28):
            self.add("update: first", "a%02d" % n, VSP_A,
                     [service(ALPHA, "JWK"), service(BETA, "JWK")], SUCCESS)
            self.add("update: alpha JWK->RAW", "a%02d" % n, VSP_A, [service(ALPHA, "RAW")], SUCCESS)
        # An update adding a service: svc.alpha kept as it was.
        self.add("add service: first", "a28", VSP_A, [service(ALPHA, "RAW")], SUCCESS)
        self.add("add service: beta", "a28", VSP_A, [service(BETA, "JWK")], SUCCESS)
        # Existing VAL servers whose later request fails change nothing.
        self.add("kept: first", "a29", VSP_A, [service(ALPHA, "JWK")], SUCCESS)
        self.add(
            "kept: expired token", "a29", VSP_A, [service(ALPHA, "RAW")], UNAUTH,
            token=t.mint(self.ident("a29"), VSP_A, exp=int(time.time()) - 600,
                         iat=int(time.time()) - 1200, nbf=int(time.time()) - 1200),
        )
        self.add("whole: first", "a30", VSP_A, [service(ALPHA, "JWK")], SUCCESS)
        self.add(
            "whole: alpha ok + gamma uncovered", "a30", VSP_A,
            [service(ALPHA, "RAW"), service(GAMMA, "JWK")], NOT_SLA,
        )
        # Optional parts filled in: suppFeat, formatVersion, a larger content map.
        self.add(
            "suppFeat and formatVersion", "a43", VSP_A,
            [service(BETA, "RAW", version="1.0", content={"k%02d" % i: "v" * i for i in range(20)}),
             service(ALPHA, "JWK", version="RFC7517")],
            SUCCESS, supp_feat="1f",
            token=t.mint(self.ident("a43"), VSP_A, scope="openid ss-kpp profile"),
        )
        # Idempotency: the same request twice, then its requestId with other content.
        first = self.add("idempotent: first", "a31", VSP_A,
                         [service(ALPHA, "JWK"), service(BETA, "RAW")], SUCCESS)
        first.value = self.req_schema.encode(first.request)
        self.add_raw("idempotent: same bytes again", first, SUCCESS, first.value)
        other = dict(first.request)
        other["valServices"] = [service(ALPHA, "RAW"), service(BETA, "RAW")]
        self.add_raw("idempotent: same requestId, other content", first, CONFLICT,
                     self.req_schema.encode(other))

        # INVALID_REQUEST
        self.add("empty valServices", "a32", VSP_A, [], INVALID)
        self.add("duplicate valServiceId", "a33", VSP_A,
                 [service(ALPHA, "JWK"), service(ALPHA, "RAW")], INVALID)
        self.add("relative endpoint", "a34", VSP_A, [service(ALPHA, "JWK")], INVALID,
                 endpoint="/seal/km/callback")
        self.add("malformed requestId", "a35", VSP_A, [service(ALPHA, "JWK")], INVALID,
                 request_id="not-a-uuid-%s" % self.kms.prefix)

        # UNAUTHORIZED
        ident = self.ident
        self.add("bad signature", "a36", VSP_A, [service(ALPHA, "JWK")], UNAUTH,
                 token=tamper_signature(t.mint(ident("a36"), VSP_A)))
        self.add("trusted iss, signed by another key", "a36", VSP_A, [service(ALPHA, "JWK")],
                 UNAUTH,
                 token=t.mint(ident("a36"), VSP_A, key=self.rogue_key))
        self.add("HS256", "a36", VSP_A, [service(ALPHA, "JWK")], UNAUTH,
                 token=t.mint(ident("a36"), VSP_A, algorithm="HS256", key=b"k" * 32))
        self.add("alg none", "a36", VSP_A, [service(ALPHA, "JWK")], UNAUTH,
                 token=t.mint(ident("a36"), VSP_A, algorithm="none"))
        self.add("unknown issuer", "a37", VSP_A, [service(ALPHA, "JWK")], UNAUTH,
                 token=self.rogue.mint(ident("a37"), VSP_A))
        now = int(time.time())
        self.add("expired", "a38", VSP_A, [service(ALPHA, "JWK")], UNAUTH,
                 token=t.mint(ident("a38"), VSP_A, exp=now - 300, iat=now - 900, nbf=now - 900))
        self.add("no exp", "a38", VSP_A, [service(ALPHA, "JWK")], UNAUTH,
                 token=t.mint(ident("a38"), VSP_A, exp=DROP))
        self.add("nbf in the future", "a38", VSP_A, [service(ALPHA, "JWK")], UNAUTH,
                 token=t.mint(ident("a38"), VSP_A, nbf=now + 600))
        self.add("client_id of another VAL server", "a39", VSP_A, [service(ALPHA, "JWK")], UNAUTH,
                 token=t.mint(ident("a01"), VSP_A))
        self.add("no SKeyProv", "a40", VSP_A, [service(ALPHA, "JWK")], UNAUTH,
                 token=t.mint(ident("a40"), VSP_A, SKeyProv=DROP))
        self.add("SKeyProv false", "a40", VSP_A, [service(ALPHA, "JWK")], UNAUTH,
                 token=t.mint(ident("a40"), VSP_A, SKeyProv=False))
        self.add("scope without ss-kpp", "a41", VSP_A, [service(ALPHA, "JWK")], UNAUTH,
                 token=t.mint(ident("a41"), VSP_A, scope="openid profile"))
        self.add("scope ss-kpp-admin only", "a41", VSP_A, [service(ALPHA, "JWK")], UNAUTH,
                 token=t.mint(ident("a41"), VSP_A, scope="openid ss-kpp-admin"))

        # NOT_ALLOWED_BY_SLA
        self.add("service not in the SLA", "a42", VSP_A, [service(GAMMA, "JWK")], NOT_SLA)
        self.add("token names an unknown provider", "a42", "vsp-unknown",
                 [service(ALPHA, "JWK")], NOT_SLA)
        self.add("vsp-b over its max of 5", "b06", VSP_B, [service(GAMMA, "JWK")], NOT_SLA)
        self.add("vsp-b existing, adds an uncovered service", "b03", VSP_B,
                 [service(GAMMA, "JWK"), service(ALPHA, "JWK")], NOT_SLA)
        self.add("revoked SLA of a third provider", "c01", VSP_C, [service(ALPHA, "JWK")], NOT_SLA)

        # KEY_FORMAT_NOT_ALLOWED
        self.add("RAW on svc.gamma", "b01", VSP_B, [service(GAMMA, "RAW")], BAD_FORMAT)
        self.add("PKCS8 on svc.beta", "a44", VSP_A, [service(BETA, "PKCS8")], BAD_FORMAT)

        # vsp-b at its limit: an existing VAL server may still update.
        self.add("vsp-b existing, at the limit, updates", "b02", VSP_B,
                 [service(GAMMA, "JWK", version="2",
                          content={"kty": "EC", "crv": "P-256", "use": "sig"})],
                 SUCCESS)

        # Correlation ids are opaque bytes: one that is no UTF-8 and holds a NUL
        # and the single-object marker must come back unchanged too.
        self.cases[5].correlation_id = b"\x00\xc3\x01\xff" + os.urandom(12)
        for i, case in enumerate(self.cases):
            if case.value is None:
                case.value = self.req_schema.encode(case.request)
            # A Spring template sets kafka_replyPartition when it was told its
            # reply partition; do so for every third request.
            if i % 3 == 0:
                case.reply_partition = (i // 3) % REPLY_PARTITIONS
        return self

    def expected_store(self):
        """What the store must hold after every success, in the order each VAL
        server sent its requests: {identity: {"vsp_id", "endpoint",
        "history": {service: [version, ...]}}}, a version being the fields
        `kmsctl valserver show` prints for it."""
        store = {}
        for case in self.cases:
            if case.expect != SUCCESS or case.request is None:
                continue  # a repeated request changes nothing
            vs = store.setdefault(case.identity, {"vsp_id": case.vsp, "history": {}})
            vs["endpoint"] = case.request["endpoint"]
            for s in case.request["valServices"]:
                kf = s["keyFormat"]
                versions = vs["history"].setdefault(s["valServiceId"], [])
                versions.append({
                    "val_service_id": s["valServiceId"],
                    "version": len(versions) + 1,
                    "format_type": kf["formatType"],
                    "format_version": kf["formatVersion"],
                    "content": kf["content"],
                    "request_id": case.request["requestId"],
                })
        return store


def decoded_request(case, schema):
    return case.request if case.request is not None else schema.decode(case.value)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def schemas():
    return SchemaSet(SCHEMAS)


@pytest.fixture(scope="module")
def world(kms):
    """Providers and SLAs, set up with kmsctl as an operator would."""
    kms.provider(VSP_A)
    kms.provider(VSP_B)
    kms.provider(VSP_C)
    kms.sla(VSP_A, [ALPHA, BETA], key_formats=("JWK", "RAW"), max_val_servers=40)
    kms.sla(VSP_B, [GAMMA], key_formats=("JWK",), max_val_servers=5)
    revoked = kms.sla(VSP_C, [ALPHA, BETA], key_formats=("JWK", "RAW"), max_val_servers=10)
    kms.kmsctl("sla", "revoke", revoked)
    return kms


class Run:
    pass


@pytest.fixture(scope="module")
def run(world, schemas):
    kms = world
    scenario = Scenario(kms, schemas).build()
    reply_topic = kms.create_topic("%s.e2e-client.replies" % kms.prefix,
                                   partitions=REPLY_PARTITIONS)
    client = ReplyingClient(kms.stack.bootstrap, kms.requests_topic, reply_topic, REPLY_PARTITIONS)
    r = Run()
    r.kms, r.scenario, r.client, r.schemas = kms, scenario, client, schemas
    r.reply_topic = reply_topic
    r.started_ms = int(time.time() * 1000)
    r.seconds = {}
    try:
        for wave in (1, 2):
            t0 = time.monotonic()
            cases = [c for c in scenario.cases if c.wave == wave]
            # Interleave VAL servers: all first requests, then all second ones
            # and so on; the requests of one VAL server keep their order.
            by_identity = collections.OrderedDict()
            for c in cases:
                by_identity.setdefault(c.identity, []).append(c)
            rounds = max(len(v) for v in by_identity.values())
            for k in range(rounds):
                for seq in by_identity.values():
                    if k < len(seq):
                        c = seq[k]
                        c.sent = client.send(c.identity, c.value,
                                             reply_partition=c.reply_partition,
                                             correlation_id=c.correlation_id)
            client.flush()
            t_sent = time.monotonic()
            client.collect(timeout=120, settle=1.0 if wave == 1 else 3.0)
            r.seconds[wave] = (len(cases), t_sent - t0, last_reply_seconds(client, cases, t0))
            missing = [c for c in cases if c.sent.correlation_id not in client.replies]
            assert not missing, "wave %d: %d of %d requests got no Result: %s; kms log:\n%s" % (
                wave, len(missing), len(cases), missing[:10], kms.log_text()[-3000:],
            )
        r.finished_ms = int(time.time() * 1000)
        r.results_topic_records = read_whole_topic(kms.stack.bootstrap, kms.results_topic)
        r.dlq_records = read_whole_topic(kms.stack.bootstrap, kms.dlq_topic)
        yield r
    finally:
        client.close()


def last_reply_seconds(client, cases, t0):
    """Seconds from the first send to the arrival of the last Result of `cases`."""
    times = [r.received for c in cases for r in client.replies.get(c.sent.correlation_id, [])]
    return max(times) - t0 if times else float("nan")


# ---------------------------------------------------------------- helpers


def only_reply(run, case):
    replies = run.client.replies.get(case.sent.correlation_id, [])
    assert len(replies) == 1, "%r: %d Results" % (case, len(replies))
    return replies[0]


def decode_result(run, reply):
    schema, datum = run.schemas.decode_any(reply.value)
    assert schema.full_name.endswith(".ValServerProvisioningResponse"), schema.full_name
    return datum


def counts(pairs):
    return dict(sorted(collections.Counter("%s/%s" % p if p[1] else p[0] for p in pairs).items()))


# ---------------------------------------------------------------- the tests


def test_every_request_gets_exactly_one_result(run):
    for wave, (n, sent, last) in sorted(run.seconds.items()):
        print("wave %d: %d requests produced in %.3f s, last Result %.3f s after the first send"
              % (wave, n, sent, last))
    cases = run.scenario.cases
    # The stem says whose VAL server it is (a42 also sends a token naming an
    # unknown provider, c01 is the third provider's).
    identities_a_b = {c.identity for c in cases if c.identity.startswith(("val-a", "val-b"))}
    assert len(identities_a_b) == 50, "scenario has %d VAL servers of vsp-a and vsp-b" % (
        len(identities_a_b))
    per_case = {c.label + " " + c.identity: len(run.client.replies.get(c.sent.correlation_id, []))
                for c in cases}
    wrong = {k: n for k, n in per_case.items() if n != 1}
    assert not wrong, "%d of %d requests got other than one Result: %s" % (
        len(wrong), len(cases), wrong)
    assert not run.client.strays, "%d replies on %s match no request sent (correlation ids %s)" % (
        len(run.client.strays), run.reply_topic, [s.correlation_id for s in run.client.strays[:5]])


def test_result_and_cause_of_every_request(run):
    cases = run.scenario.cases
    got, want, wrong = [], [], []
    for case in cases:
        datum = decode_result(run, only_reply(run, case))
        pair = (datum["result"], datum["cause"])
        got.append(pair)
        want.append(case.expect)
        if pair != case.expect:
            wrong.append("%s %s: got %s/%s (%r), want %s/%s" % (
                case.label, case.identity, pair[0], pair[1], datum.get("detail"), *case.expect))
    assert not wrong, "%d of %d Results differ (got %s, want %s):\n  %s" % (
        len(wrong), len(cases), counts(got), counts(want), "\n  ".join(wrong))
    # The figures the scenario is built to produce.
    assert counts(want) == {
        "SUCCESS": 44,
        "FAILURE/INVALID_REQUEST": 4,
        "FAILURE/UNAUTHORIZED": 14,
        "FAILURE/NOT_ALLOWED_BY_SLA": 6,
        "FAILURE/KEY_FORMAT_NOT_ALLOWED": 2,
        "FAILURE/REQUEST_ID_CONFLICT": 1,
    }, counts(want)


def test_result_fields_echo_the_request(run):
    cases = run.scenario.cases
    kms_id = run.kms.kms_id
    wrong = []
    for case in cases:
        reply = only_reply(run, case)
        datum = decode_result(run, reply)
        req = decoded_request(case, run.scenario.req_schema)
        token = req["credentials"]["accessToken"]
        problems = []
        if datum["requestId"] != req["requestId"]:
            problems.append("requestId %r != %r" % (datum["requestId"], req["requestId"]))
        if datum["requesterIdentity"] != req["requesterIdentity"]:
            problems.append("requesterIdentity %r" % datum["requesterIdentity"])
        if reply.key != req["requesterIdentity"].encode():
            problems.append("record key %r" % reply.key)
        if datum["kmsId"] != kms_id:
            problems.append("kmsId %r != %r" % (datum["kmsId"], kms_id))
        if not run.started_ms - 5000 <= datum["processedAt"] <= run.finished_ms + 5000:
            problems.append("processedAt %d outside [%d, %d]"
                            % (datum["processedAt"], run.started_ms, run.finished_ms))
        detail = datum["detail"]
        if datum["result"] == "FAILURE":
            if not isinstance(detail, str) or not detail.strip() or "\n" in detail:
                problems.append("detail %r is not one sentence" % (detail,))
        if isinstance(detail, str):
            for part in token.split("."):
                if len(part) >= 8 and part in detail:
                    problems.append("detail quotes the access token")
        if problems:
            wrong.append("%s %s: %s" % (case.label, case.identity, "; ".join(problems)))
    assert not wrong, "%d of %d Results do not echo their request:\n  %s" % (
        len(wrong), len(cases), "\n  ".join(wrong))


def test_result_headers(run):
    cases = run.scenario.cases
    kms_id = run.kms.kms_id.encode()
    wrong = []
    ce_ids = {}
    for case in cases:
        reply = only_reply(run, case)
        datum = decode_result(run, reply)
        problems = []
        want = {
            CORRELATION_ID: case.sent.correlation_id,
            "ce_specversion": b"1.0",
            "ce_type": CE_TYPE,
            "ce_source": kms_id,
            "content-type": b"application/avro",
        }
        for name, value in want.items():
            values = reply.headers(name)
            if values != [value]:
                problems.append("%s %r, want exactly [%r]" % (name, values, value))
        if [v.decode() if v else v for v in reply.headers("ce_source")] != [datum["kmsId"]]:
            problems.append("ce_source is not the kmsId %r" % datum["kmsId"])
        ce_id = reply.headers("ce_id")
        if len(ce_id) != 1 or not ce_id[0]:
            problems.append("ce_id %r" % ce_id)
        else:
            ce_ids.setdefault(datum["requestId"], set()).add(ce_id[0])
        ce_time = reply.headers("ce_time")
        if len(ce_time) != 1 or not ce_time[0]:
            problems.append("ce_time %r" % ce_time)
        else:
            try:
                datetime.datetime.fromisoformat(ce_time[0].decode().replace("Z", "+00:00"))
            except ValueError:
                problems.append("ce_time %r is not RFC 3339" % ce_time[0])
        if reply.topic != run.reply_topic:
            problems.append("arrived on %s, not the kafka_replyTopic %s"
                            % (reply.topic, run.reply_topic))
        if case.reply_partition is not None and reply.partition != case.reply_partition:
            problems.append("partition %d, kafka_replyPartition was %d"
                            % (reply.partition, case.reply_partition))
        if problems:
            wrong.append("%s %s: %s" % (case.label, case.identity, "; ".join(problems)))
    assert not wrong, "%d of %d Results have wrong headers:\n  %s" % (
        len(wrong), len(cases), "\n  ".join(wrong))
    # Results of distinct requestIds have distinct ce_ids.
    firsts = [next(iter(s)) for s in ce_ids.values()]
    assert len(set(firsts)) == len(firsts), "%d ce_ids shared by different requestIds" % (
        len(firsts) - len(set(firsts)))


def test_results_go_to_the_reply_topic_only(run):
    mine = {c.sent.correlation_id for c in run.scenario.cases}
    leaked = [m for m in run.results_topic_records
              if any(k == CORRELATION_ID and v in mine for k, v in (m.headers() or []))]
    assert not leaked, "%d of our Results also went to the default results topic %s" % (
        len(leaked), run.kms.results_topic)


def test_idempotent_repeat_and_conflict(run):
    cases = {c.label: c for c in run.scenario.cases if c.label.startswith("idempotent")}
    first = only_reply(run, cases["idempotent: first"])
    again = only_reply(run, cases["idempotent: same bytes again"])
    conflict = only_reply(run, cases["idempotent: same requestId, other content"])
    assert again.value == first.value, "repeated request: Result %s differs from the first %s" % (
        decode_result(run, again), decode_result(run, first))
    assert again.header("ce_id") == first.header("ce_id"), "repeated Result has another ce_id"
    assert again.correlation_id != first.correlation_id
    d = decode_result(run, conflict)
    assert (d["result"], d["cause"]) == CONFLICT, d
    assert d["requestId"] == decode_result(run, first)["requestId"]


def test_framing_of_every_result(run):
    want = run.schemas["ValServerProvisioningResponse"].header
    bad = []
    for case in run.scenario.cases:
        value = only_reply(run, case).value
        if value[:10] != want:
            bad.append("%s: header %s" % (case.label, value[:10].hex()))
            continue
        try:
            run.schemas["ValServerProvisioningResponse"].decode(value)
        except (FramingError, ValueError, EOFError) as e:
            bad.append("%s: %s" % (case.label, e))
    assert not bad, "%d of %d Results are not single-object encoded Responses (%s): %s" % (
        len(bad), len(run.scenario.cases), want.hex(), bad[:10])


def test_dlq_holds_nothing_of_a_valid_request(run):
    """The contract lets a value that breaks the request rules go to the DLQ
    as well as get its FAILURE Result; anything else must not be there."""
    may = {c.value for c in run.scenario.cases if c.expect == INVALID}
    ours = {c.value for c in run.scenario.cases}
    wrong = [m for m in run.dlq_records if m.value() in ours and m.value() not in may]
    assert not wrong, "%d valid requests in the DLQ (%d DLQ records in all): keys %s" % (
        len(wrong), len(run.dlq_records), [m.key() for m in wrong[:10]])


def token_parts(run):
    """The signature of every access token sent (the part that must never leak)."""
    parts = set()
    for case in run.scenario.cases:
        token = decoded_request(case, run.scenario.req_schema)["credentials"]["accessToken"]
        sig = token.split(".")[-1]
        if len(sig) >= 16:
            parts.add(sig)
    return parts


def test_no_token_in_the_kms_log(run):
    log = run.kms.log_text()
    assert log, "the KM-S wrote no log"
    leaked = [p for p in token_parts(run) if p in log]
    assert not leaked, "%d of %d token signatures appear in the KM-S log" % (
        len(leaked), len(token_parts(run)))


# ---------------------------------------------------------------- kmsctl
#
# Shapes as `kmsctl --json` documents them: valserver list [{requester_identity,
# vsp_id, endpoint, first_provisioned_at, last_provisioned_at, services: {SVC:
# {format_type, format_version, content, version}}}], valserver show the same
# object plus history, decision and audit per requestId and per identity.

NOT_FOUND = 4  # kmsctl's exit code for "not found"


def identity_suffix(run):
    return ".%s.e2e.test" % run.kms.prefix


def first_result_by_request_id(run):
    """{requestId: decoded Result} of the first request sent with that id."""
    out = {}
    for case in run.scenario.cases:
        rid = decoded_request(case, run.scenario.req_schema)["requestId"]
        if rid not in out:
            out[rid] = decode_result(run, only_reply(run, case))
    return out


def is_uuid(text):
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


def test_valserver_list_holds_exactly_the_successful_val_servers(run):
    expected = run.scenario.expected_store()
    listing = run.kms.kmsctl("valserver", "list")
    assert isinstance(listing, list), "valserver list is not a JSON array: %r" % (listing,)
    got = collections.Counter(e["requester_identity"] for e in listing)
    twice = sorted(i for i, n in got.items() if n > 1)
    assert not twice, "valserver list shows %d identities more than once: %s" % (len(twice), twice)
    failed_only = {c.identity for c in run.scenario.cases} - set(expected)
    assert (len(expected), len(failed_only)) == (37, 14), (len(expected), len(failed_only))
    assert set(got) == set(expected), (
        "valserver list has %d VAL servers, expected exactly the %d that succeeded; "
        "missing %s; unexpected %s (of which %d failed every request)" % (
            len(got), len(expected), sorted(set(expected) - set(got)),
            sorted(set(got) - set(expected)), len(set(got) & failed_only)))
    per_vsp = collections.Counter(e["vsp_id"] for e in listing)
    assert per_vsp == {VSP_A: 32, VSP_B: 5}, "VAL servers per provider: %s" % dict(per_vsp)
    by_vsp = {vsp: {e["requester_identity"]
                    for e in run.kms.kmsctl("valserver", "list", "--provider", vsp)}
              for vsp in (VSP_A, VSP_B, VSP_C)}
    assert {k: len(v) for k, v in by_vsp.items()} == {VSP_A: 32, VSP_B: 5, VSP_C: 0}, by_vsp

    wrong = []
    for e in listing:
        ident = e["requester_identity"]
        want = expected[ident]
        if e["vsp_id"] != want["vsp_id"] or e["endpoint"] != want["endpoint"]:
            wrong.append("%s: vsp_id %r endpoint %r, want %r %r" % (
                ident, e["vsp_id"], e["endpoint"], want["vsp_id"], want["endpoint"]))
        current = {svc: {k: v[-1][k]
                         for k in ("format_type", "format_version", "content", "version")}
                   for svc, v in want["history"].items()}
        if e["services"] != current:
            wrong.append("%s: services %s, want %s" % (ident, e["services"], current))
        if not e["first_provisioned_at"] or e["first_provisioned_at"] > e["last_provisioned_at"]:
            wrong.append("%s: provisioned %r .. %r" % (
                ident, e["first_provisioned_at"], e["last_provisioned_at"]))
    assert not wrong, "%d of %d VAL servers differ from what their requests set:\n  %s" % (
        len(wrong), len(expected), "\n  ".join(wrong))
    formats = collections.Counter(
        kf["format_type"] for e in listing for kf in e["services"].values())
    assert formats == {"JWK": 29, "RAW": 23}, "current key formats: %s" % dict(formats)


def test_valserver_show_keeps_every_version(run):
    expected = run.scenario.expected_store()
    wrong = []
    for ident, want in sorted(expected.items()):
        shown = run.kms.kmsctl("valserver", "show", ident)
        history = [{k: h[k] for k in ("val_service_id", "version", "format_type",
                                      "format_version", "content", "request_id")}
                   for h in shown["history"]]
        want_history = [v for svc in sorted(want["history"]) for v in want["history"][svc]]
        if history != want_history:
            wrong.append("%s: history %s, want %s" % (ident, history, want_history))
    assert not wrong, "%d of %d VAL servers show another history:\n  %s" % (
        len(wrong), len(expected), "\n  ".join(wrong))
    updated = sorted(i for i, w in expected.items()
                     if any(len(v) > 1 for v in w["history"].values()))
    assert len(updated) == 5, "VAL servers with an earlier version kept: %d (%s)" % (
        len(updated), updated)


def test_nothing_stored_of_a_failed_val_server(run):
    failed_only = sorted({c.identity for c in run.scenario.cases}
                         - set(run.scenario.expected_store()))
    shown = {}
    for ident in failed_only:
        rc, out, err = run.kms.kmsctl_raw("valserver", "show", ident)
        if rc != NOT_FOUND:
            shown[ident] = (rc, out.strip()[:200])
    assert not shown, "%d of %d VAL servers whose every request failed are known to kmsctl: %s" % (
        len(shown), len(failed_only), shown)


def test_one_decision_per_request_id(run):
    firsts = first_result_by_request_id(run)
    wrong = []
    checked = 0
    for rid, result in firsts.items():
        if not is_uuid(rid):
            continue  # a malformed requestId is no idempotency key
        checked += 1
        d = run.kms.kmsctl("decision", rid)
        want = {"request_id": rid, "requester_identity": result["requesterIdentity"],
                "result": result["result"], "cause": result["cause"], "detail": result["detail"],
                "kms_id": result["kmsId"], "processed_at": result["processedAt"]}
        got = {k: d.get(k) for k in want}
        if got != want:
            wrong.append("%s: decision %s, Result %s" % (rid, got, want))
    assert checked == 68, "%d well-formed requestIds" % checked
    assert not wrong, "%d of %d decisions differ from the Result sent:\n  %s" % (
        len(wrong), checked, "\n  ".join(wrong))


def test_audit_trail_of_every_val_server(run):
    """One audit record per request consumed, at the Kafka coordinates the
    request was produced at, with the decision its Result carried."""
    by_identity = collections.OrderedDict()
    for case in run.scenario.cases:
        by_identity.setdefault(case.identity, []).append(case)
    outcome = {"idempotent: same bytes again": "REPLAYED",
               "idempotent: same requestId, other content": "CONFLICT"}
    wrong = []
    total = 0
    secrets = token_parts(run)
    for ident, cases in by_identity.items():
        trail = run.kms.kmsctl("audit", ident)
        text = str(trail)
        if any(p in text for p in secrets):
            wrong.append("%s: the audit trail quotes an access token" % ident)
        at = {(a["topic"], a["partition"], a["offset"]): a for a in trail}
        if len(at) != len(trail) or len(trail) != len(cases):
            wrong.append("%s: %d audit records at %d coordinates, %d requests sent" % (
                ident, len(trail), len(at), len(cases)))
        for case in cases:
            total += 1
            coords = (run.kms.requests_topic, case.sent.delivered[0], case.sent.delivered[1])
            a = at.get(coords)
            if a is None:
                wrong.append("%s %s: no audit record at %s" % (case.label, ident, coords))
                continue
            result = decode_result(run, only_reply(run, case))
            want = {"request_id": decoded_request(case, run.scenario.req_schema)["requestId"],
                    "outcome": outcome.get(case.label, "DECIDED"),
                    "result": result["result"], "cause": result["cause"],
                    "detail": result["detail"], "kms_id": run.kms.kms_id}
            got = {k: a.get(k) for k in want}
            if got != want:
                wrong.append("%s %s: audit %s, want %s" % (case.label, ident, got, want))
    assert not wrong, "%d problems in the audit trails of %d VAL servers (%d requests):\n  %s" % (
        len(wrong), len(by_identity), total, "\n  ".join(wrong))


def test_stats_match_the_scenario(run):
    stats = run.kms.kmsctl("stats")
    cases = run.scenario.cases
    want_versions = sum(len(v) for w in run.scenario.expected_store().values()
                        for v in w["history"].values())
    got = {
        "providers": stats["providers"],
        "slas": stats["slas"],
        "val_servers": stats["val_servers"],
        "key_format_versions": stats["key_format_versions"],
        "decisions": stats["decisions"]["total"],
        "audit": stats["audit"]["total"],
    }
    want = {"providers": 3, "slas": 3, "val_servers": 37, "key_format_versions": want_versions,
            "decisions": 68, "audit": len(cases)}
    assert got == want, "kmsctl stats %s, want %s" % (got, want)
    assert (want_versions, len(cases)) == (57, 71), (want_versions, len(cases))
