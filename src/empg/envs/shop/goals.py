"""Shopping goals (instructions) and the train / valid / test splits.

The catalogue's products are shuffled once (seeded) and cut 80 / 10 / 10 into the goal
products of the three splits, so no goal product of one split is a goal product of another
(any product can still be *bought* in any split, as in WebShop). Goal ``s`` of a split is built
from product ``s mod n_split`` of that split with ``random.Random`` seeded from
``(catalog seed, split, s)``: 1-3 of its attributes, one offered value per option group, and a
price bound chosen as WebShop does (two of the four multiples of 10 above the price, the larger).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from empg.envs.shop import lexicon as lx
from empg.envs.shop.catalog import Catalog, Product
from empg.envs.shop.reward import name_nouns
from empg.errors import InputError

SPLITS = ("train", "valid", "test")
SPLIT_FRACTIONS = {"train": 0.8, "valid": 0.1, "test": 0.1}
PRICE_STEPS = tuple(10.0 * i for i in range(1, 100))

PLURAL_TYPES = frozenset(t.name for c in lx.CATEGORIES for t in c.types if t.plural)
_OPENERS = ("i need", "i am looking for", "i want to buy", "find me", "i would like")


@dataclass(frozen=True)
class Goal:
    """What the shopper asks for (WebShop's goal dict) and where it came from."""

    split: str
    index: int
    asin: str
    instruction: str
    category: str
    query: str
    product_category: str
    name_nouns: frozenset[str]
    attributes: tuple[str, ...]
    #: (option group, wanted value), in the product's group order
    options: tuple[tuple[str, str], ...]
    price_upper: float


def split_products(catalog: Catalog) -> dict[str, tuple[int, ...]]:
    """Catalogue positions of each split's goal products (disjoint, deterministic)."""
    order = list(range(len(catalog)))
    random.Random(f"shop-split:{catalog.seed}").shuffle(order)
    n_train = int(len(order) * SPLIT_FRACTIONS["train"])
    n_valid = int(len(order) * SPLIT_FRACTIONS["valid"])
    return {
        "train": tuple(order[:n_train]),
        "valid": tuple(order[n_train : n_train + n_valid]),
        "test": tuple(order[n_train + n_valid :]),
    }


def _article(product_type: str, plural: bool) -> str:
    if plural:
        return ""
    return "an " if product_type[:1] in "aeiou" else "a "


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _option_phrase(group: str, value: str, rng: random.Random) -> str:
    if group == "color" and rng.random() < 0.5:
        return f"in {value} color"
    if group == "size" and rng.random() < 0.5:
        return f"in size {value}"
    if group in ("flavor", "scent") and rng.random() < 0.5:
        return f"in {value} {group}"
    return f"with {group}: {value}"


def instruction_text(
    product: Product,
    attributes: tuple[str, ...],
    options: tuple[tuple[str, str], ...],
    price_upper: float,
    plural: bool,
    rng: random.Random,
) -> str:
    opener = rng.choice(_OPENERS)
    if rng.random() < 0.7:
        article = _article(attributes[0], plural)
        text = f"{opener} {article}{_join(list(attributes))} {product.query}"
    else:
        text = f"{opener} {_article(product.query, plural)}{product.query} that is "
        text += _join(list(attributes))
    if options:
        text += " " + ", and ".join(_option_phrase(g, v, rng) for g, v in options)
    return f"{text}, and price lower than {price_upper:.2f} dollars"


def make_goal(catalog: Catalog, split: str, index: int) -> Goal:
    """Goal ``index`` of ``split`` (indices wrap around the split's goal products)."""
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
    if not isinstance(index, int) or index < 0:
        raise InputError(f"goal index must be a non-negative int, got {index!r}")
    pool = split_products(catalog)[split]
    product = catalog.products[pool[index % len(pool)]]
    rng = random.Random(f"shop-goal:{catalog.seed}:{split}:{index}")
    n_att = rng.randint(1, min(3, len(product.attributes)))
    attributes = tuple(sorted(rng.sample(product.attributes, n_att), key=product.attributes.index))
    options = tuple((group, rng.choice(values)) for group, values in product.options)
    above = [p for p in PRICE_STEPS if p > product.price][:4]
    price_upper = max(rng.sample(above, 2))
    instruction = instruction_text(
        product, attributes, options, price_upper, product.query in PLURAL_TYPES, rng
    )
    return Goal(
        split=split,
        index=index,
        asin=product.asin,
        instruction=instruction,
        category=product.category,
        query=product.query,
        product_category=product.product_category,
        name_nouns=name_nouns(product),
        attributes=attributes,
        options=options,
        price_upper=price_upper,
    )
