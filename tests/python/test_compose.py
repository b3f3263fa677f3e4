"""The Docker topology (docker-compose.yml and Dockerfile) is valid and complete.

No Docker engine is needed: docker-compose validates and normalises the file
on its own (`config`), and these tests read what it resolved, not the raw
text, so that they see what Compose would actually run.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import free_port

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"

LONG_RUNNING = ("kafka", "postgres", "kms", "prometheus")
CONTRACT_TOPICS = {
    "seal.km.provisioning.requests": 6,
    "seal.km.provisioning.results": 6,
    "seal.km.provisioning.dlq": 1,
}


def compose(*args):
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is not installed (scripts/deps.sh installs it)"
    return subprocess.run(
        [exe, "-f", str(COMPOSE_FILE), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def config():
    run = compose("config")
    assert run.returncode == 0, run.stderr
    return yaml.safe_load(run.stdout)


@pytest.fixture(scope="module")
def services(config):
    return config["services"]


def script_of(service):
    """The shell text a one-shot service runs (entrypoint plus command)."""
    parts = []
    for key in ("entrypoint", "command"):
        value = service.get(key) or []
        parts.extend([value] if isinstance(value, str) else value)
    return "\n".join(parts)


def test_config_is_valid():
    run = compose("config", "-q")
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""


def test_services_listed():
    run = compose("config", "--services")
    assert run.returncode == 0, run.stderr
    names = set(run.stdout.split())
    assert {"kafka", "postgres", "init", "kms"} <= names


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_have_healthchecks(services, name):
    check = services[name].get("healthcheck")
    assert check, f"{name} has no healthcheck"
    assert not check.get("disable", False)
    test = check.get("test")
    assert test and test != ["NONE"], f"{name}: empty healthcheck"


def test_kafka_is_apache_kafka_41_in_kraft_mode(services):
    kafka = services["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.1\.\d+", kafka["image"]), kafka["image"]
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_NODE_ID"] == "1"
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith("1@")
    assert "ZOOKEEPER" not in " ".join(env).upper()


def test_postgres_is_15(services):
    image = services["postgres"]["image"]
    assert re.fullmatch(r"postgres:15(\.\d+)?(-[a-z0-9.]+)?", image), image
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_kms_health_probe_is_readyz(services):
    kms = services["kms"]
    assert "/readyz" in " ".join(kms["healthcheck"]["test"])
    env = kms["environment"]
    assert env["KMS_HEALTH_PORT"] == "8080"
    assert env["KMS_BOOTSTRAP"] == "kafka:9092"
    assert env["KMS_DSN"].startswith("postgresql://")


def healthcheck_script(service):
    """The shell text of a CMD-SHELL healthcheck as the container runs it
    (compose's config writes a literal $ as $$)."""
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL", test
    return test[1].replace("$$", "$")


def test_kms_health_listens_for_the_network(services):
    kms = services["kms"]
    assert kms["environment"]["KMS_HEALTH_ADDRESS"] == "0.0.0.0"
    assert "KMS_HEALTH_ADDRESS" in healthcheck_script(kms)


@pytest.mark.parametrize("address", ["0.0.0.0", "127.0.0.1", None])
def test_kms_healthcheck_runs_against_a_kms(kms, services, address):
    """The healthcheck's own script, run by sh against a real KM-S on the
    loopback: it follows the health address setting and the port."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "KMS_HEALTH_PORT": str(kms.health_port)}
    if address is not None:
        env["KMS_HEALTH_ADDRESS"] = address
    cp = subprocess.run(["sh", "-c", healthcheck_script(services["kms"])], env=env,
                        capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, cp.stderr
    env["KMS_HEALTH_PORT"] = str(free_port())  # nothing listens there
    cp = subprocess.run(["sh", "-c", healthcheck_script(services["kms"])], env=env,
                        capture_output=True, text=True, timeout=30)
    assert cp.returncode != 0


def test_prometheus_scrapes_the_kms(services):
    prom = services["prometheus"]
    assert prom["image"].startswith("prom/prometheus:")
    assert prom["depends_on"]["kms"]["condition"] in ("service_started", "service_healthy")
    # compose 1.x resolves a bind mount to "source:target:mode"
    mounts = [v.split(":") for v in prom["volumes"]
              if v.split(":")[1:2] == ["/etc/prometheus/prometheus.yml"]]
    assert len(mounts) == 1, prom["volumes"]
    source = Path(mounts[0][0])
    assert source.resolve() == REPO / "deploy" / "prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    conf = yaml.safe_load(source.read_text())
    (job,) = [j for j in conf["scrape_configs"] if j["job_name"] == "kms"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    port = services["kms"]["environment"]["KMS_HEALTH_PORT"]
    assert job["static_configs"][0]["targets"] == [f"kms:{port}"]


def test_dockerfile_health_address():
    text = DOCKERFILE.read_text()
    assert re.search(r"^ENV .*KMS_HEALTH_ADDRESS=0\.0\.0\.0", text, re.M)
    check = text[text.index("HEALTHCHECK"):]
    assert "KMS_HEALTH_ADDRESS" in check and "/readyz" in check


def conditions(service):
    return {name: dep["condition"] for name, dep in service["depends_on"].items()}


def test_start_order(services):
    assert conditions(services["kms"]) == {
        "kafka": "service_healthy",
        "postgres": "service_healthy",
        "registry": "service_healthy",
        "init": "service_completed_successfully",
    }
    init = conditions(services["init"])
    assert init["postgres"] == "service_healthy"
    assert init["registry"] == "service_healthy"
    # init runs after the topics exist, whichever service makes them.
    topic_maker = next(
        name for name, svc in services.items() if "kafka-topics.sh" in script_of(svc)
    )
    if topic_maker != "init":
        assert init[topic_maker] == "service_completed_successfully"
        assert conditions(services[topic_maker])["kafka"] == "service_healthy"


def test_topics_are_the_contract_topics(services):
    text = "\n".join(script_of(svc) for svc in services.values())
    assert "kafka-topics.sh" in text and "--if-not-exists" in text
    for topic, partitions in CONTRACT_TOPICS.items():
        assert f"{topic}:{partitions}" in text or (
            topic in text and f"--partitions {partitions}" in text
        ), topic


def test_init_migrates_and_adds_demo_provider(services):
    # One command per line: continuation lines joined, blanks squeezed.
    text = re.sub(r"[ \t]+", " ", script_of(services["init"]).replace("\\\n", " "))
    assert "kms migrate" in text
    assert "kmsctl provider add demo-vsp" in text
    sla = re.search(r"kmsctl sla add[^\n]*", text)
    assert sla, text
    for arg in (
        "--provider demo-vsp",
        "--services v2x.platooning",
        "--key-formats JWK,RAW",
        "--max-val-servers 100",
    ):
        assert arg in sla.group(0)


def test_kms_image_is_built_here(services):
    for name in ("init", "kms"):
        assert services[name]["image"] == services["kms"]["image"]
    assert Path(services["kms"]["build"]["context"]).resolve() == REPO


def test_dockerfile_stages():
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I)
    assert len(stages) == 2, stages
    assert all(image.startswith("debian:bookworm") for image, _ in stages)
    build, runtime = text.split(stages[1][0], 1)
    assert "make" in build
    for lib in (
        "librdkafka1",
        "libavro23",
        "libssl3",
        "libpq5",
        "libjansson4",
        "libmicrohttpd12",
        "libcurl4",
        "curl",
    ):
        assert re.search(rf"\b{re.escape(lib)}\b", runtime), lib
    for binary in ("kms", "kmsctl", "valctl"):
        assert f"build/{binary}" in runtime
    assert not re.search(r"\blib\S*-dev\b", runtime), "dev packages in the runtime image"


def test_schema_registry(services):
    """The official Apicurio Registry image, its schemas in PostgreSQL (a
    database of its own), published on the host's loopback only; the KM-S and
    its init (which registers the schemas) point at its Confluent-compatible
    API."""
    reg = services["registry"]
    assert reg["image"].startswith("apicurio/apicurio-registry:")
    env = reg["environment"]
    assert env["APICURIO_STORAGE_KIND"] == "sql"
    assert env["APICURIO_STORAGE_SQL_KIND"] == "postgresql"
    assert env["APICURIO_DATASOURCE_URL"].endswith("/registry")
    assert conditions(reg)["postgres"] == "service_healthy"
    assert all(str(p).startswith("127.0.0.1:") for p in reg["ports"])
    assert "healthcheck" in reg
    for name in ("kms", "init"):
        assert services[name]["environment"]["KMS_REGISTRY_URL"] == \
            "http://registry:8080/apis/ccompat/v7"
    assert "kms migrate" in script_of(services["init"])
    mounts = [str(v) for v in services["postgres"].get("volumes", [])]
    assert any(":/docker-entrypoint-initdb.d/" in m for m in mounts)
    sql = (REPO / "scripts/compose/registry-db.sql").read_text()
    assert "CREATE DATABASE registry" in sql
