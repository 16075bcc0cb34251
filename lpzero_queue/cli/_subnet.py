"""``lpzq subnet``: LoNAS-style sub-network selection on a LLaMA-architecture model.

``pretrain`` trains a small ``LlamaConfig`` model on the shipped text through the train queue;
``search`` scores sampled sub-networks with a proxy (zero-cost), fine-tunes the proxy's top k, k
random ones and the largest through train tasks, and prints validation perplexity and active
parameters side by side.
"""

from __future__ import annotations

import json
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import typer

from lpzero_queue.cli._train import hyperparameters
from lpzero_queue.errors import LpzqError
from lpzero_queue.storage import EvaluationStatus

if TYPE_CHECKING:
    from lpzero_queue.cli._context import Runtime
    from lpzero_queue.proxies.spec import ProxySpec
    from lpzero_queue.training.subnet import ElasticSpace

app = typer.Typer(
    help="LoNAS-style sub-networks of a LLaMA model: pretrain one, search with a proxy.",
    no_args_is_help=True,
)


def _say(message: str) -> None:
    typer.echo(message, err=True)


@app.command("pretrain")
def subnet_pretrain(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="Directory the trained model is written to."),
    steps: int = typer.Option(300, "--steps", help="Training steps."),
    hidden: int = typer.Option(64, "--hidden", help="hidden_size."),
    layers: int = typer.Option(2, "--layers", help="num_hidden_layers."),
    heads: int = typer.Option(4, "--heads", help="Attention heads (must divide --hidden)."),
    intermediate: int = typer.Option(256, "--intermediate", help="MLP intermediate_size."),
    seed: int = typer.Option(0, "--seed", help="Initialisation and batch-order seed."),
    batch_size: int = typer.Option(8, "--batch-size", help="Training batch size."),
    seq_len: int = typer.Option(64, "--seq-len", help="Training sequence length (8..192)."),
    lr: float = typer.Option(3e-3, "--lr", help="AdamW peak learning rate."),
) -> None:
    """Pretrain a small LLaMA model on the shipped text (a train task) and save it to --out.

    Example: lpzq subnet pretrain --out tiny-llama --steps 300
    """
    from lpzero_queue.cli._progress import training_progress
    from lpzero_queue.execution.train_runner import TrainRunner
    from lpzero_queue.execution.train_tasks import JobRequest
    from lpzero_queue.storage import JobStatus
    from lpzero_queue.training.llama import tiny_llama_config

    if min(hidden, layers, heads, intermediate) < 1 or hidden % heads:
        raise LpzqError(
            f"--hidden {hidden}, --layers {layers}, --heads {heads}, --intermediate "
            f"{intermediate}: all must be positive and --heads must divide --hidden"
        )
    hp = hyperparameters(steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr)
    config = tiny_llama_config(hidden=hidden, layers=layers, heads=heads, intermediate=intermediate)
    target = out.resolve()
    request = JobRequest({"kind": "llama", "config": config, "save_to": str(target)}, hp, seed)
    rt = ctx.obj
    rt.apply_torch_settings()
    rt.require_schema(create=True)
    runner = TrainRunner(rt.settings, rt.engine, say=_say)
    with training_progress(rt.engine, [request], "pretraining"):
        (result,) = runner.run([request], retry_failed=True)
    if result.status != JobStatus.COMPLETED:
        raise LpzqError(f"pretraining job {result.id} {result.status}: {result.error}")
    if not (target / "config.json").is_file():
        # The job completed earlier and its model directory was removed since: train it again.
        raise LpzqError(
            f"job {result.id} completed before but {target} holds no model now; "
            "choose another --out or --seed"
        )
    m = result.metrics
    typer.echo(
        f"{target}: LLaMA {layers} layers x hidden {hidden} (intermediate {intermediate}), "
        f"{m['params']['active']:,} parameters; valid_ppl {m['valid_ppl']:.2f} after {steps} "
        f"steps (seed {seed}, {batch_size}x{seq_len} tokens per step, job {result.id})"
    )


def _pick(rows: list[dict[str, Any]], k: int, higher: bool) -> list[dict[str, Any]]:
    ok = [r for r in rows if r["status"] == EvaluationStatus.OK]
    return sorted(ok, key=lambda r: r["score"], reverse=higher)[:k]


@dataclass(frozen=True)
class _Scored:
    """The elastic space of a model and the proxy scores of a sample of its sub-networks."""

    space: ElasticSpace
    scored: list[dict[str, Any]]  # one row per sampled sub-network (status, score, widths, ...)

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.scored if r["status"] == EvaluationStatus.OK]


def _check_search_options(linear_scope: str, samples: int, top_k: int, rank: int) -> None:
    if linear_scope not in ("mixer", "all"):
        raise LpzqError(f"invalid --linear-scope {linear_scope!r}; valid: mixer, all")
    if samples < 1 or top_k < 1 or rank < 1:
        raise LpzqError("--samples, --top-k and --rank must be positive")


def _score_sample(
    path: Path,
    config: dict[str, Any],
    spec: ProxySpec,
    *,
    samples: int,
    rank: int,
    seed: int,
    rng: np.random.Generator,
    linear_scope: str,
) -> _Scored:
    """Sample sub-networks of the model's elastic space and score each with the proxy."""
    from lpzero_queue.training import subnet as sn

    space = sn.elastic_space(config, rank=rank)
    subnets = sn.sample_subnets(space, samples, rng)
    _say(
        f"elastic space: {space.layers} layers x widths {list(space.widths)} x ranks "
        f"{list(space.ranks)} ({space.size:,} sub-networks); scoring {len(subnets)} with "
        f"{spec.label}"
    )
    started = time.perf_counter()
    batch = sn.proxy_batch(seed=seed, batch_size=4, seq_len=64)
    scored = sn.score_subnets(
        path, subnets, spec.text, seed=seed, batch=batch, linear_scope=linear_scope
    )
    result = _Scored(space, scored)
    _say(f"scored {len(scored)} sub-networks in {time.perf_counter() - started:.1f} s "
         f"({len(result.ok)} ok)")  # fmt: skip
    if not result.ok:
        raise LpzqError(f"the proxy gave no finite score on any sub-network ({scored[0]['error']})")
    return result


def _pick_groups(
    sample: _Scored, spec: ProxySpec, top_k: int, random_k: int, rng: np.random.Generator
) -> list[tuple[str, dict[str, Any]]]:
    """(group, row) to fine-tune: the proxy's top k, k random ones and the largest."""
    from lpzero_queue.training import subnet as sn

    scored = sample.scored
    picked = _pick(scored, top_k, spec.direction == "higher")
    chosen = rng.choice(len(scored), size=min(random_k, len(scored)), replace=False)
    randoms = [scored[int(i)] for i in chosen]
    groups = [("proxy", r) for r in picked] + [("random", r) for r in randoms]
    groups.append(("largest", {**sn.largest(sample.space).to_dict(), "score": None}))
    return groups


def _finetune(
    rt: Runtime,
    path: Path,
    fingerprint: str,
    groups: list[tuple[str, dict[str, Any]]],
    hp: dict[str, Any],
    seed: int,
) -> list[dict[str, Any]]:
    """Fine-tune every picked sub-network (train jobs); one table row per sub-network."""
    from lpzero_queue.cli._progress import training_progress
    from lpzero_queue.execution.train_runner import TrainRunner
    from lpzero_queue.execution.train_tasks import JobRequest

    requests = [
        JobRequest(
            {"kind": "subnet", "model_path": str(path), "model_sha": fingerprint,
             "widths": r["widths"], "ranks": r["ranks"], "alpha": 16.0},
            hp, seed,
        )
        for _, r in groups
    ]  # fmt: skip
    rt.require_schema(create=True)
    runner = TrainRunner(rt.settings, rt.engine, say=_say)
    with training_progress(rt.engine, requests, "fine-tuning"):
        results = runner.run(requests)
    table: list[dict[str, Any]] = []
    for (group, row), res in zip(groups, results, strict=True):
        m = res.metrics
        params = m.get("params", {})
        entry = {
            "group": group, "widths": row["widths"], "ranks": row["ranks"],
            "proxy_score": row.get("score"), "job": res.id, "status": res.status,
            "valid_ppl": m.get("valid_ppl"), "active_params": params.get("active"),
            "trainable_params": params.get("trainable"), "error": res.error,
        }  # fmt: skip
        table.append(entry)
    return table


def _echo_comparison(table: list[dict[str, Any]], hp: dict[str, Any], seed: int) -> dict[str, Any]:
    """Print the fine-tuned table and each group's summary; return the summary."""
    _print_table(table)
    summary = _summary(table)
    for line in summary["lines"]:
        typer.echo(line)
    steps, batch_size, seq_len = hp["steps"], hp["batch_size"], hp["seq_len"]
    typer.echo(
        f"fine-tuning: {steps} steps of {batch_size}x{seq_len} tokens, LoRA only (alpha 16), "
        f"seed {seed}; validation: {hp['eval_batches']}x{batch_size}x{seq_len} tokens of the "
        "shipped text's validation paragraphs; proxy batch 4x64 of the training text"
    )
    return summary


def _proxy_vs_size(ok: list[dict[str, Any]]) -> float:
    """Kendall tau between the proxy's scores and the active parameters of the ok rows."""
    from scipy import stats

    scores = [r["score"] for r in ok]
    return float(stats.kendalltau(scores, [r["active_params"] for r in ok]).statistic)


@app.command("search")
def subnet_search(
    ctx: typer.Context,
    model: Path = typer.Option(..., "--model", help="A LLaMA model directory (save_pretrained)."),
    proxy: str = typer.Option(..., "--proxy", help="Proxy expression or name (lpzero-gpt2)."),
    higher_is_better: bool | None = typer.Option(
        None, "--higher-is-better/--lower-is-better", help="Direction of a new expression."
    ),
    samples: int = typer.Option(200, "--samples", help="Sub-networks scored with the proxy."),
    top_k: int = typer.Option(4, "--top-k", help="Proxy-picked sub-networks fine-tuned."),
    random_k: int | None = typer.Option(None, "--random-k", help="Random ones (default: --top-k)."),
    steps: int = typer.Option(100, "--steps", help="Fine-tuning steps per sub-network."),
    rank: int = typer.Option(8, "--rank", help="Largest LoRA rank (LoNAS: 32 on LLaMA-7B)."),
    seed: int = typer.Option(0, "--seed", help="Sampling, adapter-init and fine-tuning seed."),
    batch_size: int = typer.Option(8, "--batch-size", help="Fine-tuning batch size."),
    seq_len: int = typer.Option(64, "--seq-len", help="Fine-tuning sequence length (8..192)."),
    # 5e-4: at 3e-3 fine-tuning left even the largest sub-network of a 300-step pretrained
    # model worse than its start (README, "Training"); 5e-4 kept it within 0.4%.
    lr: float = typer.Option(5e-4, "--lr", help="AdamW peak learning rate of the adapters."),
    # "all": the elastic widths change only the MLPs, so with the attention projections alone
    # (mixer) a weight/grad proxy scores every sub-network the same (README, "Training").
    linear_scope: str = typer.Option(
        "all", "--linear-scope", help="weight/grad from: all (q,k,v,o and MLP) or mixer (q,k,v,o)."
    ),
    out: Path | None = typer.Option(None, "--out", help="JSON report (default: data dir)."),
) -> None:
    """Score sampled sub-networks with a proxy, fine-tune the picked ones, compare.

    Example: lpzq subnet search --model tiny-llama --proxy lpzero-gpt2 --samples 200 --top-k 4
    """
    from lpzero_queue.proxies.spec import resolve_proxy
    from lpzero_queue.training import subnet as sn
    from lpzero_queue.training.llama import load_llama

    _check_search_options(linear_scope, samples, top_k, rank)
    hp = hyperparameters(steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr)
    sn.check_expression(proxy.strip())
    direction = None if higher_is_better is None else ("higher" if higher_is_better else "lower")
    spec = resolve_proxy(proxy, direction)  # type: ignore[arg-type]
    path = model.resolve()
    config = load_llama(path).config.to_dict()  # one-line error for a bad path, before any work
    rt = ctx.obj
    rt.apply_torch_settings()
    rng = np.random.default_rng(seed)
    sample = _score_sample(
        path, config, spec, samples=samples, rank=rank, seed=seed, rng=rng,
        linear_scope=linear_scope,
    )  # fmt: skip
    groups = _pick_groups(sample, spec, top_k, top_k if random_k is None else random_k, rng)
    fingerprint = sn.model_fingerprint(path)
    table = _finetune(rt, path, fingerprint, groups, hp, seed)
    summary = _echo_comparison(table, hp, seed)
    tau_size = _proxy_vs_size(sample.ok)
    typer.echo(
        f"proxy vs active parameters over the {len(sample.ok)} scored: Kendall {tau_size:+.3f}"
    )
    report = {
        "command": shlex.join(["lpzq", *sys.argv[1:]]),
        "model": str(path), "model_sha": fingerprint, "proxy": spec.text,
        "direction": spec.direction, "linear_scope": linear_scope, "seed": seed,
        "hyperparameters": hp, "space": _space_dict(sample.space),
        "scored": sample.scored, "finetuned": table, "summary": summary["groups"],
        "proxy_vs_active_params_kendall": tau_size,
    }  # fmt: skip
    target = out or rt.settings.data_dir / "subnet" / f"search-{fingerprint}-seed{seed}.json"
    _write_json(target, report)


def _space_dict(space: ElasticSpace) -> dict[str, Any]:
    return {"layers": space.layers, "widths": list(space.widths), "ranks": list(space.ranks)}


def _write_json(target: Path, report: dict[str, Any]) -> None:
    """Write the search's JSON report (its folder created) and say where."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=2, default=float))
    typer.echo(f"report: {target}")


def _print_table(rows: list[dict[str, Any]]) -> None:
    from lpzero_queue.cli._output import echo_table

    def fmt(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    echo_table(
        ["picked by", "widths", "ranks", "proxy", "active params", "trainable", "valid ppl", "job"],
        [
            [r["group"], ",".join(map(str, r["widths"])), ",".join(map(str, r["ranks"])),
             fmt(r["proxy_score"], ".4g"), fmt(r["active_params"], ","),
             fmt(r["trainable_params"], ","), fmt(r["valid_ppl"], ".2f"), r["job"]]
            for r in rows
        ],
    )  # fmt: skip


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    groups: dict[str, Any] = {}
    lines = []
    for group in ("proxy", "random", "largest"):
        done = [r for r in rows if r["group"] == group and r["valid_ppl"] is not None]
        if not done:
            continue
        ppl = [r["valid_ppl"] for r in done]
        params = [r["active_params"] for r in done]
        groups[group] = {
            "n": len(done), "mean_valid_ppl": statistics.fmean(ppl), "best_valid_ppl": min(ppl),
            "mean_active_params": statistics.fmean(params),
        }  # fmt: skip
        lines.append(
            f"{group:<8} n={len(done)}  valid ppl mean {statistics.fmean(ppl):.2f} "
            f"(best {min(ppl):.2f})  active params mean {statistics.fmean(params):,.0f}"
        )
    return {"groups": groups, "lines": lines}
