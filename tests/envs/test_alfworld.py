"""AlfWorldEnv on the real ALFWorld engine with a hand-made game (needs empg[alfworld])."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("alfworld", reason="ALFWorld adapter tests need: pip install 'empg[alfworld]'")

from empg.envs import check_env, make
from empg.envs.alfworld import AlfWorldEnv, find_games, task_description, write_game
from empg.errors import ConfigError, InputError

DATA = Path(__file__).parent / "data" / "alfworld_tiny"
PROBLEM = (DATA / "initial_state.pddl").read_text()
TRAJ = json.loads((DATA / "traj_data.json").read_text())
TASK_DIR = "pick_and_place_simple-Apple-None-DiningTable-1"
EXPERT_WALKTHROUGH = [
    "look",
    "go to diningtable 1",
    "go to countertop 1",
    "go to cabinet 1",
    "open cabinet 1",
    "take apple 1 from cabinet 1",
    "close cabinet 1",
    "go to diningtable 1",
    "move apple 1 to diningtable 1",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """json_2.1.1/train with: 2 solvable trials, 1 unsolvable, 1 'movable' (skipped)."""
    root = tmp_path_factory.mktemp("alfworld")
    train = root / "json_2.1.1" / "train"
    write_game(train / TASK_DIR / "trial_T0001", PROBLEM, TRAJ)
    write_game(train / TASK_DIR / "trial_T0002", PROBLEM, TRAJ)
    # traj_data names the wrong target: the expert puts the apple on the countertop, never
    # wins, and the game is marked unsolvable
    wrong = {**TRAJ, "pddl_params": {**TRAJ["pddl_params"], "parent_target": "CounterTop"}}
    trial3 = train / "pick_and_place_simple-Apple-None-DiningTable-9" / "trial_T0003"
    write_game(trial3, PROBLEM, wrong, task_desc="put a apple in diningtable")
    shutil.copytree(
        train / TASK_DIR, train / "pick_and_place_with_movable_recep-Apple-Bowl-DiningTable-1"
    )
    return root


def test_write_game_records_the_expert_walkthrough(data_dir):
    game = data_dir / "json_2.1.1" / "train" / TASK_DIR / "trial_T0001" / "game.tw-pddl"
    data = json.loads(game.read_text())
    assert sorted(data) == ["grammar", "pddl_domain", "pddl_problem", "solvable", "walkthrough"]
    assert data["solvable"] is True
    assert data["walkthrough"] == EXPERT_WALKTHROUGH
    assert "UNKNOWN GOAL" not in data["grammar"]
    assert "Your task is to: put a apple in diningtable." in data["grammar"]
    assert json.loads((game.parent / "traj_data.json").read_text()) == TRAJ
    unsolvable = next((data_dir / "json_2.1.1" / "train").glob("*-9/trial_T0003/game.tw-pddl"))
    bad = json.loads(unsolvable.read_text())
    assert bad["solvable"] is False and bad["walkthrough"] is None


def test_reset_observation_and_info(data_dir):
    env = AlfWorldEnv(data_dir, "train")
    obs, info = env.reset(seed=0)
    assert obs == (
        "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. Looking quickly "
        "around you, you see a cabinet 1, a countertop 1, and a diningtable 1.\n\n"
        "Your task is to: put a apple in diningtable."
    )
    assert info == {
        "won": False,
        "task": "put a apple in diningtable",
        "task_type": "pick_and_place_simple",
        "admissible_actions": [
            "go to cabinet 1",
            "go to countertop 1",
            "go to diningtable 1",
            "help",
            "inventory",
            "look",
        ],
        "gamefile": f"{TASK_DIR}/trial_T0001",
    }


def test_handcoded_expert_solves_the_game(data_dir):
    env = make("alfworld", data_dir=str(data_dir), split="train")
    _, info = env.reset(seed=0)
    played, rewards = [], []
    while True:
        action = env.expert_action()
        assert action in info["admissible_actions"]
        res = env.step(action)
        played.append(action)
        rewards.append(res.reward)
        info = res.info
        if res.terminated or res.truncated:
            break
    assert res.terminated and not res.truncated and info["won"] is True
    assert played == EXPERT_WALKTHROUGH
    assert rewards == [0.0] * 8 + [1.0]
    assert res.observation == "You move the apple 1 to the diningtable 1."


def test_planner_expert_solves_the_game_optimally(data_dir):
    env = AlfWorldEnv(data_dir, "train", expert="planner")
    env.reset(seed=0)
    played = []
    while True:
        played.append(env.expert_action())
        res = env.step(played[-1])
        if res.terminated or res.truncated:
            break
    assert res.info["won"] is True
    assert played == [
        "go to cabinet 1",
        "open cabinet 1",
        "take apple 1 from cabinet 1",
        "go to diningtable 1",
        "move apple 1 to diningtable 1",
    ]


def test_check_env_passes(data_dir):
    check_env(AlfWorldEnv(data_dir, "train", max_steps=15))


def test_invalid_action_and_truncation(data_dir):
    env = AlfWorldEnv(data_dir, "train", max_steps=2)
    env.reset(seed=0)
    res = env.step("fly to the moon")
    assert res.observation == "Nothing happens." and res.reward == 0.0 and not res.terminated
    res = env.step("go to cabinet 1")
    assert res.observation == "You arrive at cabinet 1. The cabinet 1 is closed."
    assert res.truncated and not res.terminated


def test_game_selection_and_filters(data_dir):
    games = find_games(data_dir, "train")
    assert [g.parent.name for g in games] == ["trial_T0001", "trial_T0002"]
    everything = find_games(data_dir, "train", require_solvable=False)
    assert [g.parent.name for g in everything] == ["trial_T0001", "trial_T0002", "trial_T0003"]
    env = AlfWorldEnv(data_dir / "json_2.1.1", "train")  # the json_2.1.1 folder itself works
    assert env.reset(seed=1)[1]["gamefile"] == f"{TASK_DIR}/trial_T0002"
    assert env.reset(seed=2)[1]["gamefile"] == f"{TASK_DIR}/trial_T0001"  # wraps around
    assert env.reset()[1]["gamefile"] == f"{TASK_DIR}/trial_T0001"
    with pytest.raises(InputError, match="no playable ALFWorld game"):
        AlfWorldEnv(data_dir, "train", task_types=["look_at_obj_in_light"])
    with pytest.raises(ConfigError, match="unknown task_types"):
        AlfWorldEnv(data_dir, "train", task_types=["pick_and_fly"])
    with pytest.raises(InputError, match=r"splits found under .*: train"):
        AlfWorldEnv(data_dir, "valid_seen")
    with pytest.raises(ConfigError, match="expert must be one of"):
        AlfWorldEnv(data_dir, "train", expert="oracle")


def test_unfilled_grammar_gets_the_templated_task(data_dir, tmp_path):
    """A game file that still says UNKNOWN GOAL is completed from traj_data.json."""
    src = data_dir / "json_2.1.1" / "train" / TASK_DIR / "trial_T0001"
    trial = tmp_path / "train" / TASK_DIR / "trial_T0001"
    shutil.copytree(src, trial)
    game = trial / "game.tw-pddl"
    data = json.loads(game.read_text())
    from alfworld.info import ALFRED_TWL2_PATH

    data["grammar"] = Path(ALFRED_TWL2_PATH).read_text()
    game.write_text(json.dumps(data))
    env = AlfWorldEnv(tmp_path, "train")
    assert env.reset(seed=0)[1]["task"] == "put a apple in diningtable"
    assert task_description(TRAJ) == "put a apple in diningtable"


def test_game_files_argument_and_missing_keys(data_dir, tmp_path):
    game = data_dir / "json_2.1.1" / "train" / TASK_DIR / "trial_T0002" / "game.tw-pddl"
    env = AlfWorldEnv(game_files=[game])
    assert env.reset(seed=3)[1]["gamefile"] == f"{TASK_DIR}/trial_T0002"
    broken = tmp_path / "x" / "t" / "game.tw-pddl"
    broken.parent.mkdir(parents=True)
    broken.write_text(json.dumps({"pddl_problem": PROBLEM}))
    (broken.parent / "traj_data.json").write_text(json.dumps(TRAJ))
    with pytest.raises(InputError, match="lacks the keys"):
        AlfWorldEnv(game_files=[broken]).reset(seed=0)
    unreachable = PROBLEM.replace(
        "(pickupable Apple_bar__minus_01_dot_50", "(isHot Apple_bar__minus_01_dot_50"
    )
    with pytest.raises(InputError, match="could not load"):
        write_game(tmp_path / "z" / "t", unreachable, TRAJ)
    with pytest.raises(InputError, match="traj_data lacks 'pddl_params'"):
        write_game(tmp_path / "y", PROBLEM, {"task_type": "pick_and_place_simple"})


def test_thread_pool_of_real_engines_all_win(data_dir):
    """TextWorld's parsers are not thread-safe; the adapter serialises engine calls."""
    from empg.envs.pool import EnvPool

    with EnvPool.from_name("alfworld", 4, data_dir=str(data_dir), split="train") as pool:
        first = pool.reset_all(seeds=[0, 1, 0, 1])
        assert [r.info.get("error") for r in first] == [None] * 4
        for move in EXPERT_WALKTHROUGH:
            out = pool.step([move] * 4)
        assert all(r.info["won"] and r.terminated and "error" not in r.info for r in out)
        assert pool.stats.steps == 4 * len(EXPERT_WALKTHROUGH) and pool.stats.errors == 0


def _planner_copies() -> int:
    """Mappings of fast-downward's library in this process (each PddlEnv loads a copy)."""
    return sum("libdownward" in line for line in Path("/proc/self/maps").read_text().splitlines())


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_changing_games_does_not_load_a_planner_copy_per_game(data_dir):
    """Each TextWorld PddlEnv loads its own copy of fast-downward's library and never unloads
    it: a new engine per game grew a process by about 1 MB a game."""
    env = AlfWorldEnv(data_dir, "train")
    env.reset(seed=0)
    one = _planner_copies()
    for seed in range(1, 11):  # two games, alternating: a new engine every reset
        env.reset(seed=seed)
    assert _planner_copies() <= one
    res = None
    for _ in range(len(EXPERT_WALKTHROUGH)):  # the game still plays to its win
        res = env.step(env.expert_action())
        if res.terminated:
            break
    assert res is not None and res.info["won"]
    env.close()
    again = AlfWorldEnv(data_dir, "train")  # takes up the closed environment's engine
    for seed in range(4):
        again.reset(seed=seed)
    assert _planner_copies() <= one
    again.close()


def test_task_types_as_one_string_or_a_generator(data_dir):
    one = AlfWorldEnv(data_dir, "train", task_types="pick_and_place_simple")
    assert len(one.games) == 2
    gen = AlfWorldEnv(data_dir, "train", task_types=(t for t in ["pick_and_place_simple"]))
    assert gen.games == one.games


def test_missing_or_damaged_data_is_named(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path / "nowhere"))
    for _ in range(2):  # the same answer every time (importing alfworld sets the variable)
        with pytest.raises(InputError, match="alfworld-download"):
            AlfWorldEnv(split="train")
    src = data_dir / "json_2.1.1" / "train" / TASK_DIR / "trial_T0001"
    trial = tmp_path / "d" / "train" / TASK_DIR / "trial_T0001"
    shutil.copytree(src, trial)
    (trial / "game.tw-pddl").write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(InputError, match=r"cannot read .*game\.tw-pddl"):
        AlfWorldEnv(tmp_path / "d", "train")
    (trial / "traj_data.json").unlink()
    with pytest.raises(InputError, match=r"without a traj_data\.json beside them"):
        AlfWorldEnv(game_files=[trial / "game.tw-pddl"])
