"""WebShop's purchase reward, re-implemented from its published definition (``get_reward``);
the option term differs from WebShop's (docs/env_shop.md, "Reward").

For a purchased product ``p`` with chosen options ``o`` and a goal ``g``::

    r = r_type * (n_att + n_opt + r_price) / (|g.attributes| + |g.options| + 1)

* ``n_att``: goal attributes found in ``p``'s attributes (fuzzy token-set ratio > 85) or, failing
  that, as a substring of ``p``'s title, bullet points or description;
* ``n_opt``: chosen option values that match a goal option value (exact for the ``size`` group,
  fuzzy > 85 otherwise, colours normalised first) or appear in ``p``'s title, bullets or
  description, capped at ``|g.options|`` so that the reward stays in [0, 1]. WebShop's
  ``get_option_reward`` counts instead the goal options that some chosen option matches
  (docs/env_shop.md, "Reward");
* ``r_price``: 1 if ``p.price <= g.price_upper`` else 0;
* ``r_type``: 1.0, lowered to 0.5 when neither the query (product type), at least two levels of
  the category breadcrumb, nor more than 20 % of the goal's name nouns match; to 0.1 when fewer
  than 10 % of the nouns match; to 0.0 when none does.

WebShop finds name nouns with spaCy's part-of-speech tagger. Offline we know how names are
built: the nouns of a product name are the words of its product-type phrase ("gummy bears").
The fuzzy score is the token-set ratio of ``thefuzz``/``rapidfuzz`` (lower-cased alphanumeric
tokens, indel similarity of sorted token strings, rounded to an int), written here with a
plain longest-common-subsequence so no extra dependency is needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from empg.envs.shop.catalog import Product
    from empg.envs.shop.goals import Goal

FUZZY_THRESHOLD = 85
EXACT_MATCH_GROUPS = ("size",)
#: colour words that ``normalize_color`` reduces a longer colour string to (WebShop does this)
BASE_COLORS = (
    "black", "white", "red", "pink", "blue", "navy", "green", "grey", "gray", "beige",
    "brown", "purple", "yellow", "orange", "gold", "silver", "teal", "coral", "cream", "tan",
)  # fmt: skip
_TOKEN_RE = re.compile(r"[a-z0-9]+")


def _tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


def _lcs_len(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0]
        for j, cb in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if ca == cb else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def _indel_ratio(a: str, b: str) -> float:
    total = len(a) + len(b)
    return 100.0 if total == 0 else 100.0 * 2 * _lcs_len(a, b) / total


def token_set_ratio(a: str, b: str) -> int:
    """Fuzzy similarity in [0, 100] of two phrases, ignoring word order and repeats."""
    ta, tb = set(_tokens(a)), set(_tokens(b))
    if not ta or not tb:
        return 0
    inter = sorted(ta & tb)
    diff_ab, diff_ba = sorted(ta - tb), sorted(tb - ta)
    if inter and (not diff_ab or not diff_ba):
        return 100
    sect = " ".join(inter)
    sect_ab = " ".join([*inter, *diff_ab])
    sect_ba = " ".join([*inter, *diff_ba])
    scores = [_indel_ratio(sect_ab, sect_ba)]
    if sect:
        scores += [_indel_ratio(sect, sect_ab), _indel_ratio(sect, sect_ba)]
    return round(max(scores))


def normalize_color(value: str) -> str:
    """Reduce a colour-like option to its base colour word ("rose gold" -> "gold"), else as is."""
    for color in BASE_COLORS:
        if color in value:
            return color
    return value


def name_nouns(product: Product) -> frozenset[str]:
    """The nouns of a product's name: the words of its product-type phrase."""
    return frozenset(_tokens(product.query))


@dataclass(frozen=True)
class RewardDetails:
    """Every part of the purchase reward (WebShop's verbose ``get_reward`` info)."""

    reward: float
    r_type: float
    r_att: float
    r_option: float | None
    r_price: bool
    query_match: bool
    category_match: bool
    title_score: float
    n_att: int
    n_option: int

    def as_dict(self) -> dict[str, float | bool | int | None]:
        return dict(self.__dict__)


def type_reward(product: Product, goal: Goal) -> tuple[float, bool, bool, float]:
    """(r_type, query_match, category_match, title_score) as in WebShop's ``get_type_reward``."""
    query_match = product.query == goal.query
    p_cat = {x.strip() for x in product.product_category.split("›")}
    g_cat = {x.strip() for x in goal.product_category.split("›")}
    category_match = len(p_cat & g_cat) >= 2
    desired = goal.name_nouns
    title_score = 0.2 if not desired else len(name_nouns(product) & desired) / len(desired)
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return r_type, query_match, category_match, title_score


def _in_text(phrase: str, product: Product) -> bool:
    return (
        phrase in product.title.lower()
        or phrase in " ".join(product.bullets).lower()
        or phrase in product.description.lower()
    )


def attribute_matches(product: Product, goal: Goal) -> int:
    n = 0
    for g_attr in goal.attributes:
        fuzzy = any(token_set_ratio(p, g_attr) > FUZZY_THRESHOLD for p in product.attributes)
        if fuzzy or _in_text(g_attr, product):
            n += 1
    return n


def option_matches(product: Product, goal: Goal, chosen: dict[str, str]) -> int:
    goal_values = [normalize_color(v) for _, v in goal.options]
    n = 0
    for group in sorted(chosen):
        value = normalize_color(chosen[group])
        if group.lower() in EXACT_MATCH_GROUPS:
            matched = value in goal_values
        else:
            matched = any(token_set_ratio(g, value) > FUZZY_THRESHOLD for g in goal_values)
        if matched or _in_text(value, product):
            n += 1
    return min(n, len(goal.options))


def webshop_reward(product: Product, goal: Goal, chosen: dict[str, str]) -> RewardDetails:
    """The reward for buying ``product`` with options ``chosen`` (group -> value) for ``goal``."""
    r_type, query_match, category_match, title_score = type_reward(product, goal)
    n_att = attribute_matches(product, goal)
    n_opt = option_matches(product, goal, chosen)
    r_price = product.price <= goal.price_upper
    n_goal_att, n_goal_opt = len(goal.attributes), len(goal.options)
    total = (n_att + n_opt + int(r_price)) / (n_goal_att + n_goal_opt + 1)
    return RewardDetails(
        reward=total * r_type,
        r_type=r_type,
        r_att=n_att / n_goal_att if n_goal_att else 1.0,
        r_option=n_opt / n_goal_opt if n_goal_opt else None,
        r_price=r_price,
        query_match=query_match,
        category_match=category_match,
        title_score=title_score,
        n_att=n_att,
        n_option=n_opt,
    )
