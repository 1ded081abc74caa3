"""Adapter to the real TextWorld engine (``pip install 'empg[textworld]'``, textworld 1.7.0).

Two ways to get games::

    env = TextWorldEnv(game_path="games/tw-cooking-xyz.z8")   # a file, a folder, or a list
    env = TextWorldEnv(challenge="tw-cooking", settings={"recipe": 2, "take": 1, "go": 6})
    obs, info = env.reset(seed=7)                              # game generated with seed 7

Generated games come from TextWorld's own generator (its ``tw-make`` script, run in a child
process with ``PYTHONHASHSEED=0`` so a (challenge, settings, seed) triple always gives the same
game file) and are cached on disk under ``cache_dir`` (default ``~/.cache/empg/textworld``, or
``$EMPG_CACHE_DIR/textworld``, the root the default policies use too); generation takes a few
seconds, a cached game loads in milliseconds.

With ``game_path`` pointing to several games (a folder is searched for ``*.z8`` files, each
with its ``.json`` beside it; ``.json`` files alone and ALFWorld ``.tw-pddl`` games are refused),
``reset(seed=s)`` plays game ``s % n`` in sorted order; with one file every seed plays that
game.

Reward (``reward=``): ``"win"`` (default, the sparse 0/1 outcome EMPG trains on) gives 1.0 on
the step that wins the game and 0.0 otherwise; ``"score"`` gives TextWorld's score change on
each step (points for sub-goals; the sum over an episode is the final score).

``info``: ``won``, ``lost``, ``task`` (the game's objective), ``task_type`` (challenge name, or
``"custom"`` for files), ``admissible_actions`` (TextWorld's admissible commands), ``score``,
``max_score``, ``game`` (file name). ``expert_action()`` is the first command of TextWorld's
winning policy from the current state (``policy_commands``), so it recovers after detours.

Actions are made safe for the Z-machine before they reach it: non-ASCII characters are
dropped, control characters and newlines become spaces (one command per step) and the text is
cut to 190 characters; the game then answers with its usual parser message.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from empg.envs.core import TextEnv
from empg.errors import ConfigError, InputError

INSTALL_HINT = "TextWorldEnv needs TextWorld: pip install 'empg[textworld]' (textworld==1.7.0)"
CHALLENGES = ("tw-coin_collector", "tw-cooking", "tw-simple", "tw-treasure_hunter")
MAX_COMMAND_CHARS = 190  # Jericho truncates commands at 198 bytes (with a warning)
REWARD_MODES = ("win", "score")
# TextWorld is not thread-safe: its TatSu-based parsers (game logic, PDDL, text grammar) fail
# when two threads use them at once ("IndexError: pop from empty list"). Every call into a
# TextWorld engine (load, reset, step) from empg's adapters holds this lock; in a thread pool
# they run one at a time (they are GIL-bound anyway); use EnvPool(backend="process") to scale.
ENGINE_LOCK = threading.RLock()


def _import_textworld() -> Any:
    try:
        import textworld
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(f"{INSTALL_HINT} ({exc})") from exc
    return textworld


def default_cache_dir() -> Path:
    """Where generated games are cached: ``$EMPG_CACHE_DIR/textworld`` (the default policies'
    cache root; ``$EMPG_CACHE``, its earlier name, is still read) or ``~/.cache/empg/...``."""
    root = (
        os.environ.get("EMPG_CACHE_DIR")
        or os.environ.get("EMPG_CACHE")
        or os.path.join(Path.home(), ".cache", "empg")
    )
    return Path(root).expanduser() / "textworld"


def _settings_args(settings: dict[str, Any]) -> list[str]:
    """``{"recipe": 2, "open": True}`` -> ``["--open", "--recipe", "2"]`` (sorted, stable)."""
    args: list[str] = []
    for key in sorted(settings):
        value = settings[key]
        if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
            raise ConfigError(f"settings key {key!r} is not a tw-make option name")
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False or value is None:
            continue
        else:
            args += [flag, str(value)]
    return args


def _game_name(challenge: str, settings: dict[str, Any], seed: int) -> str:
    parts = [
        f"{k}{v}" if v is not True else k
        for k, v in sorted(settings.items())
        if v is not False and v is not None
    ]
    slug = re.sub(r"[^A-Za-z0-9_.+-]", "_", "+".join(parts)) or "default"
    return f"{challenge}-{slug}-seed{seed}"


def _tw_make_script() -> Path:
    here = Path(sys.executable).parent / "tw-make"
    if here.is_file():
        return here
    import shutil

    found = shutil.which("tw-make")
    if found is None:
        raise ImportError(f"{INSTALL_HINT}: the 'tw-make' script was not found")
    return Path(found)


def generate_game(
    challenge: str,
    seed: int,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    timeout: float = 300.0,
    **settings: Any,
) -> Path:
    """Generate (or fetch from the cache) the game for (challenge, settings, seed).

    Runs TextWorld's ``tw-make CHALLENGE --seed SEED ...`` with ``PYTHONHASHSEED=0`` so the
    same arguments give the same file. Returns the path of the ``.z8`` game (its ``.json``
    lies beside it). ``out_dir`` defaults to :func:`default_cache_dir`.
    """
    _import_textworld()
    if challenge not in CHALLENGES:
        raise ConfigError(
            f"unknown TextWorld challenge {challenge!r}; valid: {', '.join(CHALLENGES)}"
        )
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed must be a non-negative int, got {seed!r}")
    if seed >= 2**32:  # tw-make seeds numpy's generator
        raise InputError(f"seed must be below 2**32 for tw-make, got {seed}")
    from textworld import __version__ as tw_version

    # one folder per TextWorld version, also under an explicit out_dir: another version's
    # tw-make may write a different game under the same name
    root = Path(out_dir).expanduser() if out_dir is not None else default_cache_dir()
    out = root / f"tw-{tw_version}"
    out.mkdir(parents=True, exist_ok=True)
    name = _game_name(challenge, settings, seed)
    target = out / f"{name}.z8"
    if target.is_file() and target.with_suffix(".json").is_file():
        return target
    cmd = [sys.executable, str(_tw_make_script()), challenge, *_settings_args(settings)]
    cmd += ["--seed", str(seed), "--output", f"{name}.z8", "--silent", "-f"]
    env = dict(os.environ, PYTHONHASHSEED="0")
    # Generate in a private folder, then move the files in (the .z8 last: it marks completion).
    # The output path is relative so the file's recorded settings do not depend on the folder.
    with tempfile.TemporaryDirectory(dir=out, prefix=".gen-") as tmp:
        try:
            proc = subprocess.run(
                cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise ConfigError(
                f"tw-make took longer than {timeout} s for challenge={challenge!r}, "
                f"settings={settings!r}, seed={seed}; smaller settings, or a larger timeout"
            ) from exc
        made = Path(tmp) / f"{name}.z8"
        if proc.returncode != 0 or not made.is_file():
            tail = (proc.stderr or proc.stdout).strip()[-1500:]
            raise ConfigError(
                f"tw-make failed for challenge={challenge!r}, settings={settings!r}, seed={seed} "
                f"(exit {proc.returncode}):\n{tail}"
            )
        for suffix in (".ni", ".json", ".z8"):
            src = made.with_suffix(suffix)
            if src.is_file():
                os.replace(src, out / src.name)
    return target


def _find_games(game_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    paths = [game_path] if isinstance(game_path, (str, os.PathLike)) else list(game_path)
    games: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            games += sorted(p.glob("*.z8"))
        elif p.is_file():
            games.append(p)
        else:
            raise InputError(f"game_path {str(p)!r} does not exist")
    if not games:
        raise InputError(f"no TextWorld game (*.z8 with its .json) found in {game_path!r}")
    for g in games:
        if g.suffix == ".tw-pddl":
            raise InputError(
                f"{g} is an ALFWorld/PDDL game: play it with make('alfworld', game_files=[...]) "
                "(TextWorldEnv would give it no task, no score and mangled names)"
            )
        if g.suffix == ".json":  # TextWorld plays it without any text
            raise InputError(
                f"{g} is a game's description, not the game: pass its .z8 file, which the "
                ".json must lie beside"
            )
        if g.suffix != ".z8":
            raise InputError(f"{g} is not a TextWorld game file (*.z8 with its .json beside it)")
        if g.suffix == ".z8" and not g.with_suffix(".json").is_file():
            raise InputError(
                f"{g} has no {g.with_suffix('.json').name} beside it: TextWorld needs that file "
                "for the task, the admissible commands and the expert's plan"
            )
    return sorted(set(games))


#: Z-machine meta commands (restart, quit, save/restore, undo, transcripts): the interpreter
#: would carry them out without TextWorld's state tracking knowing (a restart keeps the old
#: score and plan), so they are answered here and never reach the game
META_VERBS = frozenset(
    {"restart", "quit", "q", "save", "restore", "undo", "script", "unscript", "transcript"}
)
META_REPLY = "That command is not available in this game."
#: TextWorld's own commands compiled into its games, for its framework, not for players: they
#: print the hidden state ("print_state"), add extra text to every later observation
#: ("tw-extra-infos ...", "enable print state option") or change the rules ("restrict
#: commands"), so they are answered like the meta verbs
_FRAMEWORK = re.compile(
    r"(?:^|[\s.,])tw-|print_state|print state option|restrict commands", re.IGNORECASE
)
#: Inform runs "a. b", "a, b" and "a then b" as two commands in one step, which the step's
#: bookkeeping (one action, one score change) does not describe
CHAIN_REPLY = "Please give one command at a time."
_CHAIN = re.compile(r"[.,]|\bthen\b", re.IGNORECASE)


def command_check(command: str) -> str | None:
    """The reply for a command that must not reach the interpreter, or None to play it: a meta
    verb anywhere in it (Inform also obeys "restart." and "look. restart") or one of
    TextWorld's framework commands, or several commands chained with ".", "," or "then" (one
    trailing full stop is allowed)."""
    words = re.findall(r"[a-z]+", command.lower())
    if any(w in META_VERBS for w in words) or _FRAMEWORK.search(" ".join(command.split())):
        return META_REPLY
    if _CHAIN.search(command.rstrip(" .")):
        return CHAIN_REPLY
    return None


_BANNER_LINE = re.compile(r"^[^A-Za-z]*$")


def clean_observation(text: str) -> str:
    """Drop the ASCII-art title banner that TextWorld games print at the start."""
    lines = text.strip("\n").split("\n")
    while lines and _BANNER_LINE.match(lines[0]):
        lines.pop(0)
    return "\n".join(lines).strip()


def sanitize_command(action: str) -> str:
    """Make any string safe to type into the Z-machine (see the module docstring)."""
    ascii_only = action.encode("ascii", "ignore").decode("ascii")
    spaced = re.sub(r"[\x00-\x1f\x7f]+", " ", ascii_only)
    return " ".join(spaced.split())[:MAX_COMMAND_CHARS]


@contextlib.contextmanager
def _quiet_jericho() -> Iterator[None]:
    """Hide Jericho's "unsupported game" warning: TextWorld computes admissible commands itself."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unable to find valid actions")
        yield


class TextWorldEnv(TextEnv):
    """A TextWorld game (file or generated) as a :class:`~empg.envs.core.TextEnv`.

    Args:
        game_path: a game file, a folder of games, or a list of files. Exclusive with
            ``challenge``.
        challenge: a TextWorld challenge to generate games from (``tw-cooking``,
            ``tw-simple``, ``tw-coin_collector``, ``tw-treasure_hunter``).
        settings: the challenge's ``tw-make`` options, e.g. ``{"recipe": 2, "go": 6}``
            (``True`` switches a flag on).
        level: shorthand for ``settings["level"]`` (coin collector, treasure hunter).
        seed: the game seed used when ``reset`` gets no seed (generator mode).
        cache_dir: where generated games are kept (default :func:`default_cache_dir`).
        max_steps: episode step limit (truncation).
        reward: ``"win"`` (1.0 on winning) or ``"score"`` (score change per step).
    """

    name = "textworld"

    def __init__(
        self,
        game_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        *,
        challenge: str | None = None,
        settings: dict[str, Any] | None = None,
        level: int | None = None,
        seed: int = 0,
        cache_dir: str | os.PathLike[str] | None = None,
        max_steps: int = 50,
        reward: str = "win",
    ) -> None:
        super().__init__()
        self._tw = _import_textworld()
        if (game_path is None) == (challenge is None):
            raise ConfigError(
                "TextWorldEnv needs exactly one of game_path=... (play files) or "
                "challenge=... (generate games), e.g. TextWorldEnv(challenge='tw-cooking')"
            )
        if reward not in REWARD_MODES:
            raise ConfigError(f"reward must be one of {REWARD_MODES}, got {reward!r}")
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigError(f"max_steps must be a positive int, got {max_steps!r}")
        self.max_steps = max_steps
        self.reward_mode = reward
        self.settings = dict(settings or {})
        if level is not None:
            self.settings["level"] = level
        self.challenge = challenge
        self.default_seed = seed
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._games = _find_games(game_path) if game_path is not None else []
        if challenge is not None and challenge not in CHALLENGES:
            raise ConfigError(
                f"unknown TextWorld challenge {challenge!r}; valid: {', '.join(CHALLENGES)}"
            )
        self.task_type = challenge or "custom"
        self._infos = self._tw.EnvInfos(
            admissible_commands=True,
            policy_commands=True,
            objective=True,
            won=True,
            lost=True,
            score=True,
            max_score=True,
        )
        self._engine: Any = None
        self._loaded: Path | None = None
        self._state: Any = None
        self._score = 0

    # -- games ----------------------------------------------------------------------------------
    def game_for_seed(self, seed: int | None) -> Path:
        """The game file that ``reset(seed=seed)`` plays (generated if needed)."""
        if self.challenge is None:
            return self._games[(seed or 0) % len(self._games)]
        s = self.default_seed if seed is None else seed
        return generate_game(self.challenge, s, self.cache_dir, **self.settings)

    def _load(self, path: Path) -> None:
        if self._loaded == path and self._engine is not None:
            return
        self.close()
        with ENGINE_LOCK, _quiet_jericho():
            self._engine = self._tw.start(str(path), request_infos=self._infos)
        self._loaded = path

    # -- contract -------------------------------------------------------------------------------
    def _reset(self, *, seed: int | None, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self._load(self.game_for_seed(seed))
        with ENGINE_LOCK, _quiet_jericho():
            self._state = self._engine.reset()
        self._score = int(self._state.get("score") or 0)
        return clean_observation(self._state.feedback), self._info()

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        command = sanitize_command(action)
        refused = command_check(command)
        if refused is not None:  # the interpreter would act on it behind TextWorld's back
            return refused, 0.0, False, self._info()
        with ENGINE_LOCK, _quiet_jericho():
            state, _score, done = self._engine.step(command)
        self._state = state
        score = int(state.get("score") or 0)
        won = bool(state.get("won"))
        # "win": the sparse 0/1 outcome; "score": TextWorld's points gained this step
        reward = float(won) if self.reward_mode == "win" else float(score - self._score)
        self._score = score
        terminated = bool(done) or won or bool(state.get("lost"))
        return clean_observation(state.feedback), reward, terminated, self._info()

    def _info(self) -> dict[str, Any]:
        s = self._state
        return {
            "won": bool(s.get("won")),
            "lost": bool(s.get("lost")),
            "task": str(s.get("objective") or ""),
            "task_type": self.task_type,
            "admissible_actions": [str(a) for a in (s.get("admissible_commands") or [])],
            "score": int(s.get("score") or 0),
            "max_score": int(s.get("max_score") or 0),
            "game": self._loaded.name if self._loaded else "",
        }

    def expert_action(self) -> str:
        """First command of TextWorld's winning policy from the current state."""
        if self._state is None:
            raise RuntimeError("textworld: call reset() before expert_action()")
        plan = self._state.get("policy_commands") or []
        if plan:
            return str(plan[0])
        adm = self._state.get("admissible_commands") or []
        return "look" if "look" in adm or not adm else str(adm[0])

    def expert_thought(self) -> str:
        if self._state is None:
            return ""
        plan = [str(c) for c in (self._state.get("policy_commands") or [])]
        if not plan:
            return "No winning plan is known from here; look around."
        rest = f", then {len(plan) - 1} more step(s)" if len(plan) > 1 else ""
        return f"The shortest plan to finish the task starts with '{plan[0]}'{rest}."

    def close(self) -> None:
        self._needs_reset = True  # step() now raises ResetNeeded, not an AttributeError
        self._state = None
        if self._engine is not None:
            try:
                self._engine.close()
            finally:
                self._engine = None
                self._loaded = None
