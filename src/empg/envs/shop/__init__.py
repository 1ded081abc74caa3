"""``shop``: a WebShop-style shopping benchmark over a procedural catalogue (offline).

See ``docs/env_shop.md``. Needs ``bm25s`` (the ``envs`` extra) for retrieval.
"""

from empg.envs.shop.catalog import Catalog, Product, build_catalog, get_catalog
from empg.envs.shop.env import ShopEnv
from empg.envs.shop.goals import SPLITS, Goal, make_goal, split_products
from empg.envs.shop.reward import RewardDetails, token_set_ratio, webshop_reward

__all__ = [
    "SPLITS",
    "Catalog",
    "Goal",
    "Product",
    "RewardDetails",
    "ShopEnv",
    "build_catalog",
    "get_catalog",
    "make_goal",
    "split_products",
    "token_set_ratio",
    "webshop_reward",
]
