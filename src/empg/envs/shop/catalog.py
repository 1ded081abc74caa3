"""The procedural product catalogue: deterministic from a seed, built once per process.

``get_catalog(seed, n_products)`` returns the cached :class:`Catalog`; products are spread
evenly over the product types of :mod:`empg.envs.shop.lexicon` (5 categories, 40 types) and
drawn with ``random.Random`` seeded from ``(seed, product index)`` only, so the catalogue is the
same in every process whatever ``PYTHONHASHSEED`` is.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

from empg.envs.shop import lexicon as lx
from empg.errors import InputError

DEFAULT_N_PRODUCTS = 2000
MIN_PRODUCTS = len([t for c in lx.CATEGORIES for t in c.types])
_ASIN_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Product:
    """One catalogue item (the fields WebShop's product records carry)."""

    asin: str
    title: str
    description: str
    bullets: tuple[str, ...]
    attributes: tuple[str, ...]
    #: option groups in display order: (group name, offered values)
    options: tuple[tuple[str, tuple[str, ...]], ...]
    price: float
    category: str
    #: breadcrumb, levels separated by " › " (WebShop's ``product_category``)
    product_category: str
    #: the product-type phrase (WebShop's ``query`` field)
    query: str
    brand: str

    def option_group_of(self, value: str) -> str | None:
        for group, values in self.options:
            if value in values:
                return group
        return None

    def search_text(self) -> str:
        """What the search engine indexes: title, description, bullets, attributes, options."""
        opts = " ".join(v for _, values in self.options for v in values)
        return " ".join(
            (self.title, self.description, " ".join(self.bullets), " ".join(self.attributes), opts)
        )


@dataclass(frozen=True)
class Catalog:
    seed: int
    products: tuple[Product, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_asin", {p.asin: i for i, p in enumerate(self.products)})

    def __len__(self) -> int:
        return len(self.products)

    def index_of(self, asin: str) -> int | None:
        """Position of the product with id ``asin`` (any case), or None."""
        return self._by_asin.get(asin.upper())  # type: ignore[attr-defined]

    def categories(self) -> list[str]:
        return sorted({p.category for p in self.products})


def _asin(rng: random.Random, taken: set[str]) -> str:
    while True:
        asin = "B0" + "".join(rng.choice(_ASIN_ALPHABET) for _ in range(8))
        if asin not in taken:
            taken.add(asin)
            return asin


def _title_case(phrase: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in phrase.split())


def _make_product(
    rng: random.Random, cat: lx.Category, ptype: lx.ProductType, asin: str
) -> Product:
    brand = rng.choice(cat.brands)
    n_att = rng.randint(2, min(4, len(ptype.attributes)))
    attributes = tuple(sorted(rng.sample(ptype.attributes, n_att), key=ptype.attributes.index))
    options = []
    for group, pool in ptype.options:
        k = rng.randint(min(2, len(pool)), min(4, len(pool)))
        options.append((group, tuple(sorted(rng.sample(pool, k), key=pool.index))))
    lo, hi = ptype.price
    price = int(rng.uniform(lo, hi)) + rng.choice((0.99, 0.49, 0.95, 0.0))
    # lead with an attribute that does not repeat a word of the type ("Merino Wool Wool Socks")
    type_words = set(ptype.name.split())
    lead = next((a for a in attributes if not type_words & set(a.split())), None)
    head = _title_case(f"{lead} {ptype.name}" if lead else ptype.name)
    tail = ", ".join(_title_case(a) for a in attributes if a != lead)
    title = f"{brand} {head}" + (f" - {tail}" if tail else "")
    opener = rng.choice(lx.DESCRIPTION_OPENERS).format(type=ptype.name, brand=brand)
    middle = f"It is {', '.join(attributes[:-1])} and {attributes[-1]}."
    closer = rng.choice(lx.DESCRIPTION_CLOSERS)
    bullets = tuple(
        f"{a.upper()}: one reason customers choose this {ptype.name}" for a in attributes
    ) + tuple(sorted(rng.sample(lx.GENERIC_BULLETS, 2), key=lx.GENERIC_BULLETS.index))
    return Product(
        asin=asin,
        title=title,
        description=f"{opener} {middle} {closer}",
        bullets=bullets,
        attributes=attributes,
        options=tuple(options),
        price=float(f"{price:.2f}"),
        category=cat.key,
        product_category=" › ".join((cat.root, *ptype.path, _title_case(ptype.name))),
        query=ptype.name,
        brand=brand,
    )


def build_catalog(seed: int = 0, n_products: int = DEFAULT_N_PRODUCTS) -> Catalog:
    """Generate a catalogue (uncached; use :func:`get_catalog`)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"catalog seed must be a non-negative int, got {seed!r}")
    if not isinstance(n_products, int) or n_products < MIN_PRODUCTS:
        raise InputError(
            f"n_products must be an int >= {MIN_PRODUCTS} (one per product type), "
            f"got {n_products!r}"
        )
    types = [(c, t) for c in lx.CATEGORIES for t in c.types]
    id_rng = random.Random(f"shop-asin:{seed}")
    taken: set[str] = set()
    products = []
    for i in range(n_products):
        cat, ptype = types[i % len(types)]
        rng = random.Random(f"shop-product:{seed}:{i}")
        products.append(_make_product(rng, cat, ptype, _asin(id_rng, taken)))
    return Catalog(seed=seed, products=tuple(products))


_CACHE: dict[tuple[int, int], Catalog] = {}
_LOCK = threading.Lock()


def get_catalog(seed: int = 0, n_products: int = DEFAULT_N_PRODUCTS) -> Catalog:
    """The catalogue for ``(seed, n_products)``, generated on first use and cached per process."""
    key = (seed, n_products)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = build_catalog(seed, n_products)
        return _CACHE[key]
