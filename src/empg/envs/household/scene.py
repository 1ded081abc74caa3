"""Procedural generation of household scenes, and the train / valid_seen / valid_unseen splits.

A :class:`Scene` is the complete, immutable initial state of one task: the room, its numbered
receptacles, its numbered objects and where they are, and the task. It is plain data (frozen
dataclasses of str/int/bool/tuples) so that exporters can walk it; ``Scene.to_dict()`` gives a
JSON-ready view. The live state of an episode is kept apart, in ``engine.HouseholdState``.

Splits. Two things are held out for ``valid_unseen``:

* room layouts: a layout is a room type plus the count of every receptacle kind; a layout is
  "unseen" when ``crc32("layout|<room>|<counts>") % 5 == 0``;
* (object kind, target kind) combinations: unseen when ``crc32("combo|<obj>|<target>") % 5 == 0``
  (the target is a receptacle kind, or the lamp kind for ``look_at_obj_in_light``).

``train`` and ``valid_seen`` only ever draw seen layouts and seen combinations (the same
distribution, from differently salted random streams); ``valid_unseen`` only unseen ones. Both
rules are checked at generation time, so disjointness holds by construction, not by chance.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import asdict, dataclass

from empg.envs.household import catalog as cat
from empg.envs.household.text import instruction_for

SPLITS: tuple[str, ...] = ("train", "valid_seen", "valid_unseen")
_HOLDOUT_MODULUS = 5


@dataclass(frozen=True)
class Receptacle:
    """A numbered piece of furniture or appliance, e.g. ``id="cabinet 2"``, ``type="cabinet"``."""

    id: str
    type: str
    openable: bool
    #: initial state; every openable receptacle starts closed, as in ALFWorld
    opened: bool


@dataclass(frozen=True)
class Item:
    """A numbered object, e.g. ``id="apple 1"``, and where it starts.

    ``location`` is the id of the receptacle it is in/on. Lamps too stand in/on a receptacle
    (a floorlamp on a sidetable, say), as in ALFWorld, whose ``use`` action and light goal need
    the lamp ``inReceptacle`` a receptacle at the agent's location.
    """

    id: str
    type: str
    location: str
    pickupable: bool
    toggleable: bool
    cleanable: bool
    heatable: bool
    coolable: bool


@dataclass(frozen=True)
class Task:
    """What the agent must achieve.

    ``target_type`` is a receptacle kind, or the lamp kind ("desklamp"/"floorlamp") for
    ``look_at_obj_in_light``; ``lamp`` is then the id of the scene's lamp. ``count`` is 2 for
    ``pick_two_obj_and_place`` and 1 otherwise. ``instruction`` is the sentence after
    "Your task is to: ".
    """

    type: str
    object_type: str
    target_type: str
    lamp: str | None
    count: int
    instruction: str


@dataclass(frozen=True)
class Scene:
    """The immutable initial state of one household task (see the module docstring)."""

    split: str
    seed: int
    room_type: str
    #: (receptacle kind, count) for every kind present, sorted by kind
    layout: tuple[tuple[str, int], ...]
    #: sorted by (kind, number); the opening room description uses ``text.display_order``
    receptacles: tuple[Receptacle, ...]
    #: sorted by (kind, number)
    objects: tuple[Item, ...]
    task: Task

    def to_dict(self) -> dict:
        """A JSON-ready nested dict of the whole scene."""
        return asdict(self)


# -- split rules ------------------------------------------------------------------------------
def _held_out(key: str) -> bool:
    return zlib.crc32(key.encode("utf-8")) % _HOLDOUT_MODULUS == 0


def layout_key(room_type: str, layout: tuple[tuple[str, int], ...]) -> str:
    counts = ",".join(f"{kind}={n}" for kind, n in layout)
    return f"layout|{room_type}|{counts}"


def layout_is_unseen(room_type: str, layout: tuple[tuple[str, int], ...]) -> bool:
    """True if this layout belongs to ``valid_unseen`` only."""
    return _held_out(layout_key(room_type, layout))


def combo_is_unseen(object_type: str, target_type: str) -> bool:
    """True if this (object kind, target kind) combination belongs to ``valid_unseen`` only."""
    return _held_out(f"combo|{object_type}|{target_type}")


def check_split(split: object) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    return str(split)


# -- generation -------------------------------------------------------------------------------
def _draw_layout(rng: random.Random, room_type: str, unseen: bool) -> tuple[tuple[str, int], ...]:
    recipe = cat.ROOM_RECIPES[room_type]
    while True:  # about 5 draws on average for unseen, 1.25 for seen
        layout = []
        for kind in sorted(recipe):
            lo, hi = recipe[kind]
            n = rng.randint(lo, hi)
            if n:
                layout.append((kind, n))
        result = tuple(layout)
        if layout_is_unseen(room_type, result) == unseen:
            return result


def _excluded_targets(task_type: str) -> set[str]:
    if task_type == "pick_clean_then_place_in_recep":
        return {cat.CLEANER, "garbagecan"}
    if task_type == "pick_heat_then_place_in_recep":
        return {cat.HEATER, "garbagecan"}
    if task_type == "pick_cool_then_place_in_recep":
        return {cat.COOLER, "garbagecan"}
    return set()


def _kind_fits(kind: cat.ObjectKind, task_type: str) -> bool:
    if task_type == "pick_clean_then_place_in_recep":
        return kind.cleanable
    if task_type == "pick_heat_then_place_in_recep":
        return kind.heatable
    if task_type == "pick_cool_then_place_in_recep":
        return kind.coolable
    return True


def feasible_combos(
    task_type: str, room_type: str, layout: tuple[tuple[str, int], ...], unseen: bool
) -> list[tuple[str, str]]:
    """Sorted (object kind, target kind) pairs that can be set in this layout and split."""
    present = {kind for kind, _ in layout}
    combos: list[tuple[str, str]] = []
    for kind in cat.objects_for_room(room_type):
        if not _kind_fits(kind, task_type):
            continue
        hosts = [p for p in kind.places if p in present]
        if not hosts:
            continue
        if task_type == "look_at_obj_in_light":
            targets = list(cat.LAMPS)
        else:
            excluded = _excluded_targets(task_type)
            # the object must start somewhere other than the target kind
            targets = [t for t in hosts if t not in excluded and any(h != t for h in hosts)]
        combos.extend((kind.name, t) for t in targets if combo_is_unseen(kind.name, t) == unseen)
    return sorted(combos)


class _Numberer:
    """Hands out ``"<kind> <n>"`` ids, numbering each kind from 1."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def __call__(self, kind: str) -> str:
        n = self._next.get(kind, 0) + 1
        self._next[kind] = n
        return f"{kind} {n}"


def _item(oid: str, kind: cat.ObjectKind, location: str) -> Item:
    return Item(
        id=oid,
        type=kind.name,
        location=location,
        pickupable=True,
        toggleable=False,
        cleanable=kind.cleanable,
        heatable=kind.heatable,
        coolable=kind.coolable,
    )


def can_host_lamp(lamp_kind: str, rec: Receptacle) -> bool:
    """Whether a lamp of ``lamp_kind`` may stand in/on ``rec``: a desklamp on a desk, sidetable
    or dresser, a floorlamp by any receptacle that does not open, garbage cans aside."""
    if lamp_kind == "desklamp":
        return rec.type in cat.DESKLAMP_HOSTS
    return not rec.openable and rec.type != "garbagecan"


def _place_lamp(
    rng: random.Random, lamp_kind: str, receps: list[Receptacle], numberer: _Numberer
) -> Item:
    host = rng.choice([r for r in receps if can_host_lamp(lamp_kind, r)])
    return Item(
        id=numberer(lamp_kind),
        type=lamp_kind,
        location=host.id,
        pickupable=False,
        toggleable=True,
        cleanable=False,
        heatable=False,
        coolable=False,
    )


def _sort_key(ident: str) -> tuple[str, int]:
    kind, _, num = ident.rpartition(" ")
    return kind, int(num)


def generate_scene(split: str, seed: int, task_type: str | None = None) -> Scene:
    """Deterministically build task ``seed`` of ``split`` (optionally forcing ``task_type``)."""
    split = check_split(split)
    if task_type is not None and task_type not in cat.TASK_TYPES:
        raise ValueError(f"task_type must be one of {', '.join(cat.TASK_TYPES)}; got {task_type!r}")
    # str seeds go through SHA-512 in random.Random: stable across processes and platforms
    rng = random.Random(f"empg.household/{split}/{seed}")
    unseen = split == "valid_unseen"
    drawn_type = rng.choice(cat.TASK_TYPES)
    ttype = task_type or drawn_type

    combos: list[tuple[str, str]] = []
    for _ in range(1000):  # a few draws at most: every task type has combos in both halves
        room = rng.choice(cat.rooms_for_task(ttype))
        layout = _draw_layout(rng, room, unseen)
        combos = feasible_combos(ttype, room, layout, unseen)
        if combos:
            break
    assert combos, f"no feasible {ttype} task for split {split}: the catalogue is inconsistent"
    obj_name, target = rng.choice(combos)
    kind = cat.OBJECT_BY_NAME[obj_name]

    receps = [
        Receptacle(id=f"{rk} {i}", type=rk, openable=rk in cat.OPENABLE, opened=False)
        for rk, n in layout
        for i in range(1, n + 1)
    ]
    numberer = _Numberer()
    items: list[Item] = []
    lamp: Item | None = None
    if room in cat.LIT_ROOMS:
        lamp_kind = target if ttype == "look_at_obj_in_light" else rng.choice(cat.LAMPS)
        lamp = _place_lamp(rng, lamp_kind, receps, numberer)
        items.append(lamp)

    # task objects: never in a receptacle of the target kind, so the goal is not met at start
    sources = [r for r in receps if r.type in kind.places and r.type != target]
    if ttype == "pick_two_obj_and_place":
        n_task = rng.choice((2, 2, 3))
    else:
        n_task = rng.choice((1, 1, 1, 2))
    items.extend(_item(numberer(kind.name), kind, rng.choice(sources).id) for _ in range(n_task))

    # distractors: other kinds, anywhere they belong
    present = {r.type for r in receps}
    pool = [
        k
        for k in cat.objects_for_room(room)
        if k.name != kind.name and any(p in present for p in k.places)
    ]
    for other in rng.sample(pool, min(len(pool), rng.randint(4, 8))):
        hosts = [r for r in receps if r.type in other.places]
        for _ in range(rng.choice((1, 1, 2))):
            items.append(_item(numberer(other.name), other, rng.choice(hosts).id))

    template = rng.randrange(2)
    task = Task(
        type=ttype,
        object_type=obj_name,
        target_type=target,
        lamp=lamp.id if ttype == "look_at_obj_in_light" and lamp else None,
        count=2 if ttype == "pick_two_obj_and_place" else 1,
        instruction=instruction_for(ttype, obj_name, target, template),
    )
    return Scene(
        split=split,
        seed=seed,
        room_type=room,
        layout=layout,
        receptacles=tuple(receps),
        objects=tuple(sorted(items, key=lambda it: _sort_key(it.id))),
        task=task,
    )
