"""EMPG inside the REAL verl 0.9.x v1 trainer, with TransferQueue's real CPU backend.

The batch lives in TransferQueue (SimpleStorage on a local 2-CPU Ray); verl's own
``PPOTrainerSync._compute_advantage`` (grpo via ``compute_advantage_for_multi_trajectories``),
verl's batch padding (``upsample_batch_to_divisible_size``) and verl's trainer construction
from its own composed ``ppo_trainer.yaml`` are used. Only the model workers are absent: the
per-token ``entropy``/``old_log_probs`` that ``_compute_old_log_prob`` would write are put
into the store directly. Expected values come from the core (``empg.*``) on the same batch.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

REASON = (
    "verl 0.9.x with TransferQueue is not installed in this environment; see docs/verl.md "
    "(separate venv: pip install -c constraints 'verl==0.9.1' 'TransferQueue>=0.1.10' ...)"
)
verl = pytest.importorskip("verl", reason=REASON)
tq = pytest.importorskip("transfer_queue", reason=REASON)
ray = pytest.importorskip("ray", reason=REASON)

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from tensordict import TensorDict  # noqa: E402
from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size  # noqa: E402
from verl.trainer.ppo.v1 import PPOTrainerSync, get_trainer_cls  # noqa: E402

import empg  # noqa: E402
from empg.errors import ConfigError  # noqa: E402
from empg.integrations.verl.config import check_verl_config  # noqa: E402
from empg.integrations.verl.trainer import EMPGTrainerSync, apply_empg, register  # noqa: E402

torch.set_num_threads(1)
register()
VERL_CONFIG_DIR = str(Path(verl.__file__).parent / "trainer" / "config")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "verl"


def verl_config(*overrides: str, n: int = 4):
    base = ["algorithm.adv_estimator=grpo", f"actor_rollout_ref.rollout.n={n}"]
    with initialize_config_dir(config_dir=VERL_CONFIG_DIR, version_base=None):
        return compose("ppo_trainer", overrides=base + list(overrides))


EMPG_MODE = "trainer.v1.trainer_mode=empg_sync"


@pytest.fixture(scope="module")
def store():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    tq.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
    yield
    tq.close()
    ray.shutdown()


def nested(xs):
    return torch.nested.as_nested_tensor(list(xs), layout=torch.jagged)


def put(partition, keys, masks, ents, scores, uids):
    """What the agent loop + reward + _compute_old_log_prob leave in TransferQueue."""
    fields = TensorDict(
        {
            "response_mask": nested(m.long() for m in masks),
            "rm_scores": nested(scores),
            "entropy": nested(ents),
            "old_log_probs": nested(-e for e in ents),
            "uid": list(uids),
        },
        batch_size=len(keys),
    )
    tags = [{"seq_len": 8 + len(m)} for m in masks]
    return tq.kv_batch_put(keys=keys, partition_id=partition, fields=fields, tags=tags)


def read(partition, keys, field="advantages"):
    d = tq.kv_batch_get(keys=keys, partition_id=partition, select_fields=[field])
    return [t.clone() for t in d[field].unbind()]


def multi_turn_mask(g: random.Random, turns: int) -> torch.Tensor:
    parts = []
    for t in range(turns):
        if t:
            parts.append(torch.zeros(g.randint(1, 3)))  # environment tokens
        parts.append(torch.ones(g.randint(1, 4)))
    return torch.cat(parts)


def sequence_batch(partition: str, seed: int, n_prompts=3, n=4):
    g = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    keys, masks, ents, scores, uids, rewards = [], [], [], [], [], []
    for p in range(n_prompts):
        for s in range(n):
            m = multi_turn_mask(g, g.randint(1, 4))
            r = float(g.random() < 0.5) if p < n_prompts - 1 else 1.0  # last group: all equal
            sc = torch.zeros(len(m))
            sc[-1] = r
            keys.append(f"prompt{p}_{s}_0")
            masks.append(m)
            ents.append(torch.rand(len(m), generator=gen) * 3)
            scores.append(sc)
            uids.append(f"prompt{p}")
            rewards.append(r)
    meta = put(partition, keys, masks, ents, scores, uids)
    return meta, masks, ents, torch.tensor(rewards), [int(u[6:]) for u in uids]


def padded(xs):
    return torch.nested.as_nested_tensor(list(xs), layout=torch.jagged).to_padded_tensor(0.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_sequence_layout_matches_core(store, seed):
    """One row per trajectory (multi-turn mask): verl's advantages == modulate_token_advantages."""
    meta, masks, ents, rewards, groups = sequence_batch(f"seq{seed}", seed)
    base_meta, *_ = sequence_batch(f"seqbase{seed}", seed)
    PPOTrainerSync(verl_config())._compute_advantage(base_meta, {})
    trainer = EMPGTrainerSync(verl_config(EMPG_MODE))
    metrics: dict = {}
    trainer._compute_advantage(meta, metrics)

    base = read(f"seqbase{seed}", base_meta.keys)
    a_base = torch.stack([b[0] for b in base])  # verl's grpo, one value per row
    # verl's grpo agrees with the core's grpo (eps 1e-6, Bessel std, equal groups -> 0)
    a_core = empg.grpo_advantages(rewards, torch.tensor(groups))
    torch.testing.assert_close(a_base, a_core, rtol=0, atol=1e-5)

    m, e = padded(masks), padded(ents)
    exp = empg.modulate_token_advantages(e, m, a_base)
    got = padded(read(f"seq{seed}", meta.keys))
    assert torch.equal(got, exp)  # bit for bit: the same core call
    assert torch.equal(padded(read(f"seq{seed}", meta.keys, "returns")), got)
    assert metrics["empg/steps"] == float(empg.segment_steps(m).num_steps)
    assert not torch.equal(got, a_base[:, None] * m)  # EMPG did change something


def test_multi_row_layout_padding_duplicates_reorder(store):
    """Rows ``{uid}_{session}_{i}`` (one turn each), verl's own padding rows and a shuffled
    order: verl's advantages == the core's step-table EMPG over the real rows only.

    (TransferQueue's ``KVBatchMeta`` rejects repeated keys, so in verl 0.9 batch padding is
    verl's synthetic ``is_padding`` rows; repeated rows are covered in test_verl_batch.py.)"""
    g = random.Random(3)
    gen = torch.Generator().manual_seed(3)
    keys, masks, ents, scores, uids, table = [], [], [], [], [], []
    traj_reward = {}
    for p in range(2):
        for s in range(3):
            n_steps = g.randint(1, 4)
            r = float((p + s) % 2)
            traj_reward[(p, s)] = r
            for i in range(n_steps):
                m = torch.ones(g.randint(1, 5))
                sc = torch.zeros(len(m))
                if i == n_steps - 1:
                    sc[-1] = r  # verl grpo: the session's final output carries the reward
                keys.append(f"task{p}_{s}_{i}")
                masks.append(m)
                ents.append(torch.rand(len(m), generator=gen) * 3)
                scores.append(sc)
                uids.append(f"task{p}")
                table.append((p * 3 + s, i))
    part = "rows"
    meta = put(part, keys, masks, ents, scores, uids)
    n_real = len(keys)
    meta = upsample_batch_to_divisible_size(meta, 8, eos_token_id=0)  # verl's real padding
    assert len(meta) % 8 == 0 and len(meta) > n_real
    pad_keys = list(meta.keys[n_real:])
    pad_ent = TensorDict(
        {"entropy": nested(torch.full((1,), 9.0) for _ in pad_keys)}, batch_size=len(pad_keys)
    )
    tq.kv_batch_put(keys=pad_keys, partition_id=part, fields=pad_ent)
    perm = list(range(len(meta)))
    g.shuffle(perm)
    meta.reorder(perm)  # what _balance_batch does
    EMPGTrainerSync(verl_config(EMPG_MODE, n=3))._compute_advantage(meta, {})

    # the core on the real rows only, each once
    a_traj = empg.grpo_advantages(
        torch.tensor([traj_reward[(p, s)] for p in range(2) for s in range(3)]),
        torch.tensor([p for p in range(2) for s in range(3)]),
    )
    traj = torch.tensor([t for t, _ in table])
    step = torch.tensor([i for _, i in table])
    h = empg.step_entropy_from_rows(padded(ents), padded(masks))
    exp = empg.modulate_advantages(h, a_traj[traj], traj, step)
    got = read(part, meta.keys)
    by_key = dict(zip(meta.keys, got, strict=True))
    for j, k in enumerate(keys):
        # not bit for bit: the base advantages are verl's own grpo, the expectation's the core's
        torch.testing.assert_close(
            by_key[k], torch.full_like(masks[j], float(exp[j])), atol=1e-6, rtol=0
        )
    for k in pad_keys:
        assert torch.equal(by_key[k], torch.zeros(1))  # padding untouched (mask 0)


def test_disabled_equals_verl_sync_trainer(store):
    meta, *_ = sequence_batch("off", 5)
    base_meta, *_ = sequence_batch("offbase", 5)
    PPOTrainerSync(verl_config())._compute_advantage(base_meta, {})
    EMPGTrainerSync(verl_config(EMPG_MODE, "+algorithm.empg.enable=false"))._compute_advantage(
        meta, {}
    )
    assert torch.equal(padded(read("off", meta.keys)), padded(read("offbase", base_meta.keys)))


def test_knobs_from_verl_config_reach_the_core(store):
    meta, masks, ents, *_ = sequence_batch("knobs", 6)
    base_meta, *_ = sequence_batch("knobsbase", 6)
    PPOTrainerSync(verl_config())._compute_advantage(base_meta, {})
    cfg = verl_config(
        EMPG_MODE,
        "+algorithm.empg.k=2.0",
        "+algorithm.empg.zeta=0.05",
        "+algorithm.empg.final_norm=mean_std",
        "+algorithm.empg.scale=false",
    )
    EMPGTrainerSync(cfg)._compute_advantage(meta, {})
    a_base = torch.stack([b[0] for b in read("knobsbase", base_meta.keys)])
    exp = empg.modulate_token_advantages(
        padded(ents), padded(masks), a_base, k=2.0, zeta=0.05, final_norm="mean_std", scale=False
    )
    assert torch.equal(padded(read("knobs", meta.keys)), exp)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["trainer.v1.trainer_mode=sync"], "trainer_mode=empg_sync"),
        ([EMPG_MODE, "algorithm.adv_estimator=gae"], "per-token advantages"),
        ([EMPG_MODE, "algorithm.rollout_correction.bypass_mode=true"], "bypass_mode=False"),
        ([EMPG_MODE, "+algorithm.empg.zetta=1"], "did you mean"),
    ],
)
def test_trainer_refuses_at_construction(overrides, match):
    with pytest.raises(ConfigError, match=match):
        EMPGTrainerSync(verl_config(*overrides))


@pytest.mark.parametrize("rs", ["token_k1", "'seq_mean_k3,token_k2'"])
def test_token_level_rejection_sampling_is_refused(rs):
    with pytest.raises(ConfigError, match="split one model turn"):
        EMPGTrainerSync(verl_config(EMPG_MODE, f"algorithm.rollout_correction.rollout_rs={rs}"))


def test_the_empg_trainer_takes_verls_synchronous_branches():
    """verl's base trainer branches on trainer_mode == "sync"; registered as empg_sync, the EMPG
    trainer must still build the synchronous replay buffer with the same batch sizes."""
    from verl.trainer.ppo.v1 import PPOTrainerSync
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

    plain = PPOTrainerSync(verl_config())
    ours = EMPGTrainerSync(verl_config(EMPG_MODE))
    assert ours.trainer_mode == "sync"
    assert type(ours.replay_buffer) is ReplayBuffer is type(plain.replay_buffer)
    assert vars(ours.replay_buffer).get("gen_batch_size") == vars(plain.replay_buffer).get(
        "gen_batch_size"
    )


def test_missing_entropy_is_a_clear_error(store):
    fields = TensorDict(
        {
            "response_mask": nested([torch.ones(2, dtype=torch.long)]),
            "advantages": nested([torch.ones(2)]),
        },
        batch_size=1,
    )
    meta = tq.kv_batch_put(keys=["x_0_0"], partition_id="noent", fields=fields)
    cfg = EMPGTrainerSync(verl_config(EMPG_MODE)).empg_config
    with pytest.raises(ConfigError, match="entropy"):
        apply_empg(meta, cfg, {})


def test_verl_plugin_loader_imports_the_entry_point(tmp_path):
    """verl's own entry-point discovery (group verl.plugins) registers trainer mode empg_sync."""
    dist = tmp_path / "empg_verl_probe-0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: empg-verl-probe\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[verl.plugins]\nempg = empg.integrations.verl.plugin\n")
    code = textwrap.dedent(
        """
        import verl
        from verl.trainer.ppo.v1 import get_trainer_cls
        print("MODE", get_trainer_cls("empg_sync").__qualname__)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "VERL_USE_EXTERNAL_PLUGINS": "empg"}
    env.pop("VERL_USE_EXTERNAL_MODULES", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert "MODE EMPGTrainerSync" in out.stdout, out.stderr[-2000:]


def test_installed_entry_point():
    from importlib.metadata import entry_points

    eps = [e for e in entry_points(group="verl.plugins") if e.value.startswith("empg.")]
    assert eps, "the verl.plugins entry point of pyproject.toml is not installed"
    assert eps[0].value == "empg.integrations.verl.plugin"
    assert get_trainer_cls("empg_sync") is EMPGTrainerSync


def test_example_config_composes_and_passes_checks():
    """examples/verl/empg_alfworld_grpo.yaml composes over verl's ppo_trainer.yaml, selects the
    EMPG trainer, passes the plug-in's checks and carries verl-agent's ALFWorld settings."""
    with initialize_config_dir(config_dir=str(EXAMPLES), version_base=None):
        cfg = compose("empg_alfworld_grpo")
    assert get_trainer_cls(cfg.trainer.v1.trainer_mode) is EMPGTrainerSync
    knobs = check_verl_config(cfg)
    assert (knobs.k, knobs.k_future, knobs.zeta, knobs.final_norm) == (1.0, 1.0, 0.1, "mean")
    a, r = cfg.actor_rollout_ref.actor, cfg.actor_rollout_ref.rollout
    assert (cfg.data.train_batch_size, r.n, a.optim.lr) == (16, 8, 1e-6)
    assert (a.use_kl_loss, a.kl_loss_coef, a.kl_loss_type) == (True, 0.01, "low_var_kl")
    assert (r.temperature, r.val_kwargs.temperature) == (1.0, 0.4)
    assert (r.multi_turn.max_assistant_turns, cfg.data.max_response_length) == (50, 512)
    assert (cfg.empg_env.history, cfg.empg_env.invalid_action_penalty) == (2, 0.1)
    assert cfg.trainer.total_training_steps == 150


@pytest.mark.parametrize(
    "mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]
)
def test_loss_aggregation_equals_verls_agg_loss(mode):
    """The core's aggregate_loss is verl's agg_loss (one data-parallel rank), empty rows and
    Dr. GRPO's constant norm included, so a loss mode means the same number in both."""
    from verl.trainer.ppo.core_algos import agg_loss

    g = torch.Generator().manual_seed(3)
    loss = torch.randn(6, 9, generator=g, dtype=torch.float64)
    mask = (torch.rand(6, 9, generator=g) < 0.6).to(torch.float64)
    mask[2] = 0  # a row without response tokens
    for norm_len in (None, 16):
        ours = empg.aggregate_loss(loss, mask, mode, norm_len=norm_len)
        theirs = agg_loss(loss, mask, mode, loss_scale_factor=norm_len)
        # verl adds 1e-8 to each row's token count in seq-mean-token-mean: ~1e-9 relative
        torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=0)
