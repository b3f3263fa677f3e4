"""Fixtures of the integration and end-to-end tests of the KM-S.

Every test runs the real ``kms`` binary against the real Kafka broker and the
real PostgreSQL of the project's stack (``scripts/stack up``). Each ``Kms``
gets a world of its own, so that tests never see each other's data: its own
topics, its own database, its own consumer group and its own token issuer.

Environment
-----------
``KMS_BOOTSTRAP``, ``KMS_DSN``
    The stack (``eval "$(scripts/stack env)"``). When unset, the ``stack``
    fixture runs ``scripts/stack up`` itself (and ``scripts/stack down`` at the
    end of the session, unless the stack was already running or
    ``KMS_KEEP_STACK`` is set).
``KMS_BUILD``
    The folder of the binaries, relative to the repository (default
    ``build``; ``build/san`` for the sanitizer build).
``KMS_TEST_READY_TIMEOUT``
    Seconds a started KM-S has to report /readyz 200 (default 60).

Fixtures
--------
``stack`` (session)
    A ``Stack``: ``bootstrap``, ``dsn``, ``repo``, ``build``,
    ``binary(name)``, ``dsn_for(dbname)``, ``psql(sql, dbname='postgres')``.
``kms_factory`` (function) and ``kms_module_factory`` (module)
    ``factory(start=True, extra_args=(), env=None, requests_partitions=6,
    results_partitions=6, dlq_partitions=1, kms_id=None, binary='kms')``
    returns a new ``Kms`` in a new world; every ``Kms`` made is torn down
    after the test (or module). ``binary`` is the program under
    ``KMS_BUILD`` (``tests/kms-failpoints``: the KM-S with the test-only
    failpoints); it may be changed before a (re)start.
``kms`` (module)
    One started ``Kms`` for a whole test module. Tests that share it use
    distinct VAL server identities and providers (see ``Kms.unique``).

``Kms``
-------
World: ``prefix``, ``requests_topic``, ``results_topic``, ``dlq_topic``,
``group_id``, ``dbname``, ``dsn``, ``kms_id``, ``health_port``, ``tmpdir``,
``issuer`` (``https://auth.test``), ``kid`` (``k1``), ``issuer_key`` (the
trusted ES256 private key), ``issuers_file``, ``log_path``.

Process:
``start(wait=True)``, ``wait_ready(timeout)``, ``readyz() -> (status, dict)``,
``stop(sig=SIGTERM, timeout=45) -> exit code``, ``kill() -> exit code``
(SIGKILL), ``restart()``, ``running``, ``pid``, ``log_text()``,
``log_events() -> [dict]`` (the JSON log lines), ``args()`` (the command
line), ``peer(kms_id=None, extra_args=(), start=True) -> Kms``: another KM-S
process in the same world (same topics, database, group and issuer; its own
health port and log), stopped with the world.

Tokens:
``token(client_id, vsp_id, *, alg='ES256', key=None, kid='k1', headers=None,
now=None, **claims)`` signs a JWT with the trusted key by default. Claims:
``iss``, ``client_id``, ``sub``, ``vsp_id``, ``scope`` ``"ss-kpp"``,
``SKeyProv`` ``True``, ``iat``/``nbf`` now, ``exp`` now+300. A keyword claim
overrides one (``exp=now-120``), ``None`` deletes it (``SKeyProv=None``);
``claims`` names that are not identifiers go in ``extra_claims={...}``.
``alg='none'`` makes an unsigned token; ``key`` may be any private key (see
``new_ec_key()``) or an HMAC secret; ``headers`` adds or replaces JWS header
members (``kid=None`` drops the kid).

Kafka:
``send(request_or_bytes, key=<requesterIdentity>, headers=None,
partition=None, topic=None) -> requestId`` produces one record (a dict is
encoded with ``kmswire.encode_request``) and waits for its acknowledgement;
the record's coordinates are kept in ``sent[requestId]`` (also returned by
``last_sent``) as ``(topic, partition, offset)``.
``request(requester, services, vsp_id=None, token=None, **kw) -> dict``
builds a request with a valid token for ``requester``.
``results(what=None, *, topic=None, timeout=30, settle=0.0)`` waits for and
returns ``[(headers, response)]``: ``what`` is a requestId, a list of them
(each must have at least one Result) or a count (the topic must hold at
least that many); headers is a dict name -> bytes (last value wins), response
the decoded Result dict (``None`` if it did not decode).
``records(...)``: the same, as ``Record`` objects (``topic``, ``partition``,
``offset``, ``key``, ``value``, ``headers``, ``header_list``, ``response``,
``decode_error``). ``result(request_id, topic=None, timeout=30) ->
(headers, response)`` asserts exactly one Result. ``seen(topic=None)``:
every record read so far, without waiting. The records come from one
consumer per ``Kms`` that reads each topic from its beginning; other topics
(reply topics) are added on first use.
``dlq(n=1, *, key=None, timeout=30, settle=0.0) -> [Record]``: the DLQ
records (``key``, ``value``, ``headers``).
``create_topic(name=None, partitions=1) -> name``: an extra topic of this
world (deleted with it).

Administration (``kmsctl``, against this world's database):
``kmsctl(*args, check=True) -> parsed JSON``, ``kmsctl_raw(*args) -> (rc,
stdout, stderr)``, ``provider(vsp_id=None, name=None) -> vsp_id``,
``sla(vsp_id, services, key_formats=('JWK', 'RAW'), max_val_servers=10,
valid_from=None, valid_until=None) -> sla id`` (datetimes or ISO strings),
``sql(query) -> [[str]]`` (read-only checks of facts kmsctl does not show).

Helpers (``from conftest import ...``): ``Kms.unique(stem)`` a fresh name;
``new_ec_key()``; ``free_port()``; ``wait_until(predicate, timeout, interval,
what)``; ``assert_detail_sentence(detail, token=None)``.
"""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import jwt as pyjwt
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import kmswire

REPO = kmswire.REPO
ISSUER = "https://auth.test"
KID = "k1"


# ---------------------------------------------------------------- small helpers


def wait_until(predicate, timeout=30.0, interval=0.1, what="condition"):
    """Call predicate until it returns a true value; return that value.
    Raises AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def new_ec_key(curve=None):
    return ec.generate_private_key(curve or ec.SECP256R1())


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _find_psql():
    p = shutil.which("psql")
    if p:
        return p
    for cand in ("/usr/lib/postgresql/15/bin/psql", "/usr/local/bin/psql"):
        if os.path.exists(cand):
            return cand
    raise RuntimeError("psql not found on PATH")


def _tail(path, n=40):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------- the stack


class Stack:
    def __init__(self, bootstrap, dsn, build):
        self.bootstrap = bootstrap
        self.dsn = dsn
        self.repo = REPO
        self.build = build
        self.psql_bin = _find_psql()
        self._admin = None

    def binary(self, name):
        path = os.path.join(self.build, name)
        if not os.access(path, os.X_OK):
            pytest.fail(f"{path} is missing: run make (or set KMS_BUILD)")
        return path

    def dsn_for(self, dbname):
        """The stack's DSN with another database name."""
        if "://" in self.dsn:
            u = urllib.parse.urlsplit(self.dsn)
            return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + dbname, u.query,
                                            u.fragment))
        return f"{self.dsn} dbname={dbname}"

    def psql(self, sql, dbname="postgres", check=True, retry_s=60.0):
        """Run one SQL command with psql; returns rows as lists of strings.
        While the server cannot be reached (psql exit 2: refused, starting up,
        shutting down) the command is retried for up to retry_s seconds."""
        env = dict(os.environ, PGCONNECT_TIMEOUT="10")
        deadline = time.monotonic() + retry_s
        while True:
            cp = subprocess.run(
                [self.psql_bin, "-X", "-q", "-A", "-t", "-F", "\x1f", "-v", "ON_ERROR_STOP=1",
                 "-d", self.dsn_for(dbname), "-c", sql],
                capture_output=True, text=True, env=env, timeout=60)
            if cp.returncode != 2 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if check and cp.returncode != 0:
            raise RuntimeError(f"psql failed ({cp.returncode}): {cp.stderr.strip()}")
        return [line.split("\x1f") for line in cp.stdout.splitlines() if line != ""]

    @property
    def admin(self):
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap})
        return self._admin

    def create_topics(self, spec):
        """spec: {name: partitions}. Waits until every topic exists."""
        futures = self.admin.create_topics(
            [NewTopic(n, num_partitions=p, replication_factor=1) for n, p in spec.items()],
            operation_timeout=30, request_timeout=30)
        for name, fut in futures.items():
            fut.result(timeout=60)

        def visible():
            md = self.admin.list_topics(timeout=10)
            return all(n in md.topics and len(md.topics[n].partitions) == p
                       for n, p in spec.items())
        wait_until(visible, 30, 0.2, f"topics {sorted(spec)} to appear")

    def delete_topics(self, names):
        if not names:
            return
        futures = self.admin.delete_topics(list(names), operation_timeout=30,
                                           request_timeout=30)
        for fut in futures.values():
            try:
                fut.result(timeout=60)
            except Exception:  # already gone: nothing to clean
                pass


def _stack_from_env_or_up(request):
    build = os.path.join(REPO, os.environ.get("KMS_BUILD", "build"))
    bootstrap = os.environ.get("KMS_BOOTSTRAP")
    dsn = os.environ.get("KMS_DSN")
    started = False
    if not bootstrap or not dsn:
        script = os.path.join(REPO, "scripts", "stack")
        was_up = subprocess.run([script, "status"], capture_output=True).returncode == 0
        cp = subprocess.run([script, "up"], capture_output=True, text=True, timeout=900)
        if cp.returncode != 0:
            pytest.fail(f"scripts/stack up failed:\n{cp.stderr[-3000:]}")
        values = dict(line.split("=", 1) for line in cp.stdout.splitlines() if "=" in line)
        bootstrap = bootstrap or values["bootstrap"]
        dsn = dsn or values["dsn"]
        started = not was_up and not os.environ.get("KMS_KEEP_STACK")
    return Stack(bootstrap, dsn, build), started


@pytest.fixture(scope="session")
def stack(request):
    st, started = _stack_from_env_or_up(request)
    yield st
    if started:
        subprocess.run([os.path.join(REPO, "scripts", "stack"), "down"], capture_output=True,
                       timeout=300)


# ---------------------------------------------------------------- records


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: dict           # name -> bytes, the last value of a name
    header_list: list       # [(name, bytes)] in order
    timestamp: int
    response: dict = None   # decoded Result (results topics only)
    decode_error: str = None

    @property
    def request_id(self):
        return self.response.get("requestId") if self.response else None

    def __iter__(self):
        # (headers, response), so that `h, r = record` reads like the tuples
        # that results() returns.
        return iter((self.headers, self.response))


def _make_record(msg, decode):
    hl = [(k, v if v is not None else b"") for k, v in (msg.headers() or [])]
    hd = {}
    for k, v in hl:
        hd[k] = v
    ts = msg.timestamp()[1]
    rec = Record(topic=msg.topic(), partition=msg.partition(), offset=msg.offset(),
                 key=msg.key(), value=msg.value(), headers=hd, header_list=hl, timestamp=ts)
    if decode:
        try:
            rec.response = kmswire.decode_response(msg.value() or b"")
        except kmswire.WireError as e:
            rec.decode_error = str(e)
    return rec


class _Reader:
    """One consumer that reads whole topics from their beginning and keeps
    every record, so that any test may look back at anything."""

    def __init__(self, bootstrap):
        self._c = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": "tests-reader-" + secrets.token_hex(6),
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        })
        self.topics = {}   # topic -> decode?
        self.records = {}  # topic -> [Record]

    def add(self, topic, decode):
        if topic in self.topics:
            return
        md = self._c.list_topics(topic, timeout=10)
        t = md.topics.get(topic)
        if t is None or t.error is not None or not t.partitions:
            raise AssertionError(f"topic {topic} does not exist")
        self._c.incremental_assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(t.partitions)])
        self.topics[topic] = decode
        self.records[topic] = []

    def pump(self, timeout):
        msgs = self._c.consume(num_messages=1000, timeout=timeout)
        for m in msgs:
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(f"consume error: {m.error()}")
                continue
            self.records[m.topic()].append(_make_record(m, self.topics[m.topic()]))
        return len(msgs)

    def close(self):
        try:
            self._c.close()
        except Exception:
            pass


# ---------------------------------------------------------------- the KM-S


class Kms:
    _count = 0

    def __init__(self, stack, *, extra_args=(), env=None, requests_partitions=6,
                 results_partitions=6, dlq_partitions=1, kms_id=None, world=None,
                 binary="kms"):
        self.stack = stack
        self.binary = binary
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.proc = None
        self._log = None
        self.peers = []
        Kms._count += 1
        self.health_port = free_port()
        if world is None:
            self._owner = True
            try:
                self._make_world(requests_partitions, results_partitions, dlq_partitions)
            except BaseException:
                self.close()  # drop what was made before the failure
                raise
        else:
            self._owner = False
            for k in ("prefix", "requests_topic", "results_topic", "dlq_topic", "group_id",
                      "dbname", "dsn", "tmpdir", "issuer", "kid", "issuer_key",
                      "issuers_file", "_extra_topics", "sent"):
                setattr(self, k, getattr(world, k))
        self.world = world or self
        self.last_sent = None
        self.kms_id = kms_id or f"kms-{self.prefix}-{Kms._count}"
        self.log_path = os.path.join(self.tmpdir, f"{self.kms_id}.log")

    # -- the world

    def _make_world(self, req_p, res_p, dlq_p):
        st = self.stack
        self._db_made = self._topics_made = False
        self._extra_topics = []
        self._reader = self._producer = None
        self.prefix = "t" + secrets.token_hex(5)
        self.requests_topic = f"{self.prefix}.requests"
        self.results_topic = f"{self.prefix}.results"
        self.dlq_topic = f"{self.prefix}.dlq"
        self.group_id = f"{self.prefix}.kms"
        self.dbname = "kms_" + self.prefix[1:]
        self.dsn = st.dsn_for(self.dbname)
        self.tmpdir = tempfile.mkdtemp(prefix=f"kms-{self.prefix}-")
        self.sent = {}

        st.psql(f'CREATE DATABASE "{self.dbname}"')
        self._db_made = True
        cp = subprocess.run([st.binary("kms"), "migrate", "--dsn", self.dsn],
                            capture_output=True, text=True, timeout=120, env=self._env())
        if cp.returncode != 0:
            raise RuntimeError(f"kms migrate failed ({cp.returncode}): {cp.stderr.strip()}")

        st.create_topics({self.requests_topic: req_p, self.results_topic: res_p,
                          self.dlq_topic: dlq_p})
        self._topics_made = True

        self.issuer = ISSUER
        self.kid = KID
        self.issuer_key = new_ec_key()
        pub = os.path.join(self.tmpdir, "issuer.pub.pem")
        with open(pub, "wb") as f:
            f.write(self.issuer_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        self.issuers_file = os.path.join(self.tmpdir, "issuers.json")
        with open(self.issuers_file, "w") as f:
            json.dump([{"iss": self.issuer, "kid": self.kid,
                        "public_key_file": "issuer.pub.pem"}], f)

    def _env(self):
        # KMS_* of the caller's environment (KMS_DSN, KMS_CONFIG, ...) would
        # become settings of the child: only what this Kms sets goes in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("KMS_")}
        env.update(self.env)
        return env

    @staticmethod
    def unique(stem="val"):
        return f"{stem}-{secrets.token_hex(4)}"

    # -- the process

    def args(self):
        return [self.stack.binary(self.binary), "run",
                "--bootstrap", self.stack.bootstrap,
                "--dsn", self.dsn,
                "--requests-topic", self.requests_topic,
                "--results-topic", self.results_topic,
                "--dlq-topic", self.dlq_topic,
                "--group-id", self.group_id,
                "--issuers-file", self.issuers_file,
                "--health-port", str(self.health_port),
                "--kms-id", self.kms_id,
                "--batch-wait-ms", "5",
                *self.extra_args]

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, wait=True, timeout=None):
        assert not self.running, "already running"
        if self._log is None or self._log.closed:
            self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=self._env())
        if wait:
            self.wait_ready(timeout)
        return self

    def readyz(self):
        """(HTTP status, body as dict); (0, {}) when nothing answers."""
        url = f"http://127.0.0.1:{self.health_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return e.code, json.loads(body or b"{}")
            except ValueError:
                return e.code, {}
        except (OSError, ValueError):
            return 0, {}

    def wait_ready(self, timeout=None):
        timeout = timeout or float(os.environ.get("KMS_TEST_READY_TIMEOUT", "60"))
        deadline = time.monotonic() + timeout
        last = (0, {})
        while time.monotonic() < deadline:
            if not self.running:
                rc = self.proc.returncode if self.proc else None
                raise AssertionError(f"kms {self.kms_id} exited with {rc} before it was "
                                     f"ready; log:\n{_tail(self.log_path)}")
            last = self.readyz()
            if last[0] == 200:
                return
            time.sleep(0.1)
        raise AssertionError(f"kms {self.kms_id} not ready after {timeout:.0f}s "
                             f"(last /readyz {last}); log:\n{_tail(self.log_path)}")

    def stop(self, sig=signal.SIGTERM, timeout=45.0):
        """Signal the process and wait for it; returns its exit code. A
        process that outlives timeout is killed and the test fails."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"kms {self.kms_id} ignored signal {sig} for "
                                     f"{timeout:.0f}s; log:\n{_tail(self.log_path)}")
        return self.proc.returncode

    def kill(self):
        return self.stop(signal.SIGKILL, 10)

    def restart(self, wait=True):
        self.stop()
        return self.start(wait)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_events(self):
        out = []
        for line in self.log_text().splitlines():
            try:
                v = json.loads(line)
            except ValueError:
                continue
            if isinstance(v, dict):
                out.append(v)
        return out

    def peer(self, kms_id=None, extra_args=(), start=True):
        """Another KM-S in this world (the same consumer group)."""
        w = self.world
        p = Kms(self.stack, extra_args=extra_args or w.extra_args, env=w.env, kms_id=kms_id,
                world=w)
        w.peers.append(p)
        if start:
            p.start()
        return p

    # -- tokens

    def token(self, client_id, vsp_id, *, alg="ES256", key=None, kid=KID, headers=None,
              now=None, extra_claims=None, **claims):
        now = int(time.time()) if now is None else int(now)
        payload = {"iss": self.issuer, "client_id": client_id, "sub": client_id,
                   "vsp_id": vsp_id, "scope": "ss-kpp", "SKeyProv": True,
                   "iat": now, "nbf": now, "exp": now + 300}
        for k, v in list(claims.items()) + list((extra_claims or {}).items()):
            if v is None:
                payload.pop(k, None)
            else:
                payload[k] = v
        hdr = {}
        if kid is not None:
            hdr["kid"] = kid
        hdr.update(headers or {})
        if alg == "none":
            signing_key = None
        else:
            signing_key = key if key is not None else self.issuer_key
        return pyjwt.encode(payload, signing_key, algorithm=alg, headers=hdr)

    def request(self, requester, services, vsp_id=None, token=None, **kw):
        if token is None:
            token = self.token(requester, vsp_id or "vsp-unset")
        return kmswire.request(requester, token, services, **kw)

    # -- Kafka

    @property
    def producer(self):
        w = self.world
        if w._producer is None:
            w._producer = Producer({"bootstrap.servers": self.stack.bootstrap,
                                    "partitioner": "murmur2_random", "linger.ms": 0})
        return w._producer

    def send(self, req, key=None, headers=None, partition=None, topic=None):
        """Produce one request (dict or raw bytes); returns its requestId
        (None for bytes). Waits for the broker's acknowledgement."""
        if isinstance(req, (bytes, bytearray)):
            value = bytes(req)
            request_id = None
        else:
            value = kmswire.encode_request(req)
            request_id = req["requestId"]
            if key is None:
                key = req["requesterIdentity"]
        if isinstance(key, str):
            key = key.encode("utf-8")
        done = {}

        def on_delivery(err, msg):
            done["err"] = err
            if msg is not None and err is None:
                done["coords"] = (msg.topic(), msg.partition(), msg.offset())

        kwargs = {"value": value, "key": key, "on_delivery": on_delivery}
        if headers:
            kwargs["headers"] = list(headers.items()) if isinstance(headers, dict) else headers
        if partition is not None:
            kwargs["partition"] = partition
        self.producer.produce(topic or self.requests_topic, **kwargs)
        left = self.producer.flush(30)
        assert left == 0 and "err" in done, "request not acknowledged in 30 s"
        assert done["err"] is None, f"produce failed: {done['err']}"
        self.last_sent = done["coords"]
        if request_id is not None:
            self.sent.setdefault(request_id, []).append(done["coords"])
        return request_id

    @property
    def reader(self):
        w = self.world
        if w._reader is None:
            w._reader = _Reader(self.stack.bootstrap)
            w._reader.add(self.results_topic, True)
            w._reader.add(self.dlq_topic, False)
        return w._reader

    def _anyone_running(self):
        w = self.world
        return w.running or any(p.running for p in w.peers)

    def seen(self, topic=None):
        topic = topic or self.results_topic
        self.reader.add(topic, True)
        while self.reader.pump(0.05):
            pass
        return list(self.reader.records[topic])

    def records(self, what=None, *, topic=None, timeout=30.0, settle=0.0):
        topic = topic or self.results_topic
        rd = self.reader
        rd.add(topic, True)
        if isinstance(what, str):
            ids = [what]
        elif isinstance(what, (list, tuple, set)):
            ids = list(what)
        else:
            ids = None

        def have():
            recs = rd.records[topic]
            if ids is not None:
                got = {r.request_id for r in recs}
                return all(i in got for i in ids)
            if isinstance(what, int):
                return len(recs) >= what
            return True

        deadline = time.monotonic() + timeout
        while not have():
            if time.monotonic() > deadline:
                self._timeout(topic, what, timeout)
            if not self._anyone_running():
                # nothing can answer: say so at once
                rd.pump(0.5)
                if not have():
                    self._timeout(topic, what, timeout, dead=True)
            rd.pump(0.1)
        end = time.monotonic() + settle
        while time.monotonic() < end:
            rd.pump(0.1)
        while rd.pump(0.05):
            pass
        recs = rd.records[topic]
        if ids is not None:
            wanted = set(ids)
            return [r for r in recs if r.request_id in wanted]
        return list(recs)

    def _timeout(self, topic, what, timeout, dead=False):
        why = "the KM-S is not running" if dead else f"after {timeout:.0f}s"
        raise AssertionError(
            f"no Result for {what!r} on {topic} ({why}); {len(self.reader.records[topic])} "
            f"records there; log:\n{_tail(self.log_path)}")

    def results(self, what=None, *, topic=None, timeout=30.0, settle=0.0):
        return [(r.headers, r.response) for r in
                self.records(what, topic=topic, timeout=timeout, settle=settle)]

    def result(self, request_id, topic=None, timeout=30.0):
        recs = self.records(request_id, topic=topic, timeout=timeout)
        assert len(recs) == 1, f"{len(recs)} Results for {request_id}, expected 1"
        return recs[0].headers, recs[0].response

    def dlq(self, n=1, *, key=None, timeout=30.0, settle=0.0):
        rd = self.reader
        if isinstance(key, str):
            key = key.encode("utf-8")

        def matching():
            return [r for r in rd.records[self.dlq_topic] if key is None or r.key == key]

        deadline = time.monotonic() + timeout
        while len(matching()) < n:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(matching())} DLQ records (key {key!r}) after {timeout:.0f}s, "
                    f"expected {n}; log:\n{_tail(self.log_path)}")
            rd.pump(0.1)
        end = time.monotonic() + settle
        while time.monotonic() < end:
            rd.pump(0.1)
        return matching()

    def create_topic(self, name=None, partitions=1):
        name = name or f"{self.prefix}.extra{len(self._extra_topics) + 1}"
        self.stack.create_topics({name: partitions})
        self._extra_topics.append(name)
        return name

    # -- administration

    def kmsctl_raw(self, *args, timeout=60):
        env = self._env()
        env["KMS_DSN"] = self.dsn
        cp = subprocess.run([self.stack.binary("kmsctl"), "--dsn", self.dsn, "--json",
                             *[str(a) for a in args]],
                            capture_output=True, text=True, env=env, timeout=timeout)
        return cp.returncode, cp.stdout, cp.stderr

    def kmsctl(self, *args, check=True, timeout=60):
        rc, out, err = self.kmsctl_raw(*args, timeout=timeout)
        if check:
            assert rc == 0, f"kmsctl {' '.join(map(str, args))} exited {rc}: {err.strip()}"
        try:
            return json.loads(out) if out.strip() else None
        except ValueError:
            raise AssertionError(f"kmsctl {' '.join(map(str, args))} printed no JSON: "
                                 f"{out[:500]!r}")

    def provider(self, vsp_id=None, name=None):
        vsp_id = vsp_id or self.unique("vsp")
        args = ["provider", "add", vsp_id]
        if name is not None:
            args += ["--name", name]
        self.kmsctl(*args)
        return vsp_id

    def sla(self, vsp_id, services, key_formats=("JWK", "RAW"), max_val_servers=10,
            valid_from=None, valid_until=None):
        args = ["sla", "add", "--provider", vsp_id, "--services", ",".join(services),
                "--key-formats", ",".join(key_formats),
                "--max-val-servers", str(max_val_servers)]
        for flag, v in (("--valid-from", valid_from), ("--valid-until", valid_until)):
            if v is not None:
                args += [flag, v if isinstance(v, str) else v.isoformat()]
        out = self.kmsctl(*args)
        return _sla_id(out)

    def sql(self, query):
        return self.stack.psql(query, dbname=self.dbname)

    # -- teardown

    def close(self):
        errors = []
        for p in self.peers:
            try:
                p.close()
            except Exception as e:
                errors.append(e)
        try:
            if self.running:
                self.stop()
        except Exception as e:
            errors.append(e)
        finally:
            if self.running:
                self.proc.kill()
                self.proc.wait(10)
            if self._log is not None:
                self._log.close()
        if not self._owner:
            if errors:
                raise errors[0]
            return
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None
        try:
            if self._topics_made:
                self.stack.delete_topics([self.requests_topic, self.results_topic,
                                          self.dlq_topic, *self._extra_topics])
        except Exception as e:
            errors.append(e)
        try:
            if self._db_made:
                self.stack.psql(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        except Exception as e:
            errors.append(e)
        if errors:
            raise errors[0]
        if not os.environ.get("KMS_TEST_KEEP_LOGS"):
            shutil.rmtree(self.tmpdir, ignore_errors=True)


def _sla_id(out):
    """The id of a new SLA from kmsctl's JSON."""
    if isinstance(out, int):
        return out
    if isinstance(out, dict):
        for k in ("sla_id", "id", "slaId"):
            if k in out:
                return int(out[k])
        if "sla" in out and isinstance(out["sla"], dict):
            return _sla_id(out["sla"])
    raise AssertionError(f"no SLA id in kmsctl output {out!r}")


class _Factory:
    def __init__(self, stack):
        self.stack = stack
        self.made = []

    def __call__(self, start=True, **kw):
        k = Kms(self.stack, **kw)
        self.made.append(k)
        if start:
            k.start()
        return k

    def close(self):
        errors = []
        for k in reversed(self.made):
            try:
                k.close()
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]


@pytest.fixture
def kms_factory(stack):
    f = _Factory(stack)
    yield f
    f.close()


@pytest.fixture(scope="module")
def kms_module_factory(stack):
    f = _Factory(stack)
    yield f
    f.close()


@pytest.fixture(scope="module")
def kms(kms_module_factory):
    return kms_module_factory()


# ---------------------------------------------------------------- assertions


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test that takes more than a few seconds")


_SENTENCE = re.compile(r"^[^\r\n]{3,300}$")


def assert_detail_sentence(detail, token=None):
    """detail is one line of human-readable text (3 to 300 characters) that
    quotes neither the token nor any of its parts of 8 characters or more."""
    assert isinstance(detail, str) and _SENTENCE.match(detail), f"detail {detail!r}"
    if token:
        assert token not in detail
        for part in token.split("."):
            if len(part) >= 8:
                assert part not in detail, f"detail {detail!r} quotes the token"
