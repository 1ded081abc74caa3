"""A generated knowledge base of fictional entities and the relations between them.

Everything is drawn from ``random.Random(seed)`` in a fixed order, so the same seed gives the
same knowledge base in every process (no ``hash()``, no global RNG). Names are made of invented
syllables and every name is unique across the whole knowledge base, so a question that names an
entity refers to exactly one of them and a search for that name finds its passage.

Entity kinds and their facts (``rels`` point to other entities, ``attrs`` hold values):

========  ===========================================  ==================================
kind      rels                                         attrs
========  ===========================================  ==================================
country   capital (city)                               population_m
city      located_in (country)                         population, founded_year
person    born_in (city)                               birth_year, occupation
film      directed_by (person)                         year, genre
company   founded_by (person), headquartered_in (city) founded_year, industry
band      lead_singer (person), formed_in (city)       founded_year, style
river     rises_in (city)                              length_km
========  ===========================================  ==================================

Every relation is functional (one target per entity), so following a chain of relations from a
named entity gives one answer.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

#: how many entities of each kind the default knowledge base holds (5,050 passages in all)
DEFAULT_COUNTS: dict[str, int] = {
    "country": 40,
    "city": 410,
    "person": 1700,
    "film": 1400,
    "company": 700,
    "band": 500,
    "river": 300,
}

_ONSETS = (
    "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
    "br", "dr", "gr", "kr", "tr", "st", "th", "sh", "vel", "mor",
)  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ae", "ia", "ou", "y")
_CODAS = ("", "", "", "n", "r", "l", "s", "th", "m", "x", "nd", "rk")

_FILM_NOUNS = (
    "Tide", "Garden", "Protocol", "Winter", "Mirror", "Harbor", "Lantern", "Echo", "Crossing",
    "Vow", "Orchard", "Signal", "Frontier", "Ashes", "Reckoning", "Silence", "Voyage", "Crown",
)  # fmt: skip
_BAND_NOUNS = (
    "Foxes", "Lanterns", "Engines", "Ravens", "Tigers", "Saints", "Comets", "Wolves", "Pilots",
    "Sparrows", "Giants", "Owls",
)  # fmt: skip
_COMPANY_SUFFIXES = (
    "Industries", "Systems", "Labs", "Holdings", "Motors", "Foods", "Media", "Works",
    "Dynamics", "Textiles",
)  # fmt: skip
_COUNTRY_SUFFIXES = ("ia", "land", "ovia", "ar", "istan", "ania")
_GENRES = ("drama", "comedy", "thriller", "documentary", "western", "science fiction", "musical")
_INDUSTRIES = ("shipping", "software", "mining", "textiles", "aviation", "banking", "brewing")
_STYLES = ("rock", "jazz", "folk", "punk", "electronic", "blues", "synth-pop")
_OCCUPATIONS = ("writer", "painter", "physician", "architect", "chemist", "sculptor")
_FIRST_NAMES_N = 220  # first names repeat across people; surnames never do


@dataclass(frozen=True)
class Entity:
    """One fictional entity. ``rels`` maps a relation to the target entity's id."""

    id: int
    kind: str
    name: str
    rels: dict[str, int] = field(default_factory=dict, compare=False)
    attrs: dict[str, int | str] = field(default_factory=dict, compare=False)


class KnowledgeBase:
    """The entities of one seed, with lookups by id, kind and name."""

    def __init__(self, seed: int, entities: list[Entity]) -> None:
        self.seed = seed
        self.entities = entities
        self._by_kind: dict[str, list[Entity]] = {}
        self._by_name: dict[str, list[Entity]] = {}
        for ent in entities:
            self._by_kind.setdefault(ent.kind, []).append(ent)
            self._by_name.setdefault(normalize_name(ent.name), []).append(ent)

    def __len__(self) -> int:
        return len(self.entities)

    def __getitem__(self, entity_id: int) -> Entity:
        return self.entities[entity_id]

    def of_kind(self, kind: str) -> list[Entity]:
        """Entities of ``kind`` in id order (empty list for an unknown kind)."""
        return self._by_kind.get(kind, [])

    def named(self, name: str) -> list[Entity]:
        """All entities whose name normalises to the same string as ``name``."""
        return self._by_name.get(normalize_name(name), [])

    def follow(self, entity_id: int, path: tuple[str, ...]) -> Entity:
        """Follow the relations in ``path`` from ``entity_id``; KeyError if one is missing."""
        ent = self.entities[entity_id]
        for rel in path:
            ent = self.entities[ent.rels[rel]]
        return ent


def normalize_name(name: str) -> str:
    """Case- and space-insensitive key for name lookups."""
    return " ".join(name.lower().split())


class _Namer:
    """Draws invented words; never hands out the same root word twice."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def word(self, min_syll: int = 2, max_syll: int = 3) -> str:
        for _ in range(10_000):
            n = self.rng.randint(min_syll, max_syll)
            parts = [self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) for _ in range(n)]
            parts.append(self.rng.choice(_CODAS))
            w = "".join(parts).capitalize()
            if 4 <= len(w) <= 11 and w.lower() not in self.used:
                self.used.add(w.lower())
                return w
        raise RuntimeError("name space exhausted; lower the entity counts")  # internal invariant


def build_kb(seed: int = 0, counts: dict[str, int] | None = None) -> KnowledgeBase:
    """Generate the knowledge base for ``seed`` (same seed, same KB, in any process)."""
    counts = {**DEFAULT_COUNTS, **(counts or {})}
    for kind, n in counts.items():
        if kind not in DEFAULT_COUNTS or not isinstance(n, int) or n < 2:
            raise ValueError(f"counts[{kind!r}] must be an int >= 2 for a known kind, got {n!r}")
    if counts["city"] < counts["country"]:
        raise ValueError(
            "counts['city'] must be >= counts['country'] (every country has a capital)"
        )
    rng = random.Random(f"empg-search-kb-{seed}")
    namer = _Namer(rng)
    ents: list[Entity] = []

    names: set[str] = set()

    def add(
        kind: str, make_name: Callable[[], str], rels: dict[str, int], attrs: dict[str, int | str]
    ) -> Entity:
        # names are unique across the whole KB (a root word is never reused, but a suffixed
        # country name could still equal another root: draw again in that case)
        name = make_name()
        while normalize_name(name) in names:
            name = make_name()
        names.add(normalize_name(name))
        ent = Entity(len(ents), kind, name, rels, attrs)
        ents.append(ent)
        return ent

    countries = [
        add("country", lambda: namer.word(2, 2) + rng.choice(_COUNTRY_SUFFIXES), {}, {})
        for _ in range(counts["country"])
    ]
    cities: list[Entity] = []
    for i in range(counts["city"]):
        # the first city of every country is its capital; the rest are spread at random
        country = countries[i] if i < len(countries) else rng.choice(countries)
        pop = rng.randint(40_000, 3_000_000) if i < len(countries) else rng.randint(5_000, 900_000)
        cities.append(
            add(
                "city",
                namer.word,
                {"located_in": country.id},
                {"population": pop, "founded_year": rng.randint(700, 1890)},
            )
        )
    # zip stops at the last country: the first len(countries) cities are the capitals
    for country, capital in zip(countries, cities, strict=False):
        country.rels["capital"] = capital.id
        country.attrs["population_m"] = rng.randint(1, 90)

    first_names = sorted({namer.word(2, 2) for _ in range(_FIRST_NAMES_N)})
    people = [
        add(
            "person",
            lambda: f"{rng.choice(first_names)} {namer.word()}",
            {"born_in": rng.choice(cities).id},
            {"birth_year": rng.randint(1900, 1985), "occupation": rng.choice(_OCCUPATIONS)},
        )
        for _ in range(counts["person"])
    ]
    # disjoint pools of directors, founders and singers; everyone else keeps a plain occupation
    pool = people[:]
    rng.shuffle(pool)
    n_dir = max(1, len(pool) // 4)
    directors, pool = pool[:n_dir], pool[n_dir:]
    founders, pool = pool[: len(pool) // 2], pool[len(pool) // 2 :]
    singers = pool[: max(1, len(pool) // 2)]
    for role, group in (("film director", directors), ("entrepreneur", founders)):
        for p in group:
            p.attrs["occupation"] = role
    for p in singers:
        p.attrs["occupation"] = "singer"

    for _ in range(counts["film"]):
        director = rng.choice(directors)
        year = min(2024, int(director.attrs["birth_year"]) + rng.randint(22, 60))
        add(
            "film",
            lambda: f"{rng.choice(('The ', ''))}{namer.word()} {rng.choice(_FILM_NOUNS)}",
            {"directed_by": director.id},
            {"year": year, "genre": rng.choice(_GENRES)},
        )
    for _ in range(counts["company"]):
        founder = rng.choice(founders)
        add(
            "company",
            lambda: f"{namer.word()} {rng.choice(_COMPANY_SUFFIXES)}",
            {"founded_by": founder.id, "headquartered_in": rng.choice(cities).id},
            {
                "founded_year": min(2024, int(founder.attrs["birth_year"]) + rng.randint(19, 55)),
                "industry": rng.choice(_INDUSTRIES),
            },
        )
    for _ in range(counts["band"]):
        singer = rng.choice(singers)
        add(
            "band",
            lambda: f"The {namer.word()} {rng.choice(_BAND_NOUNS)}",
            {"lead_singer": singer.id, "formed_in": rng.choice(cities).id},
            {
                "founded_year": min(2024, int(singer.attrs["birth_year"]) + rng.randint(16, 40)),
                "style": rng.choice(_STYLES),
            },
        )
    for _ in range(counts["river"]):
        add(
            "river",
            lambda: f"{namer.word()} River",
            {"rises_in": rng.choice(cities).id},
            {"length_km": rng.randint(40, 2500)},
        )
    return KnowledgeBase(seed, ents)


@functools.lru_cache(maxsize=4)
def default_kb(seed: int = 0) -> KnowledgeBase:
    """The default-size knowledge base for ``seed``, built once per process and cached."""
    return build_kb(seed)
