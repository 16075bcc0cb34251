"""The compose files: what `docker compose up` starts, with and without the CPU override.

Docker does not run here: the files are checked against the Compose specification (JSON schema)
and read as Compose reads them (the CPU override merged onto the main file); `docker compose
config` runs too where the plugin is installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
CPU_OVERRIDE = REPO_ROOT / "docker-compose.cpu.yml"
WORKERS = {"proxy-worker": "proxy", "train-worker": "train"}


class _Reset:
    """Compose's ``!reset`` tag: the merged file has no such key."""


class _ComposeLoader(yaml.SafeLoader):
    pass


_ComposeLoader.add_constructor("!reset", lambda loader, node: _Reset())


def _load(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_ComposeLoader)  # a SafeLoader subclass


def _merge(base: Any, override: Any) -> Any:
    """Compose's merge for what the override uses: mappings merge key by key, ``!reset`` drops
    a key, any other value (``command``, ``image``) replaces the base's."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return override
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, _Reset):
            out.pop(key, None)
        else:
            out[key] = _merge(base.get(key), value)
    return out


def _effective(*paths: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in paths:
        merged = _merge(merged, _load(path))
    return merged


def _check_schema(path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(path)],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_file_matches_the_compose_specification() -> None:
    _check_schema(COMPOSE)


def test_cpu_alternative_matches_the_compose_specification(tmp_path: Path) -> None:
    merged = tmp_path / "cpu.json"
    merged.write_text(json.dumps(_effective(COMPOSE, CPU_OVERRIDE)))
    _check_schema(merged)


def test_compose_services_and_build_context() -> None:
    spec = _load(COMPOSE)
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
@pytest.mark.parametrize("files", [[COMPOSE], [COMPOSE, CPU_OVERRIDE]], ids=["gpu", "cpu"])
def test_docker_compose_config_accepts_the_files(files: list[Path]) -> None:
    args = [a for f in files for a in ("-f", str(f))]
    out = subprocess.run(
        ["docker", "compose", *args, "config", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    services = json.loads(out.stdout)["services"]
    assert set(WORKERS) <= set(services)
    gpu = files == [COMPOSE]
    for name in WORKERS:
        assert ("deploy" in services[name]) == gpu, name


def _services(*paths: Path) -> dict[str, dict[str, Any]]:
    return _effective(*(paths or (COMPOSE,)))["services"]  # type: ignore[no-any-return]


def _device(service: dict[str, Any]) -> str:
    command = service["command"]
    return str(command[command.index("--device") + 1])


def test_plain_up_starts_the_whole_stack_with_gpu_workers() -> None:
    services = _services()
    # Services without a profile are exactly what a plain `docker compose up` starts.
    assert {n for n, s in services.items() if "profiles" not in s} == {
        "postgres",
        "redis",
        "migrate",
        *WORKERS,
    }
    for name in WORKERS:
        service = services[name]
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
        assert _device(service) == "cuda"
        assert service["build"]["args"]["TORCH_INDEX"].endswith("/cu128")


def test_cpu_override_starts_the_same_workers_on_cpu() -> None:
    gpu, cpu = _services(), _services(COMPOSE, CPU_OVERRIDE)
    assert {n for n, s in cpu.items() if "profiles" not in s} == {
        n for n, s in gpu.items() if "profiles" not in s
    }
    for name in WORKERS:
        service = cpu[name]
        assert "deploy" not in service, name
        assert _device(service) == "cpu"
        assert service["image"] == "lpzero_queue:cpu"
        assert service["build"]["args"]["TORCH_INDEX"].endswith("/whl/cpu")
        assert service["build"]["dockerfile"] == gpu[name]["build"]["dockerfile"]
        # Everything but the device comes from the main file: environment, order, health.
        for key in ("environment", "depends_on", "healthcheck", "restart"):
            assert service[key] == gpu[name][key], (name, key)


@pytest.mark.parametrize("override", [(), (CPU_OVERRIDE,)], ids=["gpu", "cpu"])
def test_workers_consume_their_own_queue_after_migration_and_healthy_services(
    override: tuple[Path, ...],
) -> None:
    services = _services(COMPOSE, *override)
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
        for key in ("SOFT_TIME_LIMIT_S", "HARD_TIME_LIMIT_S", "VISIBILITY_TIMEOUT_S", "KEY_PREFIX"):
            assert env[f"LPZQ_CELERY_{key}"].startswith(f"${{LPZQ_CELERY_{key}:-"), key
    assert queues == WORKERS
    assert services["migrate"]["healthcheck"] == {"disable": True}


def test_worker_image_has_a_health_check_and_entry_point() -> None:
    dockerfile = (REPO_ROOT / "workers" / "Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile and '"lpzq", "worker", "--check"' in dockerfile
    assert "ARG TORCH_INDEX" in dockerfile
    entrypoint = REPO_ROOT / "workers" / "entrypoint.sh"
    assert entrypoint.stat().st_mode & 0o111
    out = subprocess.run(["sh", "-n", str(entrypoint)], capture_output=True, check=False)
    assert out.returncode == 0, out.stderr
