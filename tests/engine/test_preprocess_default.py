"""The network input when a config's ``data_preprocessor`` gives no ``mean`` / ``std`` (mmdetection's
YOLOX files), or gives them without ``bgr_to_rgb``: mmdetection's ``DetDataPreprocessor`` then does
no normalisation and keeps the loader's BGR order (mmengine's ``ImgDataPreprocessor`` defaults
``mean=None, std=None, bgr_to_rgb=False``). ``fixtures/mmdet_preprocess_reference.pt`` holds what
the real mmdetection 3.3.0 made from a PNG (make_mmdet_preprocess_reference.py); DetScope's loader,
test pipeline and collate must give the same tensor, bit for bit."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detengine.builder import ConfigBuildError
from detengine.data.collate import collate
from detengine.data.folder import read_image
from detengine.train.data import pipelines_for

FIXTURE = Path(__file__).parent / "fixtures" / "mmdet_preprocess_reference.pt"


@pytest.fixture(scope="module")
def R():
    return torch.load(FIXTURE, weights_only=True)


def _cfg(pre: dict) -> dict:
    io = [dict(type="LoadImageFromFile"), dict(type="PackDetInputs")]
    return {"model": {"data_preprocessor": pre}, "train_pipeline": io, "test_pipeline": io}


def _input(pre: dict, image: np.ndarray, train: bool = False) -> torch.Tensor:
    h, w = image.shape[:2]
    results = {"image": image, "boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64),
               "ignore_boxes": np.zeros((0, 4), np.float32), "meta": {"ori_shape": (h, w), "img_shape": (h, w)}}
    pipeline = pipelines_for(_cfg(pre))[0 if train else 1]
    return collate([pipeline(results)], size_divisor=pre.get("pad_size_divisor"))["images"]


@pytest.mark.parametrize("case", ["no_mean_std", "mean_std_no_order", "bgr_to_rgb"])
def test_the_input_is_mmdetections_from_the_same_png(R, case, tmp_path):
    rgb = R["image_rgb"].numpy()
    path = tmp_path / "image.png"
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))
    image = read_image(path)                          # DetScope's loader: RGB
    assert np.array_equal(image, rgb)
    ref = R["cases"][case]
    for train in (False, True):
        ours = _input(ref["data_preprocessor"], image, train)
        assert ours.shape == ref["inputs"].shape
        assert torch.equal(ours, ref["inputs"]), (case, train)


def test_no_mean_std_is_the_raw_bgr_pixels():
    """mmengine/model/base_model/data_preprocessor.py, ImgDataPreprocessor: ``mean is None`` ->
    ``_enable_normalize = False``; ``bgr_to_rgb=False`` -> no channel swap; pad with 0."""
    image = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    out = _input({"type": "DetDataPreprocessor", "pad_size_divisor": 4}, image)
    expected = torch.zeros(1, 3, 8, 8)
    expected[0, :, :5, :7] = torch.from_numpy(image[..., ::-1].astype(np.float32).transpose(2, 0, 1).copy())
    assert torch.equal(out, expected)
    both_none = _input({"type": "DetDataPreprocessor", "mean": None, "std": None, "pad_size_divisor": 4}, image)
    assert torch.equal(both_none, expected)
    rgb = _input({"type": "DetDataPreprocessor", "bgr_to_rgb": True, "pad_size_divisor": 4}, image)
    assert torch.equal(rgb, expected[:, [2, 1, 0]])


def test_mean_without_std_is_refused_as_mmengine_asserts():
    with pytest.raises(ConfigBuildError, match="mean without std"):
        pipelines_for(_cfg({"type": "DetDataPreprocessor", "mean": [1.0, 2.0, 3.0]}))
    with pytest.raises(ConfigBuildError, match="std without mean"):
        pipelines_for(_cfg({"type": "DetDataPreprocessor", "std": [1.0, 2.0, 3.0]}))


def test_every_shipped_config_says_its_normalisation_out():
    """No shipped config leans on the default: each writes mean, std and bgr_to_rgb."""
    from detengine.config import load_config
    configs = sorted((Path(__file__).resolve().parents[2] / "resources" / "configs").glob("*.py"))
    assert len(configs) >= 10
    for path in configs:
        pre = load_config(path).to_dict()["model"]["data_preprocessor"]
        assert {"mean", "std", "bgr_to_rgb"} <= set(pre), path.name
