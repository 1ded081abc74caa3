"""Adapter to the real ALFWorld text engine (``pip install 'empg[alfworld]'``, alfworld 0.4.2).

ALFWorld's text games are TextWorld ``PddlEnv`` games: a PDDL problem played against
ALFWorld's PDDL domain, with ALFWorld's text grammar (``alfred.twl2``). This adapter runs them
exactly as ALFWorld's ``AlfredTWEnv`` does (``PddlEnv`` + ``AlfredDemangler`` without name
shuffling + the hand-coded expert ``HandCodedTWAgent``) over a data folder in ALFWorld's layout::

    DATA_DIR/[json_2.1.1/]<split>/<task folder>/<trial folder>/game.tw-pddl
                                                               traj_data.json

``DATA_DIR`` defaults to ``$ALFWORLD_DATA`` or ALFWorld's ``~/.cache/alfworld``, where
``alfworld-download`` puts the games. ``reset(seed=s)`` plays game ``s % n`` of the split,
games in sorted path order (``seed=None`` plays game 0). Like ALFWorld, folders whose path
contains ``movable`` or ``Sliced`` and games whose ``game.tw-pddl`` lacks ``"solvable": true``
are skipped (``require_solvable=False`` keeps the latter).

Files the engine reads (what an exporter must write; :func:`write_game` writes both):

* ``game.tw-pddl``: JSON object with ``pddl_domain`` (text of ALFWorld's ``alfred.pddl``),
  ``grammar`` (text of ``alfred.twl2`` with ``UNKNOWN GOAL`` replaced by the task sentence;
  left in place, this adapter fills it from ``traj_data.json``), ``pddl_problem`` (the PDDL
  problem text, ``(:domain alfred)``), ``solvable`` (bool) and ``walkthrough`` (list of
  commands or null).
* ``traj_data.json``: ``task_type`` (one of :data:`TASK_TYPES`) and ``pddl_params`` with
  ``object_target``, ``parent_target``, ``toggle_target``, ``mrecep_target`` (ALFRED class
  names such as ``Apple``, ``DiningTable``, ``DeskLamp``, or ``""``) and ``object_sliced``
  (bool). The hand-coded expert reads it from the game's folder.

Object ids in the PDDL problem follow ALFRED: ``Apple_bar__minus_01_dot_50_bar_...`` (``|`` ->
``_bar_``, ``-`` -> ``_minus_``, ``+`` -> ``_plus_``, ``.`` -> ``_dot_``); the demangler turns
them into ``apple 1``. The problem must declare the type constants the domain uses
(``SinkBasinType``, ``MicrowaveType``, ``FridgeType``, ``KnifeType``, ``ButterKnifeType``).

``info``: ``won``, ``task`` (the sentence after "Your task is to:"), ``task_type`` (the task
folder's name up to its first ``-``), ``admissible_actions``, ``gamefile``. Reward: 1.0 on the
winning step, else 0.0 (ALFWorld's own score). ``expert_action()``: the hand-coded expert's
next command (``expert="handcoded"``, ALFWorld's default) or the first command of the
Fast-Downward plan from the current state (``expert="planner"``, slower).

The hand-coded expert draws from Python's global ``random`` module in a few places; the adapter
swaps in a per-episode ``random.Random(seed)`` while it runs so episodes are reproducible.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from empg.envs.core import TextEnv, name_list
from empg.envs.textworld import ENGINE_LOCK
from empg.errors import ConfigError, InputError
from empg.files import atomic_write_text

INSTALL_HINT = "AlfWorldEnv needs ALFWorld: pip install 'empg[alfworld]' (alfworld==0.4.2)"
TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
EXPERTS = ("handcoded", "planner")
DOWNLOAD_HINT = (
    "ALFWorld's games come from `alfworld-download` (pip install 'empg[alfworld]'), which "
    "writes them to $ALFWORLD_DATA/json_2.1.1/<split>/ (default ~/.cache/alfworld); pass "
    "data_dir=... or set ALFWORLD_DATA for another folder"
)
_EXPERT_RANDOM_LOCK = threading.Lock()


def _import_alfworld() -> dict[str, Any]:
    try:
        import textworld
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler
        from alfworld.agents.expert import handcoded_expert
        from alfworld.agents.expert.handcoded_expert_tw import HandCodedTWAgent
        from alfworld.info import ALFRED_PDDL_PATH, ALFRED_TWL2_PATH
        from textworld.envs import PddlEnv
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(f"{INSTALL_HINT} ({exc})") from exc
    return {
        "textworld": textworld,
        "PddlEnv": PddlEnv,
        "AlfredDemangler": AlfredDemangler,
        "HandCodedTWAgent": HandCodedTWAgent,
        "handcoded_module": handcoded_expert,
        "domain_path": ALFRED_PDDL_PATH,
        "grammar_path": ALFRED_TWL2_PATH,
    }


def task_description(traj_data: dict[str, Any]) -> str:
    """ALFWorld's first templated task sentence for ``traj_data`` (deterministic)."""
    import alfworld.gen.goal_library as glib

    params = traj_data["pddl_params"]
    goal = traj_data["task_type"] + ("_slice" if params.get("object_sliced") else "")
    if goal not in glib.gdict:
        raise ConfigError(
            f"traj_data task_type {traj_data['task_type']!r} has no ALFWorld template"
        )
    return glib.gdict[goal]["templates"][0].format(
        obj=str(params.get("object_target", "")).lower(),
        recep=str(params.get("parent_target", "")).lower(),
        toggle=str(params.get("toggle_target", "")).lower(),
        mrecep=str(params.get("mrecep_target", "")).lower(),
    )


def default_data_dir() -> Path:
    """Where ALFWorld itself reads its games: ``$ALFWORLD_DATA`` (which importing alfworld sets
    to its default when the user has not) or ``~/.cache/alfworld``, where alfworld-download
    writes them."""
    return Path(os.environ.get("ALFWORLD_DATA") or "~/.cache/alfworld").expanduser()


def _data_root(data_dir: Path) -> Path:
    return data_dir / "json_2.1.1" if (data_dir / "json_2.1.1").is_dir() else data_dir


def find_games(
    data_dir: str | os.PathLike[str],
    split: str,
    *,
    task_types: Sequence[str] | None = None,
    require_solvable: bool = True,
) -> list[Path]:
    """Sorted ``game.tw-pddl`` paths of ``split`` that ALFWorld would play (see module doc)."""
    root = _data_root(Path(data_dir))
    split_dir = root / split
    if not split_dir.is_dir():
        have = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise InputError(
            f"ALFWorld split folder {str(split_dir)!r} does not exist; splits found under "
            f"{str(root)!r}: {', '.join(have) or '(none)'}. {DOWNLOAD_HINT}"
        )
    wanted = set(task_types or TASK_TYPES)
    games: list[Path] = []
    for traj in sorted(split_dir.rglob("traj_data.json")):
        folder = traj.parent
        game = folder / "game.tw-pddl"
        rel = str(folder.relative_to(split_dir))
        if "movable" in rel or "Sliced" in rel or not game.is_file():
            continue
        if _task_type_of(game) not in wanted:
            continue
        if require_solvable and _read_json(game).get("solvable") is not True:
            continue
        games.append(game)
    return games


def _task_type_of(game: Path) -> str:
    """The task folder's name up to its first '-' (``pick_and_place_simple``), else the
    ``task_type`` in ``traj_data.json``."""
    prefix = game.parent.parent.name.split("-", 1)[0]
    if prefix in TASK_TYPES:
        return prefix
    return str(_read_json(game.parent / "traj_data.json").get("task_type", "unknown"))


#: Engines (``PddlEnv`` + demangler) no environment is using, by whether they report the
#: planner's plan. Every ``PddlEnv`` loads its own copy of fast-downward's library (about 1 MB
#: resident, a 33 MB mapping), which TextWorld never unloads, and unloading it by hand crashes
#: the process once other threads have used it; so engines are reused instead (``load`` starts
#: a game from scratch): a process keeps as many as it ever had open at once, not one per game.
_IDLE_ENGINES: dict[bool, list[Any]] = {False: [], True: []}
_IDLE_LOCK = threading.Lock()


def _take_idle(planner: bool) -> Any | None:
    with _IDLE_LOCK:
        idle = _IDLE_ENGINES[planner]
        return idle.pop() if idle else None


def _put_idle(planner: bool, engine: Any) -> None:
    with _IDLE_LOCK:
        _IDLE_ENGINES[planner].append(engine)


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; an :class:`InputError` naming the file when it is not one
    (a truncated download, a git-lfs pointer)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cannot read {str(path)!r}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{str(path)!r} holds a JSON {type(data).__name__}, not an object")
    return data


@contextmanager
def _seeded_expert_random(module: Any, rng: random.Random) -> Iterator[None]:
    """Let ALFWorld's hand-coded expert draw from ``rng`` instead of the global RNG."""
    with _EXPERT_RANDOM_LOCK:
        saved = module.random
        module.random = rng
        try:
            yield
        finally:
            module.random = saved


def _load_game_data(game: Path) -> dict[str, Any]:
    data = _read_json(game)
    missing = [k for k in ("pddl_domain", "grammar", "pddl_problem") if k not in data]
    if missing:
        raise InputError(f"{str(game)!r} lacks the keys {missing} (see empg.envs.alfworld docs)")
    if "UNKNOWN GOAL" in data["grammar"]:
        traj = _read_json(game.parent / "traj_data.json")
        data["grammar"] = data["grammar"].replace("UNKNOWN GOAL", task_description(traj))
    return data


class AlfWorldEnv(TextEnv):
    """ALFWorld's text engine over a data folder (see the module docstring).

    Args:
        data_dir: folder holding ``json_2.1.1/`` (or the ``json_2.1.1`` folder itself).
        split: ``train``, ``valid_seen``, ``valid_unseen`` or any sub-folder name.
        task_types: keep only these task types (default: the six ALFWorld types).
        max_steps: episode step limit (ALFWorld's usual 50).
        expert: ``"handcoded"`` (default) or ``"planner"``.
        require_solvable: skip games not marked ``"solvable": true``.
        game_files: play exactly these ``game.tw-pddl`` files (in this order) instead of
            searching ``data_dir``/``split``.
    """

    name = "alfworld"

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        split: str = "train",
        *,
        task_types: Sequence[str] | None = None,
        max_steps: int = 50,
        expert: str = "handcoded",
        require_solvable: bool = True,
        game_files: Sequence[str | os.PathLike[str]] | None = None,
    ) -> None:
        super().__init__()
        self._alf = _import_alfworld()
        if data_dir is None and game_files is None:
            data_dir = default_data_dir()
        task_types = name_list(task_types)
        if expert not in EXPERTS:
            raise ConfigError(f"expert must be one of {EXPERTS}, got {expert!r}")
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigError(f"max_steps must be a positive int, got {max_steps!r}")
        unknown = sorted(set(task_types or ()) - set(TASK_TYPES))
        if unknown:
            raise ConfigError(f"unknown task_types {unknown}; valid: {', '.join(TASK_TYPES)}")
        self.data_dir = Path(data_dir).expanduser() if data_dir is not None else None
        self.split = split
        self.max_steps = max_steps
        self.expert = expert
        if game_files is not None:
            self.games = [Path(g).expanduser() for g in game_files]
            missing = [str(g) for g in self.games if not g.is_file()]
            if missing:
                raise InputError(f"game_files do not exist: {missing}")
            alone = [str(g) for g in self.games if not (g.parent / "traj_data.json").is_file()]
            if alone:  # the task and the expert's targets come from it
                raise InputError(f"game_files without a traj_data.json beside them: {alone}")
        else:
            assert self.data_dir is not None
            self.games = find_games(
                self.data_dir, split, task_types=task_types, require_solvable=require_solvable
            )
        if not self.games:
            where = str(_data_root(self.data_dir) / split) if self.data_dir else "game_files"
            raise InputError(
                f"no playable ALFWorld game in {where!r} "
                "(need <task>/<trial>/game.tw-pddl + traj_data.json, marked solvable); "
                + DOWNLOAD_HINT
            )
        tw = self._alf["textworld"]
        self._infos = tw.EnvInfos(
            won=True, admissible_commands=True, facts=True, policy_commands=expert == "planner"
        )
        self._engine: Any = None
        self._game: Path | None = None
        self._state: Any = None
        self._task = ""
        self._rng = random.Random(0)
        self._expert_agent: Any = None
        self._plan: list[str] = []

    # -- engine ---------------------------------------------------------------------------------
    def _load(self, game: Path) -> None:
        if self._game == game and self._engine is not None:
            return
        self.close()
        planner = self.expert == "planner"
        engine = _take_idle(planner)
        if engine is None:
            with ENGINE_LOCK:
                engine = self._alf["PddlEnv"](self._infos)
                engine = self._alf["AlfredDemangler"](shuffle=False)(engine)
        try:
            with ENGINE_LOCK:
                engine.load(_load_game_data(game))
        except BaseException as exc:
            _put_idle(planner, engine)  # load() starts from scratch: the engine is reusable
            if isinstance(exc, InputError) or not isinstance(exc, Exception):
                raise
            raise InputError(
                f"TextWorld's PDDL engine could not load {str(game)!r} "
                f"({type(exc).__name__}: {exc}). Check the problem against ALFWorld's domain; a "
                "goal that no action sequence reaches (e.g. a missing pickupable or canContain "
                "fact) also fails this way"
            ) from exc
        self._engine, self._game = engine, game

    def _update_expert(self, last_command: str | None) -> None:
        """Advance ALFWorld's hand-coded expert by one observation (like ``AlfredExpert``)."""
        state = self._state
        if self.expert == "planner":
            self._plan = [str(c) for c in (state.get("policy_commands") or [])]
            return
        self._plan = ["look"]
        try:
            with _seeded_expert_random(self._alf["handcoded_module"], self._rng):
                if last_command is None:
                    self._expert_agent.observe(state["feedback"])
                else:
                    nxt = self._expert_agent.act(state, 0, state["won"], last_command)
                    if nxt in state["admissible_commands"]:
                        self._plan = [str(nxt)]
        except Exception:  # the expert gave up (timeout/failed/odd input): fall back to "look"
            self._plan = ["look"]

    # -- contract -------------------------------------------------------------------------------
    def _reset(self, *, seed: int | None, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        index = (seed or 0) % len(self.games)
        self._load(self.games[index])
        self._rng = random.Random(seed or 0)
        with ENGINE_LOCK:
            self._state = self._engine.reset()
        feedback = str(self._state["feedback"])
        found = re.search(r"Your task is to:\s*(.*?)\s*$", feedback, flags=re.S)
        self._task = found.group(1).rstrip(".").strip() if found else ""
        if self.expert == "handcoded":
            self._expert_agent = self._alf["HandCodedTWAgent"](max_steps=200)
            self._expert_agent.reset(str(self._game))
        with ENGINE_LOCK:
            self._update_expert(None)
        return feedback.strip(), self._info()

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        command = action.strip()
        with ENGINE_LOCK:  # the expert reads the engine's state too
            self._state, _score, done = self._engine.step(command)
            self._update_expert(command)
        won = bool(self._state["won"])
        return (
            str(self._state["feedback"]).strip(),
            1.0 if won else 0.0,
            bool(done or won),
            self._info(),
        )

    def _info(self) -> dict[str, Any]:
        assert self._game is not None
        return {
            "won": bool(self._state["won"]),
            "task": self._task,
            "task_type": _task_type_of(self._game),
            "admissible_actions": [str(a) for a in self._state["admissible_commands"]],
            "gamefile": f"{self._game.parent.parent.name}/{self._game.parent.name}",
        }

    def expert_action(self) -> str:
        if self._state is None:
            raise RuntimeError("alfworld: call reset() before expert_action()")
        return self._plan[0] if self._plan else "look"

    def expert_thought(self) -> str:
        if self._state is None:
            return ""
        return f"To {self._task}, the next useful step is '{self.expert_action()}'."

    def close(self) -> None:
        self._needs_reset = True  # step() now raises ResetNeeded, not an AttributeError
        self._state = None
        if self._engine is not None:
            engine = self._engine
            try:
                engine.close()
            finally:
                self._engine = None
                self._game = None
                _put_idle(self.expert == "planner", engine)


def write_game(
    trial_dir: str | os.PathLike[str],
    pddl_problem: str,
    traj_data: dict[str, Any],
    *,
    task_desc: str | None = None,
    check_solvable: bool = True,
    max_expert_steps: int = 50,
    unchecked_solvable: bool = True,
) -> Path:
    """Write ``game.tw-pddl`` + ``traj_data.json`` for one trial, ready for :class:`AlfWorldEnv`.

    The domain and grammar are the ones shipped with ALFWorld; the task sentence is
    ``task_desc`` or ALFWorld's first template for ``traj_data``. With ``check_solvable`` the
    hand-coded expert plays the game (no perturbation) and its winning command list is stored
    as ``walkthrough``; ``solvable`` records whether it won within ``max_expert_steps`` (until
    then the file says ``solvable: false``). Without it ``solvable`` is ``unchecked_solvable``
    (a caller that checks the game another way passes False and rewrites it). Files are
    written whole (a temporary file renamed into place). Returns the ``game.tw-pddl`` path.
    """
    alf = _import_alfworld()
    for key in ("task_type", "pddl_params"):
        if key not in traj_data:
            raise InputError(f"traj_data lacks {key!r} (see empg.envs.alfworld docs)")
    folder = Path(trial_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open(alf["domain_path"], encoding="utf-8") as fh:
        domain = fh.read()
    with open(alf["grammar_path"], encoding="utf-8") as fh:
        grammar = fh.read().replace("UNKNOWN GOAL", task_desc or task_description(traj_data))
    write_json(folder / "traj_data.json", traj_data, indent=2, sort_keys=True)
    game = folder / "game.tw-pddl"
    data: dict[str, Any] = {
        "pddl_domain": domain,
        "grammar": grammar,
        "pddl_problem": pddl_problem,
        "solvable": False if check_solvable else bool(unchecked_solvable),
        "walkthrough": None,
    }
    write_json(game, data)
    if check_solvable:
        data["walkthrough"] = _expert_walkthrough(folder, max_expert_steps)
        data["solvable"] = data["walkthrough"] is not None
        write_json(game, data)
    return game


def write_json(path: str | os.PathLike[str], obj: Any, **dump_kwargs: Any) -> None:
    """``json.dumps(obj)`` written whole (:func:`empg.files.atomic_write_text`)."""
    atomic_write_text(path, json.dumps(obj, **dump_kwargs))


def _expert_walkthrough(folder: Path, max_steps: int) -> list[str] | None:
    """Play the game in ``folder`` with the hand-coded expert; its commands if it wins."""
    env = AlfWorldEnv(game_files=[folder / "game.tw-pddl"], max_steps=max_steps)
    try:
        env.reset(seed=0)
        commands: list[str] = []
        while True:
            cmd = env.expert_action()
            res = env.step(cmd)
            commands.append(cmd)
            if res.info["won"]:
                return commands
            if res.terminated or res.truncated:
                return None
    finally:
        env.close()
