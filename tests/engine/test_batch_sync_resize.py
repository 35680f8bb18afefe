"""``data_preprocessor.batch_augments = [BatchSyncRandomResize(...)]`` (mmdetection's YOLOX files):
every ``interval`` iterations a new input size is drawn in ``random_size_range`` in steps of
``size_divisor`` (the first size is the input's own), the training batch is resized to it
(bilinear) and its boxes scaled; the same seed gives the same sizes, a resumed run continues
them, evaluation never resizes. mmdetection 3.3.0's class is
mmdet/models/data_preprocessors/data_preprocessor.py ``BatchSyncRandomResize``."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from detengine.builder import ConfigBuildError
from detengine.config import load_config
from detengine.models import build_detector
from detengine.train.batch_augments import BatchSyncRandomResize, build_batch_augments

MMDET_FILES = Path(__file__).parent / "fixtures" / "mmdet_configs" / "yolox"

pytestmark = pytest.mark.usefixtures("one_thread")     # tests/engine/conftest.py


def _batch(h=64, w=96, n=2):
    g = torch.Generator().manual_seed(0)
    return {"images": torch.rand(n, 3, h, w, generator=g),
            "gt_boxes": [torch.tensor([[4.0, 8.0, 40.0, 60.0]]), torch.tensor([[10.0, 2.0, 90.0, 30.0],
                                                                                [0.0, 0.0, 8.0, 8.0]])][:n],
            "gt_labels": [torch.tensor([1]), torch.tensor([0, 2])][:n],
            "gt_boxes_ignore": [torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.zeros(0, 4)][:n],
            "metas": [{"img_shape": (60, 90), "pad_shape": (64, 96), "batch_input_shape": (h, w)} for _ in range(n)]}


def test_the_first_size_is_the_inputs_and_a_new_one_comes_every_interval():
    aug = BatchSyncRandomResize((64, 160), interval=3, size_divisor=32, seed=5)
    assert aug.random_size_range == (2, 5)
    sizes = []
    for step in range(9):
        out = aug(_batch(), step)
        sizes.append(tuple(out["images"].shape[-2:]))
    assert sizes[:3] == [(64, 96)] * 3                         # drawn after step 2: (2 + 1) % 3 == 0
    assert sizes[3] == sizes[4] == sizes[5] and sizes[6] == sizes[7] == sizes[8]
    for h, w in sizes:
        assert h % 32 == 0 and 64 <= h <= 160
        assert w == 32 * int(96 / 64 * (h // 32))             # the batch's aspect ratio, rounded down


def test_the_batch_is_resized_bilinearly_and_its_boxes_and_shapes_scale():
    aug = BatchSyncRandomResize((64, 64), interval=1, size_divisor=32)
    batch = _batch()
    first = aug(batch, 0)                                       # the input's size; then 64 x int(1.5 * 2) * 32
    assert first["images"] is batch["images"] and aug.input_size == (64, 96)
    small = _batch(h=128, w=192)
    out = aug(small, 1)
    assert tuple(out["images"].shape) == (2, 3, 64, 96)
    torch.testing.assert_close(out["images"], F.interpolate(small["images"], size=(64, 96), mode="bilinear",
                                                            align_corners=False), rtol=0, atol=0)
    assert torch.equal(out["gt_boxes"][1], small["gt_boxes"][1] * 0.5)
    assert torch.equal(out["gt_boxes_ignore"][0], small["gt_boxes_ignore"][0] * 0.5)
    assert torch.equal(out["gt_labels"][1], small["gt_labels"][1])
    assert out["metas"][0]["img_shape"] == (30, 45) and out["metas"][0]["pad_shape"] == (32, 48)
    assert out["metas"][0]["batch_input_shape"] == (64, 96)
    assert small["gt_boxes"][1][0, 2] == 90.0                  # the caller's batch is not changed


def test_the_same_seed_gives_the_same_sizes_and_the_state_resumes():
    def sizes(aug, steps):
        return [tuple(aug(_batch(), s)["images"].shape[-2:]) for s in steps]
    a, b, c = (BatchSyncRandomResize((64, 320), interval=1, seed=s) for s in (1, 1, 2))
    assert sizes(a, range(12)) == sizes(b, range(12)) != sizes(c, range(12))
    assert len(set(sizes(BatchSyncRandomResize((64, 320), interval=1, seed=1), range(12)))) > 2
    d = BatchSyncRandomResize((64, 320), interval=1, seed=1)
    sizes(d, range(5))
    e = BatchSyncRandomResize((64, 320), interval=1, seed=99)
    e.load_state_dict(copy.deepcopy(d.state_dict()))
    assert sizes(d, range(5, 12)) == sizes(e, range(5, 12))


def test_mmdetections_yolox_files_build_and_other_batch_augments_are_refused():
    cfg = load_config(MMDET_FILES / "yolox_s_8xb8-300e_coco.py").to_dict()
    with torch.device("meta"):
        build_detector(cfg["model"])
    (aug,) = build_batch_augments(cfg["model"], seed=0)
    assert (aug.random_size_range, aug.interval, aug.size_divisor) == ((15, 25), 10, 32)
    pre = cfg["model"]["data_preprocessor"]
    for bad, match in ((dict(type="BatchFixedSizePad", size=(640, 640)), "BatchFixedSizePad"),
                       (dict(type="BatchSyncRandomResize", random_size_range=(480, 800), ratio=2), "ratio"),
                       (dict(type="BatchSyncRandomResize", interval=2), "random_size_range")):
        with pytest.raises(ConfigBuildError, match=f"model.data_preprocessor.batch_augments.*{match}"):
            build_detector(dict(cfg["model"], data_preprocessor=dict(pre, batch_augments=[bad])))


def _cfg(tmp_path, interval=1, size_range=(64, 128)):
    """YOLOX-tiny with mmdetection's data_preprocessor, its batch augment made small, and a plain
    64 x 64 train pipeline (no Mosaic / RandomAffine: the sizes the augment starts from are known)."""
    from detengine.shipped import find_config
    from detengine.train.runner import load_cfg
    cfg = load_cfg(find_config("yolox_tiny_coco"))
    theirs = load_config(MMDET_FILES / "yolox_tiny_8xb8-300e_coco.py").to_dict()["model"]["data_preprocessor"]
    theirs["batch_augments"][0].update(random_size_range=size_range, interval=interval)
    cfg["model"] = dict(cfg["model"], data_preprocessor=theirs)
    cfg["data"] = {"default": "synthetic", "synthetic": {"root": str(tmp_path / "data"), "num_train": 8,
                                                          "num_val": 1, "image_size": 64, "seed": 1}}
    cfg["train_pipeline"] = cfg["train_pipeline_stage2"] = cfg["test_pipeline"][:1] + [
        dict(type="LoadAnnotations", with_bbox=True), dict(type="Resize", scale=(64, 64), keep_ratio=True),
        dict(type="Pad", pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0))), dict(type="PackDetInputs")]
    cfg["train_dataloader"] = {"batch_size": 2, "num_workers": 0}
    cfg["train_cfg"] = dict(cfg["train_cfg"], max_epochs=2, val_interval=10)
    cfg["probe"] = {"interval": 0}
    return cfg


def _train(cfg, tmp_path, name, max_iters, seed=0, resume=None):
    """(per step: the batch's (h, w) before and after the augment, its boxes before and after; events)."""
    from detengine.train.events import EventBus
    from detengine.train.runner import train_from_config
    seen = []

    class Recording:                        # the trainer's augment, seen from outside (its state saved)
        def __init__(self, augment):
            self.augment = augment

        def __call__(self, batch, step):
            out = self.augment(batch, step)
            seen.append((tuple(batch["images"].shape[-2:]), tuple(out["images"].shape[-2:]),
                         torch.cat(batch["gt_boxes"]), torch.cat(out["gt_boxes"])))
            return out

        def __getattr__(self, name):
            return getattr(self.augment, name)

    def hook(trainer):
        trainer.batch_augments = [Recording(a) for a in trainer.batch_augments]
    events = EventBus()
    cfg = dict(cfg, randomness={"seed": seed})
    train_from_config(cfg, max_iters=max_iters, work_dir=tmp_path / name, events=events, console=False,
                      pretrained=False, trainer_hook=hook, resume=resume)
    return seen, events


def test_a_yolox_run_trains_at_the_drawn_sizes_with_its_boxes_scaled(tmp_path):
    cfg = _cfg(tmp_path)
    seen, events = _train(cfg, tmp_path, "a", max_iters=6)
    shapes = [out for _, out, _, _ in seen]
    assert shapes[0] == (64, 64) and len(set(shapes)) > 1
    assert all(h == w and h in (64, 96, 128) for h, w in shapes)
    for (h, w), (oh, ow), boxes, out in seen:
        assert (h, w) == (64, 64)
        torch.testing.assert_close(out, boxes * torch.tensor([ow / w, oh / h, ow / w, oh / h]))
    iters = [e for e in events.history if e["type"] == "iter"]
    assert len(iters) == 6 and all(torch.isfinite(torch.tensor(e["loss"])) for e in iters)
    notes = " | ".join(e.get("message", "") for e in events.history if e["type"] == "data")
    assert "BatchSyncRandomResize(64..128 step 32, every 1 iterations)" in notes
    again, _ = _train(cfg, tmp_path, "b", max_iters=6)
    assert [out for _, out, _, _ in again] == shapes               # the same seed: the same sizes
    other, _ = _train(cfg, tmp_path, "d", max_iters=6, seed=3)
    assert [out for _, out, _, _ in other] != shapes
    # stopped after 3 steps (mid-epoch: last.pth) and resumed: the next sizes as in the run without a stop
    _train(cfg, tmp_path, "c", max_iters=3)
    rest, _ = _train(cfg, tmp_path, "c", max_iters=6, resume=str(tmp_path / "c" / "last.pth"))
    assert [out for _, out, _, _ in rest] == shapes[3:]


def test_mmdetections_yolox_file_evaluates_a_checkpoint(tmp_path):
    """``detengine eval`` with mmdetection's own file: its test pipeline (Resize 416, Pad 114) and
    network, no batch augment (evaluation never resizes); its train pipeline and schedule are not
    built to evaluate."""
    from detengine.cli import main as cli_main
    _train(_cfg(tmp_path), tmp_path, "run", max_iters=1)
    data = [f"data.synthetic.{k}={v}" for k, v in (("root", tmp_path / "data"), ("num_train", 8), ("num_val", 1),
                                                     ("image_size", 64), ("seed", 1))]
    out = tmp_path / "eval"
    assert cli_main(["eval", str(MMDET_FILES / "yolox_tiny_8xb8-300e_coco.py"), str(tmp_path / "run" / "last.pth"),
                     "--device", "cpu", "--work-dir", str(out), "--cfg-options", *data]) in (0, None)
    assert list(out.glob("eval_*.json"))


def _rank_sizes(rank: int, init_file: str, results) -> None:
    import torch.distributed as tdist
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        aug = BatchSyncRandomResize((64, 320), interval=2, seed=10 + rank)     # the ranks' generators differ
        results[rank] = [tuple(aug(_batch(), s)["images"].shape[-2:]) for s in range(10)]
    finally:
        tdist.destroy_process_group()


def test_every_rank_trains_rank_0s_size(tmp_path):
    """Under a real 2-process gloo group rank 0 draws and the other takes its size (as mmdetection's
    barrier + broadcast), whatever the other rank's own generator would have drawn."""
    import torch.multiprocessing as mp
    results = mp.Manager().dict()
    mp.spawn(_rank_sizes, args=(str(tmp_path / "init"), results), nprocs=2, join=True)
    alone = BatchSyncRandomResize((64, 320), interval=2, seed=10)
    assert results[0] == results[1] == [tuple(alone(_batch(), s)["images"].shape[-2:]) for s in range(10)]
    assert len(set(results[0])) > 1
