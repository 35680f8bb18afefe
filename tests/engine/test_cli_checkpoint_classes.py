"""CLI ``eval`` / ``export`` meet a checkpoint's classes with the data's by name: the same classes
under other ids give the right category ids and the same AP; other names are refused, naming both."""
from __future__ import annotations

import json

import pytest

from detengine.cli import main
from detengine.data import ensure_synthetic_dataset
from detengine.train.runner import ClassMismatch, evaluate_checkpoint, export_checkpoint, train_from_config

from .runs import tiny_tinyssd_cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(cfg, checkpoint, synthetic paths): one step of TinySSD on the 5-class synthetic set."""
    root = tmp_path_factory.mktemp("synthetic")
    cfg = tiny_tinyssd_cfg(root)
    run = tmp_path_factory.mktemp("run")
    train_from_config(cfg, epochs=1, max_iters=1, work_dir=run, console=False)
    paths = ensure_synthetic_dataset(**cfg["data"]["synthetic"])
    return cfg, run / "last.pth", paths


def _swapped(paths, out):
    """val.json with the category ids reversed (circle 1 -> 5, ...): the same classes, other ids."""
    data = json.loads(paths.val_json.read_text())
    n = len(data["categories"])
    new = {c["id"]: n + 1 - c["id"] for c in data["categories"]}
    for c in data["categories"]:
        c["id"] = new[c["id"]]
    for a in data["annotations"]:
        a["category_id"] = new[a["category_id"]]
    out.write_text(json.dumps(data))
    return out


def _names(results, gt_file):
    cats = {c["id"]: c["name"] for c in json.loads(gt_file.read_text())["categories"]}
    return [(r["image_id"], cats[r["category_id"]], r["score"], tuple(r["bbox"])) for r in results]


def test_export_with_swapped_ids_names_the_same_classes(trained, tmp_path):
    cfg, ckpt, paths = trained
    swapped = _swapped(paths, tmp_path / "swapped.json")
    export_checkpoint(cfg, ckpt, tmp_path / "a.json", val_data=str(paths.val_json), data=str(paths.train_json),
                      images=str(paths.val_dir))
    rc = main(["export", "tinyssd_banana", str(ckpt), "--out", str(tmp_path / "b.json"), "--data",
               str(paths.train_json), "--val-data", str(swapped), "--images", str(paths.val_dir), "--device", "cpu"])
    assert rc == 0
    a = json.loads((tmp_path / "a.json").read_text())
    b = json.loads((tmp_path / "b.json").read_text())
    assert len({r["category_id"] for r in a}) > 1  # several classes: a wrong map would show
    assert _names(b, swapped) == _names(a, paths.val_json)
    assert [r["category_id"] for r in b] != [r["category_id"] for r in a]  # the ids did change


def test_eval_with_swapped_ids_gives_the_same_ap(trained, tmp_path):
    cfg, ckpt, paths = trained
    swapped = _swapped(paths, tmp_path / "swapped.json")
    kw = dict(data=str(paths.train_json), images=str(paths.val_dir))
    a = evaluate_checkpoint(cfg, ckpt, val_data=str(paths.val_json), **kw)
    b = evaluate_checkpoint(cfg, ckpt, val_data=str(swapped), **kw)
    assert a.stats == pytest.approx(b.stats)
    by_name_a = {a.class_names[c]: ap for c, ap in a.per_class_ap.items()}
    by_name_b = {b.class_names[c]: ap for c, ap in b.per_class_ap.items()}
    assert by_name_a == pytest.approx(by_name_b, nan_ok=True)
    assert a.num_detections == b.num_detections > 0


def test_other_class_names_are_refused_naming_both_lists(trained, tmp_path, capsys):
    cfg, ckpt, paths = trained
    data = json.loads(paths.val_json.read_text())
    data["categories"] = [c for c in data["categories"] if c["name"] != "bar"]
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] in {c["id"] for c in data["categories"]}]
    data["categories"][0]["name"] = "cat"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    with pytest.raises(ClassMismatch):
        evaluate_checkpoint(cfg, ckpt, val_data=str(other), data=str(paths.train_json), images=str(paths.val_dir))
    for command in (["eval", "tinyssd_banana", str(ckpt)],
                    ["export", "tinyssd_banana", str(ckpt), "--out", str(tmp_path / "x.json")]):
        rc = main([*command, "--data", str(paths.train_json), "--val-data", str(other), "--images",
                   str(paths.val_dir), "--device", "cpu"])
        err = capsys.readouterr().err
        assert rc == 2
        assert "['circle', 'square', 'triangle', 'ring', 'bar']" in err          # the checkpoint's
        assert "['cat', 'square', 'triangle', 'ring']" in err                    # the data's
        assert "Traceback" not in err
    assert not (tmp_path / "x.json").exists()
