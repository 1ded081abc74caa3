"""The run's PNG plots: series with gaps, the caller's matplotlib backend, `empg plot`, and
plots after a run that failed or could not plot (real files, a tiny real policy)."""

from __future__ import annotations

import json
import math

import pytest
from train_helpers import QUIET, tiny_overrides

from empg import cli
from empg.errors import TrainingDivergedError
from empg.train.config import load_config
from empg.train.metrics import read_metrics
from empg.train.plots import _series, plot_run
from empg.train.trainer import Trainer

matplotlib = pytest.importorskip("matplotlib")


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _run_records():
    rows = [{"kind": "eval", "iteration": 0, "eval/valid_seen/success_rate": 0.25}]
    for it in range(1, 6):
        row = {"kind": "train", "iteration": it, "actor/grad_norm": float(it)}
        if it == 3:  # a skipped update logs no gradient norm
            del row["actor/grad_norm"]
        if it == 4:
            row["actor/grad_norm"] = None  # a non-finite value is written as null
        rows.append(row)
    rows.append({"kind": "eval", "iteration": 5, "eval/valid_seen/success_rate": 0.5})
    return rows


def test_a_missing_or_null_value_is_a_gap_and_eval_rows_stay_out_of_train_series(tmp_path):
    records = _run_records()
    xs, ys = _series(records, "actor/grad_norm")["actor/grad_norm"]
    assert xs == [1, 2, 3, 4, 5]
    assert ys[:2] == [1.0, 2.0] and math.isnan(ys[2]) and math.isnan(ys[3]) and ys[4] == 5.0
    ev = _series(records, "eval/*/success_rate")
    assert ev == {"eval/valid_seen/success_rate": ([0, 5], [0.25, 0.5])}
    assert _series(records, "actor/clipfrac") == {}


def test_plotting_leaves_the_callers_matplotlib_backend_alone(tmp_path):
    _write(tmp_path / "metrics.jsonl", _run_records())
    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        paths = plot_run(tmp_path)
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    assert sorted(p.name for p in paths) == ["grad_norm.png", "success.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(p.name for p in paths)
    # a later run in the folder without a panel's metrics leaves no stale picture of it
    _write(tmp_path / "metrics.jsonl", _run_records()[:1])
    assert [p.name for p in plot_run(tmp_path)] == ["success.png"]
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["success.png"]


def test_cli_plot_draws_a_run_folder_and_refuses_other_folders(tmp_path, capsys):
    _write(tmp_path / "metrics.jsonl", _run_records())
    assert cli.main(["plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out.split()
    assert sorted(out) == sorted(str(p) for p in (tmp_path / "plots").glob("*.png"))
    assert cli.main(["plot", str(tmp_path / "nothing")]) == 2
    assert "holds no metrics.jsonl" in capsys.readouterr().err


def test_a_run_that_stops_with_an_error_is_plotted(tiny_policy_dir, tmp_path):
    over = tiny_overrides(tiny_policy_dir, tmp_path, iterations=3)
    trainer = Trainer(load_config(None, [*over, "optim.max_bad_updates=1"]), log=QUIET)
    trainer.state["before"] = trainer.evaluate(0)
    import torch

    with torch.no_grad():
        for p in trainer.model.parameters():
            p.fill_(float("nan"))
    with pytest.raises(TrainingDivergedError):
        trainer.run()
    assert (tmp_path / "plots" / "success.png").is_file()


def test_a_plot_that_cannot_be_written_does_not_fail_a_finished_run(tiny_policy_dir, tmp_path):
    (tmp_path / "plots").write_text("a file where the plots folder would go")
    lines: list[str] = []
    cfg = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path, iterations=1))
    result = Trainer(cfg, log=lines.append).run()
    assert result.iterations_done == 1 and result.after is not None
    assert any(line.startswith("[empg] warning: plots not written") for line in lines)
    assert [r["kind"] for r in read_metrics(tmp_path / "metrics.jsonl")][-1] == "eval"
