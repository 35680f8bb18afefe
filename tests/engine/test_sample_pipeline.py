"""The augmented sample the trainer sees (issue 20, part 2): the Debug dock's "Training sample"
is the trainer's own sample, and the assignment on it is the trainer's, exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from detengine.api import (
    AnnotationProject,
    ImageTracer,
    class_map,
    load_cfg,
    resolve_config,
    sample_project,
    trace_sample,
    training_sample,
    training_set,
)
from detengine.data.project import split_indices, write_split
from detengine.models.builder import build_detector
from detengine.train.data import EpochOrder, build_data
from detengine.train.trainer import Trainer, TrainSettings

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return AnnotationProject.open(sample_project(tmp_path_factory.mktemp("home")))


def cfg_of(name: str, num_classes: int) -> dict:
    cfg = load_cfg(str(resolve_config(name)))
    cfg["model"] = dict(cfg["model"], bbox_head=dict(cfg["model"]["bbox_head"], num_classes=num_classes))
    return cfg


def trainer_set(cfg, project, seed, tmp_path):
    """The trainer's data set as the window's Train button makes it: the split's train.json, then
    ``detengine train CONFIG --data train.json --images ROOT`` (build_data)."""
    train, _val = split_indices(project)
    ann = write_split(project, train, tmp_path / "train.json")
    return build_data(cfg, str(ann), images=str(project.image_root), seed=seed)


def view_trace(cfg, project, image, seed, epoch, model=None):
    ts = training_sample(cfg, project, image, seed=seed, epoch=epoch)
    tracer = ImageTracer(cfg, num_classes=len(project.categories), model=model)
    trace, ids = trace_sample(tracer, ("train", image, seed, epoch), ts, class_map(None, project.categories))
    return ts, trace, ids


def test_the_stages_follow_the_train_pipeline_and_end_at_the_network_input(project):
    cfg = cfg_of("rtmdet_tiny_coco", len(project.categories))
    ts = training_sample(cfg, project, 3, seed=0, epoch=1)
    names = [s.name for s in ts.stages]
    assert names == ["original", "CachedMosaic", "RandomResize", "RandomCrop", "YOLOXHSVRandomAug", "RandomFlip",
                     "Pad", "CachedMixUp"]
    record = project.images[3]
    first = ts.stages[0]
    assert first.size == (record.width, record.height)
    own = [b for b in record.boxes if not b.iscrowd]
    np.testing.assert_allclose(first.boxes, [b.xyxy for b in own], atol=1e-4)
    assert any(note.startswith("mixed in:") for note in ts.stages[1].notes)      # the mosaic took 3 others
    final = ts.final
    assert final.image.dtype == np.uint8 and tuple(ts.batch["images"].shape[-2:]) == final.image.shape[:2]
    np.testing.assert_array_equal(ts.batch["gt_boxes"][0].numpy(), final.boxes)  # the last stage is traced
    assert len(ts.box_ids) == len(final.boxes)
    assert {i for i in ts.box_ids if i >= 0} <= {b.id for b in own}
    assert [i for i, r in zip(ts.box_ids, final.box_rows) if r < 0] == [-1] * int((final.box_rows < 0).sum())
    again = training_sample(cfg, project, 3, seed=0, epoch=1)
    assert torch.equal(again.sample["image"], ts.sample["image"])                # seeded: the same sample
    other = training_sample(cfg, project, 3, seed=1, epoch=1)
    assert not (other.final.image.shape == final.image.shape and np.array_equal(other.final.image, final.image))


def test_the_sample_is_the_trainers_dataset_item(project, tmp_path):
    """seed / epoch / index: the trainer's data set (the DataLoader fetches ``train_set[index]``
    in ``set_epoch(epoch)`` with the Trainer's EpochOrder) gives the same tensors."""
    cfg = cfg_of("rtmdet_tiny_coco", len(project.categories))
    bundle = trainer_set(cfg, project, 5, tmp_path)
    bundle.train.set_order(EpochOrder(5, len(bundle.train)))
    bundle.train.set_epoch(2)
    for image in (0, 7):
        ts = training_sample(cfg, project, image, seed=5, epoch=2)
        item = bundle.train[ts.index]
        assert torch.equal(item["image"], ts.sample["image"])
        np.testing.assert_array_equal(item["boxes"], ts.sample["boxes"])
        np.testing.assert_array_equal(item["labels"], ts.sample["labels"])


def test_the_views_assignment_is_the_trainers_loss_path(project, tmp_path):
    """SSD300 (Expand, MinIoURandomCrop, Resize, Flip, PhotoMetricDistortion): the Trainer's own
    first step of an epoch, batch 1, captured inside ``loss_from_outputs``; the view's trace of
    the training sample of that index, epoch and seed assigns exactly the same."""
    seed, epoch = 3, 1
    cfg = cfg_of("ssd300_coco", len(project.categories))
    bundle = trainer_set(cfg, project, seed, tmp_path)
    torch.manual_seed(seed)
    model = build_detector(dict(cfg["model"]))
    trainer = Trainer(model, bundle.train, bundle.collate, settings=TrainSettings(seed=seed, batch_size=1,
                                                                                 max_epochs=epoch + 1),
                      work_dir=tmp_path / "run", device="cpu")
    trainer.epoch = epoch
    captured = {}
    loss_from_outputs = model.loss_from_outputs

    def spy(batch, outputs, trace_index=None, across_ranks=False):
        losses, trace = loss_from_outputs(batch, outputs, trace_index=0, across_ranks=across_ranks)
        captured.update(batch=batch, trace=trace)
        return losses, trace

    model.loss_from_outputs = spy
    trainer.step()
    index = trainer.order(epoch)[0]                      # the dataset index of that first step
    image_id = bundle.train.dataset.image_ids[index]
    image = next(i for i, im in enumerate(project.images) if im.id == image_id)
    ts, trace, ids = view_trace(cfg, project, image, seed, epoch)
    assert ts.index == index
    assert torch.equal(captured["batch"]["images"].cpu(), ts.batch["images"])
    theirs, ours = captured["trace"], trace.trace
    assert len(ours.gt_boxes) == len(theirs.gt_boxes) > 0
    assert torch.equal(ours.gt_boxes, theirs.gt_boxes.cpu()) and torch.equal(ours.gt_labels, theirs.gt_labels.cpu())
    assert torch.equal(ours.assign_result.gt_inds, theirs.assign_result.gt_inds.cpu())
    assert torch.equal(ours.targets.labels, theirs.targets.labels.cpu())


def test_rtmdet_mosaic_mixup_assignment_with_the_model_equals_the_detectors_loss(project, tmp_path):
    """RTMDet (CachedMosaic, CachedMixUp; the dynamic soft-label assigner weighs the model's
    predictions): the trainer's data set item, collated and put through the detector's loss
    (eval mode, as the views run the model) assigns as the view's trace with that model."""
    seed, epoch = 0, 1
    cfg = cfg_of("rtmdet_tiny_coco", len(project.categories))
    torch.manual_seed(0)
    model = build_detector(dict(cfg["model"])).eval()
    image = 11
    ts, trace, ids = view_trace(cfg, project, image, seed, epoch, model=model)
    data = training_set(cfg, project, image, seed=seed)
    data.train_set.set_epoch(epoch)
    batch = data.collate([data.train_set[ts.index]])
    with torch.no_grad():
        _losses, theirs = model.loss(batch, trace_index=0)
    ours = trace.trace
    assert ts.stages[1].name == "CachedMosaic" and len(ours.gt_boxes) == len(theirs.gt_boxes) > 0
    assert any(ts.box_ids[k] == -1 for k in ids if k < len(ts.box_ids))   # boxes mixed in are traced too
    assert torch.equal(ours.gt_labels, theirs.gt_labels)
    assert torch.equal(ours.assign_result.gt_inds, theirs.assign_result.gt_inds)
    assert torch.equal(ours.targets.labels, theirs.targets.labels)
    assert ours.predictions_source == "given"                # the model's own outputs


def test_an_image_outside_the_train_split_is_said_so(project):
    cfg = cfg_of("ssd300_coco", len(project.categories))
    _train, val = split_indices(project)
    ts = training_sample(cfg, project, val[0], seed=0)
    assert not ts.in_split and "not in the train split" in ts.notes[0]
    assert project.images[val[0]].id == ts.image_id or ts.attempt > 0


def test_a_refused_sample_is_the_trainers_refetch_and_said_so(project):
    """RandomCrop (RTMDet, after its PipelineSwitchHook: no mosaic) leaves no box of an image
    without boxes: the trainer fetches another sample; so does the view, and it says so."""
    import copy
    bare = copy.deepcopy(project)
    bare.images[5].boxes = []
    cfg = cfg_of("rtmdet_tiny_coco", len(project.categories))
    ts = training_sample(cfg, bare, 5, seed=0, epoch=285)
    assert ts.pipeline_stage == 1 and "CachedMosaic" not in [s.name for s in ts.stages]
    assert ts.attempt > 0 and ts.image_id != bare.images[5].id
    assert ts.notes and "RandomCrop left no box" in ts.notes[0]
    assert ts.stages[0].notes[0].startswith("fetched instead")


def test_yolox_stages_are_its_mosaic_affine_and_mixup_until_the_mode_switch(project):
    """YOLOX-s (mmdetection's pipeline in its MultiImageMixDataset, here at 128 x 128): Mosaic and
    MixUp take images of the data set and say which, RandomAffine brings the 2x mosaic back to
    img_scale; from YOLOXModeSwitchHook's epoch (284 of 300) those three are skipped."""
    from detengine.config import apply_cfg_options
    cfg = cfg_of("yolox_s_coco", len(project.categories))
    small = {"train_dataloader.dataset.pipeline.0.img_scale": (128, 128),
             "train_dataloader.dataset.pipeline.1.border": (-64, -64),
             "train_dataloader.dataset.pipeline.2.img_scale": (128, 128),
             "train_dataloader.dataset.pipeline.5.scale": (128, 128)}
    cfg = apply_cfg_options(cfg, small)
    ts = training_sample(cfg, project, 3, seed=0, epoch=0)
    assert [s.name for s in ts.stages] == ["original", "Mosaic", "RandomAffine", "MixUp", "YOLOXHSVRandomAug",
                                           "RandomFlip", "Resize", "Pad", "FilterAnnotations"]
    mosaic, affine, mixup = ts.stages[1:4]
    assert mosaic.size == (256, 256) and affine.size == mixup.size == (128, 128)
    assert any(n.startswith("mixed in:") for n in mosaic.notes) and any(n.startswith("mixed in:") for n in mixup.notes)
    np.testing.assert_array_equal(ts.batch["gt_boxes"][0].numpy(), ts.final.boxes)
    assert ts.pipeline_stage == 0 and len(ts.box_ids) == len(ts.final.boxes)
    late = training_sample(cfg, project, 3, seed=0, epoch=300 - 15 - 1)
    assert late.pipeline_stage == 1
    assert [s.name for s in late.stages] == ["original", "YOLOXHSVRandomAug", "RandomFlip", "Resize", "Pad",
                                             "FilterAnnotations"]
