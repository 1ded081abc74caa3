"""Does this machine build the default policy with the same arithmetic as a known one?

    python benchmarks/build_fingerprint.py --threads 2

Runs the first ``--steps`` (default 20) SFT steps of the default household recipe three times,
each in a fresh process: with the machine's own kernels; with torch's and MKL's AVX2 kernels
forced (``ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2``); and with the most portable ones, torch's
baseline kernels (no AVX) and MKL's single SSE2 code path (``ATEN_CPU_CAPABILITY=default
MKL_CBWR=COMPATIBLE``). MKL honours ``MKL_CBWR=AVX2`` on Intel CPUs only and falls back to its
automatic choice elsewhere, while ``COMPATIBLE`` is offered on every x86 CPU (Intel oneMKL
developer reference, "Named Constants for CNR Control"), so the third mode is the one that may
match between Intel and AMD machines. ``--modes`` picks a subset. It prints the sha256 of each
result's weights, the seconds the run took and the known build it matches. Equal hashes after
20 steps mean the same kernels and rounding, hence (the run is deterministic) the same
1,200-step build; a different hash means a different build, whose quality only a full build
tells (about a minute here against 30-55). The known hashes were measured on the machines
listed in docs/training.md ("Recipe v2 ...").
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: the first 16 hex digits after 20 steps, with the full build's final loss (recipe v2: the data
#: since commit 9740de4; the v1 hashes, of the older data, are in docs/training.md)
KNOWN = {
    "02d94c1f6440d130": "the Intel Xeon (family 6 model 167) with its own AVX-512 kernels, "
    "recipe v2: the 0.0565 build class",
    "7c432ecb06aede96": "the Intel Xeon with AVX2 forced, recipe v2 (no full build measured)",
    "a6e0f1f8e1857011": "the AMD EPYC (family 25 model 17) with its own AVX-512 kernels, "
    "recipe v2: the 0.0551 build class",
    "64bea156f45cee97": "the AMD EPYC with AVX2 forced (MKL documents its AVX2 branch for Intel "
    "CPUs only), recipe v2 (no full build measured)",
    "c676612016e96e4b": "the AMD EPYC with the portable kernels, recipe v2 (no full build "
    "measured; an Intel CPU printing this hash would build what AMD builds)",
}
MODES = {
    "own": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"},
    "portable": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"},
}
#: environment variables that choose CPU kernels (a subset of empg.models.default.NUMERICS_ENV)
KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA")
LABELS = {"own": "own kernels", "avx2": "AVX2 forced", "portable": "portable"}


def fingerprint(steps: int, threads: int, extra_env: dict[str, str]) -> str:
    """sha256 of ``model.safetensors`` after ``empg sft --steps N`` in a fresh process."""
    # the variables that pick kernels are the mode's alone, so "own" means the machine's own
    # choice whatever the shell exported (thread counts are set by --threads)
    env = {k: v for k, v in os.environ.items() if k not in KERNEL_ENV}
    env.update(extra_env)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "policy"
        cmd = [sys.executable, "-c", "import sys; from empg.cli import main; sys.exit(main())"]
        cmd += ["sft", "--out", str(out), "--steps", str(steps), "--threads", str(threads)]
        run = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"empg sft failed ({run.returncode}):\n{run.stderr[-2000:]}")
        return hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=20, help="SFT steps (the known hashes: 20)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the known hashes: 2)")
    p.add_argument(
        "--modes", nargs="+", choices=list(MODES), default=list(MODES), help="kernels to run"
    )
    args = p.parse_args()
    if args.steps < 1 or args.threads < 1:
        p.error("--steps and --threads must be >= 1")
    for mode in args.modes:
        start = time.perf_counter()
        digest = fingerprint(args.steps, args.threads, MODES[mode])[:16]
        seconds = time.perf_counter() - start
        known = KNOWN.get(digest) if (args.steps, args.threads) == (20, 2) else None
        print(
            f"{LABELS[mode]:12s} {digest}  {seconds:5.0f} s  {known or 'no known build matches'}",
            flush=True,
        )


if __name__ == "__main__":
    main()
