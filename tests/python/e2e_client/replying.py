"""A Kafka request/reply client in the manner of Spring's ReplyingKafkaTemplate.

Each request is produced with the headers such a template adds: the reply
topic as UTF-8 bytes in `kafka_replyTopic`, optionally the reply partition as a
4-byte big-endian int in `kafka_replyPartition`, and a fresh random
`kafka_correlationId` (opaque bytes). Replies are read from the reply topic and
matched to their request by `kafka_correlationId`, byte for byte. Sending never
waits for a reply: a test sends everything first, then collects.
"""

import os
import struct
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

REPLY_TOPIC = "kafka_replyTopic"
REPLY_PARTITION = "kafka_replyPartition"
CORRELATION_ID = "kafka_correlationId"


class Reply:
    """One record read from the reply topic."""

    def __init__(self, msg):
        self.topic = msg.topic()
        self.partition = msg.partition()
        self.offset = msg.offset()
        self.key = msg.key()
        self.value = msg.value()
        self.header_list = list(msg.headers() or [])
        self.received = time.monotonic()

    def headers(self, name):
        """Every value of header `name`, in order (bytes, or None for a null)."""
        return [v for k, v in self.header_list if k == name]

    def header(self, name):
        """The single value of header `name`; AssertionError when not exactly one."""
        values = self.headers(name)
        assert len(values) == 1, "header %s appears %d times on %s[%d]@%d" % (
            name,
            len(values),
            self.topic,
            self.partition,
            self.offset,
        )
        return values[0]

    @property
    def correlation_id(self):
        values = self.headers(CORRELATION_ID)
        return values[0] if len(values) == 1 else None


class Sent:
    """What was sent for one request: enough to check its reply."""

    def __init__(self, correlation_id, key, value, headers, reply_partition):
        self.correlation_id = correlation_id
        self.key = key
        self.value = value
        self.headers = headers
        self.reply_partition = reply_partition
        self.delivered = None  # (partition, offset) once the broker has it
        self.error = None


def create_topic(bootstrap, topic, partitions, timeout=30.0):
    """Create a topic (replication 1) and wait until every partition has a leader."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    for fut in futures.values():
        fut.result(timeout)
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(topic=topic, timeout=5)
        t = md.topics.get(topic)
        if (
            t is not None
            and t.error is None
            and len(t.partitions) == partitions
            and all(p.leader >= 0 for p in t.partitions.values())
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError("topic %s has no leaders after %.0fs" % (topic, timeout))
        time.sleep(0.1)


def read_whole_topic(bootstrap, topic, idle=1.5):
    """Every record of a topic, read from the beginning until it has been quiet
    for `idle` seconds."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e-client-scan-" + uuid.uuid4().hex,
                  "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=10)
        parts = sorted(md.topics[topic].partitions)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out = []
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle:
            msgs = c.consume(500, 0.2)
            if msgs:
                quiet_since = time.monotonic()
            for m in msgs:
                if m.error():
                    raise KafkaException(m.error())
                out.append(m)
        return out
    finally:
        c.close()


class ReplyingClient:
    """Sends requests with reply headers and collects replies by correlation id.

    The reply consumer is assigned every partition of the reply topic from the
    beginning before anything is sent, so no reply can be missed; it is
    assigned rather than subscribed and commits nothing, as a reply topic made
    for one test has no other reader.
    """

    def __init__(self, bootstrap, request_topic, reply_topic, reply_partitions, extra_config=None):
        self.request_topic = request_topic
        self.reply_topic = reply_topic
        self.reply_partitions = reply_partitions
        conf = {
            "bootstrap.servers": bootstrap,
            # Idempotence keeps the records of one key in the order produced
            # even across retries: an update must follow its first request.
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
        }
        conf.update(extra_config or {})
        self.producer = Producer(conf)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "e2e-client-" + uuid.uuid4().hex,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            }
        )
        self.consumer.assign(
            [TopicPartition(reply_topic, p, OFFSET_BEGINNING) for p in range(reply_partitions)]
        )
        self.sent = {}  # correlation id -> Sent
        self.replies = {}  # correlation id -> [Reply]
        self.strays = []  # replies whose correlation id we never sent

    def send(self, key, value, reply_partition=None, correlation_id=None, extra_headers=None):
        """Produce one request; returns its Sent. Does not wait for anything."""
        if correlation_id is None:
            correlation_id = os.urandom(16)
        headers = [(REPLY_TOPIC, self.reply_topic.encode("utf-8"))]
        if reply_partition is not None:
            headers.append((REPLY_PARTITION, struct.pack(">i", reply_partition)))
        headers.append((CORRELATION_ID, correlation_id))
        headers.extend(extra_headers or [])
        if correlation_id in self.sent:
            raise ValueError("correlation id used twice")
        sent = Sent(correlation_id, key, value, headers, reply_partition)
        self.sent[correlation_id] = sent

        def on_delivery(err, msg, sent=sent):
            if err is not None:
                sent.error = err
            else:
                sent.delivered = (msg.partition(), msg.offset())

        key_bytes = key.encode("utf-8") if isinstance(key, str) else key
        while True:
            try:
                self.producer.produce(
                    self.request_topic, value=value, key=key_bytes, headers=headers,
                    on_delivery=on_delivery)
                break
            except BufferError:
                self.producer.poll(0.05)
        self.producer.poll(0)
        return sent

    def flush(self, timeout=30.0):
        """Wait until the broker has every request; raises on a failed delivery."""
        left = self.producer.flush(timeout)
        if left:
            raise TimeoutError("%d requests still unsent after %.0fs" % (left, timeout))
        failed = [s for s in self.sent.values() if s.error is not None]
        if failed:
            raise KafkaException(failed[0].error)

    def collect(self, timeout=120.0, settle=2.0):
        """Read replies until every request has one, then `settle` seconds more
        to catch duplicates; returns {correlation id: [Reply]}."""
        deadline = time.monotonic() + timeout
        settle_until = None
        while True:
            now = time.monotonic()
            if settle_until is None and all(c in self.replies for c in self.sent):
                settle_until = now + settle
            if settle_until is not None and now >= settle_until:
                break
            if now >= deadline:
                break
            msgs = self.consumer.consume(500, 0.2)
            for msg in msgs:
                if msg.error():
                    raise KafkaException(msg.error())
                reply = Reply(msg)
                cid = reply.correlation_id
                if cid in self.sent:
                    self.replies.setdefault(cid, []).append(reply)
                else:
                    self.strays.append(reply)
        return self.replies

    def missing(self):
        return [s for c, s in self.sent.items() if c not in self.replies]

    def close(self):
        self.producer.flush(10)
        self.consumer.close()
