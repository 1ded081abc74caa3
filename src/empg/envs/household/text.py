"""ALFWorld's sentences: instructions, feedback templates and list rendering.

The wording follows ALFWorld 0.4's grammar file (``alfred.twl2``) and goal templates: lists read
"a cabinet 2, a cabinet 1, and a fridge 1" (the article is always "a", as in ALFWorld), an empty
list reads "nothing", and any command that is not admissible is answered "Nothing happens.".

Order of lists: ALFWorld's engine lists entities in the sorted order of their ALFRED ids, and its
demangler numbers the instances of a class from the highest number down along that order; the
visible result, which :func:`display_order` reproduces, is kinds in alphabetical order and,
within a kind, numbers from high to low ("a drawer 3, a drawer 2, a drawer 1, a fridge 1").
"""

from __future__ import annotations

from collections.abc import Sequence

WELCOME = "-= Welcome to TextWorld, ALFRED! =-"
NOTHING_HAPPENS = "Nothing happens."
TASK_PREFIX = "Your task is to: "

#: Two goal templates per task type, as in ALFWorld's goal library; scenes pick one at random.
INSTRUCTION_TEMPLATES: dict[str, tuple[str, str]] = {
    "pick_and_place_simple": ("put a {obj} in {recep}.", "put some {obj} on {recep}."),
    "look_at_obj_in_light": (
        "look at {obj} under the {recep}.",
        "examine the {obj} with the {recep}.",
    ),
    "pick_clean_then_place_in_recep": (
        "put a clean {obj} in {recep}.",
        "clean some {obj} and put it in {recep}.",
    ),
    "pick_heat_then_place_in_recep": (
        "put a hot {obj} in {recep}.",
        "heat some {obj} and put it in {recep}.",
    ),
    "pick_cool_then_place_in_recep": (
        "put a cool {obj} in {recep}.",
        "cool some {obj} and put it in {recep}.",
    ),
    "pick_two_obj_and_place": (
        "put two {obj} in {recep}.",
        "find two {obj} and put them in {recep}.",
    ),
}


def instruction_for(task_type: str, obj: str, target: str, template: int) -> str:
    """The instruction sentence (without the "Your task is to: " prefix)."""
    return INSTRUCTION_TEMPLATES[task_type][template].format(obj=obj, recep=target)


#: ALFWorld's answer to ``help`` (its grammar's ``help.feedback``, surrounding newlines stripped)
HELP = (
    "Available commands:\n"
    "  look:                             look around your current location\n"
    "  inventory:                        check your current inventory\n"
    "  go to (receptacle):               move to a receptacle\n"
    "  open (receptacle):                open a receptacle\n"
    "  close (receptacle):               close a receptacle\n"
    "  take (object) from (receptacle):  take an object from a receptacle\n"
    "  move (object) to (receptacle):  place an object in or on a receptacle\n"
    "  examine (something):              examine a receptacle or an object\n"
    "  use (object):                     use an object\n"
    "  heat (object) with (receptacle):  heat an object using a receptacle\n"
    "  clean (object) with (receptacle): clean an object using a receptacle\n"
    "  cool (object) with (receptacle):  cool an object using a receptacle\n"
    "  slice (object) with (object):     slice an object using a sharp object"
)


def display_order(ids: Sequence[str]) -> list[str]:
    """``"<kind> <n>"`` ids in ALFWorld's listing order: kind ascending, number descending."""

    def key(ident: str) -> tuple[str, int]:
        kind, _, num = ident.rpartition(" ")
        return kind, -int(num)

    return sorted(ids, key=key)


def listing(ids: Sequence[str]) -> str:
    """ALFWorld's list rendering: "nothing", "a x 1", "a x 1, and a y 2", "a x, a y, and a z"."""
    if not ids:
        return "nothing"
    parts = [f"a {i}" for i in ids]
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + ", and " + parts[-1]


def room_overview(receptacle_ids: Sequence[str]) -> str:
    seen = listing(receptacle_ids)
    return f"You are in the middle of a room. Looking quickly around you, you see {seen}."


def facing(receptacle_id: str, beside_ids: Sequence[str]) -> str:
    return f"You are facing the {receptacle_id}. Next to it, you see {listing(beside_ids)}."


def welcome(overview: str, instruction: str) -> str:
    return f"{WELCOME}\n\n{overview}\n\n{TASK_PREFIX}{instruction}"


def receptacle_view(rid: str, openable: bool, opened: bool, content_ids: Sequence[str]) -> str:
    """ALFWorld's ``examineReceptacle`` feedback (also the tail of arrive / open)."""
    if openable and opened:
        return f"The {rid} is open. In it, you see {listing(content_ids)}."
    if openable:
        return f"The {rid} is closed."
    return f"On the {rid}, you see {listing(content_ids)}."


def object_view(oid: str, *, clean: bool, hot: bool, cool: bool, toggleable: bool, on: bool) -> str:
    """ALFWorld's ``examineObject`` feedback (the subset without slicing and containers)."""
    if clean and hot:
        return f"This is a hot and clean {oid}."
    if clean and cool:
        return f"This is a cool and clean {oid}."
    if hot:
        return f"This is a hot {oid}."
    if clean:
        return f"This is a clean {oid}."
    if cool:
        return f"This is a cold {oid}."
    if toggleable:
        return f"This {oid} is {'on' if on else 'off'}."
    return f"There's nothing special about {oid}."


def inventory(held: str | None) -> str:
    return f"You are carrying: a {held}." if held else "You are not carrying anything."
