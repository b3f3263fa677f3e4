"""Exactly-once Results: the KM-S publishes each batch's Results together with
the batch's consumer offsets in one Kafka transaction, committed after the
PostgreSQL commit. These tests make the crashes that matter at the exact
moment they matter, with the test build of the KM-S
(``build/tests/kms-failpoints``, service_txn.c compiled with -DKMS_FAILPOINTS),
and read the results topic as two kinds of client do:

- read_committed (the contract's client, librdkafka's default): every
  request's Result exactly once;
- read_uncommitted (the Java client's default): the copies of aborted
  transactions too, always byte-identical to the committed one.

And the two other promises of the mode: a second instance with the same
transactional.id fences the first, which exits non-zero (never a silent
loss); with ``--exactly-once false`` the KM-S answers as it did before
transactions (at least once).
"""

import secrets
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

import kmswire
from conftest import wait_until

# The exit code of a KM-S stopped by a fatal Kafka error (service.h).
SERVICE_EXIT_FATAL = 5

# Membership settings for tests that kill an instance: a dead member is
# noticed after 6 s (the broker's minimum), not librdkafka's 45 s.
FAST_GROUP = ("-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=1000")


def read_topic(bootstrap, topic, isolation, idle=2.0, timeout=60.0):
    """Every record of topic from its beginning as [(partition, offset, key,
    value, headers)], read with the given isolation.level until nothing
    came for idle seconds."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "eos-" + secrets.token_hex(6),
                  "enable.auto.commit": False, "enable.partition.eof": False,
                  "isolation.level": isolation})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(parts)])
        out = []
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() - last < idle and time.monotonic() < deadline:
            for m in c.consume(num_messages=500, timeout=0.2):
                if m.error():
                    continue
                out.append((m.partition(), m.offset(), m.key(), m.value(),
                            tuple(m.headers() or ())))
                last = time.monotonic()
        return out
    finally:
        c.close()


def by_request(records):
    """{requestId: [record, ...]} of Result records."""
    out = {}
    for rec in records:
        rid = kmswire.decode_response(rec[3])["requestId"]
        out.setdefault(rid, []).append(rec)
    return out


def provisioned(kms, n_servers):
    vsp = kms.provider()
    kms.sla(vsp, ["svc-a"], ("JWK",), max(10, n_servers))
    return vsp


def test_crash_between_database_commit_and_transaction_commit(kms_factory):
    """The KM-S dies (SIGKILL from its failpoint) after the batch's
    PostgreSQL commit, with the batch's Results on the broker and its
    offsets sent, just before the transaction commits. A read_committed
    reader sees none of those Results; after a restart every request is
    answered exactly once for it, from the audit rows, while a
    read_uncommitted reader sees the aborted copies as well, identical byte
    for byte."""
    kms = kms_factory(start=False, binary="tests/kms-failpoints",
                      env={"KMS_FAILPOINT": "before_txn_commit"}, extra_args=FAST_GROUP)
    n = 30
    vsp = provisioned(kms, n)
    reqs = [kms.request(kms.unique("val"), [("svc-a", "JWK")], vsp) for _ in range(n)]
    # Sent before the KM-S starts: its first batch holds them all.
    for req in reqs:
        kms.send(req)
    ids = [r["requestId"] for r in reqs]

    kms.start(wait=False)
    kms.proc.wait(60)
    assert kms.proc.returncode == -9, f"exit {kms.proc.returncode}:\n{kms.log_text()[-3000:]}"
    events = [e["event"] for e in kms.log_events()]
    assert "failpoint" in events and "transactions_ready" in events, events

    # What the dead KM-S left: its decisions committed, its Results written
    # but not committed (the transaction is still open: nothing to see yet
    # for read_committed, the copies for read_uncommitted).
    decided = int(kms.sql("SELECT count(*) FROM decisions")[0][0])
    assert decided > 0, "the failpoint fired before the database commit"
    before_ru = by_request(read_topic(kms.stack.bootstrap, kms.results_topic,
                                      "read_uncommitted"))
    assert len(before_ru) == decided, (len(before_ru), decided)
    assert read_topic(kms.stack.bootstrap, kms.results_topic, "read_committed", idle=1.0) == []

    # A normal KM-S takes over with the same transactional.id: its start
    # aborts the open transaction, and the requests come again.
    kms.binary = "kms"
    kms.env = {}
    kms.start()
    recs = kms.records(ids, timeout=60)
    assert sorted(r.request_id for r in recs) == sorted(ids)

    committed = by_request(read_topic(kms.stack.bootstrap, kms.results_topic, "read_committed"))
    uncommitted = by_request(read_topic(kms.stack.bootstrap, kms.results_topic,
                                        "read_uncommitted"))
    assert sorted(committed) == sorted(ids)
    twice = {rid: len(v) for rid, v in committed.items() if len(v) != 1}
    assert not twice, f"read_committed saw Results more than once: {twice}"
    for rid in ids:
        copies = uncommitted[rid]
        want = 2 if rid in before_ru else 1
        assert len(copies) == want, (rid, len(copies), want)
        first = copies[0]
        for other in copies[1:]:
            # value, key and every header (ce_id, kafka_correlationId, ...)
            assert other[2:] == first[2:], f"{rid}: the aborted copy differs"
        assert committed[rid][0][2:] == first[2:]
        # the aborted copy was written before the committed one
        if want == 2:
            assert before_ru[rid][0][:2] == copies[0][:2]

    # One decision and one audit row per request, whatever happened.
    rows = kms.sql("SELECT request_id, count(*) FROM decisions GROUP BY request_id")
    assert sorted(r[0] for r in rows) == sorted(ids) and {r[1] for r in rows} == {"1"}
    audit = kms.sql("SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)) "
                    "FROM audit")
    assert audit == [[str(n), str(n)]], audit


def test_an_instance_with_the_same_transactional_id_fences_the_first(kms_factory):
    """Two instances in one group with one transactional.id (a restarted
    instance whose predecessor still runs): the second's start fences the
    first, which stops at its next transaction with a producer_fenced line
    and a non-zero exit, never committing what it had in hand; the second
    answers everything, each request once for a read_committed reader."""
    kms = kms_factory(extra_args=(*FAST_GROUP, "--transactional-id", "eos-fence-test"))
    vsp = provisioned(kms, 24)
    first = [kms.request(kms.unique("val"), [("svc-a", "JWK")], vsp) for _ in range(4)]
    for req in first:
        kms.send(req)
    kms.records([r["requestId"] for r in first], timeout=30)

    second = kms.peer()  # same extra args: the same transactional.id
    # Requests spread over every partition: the first instance gets some
    # of them once the group has settled, and tries to publish.
    later = [kms.request(kms.unique("val"), [("svc-a", "JWK")], vsp) for _ in range(20)]
    for req in later:
        kms.send(req)
    wait_until(lambda: not kms.running, 60, 0.2, "the fenced instance to stop")
    assert kms.proc.returncode == SERVICE_EXIT_FATAL, kms.proc.returncode
    events = kms.log_events()
    fenced = [e for e in events if e.get("event") == "producer_fenced"]
    assert fenced, [e.get("event") for e in events][-20:]
    assert any(e.get("event") == "stopped_on_fatal_error" for e in events)
    assert second.running

    ids = [r["requestId"] for r in first + later]
    kms.records(ids, timeout=60)
    committed = by_request(read_topic(kms.stack.bootstrap, kms.results_topic, "read_committed"))
    assert sorted(committed) == sorted(ids)
    assert all(len(v) == 1 for v in committed.values()), {
        k: len(v) for k, v in committed.items() if len(v) != 1}
    rows = kms.sql("SELECT count(*), count(DISTINCT request_id) FROM decisions")
    assert rows == [[str(len(ids)), str(len(ids))]], rows


def test_a_result_its_reply_topic_refuses_goes_to_the_default_topic_once(kms_factory):
    """The reply topic named by kafka_replyTopic takes no record of a
    Result's size (120 bytes: a transaction marker still fits, as it must on
    any topic a transactional producer writes to): the transaction of that
    batch fails at that Result, is aborted, and is made again with that
    Result on the default results topic, beside the batch's other Results:
    each request answered once, on the topic it can be answered on, and
    nothing on the refusing one."""
    kms = kms_factory()
    vsp = provisioned(kms, 6)
    replies = kms.create_topic(f"{kms.prefix}.tiny-replies")
    res = ConfigResource("topic", replies, incremental_configs=[
        ConfigEntry("max.message.bytes", "120", incremental_operation=AlterConfigOpType.SET)])
    for f in kms.stack.admin.incremental_alter_configs([res]).values():
        f.result(timeout=30)
    wait_until(lambda: kms.stack.admin.describe_configs([ConfigResource("topic", replies)])[
        ConfigResource("topic", replies)].result(timeout=30)["max.message.bytes"].value == "120",
        30, 0.2, "the reply topic's limit")

    refused = kms.request(kms.unique("val"), [("svc-a", "JWK")], vsp)
    others = [kms.request(kms.unique("val"), [("svc-a", "JWK")], vsp) for _ in range(5)]
    kms.send(refused, headers={"kafka_replyTopic": replies.encode()})
    for req in others:
        kms.send(req)
    ids = [r["requestId"] for r in [refused] + others]
    kms.records(ids, timeout=60)

    committed = by_request(read_topic(kms.stack.bootstrap, kms.results_topic, "read_committed"))
    assert sorted(committed) == sorted(ids)
    assert all(len(v) == 1 for v in committed.values()), {
        k: len(v) for k, v in committed.items() if len(v) != 1}
    assert read_topic(kms.stack.bootstrap, replies, "read_uncommitted", idle=1.0) == []
    events = [e["event"] for e in kms.log_events()]
    assert "reply_fallback" in events, events


def test_exactly_once_off_is_at_least_once_without_transactions(kms_factory):
    """exactly_once = false: the idempotent producer and offset commits, for
    brokers without transactions; requests are answered as before."""
    kms = kms_factory(extra_args=("--exactly-once", "false"))
    vsp = provisioned(kms, 5)
    reqs = [kms.request(kms.unique("val"), [("svc-a", "JWK")], vsp) for _ in range(5)]
    for req in reqs:
        kms.send(req)
    recs = kms.records([r["requestId"] for r in reqs], timeout=30)
    assert len(recs) == 5 and all(r.response["result"] == "SUCCESS" for r in recs)
    events = [e["event"] for e in kms.log_events()]
    assert "transactions_ready" not in events
    # The group's committed offsets moved past every request (auto commit).
    kms.stop()
    c = Consumer({"bootstrap.servers": kms.stack.bootstrap, "group.id": kms.group_id})
    try:
        parts = c.list_topics(kms.requests_topic, timeout=10).topics[kms.requests_topic]
        got = c.committed([TopicPartition(kms.requests_topic, p) for p in parts.partitions],
                          timeout=10)
    finally:
        c.close()
    sent = {}
    for coords in kms.sent.values():
        for _, p, off in coords:
            sent[p] = max(sent.get(p, -1), off + 1)
    assert {tp.partition: tp.offset for tp in got if tp.partition in sent} == sent
