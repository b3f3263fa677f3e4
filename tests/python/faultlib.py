"""The fault-injection harness of the KM-S: a steady load of provisioning
requests from many VAL servers, faults injected while it flows (the KM-S
killed or stopped, PostgreSQL or the Kafka broker stopped, several KM-S
instances in one group), and the checks of what the KM-S promises, made
afterwards from the audit trail, the database and the results topic.

It builds on the fixtures of conftest.py (a ``Kms`` world: its own topics,
database, consumer group and token issuer; ``peer()`` for more instances in
the same group) and adds what a fault run needs beyond them:

- ``Load``: N VAL servers x M requests, produced by one idempotent producer
  (acks=all) at a steady rate, keyed by requesterIdentity. Request j of a VAL
  server carries ``{"seq": "j"}`` in the content of each of its services and
  a key format that changes with j, so the stored state depends on the order
  in which the requests were applied.
- ``ResultsTap``: a consumer that reads the results and DLQ topics from their
  beginning for the whole run and notes when each record was first seen.
  Two read every scenario: one with isolation.level=read_committed (what a
  client of the contract sees; the KM-S publishes in Kafka transactions) and
  one with read_uncommitted (which also sees the copies of aborted
  transactions).
- ``ReadyWatch``: polls /readyz of every instance, so that the time to
  recover can be read off afterwards.
- ``Scenario``: one fault run in its own world; ``finish()`` waits for the
  backlog, stops the instances gracefully, checks every promise with exact
  figures and adds a row to the ``Table``.

Environment: KMS_FAULT_SEED (the random moments), KMS_FAULT_RECOVERY_TIMEOUT
(seconds the backlog may take after the load, default 120),
KMS_FAULT_CLIENT_DEBUG (librdkafka debug contexts of the harness's own
clients, written to build/fault-logs/<scenario>/clients.log),
KMS_FAULT_KMS_FLAGS (more KM-S flags for every scenario, split at spaces:
"--exactly-once false" shows what the transactions change; its read_committed
repeats then fail the check). Every scenario
leaves its KM-S logs, its event list and the /readyz changes in
build/fault-logs/<scenario>/.

The figures of a row:
  sent        requests acknowledged by the broker
  decisions   rows in ``decisions`` for the requestIds sent
  results     distinct requestIds with at least one Result
  repeats rc  Results beyond the first per requestId, as a read_committed
              reader sees them: 0 in every scenario (exactly once)
  repeats ru  the same for a read_uncommitted reader: aborted copies count
  lost        requestIds without a Result or without a decision
  misordered  VAL servers whose stored key formats are not the requests
              applied in order, or whose decisions were not made in order
  recover     seconds from the end of the fault (restart, service back, or
              the kill itself when nothing restarts) until the KM-S is ready
              again and the backlog is drained: every request produced before
              that moment answered, and no request waiting longer than SLOW
"""

import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import threading
import time
import traceback
import uuid
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import kmswire

REPO = kmswire.REPO
TABLE_PATH = os.path.join(REPO, "build", "fault-table.txt")
LOG_DIR = os.path.join(REPO, "build", "fault-logs")

SERVICE_A = "fault.alpha"  # listed by every request
SERVICE_B = "fault.beta"   # listed by every third request
KEY_FORMATS = ("JWK", "TRANSPARENT_SYMMETRIC_KEY")

# Group membership settings the harness runs the KM-S with: a SIGKILLed
# member is noticed after session.timeout.ms (librdkafka's default, 45 s,
# would stall every restart that long; 6 s is the broker's minimum).
KMS_ARGS = ("-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=1000",
            *os.environ.get("KMS_FAULT_KMS_FLAGS", "").split())

# A request answered later than this after it was produced was held up by a
# fault (in steady state the KM-S answers within tens of milliseconds).
SLOW = 1.0

# librdkafka debug contexts for the harness's own clients (into clients.log)
CLIENT_DEBUG = os.environ.get("KMS_FAULT_CLIENT_DEBUG", "")

RECOVERY_TIMEOUT = float(os.environ.get("KMS_FAULT_RECOVERY_TIMEOUT", "120"))


def client_logger(path):
    """A logger for the harness's own Kafka clients that writes to path.
    While the broker is away librdkafka says "connection refused" many times
    a second, which would bury a failure's report on the terminal; in a file
    it stays at hand as evidence."""
    import logging
    log = logging.getLogger("faults.clients." + path)
    if not log.handlers:
        h = logging.FileHandler(path)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(h)
        log.setLevel(logging.DEBUG)
        log.propagate = False
    return log


def services_for(j):
    """The valServices of request j (1-based) of any VAL server: SERVICE_A
    always, its format alternating with j; SERVICE_B on every third."""
    if j % 2:
        a = kmswire.service(SERVICE_A, "JWK", None,
                            {"seq": str(j), "kty": "oct", "alg": "A256GCM"})
    else:
        a = kmswire.service(SERVICE_A, "TRANSPARENT_SYMMETRIC_KEY", f"v{j}",
                            {"seq": str(j), "bits": "256"})
    out = [a]
    if j % 3 == 0:
        out.append(kmswire.service(SERVICE_B, "JWK", "1", {"seq": str(j), "use": "enc"}))
    return out


# ---------------------------------------------------------------- the load


@dataclass
class Item:
    request_id: str
    server: str
    seq: int
    services: list
    value: bytes
    produced: float = None  # monotonic, when handed to the producer
    coords: tuple = None    # (partition, offset) once acknowledged
    error: str = None


class Load:
    """servers x per_server requests, produced round by round (request j of
    every VAL server, then j + 1), so that each VAL server's requests are
    spread over the whole run."""

    def __init__(self, world, vsp_id, servers=500, per_server=10, logger=None):
        self.world = world
        self.errors = []  # (monotonic, error) from the producer's error_cb
        self.topic = world.requests_topic
        self.servers = [f"fv-{world.prefix}-{i:03d}" for i in range(servers)]
        self.per_server = per_server
        now = int(time.time())
        tokens = {s: world.token(s, vsp_id, exp=now + 3600, iat=now, nbf=now)
                  for s in self.servers}
        self.items = []
        for j in range(1, per_server + 1):
            for s in self.servers:
                rid = str(uuid.uuid4())
                svcs = services_for(j)
                req = kmswire.request(s, tokens[s], svcs, request_id=rid,
                                      endpoint=f"https://{s}.vals.test/seal")
                self.items.append(Item(rid, s, j, svcs, kmswire.encode_request(req)))
        self.by_id = {it.request_id: it for it in self.items}
        self.producer = Producer({
            "bootstrap.servers": world.stack.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            # the broker may be away for a while: keep retrying, in order
            "message.timeout.ms": 600000,
            "partitioner": "murmur2_random",
            "error_cb": lambda e: self.errors.append((time.monotonic(), str(e))),
            **({"logger": logger} if logger is not None else {}),
            **({"debug": CLIENT_DEBUG} if CLIENT_DEBUG else {}),
        })
        self.thread = None
        self.started = self.finished = None
        self.stopping = False
        self.failure = None  # what stopped the producing thread, if anything

    def _delivered(self, item):
        def cb(err, msg):
            if err is not None:
                item.error = str(err)
            else:
                item.coords = (msg.partition(), msg.offset())
        return cb

    def _run(self, duration):
        try:
            self._produce_all(duration)
        except BaseException as e:  # reported by wait_done()
            self.failure = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"

    def _produce_all(self, duration):
        n = len(self.items)
        t0 = self.started = time.monotonic()
        for i, it in enumerate(self.items):
            if self.stopping:
                break
            due = t0 + duration * i / n
            while True:
                left = due - time.monotonic()
                if left <= 0:
                    break
                self.producer.poll(min(left, 0.05))
            it.produced = time.monotonic()
            while True:
                try:
                    self.producer.produce(self.topic, key=it.server.encode(), value=it.value,
                                          on_delivery=self._delivered(it))
                    break
                except BufferError:
                    self.producer.poll(0.1)
            self.producer.poll(0)
        self.finished = time.monotonic()

    def start(self, duration):
        self.duration = duration
        self.thread = threading.Thread(target=self._run, args=(duration,), daemon=True,
                                       name="fault-load")
        self.thread.start()

    @property
    def running(self):
        return self.thread is not None and self.thread.is_alive()

    def progress(self):
        return sum(1 for it in self.items if it.produced is not None)

    def wait_done(self, timeout):
        """Wait until every request is produced and acknowledged (or failed)."""
        deadline = time.monotonic() + timeout
        self.thread.join(max(0.0, deadline - time.monotonic()))
        if self.thread.is_alive():
            self.stopping = True
            self.thread.join(10)
            raise AssertionError(f"the load did not finish in {timeout:.0f}s")
        if self.failure is not None:
            raise AssertionError(f"the load's producer failed after {self.progress()} "
                                 f"requests: {self.failure}")
        while time.monotonic() < deadline:
            self.producer.poll(0.2)
            if all(it.coords is not None or it.error is not None for it in self.items):
                return
        raise AssertionError(
            f"{sum(1 for it in self.items if it.coords is None and it.error is None)} "
            f"requests not acknowledged {timeout:.0f}s after the load started "
            f"({len(self.producer)} in the producer's queue; last errors "
            f"{[e for _, e in self.errors[-3:]]})")

    def close(self):
        self.stopping = True
        if self.thread is not None:
            self.thread.join(30)
        self.producer.flush(5)


# ---------------------------------------------------------------- results


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: list  # [(name, bytes)]
    seen: float    # monotonic
    response: dict = None
    decode_error: str = None

    def header(self, name):
        vals = [v for k, v in self.headers if k == name]
        return vals[-1] if vals else None


class ResultsTap:
    """Reads the results and DLQ topics from their beginning, in a thread, for
    the whole run; tolerates the broker going away."""

    def __init__(self, bootstrap, results_topic, dlq_topic, logger=None,
                 isolation="read_committed"):
        self.bootstrap = bootstrap
        self.isolation = isolation
        self.logger = logger
        self.results_topic = results_topic
        self.dlq_topic = dlq_topic
        self.records = []  # results topic
        self.dlq = []
        self.first_seen = {}  # requestId -> monotonic
        self.next_offset = {}  # (topic, partition) -> next offset to read
        self.errors = []
        self.lock = threading.Lock()
        self._stop = False
        self.restarts = 0
        self._conf = {
            "bootstrap.servers": bootstrap,
            "group.id": "fault-tap-" + secrets.token_hex(6),
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "earliest",
            "isolation.level": isolation,
            **({"logger": logger} if logger is not None else {}),
            **({"debug": CLIENT_DEBUG} if CLIENT_DEBUG else {}),
        }
        self._c = Consumer(self._conf)
        self.partitions = {}
        for t in (results_topic, dlq_topic):
            md = self._c.list_topics(t, timeout=10).topics[t]
            self.partitions[t] = sorted(md.partitions)
        self._assign()
        self.thread = threading.Thread(target=self._run, daemon=True, name="fault-tap")
        self.thread.start()

    def _assign(self):
        """Read every partition from where this reader is."""
        self._c.assign([TopicPartition(t, p, self.next_offset.get((t, p), OFFSET_BEGINNING))
                        for t, parts in self.partitions.items() for p in parts])

    def _behind(self):
        """Partitions holding records not read yet, by the broker's
        watermarks; {} when the broker cannot say."""
        out = {}
        try:
            for t, parts in self.partitions.items():
                for p in parts:
                    high = self._c.get_watermark_offsets(TopicPartition(t, p), timeout=2,
                                                         cached=False)[1]
                    if high > self.next_offset.get((t, p), 0):
                        out[(t, p)] = high
        except Exception:
            return {}
        return out

    def _positions(self):
        """Where this reader is, by the consumer's own positions: past the
        last record read and past the transaction markers after it, which a
        reader never returns as records (so next_offset alone would never
        reach the end of a partition that ends with one)."""
        try:
            got = self._c.position([TopicPartition(t, p) for t, parts in self.partitions.items()
                                    for p in parts])
        except Exception:
            return
        with self.lock:
            for tp in got:
                key = (tp.topic, tp.partition)
                if tp.offset >= 0 and tp.offset > self.next_offset.get(key, 0):
                    self.next_offset[key] = tp.offset

    def _run(self):
        last_read = last_check = last_pos = time.monotonic()
        suspect = None  # records to read seen at this time, none read since
        while not self._stop:
            if time.monotonic() - last_pos > 0.2:
                last_pos = time.monotonic()
                self._positions()
            try:
                # a short wait: the time a Result is first seen is a figure
                msgs = self._c.consume(num_messages=1000, timeout=0.02)
            except Exception as e:  # kept as evidence; reading goes on
                self.errors.append((time.monotonic(), f"{type(e).__name__}: {e}"))
                time.sleep(0.1)
                continue
            now = time.monotonic()
            if msgs:
                last_read = now
                suspect = None
            elif now - last_read > 10 and now - last_check > 2:
                # Records the broker has had for a while and this reader has
                # not returned: it is stuck (seen once after a broker
                # restart). Start afresh from where it was, so that a stuck
                # reader is never taken for a KM-S that answers nothing.
                last_check = now
                behind = self._behind()
                if not behind:
                    suspect = None
                elif suspect is None:
                    suspect = now
                elif now - suspect >= 4:
                    self.errors.append((now, f"reader read nothing for {now - last_read:.0f}s "
                                             f"with records to read {behind}: restarted"))
                    self.restarts += 1
                    try:
                        self._c.close()
                    except Exception:
                        pass
                    self._c = Consumer(self._conf)
                    self._assign()
                    last_read = now
                    suspect = None
            with self.lock:
                for m in msgs:
                    if m.error():
                        self.errors.append((now, str(m.error())))
                        continue
                    rec = Rec(m.topic(), m.partition(), m.offset(), m.key(), m.value(),
                              [(k, v if v is not None else b"") for k, v in (m.headers() or [])],
                              now)
                    key = (rec.topic, rec.partition)
                    self.next_offset[key] = max(self.next_offset.get(key, 0), rec.offset + 1)
                    if rec.topic == self.dlq_topic:
                        self.dlq.append(rec)
                        continue
                    try:
                        rec.response = kmswire.decode_response(rec.value or b"")
                        self.first_seen.setdefault(rec.response["requestId"], now)
                    except kmswire.WireError as e:
                        rec.decode_error = str(e)
                    self.records.append(rec)

    def answered(self, ids):
        """How many of ids have a Result so far."""
        with self.lock:
            return sum(1 for i in ids if i in self.first_seen)

    def drain(self, timeout=60.0):
        """Wait until everything the topics hold now has been read."""
        # read_committed: the end is the last stable offset
        wm = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "fault-wm",
                       "isolation.level": self.isolation,
                       **({"logger": self.logger} if self.logger is not None else {})})
        try:
            high = {}
            for t, parts in self.partitions.items():
                for p in parts:
                    high[(t, p)] = wm.get_watermark_offsets(TopicPartition(t, p), timeout=30)[1]
        finally:
            wm.close()
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                behind = {tp: h for tp, h in high.items()
                          if h > 0 and self.next_offset.get(tp, 0) < h}
            if not behind:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"results not read to their end in {timeout:.0f}s: "
                                     f"{behind}; reader errors {self.errors[-5:]}")
            time.sleep(0.1)

    def close(self):
        self._stop = True
        self.thread.join(10)
        try:
            self._c.close()
        except Exception:
            pass


# ---------------------------------------------------------------- readiness


class ReadyWatch:
    """Polls /readyz of every instance every 100 ms and keeps the history:
    [(monotonic, {kms_id: status})], status 0 when nothing answers and None
    when the process is not running."""

    def __init__(self):
        self.instances = []
        self.history = []
        self.changes = []  # (monotonic, kms_id, status, /readyz body) on change
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True, name="fault-ready")
        self.thread.start()

    def add(self, k):
        self.instances.append(k)

    def _run(self):
        while not self._stop:
            t = time.monotonic()
            snap = {}
            for k in list(self.instances):
                status, body = k.readyz() if k.running else (None, {})
                snap[k.kms_id] = status
                prev = self.history[-1][1].get(k.kms_id, "new") if self.history else "new"
                if status != prev:
                    self.changes.append((t, k.kms_id, status, body))
            self.history.append((t, snap))
            time.sleep(max(0.0, 0.1 - (time.monotonic() - t)))

    def ready_at(self, since, kms_ids):
        """The first poll at or after since when every one of kms_ids
        answered 200; None if there was none."""
        for t, snap in self.history:
            if t >= since and all(snap.get(i) == 200 for i in kms_ids):
                return t
        return None

    def close(self):
        self._stop = True
        self.thread.join(10)


# ---------------------------------------------------------------- the table


COLUMNS = (("scenario", 28, "<"), ("sent", 6, ">"), ("decisions", 9, ">"),
           ("results", 7, ">"), ("repeats rc", 10, ">"), ("repeats ru", 10, ">"),
           ("lost", 5, ">"),
           ("misordered", 10, ">"), ("recover s", 9, ">"), ("checks", 6, "<"))


class Table:
    """One row per scenario, printed fixed-width and kept in a file."""

    def __init__(self, path=TABLE_PATH):
        self.path = path
        self.rows = []

    def add(self, row):
        self.rows.append(row)
        self.write()

    def lines(self):
        def fmt(values):
            return "  ".join(f"{str(v):{a}{w}}" for v, (_, w, a) in zip(values, COLUMNS))
        out = [fmt([c[0] for c in COLUMNS]), fmt(["-" * c[1] for c in COLUMNS])]
        for r in self.rows:
            out.append(fmt([r.get(c[0], "") for c in COLUMNS]))
        out.append("repeats rc / ru: Results beyond the first per request, as a "
                   "read_committed / read_uncommitted reader sees them")
        if any(str(r.get("recover s", "")).endswith("*") for r in self.rows):
            out.append("* an upper bound: the harness's results reader stalled and was "
                       "restarted")
        return out

    def text(self):
        return "\n".join(["KM-S fault scenarios"] + self.lines()) + "\n"

    def write(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path + ".tmp", "w") as f:
            f.write(self.text())
        os.replace(self.path + ".tmp", self.path)


# ---------------------------------------------------------------- database


def query_json(stack, dbname, sql):
    """Rows of a read-only query as a list of dicts (json_agg keeps NULLs,
    numbers and nested JSON exact)."""
    cp = subprocess.run(
        [stack.psql_bin, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
         "-d", stack.dsn_for(dbname),
         "-c", f"SELECT COALESCE(json_agg(q), '[]'::json) FROM ({sql}) q"],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, PGCONNECT_TIMEOUT="10"))
    if cp.returncode != 0:
        raise AssertionError(f"psql failed ({cp.returncode}): {cp.stderr.strip()}")
    return json.loads(cp.stdout)


def group_members(bootstrap, group_id, logger=None):
    """client.ids of the consumer group's members."""
    admin = AdminClient({"bootstrap.servers": bootstrap,
                         **({"logger": logger} if logger is not None else {})})
    fut = admin.describe_consumer_groups([group_id], request_timeout=10)[group_id]
    desc = fut.result(timeout=20)
    return [m.client_id for m in desc.members]


# ---------------------------------------------------------------- a scenario


class Violations:
    """Broken promises, by kind, each with a count and a few examples."""

    def __init__(self):
        self.kinds = {}

    def add(self, kind, example):
        n, ex = self.kinds.get(kind, (0, []))
        if len(ex) < 5:
            ex.append(example)
        self.kinds[kind] = (n + 1, ex)

    def __bool__(self):
        return bool(self.kinds)

    def report(self):
        out = []
        for kind, (n, ex) in sorted(self.kinds.items()):
            out.append(f"- {kind}: {n}")
            out += [f"    e.g. {e}" for e in ex]
        return "\n".join(out)


class Scenario:
    """One fault run in a world of its own. Use as a context manager: the
    row is added to the table whatever happens."""

    def __init__(self, name, factory, table, *, graceful, servers=500, per_server=10,
                 seed=None, kms_args=KMS_ARGS):
        self.name = name
        self.factory = factory
        self.table = table
        self.graceful = graceful
        self.kms_args = tuple(kms_args)
        self.servers = servers
        self.per_server = per_server
        self.seed = seed if seed is not None else int(os.environ.get(
            "KMS_FAULT_SEED", str(int(time.time() * 1000) % 1000000)))
        self.rng = random.Random(self.seed)
        self.events = []
        self.instances = []
        self.term_codes = {}  # kms_id -> [exit codes of SIGTERM stops]
        self.fault_ends = []  # (monotonic, kms_ids that must be ready after it)
        self.outages = []  # (what, down at, back at, kms_ids running)
        self.extra = []  # (kind, example) found while the scenario ran
        self.row = {"scenario": name, "checks": "ERROR"}
        self.figures = {}
        self.load = self.tap = self.tap_ru = self.watch = None
        self.world = None
        self.logger = None

    # -- set-up

    def __enter__(self):
        try:
            return self._set_up()
        except BaseException as e:
            self.__exit__(type(e), e, e.__traceback__)
            raise

    def _set_up(self):
        self.t0 = time.monotonic()
        self.log_dir = os.path.join(LOG_DIR, self.slug())
        shutil.rmtree(self.log_dir, ignore_errors=True)
        os.makedirs(self.log_dir, exist_ok=True)
        self.logger = client_logger(os.path.join(self.log_dir, "clients.log"))
        self.world = self.factory(start=False, extra_args=self.kms_args,
                                  requests_partitions=12, results_partitions=6)
        self.event(f"world {self.world.prefix} (seed {self.seed})")
        self.vsp_id = self.world.provider(f"vsp-{self.world.prefix}", name="fault load")
        self.world.sla(self.vsp_id, [SERVICE_A, SERVICE_B], key_formats=KEY_FORMATS,
                       max_val_servers=max(1000, self.servers))
        self.load = Load(self.world, self.vsp_id, self.servers, self.per_server, self.logger)
        self.event(f"{len(self.load.items)} requests prepared")
        self.tap = ResultsTap(self.world.stack.bootstrap, self.world.results_topic,
                              self.world.dlq_topic, self.logger)
        self.tap_ru = ResultsTap(self.world.stack.bootstrap, self.world.results_topic,
                                 self.world.dlq_topic, self.logger, "read_uncommitted")
        self.watch = ReadyWatch()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            first = str(exc).splitlines()[0] if str(exc) else ""
            self.event(f"error: {exc_type.__name__}: {first}")
        try:
            self.row.update(self.figures)
            if exc_type is not None:
                self.row["checks"] = "FAIL"
            self.table.add(self.row)
        finally:
            for x in (self.load, self.tap, self.tap_ru, self.watch):
                if x is not None:
                    try:
                        x.close()
                    except Exception:
                        pass
            self._keep_logs()
            if self.logger is not None:
                for h in list(self.logger.handlers):
                    h.close()
                    self.logger.removeHandler(h)
        return False

    def _keep_logs(self):
        """Copy the KM-S logs and the event list out of the world's folder,
        which the fixture deletes."""
        if self.world is None:
            return
        dest = self.log_dir
        for k in self.instances:
            if os.path.exists(k.log_path):
                shutil.copy(k.log_path, dest)
        with open(os.path.join(dest, "events.txt"), "w") as f:
            f.write(self.event_text() + "\n")
            for what, errs in (("load producer", self.load.errors if self.load else []),
                               ("results reader", self.tap.errors if self.tap else []),
                               ("read_uncommitted results reader",
                                self.tap_ru.errors if self.tap_ru else [])):
                if errs:
                    f.write(f"\n{what} errors ({len(errs)}):\n")
                    for t, e in errs[:50]:
                        f.write(f"{t - self.t0:7.2f}s  {e}\n")
            if self.watch is not None:
                f.write("\n/readyz changes:\n")
                for t, kms_id, status, body in self.watch.changes:
                    f.write(f"{t - self.t0:7.2f}s  {kms_id}  {status}  "
                            f"{json.dumps(body, sort_keys=True)}\n")

    def slug(self):
        return "".join(c if c.isalnum() else "-" for c in self.name.lower()).strip("-")

    def now(self):
        return time.monotonic() - self.t0

    def event(self, text):
        self.events.append((self.now(), text))

    def event_text(self):
        return "\n".join(f"{t:7.2f}s  {e}" for t, e in self.events)

    def instance(self, start=True):
        """A KM-S of this world; the first is the world's own process, the
        others are peers in the same group."""
        if not self.instances:
            k = self.world
            if start:
                k.start(wait=False)
        else:
            k = self.world.peer(start=False)
            if start:
                k.start(wait=False)
        self.instances.append(k)
        self.watch.add(k)
        if start:
            self.event(f"{k.kms_id} started (pid {k.pid})")
        return k

    def wait_ready(self, k, timeout=60.0):
        k.wait_ready(timeout)
        self.event(f"{k.kms_id} ready")

    def sleep(self, seconds):
        time.sleep(max(0.0, seconds))

    def sleep_until_load(self, fraction):
        """Wait until that fraction of the requests has been produced."""
        want = int(len(self.load.items) * fraction)
        while self.load.progress() < want and self.load.running:
            time.sleep(0.05)

    def start_load(self, duration):
        self.load.start(duration)
        self.event(f"load: {len(self.load.items)} requests over {duration:.0f}s")

    # -- faults

    def sigkill(self, k):
        rc = k.kill()
        self.event(f"{k.kms_id} SIGKILL (exit {rc}, {self.load.progress()} requests "
                   f"produced)")
        return rc

    def sigterm(self, k):
        rc = k.stop(signal.SIGTERM, 45)
        self.term_codes.setdefault(k.kms_id, []).append(rc)
        self.event(f"{k.kms_id} SIGTERM, exit {rc}")
        return rc

    def restart(self, k):
        k.start(wait=False)
        self.event(f"{k.kms_id} restarted (pid {k.pid})")

    def stack_cmd(self, cmd):
        script = os.path.join(REPO, "scripts", "stack")
        t = time.monotonic()
        cp = subprocess.run([script, cmd], capture_output=True, text=True, timeout=180)
        self.event(f"scripts/stack {cmd}: exit {cp.returncode} in "
                   f"{time.monotonic() - t:.1f}s")
        if cp.returncode != 0:
            raise AssertionError(f"scripts/stack {cmd} failed: {cp.stderr[-2000:]}")

    def outage(self, what, stop, start, seconds):
        """Stop a component, keep it away for seconds, start it again. The
        KM-S instances running must say they are not ready meanwhile."""
        try:
            stop()
            t_down = time.monotonic()
            self.event(f"{what} down")
            self.sleep(seconds - (time.monotonic() - t_down))
        finally:
            # whatever happened, the stack is left up for the tests after
            t_up = time.monotonic()
            start()
        self.event(f"{what} back after {t_up - t_down:.1f}s away")
        self.outages.append((what, t_down, t_up, [k.kms_id for k in self.instances
                                                  if k.running]))

    def expect_left_group(self, k, within=3.0):
        """A KM-S stopped gracefully is out of the group at once, not after
        its session times out."""
        deadline = time.monotonic() + within
        while True:
            members = self._members()
            if k.kms_id not in members:
                self.event(f"{k.kms_id} is out of the group")
                return
            if time.monotonic() > deadline:
                self.extra.append(("a KM-S stopped with SIGTERM stayed in the group",
                                   f"{k.kms_id} still a member {within:.0f}s later"))
                self.event(f"{k.kms_id} still in the group")
                return
            time.sleep(0.2)

    def _members(self):
        try:
            return group_members(self.world.stack.bootstrap, self.world.group_id, self.logger)
        except Exception as e:
            return [f"(describe failed: {e})"]

    def end_fault(self, kms_ids=None):
        """A fault is over now; kms_ids must be ready again (default: the
        instances running). With several faults, the row shows the longest
        recovery."""
        ids = list(kms_ids) if kms_ids is not None else [
            k.kms_id for k in self.instances if k.running]
        self.fault_ends.append((time.monotonic(), ids))
        self.event(f"fault over; to be ready: {', '.join(ids)}")

    # -- the end

    def finish(self):
        """Wait for the load and the backlog, stop every instance gracefully,
        then check."""
        self.load.wait_done(300)
        self.event(f"load done: {sum(1 for it in self.load.items if it.coords)} "
                   f"acknowledged")
        ids = [it.request_id for it in self.load.items]
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while self.tap.answered(ids) < len(ids):
            if time.monotonic() > deadline:
                # a KM-S that says it is ready but answers nothing is hung
                ready = {k.kms_id: k.readyz() for k in self.instances if k.running}
                try:
                    decided = query_json(self.world.stack, self.world.dbname,
                                         "SELECT count(*) AS n FROM decisions")[0]["n"]
                except AssertionError as e:
                    decided = f"? ({e})"
                self.event(f"recovery timeout: {self.tap.answered(ids)} of {len(ids)} "
                           f"answered, {decided} decided; /readyz {ready}")
                self.extra.append((f"backlog not answered within {RECOVERY_TIMEOUT:.0f}s "
                                   f"of the load's end",
                                   f"{len(ids) - self.tap.answered(ids)} unanswered "
                                   f"({decided} of {len(ids)} decided) while /readyz said "
                                   f"{ready}"))
                break
            if not any(k.running for k in self.instances):
                self.event("no KM-S running")
                break
            time.sleep(0.2)
        else:
            self.event("every request answered")
        # Stop whatever runs, gracefully: no Result can come after this.
        for k in self.instances:
            if k.running:
                self.sigterm(k)
        left = self._members_after_stop()
        self.tap.drain()
        self.tap_ru.drain()
        self.event(f"results read: {len(self.tap.records)} records read_committed, "
                   f"{len(self.tap_ru.records)} read_uncommitted")
        v = self.check(left)
        self.row["checks"] = "FAIL" if v else "ok"
        if v:
            raise AssertionError(
                f"scenario {self.name}: promises broken\n{v.report()}\n"
                f"figures: {self.figures}\nevents:\n{self.event_text()}\n"
                f"logs: {self.log_dir}")

    def _members_after_stop(self):
        """Members still in the group once every instance has stopped
        gracefully: there should be none, and at once (a graceful stop leaves
        the group; it does not wait to be timed out)."""
        deadline = time.monotonic() + 3.0
        while True:
            members = self._members()
            if not members or time.monotonic() > deadline:
                return members
            time.sleep(0.2)

    # -- the checks

    def check(self, members_left):
        v = Violations()
        w = self.world
        items = self.load.items
        by_id = self.load.by_id
        sent_ids = {it.request_id for it in items if it.coords is not None}
        for it in items:
            if it.coords is None:
                v.add("request not acknowledged by the broker", f"{it.request_id}: {it.error}")

        # -- the database
        decisions = query_json(w.stack, w.dbname, """
            SELECT d.request_id, d.requester_identity, d.result, d.cause, d.detail, d.kms_id,
                   d.processed_at, d.topic, d.kafka_partition, d.kafka_offset,
                   a.id AS audit_id
            FROM decisions d LEFT JOIN audit a ON a.topic = d.topic
                AND a.kafka_partition = d.kafka_partition AND a.kafka_offset = d.kafka_offset""")
        audit = query_json(w.stack, w.dbname, """
            SELECT id, topic, kafka_partition, kafka_offset, request_id, requester_identity,
                   outcome, has_result, result, cause, detail, kms_id, processed_at
            FROM audit""")
        key_formats = query_json(w.stack, w.dbname, """
            SELECT requester_identity, val_service_id, version, format_type, format_version,
                   content, request_id
            FROM key_formats ORDER BY requester_identity, val_service_id, version""")
        val_servers = query_json(w.stack, w.dbname, """
            SELECT requester_identity, vsp_id, endpoint, last_request_id FROM val_servers""")

        dec = {}
        for d in decisions:
            dec[d["request_id"]] = d
            if d["request_id"] not in by_id:
                v.add("decision for a requestId never sent", d["request_id"])
        for rid in sent_ids:
            d = dec.get(rid)
            if d is None:
                continue
            it = by_id[rid]
            if (d["topic"], d["kafka_partition"], d["kafka_offset"]) != (w.requests_topic,
                                                                         *it.coords):
                v.add("decision made for other coordinates than the request's",
                      f"{rid}: {d['topic']}/{d['kafka_partition']}/{d['kafka_offset']} "
                      f"vs {it.coords}")
            if d["result"] != "SUCCESS":
                v.add("request refused", f"{rid}: {d['result']} {d['cause']} {d['detail']}")
            if d["audit_id"] is None:
                v.add("decision without its audit row", rid)

        # one audit row per consumed message, and only for those
        audit_by_coords = {}
        for a in audit:
            key = (a["topic"], a["kafka_partition"], a["kafka_offset"])
            if key in audit_by_coords:
                v.add("two audit rows for one message", str(key))
            audit_by_coords[key] = a
        sent_coords = {(w.requests_topic, *by_id[r].coords): r for r in sent_ids}
        for key, rid in sent_coords.items():
            a = audit_by_coords.get(key)
            if a is None:
                v.add("message without an audit row", f"{rid} at {key}")
            elif a["request_id"] != rid or a["outcome"] != "DECIDED":
                v.add("audit row says otherwise",
                      f"{key}: {a['request_id']} {a['outcome']} (sent {rid})")
        for key in audit_by_coords:
            if key not in sent_coords:
                v.add("audit row for a message not sent", str(key))

        # -- the results topic, as each reader saw it: every check holds for
        # both; the copies of aborted transactions, which only the
        # read_uncommitted reader sees, must be identical too
        results = self._check_results(v, self.tap, by_id, dec)
        results_ru = self._check_results(v, self.tap_ru, by_id, dec)

        repeated = sum(len(recs) - 1 for recs in results.values())
        repeated_ru = sum(len(recs) - 1 for recs in results_ru.values())
        lost = [rid for rid in sent_ids if rid not in results or rid not in dec]
        for rid in lost:
            v.add("lost request", f"{rid}: Result {'yes' if rid in results else 'no'}, "
                  f"decision {'yes' if rid in dec else 'no'}")
        for rid in sent_ids:
            if rid in results_ru and rid not in results:
                v.add("Result only a read_uncommitted reader saw (never committed)", rid)
        # exactly once, for a read_committed reader, whatever the fault
        for rid, recs in results.items():
            if len(recs) > 1:
                v.add("Result seen more than once by a read_committed reader",
                      f"{rid}: {len(recs)} at " +
                      ", ".join(f"{r.partition}/{r.offset}" for r in recs))
        # nothing aborted either where nothing was killed
        if self.graceful and repeated_ru:
            for rid, recs in results_ru.items():
                if len(recs) > 1:
                    v.add("repeated Result after a graceful scenario (read_uncommitted)",
                          f"{rid}: {len(recs)} at " +
                          ", ".join(f"{r.partition}/{r.offset}" for r in recs))

        # -- what is stored, against the requests applied in order
        misordered = self._check_state(v, items, key_formats, val_servers, dec)

        # -- the same facts as the admin command shows them
        self._check_admin(v, sent_ids, results)

        # -- graceful stops: exit 0 and out of the group
        for kms_id, codes in self.term_codes.items():
            for rc in codes:
                if rc != 0:
                    v.add("graceful stop did not exit 0", f"{kms_id}: exit {rc}")
        if members_left:
            v.add("members left in the group after every KM-S stopped", str(members_left))

        for kind, example in self.extra:
            v.add(kind, example)

        # -- outages: the KM-S said it was not ready while a part was away
        for what, t_down, t_up, kms_ids in self.outages:
            for kms_id in kms_ids:
                polls = [snap.get(kms_id) for t, snap in self.watch.history
                         if t_down <= t <= t_up]
                if None in polls:
                    v.add(f"KM-S exited while {what} was away", kms_id)
                elif polls and all(p == 200 for p in polls):
                    v.add(f"KM-S ready all the time {what} was away",
                          f"{kms_id}: {len(polls)} polls")

        # -- recovery
        recover = self._recovery()
        if recover is None:
            v.add("no recovery", "the KM-S was not ready and caught up after the fault")

        self.figures = {
            "sent": len(sent_ids),
            "decisions": sum(1 for rid in sent_ids if rid in dec),
            "results": sum(1 for rid in sent_ids if rid in results),
            "repeats rc": repeated,
            "repeats ru": repeated_ru,
            "lost": len(lost),
            "misordered": misordered,
            "recover s": "-" if recover is None else f"{recover:.1f}" + (
                # seen late by a reader that had to be restarted: an upper bound
                "*" if self.tap.restarts else ""),
        }
        self.row.update(self.figures)
        self.event(f"figures: {self.figures}")
        return v

    def _check_results(self, v, tap, by_id, dec):
        """The Results one reader saw, checked against what was sent and the
        committed decisions; returns {requestId: [Rec]} in reading order."""
        tag = "" if tap.isolation == "read_committed" else f" ({tap.isolation})"
        results = {}
        for r in tap.records:
            if r.response is None:
                v.add("undecodable Result" + tag, f"{r.partition}/{r.offset}: {r.decode_error}")
                continue
            results.setdefault(r.response["requestId"], []).append(r)
        for rid, recs in results.items():
            if rid not in by_id:
                v.add("Result for a requestId never sent" + tag, rid)
                continue
            first = recs[0]
            ident = (first.value, first.header("kafka_correlationId"), first.header("ce_id"))
            for r in recs[1:]:
                if (r.value, r.header("kafka_correlationId"), r.header("ce_id")) != ident:
                    v.add("repeated Results differ" + tag,
                          f"{rid}: {first.partition}/{first.offset} vs {r.partition}/{r.offset}")
            it = by_id[rid]
            resp = first.response
            if first.key != it.server.encode() or resp["requesterIdentity"] != it.server:
                v.add("Result keyed or addressed wrongly" + tag, f"{rid}: key {first.key!r}")
            d = dec.get(rid)
            if d is None:
                v.add("Result published for a request without a committed decision" + tag, rid)
                continue
            want = (d["result"], d["cause"], d["detail"], d["kms_id"], d["processed_at"])
            got = (resp["result"], resp["cause"], resp["detail"], resp["kmsId"],
                   resp["processedAt"])
            if want != got:
                v.add("Result differs from the committed decision" + tag,
                      f"{rid}: {got} vs {want}")
        for r in tap.dlq:
            v.add("DLQ record" + tag, f"{r.partition}/{r.offset} key {r.key!r}")
        return results

    def _check_admin(self, v, sent_ids, results, sample=8):
        """kmsctl's view: its counts, and for a few VAL servers picked at
        random their stored key formats, history and audit trail, and the
        decisions of a few requests, against what was sent and received."""
        w = self.world
        n = len(sent_ids)
        versions = sum(len(it.services) for it in self.load.items)
        stats = w.kmsctl("stats")
        want = {"decisions.total": n, "decisions.SUCCESS": n, "audit.total": n,
                "audit.DECIDED": n, "val_servers": len(self.load.servers),
                "key_format_versions": versions}
        got = {"decisions.total": stats["decisions"]["total"],
               "decisions.SUCCESS": stats["decisions"]["by_result"].get("SUCCESS", 0),
               "audit.total": stats["audit"]["total"],
               "audit.DECIDED": stats["audit"]["by_outcome"].get("DECIDED", 0),
               "val_servers": stats["val_servers"],
               "key_format_versions": stats["key_format_versions"]}
        for k in want:
            if got[k] != want[k]:
                v.add("kmsctl stats differ from the load", f"{k}: {got[k]}, expected {want[k]}")
        per_server = {}
        for it in self.load.items:
            per_server.setdefault(it.server, []).append(it)
        for server in self.rng.sample(self.load.servers, min(sample, len(self.load.servers))):
            its = sorted(per_server[server], key=lambda x: x.seq)
            shown = w.kmsctl("valserver", "show", server, check=False)
            if not shown:
                v.add("kmsctl valserver show: not found", server)
                continue
            for sid in (SERVICE_A, SERVICE_B):
                hist = [(h["format_type"], h["format_version"], h["content"], h["request_id"])
                        for h in shown.get("history", []) if h["val_service_id"] == sid]
                sent = [(sv["keyFormat"]["formatType"], sv["keyFormat"]["formatVersion"],
                         sv["keyFormat"]["content"], it.request_id)
                        for it in its for sv in it.services if sv["valServiceId"] == sid]
                cur = shown.get("services", {}).get(sid, {})
                if hist != sent or (cur.get("content"), cur.get("format_type")) != (
                        sent[-1][2], sent[-1][0]):
                    v.add("kmsctl valserver show differs from the requests applied in order",
                          f"{server} {sid}: history seq "
                          f"{[h[2].get('seq') for h in hist]}, current {cur.get('content')}")
            trail = w.kmsctl("audit", server, check=False) or []
            got_ids = [a["request_id"] for a in trail]
            if got_ids != [it.request_id for it in its] or any(
                    a["outcome"] != "DECIDED" for a in trail):
                seqs = [self.load.by_id[i].seq if i in self.load.by_id else "?"
                        for i in got_ids]
                v.add("kmsctl audit trail is not the requests in order, each decided once",
                      f"{server}: {len(trail)} rows, seq {seqs}")
        for rid in self.rng.sample(sorted(sent_ids), min(sample, len(sent_ids))):
            d = w.kmsctl("decision", rid, check=False)
            r = results.get(rid, [None])[0]
            if not d or r is None:
                v.add("kmsctl decision or Result missing", rid)
                continue
            resp = r.response
            if (d["result"], d["cause"], d["detail"], d["kms_id"], d["processed_at"]) != (
                    resp["result"], resp["cause"], resp["detail"], resp["kmsId"],
                    resp["processedAt"]):
                v.add("kmsctl decision differs from the Result", f"{rid}: {d} vs {resp}")

    def _check_state(self, v, items, key_formats, val_servers, dec):
        """Stored key formats and VAL servers against the requests applied in
        order per VAL server; returns the number of misordered VAL servers."""
        expected = {}  # (server, service) -> [(type, version, content, requestId)]
        last = {}
        for it in sorted(items, key=lambda x: (x.server, x.seq)):
            last[it.server] = it
            for s in it.services:
                kf = s["keyFormat"]
                expected.setdefault((it.server, s["valServiceId"]), []).append(
                    (kf["formatType"], kf["formatVersion"], kf["content"], it.request_id))
        stored = {}
        for k in key_formats:
            stored.setdefault((k["requester_identity"], k["val_service_id"]), []).append(k)
        bad_order = set()
        for key, want in expected.items():
            rows = stored.get(key, [])
            got = [(k["format_type"], k["format_version"], k["content"], k["request_id"])
                   for k in rows]
            versions = [k["version"] for k in rows]
            if versions != list(range(1, len(rows) + 1)):
                v.add("key format versions not 1..n", f"{key}: {versions}")
            got_seq = [int(g[2].get("seq", "0")) for g in got]
            want_seq = [int(w_[2]["seq"]) for w_ in want]
            # misordered: the current format is not the last one sent, or the
            # versions do not follow the order the requests were sent in
            if not got or got[-1] != want[-1] or got_seq != sorted(set(got_seq)):
                bad_order.add(key[0])
                v.add("key formats not applied in order",
                      f"{key}: stored seq {got_seq}, sent {want_seq}")
            if got != want and sorted(map(repr, got)) != sorted(map(repr, want)):
                v.add("stored key formats are not the requests applied once each",
                      f"{key}: stored seq {got_seq}, sent {want_seq}")
        for key in stored:
            if key not in expected:
                v.add("key format stored for a service never sent", str(key))
        vs = {r["requester_identity"]: r for r in val_servers}
        for server, it in last.items():
            r = vs.get(server)
            if r is None:
                v.add("VAL server not stored", server)
                continue
            if r["vsp_id"] != self.vsp_id or r["endpoint"] != f"https://{server}.vals.test/seal":
                v.add("VAL server stored wrongly", str(r))
            if r["last_request_id"] != it.request_id:
                bad_order.add(server)
                seq = self.load.by_id.get(r["last_request_id"])
                v.add("VAL server's last request is not its last one sent",
                      f"{server}: seq {seq.seq if seq else '?'}")
        # the order of the decisions per VAL server: audit ids (the order of
        # insertion) and processed_at must follow seq
        per_server = {}
        for it in items:
            d = dec.get(it.request_id)
            if d is not None:
                per_server.setdefault(it.server, []).append((it.seq, d))
        for server, lst in per_server.items():
            lst.sort(key=lambda x: x[0])
            ids = [d["audit_id"] or 0 for _, d in lst]
            ats = [d["processed_at"] for _, d in lst]
            if ids != sorted(ids) or len(set(ids)) != len(ids) or ats != sorted(ats):
                bad_order.add(server)
                v.add("decisions of a VAL server not made in order",
                      f"{server}: audit ids {ids}")
            offs = [self.load.by_id[d["request_id"]].coords[1] for _, d in lst]
            if offs != sorted(offs):
                v.add("the load itself was produced out of order", f"{server}: {offs}")
        return len(bad_order)

    def _recovery(self):
        """The longest recovery over the faults. A fault's recovery ends when
        the instances that should be are ready, every request produced before
        the fault ended has its Result, and the last request held up by the
        fault (answered more than SLOW seconds after it was produced, and
        produced before the next fault) has its Result."""
        if not self.fault_ends:
            return None
        items = [it for it in self.load.items if it.produced is not None]
        lat = sorted(self.tap.first_seen[it.request_id] - it.produced for it in items
                     if it.request_id in self.tap.first_seen)
        if lat:
            self.event(f"latency: median {lat[len(lat) // 2]:.3f}s, "
                       f"p99 {lat[int(len(lat) * 0.99)]:.3f}s, max {lat[-1]:.3f}s")
        out = 0.0
        for i, (end, kms_ids) in enumerate(self.fault_ends):
            lo = self.fault_ends[i - 1][0] if i > 0 else float("-inf")
            hi = self.fault_ends[i + 1][0] if i + 1 < len(self.fault_ends) else float("inf")
            t_ready = self.watch.ready_at(end, kms_ids)
            if t_ready is None:
                return None
            t_done = end
            for it in items:
                if not lo <= it.produced < hi:
                    continue
                seen = self.tap.first_seen.get(it.request_id)
                if seen is None:
                    return None
                if it.produced <= end or seen - it.produced > SLOW:
                    t_done = max(t_done, seen)
            self.event(f"recovery after the fault ended at {end - self.t0:.2f}s: ready "
                       f"+{t_ready - end:.2f}s, backlog answered +{t_done - end:.2f}s")
            out = max(out, t_ready - end, t_done - end)
        return out
