"""Static knowledge of the household world: receptacle kinds, room recipes, object kinds.

Everything here is plain data. ``scene.py`` draws rooms and objects from it; ``engine.py`` reads
the flags (openable, cleanable, ...) that decide which commands are admissible. Names follow
ALFWorld's lower-case, space-free spelling ("sinkbasin", "creditcard").
"""

from __future__ import annotations

from dataclasses import dataclass

#: The six ALFWorld task types, in ALFWorld's spelling.
TASK_TYPES: tuple[str, ...] = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)

#: Receptacle kinds that must be opened before their contents can be seen, taken or added to.
OPENABLE: frozenset[str] = frozenset({"cabinet", "drawer", "fridge", "microwave", "safe"})

#: The receptacle kind that performs each transformation (ALFWorld's PDDL domain).
CLEANER, HEATER, COOLER = "sinkbasin", "microwave", "fridge"

#: Lamp kinds for ``look_at_obj_in_light``: a desklamp stands on a receptacle, a floorlamp in
#: or on one (``scene._place_lamp``).
LAMPS: tuple[str, ...] = ("desklamp", "floorlamp")
DESKLAMP_HOSTS: tuple[str, ...] = ("desk", "sidetable", "dresser")

ROOM_TYPES: tuple[str, ...] = ("kitchen", "livingroom", "bedroom", "bathroom")

#: Per room type: receptacle kind -> (min count, max count). A layout draws one count per kind.
ROOM_RECIPES: dict[str, dict[str, tuple[int, int]]] = {
    "kitchen": {
        "cabinet": (2, 6),
        "coffeemachine": (1, 1),
        "countertop": (1, 2),
        "diningtable": (0, 1),
        "drawer": (1, 4),
        "fridge": (1, 1),
        "garbagecan": (1, 1),
        "microwave": (1, 1),
        "shelf": (0, 2),
        "sinkbasin": (1, 1),
        "stoveburner": (2, 4),
        "toaster": (1, 1),
    },
    "livingroom": {
        "armchair": (0, 2),
        "cabinet": (0, 3),
        "coffeetable": (1, 2),
        "diningtable": (0, 1),
        "drawer": (0, 3),
        "dresser": (0, 1),
        "garbagecan": (1, 1),
        "ottoman": (0, 1),
        "shelf": (0, 3),
        "sidetable": (1, 2),
        "sofa": (1, 1),
        "tvstand": (0, 1),
    },
    "bedroom": {
        "armchair": (0, 1),
        "bed": (1, 1),
        "desk": (0, 1),
        "drawer": (2, 5),
        "dresser": (0, 1),
        "garbagecan": (1, 1),
        "laundryhamper": (0, 1),
        "safe": (0, 1),
        "shelf": (0, 3),
        "sidetable": (1, 2),
    },
    "bathroom": {
        "bathtubbasin": (0, 1),
        "cabinet": (1, 4),
        "countertop": (1, 1),
        "drawer": (0, 3),
        "garbagecan": (1, 1),
        "handtowelholder": (0, 2),
        "shelf": (0, 2),
        "sinkbasin": (1, 2),
        "toilet": (1, 1),
        "toiletpaperhanger": (1, 1),
        "towelholder": (0, 1),
    },
}

#: Room types that always hold exactly one lamp (so the light task can be set there).
LIT_ROOMS: frozenset[str] = frozenset({"livingroom", "bedroom"})


@dataclass(frozen=True)
class ObjectKind:
    """A kind of portable object.

    ``places`` are the receptacle kinds it is found in and may be put into (ALFWorld's
    ``canContain``); ``rooms`` the room types it appears in.
    """

    name: str
    rooms: frozenset[str]
    places: tuple[str, ...]
    cleanable: bool = False
    heatable: bool = False
    coolable: bool = False


def _kind(name: str, rooms: str, places: str, flags: str = "") -> ObjectKind:
    room_names = {"K": "kitchen", "L": "livingroom", "B": "bedroom", "T": "bathroom"}
    return ObjectKind(
        name=name,
        rooms=frozenset(room_names[c] for c in rooms),
        places=tuple(places.split()),
        cleanable="c" in flags,
        heatable="h" in flags,
        coolable="k" in flags,
    )


_FOOD = "countertop diningtable fridge microwave sinkbasin garbagecan"
_DISH = "countertop diningtable cabinet shelf sinkbasin microwave fridge"
_CUTLERY = "countertop diningtable drawer sinkbasin"
_SMALL = "desk sidetable drawer dresser shelf coffeetable safe"
_SOFT = "sofa armchair ottoman bed"

OBJECT_KINDS: tuple[ObjectKind, ...] = (
    # kitchen
    _kind("apple", "K", _FOOD, "chk"),
    _kind("bread", "K", "countertop diningtable fridge microwave cabinet", "hk"),
    _kind("egg", "K", _FOOD, "ch"),
    _kind("lettuce", "K", "countertop diningtable fridge sinkbasin garbagecan", "ck"),
    _kind("potato", "K", _FOOD, "chk"),
    _kind("tomato", "K", _FOOD, "chk"),
    _kind("mug", "KB", _DISH + " coffeemachine desk sidetable", "chk"),
    _kind("cup", "K", _DISH, "chk"),
    _kind("plate", "K", _DISH, "chk"),
    _kind("bowl", "KLB", _DISH + " desk sidetable coffeetable", "ck"),
    _kind("pan", "K", "countertop stoveburner cabinet fridge sinkbasin", "ck"),
    _kind("pot", "K", "countertop stoveburner cabinet fridge sinkbasin shelf", "ck"),
    _kind("knife", "K", _CUTLERY, "c"),
    _kind("butterknife", "K", _CUTLERY, "c"),
    _kind("fork", "K", _CUTLERY, "c"),
    _kind("spoon", "K", _CUTLERY, "c"),
    _kind("spatula", "K", _CUTLERY, "c"),
    _kind("ladle", "K", _CUTLERY, "c"),
    _kind("kettle", "K", "countertop stoveburner cabinet shelf", "c"),
    _kind("winebottle", "K", "countertop diningtable fridge cabinet shelf", "k"),
    _kind("saltshaker", "K", "countertop diningtable cabinet shelf drawer"),
    _kind("peppershaker", "K", "countertop diningtable cabinet shelf drawer"),
    _kind("dishsponge", "KT", "countertop sinkbasin cabinet drawer shelf", "c"),
    _kind("soapbottle", "KT", "countertop cabinet shelf garbagecan toilet"),
    # bathroom
    _kind("soapbar", "T", "countertop sinkbasin bathtubbasin toilet cabinet garbagecan", "c"),
    _kind("cloth", "TB", "countertop cabinet drawer bathtubbasin sinkbasin laundryhamper", "c"),
    _kind("towel", "T", "towelholder countertop cabinet"),
    _kind("handtowel", "T", "handtowelholder countertop cabinet"),
    _kind("toiletpaper", "T", "toiletpaperhanger toilet countertop cabinet shelf garbagecan"),
    _kind("spraybottle", "T", "toilet countertop cabinet shelf garbagecan"),
    _kind("candle", "TL", "toilet countertop cabinet shelf bathtubbasin coffeetable sidetable"),
    _kind("tissuebox", "TLB", "toilet countertop shelf cabinet coffeetable sidetable dresser"),
    # living room and bedroom
    _kind("book", "LB", _SMALL + " bed sofa armchair diningtable"),
    _kind("pen", "LB", _SMALL),
    _kind("pencil", "LB", _SMALL),
    _kind("cd", "LB", _SMALL + " garbagecan"),
    _kind("cellphone", "LB", _SMALL + " " + _SOFT),
    _kind("keychain", "LB", _SMALL + " sofa armchair ottoman tvstand"),
    _kind("creditcard", "LB", _SMALL + " sofa armchair diningtable"),
    _kind("watch", "LB", _SMALL),
    _kind("alarmclock", "B", "desk sidetable dresser shelf"),
    _kind("pillow", "LB", _SOFT),
    _kind("laptop", "LB", "desk sidetable coffeetable diningtable " + _SOFT),
    _kind("remotecontrol", "L", "sofa armchair coffeetable sidetable tvstand ottoman dresser"),
    _kind("vase", "L", "shelf sidetable coffeetable diningtable dresser tvstand cabinet"),
    _kind("statue", "LB", "shelf sidetable coffeetable diningtable dresser tvstand desk"),
    _kind("newspaper", "L", "sofa armchair coffeetable sidetable diningtable ottoman garbagecan"),
    _kind("box", "LB", "sofa coffeetable sidetable dresser shelf diningtable armchair desk"),
    _kind("teddybear", "B", "bed shelf dresser armchair"),
)

OBJECT_BY_NAME: dict[str, ObjectKind] = {k.name: k for k in OBJECT_KINDS}


def objects_for_room(room_type: str) -> tuple[ObjectKind, ...]:
    """Object kinds that appear in ``room_type``, in catalogue order."""
    return tuple(k for k in OBJECT_KINDS if room_type in k.rooms)


def rooms_for_task(task_type: str) -> tuple[str, ...]:
    """Room types in which ``task_type`` can be set (the appliances it needs are there)."""
    if task_type == "look_at_obj_in_light":
        return ("livingroom", "bedroom")
    if task_type in ("pick_heat_then_place_in_recep", "pick_cool_then_place_in_recep"):
        return ("kitchen",)
    if task_type == "pick_clean_then_place_in_recep":
        return ("kitchen", "bathroom")
    return ROOM_TYPES


def _check_catalogue() -> None:
    known = {r for recipe in ROOM_RECIPES.values() for r in recipe}
    for kind in OBJECT_KINDS:
        unknown = [p for p in kind.places if p not in known]
        assert not unknown, f"{kind.name}: unknown receptacle kinds {unknown}"
        assert kind.rooms <= set(ROOM_TYPES), kind.name


_check_catalogue()
