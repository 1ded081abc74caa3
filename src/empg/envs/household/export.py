"""Export household scenes as real ALFWorld games (PDDL problem + ``traj_data.json``).

    from empg.envs.household import generate_scene
    from empg.envs.household.export import export_game, export_split, scene_to_pddl

    scene = generate_scene("valid_unseen", 7)
    print(scene_to_pddl(scene))                      # the PDDL problem text (pure Python)
    export_game(scene, "out", "valid_unseen")        # out/json_2.1.1/valid_unseen/<task>/<trial>/
    export_split("train", range(100), "out")         # many; needs ALFWorld (empg[alfworld])

The exported folder is played by ALFWorld's own text engine through
:class:`empg.envs.alfworld.AlfWorldEnv` (``make("alfworld", data_dir="out", split=...)``).

How a scene becomes a PDDL problem for ALFWorld's domain (``alfred.pddl``):

* every receptacle and object gets an ALFRED-style id ``Class|x|y|z`` (``|`` -> ``_bar_``,
  ``-`` -> ``_minus_``, ``+`` -> ``_plus_``, ``.`` -> ``_dot_``), sinks and bathtubs the
  ALFRED form ``Sink|x|y|z|SinkBasin``. ALFWorld's demangler numbers the instances of a class
  by walking the sorted ids and handing out the *highest* number first, so the x coordinate is
  ``99 - n``: the id of ``cabinet 1`` sorts last and is shown as ``cabinet 1`` again;
* every receptacle has its own location ``loc|i|0|0|45``; the agent starts at
  ``loc|0|0|0|30``, where no receptacle stands (the opening "middle of a room" view);
* facts: ``receptacleType``, ``receptacleAtLocation``, ``openable`` / ``opened``,
  ``objectType``, ``inReceptacle``, ``objectAtLocation``, ``pickupable``, ``cleanable``,
  ``heatable``, ``coolable``, ``toggleable`` and ``canContain`` (the catalogue's ``places``
  of every object kind in the scene, for the receptacle kinds in the scene);
* lamps are ``inReceptacle`` their host receptacle: ALFWorld's ``ToggleObject`` action and its
  light goal both require it;
* the goal is ALFWorld's goal form of the task type (see :func:`goal_pddl`).

Not exported: ALFRED's receptacle objects (``isReceptacleObject`` for mugs, bowls, ...), slicing
and movable receptacles, which the household env does not model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from empg.envs.household import catalog as cat
from empg.envs.household.engine import HouseholdState
from empg.envs.household.expert import expert_step
from empg.envs.household.scene import Receptacle, Scene, check_split, generate_scene

#: ALFRED class name of every receptacle and object kind of the household catalogue.
ALFRED_CLASS: dict[str, str] = {
    # receptacles
    "armchair": "ArmChair",
    "bathtubbasin": "BathtubBasin",
    "bed": "Bed",
    "cabinet": "Cabinet",
    "coffeemachine": "CoffeeMachine",
    "coffeetable": "CoffeeTable",
    "countertop": "CounterTop",
    "desk": "Desk",
    "diningtable": "DiningTable",
    "drawer": "Drawer",
    "dresser": "Dresser",
    "fridge": "Fridge",
    "garbagecan": "GarbageCan",
    "handtowelholder": "HandTowelHolder",
    "laundryhamper": "LaundryHamper",
    "microwave": "Microwave",
    "ottoman": "Ottoman",
    "safe": "Safe",
    "shelf": "Shelf",
    "sidetable": "SideTable",
    "sinkbasin": "SinkBasin",
    "sofa": "Sofa",
    "stoveburner": "StoveBurner",
    "toaster": "Toaster",
    "toilet": "Toilet",
    "toiletpaperhanger": "ToiletPaperHanger",
    "towelholder": "TowelHolder",
    "tvstand": "TVStand",
    # lamps
    "desklamp": "DeskLamp",
    "floorlamp": "FloorLamp",
    # objects
    "alarmclock": "AlarmClock",
    "apple": "Apple",
    "book": "Book",
    "bowl": "Bowl",
    "box": "Box",
    "bread": "Bread",
    "butterknife": "ButterKnife",
    "candle": "Candle",
    "cd": "CD",
    "cellphone": "CellPhone",
    "cloth": "Cloth",
    "creditcard": "CreditCard",
    "cup": "Cup",
    "dishsponge": "DishSponge",
    "egg": "Egg",
    "fork": "Fork",
    "handtowel": "HandTowel",
    "kettle": "Kettle",
    "keychain": "KeyChain",
    "knife": "Knife",
    "ladle": "Ladle",
    "laptop": "Laptop",
    "lettuce": "Lettuce",
    "mug": "Mug",
    "newspaper": "Newspaper",
    "pan": "Pan",
    "pen": "Pen",
    "pencil": "Pencil",
    "peppershaker": "PepperShaker",
    "pillow": "Pillow",
    "plate": "Plate",
    "pot": "Pot",
    "potato": "Potato",
    "remotecontrol": "RemoteControl",
    "saltshaker": "SaltShaker",
    "soapbar": "SoapBar",
    "soapbottle": "SoapBottle",
    "spatula": "Spatula",
    "spoon": "Spoon",
    "spraybottle": "SprayBottle",
    "statue": "Statue",
    "teddybear": "TeddyBear",
    "tissuebox": "TissueBox",
    "toiletpaper": "ToiletPaper",
    "tomato": "Tomato",
    "towel": "Towel",
    "vase": "Vase",
    "watch": "Watch",
    "winebottle": "WineBottle",
}

#: ALFRED names basins after their sink: ``Sink|x|y|z|SinkBasin`` is shown as ``sinkbasin``.
_BASIN_PARENT = {"sinkbasin": "Sink", "bathtubbasin": "Bathtub"}
#: type constants ALFWorld's domain mentions in its actions; the problem must declare them
_DOMAIN_RTYPES = ("SinkBasin", "Microwave", "Fridge")
_DOMAIN_OTYPES = ("Knife", "ButterKnife")
_START = "loc|0|0|0|30"
#: commands at most in a walkthrough check (the household expert needs at most about 30)
_MAX_WALKTHROUGH = 100


def alfred_class(kind: str) -> str:
    """The ALFRED class name of a household kind (``"sinkbasin"`` -> ``"SinkBasin"``)."""
    try:
        return ALFRED_CLASS[kind]
    except KeyError:
        raise KeyError(
            f"household kind {kind!r} has no ALFRED class name in ALFRED_CLASS"
        ) from None


def mangle(alfred_id: str) -> str:
    """ALFRED id -> PDDL name, as ALFWorld's games spell it (``|`` -> ``_bar_``, ...)."""
    out = alfred_id
    for char, word in (("|", "_bar_"), ("-", "_minus_"), ("+", "_plus_"), (".", "_dot_")):
        out = out.replace(char, word)
    return out


def _split_id(ident: str) -> tuple[str, int]:
    kind, _, num = ident.rpartition(" ")
    return kind, int(num)


def _coord(value: int) -> str:
    sign = "-" if value < 0 else "+"
    return f"{sign}{abs(value):02d}.00"


def alfred_id(ident: str, slot: int) -> str:
    """The ALFRED id of household entity ``ident`` (``"cabinet 2"``), before mangling.

    ``x = 99 - n`` makes the demangler give number ``n`` back (it numbers a class's sorted ids
    from the highest number down); ``z`` is ``slot`` (the entity's index), for readability only.
    """
    kind, n = _split_id(ident)
    if not 1 <= n <= 98:
        raise ValueError(f"cannot export {ident!r}: instance numbers must be 1..98")
    cls = alfred_class(kind)
    coords = f"{_coord(99 - n)}|+00.00|{_coord(slot)}"
    if kind in _BASIN_PARENT:
        return f"{_BASIN_PARENT[kind]}|{coords}|{cls}"
    return f"{cls}|{coords}"


def _location(r: int) -> str:
    return mangle(f"loc|{r + 1}|0|0|45")


def goal_pddl(scene: Scene) -> str:
    """ALFWorld's goal form for the scene's task type (its ``goal_library`` semantics)."""
    task = scene.task
    obj = f"{alfred_class(task.object_type)}Type"
    target = f"{alfred_class(task.target_type)}Type"
    state = {
        "pick_clean_then_place_in_recep": ("cleanable", "isClean"),
        "pick_heat_then_place_in_recep": ("heatable", "isHot"),
        "pick_cool_then_place_in_recep": ("coolable", "isCool"),
    }
    if task.type == "look_at_obj_in_light":
        body = (
            "(and\n"
            "  (exists (?ot - object ?r - receptacle ?a - agent ?l - location)\n"
            f"    (and (objectType ?ot {target}) (toggleable ?ot) (isToggled ?ot)\n"
            "         (receptacleAtLocation ?r ?l) (atLocation ?a ?l) (inReceptacle ?ot ?r)))\n"
            "  (exists (?o - object ?a - agent)\n"
            f"    (and (objectType ?o {obj}) (holds ?a ?o))))"
        )
    elif task.type == "pick_two_obj_and_place":
        body = (
            "(exists (?r - receptacle ?o1 - object ?o2 - object)\n"
            f"  (and (receptacleType ?r {target}) (objectType ?o1 {obj}) (objectType ?o2 {obj})\n"
            "       (not (= ?o1 ?o2)) (inReceptacle ?o1 ?r) (inReceptacle ?o2 ?r)))"
        )
    elif task.type in state or task.type == "pick_and_place_simple":
        extra = ""
        if task.type in state:
            able, done = state[task.type]
            extra = f" ({able} ?o) ({done} ?o)"
        body = (
            "(exists (?r - receptacle ?o - object)\n"
            f"  (and (receptacleType ?r {target}) (objectType ?o {obj}){extra}\n"
            "       (inReceptacle ?o ?r)))"
        )
    else:  # pragma: no cover - generate_scene only makes the six types
        raise ValueError(f"cannot export task type {task.type!r}")
    return f"(:goal\n{body}\n)"


def scene_to_pddl(scene: Scene) -> str:
    """The PDDL problem (for ALFWorld's ``alfred`` domain) of ``scene``'s initial state."""
    recs, objs = scene.receptacles, scene.objects
    rname = {r.id: mangle(alfred_id(r.id, i)) for i, r in enumerate(recs)}
    rloc = {r.id: _location(i) for i, r in enumerate(recs)}
    oname = [mangle(alfred_id(o.id, len(recs) + i)) for i, o in enumerate(objs)]

    rtypes = sorted({alfred_class(r.type) for r in recs} | set(_DOMAIN_RTYPES))
    otypes = sorted({alfred_class(o.type) for o in objs} | set(_DOMAIN_OTYPES))
    decl = ["agent1 - agent"]
    decl += [f"{t}Type - otype" for t in otypes]
    decl += [f"{t}Type - rtype" for t in rtypes]
    decl += [f"{rname[r.id]} - receptacle" for r in recs]
    decl += [f"{name} - object" for name in oname]
    decl += [f"{loc} - location" for loc in [mangle(_START), *rloc.values()]]

    init = [f"(atLocation agent1 {mangle(_START)})"]
    for r in recs:
        init += _receptacle_facts(r, rname[r.id], rloc[r.id])
    for o, name in zip(objs, oname, strict=True):
        init.append(f"(objectType {name} {alfred_class(o.type)}Type)")
        init.append(f"(inReceptacle {name} {rname[o.location]})")
        init.append(f"(objectAtLocation {name} {rloc[o.location]})")
        flags = ("pickupable", "cleanable", "heatable", "coolable", "toggleable")
        init += [f"({flag} {name})" for flag in flags if getattr(o, flag)]
    present = {r.type for r in recs}
    for kind in sorted({o.type for o in objs if o.pickupable}):
        for place in sorted(set(cat.OBJECT_BY_NAME[kind].places) & present):
            init.append(f"(canContain {alfred_class(place)}Type {alfred_class(kind)}Type)")

    lines = [
        f"; empg household scene: split {scene.split}, seed {scene.seed}, {scene.room_type}",
        f"; task: {scene.task.instruction}",
        f"(define (problem empg_household_{scene.split}_{scene.seed})",
        "(:domain alfred)",
        "(:objects",
        *(f"  {d}" for d in decl),
        ")",
        "(:init",
        *(f"  {f}" for f in init),
        ")",
        goal_pddl(scene),
        ")",
    ]
    return "\n".join(lines) + "\n"


def _receptacle_facts(r: Receptacle, name: str, loc: str) -> list[str]:
    facts = [
        f"(receptacleType {name} {alfred_class(r.type)}Type)",
        f"(receptacleAtLocation {name} {loc})",
    ]
    if r.openable:
        facts.append(f"(openable {name})")
    if r.opened:
        facts.append(f"(opened {name})")
    return facts


def traj_data(scene: Scene) -> dict[str, Any]:
    """The ``traj_data.json`` fields ALFWorld's engine and hand-coded expert read."""
    task = scene.task
    light = task.type == "look_at_obj_in_light"
    return {
        "task_type": task.type,
        "pddl_params": {
            "object_target": alfred_class(task.object_type),
            "parent_target": "" if light else alfred_class(task.target_type),
            "toggle_target": alfred_class(task.target_type) if light else "",
            "mrecep_target": "",
            "object_sliced": False,
        },
        "turk_annotations": {"anns": [{"task_desc": task.instruction}]},
        "empg": {"split": scene.split, "seed": scene.seed, "room_type": scene.room_type},
    }


def task_folder(scene: Scene) -> str:
    """``<task_type>-<Object>-None-<Target>-<seed>`` (ALFWorld's task folder naming)."""
    task = scene.task
    return (
        f"{task.type}-{alfred_class(task.object_type)}-None-"
        f"{alfred_class(task.target_type)}-{scene.seed}"
    )


def trial_folder(scene: Scene) -> str:
    return f"trial_empg_{scene.split}_{scene.seed:06d}"


def export_game(
    scene: Scene,
    out_root: str | os.PathLike[str],
    split_name: str | None = None,
    *,
    check_solvable: bool = True,
) -> Path:
    """Write ``scene`` as one ALFWorld game and return its ``game.tw-pddl`` path.

    The files go to ``out_root/json_2.1.1/<split_name>/<task folder>/<trial folder>/``
    (``split_name`` defaults to ``scene.split``). With ``check_solvable`` the household
    expert's commands are played in ALFWorld's engine; if they win there they are stored as
    ``walkthrough`` and ``solvable`` is true, else ``solvable`` is false (``AlfWorldEnv`` skips
    such games unless ``require_solvable=False``). Without it the game is marked solvable
    unchecked. Needs ALFWorld (``empg[alfworld]``).

    (ALFWorld's own hand-coded expert is not used for this check: it loops on many
    ``pick_two_obj_and_place`` games whose two objects start in different receptacles, so it
    would mark solvable games unsolvable; see docs/env_household.md.)
    """
    from empg.envs.alfworld import write_game, write_json

    split = split_name if split_name is not None else scene.split
    if not split or "/" in split or split in (".", ".."):
        raise ValueError(f"split_name must be a plain folder name, got {split!r}")
    trial = Path(out_root) / "json_2.1.1" / split / task_folder(scene) / trial_folder(scene)
    game = write_game(
        trial,
        scene_to_pddl(scene),
        traj_data(scene),
        task_desc=scene.task.instruction.rstrip("."),
        check_solvable=False,
        unchecked_solvable=not check_solvable,  # checked below: unsolvable until it passes
    )
    if check_solvable:
        walkthrough = verified_walkthrough(scene, game)
        with open(game, encoding="utf-8") as fh:
            data = json.load(fh)
        data["walkthrough"] = walkthrough
        data["solvable"] = walkthrough is not None
        write_json(game, data)
    return game


def verified_walkthrough(scene: Scene, game: str | os.PathLike[str]) -> list[str] | None:
    """The household expert's commands for ``scene``, if they also win ``game`` in ALFWorld.

    The expert plans on the built-in engine's state; each command is played in both engines.
    Returns None if ALFWorld's engine has not reported a win when the built-in one does (or
    after ``_MAX_WALKTHROUGH`` commands).
    """
    from empg.envs.alfworld import AlfWorldEnv

    state = HouseholdState(scene)
    real = AlfWorldEnv(game_files=[Path(game)], require_solvable=False, max_steps=_MAX_WALKTHROUGH)
    try:
        real.reset(seed=0)
        commands: list[str] = []
        for _ in range(_MAX_WALKTHROUGH):
            command = expert_step(state)[0]
            state.apply(command)
            commands.append(command)
            if real.step(command).info["won"]:
                return commands if state.goal_met() else None
            if state.goal_met():
                return None
        return None
    finally:
        real.close()


def export_split(
    split: str,
    seeds: Iterable[int],
    out_root: str | os.PathLike[str],
    *,
    task_type: str | None = None,
    check_solvable: bool = True,
) -> list[Path]:
    """Export tasks ``seeds`` of ``split`` (optionally forcing ``task_type``); their paths."""
    split = check_split(split)
    return [
        export_game(
            generate_scene(split, s, task_type), out_root, split, check_solvable=check_solvable
        )
        for s in seeds
    ]
