"""Output paths are checked before the work starts: one message, exit code 2, no traceback."""
from __future__ import annotations

import os

import pytest

from detengine.cli import main
from detengine.io import OutputPathError, check_output_path

ROOT_WRITES_ANYWAY = pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root: a chmod 0o555 folder is still writable (os.access says so); the read-only "
           "place is tested through a path under a regular file")


@pytest.fixture
def regular_file(tmp_path):
    f = tmp_path / "plain.txt"
    f.write_text("not a folder")
    return f


@pytest.fixture
def read_only_dir(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    yield d
    d.chmod(0o755)


def test_check_output_path(tmp_path, regular_file):
    assert check_output_path(tmp_path / "new" / "deeper" / "out.json") == tmp_path / "new" / "deeper" / "out.json"
    assert check_output_path(tmp_path / "run", "folder") == tmp_path / "run"
    assert check_output_path(regular_file, "file") == regular_file                 # overwriting a file is fine
    with pytest.raises(OutputPathError, match="is a folder"):
        check_output_path(tmp_path, "file")
    with pytest.raises(OutputPathError, match="is a file, not a folder"):
        check_output_path(regular_file, "folder")
    with pytest.raises(OutputPathError, match="plain.txt is a file, not a folder"):
        check_output_path(regular_file / "sub" / "out.json", "file")
    with pytest.raises(OutputPathError, match="plain.txt is a file, not a folder"):
        check_output_path(regular_file / "run", "folder")
    regular_file.chmod(0o444)
    with pytest.raises(OutputPathError, match="read-only"):
        check_output_path(regular_file, "file")


@ROOT_WRITES_ANYWAY
def test_check_output_path_read_only_folder(read_only_dir):
    with pytest.raises(OutputPathError, match="read-only"):
        check_output_path(read_only_dir / "out.json", "file")
    with pytest.raises(OutputPathError, match="read-only"):
        check_output_path(read_only_dir / "run", "folder")


def _cli(argv, capsys) -> tuple[int, str]:
    rc = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def test_export_out_to_a_folder(tmp_path, capsys):
    # the checkpoint does not exist: the path check comes before any work
    rc, err = _cli(["export", "tinyssd_banana", str(tmp_path / "none.pth"), "--out", str(tmp_path)], capsys)
    assert rc == 2 and err.count("\n") == 1 and "is a folder" in err and str(tmp_path) in err


def test_export_out_in_a_read_only_place(tmp_path, regular_file, capsys):
    rc, err = _cli(["export", "tinyssd_banana", str(tmp_path / "none.pth"), "--out",
                    str(regular_file / "out.json")], capsys)
    assert rc == 2 and "is a file, not a folder" in err


@ROOT_WRITES_ANYWAY
def test_export_out_in_a_read_only_folder(tmp_path, read_only_dir, capsys):
    rc, err = _cli(["export", "tinyssd_banana", str(tmp_path / "none.pth"), "--out",
                    str(read_only_dir / "out.json")], capsys)
    assert rc == 2 and "read-only" in err


def test_inspect_json_to_a_folder(tmp_path, capsys):
    rc, err = _cli(["inspect", "--config", "tinyssd_banana", "--gt", "10,10,60,60,0", "--json", str(tmp_path)], capsys)
    assert rc == 2 and "is a folder" in err
    assert capsys.readouterr().out == ""                                   # no trace was computed and printed


def test_train_work_dir_in_a_read_only_place(tmp_path, regular_file, capsys):
    rc, err = _cli(["train", "tinyssd_banana", "--work-dir", str(regular_file / "run"), "--device", "cpu",
                    "--max-iters", "1"], capsys)
    assert rc == 2 and "is a file, not a folder" in err and "run folder" in err
    rc, err = _cli(["train", "tinyssd_banana", "--work-dir", str(regular_file), "--device", "cpu"], capsys)
    assert rc == 2 and "is a file, not a folder" in err


@ROOT_WRITES_ANYWAY
def test_train_work_dir_in_a_read_only_folder(read_only_dir, capsys):
    rc, err = _cli(["train", "tinyssd_banana", "--work-dir", str(read_only_dir / "run"), "--device", "cpu"], capsys)
    assert rc == 2 and "read-only" in err
