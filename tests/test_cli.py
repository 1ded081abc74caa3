"""The `empg` CLI: `envs` listing and interactive `play` (fake stdin and a real subprocess)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from empg import cli
from empg.envs import TextEnv, names, register


class DoorEnv(TextEnv):
    """Open the door, then go through it."""

    name = "test-door"

    def __init__(self, max_steps: int = 10) -> None:
        super().__init__()
        self.max_steps = max_steps
        self.open = False
        self.won = False

    def _info(self) -> dict[str, Any]:
        acts = ["go through door", "look"] if self.open else ["look", "open door"]
        return {
            "won": self.won,
            "task": "leave the room",
            "task_type": "door",
            "admissible_actions": acts,
        }

    def _reset(self, *, seed, options):
        self.open = self.won = False
        return f"A closed door (seed {seed}).", self._info()

    def _step(self, action):
        if action == "open door":
            self.open = True
            return "The door opens.", 0.0, False, self._info()
        if action == "go through door" and self.open:
            self.won = True
            return "You are outside.", 1.0, True, self._info()
        return "Nothing happens.", 0.0, False, self._info()

    def expert_action(self) -> str:
        return "go through door" if self.open else "open door"

    def expert_thought(self) -> str:
        return "The door must be open first." if not self.open else "Leave now."


register("_test_cli_door", DoorEnv, overwrite=True)


def _run(monkeypatch, capsys, argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_envs_lists_every_registered_env(monkeypatch, capsys):
    code, out, _ = _run(monkeypatch, capsys, ["envs"])
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == ["name", "available", "description"]
    listed = [line.split()[0] for line in lines[1:]]
    assert listed == names()
    tw = next(line for line in lines if line.startswith("textworld "))
    assert "real TextWorld games" in tw
    door = next(line for line in lines if line.startswith("_test_cli_door"))
    assert door.split()[1] == "yes" and door.endswith("Open the door, then go through it.")


def test_envs_says_what_a_builtin_environment_lacks(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bm25s" else real(name, *a)
    )
    _, out, _ = _run(monkeypatch, capsys, ["envs"])
    rows = {line.split()[0]: line.split()[1:4] for line in out.strip().splitlines()[1:]}
    assert rows["shop"][:3] == rows["search"][:3] == ["no", "(missing", "bm25s)"]
    assert rows["household"][0] == "yes"


def test_envs_says_when_alfworld_has_no_games_here(monkeypatch, capsys, tmp_path):
    pytest.importorskip("alfworld")
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))
    _, out, _ = _run(monkeypatch, capsys, ["envs"])
    row = next(line for line in out.splitlines() if line.startswith("alfworld "))
    assert "yes (no games: alfworld-download)" in row
    (tmp_path / "json_2.1.1").mkdir()
    _, out, _ = _run(monkeypatch, capsys, ["envs"])
    row = next(line for line in out.splitlines() if line.startswith("alfworld "))
    assert row.split()[1] == "yes" and "no games" not in row


def test_a_missing_extra_is_a_one_line_error(monkeypatch, capsys):
    def needs_safetensors(_args):
        raise ModuleNotFoundError("No module named 'safetensors'", name="safetensors")

    monkeypatch.setitem(
        cli.COMMANDS, "plot", cli.Command("plot", cli._configure_plot, needs_safetensors)
    )
    code, _, err = _run(monkeypatch, capsys, ["plot", "x"])
    assert code == 1 and err.startswith("empg plot: error: this needs the Python package")
    assert "pip install 'empg[train]'" in err and len(err.strip().splitlines()) == 1


def test_envs_names_only(monkeypatch, capsys):
    code, out, _ = _run(monkeypatch, capsys, ["envs", "--names"])
    assert code == 0 and out.split() == names()


def test_play_numbers_text_expert_and_win(monkeypatch, capsys):
    code, out, _ = _run(
        monkeypatch,
        capsys,
        ["play", "_test_cli_door", "--seed", "4"],
        ":expert\n2\nlook\n:help\n1\n",
    )
    assert code == 0
    assert "A closed door (seed 4)." in out
    assert "[task] leave the room" in out
    assert "[actions] 1) look  2) open door" in out
    assert "[expert] open door" in out and "[expert thinks] The door must be open first." in out
    assert "[you] open door   (reward 0, return 0)" in out  # "2" picked the 2nd action
    assert "[you] look   (reward 0, return 0)" in out  # typed text is sent as is
    assert "[you] go through door   (reward 1, return 1)" in out
    assert out.rstrip().endswith("[end] won after 3 steps, return 1")


def test_play_asks_for_the_text_of_a_template_action(monkeypatch, capsys):
    code, out, _ = _run(monkeypatch, capsys, ["play", "shop", "--seed", "1"], "1\nsearch[socks]\n")
    assert code == 0
    assert "[play] search[<query>] is a template: type it with your own text" in out
    assert "[you] search[<query>]" not in out and "[you] search[socks]" in out


def test_play_quit_and_end_of_input(monkeypatch, capsys):
    code, out, _ = _run(monkeypatch, capsys, ["play", "_test_cli_door"], ":quit\nlook\n")
    assert code == 0 and "[quit]" in out and "[you]" not in out
    code, out, _ = _run(monkeypatch, capsys, ["play", "_test_cli_door"], "")
    assert code == 0 and "end of input" in out


def test_play_step_limit(monkeypatch, capsys):
    code, out, _ = _run(
        monkeypatch, capsys, ["play", "_test_cli_door", "--max-steps", "2"], "look\nlook\n"
    )
    assert code == 0 and "[end] step limit after 2 steps, return 0" in out


def test_play_unknown_env_and_bad_args(monkeypatch, capsys):
    code, _, err = _run(monkeypatch, capsys, ["play", "_test_cli_dor"])
    assert code == 2 and "Did you mean '_test_cli_door'?" in err
    assert err.startswith("empg play: error: ")
    code, _, err = _run(monkeypatch, capsys, ["play", "_test_cli_door", "--arg", "colour=red"])
    assert code == 2 and "cannot build environment" in err and "colour" in err
    assert err.startswith("empg play: error: ")
    code, _, err = _run(monkeypatch, capsys, ["play", "_test_cli_door", "--arg", "nonsense"])
    assert code == 2 and err.startswith("empg play: error: --arg expects KEY=VALUE")
    code, _, err = _run(monkeypatch, capsys, ["play", "_test_cli_door", "--seed", "-1"])
    assert code == 2 and err == "empg play: error: --seed must be >= 0, got -1\n"
    # "²" is a digit int() refuses: it is sent as a plain (unknown) action, not a crash
    code, out, _ = _run(monkeypatch, capsys, ["play", "_test_cli_door"], "²\n:quit\n")
    assert code == 0 and "[you] ²" in out


def test_play_a_game_that_cannot_start_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    pytest.importorskip("textworld", reason="needs: pip install 'empg[textworld]'")
    bad = tmp_path / "bad.z8"
    bad.write_bytes(b"not a z-machine file")
    bad.with_suffix(".json").write_text('{"not": "a game"}')
    code, _, err = _run(
        monkeypatch, capsys, ["play", "textworld", "--arg", f"game_path={bad}"], ":quit\n"
    )
    assert code == 2 and err.startswith("empg play: error: cannot start a game of 'textworld'")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    # a game's .json alone is refused when the environment is built
    code, _, err = _run(
        monkeypatch,
        capsys,
        ["play", "textworld", "--arg", f"game_path={bad.with_suffix('.json')}"],
        ":quit\n",
    )
    assert code == 2 and "pass its .z8 file" in err and len(err.strip().splitlines()) == 1


def test_parse_value_never_evaluates():
    assert cli.parse_value("[pick_and_place_simple, 3, none]") == ["pick_and_place_simple", 3, None]
    assert cli.parse_value("[unclosed") == "[unclosed"
    assert cli.parse_value("3") == 3 and cli.parse_value("0.5") == 0.5
    assert cli.parse_value("True") is True and cli.parse_value("none") is None
    assert cli.parse_value("__import__('os')") == "__import__('os')"


def test_no_subcommand_prints_help(monkeypatch, capsys):
    code, out, _ = _run(monkeypatch, capsys, [])
    assert code == 2 and "envs" in out and "play" in out


def test_play_real_alfworld_in_a_subprocess(tmp_path):
    pytest.importorskip("alfworld", reason="needs: pip install 'empg[alfworld]'")
    from empg.envs.alfworld import write_game

    data = Path(__file__).parent / "envs" / "data" / "alfworld_tiny"
    trial = (
        tmp_path / "json_2.1.1" / "train" / "pick_and_place_simple-Apple-None-DiningTable-1" / "t1"
    )
    game = write_game(
        trial,
        (data / "initial_state.pddl").read_text(),
        json.loads((data / "traj_data.json").read_text()),
    )
    moves = json.loads(game.read_text())["walkthrough"]
    stdin = ":expert\n" + "\n".join(moves) + "\n"
    proc = subprocess.run(
        [sys.executable, "-m", "empg.cli", "play", "alfworld", "--arg", f"data_dir={tmp_path}"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Your task is to: put a apple in diningtable." in proc.stdout
    assert "[expert] look" in proc.stdout
    assert f"[end] won after {len(moves)} steps, return 1" in proc.stdout


def test_train_and_eval_config_errors_are_one_line_not_a_traceback(capsys):
    from empg import cli

    assert cli.main(["train", "algo.no_such_knob=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("empg train: error: ") and "no_such_knob" in err
    assert "Traceback" not in err
    assert cli.main(["eval", "eval.episodes=many"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("empg eval: error: ") and "eval.episodes" in err


def test_missing_model_or_checkpoint_is_one_line(tmp_path, capsys):
    from empg import cli

    missing = tmp_path / "nowhere"
    assert cli.main(["eval", "--checkpoint", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("empg eval: error: --checkpoint ") and "no model/ folder" in err
    assert err.count("\n") == 1
    assert cli.main(["eval", f"model.path={missing}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("empg eval: error: model path ") and "no such folder" in err
    assert cli.main(["eval", "model.path=runs/no/such/model"]) == 2  # relative, not a hub id
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["eval", f"model.path={tmp_path / 'empty'}"]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_a_run_that_cannot_go_on_exits_1_with_one_line(monkeypatch, capsys):
    """The CLI's mapping of a diverged run to exit status 1 (the trainer is replaced: what is
    tested is the CLI, the divergence itself is tested in tests/train)."""
    from empg import cli
    from empg.errors import TrainingDivergedError
    from empg.train import trainer

    class Diverging:
        def __init__(self, cfg, resume=False):
            pass

        def run(self):
            raise TrainingDivergedError("5 consecutive updates had a non-finite loss")

    monkeypatch.setattr(trainer, "Trainer", Diverging)
    assert cli.main(["train", "iterations=1"]) == 1
    err = capsys.readouterr().err
    assert err == "empg train: error: 5 consecutive updates had a non-finite loss\n"


def test_sft_errors_use_the_same_format(tmp_path, capsys):
    from empg import cli

    assert cli.main(["sft", "--out", str(tmp_path / "p"), "--threads", "0"]) == 2
    assert capsys.readouterr().err == "empg sft: error: --threads must be >= 1, got 0\n"
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert cli.main(["sft", "--out", str(a_file)]) == 2  # refused before any building
    assert capsys.readouterr().err.startswith("empg sft: error: cannot create the output folder")


def test_train_help_lists_every_config_field_with_its_doc(capsys):
    import dataclasses

    from empg.train.config import TrainConfig

    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "algo.empg.zeta" in out and "optim.lr" in out and "rollout.group_size" in out
    assert "seq-mean-token-sum-norm" in out  # a field's one-line doc is shown
    # a knob the preset fills in shows that, not a value it would not have under another preset
    assert "algo.kl_coef (float | None, default null: algo.preset=dapo gives 0.0)" in out
    for f in dataclasses.fields(TrainConfig):
        assert f.name in out


def test_eval_checks_the_environment_before_loading_a_model(tmp_path, capsys):
    from empg import cli

    assert cli.main(["eval", "env.name=housheold", f"model.path={tmp_path / 'none'}"]) == 2
    assert "Did you mean 'household'" in capsys.readouterr().err  # not the missing folder


def test_overrides_may_follow_an_option_and_a_misspelt_option_is_the_subcommands_error(capsys):
    args = cli._parse(
        cli.build_parser(), ["train", "a=1", "--resume", "b=2", "--config", "c.yaml", "a=3"]
    )
    assert args.resume and args.config == "c.yaml" and args.overrides == ["a=1", "b=2", "a=3"]
    args = cli._parse(cli.build_parser(), ["eval", "threads=1", "--checkpoint", "x", "e=1"])
    assert args.checkpoint == "x" and args.overrides == ["threads=1", "e=1"]
    for argv in (["train", "--confg", "x.yaml"], ["train", "a=1", "--resume", "--seed=3"]):
        with pytest.raises(SystemExit) as exc:
            cli._parse(cli.build_parser(), argv)
        assert exc.value.code == 2
        assert (
            capsys.readouterr()
            .err.splitlines()[-1]
            .startswith("empg train: error: unrecognized arguments:")
        )
    with pytest.raises(SystemExit):  # a subcommand without overrides takes none
        cli._parse(cli.build_parser(), ["plot", "runs/x", "a=1"])
    assert "empg plot: error: unrecognized arguments: a=1" in capsys.readouterr().err


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path):
    """`empg play household < moves | head -2`: the pipe closes; no traceback, SIGPIPE's 141."""
    import subprocess

    moves = tmp_path / "moves"
    moves.write_text("look\n" * 5000)  # far more output than a pipe's buffer holds
    code = (
        "import sys; from empg.cli import main; "
        "sys.exit(main(['play', 'household', '--seed', '1', '--max-steps', '5000']))"
    )
    with open(moves) as stdin:
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        proc.stdout.readline()
        proc.stdout.close()  # the reader goes away after one line
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err
