"""Measure the search environment: expert and random success rates, and steps per second.

    python -m empg.envs.search.measure [--episodes 200] [--kb-seed 0]

The random policy searches 1-3 words drawn from the question and the last observation, and
with probability 0.3 per turn answers a random 1-3 word span of the question or the last
observation (so a lucky guess is possible: comparison answers are spans of the question).
Steps per second count ``env.step`` calls only; the one-time build of the knowledge base and
the BM25 index happens before timing starts.
"""

from __future__ import annotations

import argparse
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from empg.envs.search.env import SearchEnv
from empg.envs.search.questions import SPLITS

Policy = Callable[[SearchEnv, str, random.Random], str]
_WORD = re.compile(r"[A-Za-z0-9']+")


@dataclass(frozen=True)
class Measurement:
    episodes: int
    successes: int
    steps: int
    seconds: float

    @property
    def success_rate(self) -> float:
        return self.successes / max(1, self.episodes)

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("inf")


def expert_policy(env: SearchEnv, obs: str, rng: random.Random) -> str:
    return env.expert_action()


def random_policy(env: SearchEnv, obs: str, rng: random.Random) -> str:
    """Random search words or a random answer span (see the module docstring)."""
    words = _WORD.findall(env.question.text) + _WORD.findall(obs)
    n = rng.randint(1, 3)
    if rng.random() < 0.3:
        start = rng.randrange(len(words))
        return f"answer[{' '.join(words[start : start + n])}]"
    return f"search[{' '.join(rng.choice(words) for _ in range(n))}]"


def run_policy(env: SearchEnv, policy: Policy, seeds: range, rng_seed: int = 0) -> Measurement:
    """Play one episode per seed with ``policy``; count successes, steps and step time."""
    rng = random.Random(rng_seed)
    successes = steps = 0
    seconds = 0.0
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        while True:
            action = policy(env, obs, rng)
            t0 = time.perf_counter()
            res = env.step(action)
            seconds += time.perf_counter() - t0
            steps += 1
            obs = res.observation
            if res.terminated or res.truncated:
                successes += int(res.info["won"])
                break
    return Measurement(len(seeds), successes, steps, seconds)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=200, help="episodes per split and policy")
    ap.add_argument("--kb-seed", type=int, default=0, help="seed of the knowledge base")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    envs = {s: SearchEnv(s, kb_seed=args.kb_seed) for s in SPLITS}
    print(f"build (KB, passages, BM25 index, questions): {time.perf_counter() - t0:.2f} s")
    for split, env in envs.items():
        for name, policy in (("expert", expert_policy), ("random", random_policy)):
            m = run_policy(env, policy, range(args.episodes))
            print(
                f"{split:9s} {name:7s} success {m.success_rate:6.1%} "
                f"({m.successes}/{m.episodes})  steps {m.steps:5d}  {m.steps_per_s:8.0f} steps/s"
            )


if __name__ == "__main__":
    main()
