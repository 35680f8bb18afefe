"""Saving an annotation project changes nothing the user did not change: untouched records keep
their numbers, ``area`` and unknown keys, skipped records stay in the file, backups are versioned,
read-only files are refused, symlinks written through, killed saves leave nothing behind."""
from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from detengine.data.project import KEPT_ACTION, AnnotationProject, Box
from detengine.io import BACKUPS_KEPT, ReadOnlyFileError, list_backups, remove_stale_temp_files

ROOT = Path(__file__).resolve().parents[3]

IMAGES = [{"id": 1, "file_name": "a.png", "width": 200, "height": 150, "license": 3},
          {"id": 2, "file_name": "b.png", "width": 100.0, "height": 80, "flickr_url": "http://x"}]
CATEGORIES = [{"supercategory": "animal", "id": 1, "name": "cat", "keypoints": []},
              {"id": 2, "name": "dog"}]
SEGMENTED = {"segmentation": [[20, 30, 60, 30, 60, 80]], "area": 1234.5, "iscrowd": 0, "image_id": 1,
             "bbox": [20.123456789, 30.5, 40.0000001, 50], "category_id": 1, "id": 10,
             "attributes": {"occluded": True}}
PLAIN = {"id": 11, "image_id": 1, "category_id": 2, "bbox": [120, 20, 50, 40], "area": 1999.99, "iscrowd": 0}
NO_AREA = {"id": 12, "image_id": 2, "category_id": 2, "bbox": [10, 10, 30, 30]}     # no area, no iscrowd
SKIPPED = [
    {"id": 40, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]], "area": 32},  # polygon only
    {"id": 41, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 7], "note": "degenerate"},
    {"id": 42, "image_id": 99, "category_id": 1, "bbox": [5, 5, 7, 7]},                        # unknown image
    {"id": 43, "image_id": 1, "category_id": 1, "bbox": [500, 500, 10, 10]},                   # outside the image
    "not even a record",
]


def write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def coco(tmp_path) -> Path:
    return write(tmp_path / "ann" / "annotations.json",
                 {"info": {"year": 2017, "description": "x"}, "licenses": [{"id": 3}], "images": IMAGES,
                  "annotations": [SEGMENTED, PLAIN, NO_AREA, *SKIPPED],
                  "categories": [*CATEGORIES, {"id": 9, "name": 17}], "extra_top": {"k": [1, 2]}})


def saved(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def by_id(records):
    return {r["id"]: r for r in records if isinstance(r, dict)}


def test_untouched_records_are_written_back_exactly(coco):
    project = AnnotationProject.open(coco)
    project.replace_box(0, project.images[0].boxes[1].replace(x1=100.0))     # edit another box
    project.save()
    out = saved(coco)
    anns = by_id(out["annotations"])
    for original in (SEGMENTED, NO_AREA):
        assert anns[original["id"]] == original
        assert list(anns[original["id"]]) == list(original)                    # key order too
    assert 12 in anns and "area" not in anns[12] and "iscrowd" not in anns[12]
    assert out["images"] == IMAGES and out["categories"][:2] == CATEGORIES
    assert list(out) == ["info", "licenses", "images", "annotations", "categories", "extra_top"]
    assert out["extra_top"] == {"k": [1, 2]} and out["info"] == {"year": 2017, "description": "x"}


def test_an_edited_box_keeps_its_other_fields_and_a_segmentation_area(coco):
    project = AnnotationProject.open(coco)
    seg, plain = project.images[0].boxes
    project.replace_box(0, seg.replace(y2=seg.y2 + 10))                      # taller: only h changes
    project.replace_box(0, plain.replace(x1=110.0))                          # wider to the left
    project.save()
    anns = by_id(saved(coco)["annotations"])
    assert anns[10]["bbox"] == [20.123456789, 30.5, 40.0000001, 60]
    assert anns[10]["area"] == 1234.5                                        # the segmentation's area stays
    assert anns[10]["attributes"] == {"occluded": True} and anns[10]["segmentation"] == SEGMENTED["segmentation"]
    assert list(anns[10]) == list(SEGMENTED)
    assert anns[11]["bbox"] == [110, 20, 60, 40] and anns[11]["area"] == 2400   # no segmentation: area follows


def test_skipped_records_survive_a_save_and_their_ids_stay_taken(coco):
    project = AnnotationProject.open(coco)
    skipped = [p for p in project.problems if p.section == "annotations"]
    assert len(skipped) == len(SKIPPED) and all(p.action == KEPT_ACTION for p in skipped)
    new = Box(project.new_box_id(), 1, 1, 1, 20, 20)
    project.insert_box(0, new)
    assert new.id > 43                                                       # never a skipped record's id
    assert project.add_category("bird").id > 9
    project.save()
    out = saved(coco)
    assert out["annotations"][-len(SKIPPED):] == SKIPPED
    assert {"id": 9, "name": 17} in out["categories"]
    again = AnnotationProject.open(coco)
    assert len([p for p in again.problems if p.section == "annotations"]) == len(SKIPPED)
    assert again.num_boxes == 4


def test_in_memory_coco_is_complete_and_leaves_the_skipped_out(coco):
    project = AnnotationProject.open(coco)
    data = project.to_coco()
    assert len(data["annotations"]) == 3 and all("area" in a and "iscrowd" in a for a in data["annotations"])
    assert by_id(data["annotations"])[12]["area"] == 900
    for a in data["annotations"]:
        a["ignore"] = 1                                                      # COCOeval does this to its GT
    project.save()
    assert all("ignore" not in a for a in saved(coco)["annotations"] if isinstance(a, dict))


def test_backups_are_versioned_and_bounded(coco):
    project = AnnotationProject.open(coco)
    contents = [coco.read_bytes()]
    for k in range(BACKUPS_KEPT + 3):
        box = project.images[0].boxes[0]
        project.replace_box(0, box.replace(x2=box.x2 + 1))
        project.save()
        contents.append(coco.read_bytes())
    backups = list_backups(coco)
    assert len(backups) == BACKUPS_KEPT
    assert [b.read_bytes() for b in backups] == contents[-BACKUPS_KEPT - 1:-1]   # the newest versions, in order
    mtime = coco.stat().st_mtime_ns
    project.save()                                                           # nothing changed: no new version
    assert list_backups(coco) == backups and coco.stat().st_mtime_ns == mtime
    assert not list(coco.parent.glob(".*.tmp"))


def test_a_read_only_file_is_refused_and_left_unchanged(coco):
    project = AnnotationProject.open(coco)
    project.insert_box(0, Box(project.new_box_id(), 1, 1, 1, 20, 20))
    before = coco.read_bytes()
    coco.chmod(0o444)
    try:
        with pytest.raises(ReadOnlyFileError) as info:
            project.save()
        text = str(info.value)
        assert str(coco) in text and "read-only" in text and "Save As" in text
        assert isinstance(info.value, PermissionError)
        assert coco.read_bytes() == before and stat.S_IMODE(coco.stat().st_mode) == 0o444
        assert not list_backups(coco) and not list(coco.parent.glob(".*.tmp"))
        other = coco.with_name("copy.json")
        project.save(other)                                                  # Save As works
        assert len(saved(other)["annotations"]) == 3 + 1 + len(SKIPPED)
    finally:
        coco.chmod(0o644)


def test_a_symlink_is_written_through(coco, tmp_path):
    link = tmp_path / "elsewhere" / "link.json"
    link.parent.mkdir()
    link.symlink_to(coco)
    project = AnnotationProject.open(link)
    project.insert_box(0, Box(project.new_box_id(), 1, 1, 1, 20, 20))
    project.save()
    assert link.is_symlink() and link.resolve() == coco.resolve()
    assert project.path == link.absolute()
    assert len(saved(coco)["annotations"]) == 3 + 1 + len(SKIPPED)
    assert len(list_backups(coco)) == 1                                      # beside the real file


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temp_files_of_dead_processes_are_removed_at_open(coco):
    dead = _dead_pid()
    stale = [coco.parent / f".annotations.json.{dead}.abcd1234.tmp",
             coco.parent / f".annotations.json.20240101-120000-000000.bak.{dead}.x_y9z8w7.tmp"]
    live = coco.parent / f".annotations.json.{os.getpid()}.live0001.tmp"
    other = coco.parent / f".other.json.{dead}.abcd1234.tmp"                  # another file's: not ours to judge
    for p in [*stale, live, other]:
        p.write_bytes(b"x" * 1000)
    AnnotationProject.open(coco)
    assert not any(p.exists() for p in stale)
    assert live.exists() and other.exists()
    assert remove_stale_temp_files(coco) == []


def test_a_box_far_outside_its_image_is_reported(tmp_path):
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [150, 100, 52, 40]},     # 2 px over: left alone
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [150, 100, 300, 40]},    # far beyond: clipped
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [-900, 10, 20, 20]}]     # entirely outside
    path = write(tmp_path / "a.json", {"images": IMAGES[:1], "annotations": anns, "categories": CATEGORIES})
    project = AnnotationProject.open(path)
    assert [(b.id, b.xyxy) for b in project.images[0].boxes] == [(1, (150, 100, 202, 140)),
                                                                 (2, (150, 100, 200, 140))]
    (clipped, outside) = project.problems
    assert clipped.index == 1 and "250 px beyond its 200x150 image" in clipped.message
    assert clipped.action == "clipped to the image: [150, 100, 50, 40] (saved so)"
    assert outside.index == 2 and "entirely outside" in outside.message and outside.action == KEPT_ACTION
    assert "annotations[1]" in str(clipped) and "clipped" in str(clipped)
    project.save()
    out = by_id(saved(path)["annotations"])
    assert out[1] == anns[0] and out[3] == anns[2] and out[2]["bbox"] == [150, 100, 50, 40]


KILL_SAVER = r"""
import json, os, sys
from detengine.data.project import AnnotationProject
project = AnnotationProject.open(sys.argv[1])
base = project.images[0].boxes[0]
print("ready", flush=True)
for line in sys.stdin:
    start = int(line)
    pid = os.fork()
    if pid == 0:                                  # the child saves version after version until killed
        version = start
        while True:
            project.replace_box(0, base.replace(x2=base.x2 + version % 97 + 1))
            project.info["version"] = version
            project.save()
            version += 1
    print(pid, flush=True)
    os.waitpid(pid, 0)                            # reaped: its pid is gone when the test looks
    print("reaped", flush=True)
"""


def _expected(project: AnnotationProject, base: Box, version: int, path: Path) -> bytes:
    project.replace_box(0, base.replace(x2=base.x2 + version % 97 + 1))
    project.info["version"] = version
    return json.dumps(project.to_coco(path, for_file=True), separators=(",", ":")).encode("utf-8")


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_kill_9_during_saves_never_breaks_the_file(coco):
    project = AnnotationProject.open(coco)
    for k in range(12000):                        # a sizeable project: ~1 MB of JSON, a save takes a while
        project.insert_box(k % 2, Box(project.new_box_id(), 1, 1 + k % 40, 2, 50 + k % 30, 60))
    project.save(backups=0)
    initial = coco.read_bytes()
    project = AnnotationProject.open(coco)
    base = project.images[0].boxes[0]
    saver = subprocess.Popen([sys.executable, "-c", KILL_SAVER, str(coco)], cwd=ROOT, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    rng = random.Random(0)
    started = time.monotonic()
    versions = set()
    try:
        assert saver.stdout.readline().strip() == "ready"
        for kill in range(20):
            saver.stdin.write(f"{kill * 1000}\n")
            saver.stdin.flush()
            child = int(saver.stdout.readline())
            time.sleep(rng.uniform(0.0, 0.25))
            os.kill(child, signal.SIGKILL)
            assert saver.stdout.readline().strip() == "reaped"
            content = coco.read_bytes()
            version = json.loads(content)["info"].get("version")             # parseable, whole
            if version is None:
                assert content == initial                                    # no save went through yet
            else:
                assert content == _expected(project, base, version, coco)     # exactly one version's content
                versions.add(version)
    finally:
        saver.stdin.close()
        saver.kill()
        saver.wait()
    assert time.monotonic() - started < 25
    assert len(versions) >= 5                                                # the kills hit many saves
    # about one kill in five lands mid-write and leaves a temporary file: the next open removes them
    reopened = AnnotationProject.open(coco)
    assert not list(coco.parent.glob(".*.tmp"))
    assert reopened.num_boxes == project.num_boxes
    backups = list_backups(coco)
    assert 0 < len(backups) <= BACKUPS_KEPT and all(json.loads(b.read_bytes()) for b in backups)
