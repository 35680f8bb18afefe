"""One undecodable image does not end a training run: it is skipped with a counted warning; and a
run that fails after a step still leaves last.pth, said in the log."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from detengine.data import ensure_synthetic_dataset
from detengine.train.events import EventBus, read_jsonl
from detengine.train.runner import train_from_config

from .runs import tiny_tinyssd_cfg


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cfg = tiny_tinyssd_cfg(tmp_path_factory.mktemp("synthetic"))
    return cfg, ensure_synthetic_dataset(**cfg["data"]["synthetic"])


def _with_truncated_jpeg(paths, root):
    """A copy of the train split whose image 3 is a JPEG cut after 400 bytes: the header reads,
    decoding fails."""
    images = root / "images"
    shutil.copytree(paths.train_dir, images)
    data = json.loads(paths.train_json.read_text())
    info = sorted(data["images"], key=lambda im: im["id"])[2]
    image = cv2.imread(str(images / info["file_name"]))
    ok, buf = cv2.imencode(".jpg", image)
    info["file_name"] = "truncated.jpg"
    (images / "truncated.jpg").write_bytes(buf.tobytes()[:400])
    assert cv2.imdecode(np.frombuffer(buf.tobytes()[:400], np.uint8), cv2.IMREAD_COLOR) is None
    ann = root / "train.json"
    ann.write_text(json.dumps(data))
    return ann, images


def test_a_truncated_jpeg_is_skipped_with_a_warning(tiny, tmp_path):
    cfg, paths = tiny
    ann, images = _with_truncated_jpeg(paths, tmp_path)
    events = EventBus()
    run = tmp_path / "run"
    summary = train_from_config(cfg, str(ann), epochs=2, work_dir=run, events=events, console=False,
                                images=str(images), val_data=str(paths.val_json))
    warnings = [e for e in events.history if e.get("kind") == "unreadable_image"]
    assert len(warnings) == 2                                       # once per epoch it is drawn
    assert "truncated.jpg" in warnings[0]["message"] and warnings[-1]["unreadable"] == 2
    assert summary["unreadable"] == 2 and summary["global_step"] == 4 and not summary["stopped"]
    assert (run / "last.pth").is_file()
    end = [e for e in read_jsonl(run / "log.jsonl") if e["type"] == "end"][0]
    assert "2 unreadable image(s) skipped" in end["message"]


def test_a_failing_run_saves_last_pth_before_the_error(tiny, tmp_path):
    cfg, _ = tiny
    events = EventBus()

    def fail_at_step_3(trainer):
        original = trainer.model.loss_from_outputs

        def loss_from_outputs(batch, outputs, trace_index=None, **kwargs):
            if trainer.global_step == 3:
                raise RuntimeError("disk on fire")
            return original(batch, outputs, trace_index, **kwargs)
        trainer.model.loss_from_outputs = loss_from_outputs

    with pytest.raises(RuntimeError, match="disk on fire"):
        train_from_config(cfg, epochs=3, work_dir=tmp_path, events=events, console=False,
                          trainer_hook=fail_at_step_3)
    ckpt = torch.load(tmp_path / "last.pth", weights_only=True)
    assert (ckpt["epoch"], ckpt["iter_in_epoch"], ckpt["global_step"]) == (1, 1, 3)
    error = [e for e in events.history if e["type"] == "error"][-1]
    assert "disk on fire" in error["message"] and error["checkpoint"].endswith("last.pth")
    assert "saved" in error["message"]
