"""Rendering of knowledge-base entities as short encyclopedic passages.

One passage per entity: the title (the entity's name) on the first line, then one to three
sentences. A passage states only the entity's OWN facts (its outgoing relations and attributes),
so answering a question of n hops needs n passages and cannot be short-cut by one of them.
The wording varies per entity (drawn from a seeded RNG) so that lexical matching alone is not
enough to tell which sentence carries which fact.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from empg.envs.search.kb import Entity, KnowledgeBase, default_kb


@dataclass(frozen=True)
class Passage:
    """A retrievable document. ``contents`` is ``title + "\\n" + text`` (Search-R1 layout)."""

    id: str
    title: str
    text: str

    @property
    def contents(self) -> str:
        return f"{self.title}\n{self.text}"


def _a(word: object) -> str:
    """``word`` with its indefinite article ("an aviation", "a jazz")."""
    w = str(word)
    return f"{'an' if w[:1] in 'aeiou' else 'a'} {w}"


def _fmt_int(n: int | str) -> str:
    return f"{int(n):,}"


def _sentences(kb: KnowledgeBase, ent: Entity, rng: random.Random) -> list[str]:
    a, n = ent.attrs, ent.name

    def name_of(rel: str) -> str:
        return kb[ent.rels[rel]].name

    if ent.kind == "country":
        cap = name_of("capital")
        return [
            rng.choice(
                (
                    f"{n} is a country whose capital is {cap}.",
                    f"{n} is a sovereign state; its capital city is {cap}.",
                )
            ),
            f"About {a['population_m']} million people live in {n}.",
        ]
    if ent.kind == "city":
        country = name_of("located_in")
        first = rng.choice((f"{n} is a city in {country}.", f"{n} is a town located in {country}."))
        return [
            first,
            f"It was founded in {a['founded_year']} and has {_fmt_int(a['population'])} "
            "inhabitants.",
        ]
    if ent.kind == "person":
        city, occ, born = name_of("born_in"), a["occupation"], a["birth_year"]
        return [
            rng.choice(
                (
                    f"{n} (born {born}) is {_a(occ)} who was born in {city}.",
                    f"{n} is {_a(occ)}, born in {city} in {born}.",
                )
            )
        ]
    if ent.kind == "film":
        director, year, genre = name_of("directed_by"), a["year"], a["genre"]
        return [
            rng.choice(
                (
                    f"{n} is a {year} {genre} film directed by {director}.",
                    f"{n} is {_a(genre)} film released in {year}. It was directed by {director}.",
                )
            )
        ]
    if ent.kind == "company":
        founder, hq = name_of("founded_by"), name_of("headquartered_in")
        return [
            f"{n} is {_a(a['industry'])} company founded by {founder} in {a['founded_year']}.",
            rng.choice((f"It is headquartered in {hq}.", f"Its head office is in {hq}.")),
        ]
    if ent.kind == "band":
        singer, city = name_of("lead_singer"), name_of("formed_in")
        return [
            f"{n} are {_a(a['style'])} band formed in {city} in {a['founded_year']}.",
            rng.choice((f"The band's lead singer is {singer}.", f"{singer} sings lead vocals.")),
        ]
    if ent.kind == "river":
        return [
            f"The {n} is a river that rises in {name_of('rises_in')}.",
            f"It is {_fmt_int(a['length_km'])} km long.",
        ]
    raise ValueError(f"unknown entity kind {ent.kind!r}")  # internal invariant


def render_passages(kb: KnowledgeBase) -> list[Passage]:
    """One passage per entity, in entity-id order; passage ``i`` describes entity ``i``."""
    out = []
    for ent in kb.entities:
        rng = random.Random(f"passage-{kb.seed}-{ent.id}")
        out.append(Passage(str(ent.id), ent.name, " ".join(_sentences(kb, ent, rng))))
    return out


@functools.lru_cache(maxsize=4)
def default_passages(seed: int = 0) -> tuple[Passage, ...]:
    """Passages of :func:`default_kb` for ``seed``, rendered once per process."""
    return tuple(render_passages(default_kb(seed)))
