"""The compose file is valid against the Compose specification (Docker does not run here)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"


def test_compose_file_matches_the_compose_specification() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_services_and_build_context() -> None:
    import yaml

    spec = yaml.safe_load(COMPOSE.read_text())
    assert {"postgres", "redis", "migrate"} <= set(spec["services"])
    for name, service in spec["services"].items():
        build = service.get("build")
        if build:
            assert (REPO_ROOT / build["context"] / build["dockerfile"]).is_file(), name
    assert "pgdata" in spec["volumes"]


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(
        ["docker", "compose", "version"], capture_output=True, check=False
    ).returncode,
    reason="the docker compose plugin is not installed here; validated against the schema instead",
)
def test_docker_compose_config_accepts_the_file() -> None:
    out = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr


def _services() -> dict[str, dict]:  # type: ignore[type-arg]
    import yaml

    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_gpu_workers_reserve_a_gpu_and_cpu_variants_do_not() -> None:
    services = _services()
    for name in ("proxy-worker", "train-worker"):
        service = services[name]
        assert service["profiles"] == ["gpu"], name
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
        assert service["command"][service["command"].index("--device") + 1] == "cuda"
    for name in ("proxy-worker-cpu", "train-worker-cpu"):
        service = services[name]
        assert service["profiles"] == ["cpu"], name
        assert "deploy" not in service
        assert service["command"][service["command"].index("--device") + 1] == "cpu"


def test_workers_consume_their_own_queue_after_migration_and_healthy_services() -> None:
    services = _services()
    queues = {}
    for name, service in services.items():
        command = service.get("command", [])
        if command[:2] != ["lpzq", "worker"]:
            continue
        queues[name] = command[command.index("--queues") + 1]
        assert service["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }, name
        assert service["healthcheck"]["test"] == ["CMD", "lpzq", "worker", "--check"]
        env = service["environment"]
        assert env["LPZQ_BROKER_URL"].startswith("redis://redis:")
        assert "@postgres:5432/" in env["LPZQ_DATABASE_URL"]
        assert env["LPZQ_TORCH_THREADS"].startswith("${LPZQ_TORCH_THREADS:-1")
    assert queues == {
        "proxy-worker": "proxy",
        "train-worker": "train",
        "proxy-worker-cpu": "proxy",
        "train-worker-cpu": "train",
    }
    # Services without a profile are exactly what a plain `docker compose up` starts.
    assert {n for n, s in services.items() if "profiles" not in s} == {
        "postgres",
        "redis",
        "migrate",
    }
    assert services["migrate"]["healthcheck"] == {"disable": True}


def test_worker_image_has_a_health_check_and_entry_point() -> None:
    dockerfile = (REPO_ROOT / "workers" / "Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile and '"lpzq", "worker", "--check"' in dockerfile
    assert "ARG TORCH_INDEX" in dockerfile
    entrypoint = REPO_ROOT / "workers" / "entrypoint.sh"
    assert entrypoint.stat().st_mode & 0o111
    out = subprocess.run(["sh", "-n", str(entrypoint)], capture_output=True, check=False)
    assert out.returncode == 0, out.stderr
