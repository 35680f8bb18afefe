"""A run folder's files for other tools: TensorBoard events, results.csv, PNG plots; the confusion matrix."""
from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
import torch

from detengine.confusion import confusion_matrix, confusion_matrix_per_image
from detengine.evaluation import COCO_METRIC_NAMES
from detengine.train.events import read_jsonl
from detengine.train.outputs import PLOT_FILES, RESULTS_CSV, VAL_IMAGES, ResultsCsv
from detengine.train.runner import train_from_config
from detengine.train.runs import run_summary

from .runs import tiny_tinyssd_cfg


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(run folder, its log events): 2 iterations per epoch, stopped by max_iters in epoch 2, so
    epoch 1 has a validation and epoch 2 is a partial row written at the end."""
    cfg = tiny_tinyssd_cfg(tmp_path_factory.mktemp("synthetic"))
    work_dir = tmp_path_factory.mktemp("run")

    def hook(trainer):                    # a head core that follows the epoch (TOOD's initial ATSS epochs)
        trainer.model.core.set_epoch = EPOCHS_TOLD.append
    train_from_config(cfg, epochs=2, max_iters=3, work_dir=work_dir, console=False, trainer_hook=hook)
    return work_dir, read_jsonl(work_dir / "log.jsonl")


EPOCHS_TOLD: list[int] = []


def test_a_head_core_that_follows_the_epoch_is_told_each_epoch(run):
    assert EPOCHS_TOLD == [0, 1]


def _iters(events, epoch=None):
    return [e for e in events if e["type"] == "iter" and (epoch is None or e["epoch"] == epoch)]


def test_tensorboard_holds_the_logged_scalars_and_val_images(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    work_dir, events = run
    assert list(work_dir.glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(work_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    iters = _iters(events)
    assert len(iters) == 3
    for tag, key in [("train/loss", "loss"), ("train/lr", "lr"), ("train/grad_norm", "grad_norm")]:
        logged = {s.step: s.value for s in acc.Scalars(tag)}
        assert logged == {e["global_step"]: pytest.approx(e[key], rel=1e-6) for e in iters}
    for term in iters[0]["losses"]:
        logged = {s.step: s.value for s in acc.Scalars(f"train/{term}")}
        assert logged == {e["global_step"]: pytest.approx(e["losses"][term], rel=1e-6, abs=1e-9) for e in iters}
    (evaluation,) = [e for e in events if e["type"] == "eval"]
    for name in COCO_METRIC_NAMES:
        (scalar,) = acc.Scalars(f"val/{name}")
        assert (scalar.step, scalar.value) == (1, pytest.approx(evaluation["metrics"][name], rel=1e-6, abs=1e-9))
    assert sorted(acc.Tags()["images"]) == [f"val_images/{k}" for k in range(VAL_IMAGES)]
    image = acc.Images("val_images/0")[0]
    assert image.step == 1 and (image.width, image.height) == (128, 128)


def test_results_csv_has_a_row_per_epoch_with_the_mean_losses(run):
    work_dir, events = run
    with open(work_dir / RESULTS_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]            # epoch 2: the partial row, written at the end
    (evaluation,) = [e for e in events if e["type"] == "eval"]
    for row, epoch in zip(rows, (0, 1)):
        iters = _iters(events, epoch)
        assert float(row["train/loss"]) == pytest.approx(np.mean([e["loss"] for e in iters]), rel=1e-12)
        for term in iters[0]["losses"]:
            assert float(row[f"train/{term}"]) == pytest.approx(np.mean([e["losses"][term] for e in iters]), rel=1e-12)
        assert float(row["lr"]) == iters[-1]["lr"]
    assert [float(rows[0][f"val/{n}"]) for n in COCO_METRIC_NAMES] == \
        [pytest.approx(evaluation["metrics"][n]) for n in COCO_METRIC_NAMES]
    assert all(rows[1][f"val/{n}"] == "" for n in COCO_METRIC_NAMES)


def test_plots_are_written_at_the_end_and_the_runs_list_names_them(run):
    work_dir, _ = run
    for name in PLOT_FILES:
        image = cv2.imread(str(work_dir / name))
        assert image is not None, name
        assert image.shape[0] >= 200 and image.shape[1] >= 200 and image.std() > 0, name
    assert set(run_summary(work_dir).outputs) == {*PLOT_FILES, RESULTS_CSV, "tensorboard"}


def test_results_csv_writes_a_stopped_epoch_and_keeps_rows_on_resume(tmp_path):
    path = tmp_path / RESULTS_CSV

    def it(epoch, k, loss, last=False):
        return {"type": "iter", "epoch": epoch, "iter": k, "loss": loss, "losses": {"a": loss}, "lr": 0.1 * (k + 1),
                "last_in_epoch": last}

    first = ResultsCsv(path)
    for e in (it(0, 0, 1.0), it(0, 1, 3.0, last=True), it(1, 0, 5.0)):
        first(e)
    assert path.read_text().splitlines()[1:] == ["1,2.0,2.0,0.2" + "," * len(COCO_METRIC_NAMES)]
    first({"type": "stop"})
    assert path.read_text().splitlines()[2] == "2,5.0,5.0,0.1" + "," * len(COCO_METRIC_NAMES)
    resumed = ResultsCsv(path)                                    # resumed in its folder: epoch 2 again
    resumed(it(1, 0, 7.0, last=True))
    assert [line.split(",")[:2] for line in path.read_text().splitlines()[1:]] == [["1", "2.0"], ["2", "7.0"]]


# ---------------------------------------------------------------- confusion matrix

def _boxes(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


def test_confusion_matrix_counts_a_tp_an_fp_a_miss_and_a_wrong_class():
    gt_boxes = _boxes([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]])
    gt_labels = torch.tensor([0, 0, 1])
    pred_boxes = _boxes([[0, 0, 10, 10],          # class 0 on GT 0 (class 0): correct
                     [20, 0, 30, 11],         # class 1 on GT 1 (class 0): wrong class
                     [60, 60, 70, 70],        # class 1 on nothing: false positive
                     [40, 0, 50, 10],         # on GT 2, but below the score threshold: GT 2 missed
                     [1, 0, 10, 10]])         # class 0 on GT 0 again, less overlap: false positive
    pred_labels = torch.tensor([0, 1, 1, 1, 0])
    pred_scores = torch.tensor([0.9, 0.8, 0.7, 0.2, 0.6])
    matrix = confusion_matrix_per_image(pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels, 2)
    expected = np.array([[1, 0, 1],           # predicted 0: true 0, background
                         [1, 0, 1],           # predicted 1: on a true 0, on background
                         [0, 1, 0]])          # missed: the class-1 GT
    np.testing.assert_array_equal(matrix, expected)


@pytest.mark.parametrize("num_pred,num_gt", [(0, 0), (0, 2), (2, 0)])
def test_confusion_matrix_with_nothing_on_one_side(num_pred, num_gt):
    boxes = _boxes([[0, 0, 10, 10], [20, 20, 30, 30]])
    matrix = confusion_matrix_per_image(boxes[:num_pred], torch.tensor([0, 1])[:num_pred],
                                        torch.tensor([0.9, 0.9])[:num_pred], boxes[:num_gt],
                                        torch.tensor([1, 1])[:num_gt], 2)
    expected = np.zeros((3, 3), np.int64)
    expected[2, 1] = num_gt                   # every GT missed
    expected[[0, 1][:num_pred], 2] = 1        # every detection on background
    np.testing.assert_array_equal(matrix, expected)
    assert confusion_matrix([], 2).shape == (3, 3)


def test_assignment_statistics_are_logged_under_stable_names(run):
    """The trainer's assign/* numbers at its logging interval: in log.jsonl, TensorBoard and
    results.csv (issue "What no tool shows", part 1)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from detengine.assign_stats import stat_names
    work_dir, events = run
    logged = [e for e in _iters(events) if "assign" in e]
    assert logged and logged[0]["global_step"] == 0
    stats = logged[0]["assign"]
    levels = sum(k.startswith("assign/pos_level_") for k in stats)
    assert levels >= 2 and set(stats) <= set(stat_names(levels))
    assert {"assign/gt_zero_pos_frac", "assign/pos_per_gt_mean", "assign/num_gts"} <= set(stats)
    assert 0 <= stats["assign/gt_zero_pos_frac"] <= 1 and stats["assign/num_gts"] > 0
    acc = EventAccumulator(str(work_dir), size_guidance={"scalars": 0})
    acc.Reload()
    (first,) = [s for s in acc.Scalars("assign/gt_zero_pos_frac") if s.step == 0]
    assert first.value == pytest.approx(stats["assign/gt_zero_pos_frac"], rel=1e-6)
    with open(work_dir / RESULTS_CSV, newline="") as f:
        row = next(csv.DictReader(f))
    epoch0 = [e["assign"]["assign/pos_per_gt_mean"] for e in logged if e["epoch"] == 0]
    assert float(row["assign/pos_per_gt_mean"]) == pytest.approx(np.mean(epoch0), rel=1e-12)
