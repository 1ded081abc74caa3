"""Benchmarks of the core math. Prints ratios measured in one run; not a test.

    python benchmarks/core_bench.py modulation              # EMPG vs GRPO, 1e4..1e6 steps
    python benchmarks/core_bench.py entropy --tokens 8192   # chunked / LM-head vs naive

``entropy`` runs every method in a fresh subprocess and reports its peak EXTRA resident memory:
the kernel's peak-RSS mark is reset once the inputs exist (``/proc/self/clear_refs``, Linux),
and the peak after the call minus the RSS at that point is the method's own memory.

Targets (issue 2): modulation at most 3x the GRPO cost and linear in steps;
chunked / LM-head variants at most 1/8 of the naive peak extra memory at no more than 1.25x its
time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

import empg


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)  # least-disturbed run: the machine is shared


def step_table(n_steps: int, group: int = 8, mean_len: int = 15, seed: int = 0):
    """A synthetic batch: trajectories of 1..2*mean_len-1 steps, groups of ``group``."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, 2 * mean_len, (2 * n_steps // mean_len + 2,), generator=g)
    lens = lens[: int((lens.cumsum(0) < n_steps).sum()) + 1]  # cumsum reaches n_steps
    lens[-1] -= int(lens.sum()) - n_steps  # shorten the last one: exactly n_steps rows
    n_traj = lens.numel()
    traj = torch.repeat_interleave(torch.arange(n_traj), lens)
    starts = torch.cumsum(lens, 0) - lens
    step = torch.arange(n_steps) - torch.repeat_interleave(starts, lens)
    rewards = torch.randint(0, 2, (n_traj,), generator=g).float()
    group_id = torch.arange(n_traj) // group
    entropy = torch.rand(n_steps, generator=g) * 2
    perm = torch.randperm(n_steps, generator=g)  # rows in arbitrary order, as engines give them
    return rewards, group_id, traj[perm], step[perm], entropy[perm]


def bench_modulation(args) -> None:
    print(f"threads={torch.get_num_threads()}; GRPO = step_outcome_advantages on the step table")
    print(f"{'steps':>9} {'grpo ms':>9} {'empg ms':>9} {'ratio':>6} {'empg ns/step':>13}")
    for n in args.steps:
        rewards, group_id, traj, step, ent = step_table(n)

        # the step table as an engine hands it over: per-step reward, group and trajectory id
        step_r, step_g = rewards[traj], group_id[traj]

        def grpo(step_r=step_r, step_g=step_g, traj=traj):
            return empg.step_outcome_advantages("grpo", step_r, step_g, traj)

        step_adv = grpo()

        def modulate(ent=ent, step_adv=step_adv, traj=traj, step=step):
            return empg.modulate_advantages(ent, step_adv, traj, step)

        t_g, t_m = _time(grpo, args.repeats), _time(modulate, args.repeats)
        print(
            f"{n:>9} {t_g * 1e3:>9.2f} {t_m * 1e3:>9.2f} {t_m / t_g:>6.2f} {t_m / n * 1e9:>13.1f}"
        )


def _child(method: str, tokens: int, vocab: int, hidden: int, backward: bool, chunk) -> dict:
    torch.manual_seed(0)
    labels = torch.randint(0, vocab, (tokens,))
    if method.startswith("lm_head"):
        h = torch.randn(tokens, hidden).mul_(0.05).requires_grad_(backward)
        w = torch.randn(vocab, hidden).mul_(0.05).requires_grad_(backward)
    else:
        z = torch.randn(tokens, vocab).mul_(2.0).requires_grad_(backward)
    base = _reset_peak_rss()  # inputs allocated; from here on only the method's own memory

    def naive(logits):
        lsm = torch.log_softmax(logits.float(), dim=-1)
        return lsm.gather(-1, labels[:, None])[:, 0], -(lsm.exp() * lsm).sum(-1)

    t0 = time.perf_counter()
    with torch.set_grad_enabled(backward):
        if method == "naive":
            lp, ent = naive(z)
        elif method == "chunked":
            lp, ent = empg.token_logprobs_and_entropy(z, labels, chunk_size=chunk)
        elif method == "lm_head_naive":
            lp, ent = naive(h @ w.T)
        elif method == "lm_head_chunked":
            lp, ent = empg.lm_head_logprobs_and_entropy(h, w, labels, chunk_size=chunk)
        else:
            raise SystemExit(f"unknown method {method}")
        if backward:
            (lp.sum() + ent.sum()).backward()
    dt = time.perf_counter() - t0
    peak = _status_kib("VmHWM")
    return {"seconds": dt, "extra_mib": (peak - base) / 1024, "ent0": float(ent[0])}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def _reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS and return it, in KiB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS")


def bench_entropy(args) -> None:
    print(
        f"tokens={args.tokens} vocab={args.vocab} hidden={args.hidden} backward={args.backward} "
        f"threads={torch.get_num_threads()} chunk={args.chunk or 'auto'}"
    )
    rows = {}
    for method in args.methods:
        cmd = [sys.executable, __file__, "_child", method, str(args.tokens), str(args.vocab)]
        cmd += [str(args.hidden), str(int(args.backward)), str(args.chunk or 0)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(f"{method:>16}: failed ({out.stderr.strip().splitlines()[-1:]})")
            continue
        rows[method] = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"{'method':>16} {'seconds':>8} {'extra MiB':>10} {'time x naive':>13} {'mem / naive':>12}"
    )
    for method, r in rows.items():
        ref = rows.get("lm_head_naive" if method.startswith("lm_head") else "naive")
        tr = f"{r['seconds'] / ref['seconds']:.2f}" if ref else "-"
        mr = f"{r['extra_mib'] / ref['extra_mib']:.3f}" if ref else "-"
        print(f"{method:>16} {r['seconds']:>8.2f} {r['extra_mib']:>10.0f} {tr:>13} {mr:>12}")


def main(argv=None) -> None:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "_child":
        method, tokens, vocab, hidden, bwd, chunk = sys.argv[2:8]
        res = _child(
            method, int(tokens), int(vocab), int(hidden), bool(int(bwd)), int(chunk) or None
        )
        print(json.dumps(res))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("modulation")
    m.add_argument("--steps", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    m.add_argument("--repeats", type=int, default=5)
    e = sub.add_parser("entropy")
    e.add_argument("--tokens", type=int, default=8192)
    e.add_argument("--vocab", type=int, default=151_936)
    e.add_argument("--hidden", type=int, default=896)
    e.add_argument("--backward", action="store_true")
    e.add_argument("--chunk", type=int, default=None)
    e.add_argument(
        "--methods", nargs="+", default=["naive", "chunked", "lm_head_naive", "lm_head_chunked"]
    )
    args = p.parse_args(argv)
    {"modulation": bench_modulation, "entropy": bench_entropy}[args.cmd](args)


if __name__ == "__main__":
    main()
