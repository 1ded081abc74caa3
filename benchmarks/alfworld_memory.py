"""Memory of an ALFWorld environment that changes games on every reset: engines reused (what
AlfWorldEnv does) against a new engine per game (what it did before December 2026).

    python benchmarks/alfworld_memory.py --resets 200

Each TextWorld ``PddlEnv`` loads its own copy of fast-downward's library and never unloads it.
Two games are written from the tests' ALFWorld problem (tests/envs/data/alfworld_tiny) into a
temporary folder; each mode then runs in a fresh process, resetting one AlfWorldEnv ``--resets``
times alternately on the two games, and prints its resident memory (VmRSS) and the number of
library mappings in /proc/self/maps (Linux only). Numbers in docs/env_adapters.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "tests" / "envs" / "data" / "alfworld_tiny"
TASK_DIR = "pick_and_place_simple-Apple-None-DiningTable-1"

CHILD = """
import json, sys
import empg.envs.alfworld as alf
if sys.argv[3] == "fresh":  # an engine per game, as before engines were reused
    alf._take_idle = lambda planner: None
env = alf.AlfWorldEnv(sys.argv[1], "train")
for seed in range(int(sys.argv[2])):
    env.reset(seed=seed)
maps = sum("libdownward" in line for line in open("/proc/self/maps"))
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS"))
print(json.dumps({"rss_mb": rss / 1024, "mappings": maps}))
"""


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resets", type=int, default=200, help="resets, alternating two games")
    a = p.parse_args(argv)
    if not Path("/proc/self/maps").exists():
        sys.exit("needs Linux /proc")
    from empg.envs.alfworld import write_game

    problem = (DATA / "initial_state.pddl").read_text()
    traj = json.loads((DATA / "traj_data.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        train = Path(tmp) / "json_2.1.1" / "train" / TASK_DIR
        for trial in ("trial_T0001", "trial_T0002"):
            write_game(train / trial, problem, traj)
        results = {}
        for mode in ("fresh", "reused"):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, tmp, str(a.resets), mode],
                capture_output=True,
                text=True,
                check=True,
            )
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            r = results[mode]
            print(f"{mode:7s} {a.resets} resets: {r['rss_mb']:.0f} MB resident, "
                  f"{r['mappings']} library mappings")  # fmt: skip
    ratio = results["fresh"]["rss_mb"] / results["reused"]["rss_mb"]
    print(f"resident memory, a new engine per game / engines reused: {ratio:.2f}x")


if __name__ == "__main__":
    main()
