"""Measure the shop benchmark: expert and random success, and steps per second.

Run ``python -m empg.envs.shop.measure --split test --episodes 200``. The random policies pick
uniformly among ``info["admissible_actions"]``; when they pick the ``search[<query>]`` template
they fill it with 1-4 random words, either from the whole catalogue vocabulary (``random``) or
from the instruction (``random-instr``, a stronger baseline).
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass

from empg.envs.shop.env import ShopEnv
from empg.envs.shop.pages import SEARCH_TEMPLATE
from empg.envs.shop.search import tokenize


@dataclass(frozen=True)
class RunStats:
    policy: str
    episodes: int
    successes: int
    mean_reward: float
    steps: int
    seconds: float

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("inf")


def _vocabulary(env: ShopEnv) -> list[str]:
    words = {w for p in env.catalog.products for w in tokenize(p.title)}
    return sorted(words)


def random_action(env: ShopEnv, info: dict, rng: random.Random, words: list[str]) -> str:
    action = rng.choice(info["admissible_actions"])
    if action == SEARCH_TEMPLATE:
        return "search[" + " ".join(rng.choice(words) for _ in range(rng.randint(1, 4))) + "]"
    return action


def run_policy(env: ShopEnv, policy: str, episodes: int, first_seed: int = 0) -> RunStats:
    """Play ``episodes`` goals (seeds ``first_seed...``) with ``policy``: expert / random /
    random-instr. The time counts ``reset`` and ``step`` calls (and the policy's choice)."""
    if policy not in ("expert", "random", "random-instr"):
        raise ValueError(f"policy must be expert, random or random-instr, got {policy!r}")
    vocab = _vocabulary(env)
    wins, total_reward, steps = 0, 0.0, 0
    t0 = time.perf_counter()
    for ep in range(episodes):
        seed = first_seed + ep
        rng = random.Random(f"shop-measure:{policy}:{seed}")
        _, info = env.reset(seed=seed)
        words = tokenize(info["task"]) if policy == "random-instr" else vocab
        while True:
            if policy == "expert":
                action = env.expert_action()
            else:
                action = random_action(env, info, rng, words)
            res = env.step(action)
            steps += 1
            info = res.info
            if res.terminated or res.truncated:
                wins += int(info["won"])
                total_reward += res.reward
                break
    seconds = time.perf_counter() - t0
    return RunStats(policy, episodes, wins, total_reward / episodes, steps, seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--random-episodes", type=int, default=2000)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    env = ShopEnv(split=args.split)
    build_s = time.perf_counter() - t0
    print(f"catalogue + index build: {build_s:.2f} s ({len(env.catalog)} products)")
    for policy, n in (
        ("expert", args.episodes),
        ("random", args.random_episodes),
        ("random-instr", args.random_episodes),
    ):
        s = run_policy(env, policy, n)
        print(
            f"{policy:>12}: success {s.successes}/{s.episodes} = {s.success_rate:.3f}, "
            f"mean reward {s.mean_reward:.3f}, {s.steps} steps, {s.steps_per_second:.0f} steps/s"
        )


if __name__ == "__main__":
    main()
