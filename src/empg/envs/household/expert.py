"""A scripted expert for household tasks: next action and a one-sentence reason.

The expert plans from the true state but searches like an agent would: it only goes for an
object once it has seen it (``HouseholdState.seen``), and otherwise visits the receptacles the
object kind belongs in (open surfaces first, then closed containers, each kind in scene order),
opening closed ones. With the object in hand it cleans / heats / cools it at the first
appliance of the right kind, goes to the target receptacle (opening it if needed) and puts it
there; for the light task it takes the object to the lamp and turns the lamp on. By default the
lamp's place is taken from the true state; with ``search_lamp`` the expert goes to it only once
it has seen it, and otherwise visits, object in hand, the receptacles a lamp of that kind can
stand in/on (scene order), as it does for objects. If the agent holds an object the task does
not need, the expert first puts it down.
"""

from __future__ import annotations

from empg.envs.household.catalog import OBJECT_BY_NAME
from empg.envs.household.engine import APPLIANCE, HELD, HouseholdState
from empg.envs.household.scene import can_host_lamp

_VERB = {"clean": "clean", "heat": "heat", "cool": "cool"}


def expert_step(st: HouseholdState, *, search_lamp: bool = False) -> tuple[str, str]:
    """(action, thought) for the current state; the action is always admissible.

    ``search_lamp``: for the light task, look for the lamp instead of walking to where the true
    state says it is (see the module docstring)."""
    task = st.scene.task
    held = st.held
    if held is not None and held not in st.task_objects:
        return _drop(st, held)
    if task.type == "look_at_obj_in_light":
        if held is not None:
            return _to_lamp(st, held, search_lamp)
        return _fetch(st, st.task_objects)
    goal = _goal_receptacle(st)
    if held is not None:
        return _deliver(st, held, goal)
    wanted = [
        o
        for o in st.task_objects
        if not (st.where[o] == goal and st.done_state(o)) and st.where[o] != HELD
    ]
    return _fetch(st, wanted)


# -- pieces -----------------------------------------------------------------------------------
def _rid(st: HouseholdState, r: int) -> str:
    return st.scene.receptacles[r].id


def _oid(st: HouseholdState, o: int) -> str:
    return st.scene.objects[o].id


def _go_or(st: HouseholdState, r: int, thought: str) -> tuple[str, str] | None:
    """``go to r`` with ``thought`` unless already there."""
    return None if st.loc == r else (f"go to {_rid(st, r)}", thought)


def _goal_receptacle(st: HouseholdState) -> int:
    """The target receptacle to fill: the one already holding most finished task objects."""
    best = st.targets[0]
    for r in st.targets:
        if st.placed_count(r) > st.placed_count(best):
            best = r
    return best


def _fetch(st: HouseholdState, wanted: list[int]) -> tuple[str, str]:
    obj = st.scene.task.object_type
    known = [o for o in wanted if st.where[o] != HELD and st.seen[st.where[o]]]
    if known:
        here = [o for o in known if st.where[o] == st.loc]
        o = (here or known)[0]
        r = st.where[o]
        step = _go_or(
            st, r, f"There is a {_oid(st, o)} in the {_rid(st, r)}; I go there to take it."
        )
        if step:
            return step
        if not st.visible(r):
            return (
                f"open {_rid(st, r)}",
                f"The {_oid(st, o)} is in the closed {_rid(st, r)}; I open it.",
            )
        return (
            f"take {_oid(st, o)} from {_rid(st, r)}",
            f"I take the {_oid(st, o)} from the {_rid(st, r)}.",
        )
    another = "another" if st.scene.task.count == 2 and _placed_any(st) else "a"
    for r in _search_order(st):
        if st.seen[r]:
            continue
        step = _go_or(
            st, r, f"I need to find {another} {obj} first; the {_rid(st, r)} is unvisited."
        )
        if step:
            return step
        return f"open {_rid(st, r)}", f"The {_rid(st, r)} is closed; I open it to look inside."
    return "look", f"I have searched everywhere a {obj} could be; I look around."


def _placed_any(st: HouseholdState) -> bool:
    return any(st.placed_count(r) for r in st.targets)


def _search_order(st: HouseholdState) -> list[int]:
    """Receptacles where the task object can be, open surfaces first, target kind last."""
    task = st.scene.task
    places = OBJECT_BY_NAME[task.object_type].places
    recs = st.scene.receptacles

    def key(r: int) -> tuple[bool, bool, int]:
        return (recs[r].type == task.target_type, recs[r].openable, r)

    return sorted((r for r, rec in enumerate(recs) if rec.type in places), key=key)


def _deliver(st: HouseholdState, o: int, goal: int) -> tuple[str, str]:
    oid = _oid(st, o)
    if st.transform and not st.done_state(o):
        kind = APPLIANCE[st.transform]
        app = next(r for r, rec in enumerate(st.scene.receptacles) if rec.type == kind)
        verb = _VERB[st.transform]
        step = _go_or(
            st, app, f"I have the {oid}; now I need to {verb} it with the {_rid(st, app)}."
        )
        if step:
            return step
        return (
            f"{verb} {oid} with {_rid(st, app)}",
            f"I am at the {_rid(st, app)}; I {verb} the {oid}.",
        )
    gid = _rid(st, goal)
    ready = "is ready" if st.transform else "is in my hands"
    step = _go_or(st, goal, f"The {oid} {ready}; now I go to the {gid} to put it there.")
    if step:
        return step
    if not st.visible(goal):
        return f"open {gid}", f"The {gid} is closed; I open it to put the {oid} in."
    return f"move {oid} to {gid}", f"I put the {oid} in the {gid}."


def _to_lamp(st: HouseholdState, o: int, search: bool) -> tuple[str, str]:
    task = st.scene.task
    lamp = next(i for i in st.lamps if st.scene.objects[i].type == task.target_type)
    lid, r, oid = _oid(st, lamp), st.where[lamp], _oid(st, o)
    if search and not st.seen[r]:
        return _search_lamp(st, oid, task.target_type)
    step = _go_or(st, r, f"I have the {oid}; now I go to the {lid} at the {_rid(st, r)}.")
    if step:
        return step
    return f"use {lid}", f"I hold the {oid} by the {lid}; I turn the {lid} on."


def _search_lamp(st: HouseholdState, oid: str, kind: str) -> tuple[str, str]:
    """Next step of the search for a lamp not seen yet: the first unseen receptacle (scene
    order) that can hold one."""
    for r, rec in enumerate(st.scene.receptacles):
        if st.seen[r] or not can_host_lamp(kind, rec):
            continue
        step = _go_or(
            st, r, f"I have the {oid}; I need to find a {kind}; the {_rid(st, r)} is unvisited."
        )
        if step:
            return step
        rid = _rid(st, r)
        return f"open {rid}", f"The {rid} is closed; I open it to look for a {kind}."
    raise AssertionError(f"no unseen receptacle can hold the {kind}, yet it was not seen")


def _drop(st: HouseholdState, o: int) -> tuple[str, str]:
    """Put down an object the task does not need, at the nearest place it belongs."""
    oid = _oid(st, o)
    places = OBJECT_BY_NAME[st.scene.objects[o].type].places
    recs = st.scene.receptacles
    spots = [r for r, rec in enumerate(recs) if rec.type in places]
    here = [r for r in spots if r == st.loc]
    open_spots = [r for r in spots if st.visible(r)]
    r = (here or open_spots or spots)[0]
    reason = (
        f"I am holding the {oid}, which the task does not need; I put it down in the {_rid(st, r)}."
    )
    step = _go_or(st, r, reason)
    if step:
        return step
    if not st.visible(r):
        return (
            f"open {_rid(st, r)}",
            f"The {_rid(st, r)} is closed; I open it to put the {oid} down.",
        )
    return f"move {oid} to {_rid(st, r)}", reason
