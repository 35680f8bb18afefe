"""Anchors fitted to a dataset (issue "What no tool shows", part 3): the search's measure is the
scan's best prior IoU exactly, fitted settings never cover fewer GTs than the starting ones (else
they are not offered), a dataset of one box shape gets a prior of that shape (IoU >= 0.9), point
priors are refused with a reason, and `detengine fit-anchors` prints before / after."""
from __future__ import annotations

import json

import numpy as np
import pytest

from detengine.anchor_fit import (
    anchor_settings,
    base_levels,
    fit_anchors,
    grid_best_iou,
    gt_boxes_in_input,
    shape_best_iou,
)
from detengine.cli import main as cli_main
from detengine.cli import resolve_config
from detengine.data.project import Category
from detengine.scan import ScanItem, scan_project
from detengine.train.runner import load_cfg

CATEGORIES = [Category(1, "thing")]


def items_of(boxes_per_image: list[list[tuple]], size=(300, 300)) -> list[ScanItem]:
    h, w = size
    out, next_id = [], 1
    for i, boxes in enumerate(boxes_per_image):
        ids = list(range(next_id, next_id + len(boxes)))
        next_id += len(boxes)
        out.append(ScanItem(i, h, w, [tuple(map(float, b)) for b in boxes], [1] * len(boxes), [0] * len(boxes), ids,
                            f"/nonexistent/{i}.png"))
    return out


def random_boxes(rng, n_images=6, per_image=6, size=300):
    out = []
    for _ in range(n_images):
        wh = np.exp(rng.uniform(np.log(8), np.log(200), (per_image, 2)))
        xy = rng.uniform(0, 1, (per_image, 2)) * (size - wh)
        out.append([(x, y, x + bw, y + bh) for (x, y), (bw, bh) in zip(xy, wh, strict=True)])
    return out


@pytest.fixture(scope="module")
def ssd():
    return load_cfg(str(resolve_config("ssd300_coco")))


@pytest.mark.parametrize("name", ["ssd300_coco", "retinanet_r50_fpn_coco"])
def test_the_search_measures_the_scan_s_best_iou(name):
    cfg = load_cfg(str(resolve_config(name)))
    items = items_of(random_boxes(np.random.default_rng(1), n_images=3), size=(320, 400))
    kind, gen = anchor_settings(cfg["model"])
    scan = scan_project(items, cfg, CATEGORIES)
    measured = grid_best_iou(gt_boxes_in_input(items, cfg), base_levels(kind, gen))
    np.testing.assert_allclose(measured, scan.rows[:, 0], atol=1e-5)


@pytest.mark.parametrize("seed", [1])
def test_fitted_settings_never_cover_fewer_gts(ssd, seed):
    items = items_of(random_boxes(np.random.default_rng(seed)))
    fit = fit_anchors(items, ssd, CATEGORIES, seed=seed, max_iter=8)
    assert fit.before_coverage.gts == fit.after_coverage.gts == 36
    if fit.improved:
        assert fit.after_coverage.covered >= fit.before_coverage.covered
        assert "min_sizes=" in fit.snippet
    else:
        assert "basesize_ratio_range=(0.15, 0.9)" in fit.snippet          # the config's own settings


def test_one_box_shape_gets_a_prior_of_that_shape(ssd):
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 230, (30, 2))
    items = items_of([[(x, y, x + 60, y + 30) for x, y in xy[k:k + 5]] for k in range(0, 30, 5)])
    fit = fit_anchors(items, ssd, CATEGORIES, seed=0, max_iter=12)  # IoU 0.97 from 12 generations on
    best = shape_best_iou(np.array([[60.0, 30.0]]), np.concatenate(fit.shapes_after))[0]
    assert best >= 0.9 and fit.improved
    assert fit.after_coverage.mean_best_iou > fit.before_coverage.mean_best_iou


def test_point_priors_are_refused_with_a_reason():
    cfg = load_cfg(str(resolve_config("rtmdet_tiny_coco")))
    with pytest.raises(ValueError, match="point priors"):
        anchor_settings(cfg["model"])


def test_cli_prints_before_and_after(tmp_path, capsys):
    rng = np.random.default_rng(5)
    images, anns = [], []
    for i, boxes in enumerate(random_boxes(rng, n_images=4, per_image=4), start=1):
        images.append({"id": i, "file_name": f"{i}.png", "width": 300, "height": 300, "detscope_split": "train"})
        anns += [{"id": len(anns) + 1, "image_id": i, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                  "area": (x2 - x1) * (y2 - y1), "iscrowd": 0} for x1, y1, x2, y2 in boxes]
    path = tmp_path / "data.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}))
    assert cli_main(["fit-anchors", str(path), "--config", "ssd300_coco", "--iters", "8", "--split", "all"]) == 0
    out = capsys.readouterr().out
    assert "4 images (all), 16 GTs" in out and "best IoU >= 0.5" in out and "anchor_generator=dict(" in out
    # the dataset as --data (as train / eval take it): the same search, the same output
    assert cli_main(["fit-anchors", "--config", "ssd300_coco", "--data", str(path), "--iters", "8", "--split", "all"]) == 0
    assert capsys.readouterr().out == out
    for argv, said in ((["--config", "ssd300_coco"], "no dataset given"),
                       ([str(path), "--data", str(tmp_path / "other.json"), "--config", "ssd300_coco"], "two datasets")):
        with pytest.raises(SystemExit, match=said):
            cli_main(["fit-anchors", *argv])
