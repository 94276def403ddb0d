"""docker-compose.yml, Dockerfile and .dockerignore, checked without a Docker engine.

What is checked: the files parse, every image is pinned, the Kafka image is the Kafka the local
launcher uses (kafka/pom.xml), every STREAMPROC_* variable is a real setting, the workers can
be scaled, and the image is built from what the build context holds.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamproc.config import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PROJECT_SERVICES = ("topic-init", "worker", "simulator")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict), "docker-compose.yml must be a mapping"
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose.get("services")
    assert isinstance(found, dict) and found, "docker-compose.yml has no services"
    return found


def pom_kafka_version() -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(REPO / "kafka" / "pom.xml").getroot().find("m:properties/m:kafka.version", ns)
    assert node is not None and node.text, "kafka/pom.xml has no <kafka.version>"
    return node.text.strip()


def image_tag(image: str) -> str | None:
    """The tag of ``repo[:port]/name:tag`` (None if untagged); a digest counts as a tag."""
    if "@sha256:" in image:
        return image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_compose_file_parses(compose: dict[str, Any]) -> None:
    assert "services" in compose
    assert "version" not in compose, "the top-level version key is obsolete in Compose v2"


def test_required_services_exist(services: dict[str, dict[str, Any]]) -> None:
    assert {"kafka", "topic-init", "worker", "simulator", "prometheus", "grafana"} <= set(services)


@pytest.mark.parametrize("tag", ["", "latest"])
def test_image_tag_helper_flags_unpinned_images(tag: str) -> None:
    image = f"apache/kafka:{tag}" if tag else "apache/kafka"
    assert image_tag(image) in (None, "", "latest")
    assert image_tag("localhost:5000/streamproc:0.1.0") == "0.1.0"


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service.get("image")
        if image is None:
            assert "build" in service, f"service {name} has neither an image nor a build"
            continue
        tag = image_tag(str(image))
        assert tag, f"service {name}: image {image!r} has no tag; pin one"
        assert tag != "latest", f"service {name}: image {image!r} is not pinned (latest)"


def test_kafka_image_is_the_launcher_kafka_version(services: dict[str, dict[str, Any]]) -> None:
    image = str(services["kafka"]["image"])
    assert image.rsplit(":", 1)[0] == "apache/kafka"
    assert image_tag(image) == pom_kafka_version(), (
        f"docker-compose.yml runs {image} but kafka/pom.xml has kafka.version "
        f"{pom_kafka_version()}; keep them equal"
    )


def test_kafka_is_a_single_kraft_node_with_a_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    kafka = services["kafka"]
    env = environment(kafka)
    for key in (
        "KAFKA_NODE_ID",
        "KAFKA_PROCESS_ROLES",
        "KAFKA_LISTENERS",
        "KAFKA_ADVERTISED_LISTENERS",
        "KAFKA_CONTROLLER_LISTENER_NAMES",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
        "KAFKA_CONTROLLER_QUORUM_VOTERS",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
    ):
        assert key in env, f"kafka service lacks {key}"
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = [entry.split("://")[0] for entry in env["KAFKA_LISTENERS"].split(",")]
    assert set(listeners) <= set(protocols), "every listener needs a security protocol"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    test = " ".join(str(part) for part in kafka["healthcheck"]["test"])
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in test


def test_streamproc_env_vars_are_settings(services: dict[str, dict[str, Any]]) -> None:
    known = {"STREAMPROC_" + name.upper() for name in Settings.model_fields}
    seen = set()
    for name, service in services.items():
        for var in environment(service):
            if var.startswith("STREAMPROC_"):
                seen.add(var)
                assert var in known, (
                    f"service {name} sets {var}, which is no field of streamproc.config.Settings"
                )
    assert "STREAMPROC_BOOTSTRAP_SERVERS" in seen


def test_project_services_reach_kafka_inside_the_stack(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in PROJECT_SERVICES:
        assert environment(services[name])["STREAMPROC_BOOTSTRAP_SERVERS"] == "kafka:9092", name


def test_project_services_run_the_expected_commands(services: dict[str, dict[str, Any]]) -> None:
    def argv(name: str) -> list[str]:
        command = services[name]["command"]
        return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]

    assert argv("topic-init") == ["topics", "create"]
    assert argv("worker") == ["worker"]
    assert argv("simulator") == [
        "simulate",
        "--events",
        "100000",
        "--rate",
        "2000",
        "--invalid-fraction",
        "0.03",
        "--duplicate-fraction",
        "0.01",
    ]
    assert services["simulator"]["profiles"] == ["simulate"]
    assert str(services["topic-init"]["restart"]) == "no"


def test_start_order(services: dict[str, dict[str, Any]]) -> None:
    assert services["topic-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    worker_deps = services["worker"]["depends_on"]
    assert worker_deps["topic-init"]["condition"] == "service_completed_successfully"
    simulator_deps = services["simulator"]["depends_on"]
    assert simulator_deps["topic-init"]["condition"] == "service_completed_successfully"


def test_worker_is_scalable(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker, "a container_name stops --scale worker=N"
    assert "ports" not in worker, "a fixed host port stops --scale worker=N; use expose"
    env = environment(worker)
    assert env["STREAMPROC_METRICS_HOST"] == "0.0.0.0", "Prometheus must reach /metrics"


def test_project_services_use_the_project_image(services: dict[str, dict[str, Any]]) -> None:
    images = {services[name].get("image") for name in PROJECT_SERVICES}
    assert len(images) == 1, f"one project image for all project services, got {images}"
    for name in PROJECT_SERVICES:
        assert "build" in services[name], f"{name} must be buildable from the Dockerfile"


# --- Prometheus and Grafana: the mounted configuration is the configuration the tests check ----


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> host path (relative to the repo) of a service's bind mounts."""
    found: dict[str, str] = {}
    for volume in service.get("volumes") or []:
        host, container = str(volume).split(":")[:2]
        if host.startswith("./"):
            found[container] = host[2:]
    return found


def test_prometheus_loads_the_repo_config_and_scrapes_every_worker(
    services: dict[str, dict[str, Any]],
) -> None:
    prometheus = services["prometheus"]
    config_dir = mounts(prometheus)["/etc/prometheus"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = yaml.safe_load((REPO / config_dir / "prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        assert (REPO / config_dir / rule_file).is_file(), f"rule file {rule_file} is not mounted"
    [scrape] = [job for job in config["scrape_configs"] if job["job_name"] == "streamproc-worker"]
    [sd] = scrape["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["names"][0] in services
    worker = services["worker"]
    assert str(sd["port"]) == environment(worker)["STREAMPROC_METRICS_PORT"]
    assert str(sd["port"]) in [str(port) for port in worker["expose"]]


def test_grafana_provisions_the_repo_dashboard_over_the_stack_prometheus(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    mounted = mounts(grafana)
    provisioning = REPO / mounted["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    [source] = datasources["datasources"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in services
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())
    [provider] = providers["providers"]
    dashboards = REPO / mounted[provider["options"]["path"]]
    dashboard = json.loads((dashboards / "streamproc.json").read_text())
    uids = {
        str((panel.get("datasource") or {}).get("uid"))
        for panel in dashboard["panels"]
        if isinstance(panel.get("datasource"), dict)
    }
    assert uids == {source["uid"]}, f"panels use datasources {uids}, provisioned {source['uid']}"
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (dashboards / home.rsplit("/", 1)[1]).is_file()


# --- Dockerfile and .dockerignore --------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        instruction, _, rest = stripped.partition(" ")
        out.append((instruction.upper(), rest.strip()))
    return out


def test_dockerfile_base_image_is_pinned_python_311_slim() -> None:
    bases = [args.split()[0] for ins, args in dockerfile_instructions() if ins == "FROM"]
    assert bases, "Dockerfile has no FROM"
    for base in bases:
        tag = image_tag(base)
        assert tag and tag != "latest", f"base image {base!r} is not pinned"
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", bases[-1]), bases[-1]


def copy_sources() -> list[str]:
    sources = []
    for ins, args in dockerfile_instructions():
        if ins == "COPY":
            parts = [p for p in args.split() if not p.startswith("--")]
            sources.extend(parts[:-1])
    return sources


def test_dockerfile_copies_what_the_wheel_needs() -> None:
    sources = {s.rstrip("/") for s in copy_sources()}
    # pyproject's force-include needs schemas/ and kafka/pom.xml; hatchling needs README.md.
    assert {"schemas", "kafka/pom.xml", "streamproc", "agents", "pyproject.toml"} <= sources
    assert "README.md" in sources


def test_dockerfile_runs_streamproc_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions()
    users = [args for ins, args in instructions if ins == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    runs = " ".join(args for ins, args in instructions if ins == "RUN")
    assert "pip install" in runs and " ." in runs
    assert ("ENTRYPOINT", '["streamproc"]') in instructions
    assert ("CMD", '["worker"]') in instructions


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves ``path`` out (last matching pattern wins, as Docker does)."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        if fnmatch.fnmatch(path, pat) or path.startswith(pat + "/"):
            result = not negate
    return result


def test_dockerignore_keeps_everything_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in copy_sources():
        assert not ignored(source.rstrip("/"), patterns), f".dockerignore excludes {source}"
    for heavy in (".venv", ".git", "tests", ".streamproc"):
        assert ignored(heavy, patterns), f".dockerignore should exclude {heavy}"
