"""``lpzq worker``: a Celery worker for the proxy and/or train queue.

The parent process builds the Celery application and forks children with the prefork pool; torch
is imported only in the children (``worker_process_init``), so CUDA is never initialised in the
parent. ``--device cuda`` is checked in a short subprocess for the same reason.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import typer

from lpzero_queue.errors import LpzqError

DEVICES = ("auto", "cpu", "cuda")
_CUDA_PROBE = "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)"


def _queues(text: str) -> list[str]:
    from lpzero_queue.execution.celery_app import QUEUES

    names = [q.strip() for q in text.split(",") if q.strip()]
    unknown = [q for q in names if q not in QUEUES]
    if not names or unknown:
        raise LpzqError(
            f"invalid --queues {text!r}; valid: proxy, train or proxy,train (comma-separated)"
        )
    return list(dict.fromkeys(names))


def _require_cuda() -> None:
    """Fail in one line when no GPU is visible; probes in a subprocess to keep CUDA out."""
    probe = subprocess.run([sys.executable, "-c", _CUDA_PROBE], capture_output=True, check=False)
    if probe.returncode != 0:
        raise LpzqError(
            "--device cuda: no CUDA device is visible to this worker "
            "(torch.cuda.is_available() is false); use --device cpu or --device auto"
        )


def _check(app: object) -> None:
    """Exit 0 when a worker on this host answers a ping through the broker, else 1."""
    replies = app.control.ping(timeout=5.0)  # type: ignore[attr-defined]
    host = socket.gethostname()
    mine = sorted(node for reply in replies for node in reply if node.endswith(f"@{host}"))
    if not mine:
        typer.echo(f"lpzq: no worker on {host} answered a ping", err=True)
        raise typer.Exit(1)
    typer.echo(f"ok: {', '.join(mine)}")


def worker(
    ctx: typer.Context,
    queues: str = typer.Option("proxy", "--queues", "-Q", help="proxy, train or proxy,train."),
    device: str | None = typer.Option(
        None, "--device", help="cpu, cuda or auto (default: the 'device' setting)."
    ),
    concurrency: int = typer.Option(
        1, "--concurrency", "-c", min=1, help="Child processes (one per GPU on CUDA)."
    ),
    loglevel: str = typer.Option("INFO", "--loglevel", help="Celery log level."),
    max_tasks_per_child: int | None = typer.Option(
        None, "--max-tasks-per-child", help="Recycle a child after N tasks (default 200)."
    ),
    key_prefix: str | None = typer.Option(
        None,
        "--key-prefix",
        help="Redis key prefix isolating a deployment (default: the 'celery_key_prefix' setting).",
    ),
    check: bool = typer.Option(
        False, "--check", help="Health check: ping this host's worker through the broker."
    ),
) -> None:
    """Run a Celery worker that scores proxy units (and, later, trains subnets).

    Example: LPZQ_BROKER_URL=redis://127.0.0.1:6379/0 lpzq worker --queues proxy --device cpu
    """
    from celery.signals import worker_process_init

    from lpzero_queue.execution.celery_app import CeleryOptions, check_broker, make_celery
    from lpzero_queue.execution.tasks import configure_worker_process

    settings = ctx.obj.settings
    if not settings.broker_url:
        raise LpzqError(
            "lpzq worker needs a broker: set LPZQ_BROKER_URL (e.g. redis://host:6379/0)"
        )
    names = _queues(queues)
    chosen = device or settings.device
    if chosen not in DEVICES:
        raise LpzqError(f"invalid --device {chosen!r}; valid: {', '.join(DEVICES)}")
    options = CeleryOptions.from_settings(
        settings, key_prefix=key_prefix, max_tasks_per_child=max_tasks_per_child
    )
    app = make_celery(settings, options)
    if check:
        check_broker(app)
        _check(app)
        return
    if chosen == "cuda":
        if concurrency != 1:  # each child would hold its own CUDA context, cache and memos
            raise LpzqError(
                f"--device cuda takes --concurrency 1, got {concurrency}: one worker process "
                "per GPU holds the inputs and branch memos on the device (start one worker per "
                "GPU, e.g. with CUDA_VISIBLE_DEVICES)"
            )
        _require_cuda()
    check_broker(app, retries=5)

    def _init_child(**_: object) -> None:
        configure_worker_process(settings, chosen)

    worker_process_init.connect(_init_child, weak=False)
    node = f"{'-'.join(names)}-{os.getpid()}@%h"
    app.worker_main(
        [
            "worker",
            "--pool=prefork",
            f"--concurrency={concurrency}",
            f"--queues={','.join(names)}",
            f"--hostname={node}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
