"""Environment throughput: steps per second of every registered environment on one core.

For each environment that can be built, plays episodes with a uniformly random admissible
action (or a random short string where the environment lists none) for about ``--seconds``
seconds, and also measures the scripted expert's success rate. Prints a table::

    .venv/bin/python benchmarks/env_throughput.py --seconds 5

Adapters need inputs: ``textworld`` generates tw-cooking games (recipe 1, take 1, go 6) into
``--cache`` (first run: a few seconds per game); ``alfworld`` uses ``--alfworld-data`` or, by
default, a data folder written from the hand-made test game in ``tests/envs/data``. Use
``taskset -c 0`` to pin to one core; the timings include ``reset``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from empg.envs import TextEnv, make, names

ROOT = Path(__file__).resolve().parent.parent
RANDOM_STRINGS = ("look", "inventory", "go north", "take it", "help")


def _alfworld_data(tmp: Path) -> Path:
    from empg.envs.alfworld import write_game

    data = ROOT / "tests" / "envs" / "data" / "alfworld_tiny"
    problem = (data / "initial_state.pddl").read_text()
    traj = json.loads((data / "traj_data.json").read_text())
    trial = tmp / "json_2.1.1" / "train" / "pick_and_place_simple-Apple-None-DiningTable-1" / "t1"
    write_game(trial, problem, traj)
    return tmp


def env_kwargs(name: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    if name == "textworld":
        settings = {"recipe": 1, "take": 1, "go": 6}
        return {"challenge": "tw-cooking", "settings": settings, "cache_dir": args.cache}
    if name == "alfworld":
        return {"data_dir": args.alfworld_data or str(_alfworld_data(tmp)), "split": "train"}
    return {}


def _episode(env: TextEnv, seed: int, rng: random.Random, expert: bool) -> tuple[int, bool]:
    _, info = env.reset(seed=seed)
    steps = 0
    while True:
        if expert:
            action = env.expert_action()
        else:
            adm = info.get("admissible_actions") or []
            action = rng.choice(adm) if adm else rng.choice(RANDOM_STRINGS)
        res = env.step(action)
        steps += 1
        info = res.info
        if res.terminated or res.truncated:
            return steps, bool(info["won"])


def measure(env: TextEnv, seconds: float, seeds: int, expert_episodes: int) -> dict[str, Any]:
    rng = random.Random(0)
    for s in range(seeds):  # warm-up: load / generate every game once
        env.reset(seed=s)
    steps = episodes = wins = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n, won = _episode(env, episodes % seeds, rng, expert=False)
        steps, episodes, wins = steps + n, episodes + 1, wins + won
    elapsed = time.perf_counter() - t0
    expert_wins = expert_steps = 0
    try:
        for e in range(expert_episodes):
            n, won = _episode(env, e % seeds, rng, expert=True)
            expert_wins, expert_steps = expert_wins + won, expert_steps + n
        expert = f"{expert_wins}/{expert_episodes}"
    except NotImplementedError:
        expert = "n/a"
    return {
        "steps_per_s": steps / elapsed,
        "ms_per_step": 1000 * elapsed / max(steps, 1),
        "random_success": f"{wins}/{episodes}",
        "expert_success": expert,
        "episodes": episodes,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0, help="random-play time per env")
    p.add_argument("--seeds", type=int, default=4, help="distinct tasks/games cycled through")
    p.add_argument("--expert-episodes", type=int, default=4, help="expert episodes per env")
    p.add_argument("--only", nargs="*", default=None, help="environment names to run")
    p.add_argument("--cache", default=None, help="TextWorld game cache (default: empg's)")
    p.add_argument("--alfworld-data", default=None, help="ALFWorld data folder")
    args = p.parse_args(argv)
    if hasattr(os, "sched_getaffinity"):
        print(f"# cores available to this process: {len(os.sched_getaffinity(0))}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or names():
            try:
                env = make(name, **env_kwargs(name, args, Path(tmp)))
            except Exception as exc:
                rows.append((name, f"skipped: {type(exc).__name__}: {str(exc)[:70]}"))
                continue
            try:
                r = measure(env, args.seconds, args.seeds, args.expert_episodes)
            finally:
                env.close()
            rows.append(
                (
                    name,
                    f"{r['steps_per_s']:9.1f}  {r['ms_per_step']:8.2f}  {r['random_success']:>10}"
                    f"  {r['expert_success']:>8}  {r['episodes']:>8}",
                )
            )
    head = f"{'steps/s':>10}  {'ms/step':>8}  {'random win':>10}  {'expert':>8}  {'episodes':>8}"
    print(f"{'env':<12}{head}")
    for name, text in rows:
        print(f"{name:<12}{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
