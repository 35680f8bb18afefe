"""The CUDA paths end to end, as a user runs them (the CLI), on a machine with a GPU:

1. TinySSD (the tests' tiny synthetic set) trained on ``--device cuda`` for 6 iterations in fp32,
   then with ``--amp``; the run resumed exactly (the iteration count continues); the checkpoint
   evaluated on cuda and on the cpu (same AP within float noise) and loaded on a CPU-only path.
2. RTMDet-tiny, RetinaNet, FCOS and TOOD (random backbone) 3 iterations with ``--amp``: finite losses.
3. Device selection: ``--device cuda:0`` and the default (cuda when available) name the GPU in
   the log; a bad ``--device cuda:7`` is refused with a message.

Prints one PASS / FAIL line per check and exits 1 on any failure.

    python bench/gpu_smoke.py WORKDIR        (SMOKE_DEVICE=cpu: the same checks on the CPU, a dry run)
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detengine.config import Config  # noqa: E402
from tests.engine.runs import tiny_tinyssd_cfg  # noqa: E402

RESULTS: list[tuple[str, bool, str]] = []
DEV = os.environ.get("SMOKE_DEVICE", "cuda")


def check(name: str, ok: bool, detail: str = "") -> bool:
    RESULTS.append((name, bool(ok), detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}", flush=True)
    return bool(ok)


def cli(*args, timeout=600) -> subprocess.CompletedProcess:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "detengine", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    print(f"  $ detengine {' '.join(map(str, args))}  -> rc {proc.returncode} in {time.perf_counter() - t:.1f} s",
          flush=True)
    if proc.returncode:
        print(proc.stderr[-2500:], flush=True)
    return proc


def events(run: Path) -> list[dict]:
    path = run / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def iters(run: Path) -> list[dict]:
    return [e for e in events(run) if e["type"] == "iter"]


def finite(run: Path) -> bool:
    return all(math.isfinite(e["loss"]) and all(math.isfinite(v) for v in e["losses"].values())
               for e in iters(run))


def main() -> int:
    work = Path(sys.argv[1])
    work.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name() if DEV == "cuda" else "no GPU (dry run)"
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {gpu}", flush=True)
    cfg_file = work / "tiny.py"
    cfg_file.write_text(Config.from_dict(tiny_tinyssd_cfg(work / "synthetic")).pretty_text())

    fp32 = work / "fp32"
    p = cli("train", cfg_file, "--device", DEV, "--max-iters", 6, "--work-dir", fp32)
    start = next((e for e in events(fp32) if e["type"] == "start"), {})
    check("train fp32 on cuda", p.returncode == 0 and len(iters(fp32)) == 6 and finite(fp32)
          and start.get("device", "").startswith(DEV), f"device {start.get('device')}")

    amp = work / "amp"
    p = cli("train", cfg_file, "--device", DEV, "--amp", "--max-iters", 6, "--work-dir", amp)
    start = next((e for e in events(amp) if e["type"] == "start"), {})
    check("train --amp on cuda", p.returncode == 0 and len(iters(amp)) == 6 and finite(amp)
          and start.get("settings", {}).get("amp") is True, f"amp setting {start.get('settings', {}).get('amp')}")
    ckpt = torch.load(amp / "last.pth", map_location="cpu", weights_only=False)
    if DEV != "cpu":                         # AMP is CUDA-only: on the CPU --amp is ignored, no scaler
        check("AMP checkpoint keeps the loss scaler", bool(ckpt.get("scaler")), f"scaler {ckpt.get('scaler')}")

    p = cli("train", cfg_file, "--device", DEV, "--amp", "--max-iters", 10, "--work-dir", amp, "--resume")
    steps = [e["global_step"] for e in iters(amp)]
    check("resume on cuda continues the iteration count", p.returncode == 0 and steps == list(range(10)),
          f"steps {steps}")

    aps = {}
    for dev in (DEV, "cpu") if DEV != "cpu" else ("cpu",):
        p = cli("eval", cfg_file, fp32 / "last.pth", "--device", dev, "--work-dir", work / f"eval_{dev}")
        found = list((work / f"eval_{dev}").glob("eval_*.json"))
        aps[dev] = json.loads(found[0].read_text()) if found else None
        check(f"eval on {dev}", p.returncode == 0 and aps[dev] is not None, "")
    for dev, metrics in aps.items():
        print(f"  {dev}: {json.dumps(metrics)[:300]}", flush=True)

    # FCOS and TOOD: per-prior sums and losses of probabilities that stopped a half step before the loss
    # ran in float32 (tests/engine/test_mixed_precision.py emulates it on the CPU)
    for name in ("rtmdet_tiny_coco", "retinanet_r50_fpn_coco", "fcos_r50_fpn_coco", "tood_r50_fpn_coco"):
        run = work / name
        extra = ["--cfg-options", "train_dataloader.batch_size=4", "data.synthetic.num_train=16",
                 "data.synthetic.num_val=4", f"data.synthetic.root={work / ('syn_' + name)}"]
        p = cli("train", name, "--device", DEV, "--amp", "--max-iters", 3, "--no-pretrained",
                "--work-dir", run, *extra)
        check(f"{name} --amp 3 iterations on cuda", p.returncode == 0 and len(iters(run)) == 3 and finite(run),
              f"losses {[round(e.get('loss', float('nan')), 3) for e in iters(run)]}")

    if DEV == "cpu":                         # the dry run: the rest needs a GPU
        return _report()
    default = work / "default_device"
    p = cli("train", cfg_file, "--max-iters", 2, "--work-dir", default)
    start = next((e for e in events(default) if e["type"] == "start"), {})
    check("default device is cuda when available", p.returncode == 0 and start.get("device", "").startswith(DEV),
          f"device {start.get('device')}")
    p = cli("train", cfg_file, "--device", "cuda:7", "--max-iters", 2, "--work-dir", work / "bad")
    check("--device cuda:7 refused with a message", p.returncode != 0 and "cuda:7" in p.stderr
          and "Traceback" not in p.stderr, p.stderr.strip().splitlines()[-1][:200] if p.stderr.strip() else "")

    return _report()


def _report() -> int:
    failed = [n for n, ok, _ in RESULTS if not ok]
    print(f"{len(RESULTS) - len(failed)} of {len(RESULTS)} checks passed" + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
