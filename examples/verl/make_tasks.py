"""Write the task datasets that verl's RLHFDataset reads for the empg_household_agent loop.

One row per task (``empg.integrations.verl.agent_loop.task_row``): the prompt is a placeholder,
the task is ``extra_info`` (env, split, seed); the agent loop builds the real prompt from the
environment. Usage::

    python examples/verl/make_tasks.py --out data/empg_tasks                  # household
    python examples/verl/make_tasks.py --env alfworld --train 3553 --val 140  # real ALFWorld

Writes ``{env}_train.parquet`` and ``{env}_{val_split}.parquet`` under ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from empg.integrations.verl.agent_loop import task_row

#: the held-out split of the built-in environments that do not call it valid_seen
VAL_SPLITS = {"shop": "valid", "search": "test_id"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="household")
    p.add_argument("--out", default="data/empg_tasks")
    p.add_argument("--train", type=int, default=2400, help="training tasks (seeds 0..n-1)")
    p.add_argument("--val", type=int, default=128, help="validation tasks")
    p.add_argument("--train-split", default="train")
    p.add_argument(
        "--val-split",
        default=None,
        help="default: valid_seen (household, alfworld), valid (shop), test_id (search)",
    )
    a = p.parse_args()
    if a.val_split is None:
        a.val_split = VAL_SPLITS.get(a.env, "valid_seen")
    if a.env in VAL_SPLITS or a.env == "household":  # built-in: check now, not in the GPU job
        from empg.agent.rollout import check_env_builds
        from empg.errors import ConfigError

        for split in (a.train_split, a.val_split):
            try:
                check_env_builds(a.env, {"split": split})
            except ConfigError as e:
                p.error(str(e))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for split, n in ((a.train_split, a.train), (a.val_split, a.val)):
        rows = [task_row(a.env, seed, split) for seed in range(n)]
        path = out / f"{a.env}_{split}.parquet"
        pd.DataFrame(rows).to_parquet(path)
        print(f"wrote {n} tasks to {path}")


if __name__ == "__main__":
    main()
