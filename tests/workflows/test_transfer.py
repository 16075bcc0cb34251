"""Transfer matrix columns: held out where a run fitted, all architectures elsewhere."""

from __future__ import annotations

from lpzero_queue.benchmarks.splits import SplitSpec
from lpzero_queue.proxies.spec import TRIVIAL_BASELINES, ProxySpec
from lpzero_queue.workflows.transfer import Column, TransferProxy, plan_columns, transfer_specs

NAMED = TransferProxy(ProxySpec("expression", "sum(abs(act), abs(head))", "higher"), "named")


def _run(run_id: int, bench: str, split: SplitSpec) -> TransferProxy:
    spec = ProxySpec("expression", f"<best of run {run_id}>", "higher")
    return TransferProxy(spec, f"run {run_id} best", run_id, bench, split)


def test_columns_hold_out_each_search_split_of_a_fitted_benchmark() -> None:
    a, b = SplitSpec(size=50, seed=0), SplitSpec(size=20, seed=3)
    proxies = [NAMED, _run(1, "gpt2-wt103", a), _run(2, "gpt2-wt103", a), _run(3, "mine", b)]
    assert plan_columns(["gpt2-wt103", "mine", "other"], proxies) == [
        Column("gpt2-wt103", "test", a, (1, 2)),
        Column("mine", "test", b, (3,)),
        Column("other", "all", SplitSpec()),
    ]
    assert plan_columns(["x"], [NAMED]) == [Column("x", "all", SplitSpec())]
    two = plan_columns(["x"], [_run(1, "x", a), _run(2, "x", b)])
    assert [c.label for c in two] == [
        "x (held out: test:sample50-seed0)",
        "x (held out: test:sample20-seed3)",
    ]


def test_rows_are_the_proxies_then_the_baselines_once() -> None:
    params = TransferProxy(ProxySpec("builtin", "params", "higher", "params"), "params")
    texts = [s.text for s in transfer_specs([NAMED, params])]
    assert texts == [NAMED.spec.text, "params", *(n for n in TRIVIAL_BASELINES if n != "params")]
