"""On a CUDA GPU: SimOTA's fast class cost (with its near-tie guard) against the formula it replaced
(mmdetection 3.3.0's (V, G, C) sum, ``tests/engine/test_sim_ota_fast.py``'s oracle), both on the GPU,
and against the same assigner on the CPU. Counts the cases whose assignment (``gt_inds``) differs.

The guard decides near ties on sums recomputed the oracle's way; on CUDA a recomputed block may be
reduced in another order than the full (V, G, C) tensor, so this is the check the CPU suite cannot
make. Prints one line per kind and a total; exits 1 if any case differs from the CUDA oracle.

    python bench/gpu_sim_ota.py [--device cuda]      (--device cpu: a dry run of the script)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detengine.assigners import SimOTAAssigner  # noqa: E402
from tests.engine.test_sim_ota_fast import KINDS, case, oracle_assign  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seeds", type=int, default=6)
    args = ap.parse_args()
    dev = torch.device(args.device)
    total = vs_oracle = vs_cpu = 0
    for kind in KINDS:
        bad_oracle = bad_cpu = n = 0
        for seed in range(args.seeds):
            for num_gt in (1, 10, 30, 100):
                cpu_inputs = case(seed, kind, num_gt)
                inputs = [t.to(dev) for t in cpu_inputs]
                got = SimOTAAssigner().assign(*inputs[:3], pred_scores=inputs[3], pred_boxes=inputs[4])
                ref = oracle_assign(SimOTAAssigner(), *inputs)
                on_cpu = SimOTAAssigner().assign(*cpu_inputs[:3], pred_scores=cpu_inputs[3],
                                                 pred_boxes=cpu_inputs[4])
                n += 1
                bad_oracle += not torch.equal(got.gt_inds.cpu(), ref["gt_inds"].cpu())
                bad_cpu += not torch.equal(got.gt_inds.cpu(), on_cpu.gt_inds)
        print(f"{kind:10s} {n} cases: {bad_oracle} differ from the {dev.type} oracle, {bad_cpu} from the CPU "
              f"assignment", flush=True)
        total, vs_oracle, vs_cpu = total + n, vs_oracle + bad_oracle, vs_cpu + bad_cpu
    print(f"SimOTA on {torch.cuda.get_device_name() if dev.type == 'cuda' else dev}: {total} cases, "
          f"{vs_oracle} differ from the oracle on the same device, {vs_cpu} from the CPU", flush=True)
    return 1 if vs_oracle else 0


if __name__ == "__main__":
    sys.exit(main())
