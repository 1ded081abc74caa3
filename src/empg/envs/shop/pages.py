"""Shop pages: their state, their clickable labels and their text rendering.

Five kinds of page, as in WebShop's text mode:

* ``search``: the start page; the only page where ``search[query]`` is allowed;
* ``results``: 10 results per page (``click[next >]`` / ``click[< prev]``), each result
  clickable by its lower-case id, plus ``click[back to search]``;
* ``item``: a product with its option groups (click a value to choose it),
  ``click[description]``, ``click[features]``, ``click[< prev]`` (back to the results),
  ``click[back to search]`` and ``click[buy now]``;
* ``description`` / ``features``: the product's text; ``click[< prev]`` returns to the item.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from empg.envs.shop.catalog import Catalog, Product

RESULTS_PER_PAGE = 10
BACK = "back to search"
PREV = "< prev"
NEXT = "next >"
DESCRIPTION = "description"
FEATURES = "features"
BUY = "buy now"
SEARCH_TEMPLATE = "search[<query>]"
PAGE_KINDS = ("search", "results", "item", "description", "features")


@dataclass(frozen=True)
class PageState:
    """Where the shopper is. Immutable: every transition builds a new state."""

    kind: str = "search"
    #: the query as shown (printable, whitespace-collapsed, at most 100 characters)
    query: str = ""
    #: catalogue positions of all results of the current search, best first
    results: tuple[int, ...] = ()
    #: results page number, from 0
    page: int = 0
    #: catalogue position of the open product (item / description / features pages)
    item: int = -1
    #: chosen options of the open product, (group, value) sorted by group
    chosen: tuple[tuple[str, str], ...] = ()

    @property
    def n_pages(self) -> int:
        return max(1, -(-len(self.results) // RESULTS_PER_PAGE))

    def page_results(self) -> tuple[int, ...]:
        start = self.page * RESULTS_PER_PAGE
        return self.results[start : start + RESULTS_PER_PAGE]

    def choose(self, group: str, value: str) -> PageState:
        chosen = dict(self.chosen)
        chosen[group] = value
        return replace(self, chosen=tuple(sorted(chosen.items())))


def display_query(query: str) -> str:
    """A safe one-line rendering of user query text (whitespace of any kind is one space)."""
    text = " ".join(printable_text(query[:400]).split())
    return text[:100]


def printable_text(text: str) -> str:
    """``text`` with every whitespace character (tab, no-break space, ...) a space and the other
    characters that cannot be printed (zero-width, control) dropped."""
    return "".join(" " if ch.isspace() else ch for ch in text if ch.isspace() or ch.isprintable())


def clickables(state: PageState, catalog: Catalog) -> list[str]:
    """The labels that ``click[...]`` accepts on this page, in display order."""
    if state.kind == "search":
        return []
    if state.kind == "results":
        labels = [BACK]
        if state.page > 0:
            labels.append(PREV)
        if state.page + 1 < state.n_pages:
            labels.append(NEXT)
        labels += [catalog.products[i].asin.lower() for i in state.page_results()]
        return labels
    if state.kind == "item":
        product = catalog.products[state.item]
        values = [v for _, vals in product.options for v in vals]
        return [BACK, PREV, DESCRIPTION, FEATURES, *values, BUY]
    return [BACK, PREV]  # description / features


def admissible_actions(state: PageState, catalog: Catalog) -> list[str]:
    """``click[label]`` for every clickable, plus the ``search[<query>]`` template where allowed."""
    actions = [SEARCH_TEMPLATE] if state.kind == "search" else []
    return actions + [f"click[{label}]" for label in clickables(state, catalog)]


def _buttons(labels: list[str]) -> str:
    return " ".join(f"[{label}]" for label in labels)


def _render_results(state: PageState, catalog: Catalog) -> list[str]:
    if not state.results:
        return [f'No products match "{state.query}".', _buttons([BACK])]
    nav = [BACK] + ([PREV] if state.page > 0 else [])
    nav += [NEXT] if state.page + 1 < state.n_pages else []
    lines = [
        f'Results for "{state.query}": page {state.page + 1} of {state.n_pages} '
        f"({len(state.results)} products)",
        _buttons(nav),
    ]
    for i in state.page_results():
        p = catalog.products[i]
        lines.append(f"[{p.asin.lower()}] {p.title} | ${p.price:.2f}")
    return lines


def _render_item(state: PageState, product: Product) -> list[str]:
    chosen = dict(state.chosen)
    lines = [_buttons([BACK, PREV]), product.title, f"Price: ${product.price:.2f}"]
    for group, values in product.options:
        picked = f" (chosen: {chosen[group]})" if group in chosen else ""
        lines.append(f"{group}: {_buttons(list(values))}{picked}")
    lines.append(_buttons([DESCRIPTION, FEATURES, BUY]))
    return lines


def render(state: PageState, catalog: Catalog, instruction: str) -> str:
    """The observation text of ``state``."""
    lines = [f"Instruction: {instruction}"]
    if state.kind == "search":
        lines.append("Search page. Type search[your query] to look for products.")
    elif state.kind == "results":
        lines += _render_results(state, catalog)
    else:
        product = catalog.products[state.item]
        if state.kind == "item":
            lines += _render_item(state, product)
        elif state.kind == "description":
            lines += [_buttons([BACK, PREV]), f"Description: {product.description}"]
        else:
            lines += [_buttons([BACK, PREV]), "Features:"]
            lines += [f"- {b}" for b in product.bullets]
    return "\n".join(lines)
