"""How often does a `shop` train goal ask for exactly what a held-out goal asks for?

    python benchmarks/shop_goal_overlap.py

Goal *products* are split 80/10/10, but a goal's request (product type, attributes, options and
price bound) is built from a product's features, and products of one kind share them, so a
train goal can ask for the very same thing as a held-out goal (often in the same words). Such a
held-out goal is won by buying the train goal's product: the reward scores type, attributes,
options and price, not the product id. This prints the held-out goals (one per goal product,
goals 0 .. n-1 of valid and of test), the train seeds of the default warm start's expert data
(seeds 0 .. --sft-episodes - 1) whose request equals one of them, and the share of random train
seeds (the trainer draws from [0, 2**31)) that do. Numbers in docs/env_shop.md.
"""

from __future__ import annotations

import argparse
import random

from empg.envs.shop.catalog import DEFAULT_N_PRODUCTS, get_catalog
from empg.envs.shop.goals import Goal, make_goal, split_products


def request(goal: Goal) -> tuple:
    """What a goal asks for: everything its reward checks."""
    return (goal.query, goal.attributes, goal.options, goal.price_upper)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--catalog-seed", type=int, default=0)
    p.add_argument("--n-products", type=int, default=DEFAULT_N_PRODUCTS)
    p.add_argument("--sft-episodes", type=int, default=1500)
    p.add_argument("--random-seeds", type=int, default=20000)
    args = p.parse_args(argv)
    catalog = get_catalog(args.catalog_seed, args.n_products)
    pools = split_products(catalog)
    held: dict[tuple, list[str]] = {}
    same_words: dict[str, list[str]] = {}
    for split in ("valid", "test"):
        for j in range(len(pools[split])):
            goal = make_goal(catalog, split, j)
            held.setdefault(request(goal), []).append(f"{split} {j}")
            same_words.setdefault(goal.instruction, []).append(f"{split} {j}")
    print(f"held-out goals: {sum(len(v) for v in held.values())}")
    hits = []
    for s in range(args.sft_episodes):
        goal = make_goal(catalog, "train", s)
        if request(goal) in held:
            words = " (same words)" if goal.instruction in same_words else ""
            hits.append(f"train {s} = {', '.join(held[request(goal)])}{words}")
    print(f"train seeds 0-{args.sft_episodes - 1} asking for a held-out goal: {len(hits)}")
    for line in hits:
        print(f"  {line}")
    rng = random.Random(1)
    n = args.random_seeds
    same = sum(
        request(make_goal(catalog, "train", rng.randrange(2**31 - 1))) in held for _ in range(n)
    )
    print(f"random train seeds asking for a held-out goal: {same}/{n} ({100 * same / n:.2f}%)")


if __name__ == "__main__":
    main()
