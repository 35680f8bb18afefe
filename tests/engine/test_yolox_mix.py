"""YOLOX's training transforms (Mosaic, RandomAffine, MixUp) and mmdetection's MultiImageMixDataset
wrapper: exact against mmdetection 3.3.0 with its random draws replayed
(fixtures/make_yolox_mix_reference.py), the warp matrix of given draws, the boxes mapped back to the
original image, and the seeded training set (same samples in any worker, the YOLOXModeSwitchHook
stage)."""
from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detengine.config import apply_cfg_options, load_config
from detengine.data.mixing import MixUp, Mosaic
from detengine.data.pipeline import MultiImageMixPipeline, build_pipeline
from detengine.data.transforms import RandomAffine, boxes_to_original
from detengine.train.data import EpochOrder, build_data, mix_dataset_of
from tests.engine.test_mix_transforms import ReplayGenerator, _ours
from tests.floats import assert_ulp_close

pytestmark = pytest.mark.usefixtures("one_thread")     # tests/engine/conftest.py

FIXTURE = Path(__file__).parent / "fixtures" / "mmdet_yolox_mix_reference.pt"
MMDET_YOLOX = Path(__file__).parent / "fixtures" / "mmdet_configs" / "yolox"


class Replay(ReplayGenerator):
    """mmdetection's recorded draws, with mmcv RandomFlip's ``np.random.choice`` (an index)."""

    def choice(self, a, size=None, replace=True, p=None):
        value = self._next("choice", 0, a if isinstance(a, int) else len(a), size)
        return int(value)


@pytest.fixture(scope="module")
def R():
    return torch.load(FIXTURE, weights_only=True)


def _opencv_hsv_rounds() -> bool:
    """Whether this machine's OpenCV turns uint8 HSV into RGB as its scalar path does, rounding.

    OpenCV 5.1's SIMD path for ``COLOR_HSV2RGB`` on uint8 depends on the CPU: on an AVX2-only AMD
    EPYC a third of all (h, s, v) come out one level below its own scalar path (an image one
    pixel wide) and below the fixture's machine, which rounded. mmdetection's
    ``YOLOXHSVRandomAug`` calls the same function, so on such a machine mmdetection's images are
    ours, and the fixture's are a level brighter in places."""
    h, s, v = np.meshgrid(np.arange(0, 180, 7), np.arange(0, 256, 5), np.arange(0, 256, 5), indexing="ij")
    hsv = np.stack([h, s, v], -1).astype(np.uint8).reshape(-1, 1, 3)
    return np.array_equal(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).reshape(-1, 3),
                          cv2.cvtColor(hsv.reshape(1, -1, 3), cv2.COLOR_HSV2RGB).reshape(-1, 3))


def _check(out: dict, expected: dict, what: str, image_atol: int = 0, base: int = 0) -> None:
    """Our results against mmdetection's output: image bytes (every pixel within ``base`` levels,
    fewer than 0.2 % ``image_atol`` more), labels, boxes within a few ULP."""
    ignore = expected["ignore"].numpy()
    diff = np.abs(out["image"].astype(np.int16) - expected["image"].numpy().astype(np.int16))
    if image_atol or base:
        assert diff.max() <= base + image_atol and (diff > base).mean() < 0.002, (
            what, diff.max(), (diff > base).mean())
    else:
        np.testing.assert_array_equal(out["image"], expected["image"].numpy(), err_msg=what)
    assert out["image"].dtype == np.uint8, what
    boxes = expected["boxes"].numpy()
    assert_ulp_close(torch.from_numpy(np.asarray(out["boxes"], np.float32).reshape(-1, 4)),
                     torch.from_numpy(boxes[~ignore]), what=what)
    np.testing.assert_array_equal(out["labels"], expected["labels"].numpy()[~ignore], err_msg=what)
    assert_ulp_close(torch.from_numpy(np.asarray(out["ignore_boxes"], np.float32).reshape(-1, 4)),
                     torch.from_numpy(boxes[ignore]), what=what)


# --------------------------------------------------------------------------- RandomAffine


AFFINE_CASES = ("yolox_s", "defaults_bgr", "big_angles_no_clip", "out_of_image")


@pytest.mark.parametrize("case", AFFINE_CASES)
def test_random_affine_matrix_image_and_boxes_equal_mmdetections(R, case):
    ref = R["RandomAffine"][case]
    transform = RandomAffine(**ref["args"])
    for i, (inp, call) in enumerate(zip(ref["inputs"], ref["calls"], strict=True)):
        h, w = inp["image"].shape[:2]
        height, width = h + transform.border[1] * 2, w + transform.border[0] * 2
        transform.rng = Replay(call["draws"])
        matrix = RandomAffine.warp_matrix(**transform.draw(height, width))     # the draws, injected
        assert matrix.dtype == np.float32
        # bit for bit on the machine that made the fixture; another CPU's float32 product of the 3x3
        # matrices may round a last bit differently (tests/floats.py), and a matrix a ULP off may move
        # a few warped pixels by one level
        assert_ulp_close(torch.from_numpy(matrix), call["matrix"], what=f"call {i}")
        same = np.array_equal(matrix, call["matrix"].numpy())
        transform.rng = Replay(call["draws"])
        out = transform(_ours(inp))
        assert not transform.rng.draws
        _check(out, call["output"], f"{case} call {i}", image_atol=0 if same else 1)
        assert out["meta"]["img_shape"] == (height, width)


def test_the_fixture_reaches_every_branch(R):
    affine = R["RandomAffine"]
    assert any(len(c["output"]["boxes"]) == 0 and len(i["boxes"]) for i, c in
               zip(affine["out_of_image"]["inputs"], affine["out_of_image"]["calls"]))          # all boxes left
    assert any(bool(c["output"]["ignore"].any()) for c in affine["defaults_bgr"]["calls"])     # ignore boxes kept
    mixup = R["MixUp"]["flip_no_clip"]["calls"]
    assert len(mixup[2]["draws"]) == 2 and mixup[2]["output"]["image"].shape[:2] == (30, 20)     # no box: unchanged
    mosaic = R["Mosaic"]["prob_no_clip_bgr"]["calls"]
    assert any(len(c["draws"]) == 4 for c in mosaic) and any(len(c["draws"]) == 6 for c in mosaic)   # prob said no
    chain = R["chain"]["yolox_s"]
    assert [len(c["draws"]) for c in chain["calls"][chain["skip_from"]:]] == [3, 3, 3]   # HSV (2) + flip (1) only


def test_random_affine_boxes_map_back_to_the_original(R):
    """The homography composes the warp: a box mapped back through the rotation / shear contains
    its original box (the bounding box of a rotated box grows), and without rotation and shear it
    is the original box again."""
    inp = R["RandomAffine"]["defaults_bgr"]["inputs"][1]
    for args, exact in ((dict(max_rotate_degree=0.0, max_shear_degree=0.0, scaling_ratio_range=(0.7, 1.3)), True),
                        (dict(max_rotate_degree=30.0, max_shear_degree=5.0, scaling_ratio_range=(0.7, 1.3)), False)):
        transform = RandomAffine(**args, max_translate_ratio=0.05, bbox_clip_border=False, rng=3)
        results = _ours(inp)
        original = results["boxes"].copy()
        out = transform(results)
        back = boxes_to_original(out["boxes"], out["meta"], clip=False)
        rows = out["meta"]["box_ids"]
        if exact:
            np.testing.assert_allclose(back, original[rows], atol=1e-3)
        else:
            assert (back[:, :2] <= original[rows][:, :2] + 1e-3).all()
            assert (back[:, 2:] >= original[rows][:, 2:] - 1e-3).all()
            assert (back[:, 2:] - back[:, :2] > original[rows][:, 2:] - original[rows][:, :2] + 0.5).any()


def test_random_affine_refuses_what_mmdetection_asserts():
    with pytest.raises(ValueError, match="max_translate_ratio"):
        RandomAffine(max_translate_ratio=1.5)
    with pytest.raises(ValueError, match="scaling_ratio_range"):
        RandomAffine(scaling_ratio_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="leaves no image"):
        RandomAffine(border=(-20, -20))(_ours({"image": torch.zeros(30, 30, 3, dtype=torch.uint8),
                                                "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                                                "ignore": torch.zeros(0, dtype=torch.bool)}))


# --------------------------------------------------------------------------- the wrapper


class _View:
    """mmdetection's in-memory data set of the fixture: ``len`` and ``[i]`` (input ``i``, loaded)."""

    def __init__(self, inputs):
        self.inputs = inputs

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> dict:
        return _ours(self.inputs[index])


def _replay_wrapper(ref: dict) -> list[dict]:
    """Each call of the fixture through our MultiImageMixPipeline, with mmdetection's draws."""
    view = _View(ref["inputs"])
    outputs = []
    for k, call in enumerate(ref["calls"]):
        skip = ref.get("skip_type_keys") if k >= ref.get("skip_from", len(ref["calls"])) else None
        pipeline = build_pipeline(ref["pipeline"], mix_dataset=dict(skip_type_keys=skip or ()))
        assert isinstance(pipeline, MultiImageMixPipeline)
        replay = Replay(call["draws"])
        for t in pipeline.transforms:
            t.rng = replay
        results = view[call["index"]]
        for t in pipeline.transforms:
            results = pipeline.run_step(t, results, view)
            assert "mix_results" not in results
        assert not replay.draws, f"call {k}: mmdetection drew more: {replay.draws}"
        outputs.append(results)
    return outputs


WRAPPER_CASES = [("Mosaic", "yolox"), ("Mosaic", "prob_no_clip_bgr"), ("MixUp", "yolox"), ("MixUp", "flip_no_clip"),
                 ("chain", "yolox_s"), ("chain", "yolox_tiny"), ("refetch", "random_crop")]


@pytest.mark.parametrize("name,case", WRAPPER_CASES)
def test_the_wrapper_and_its_transforms_equal_mmdetections(R, name, case):
    """MultiImageMixDataset[index] with the same draws: Mosaic's 3 / MixUp's drawn indexes from the
    data set, the steps in turn, YOLOX's whole train pipeline (and the steps the mode switch
    leaves), a step returning None run again on the same input."""
    ref = R[name][case]
    # YOLOX's chain converts HSV back to RGB (``YOLOXHSVRandomAug``), and its RandomAffine warp
    # matrix may be a ULP off on another CPU (as in the RandomAffine test above)
    chain = name == "chain"
    base = 0 if not chain or _opencv_hsv_rounds() else 1
    for k, (out, call) in enumerate(zip(_replay_wrapper(ref), ref["calls"], strict=True)):
        _check(out, call["output"], f"{name}/{case} call {k}", image_atol=1 if chain else 0, base=base)


def test_mosaic_and_mixup_outside_the_wrapper_say_what_they_need():
    inp = {"image": torch.zeros(20, 20, 3, dtype=torch.uint8), "boxes": torch.tensor([[1.0, 1, 9, 9]]),
           "labels": torch.tensor([0]), "ignore": torch.tensor([False])}
    for transform in (Mosaic(prob=1.0), MixUp()):
        with pytest.raises(ValueError, match="MultiImageMixDataset"):
            transform(_ours(inp))
    with pytest.raises(ValueError, match="Mosaic take\\(s\\) other images from the data set"):
        build_data({"model": {}, "train_pipeline": [dict(type="Mosaic")], "test_pipeline": []})


# --------------------------------------------------------------------------- the training set


def tiny_yolox_cfg(name: str, tmp_path: Path, *, epochs: int = 3, last: int = 1) -> dict:
    """mmdetection's own YOLOX file at 64 x 64 on a tiny synthetic set, the mode switch ``last``
    epochs before the end; the ``--cfg-options`` a user would give (``cfg_options``)."""
    cfg = load_config(MMDET_YOLOX / f"{name}.py").to_dict()
    return apply_cfg_options(cfg, cfg_options(cfg, tmp_path, epochs=epochs, last=last))


def cfg_options(cfg: dict, tmp_path: Path, *, epochs: int = 3, last: int = 1) -> dict:
    steps = [s["type"] for s in cfg["train_dataloader"]["dataset"]["pipeline"]]
    options = {"data.synthetic.root": str(tmp_path / "data"), "data.synthetic.num_train": 4,
               "data.synthetic.num_val": 1, "data.synthetic.image_size": 64,
               "train_dataloader.batch_size": 2, "train_dataloader.num_workers": 0,
               "train_cfg.max_epochs": epochs, "custom_hooks.0.num_last_epochs": last, "probe.interval": 0,
               "model.data_preprocessor.batch_augments.0.random_size_range": (64, 96),
               "test_pipeline.1.scale": (64, 64)}
    for i, kind in enumerate(steps):
        key = f"train_dataloader.dataset.pipeline.{i}"
        if kind in ("Mosaic", "MixUp"):
            options[f"{key}.img_scale"] = (64, 64)
        elif kind == "RandomAffine":
            options[f"{key}.border"] = (-32, -32)
        elif kind == "Resize":
            options[f"{key}.scale"] = (64, 64)
    return options


def test_the_training_set_reads_the_wrapper_and_switches_at_the_hooks_epoch(tmp_path):
    cfg = tiny_yolox_cfg("yolox_s_8xb8-300e_coco", tmp_path, epochs=3, last=1)
    assert mix_dataset_of(cfg)["skip_type_keys"] == ()
    bundle = build_data(cfg, seed=5)
    train = bundle.train
    names = [type(t).__name__ for t in train.pipeline.transforms]
    assert names[:3] == ["Mosaic", "RandomAffine", "MixUp"] and isinstance(train.pipeline, MultiImageMixPipeline)
    (epoch, switched), = train.stages[1:]
    assert epoch == 3 - 1 - 1                                  # mmdetection: epoch + 1 >= max_epochs - num_last_epochs
    assert [type(t).__name__ for t in switched.transforms] == names[3:]
    assert switched.skip_type_keys == ("Mosaic", "RandomAffine", "MixUp")
    train.set_epoch(epoch)
    assert train.pipeline is switched
    # a run of other length: the switch follows it
    assert build_data(cfg, seed=5, max_epochs=10).train.stages[1][0] == 8


def test_mosaic_and_mixup_draw_from_the_samples_seed_in_any_worker(tmp_path):
    """The draws (the three mosaic images, the mix-up image, the warp) come from the sample's seeded
    generator: the same sample from the set, from a pickled copy (a DataLoader worker) and from a
    fresh set (a resumed run); another epoch differs."""
    cfg = tiny_yolox_cfg("yolox_s_8xb8-300e_coco", tmp_path, epochs=300, last=15)
    train = build_data(cfg, seed=5).train
    train.set_order(EpochOrder(5, len(train)))
    first = train[2]
    mixed = {i for entry in first["meta"]["mixed"] for i in entry["image_ids"]}
    assert [e["transform"] for e in first["meta"]["mixed"]] == ["Mosaic", "MixUp"] and mixed
    worker = pickle.loads(pickle.dumps(train))
    fresh = build_data(cfg, seed=5).train
    fresh.set_order(EpochOrder(5, len(fresh)))
    for other in (worker[2], fresh[2], train[2]):
        assert torch.equal(other["image"], first["image"]) and torch.equal(other["boxes"], first["boxes"])
        assert other["meta"]["mixed"] == first["meta"]["mixed"]
    train.set_epoch(1)
    assert not torch.equal(train[2]["image"], first["image"])


def test_the_wrapper_draws_again_for_an_unreadable_sample_and_gives_up_as_mmdetection():
    """A drawn sample that cannot be loaded (None) makes the step draw its indexes again; a step
    that keeps returning None stops after max_refetch tries (mmdetection raises), never fetching
    another sample."""
    from detengine.data.errors import DatasetError
    inp = {"image": torch.full((20, 20, 3), 50, dtype=torch.uint8), "boxes": torch.tensor([[1.0, 1, 9, 9]]),
           "labels": torch.tensor([0]), "ignore": torch.tensor([False])}

    class Flaky(_View):
        def __getitem__(self, index):
            return None if index % 2 else super().__getitem__(index)

    view = Flaky([inp] * 6)
    pipeline = build_pipeline([dict(type="Mosaic", img_scale=(16, 16))], rng=0, mix_dataset={})
    out = pipeline.run_step(pipeline.transforms[0], view[0], view)
    assert out["image"].shape == (32, 32, 3) and len(out["meta"]["mixed"][0]["image_ids"]) == 3
    unreadable = build_pipeline([dict(type="Mosaic", img_scale=(16, 16))], rng=0, mix_dataset={"max_refetch": 2})
    with pytest.raises(DatasetError, match="could not load the samples it drew 2 times"):
        unreadable.run_step(unreadable.transforms[0], view[0], _NoneView())
    tiny = dict(inp, boxes=torch.tensor([[1.0, 1, 1.5, 1.5]]))
    refusing = build_pipeline([dict(type="FilterAnnotations", keep_empty=True)], rng=0, mix_dataset={"max_refetch": 3})
    with pytest.raises(DatasetError, match="FilterAnnotations returned None 3 times"):
        refusing.run_step(refusing.transforms[0], _ours(tiny), view)


class _NoneView(_View):
    def __init__(self):
        super().__init__([])

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index):
        return None
