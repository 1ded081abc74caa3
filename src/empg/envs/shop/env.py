"""``ShopEnv``: a WebShop-style shopping task over the procedural catalogue.

Actions are ``search[query]`` (search page only) and ``click[label]`` (a label shown on the
page; case and surrounding spaces are ignored). ``click[buy now]`` ends the episode with
WebShop's reward (see :mod:`empg.envs.shop.reward`); ``won`` is ``reward == 1``. Anything else
(unparseable text, an unknown label, search off the search page, an empty query, more than
:data:`MAX_ACTION_CHARS` characters) leaves the page as it was and answers with an
``Invalid action: ...`` line followed by the page. Input text is only matched, never evaluated.

``info["admissible_actions"]`` lists ``click[...]`` for every label on the page and, on the
search page, the literal template ``search[<query>]`` (WebShop marks the search bar as
available there; the agent fills in its own query).
"""

from __future__ import annotations

import random
import re
from typing import Any

from empg.envs.core import TextEnv
from empg.envs.shop import pages as pg
from empg.envs.shop.catalog import DEFAULT_N_PRODUCTS, Catalog, get_catalog
from empg.envs.shop.expert import Expert
from empg.envs.shop.goals import SPLITS, Goal, make_goal, split_products
from empg.envs.shop.reward import webshop_reward
from empg.envs.shop.search import get_index
from empg.errors import InputError

MAX_ACTION_CHARS = 2000
_ACTION_RE = re.compile(r"\s*(search|click)\s*\[(.*)\]\s*", re.IGNORECASE | re.DOTALL)


class ShopEnv(TextEnv):
    """WebShop-style shopping: find the product the instruction describes and buy it.

    Args:
        split: ``"train"``, ``"valid"`` or ``"test"``; goal products of the splits are disjoint.
        max_steps: episode step limit (WebShop setups use 15).
        catalog_seed: seed of the generated catalogue.
        n_products: catalogue size (at least one product per product type).
        seed: seeds the goal choice of ``reset()`` without a seed.
    """

    name = "shop"

    def __init__(
        self,
        split: str = "train",
        max_steps: int = 15,
        catalog_seed: int = 0,
        n_products: int = DEFAULT_N_PRODUCTS,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if split not in SPLITS:
            raise InputError(f"split must be one of {SPLITS}, got {split!r}")
        if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1:
            raise InputError(f"max_steps must be a positive int, got {max_steps!r}")
        self.split = split
        self.max_steps = max_steps
        self.catalog: Catalog = get_catalog(catalog_seed, n_products)
        self.index = get_index(self.catalog)
        self.n_goal_products = len(split_products(self.catalog)[split])
        self._rng = random.Random(f"shop-env:{seed}")
        self._expert_policy = Expert(self.catalog)
        self._goal: Goal | None = None
        self._state = pg.PageState()
        self._n_searches = 0
        self._last_details: dict[str, Any] | None = None

    # -- episode --------------------------------------------------------------------------
    @property
    def goal(self) -> Goal:
        if self._goal is None:
            raise RuntimeError("ShopEnv: call reset() before reading the goal")
        return self._goal

    def _reset(self, *, seed: int | None, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        index = seed if seed is not None else self._rng.randrange(1 << 30)
        self._goal = make_goal(self.catalog, self.split, index)
        self._state = pg.PageState()
        self._n_searches = 0
        self._last_details = None
        return self._observe(), self._info(valid=True)

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        if len(action) > MAX_ACTION_CHARS:
            return self._invalid(f"the action is longer than {MAX_ACTION_CHARS} characters")
        m = _ACTION_RE.fullmatch(action)
        if m is None:
            return self._invalid("write search[query] or click[label] with a label on this page")
        verb, arg = m.group(1).lower(), m.group(2)
        if verb == "search":
            return self._search(arg)
        return self._click(" ".join(arg.lower().split()))

    def _search(self, query: str) -> tuple[str, float, bool, dict[str, Any]]:
        if self._state.kind != "search":
            return self._invalid(f"search only works on the search page; click[{pg.BACK}] first")
        shown = pg.display_query(query)
        if not shown:
            return self._invalid("the search query is empty")
        self._n_searches += 1
        # searched without what the page cannot show either (a zero-width space would split
        # "lip\u200bstick" into two words the shown "lipstick" does not have)
        results = self.index.search(pg.printable_text(query))
        self._state = pg.PageState(kind="results", query=shown, results=results)
        return self._observe(), 0.0, False, self._info(valid=True)

    def _click(self, label: str) -> tuple[str, float, bool, dict[str, Any]]:
        st = self._state
        if label not in pg.clickables(st, self.catalog):
            return self._invalid("there is nothing with that label to click on this page")
        if label == pg.BACK:
            self._state = pg.PageState()
        elif st.kind == "results":
            if label == pg.NEXT:
                self._state = pg.PageState("results", st.query, st.results, st.page + 1)
            elif label == pg.PREV:
                self._state = pg.PageState("results", st.query, st.results, st.page - 1)
            else:
                item = self.catalog.index_of(label)
                self._state = pg.PageState("item", st.query, st.results, st.page, item)  # type: ignore[arg-type]
        elif st.kind == "item":
            if label == pg.BUY:
                return self._buy()
            if label == pg.PREV:
                self._state = pg.PageState("results", st.query, st.results, st.page)
            elif label in (pg.DESCRIPTION, pg.FEATURES):
                self._state = pg.PageState(label, st.query, st.results, st.page, st.item, st.chosen)
            else:
                group = self.catalog.products[st.item].option_group_of(label)
                self._state = st.choose(group, label)  # type: ignore[arg-type]
        else:  # description / features: only "< prev" is left
            self._state = pg.PageState("item", st.query, st.results, st.page, st.item, st.chosen)
        return self._observe(), 0.0, False, self._info(valid=True)

    def _buy(self) -> tuple[str, float, bool, dict[str, Any]]:
        st = self._state
        product = self.catalog.products[st.item]
        chosen = dict(st.chosen)
        details = webshop_reward(product, self.goal, chosen)
        self._last_details = {
            **details.as_dict(),
            "asin": product.asin,
            "options": chosen,
            "price": product.price,
        }
        obs = (
            f"Instruction: {self.goal.instruction}\n"
            f"Thank you for shopping with us! You bought: {product.title} (${product.price:.2f})"
            + "".join(f", {g}: {v}" for g, v in st.chosen)
            + f"\nYour score (min 0.0, max 1.0): {details.reward:.4f}"
        )
        info = self._info(valid=True)
        info["won"] = details.reward == 1.0
        info["admissible_actions"] = []
        return obs, details.reward, True, info

    # -- helpers ----------------------------------------------------------------------------
    def _invalid(self, reason: str) -> tuple[str, float, bool, dict[str, Any]]:
        obs = f"Invalid action: {reason}. The page is unchanged.\n\n{self._observe()}"
        return obs, 0.0, False, self._info(valid=False)

    def _observe(self) -> str:
        return pg.render(self._state, self.catalog, self.goal.instruction)

    def _info(self, *, valid: bool) -> dict[str, Any]:
        goal = self.goal
        info: dict[str, Any] = {
            "won": False,
            "task": goal.instruction,
            "task_type": goal.category,
            "admissible_actions": pg.admissible_actions(self._state, self.catalog),
            "page": self._state.kind,
            "action_valid": valid,
            "goal_index": goal.index,
        }
        if self._last_details is not None:
            info["reward_details"] = self._last_details
        return info

    # -- expert -----------------------------------------------------------------------------
    def _expert(self) -> tuple[str, str]:
        return self._expert_policy.act(
            self.goal, self._state, self._n_searches, self.max_steps - self.steps_taken
        )

    def expert_action(self) -> str:
        return self._expert()[0]

    def expert_thought(self) -> str:
        if self._goal is None:
            return ""
        return self._expert()[1]
