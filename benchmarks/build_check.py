"""Score policy folders on the first-use build's check (``empg.models.check``).

    python benchmarks/build_check.py ~/.cache/empg/models/household-tiny-v2-8ca1502521ce \
        runs/sft/step_900 --threads 2

Plays each folder on the tasks of :data:`empg.models.check.HOUSEHOLD_CHECK` (train tasks far
from the warm start's data, T=0.4, 20 steps, a fixed sampling seed) with the default prompt
layout, and prints its success rate against the threshold. This is how the threshold in
docs/models.md ("A check of every new default build") was calibrated.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("folders", nargs="+", help="policy folders (any HF causal-LM folder)")
    p.add_argument("--episodes", type=int, default=None, help="tasks (default: the check's)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    import dataclasses

    import torch

    from empg.models.check import HOUSEHOLD_CHECK, check_success
    from empg.models.default import load_policy
    from empg.models.sft import default_prompt_config

    if args.threads < 1:
        p.error("--threads must be >= 1")
    torch.set_num_threads(args.threads)
    check = HOUSEHOLD_CHECK
    if args.episodes is not None:
        check = dataclasses.replace(check, episodes=args.episodes)
    print(f"check: {check.describe()}, threshold {check.min_success:.0%}")
    for folder in args.folders:
        model, tok = load_policy(folder)
        t0 = time.perf_counter()
        rate = check_success(model, tok, "household", default_prompt_config(), check)
        verdict = "passes" if rate >= check.min_success else "too weak"
        print(f"{folder}: {rate:.1%} ({verdict}; {time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
