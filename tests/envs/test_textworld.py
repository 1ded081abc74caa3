"""TextWorldEnv on real TextWorld games generated offline (needs empg[textworld])."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip(
    "textworld", reason="TextWorld adapter tests need: pip install 'empg[textworld]'"
)

from empg.envs import ResetNeeded, check_env, make
from empg.envs.textworld import (
    CHAIN_REPLY,
    META_REPLY,
    TextWorldEnv,
    clean_observation,
    command_check,
    generate_game,
    sanitize_command,
)
from empg.errors import ConfigError, InputError

COOKING = {"recipe": 1, "take": 1, "go": 1}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Games for seeds 0 and 1, generated once for the module (about 5 s each)."""
    d = tmp_path_factory.mktemp("twcache")
    for seed in (0, 1):
        generate_game("tw-cooking", seed, d, **COOKING)
    return d


def _games(cache) -> Path:
    """Where generate_game puts games under ``cache``: one folder per TextWorld version."""
    from textworld import __version__

    return cache / f"tw-{__version__}"


def _env(cache, **kw) -> TextWorldEnv:
    return TextWorldEnv(challenge="tw-cooking", settings=COOKING, cache_dir=cache, **kw)


def _play_expert(env: TextWorldEnv, seed: int):
    _obs, info = env.reset(seed=seed)
    rewards, actions = [], []
    while True:
        a = env.expert_action()
        assert a in info["admissible_actions"], (a, info["admissible_actions"])
        res = env.step(a)
        actions.append(a)
        rewards.append(res.reward)
        info = res.info
        if res.terminated or res.truncated:
            return res, rewards, actions


def test_generation_is_reproducible_and_cached(cache, tmp_path):
    game = generate_game("tw-cooking", 0, cache, **COOKING)
    assert game == _games(cache) / "tw-cooking-go1+recipe1+take1-seed0.z8"
    mtime = game.stat().st_mtime_ns
    assert generate_game("tw-cooking", 0, cache, **COOKING).stat().st_mtime_ns == mtime
    again = generate_game("tw-cooking", 0, tmp_path, **COOKING)  # fresh generation elsewhere
    assert again.read_bytes() == game.read_bytes()
    assert again.with_suffix(".json").read_bytes() == game.with_suffix(".json").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".gen-")]


def test_expert_wins_every_seed_with_win_reward(cache):
    env = _env(cache)
    for seed in (0, 1):
        res, rewards, _ = _play_expert(env, seed)
        assert res.terminated and not res.truncated and res.info["won"] is True
        assert rewards[-1] == 1.0 and sum(rewards) == 1.0
        assert res.info["task_type"] == "tw-cooking"
        assert res.info["game"] == f"tw-cooking-go1+recipe1+take1-seed{seed}.z8"


def test_score_reward_sums_to_max_score(cache):
    env = _env(cache, reward="score")
    res, rewards, _ = _play_expert(env, 0)
    assert res.info["won"] is True
    assert sum(rewards) == res.info["max_score"] == res.info["score"] > 0
    assert all(r in (0.0, 1.0) for r in rewards)


def test_reset_info_and_observation(cache):
    env = _env(cache)
    obs, info = env.reset(seed=0)
    assert obs.startswith("You are hungry!")  # the title banner is stripped
    assert "-= Kitchen =-" in obs
    assert info["won"] is False and info["lost"] is False
    assert info["task"].startswith("You are hungry!")
    assert info["admissible_actions"] and "look" in info["admissible_actions"]
    assert info["admissible_actions"] == sorted(info["admissible_actions"])
    assert info["score"] == 0 and info["max_score"] >= 1
    assert env.expert_action() in info["admissible_actions"]
    assert env.expert_thought().startswith("The shortest plan to finish the task starts with")


def test_expert_recovers_after_a_detour(cache):
    env = _env(cache)
    env.reset(seed=1)
    env.step("inventory")
    env.step("examine cookbook")
    res, rewards, _ = _play_expert_from_here(env)
    assert res.info["won"] is True and sum(rewards) == 1.0


def _play_expert_from_here(env):
    rewards = []
    while True:
        res = env.step(env.expert_action())
        rewards.append(res.reward)
        if res.terminated or res.truncated:
            return res, rewards, None


def test_seeds_give_different_games_and_same_seed_same_game(cache):
    env = _env(cache)
    a0 = env.reset(seed=0)
    a1 = env.reset(seed=1)
    b0 = env.reset(seed=0)
    assert a0 == b0 and a0[0] != a1[0]


def test_check_env_passes(cache):
    check_env(_env(cache, max_steps=20))


def test_invalid_and_hostile_actions(cache):
    env = _env(cache)
    env.reset(seed=0)
    assert env.step("").observation == "I beg your pardon?"
    assert env.step("dance wildly").observation == "That's not a verb I recognise."
    res = env.step("\udcff\x00 look")  # would crash the Z-machine's encoder unsanitised
    assert "-= Kitchen =-" in res.observation


def test_truncation_at_max_steps(cache):
    env = _env(cache, max_steps=2)
    env.reset(seed=0)
    assert not env.step("look").truncated
    res = env.step("look")
    assert res.truncated and not res.terminated


def test_game_path_folder_and_registry(cache, tmp_path):
    folder = tmp_path / "games"
    folder.mkdir()
    for seed in (0, 1):
        for suffix in (".z8", ".json"):
            name = f"tw-cooking-go1+recipe1+take1-seed{seed}{suffix}"
            shutil.copy(_games(cache) / name, folder / name)
    env = make("textworld", game_path=str(folder))
    _obs0, info0 = env.reset(seed=0)
    assert info0["task_type"] == "custom" and info0["game"].endswith("seed0.z8")
    assert env.reset(seed=1)[1]["game"].endswith("seed1.z8")
    assert env.reset(seed=2)[1]["game"].endswith("seed0.z8")  # wraps around
    single = TextWorldEnv(game_path=folder / "tw-cooking-go1+recipe1+take1-seed1.z8")
    assert single.reset(seed=5)[1]["game"].endswith("seed1.z8")
    env.close()
    env.close()  # twice is fine
    with pytest.raises(ResetNeeded):  # a closed environment needs a reset, not a traceback
        env.step("look")
    # a game's .json alone plays without any text; any other file is no game either
    with pytest.raises(InputError, match=r"pass its \.z8 file"):
        TextWorldEnv(game_path=folder / "tw-cooking-go1+recipe1+take1-seed0.json")
    (folder / "README.json").write_text("{}")  # not taken for a game in a folder
    assert len(TextWorldEnv(game_path=folder)._games) == 2
    (folder / "notes.txt").write_text("")
    with pytest.raises(InputError, match="not a TextWorld game file"):
        TextWorldEnv(game_path=folder / "notes.txt")
    # a .z8 without its .json, or an ALFWorld game, is refused with what to do instead
    (folder / "tw-cooking-go1+recipe1+take1-seed1.json").unlink()
    with pytest.raises(InputError, match=r"no .*seed1\.json beside it"):
        TextWorldEnv(game_path=folder)
    pddl = tmp_path / "game.tw-pddl"
    pddl.write_text("{}")
    with pytest.raises(InputError, match="make\\('alfworld'"):
        TextWorldEnv(game_path=pddl)


def test_meta_commands_never_reach_the_interpreter(cache):
    """restart/quit/undo would change the game behind TextWorld's tracking (a restart kept the
    old score and plan); they are answered without touching the game."""
    env = _env(cache)
    env.reset(seed=0)
    first = env.expert_action()
    env.step(first)
    before = env.step(env.expert_action()).info
    metas = ("restart", "RESTART", "quit", "q", "undo", "save game", "restore")
    # Inform also obeys a meta verb with a full stop, or after another command
    bypasses = ("restart.", "look. restart", "look then restart", "save.", "look. script")
    for meta in (*metas, *bypasses):
        res = env.step(meta)
        assert res.observation == "That command is not available in this game.", meta
        assert res.info == before and res.reward == 0.0 and not res.terminated
    res = env.step("look. inventory")  # two moves in one step: refused
    assert res.observation == "Please give one command at a time."
    assert res.info == before
    # TextWorld's framework commands would show the hidden state or change later observations
    for framework in ("print_state", "enable print state option", "tw-extra-infos description"):
        res = env.step(framework)
        assert res.observation == META_REPLY and res.info == before, framework
    assert "-=STATE START=-" not in env.step("look").observation
    res = env.step(env.expert_action() + ".")  # one trailing full stop is one command
    assert res.observation not in (META_REPLY, CHAIN_REPLY) and res.info != before
    while not (res.terminated or res.truncated):  # the expert still wins from where it was
        res = env.step(env.expert_action())
    assert res.info["won"]


@pytest.mark.parametrize(
    "command, reply",
    [
        ("take apple", None),
        ("take apple.", None),
        ("take apple . ", None),
        ("go north", None),
        ("take q-tip", META_REPLY),  # a meta verb as a word anywhere is refused
        ("RESTART", META_REPLY),
        ("look, restart", META_REPLY),
        ("take apple. go north", CHAIN_REPLY),
        ("take apple then go north", CHAIN_REPLY),
        ("take apple..", None),
        ("prepare meal, eat meal", CHAIN_REPLY),  # Inform ran both
        ("print_state", META_REPLY),  # TextWorld's framework commands
        ("enable  print state option", META_REPLY),
        ("tw-extra-infos description", META_REPLY),
        ("TW-PRINT max_score", META_REPLY),
        ("look.tw-print version", META_REPLY),
        ("restrict commands", META_REPLY),
        ("examine tw-shaped key", META_REPLY),  # no TextWorld object name starts with tw-
        ("examine two-way key", None),
    ],
)
def test_command_check(command, reply):
    assert command_check(command) == reply


def test_configuration_errors(cache, tmp_path):
    with pytest.raises(ConfigError, match="exactly one of game_path"):
        TextWorldEnv()
    with pytest.raises(ConfigError, match="exactly one of game_path"):
        TextWorldEnv(game_path="x.z8", challenge="tw-cooking")
    with pytest.raises(ConfigError, match="unknown TextWorld challenge 'tw-cookin'"):
        TextWorldEnv(challenge="tw-cookin")
    with pytest.raises(ConfigError, match="reward must be one of"):
        _env(cache, reward="dense")
    with pytest.raises(InputError, match="does not exist"):
        TextWorldEnv(game_path=tmp_path / "missing.z8")
    with pytest.raises(InputError, match="no TextWorld game"):
        TextWorldEnv(game_path=tmp_path)
    with pytest.raises(ConfigError, match="tw-make failed"):
        generate_game("tw-cooking", 0, tmp_path, go=5)  # go must be 1, 6, 9 or 12
    with pytest.raises(ConfigError, match=r"tw-make took longer than 0\.05 s"):
        generate_game("tw-cooking", 7, tmp_path, timeout=0.05, **COOKING)
    with pytest.raises(InputError, match="seed must be a non-negative int"):
        generate_game("tw-cooking", -1, tmp_path)
    with pytest.raises(InputError, match=r"seed must be below 2\*\*32"):
        generate_game("tw-cooking", 2**32, tmp_path)


def test_sanitize_and_clean_helpers():
    assert sanitize_command("  take\tapple\n\nnow ") == "take apple now"
    assert sanitize_command("\udcff\x00\u202e\U0001f600 go") == "go"
    assert sanitize_command("x" * 500) == "x" * 190
    assert clean_observation("\n  ___ \n |$$|\n\nHello\nWorld  \n") == "Hello\nWorld"


def test_default_cache_dir_respects_env(monkeypatch, tmp_path):
    from empg.envs.textworld import default_cache_dir

    monkeypatch.delenv("EMPG_CACHE_DIR", raising=False)
    monkeypatch.setenv("EMPG_CACHE", str(tmp_path))  # the earlier name
    assert default_cache_dir() == tmp_path / "textworld"
    monkeypatch.setenv("EMPG_CACHE_DIR", str(tmp_path / "root"))  # the policies' root wins
    assert default_cache_dir() == tmp_path / "root" / "textworld"
    monkeypatch.delenv("EMPG_CACHE_DIR")
    monkeypatch.delenv("EMPG_CACHE")
    assert str(default_cache_dir()) == os.path.join(
        os.path.expanduser("~"), ".cache", "empg", "textworld"
    )


def test_thread_pool_of_real_engines_matches_single_env(cache):
    """TextWorld's parsers are not thread-safe; the adapter serialises engine calls."""
    from empg.envs.pool import EnvPool

    single = _env(cache)
    expected = [_play_expert(single, s)[2] for s in (0, 1)]
    kw = {"challenge": "tw-cooking", "settings": COOKING, "cache_dir": str(cache)}
    with EnvPool.from_name("textworld", 4, **kw) as pool:
        first = pool.reset_all(seeds=[0, 1, 0, 1])
        assert [r.info.get("error") for r in first] == [None] * 4
        plans = [expected[i % 2] for i in range(4)]
        t = 0
        while not pool.all_done:
            out = pool.step([None if d else plans[i][t] for i, d in enumerate(pool.done)])
            t += 1
            for r in out:
                if r is not None and r.terminated:
                    assert r.info["won"] is True and "error" not in r.info
        assert pool.stats.errors == 0
        assert pool.stats.steps == 2 * (len(expected[0]) + len(expected[1]))
