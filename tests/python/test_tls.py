"""Transport security: the provisioning round trip over TLS to both Kafka and
PostgreSQL, with certificate verification on, and a wrong CA refused.

The module brings up a second stack of its own (``scripts/stack`` with its
own state folder and free ports, a Kafka SSL listener and PostgreSQL with
ssl=on, certificates made by ``scripts/certs.sh``) and takes it down at the
end, so the main stack is untouched. The test harness itself creates the
topics and databases over the plaintext listener; everything the product
does goes over TLS:

- the KM-S: ``-X security.protocol=ssl -X ssl.ca.location=ca.pem
  -X ssl.endpoint.identification.algorithm=https`` and
  ``--dsn postgresql://postgres@localhost:PORT/DB?sslmode=verify-full&sslrootcert=ca.pem``;
- valctl, the VAL server, sends its request and reads its Result over the
  SSL listener;
- kmsctl reads what was stored over a verify-full connection.

PostgreSQL's own view (pg_stat_ssl) shows that the KM-S's sessions are
encrypted. With the unrelated CA of certs.sh, the KM-S never becomes ready
and logs the certificate failure, valctl fails, and ``kms migrate`` exits
non-zero with a certificate error; a host name the certificate does not
name is refused by verify-full as well.
"""

import gc
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

import kmswire
from conftest import Kms, Stack, free_port, wait_until
from jwkslib import ask, events, hup

REPO = kmswire.REPO
STACK = os.path.join(REPO, "scripts", "stack")
CERT_ERROR = ("certificate verify failed", "certificate verification failed")


def _stack_env(state, ports):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMS_")}
    env.update({
        "KMS_STACK_DIR": state,
        "KMS_KAFKA_PORT": str(ports["kafka"]),
        "KMS_KAFKA_CONTROLLER_PORT": str(ports["ctrl"]),
        "KMS_KAFKA_TLS_PORT": str(ports["tls"]),
        "KMS_PG_PORT": str(ports["pg"]),
        "KMS_PG_TLS": "1",
        # no schema registry: these tests need none, and its default port
        # is the main stack's
        "KMS_REGISTRY_PORT": "",
        # the main stack's fixture has already installed what is needed
        "KMS_SKIP_DEPS": "1",
    })
    for k in ("KMS_CACHE", "KMS_PG_BIN", "KMS_PG_OS_USER", "KMS_STACK_TIMEOUT"):
        if k in os.environ:
            env[k] = os.environ[k]
    return env


class TlsStack:
    def __init__(self, values, env, build):
        self.values = values
        self.env = env
        self.plain = Stack(values["bootstrap"], values["dsn"], build)
        self.bootstrap_tls = values["bootstrap_tls"]
        self.ca = values["ca"]
        self.wrong_ca = env["wrong_ca"]
        self.pg_port = int(values["dsn"].rsplit(":", 1)[1].split("/")[0])

    def dsn_tls(self, dbname, ca=None, host="localhost"):
        return (f"postgresql://postgres@{host}:{self.pg_port}/{dbname}"
                f"?sslmode=verify-full&sslrootcert={ca or self.ca}")

    def kafka_tls_args(self, ca=None):
        return ["-X", "security.protocol=ssl", "-X", f"ssl.ca.location={ca or self.ca}",
                "-X", "ssl.endpoint.identification.algorithm=https"]


@pytest.fixture(scope="module")
def tls(stack):
    state = tempfile.mkdtemp(prefix="kms-tls-stack-")
    ports = {}
    while len(set(ports.values())) < 4:
        ports = {n: free_port() for n in ("kafka", "ctrl", "tls", "pg")}
    env = _stack_env(state, ports)
    cp = subprocess.run([STACK, "up"], capture_output=True, text=True, env=env, timeout=600)
    try:
        assert cp.returncode == 0, f"scripts/stack up (TLS) failed:\n{cp.stderr[-3000:]}"
        values = dict(line.split("=", 1) for line in cp.stdout.splitlines() if "=" in line)
        for k in ("bootstrap", "bootstrap_tls", "dsn", "dsn_tls", "ca"):
            assert k in values, f"scripts/stack up printed no {k}: {cp.stdout}"
        exports = subprocess.run([STACK, "env"], capture_output=True, text=True, env=env,
                                 timeout=60).stdout
        wrong = [ln.split("=", 1)[1].strip("'") for ln in exports.splitlines()
                 if ln.startswith("export KMS_WRONG_CA_FILE=")]
        assert wrong, f"scripts/stack env printed no KMS_WRONG_CA_FILE: {exports}"
        env_out = dict(env, wrong_ca=wrong[0])
        ts = TlsStack(values, env_out, stack.build)
        yield ts
        # drop the harness's admin client before its broker goes away
        ts.plain._admin = None
        gc.collect()
    finally:
        down = subprocess.run([STACK, "reset"], capture_output=True, text=True, env=env,
                              timeout=300)
        shutil.rmtree(state, ignore_errors=True)
        assert down.returncode == 0, f"scripts/stack reset (TLS) failed: {down.stderr[-2000:]}"


@pytest.fixture
def tls_kms(tls):
    """Make KM-S worlds on the TLS stack (topics and database made over the
    plaintext side by the harness); the KM-S itself gets TLS settings."""
    made = []

    def make(kafka_ca=None, pg_ca=None, start=True):
        k = Kms(tls.plain)
        made.append(k)
        k.extra_args = ["--bootstrap", tls.bootstrap_tls,
                        "--dsn", tls.dsn_tls(k.dbname, pg_ca), *tls.kafka_tls_args(kafka_ca)]
        if start:
            k.start()
        return k
    yield make
    errors = []
    for k in reversed(made):
        try:
            k.close()
        except Exception as e:
            errors.append(e)
    if errors:
        raise errors[0]


def _binary(tls, name):
    return tls.plain.binary(name)


def _valctl(tls, k, ident, token, ca=None, timeout=30):
    return subprocess.run(
        [_binary(tls, "valctl"), "provision", "-b", tls.bootstrap_tls,
         *tls.kafka_tls_args(ca), "--requests-topic", k.requests_topic,
         "--reply-topic", k.results_topic, "--requester", ident,
         "--endpoint", f"https://{ident}.vals.test/seal", "--token", token,
         "--service", "svc-a:JWK", "--content", "svc-a:alg=A256GCM",
         "--timeout", str(timeout), "--json", "-v"],
        capture_output=True, text=True, timeout=timeout + 60)


def _kmsctl_tls(tls, k, *args, ca=None):
    return subprocess.run([_binary(tls, "kmsctl"), "--dsn", tls.dsn_tls(k.dbname, ca), "--json",
                           *args], capture_output=True, text=True, timeout=60)


def _has_cert_error(text):
    t = text.lower()
    return any(e in t for e in CERT_ERROR)


def test_provisioning_round_trip_over_tls(tls, tls_kms):
    k = tls_kms()
    vsp = k.provider()
    k.sla(vsp, ["svc-a"], ("JWK",))
    ident = k.unique("val-tls")
    token = k.token(ident, vsp)

    cp = _valctl(tls, k, ident, token)
    assert cp.returncode == 0, f"valctl exited {cp.returncode}: {cp.stderr[-2000:]}"
    result = json.loads(cp.stdout)
    assert result["result"] == "SUCCESS", result
    assert result["requesterIdentity"] == ident
    assert result["kmsId"] == k.kms_id

    # stored, read back over a verify-full connection
    show = _kmsctl_tls(tls, k, "valserver", "show", ident)
    assert show.returncode == 0, show.stderr
    vs = json.loads(show.stdout)
    assert vs["requester_identity"] == ident and vs["vsp_id"] == vsp
    assert [(f["val_service_id"], f["format_type"], f["content"]) for f in vs["history"]] \
        == [("svc-a", "JWK", {"alg": "A256GCM"})]

    # PostgreSQL's own view: every session of the KM-S's database but this
    # query's is encrypted (and there is at least one)
    rows = tls.plain.psql(
        "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
        f" WHERE a.datname = '{k.dbname}' AND a.pid <> pg_backend_pid()", dbname=k.dbname)
    assert rows, "no session of the KM-S in pg_stat_activity"
    assert all(r[0] == "t" and r[1].startswith("TLSv1.") for r in rows), rows

    # the KM-S was given only the SSL listener: its log shows no failure
    events = k.log_events()
    assert any(e.get("event") == "started" for e in events)
    assert not _has_cert_error(k.log_text())


def test_pg_host_name_checked_by_verify_full(tls, tls_kms):
    k = tls_kms(start=False)
    ok = subprocess.run([_binary(tls, "kms"), "migrate", "--dsn", tls.dsn_tls(k.dbname)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    # by IP address: the certificate names 127.0.0.1 too
    ok_ip = subprocess.run([_binary(tls, "kms"), "migrate", "--dsn",
                            tls.dsn_tls(k.dbname, host="127.0.0.1")],
                           capture_output=True, text=True, timeout=60)
    assert ok_ip.returncode == 0, ok_ip.stderr
    # the right server under a name its certificate does not carry
    wrong_name = (f"postgresql://postgres@not-in-the-cert.test:{tls.pg_port}/{k.dbname}"
                  f"?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={tls.ca}")
    cp = subprocess.run([_binary(tls, "kms"), "migrate", "--dsn", wrong_name],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode != 0
    assert "does not match host name" in cp.stderr, cp.stderr


def test_pg_wrong_ca_refused(tls, tls_kms):
    k = tls_kms(start=False)
    cp = subprocess.run([_binary(tls, "kms"), "migrate", "--dsn",
                         tls.dsn_tls(k.dbname, tls.wrong_ca)],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode != 0, cp.stdout
    assert _has_cert_error(cp.stderr), cp.stderr
    show = _kmsctl_tls(tls, k, "provider", "list", ca=tls.wrong_ca)
    assert show.returncode != 0 and _has_cert_error(show.stderr), show.stderr

    # the KM-S itself: waits for the database, never ready, says why
    k.extra_args = ["--bootstrap", tls.bootstrap_tls,
                    "--dsn", tls.dsn_tls(k.dbname, tls.wrong_ca), *tls.kafka_tls_args()]
    k.start(wait=False)
    time.sleep(8)
    assert k.running, "the KM-S exited instead of waiting for the database"
    assert k.readyz()[0] != 200
    wait_until(lambda: _has_cert_error(k.log_text()), 20, 0.5, "a certificate error in the log")
    k.stop()


def test_kafka_wrong_ca_refused(tls, tls_kms):
    k = tls_kms(kafka_ca=tls.wrong_ca, start=False)
    vsp = k.provider()
    k.sla(vsp, ["svc-a"], ("JWK",))
    k.start(wait=False)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert k.running, f"the KM-S exited: {k.log_text()[-2000:]}"
        assert k.readyz()[0] != 200, "ready although the broker's certificate is not trusted"
        time.sleep(0.5)
    assert _has_cert_error(k.log_text()), k.log_text()[-3000:]

    # valctl with the wrong CA: no delivery, a certificate error
    ident = k.unique("val-tls")
    cp = _valctl(tls, k, ident, k.token(ident, vsp), ca=tls.wrong_ca, timeout=10)
    assert cp.returncode not in (0, 1), cp.stdout
    assert _has_cert_error(cp.stderr), cp.stderr[-2000:]

    # nothing got through: no request on the topic, nothing stored
    k.stop()
    assert k.kmsctl("valserver", "list") == []
    # with the right CA the same world works, so it was the CA
    k.extra_args = ["--bootstrap", tls.bootstrap_tls, "--dsn", tls.dsn_tls(k.dbname),
                    *tls.kafka_tls_args()]
    k.start()
    cp = _valctl(tls, k, ident, k.token(ident, vsp))
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert json.loads(cp.stdout)["result"] == "SUCCESS"


def test_pg_tls_files_read_again_on_sighup(tls, tls_kms, tmp_path):
    """SIGHUP opens a new database connection, so libpq reads the CA file
    again; a new connection that fails (here: the file now holds an unrelated
    CA) is refused, the one in force stays, and /readyz says why."""

    def kms_session(k):
        return {r[0] for r in tls.plain.psql(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            dbname=k.dbname)}

    ca_file = tmp_path / "pg-ca.pem"
    shutil.copy(tls.ca, ca_file)
    k = tls_kms(pg_ca=str(ca_file))
    vsp = k.provider()
    k.sla(vsp, ["svc-a"], ("JWK",))
    ident = k.unique("val-tls")
    assert ask(k, ident, k.token(ident, vsp), ("svc-a",))["result"] == "SUCCESS"
    first = kms_session(k)
    assert len(first) == 1

    shutil.copy(tls.wrong_ca, ca_file)
    before = len(events(k, "reload_refused"))
    assert hup(k)["issuers_applied"] is True
    refused = events(k, "reload_refused")[before:]
    assert [e["what"] for e in refused] == ["database_connection"]
    assert _has_cert_error(refused[0]["error"]), refused[0]
    status, body = k.readyz()
    assert "database connection refused" in body["reload_error"]
    ident = k.unique("val-tls")
    assert ask(k, ident, k.token(ident, vsp), ("svc-a",))["result"] == "SUCCESS"
    assert kms_session(k) == first

    # the CA file rotated to a bundle of the old and the new CA: taken
    with open(ca_file, "wb") as f:
        for path in (tls.wrong_ca, tls.ca):
            with open(path, "rb") as part:
                f.write(part.read())
    before = len(events(k, "reload_refused"))
    hup(k)
    assert events(k, "reload_refused")[before:] == []
    assert "reload_error" not in k.readyz()[1]
    now = kms_session(k)
    assert len(now) == 1 and not now & first
    ident = k.unique("val-tls")
    assert ask(k, ident, k.token(ident, vsp), ("svc-a",))["result"] == "SUCCESS"
