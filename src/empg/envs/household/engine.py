"""Live state of a household episode and the semantics of ALFWorld's commands.

The rules follow ALFWorld 0.4's PDDL domain (``alfred.pddl``):

* ``go to R`` is admissible for every receptacle but the current one;
* ``open R`` / ``close R``: at R, R openable, and closed / open;
* ``take O from R``: at R, hands empty, O in R, R open or not openable;
* ``move O to R``: holding O, at R, R open or not openable, and R a place O belongs
  (ALFWorld's ``canContain``);
* ``clean O with sinkbasin``, ``heat O with microwave``, ``cool O with fridge``: holding O, at the
  appliance, O cleanable / heatable / coolable (the appliance need not be open); heating clears
  "cool" and cooling clears "hot";
* ``use L``: a lamp in/on the current receptacle (open or not); it turns on;
* ``examine R`` at R; ``examine O`` for the held object only; ``look``; ``inventory``; ``help``.

These are exactly the commands ALFWorld's engine (TextWorld's ``PddlEnv`` grounding the domain
with Fast Downward) lists as admissible for the same state: it grounds neither ``go to`` the
current receptacle nor ``examine`` of an object that is not held, although the domain's
preconditions would allow both. Anything else, including every string that is not exactly one
of the admissible commands after stripping surrounding white space (ALFWorld's own matching:
case and inner spacing count), is answered "Nothing happens." and changes nothing.
"""

from __future__ import annotations

from empg.envs.household import text
from empg.envs.household.catalog import CLEANER, COOLER, HEATER, OBJECT_BY_NAME
from empg.envs.household.scene import Scene

HELD = -1
#: longer inputs cannot be a command; they are rejected before any string processing
MAX_COMMAND_CHARS = 200

_STATE_TASKS = {
    "pick_clean_then_place_in_recep": "clean",
    "pick_heat_then_place_in_recep": "heat",
    "pick_cool_then_place_in_recep": "cool",
}
#: the receptacle kind that performs each transformation
APPLIANCE = {"clean": CLEANER, "heat": HEATER, "cool": COOLER}


def normalize(command: str) -> str:
    """Strip surrounding white space, as ALFWorld's engine does before its exact match."""
    return command.strip()


class HouseholdState:
    """Mutable state of one episode, built from an immutable :class:`Scene`.

    Receptacles and objects are referred to by their index in ``scene.receptacles`` /
    ``scene.objects``. ``where[o]`` is a receptacle index, or ``HELD``.
    """

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        recs, objs = scene.receptacles, scene.objects
        self.rindex = {r.id: i for i, r in enumerate(recs)}
        self.loc: int | None = None
        self.opened = [r.opened for r in recs]
        self.where = [self.rindex[o.location] for o in objs]
        self.held: int | None = None
        self.clean = [False] * len(objs)
        self.hot = [False] * len(objs)
        self.cool = [False] * len(objs)
        self.on = [False] * len(objs)
        #: receptacles whose contents the agent has seen at least once (used by the expert)
        self.seen = [False] * len(recs)
        task = scene.task
        self.transform = _STATE_TASKS.get(task.type)
        self.task_objects = [i for i, o in enumerate(objs) if o.type == task.object_type]
        self.targets = [i for i, r in enumerate(recs) if r.type == task.target_type]
        self.lamps = [i for i, o in enumerate(objs) if o.toggleable]
        self._places = [
            frozenset(OBJECT_BY_NAME[o.type].places) if o.pickupable else frozenset() for o in objs
        ]
        self._goto = [(f"go to {r.id}", ("goto", i, -1)) for i, r in enumerate(recs)]
        self._goto_from: dict[int | None, dict[str, tuple[str, int, int]]] = {}
        self._cache: dict[str, tuple[str, int, int]] | None = None

    # -- queries ------------------------------------------------------------------------------
    def visible(self, r: int) -> bool:
        """Whether the contents of receptacle ``r`` can be seen (open, or not openable)."""
        return self.opened[r] or not self.scene.receptacles[r].openable

    def contents(self, r: int) -> list[int]:
        """Objects in/on receptacle ``r``, in scene order."""
        return [o for o, w in enumerate(self.where) if w == r]

    def done_state(self, o: int) -> bool:
        """Whether object ``o`` has the state the task asks for (clean/hot/cool, or none)."""
        if self.transform == "clean":
            return self.clean[o]
        if self.transform == "heat":
            return self.hot[o]
        if self.transform == "cool":
            return self.cool[o]
        return True

    def placed_count(self, r: int) -> int:
        """Task objects in receptacle ``r`` that already have the required state."""
        return sum(1 for o in self.task_objects if self.where[o] == r and self.done_state(o))

    def goal_met(self) -> bool:
        task = self.scene.task
        if task.type == "look_at_obj_in_light":
            if self.held is None or self.held not in self.task_objects:
                return False
            return any(
                self.on[lamp]
                and self.where[lamp] == self.loc
                and self.scene.objects[lamp].type == task.target_type
                for lamp in self.lamps
            )
        return any(self.placed_count(r) >= task.count for r in self.targets)

    # -- admissible commands ------------------------------------------------------------------
    def commands(self) -> dict[str, tuple[str, int, int]]:
        """Admissible command -> (operation, object or receptacle index, receptacle index)."""
        if self._cache is not None:
            return self._cache
        recs, objs = self.scene.receptacles, self.scene.objects
        cmds = dict(self._goto_commands())
        cmds["look"] = ("look", -1, -1)
        cmds["inventory"] = ("inventory", -1, -1)
        cmds["help"] = ("help", -1, -1)
        held = self.held
        if held is not None:
            cmds[f"examine {objs[held].id}"] = ("examine_o", held, -1)
        r = self.loc
        if r is not None:
            rec = recs[r]
            cmds[f"examine {rec.id}"] = ("examine_r", r, -1)
            if rec.openable:
                op = "close" if self.opened[r] else "open"
                cmds[f"{op} {rec.id}"] = (op, r, -1)
            vis = self.visible(r)
            for o, w in enumerate(self.where):
                if w != r:
                    continue
                obj = objs[o]
                if obj.toggleable:
                    cmds[f"use {obj.id}"] = ("use", o, r)
                if vis and held is None and obj.pickupable:
                    cmds[f"take {obj.id} from {rec.id}"] = ("take", o, r)
            if held is not None:
                hobj = objs[held]
                if vis and rec.type in self._places[held]:
                    cmds[f"move {hobj.id} to {rec.id}"] = ("move", held, r)
                if rec.type == CLEANER and hobj.cleanable:
                    cmds[f"clean {hobj.id} with {rec.id}"] = ("clean", held, r)
                if rec.type == HEATER and hobj.heatable:
                    cmds[f"heat {hobj.id} with {rec.id}"] = ("heat", held, r)
                if rec.type == COOLER and hobj.coolable:
                    cmds[f"cool {hobj.id} with {rec.id}"] = ("cool", held, r)
        self._cache = cmds
        return cmds

    def _goto_commands(self) -> dict[str, tuple[str, int, int]]:
        """``go to`` every receptacle but the current one (memoised per location)."""
        found = self._goto_from.get(self.loc)
        if found is None:
            found = {cmd: op for cmd, op in self._goto if op[1] != self.loc}
            self._goto_from[self.loc] = found
        return found

    def admissible(self) -> list[str]:
        """The sorted list of admissible commands in the current state."""
        return sorted(self.commands())

    # -- transitions --------------------------------------------------------------------------
    def apply(self, command: str) -> str:
        """Execute ``command`` (any string) and return ALFWorld's feedback text."""
        if len(command.strip()) > MAX_COMMAND_CHARS:  # padding around a command is allowed
            return text.NOTHING_HAPPENS
        found = self.commands().get(normalize(command))
        if found is None:
            return text.NOTHING_HAPPENS
        op, a, b = found
        if op not in ("look", "inventory", "examine_o", "help"):
            self._cache = None
        return getattr(self, f"_op_{op}")(a, b)

    def _view(self, r: int) -> str:
        rec = self.scene.receptacles[r]
        vis = self.visible(r)
        if vis:
            self.seen[r] = True
        ids = (
            text.display_order([self.scene.objects[o].id for o in self.contents(r)]) if vis else []
        )
        return text.receptacle_view(rec.id, rec.openable, self.opened[r], ids)

    def _op_goto(self, r: int, _: int) -> str:
        self.loc = r
        return f"You arrive at {self.scene.receptacles[r].id}. {self._view(r)}"

    def _op_open(self, r: int, _: int) -> str:
        self.opened[r] = True
        return f"You open the {self.scene.receptacles[r].id}. {self._view(r)}"

    def _op_close(self, r: int, _: int) -> str:
        self.opened[r] = False
        return f"You close the {self.scene.receptacles[r].id}."

    def _op_take(self, o: int, r: int) -> str:
        self.where[o] = HELD
        self.held = o
        return (
            f"You pick up the {self.scene.objects[o].id} from the {self.scene.receptacles[r].id}."
        )

    def _op_move(self, o: int, r: int) -> str:
        self.where[o] = r
        self.held = None
        return f"You move the {self.scene.objects[o].id} to the {self.scene.receptacles[r].id}."

    def _op_use(self, o: int, _: int) -> str:
        self.on[o] = True  # ALFWorld marks the lamp toggled; its feedback always says "on"
        return f"You turn on the {self.scene.objects[o].id}."

    def _op_clean(self, o: int, r: int) -> str:
        self.clean[o] = True
        return f"You clean the {self.scene.objects[o].id} using the {self.scene.receptacles[r].id}."

    def _op_heat(self, o: int, r: int) -> str:
        self.hot[o], self.cool[o] = True, False
        return f"You heat the {self.scene.objects[o].id} using the {self.scene.receptacles[r].id}."

    def _op_cool(self, o: int, r: int) -> str:
        self.cool[o], self.hot[o] = True, False
        return f"You cool the {self.scene.objects[o].id} using the {self.scene.receptacles[r].id}."

    def _op_examine_r(self, r: int, _: int) -> str:
        return self._view(r)

    def _op_examine_o(self, o: int, _: int) -> str:
        obj = self.scene.objects[o]
        return text.object_view(
            obj.id,
            clean=self.clean[o],
            hot=self.hot[o],
            cool=self.cool[o],
            toggleable=obj.toggleable,
            on=self.on[o],
        )

    def _op_look(self, _: int, __: int) -> str:
        if self.loc is None:
            # ALFWorld's look lists the receptacles at the agent's location; at the start there
            # are none (only the opening text, derived without a location, lists them all)
            return text.room_overview([])
        # nothing ever stands beside a receptacle here: every object is in/on one
        return text.facing(self.scene.receptacles[self.loc].id, [])

    def _op_help(self, _: int, __: int) -> str:
        return text.HELP

    def _op_inventory(self, _: int, __: int) -> str:
        return text.inventory(None if self.held is None else self.scene.objects[self.held].id)
