"""The scripted shop expert: search, page through results, open a fitting product, pick, buy.

It knows the goal (privileged, like every benchmark's expert). A product "fits" when buying it
with the goal's option values earns reward 1: the goal product always does, others may.
The first search uses the instruction without its price clause; if the results hold no fitting
product the expert goes back and searches the goal product's title.
"""

from __future__ import annotations

from empg.envs.shop import pages as pg
from empg.envs.shop.catalog import Catalog, Product
from empg.envs.shop.goals import Goal
from empg.envs.shop.reward import webshop_reward


def instruction_query(instruction: str) -> str:
    """The instruction without its price clause (what the expert types first)."""
    return instruction.split(", and price lower than")[0]


def goal_choice(product: Product, goal: Goal) -> dict[str, str] | None:
    """The goal's option values for ``product``'s groups, or None if it lacks any of them."""
    offered = dict(product.options)
    choice = {}
    for group, value in goal.options:
        if value not in offered.get(group, ()):
            return None
        choice[group] = value
    if len(offered) != len(choice):
        return None
    return choice


def fits(product: Product, goal: Goal) -> bool:
    """Whether buying ``product`` with the goal's options earns the full reward."""
    if product.asin == goal.asin:
        return True
    choice = goal_choice(product, goal)
    return choice is not None and webshop_reward(product, goal, choice).reward == 1.0


class Expert:
    """Stateless apart from a per-catalogue memo of which products fit the current goal."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._memo: dict[tuple[str, int, int], bool] = {}

    def _fits(self, goal: Goal, index: int) -> bool:
        key = (goal.split, goal.index, index)
        if key not in self._memo:
            if len(self._memo) > 50_000:
                self._memo.clear()
            self._memo[key] = fits(self.catalog.products[index], goal)
        return self._memo[key]

    def act(
        self, goal: Goal, state: pg.PageState, n_searches: int, steps_left: int
    ) -> tuple[str, str]:
        """(action, thought) for the current page."""
        if state.kind == "search":
            if n_searches == 0:
                q = instruction_query(goal.instruction)
                return f"search[{q}]", "I search for the product the instruction describes."
            title = self.catalog.products[self.catalog.index_of(goal.asin)].title  # type: ignore[index]
            return f"search[{title}]", "The first search missed; I search a more exact name."
        if state.kind in ("description", "features"):
            return f"click[{pg.PREV}]", "I have read enough; back to the product."
        if state.kind == "results":
            on_page = state.page_results()
            goal_pos = self.catalog.index_of(goal.asin)
            pick = goal_pos if goal_pos in on_page else None
            if pick is None:
                pick = next((i for i in on_page if self._fits(goal, i)), None)
            if pick is not None:
                asin = self.catalog.products[pick].asin.lower()
                return f"click[{asin}]", "This result matches what I need; I open it."
            # page on only while a fresh search (back, search, open, options, buy) still fits
            # afterwards; once the exact-name search is spent, page on while a purchase fits
            reserve = (4 if n_searches < 2 else 2) + len(goal.options)
            if state.page + 1 < state.n_pages and steps_left - 1 >= reserve:
                return f"click[{pg.NEXT}]", "Nothing fitting here; I look at the next page."
            return f"click[{pg.BACK}]", "These results do not fit; I search again."
        # item page
        if not self._fits(goal, state.item):
            return f"click[{pg.PREV}]", "This product does not fit the request; back to results."
        chosen = dict(state.chosen)
        for group, value in goal.options:
            if chosen.get(group) != value:
                return f"click[{value}]", f"The instruction wants {group} {value}."
        return f"click[{pg.BUY}]", "Every requirement is met and the price is right; I buy it."
