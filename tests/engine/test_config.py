"""Tests for detengine.config: mmengine-style Python config loading without mmengine."""

from __future__ import annotations

import copy
import json
import keyword
import pickle
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detengine.config import Config, ConfigDict, ConfigError, load_config, merge_dicts


def write(path: Path, text: str) -> Path:
    """Write dedented *text* to *path* (creating folders); return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- plain files


def test_plain_file_collects_variables_only(tmp_path: Path) -> None:
    cfg_path = write(tmp_path / "plain.py", """
        import os
        import os.path as osp
        from math import pi
        __author__ = 'me'

        def helper(x):
            return x * 2

        class Thing:
            pass

        num_classes = helper(40)
        model = dict(type='SSD', sizes=(300, 300), ratios=[[2], [2, 3]], thr=0.5)
        flags = dict(enabled=True, extra=None, name='a')
    """)
    cfg = load_config(cfg_path)
    assert cfg.to_dict() == {
        "num_classes": 80,
        "model": {"type": "SSD", "sizes": (300, 300), "ratios": [[2], [2, 3]], "thr": 0.5},
        "flags": {"enabled": True, "extra": None, "name": "a"},
    }
    assert cfg.filename == str(cfg_path)
    assert isinstance(cfg.model["sizes"], tuple)


def test_loaded_config_is_deepcopyable_json_and_picklable(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "c.py", "model = dict(a=[dict(b=(1, 2))], c=None)\n"))
    plain = cfg.to_dict()
    assert json.loads(json.dumps(plain)) == {"model": {"a": [{"b": [1, 2]}], "c": None}}
    assert copy.deepcopy(cfg).to_dict() == plain
    assert pickle.loads(pickle.dumps(cfg)).to_dict() == plain
    cloned = copy.deepcopy(cfg.model)
    assert isinstance(cloned, ConfigDict) and cloned.a[0].b == (1, 2)


def test_unsupported_value_is_rejected_with_key_and_value(tmp_path: Path) -> None:
    cfg_path = write(tmp_path / "bad.py", "model = dict(ids={1, 2})\n")
    with pytest.raises(ConfigError, match=r"bad\.py.*model\['ids'\] = \{1, 2\}.*set"):
        load_config(cfg_path)


def test_function_nested_in_a_value_is_rejected(tmp_path: Path) -> None:
    cfg_path = write(tmp_path / "bad.py", "model = dict(fn=len)\n")
    with pytest.raises(ConfigError, match="fn"):
        load_config(cfg_path)


# --------------------------------------------------------------------------- _base_


def test_single_base_string(tmp_path: Path) -> None:
    write(tmp_path / "base.py", "model = dict(type='SSD', depth=16)\nlr = 0.1\n")
    cfg = load_config(write(tmp_path / "child.py", "_base_ = './base.py'\nlr = 0.01\n"))
    assert cfg.to_dict() == {"model": {"type": "SSD", "depth": 16}, "lr": 0.01}
    assert "_base_" not in cfg


def test_base_list_and_two_levels_of_nesting(tmp_path: Path) -> None:
    models = tmp_path / "_base_" / "models"
    write(models / "root.py", "model = dict(type='SSD', head=dict(n=80, w=1.0))\n")
    write(models / "mid.py", """
        _base_ = './root.py'
        model = dict(head=dict(n=20))
    """)
    write(tmp_path / "_base_" / "schedule.py", "epochs = 24\n")
    cfg = load_config(write(tmp_path / "configs" / "child.py", """
        _base_ = ['../_base_/models/mid.py', '../_base_/schedule.py']
        model = dict(head=dict(w=2.0))
    """))
    assert cfg.to_dict() == {
        "model": {"type": "SSD", "head": {"n": 20, "w": 2.0}},
        "epochs": 24,
    }


def test_child_overrides_nested_keys_and_keeps_siblings(tmp_path: Path) -> None:
    write(tmp_path / "base.py", """
        model = dict(
            backbone=dict(type='VGG', depth=16, out=(3, 4)),
            test_cfg=dict(nms=dict(type='nms', iou_threshold=0.45), score_thr=0.02))
    """)
    cfg = load_config(write(tmp_path / "child.py", """
        _base_ = 'base.py'
        model = dict(test_cfg=dict(nms=dict(iou_threshold=0.5)), backbone=dict(depth=11))
    """))
    assert cfg.to_dict()["model"] == {
        "backbone": {"type": "VGG", "depth": 11, "out": (3, 4)},
        "test_cfg": {"nms": {"type": "nms", "iou_threshold": 0.5}, "score_thr": 0.02},
    }


def test_delete_replaces_base_dict_and_is_removed(tmp_path: Path) -> None:
    write(tmp_path / "base.py", """
        optim = dict(type='SGD', lr=0.1, momentum=0.9)
        other = dict(a=1)
    """)
    cfg = load_config(write(tmp_path / "child.py", """
        _base_ = 'base.py'
        optim = dict(_delete_=True, type='Adam', lr=1e-3)
        other = dict(_delete_=False, b=2)
    """))
    assert cfg.to_dict() == {"optim": {"type": "Adam", "lr": 1e-3}, "other": {"a": 1, "b": 2}}


def test_lists_replace_instead_of_merging(tmp_path: Path) -> None:
    write(tmp_path / "base.py", """
        pipeline = [dict(type='A'), dict(type='B')]
        m = dict(s=[1, 2, 3])
    """)
    cfg = load_config(write(tmp_path / "child.py", """
        _base_ = 'base.py'
        pipeline = [dict(type='C')]
        m = dict(s=[9])
    """))
    assert cfg.to_dict() == {"pipeline": [{"type": "C"}], "m": {"s": [9]}}


def test_duplicate_key_across_bases_names_both_files(tmp_path: Path) -> None:
    write(tmp_path / "first_base.py", "model = dict(a=1)\n")
    write(tmp_path / "second_base.py", "model = dict(b=2)\n")
    cfg_path = write(tmp_path / "child.py", "_base_ = ['first_base.py', 'second_base.py']\n")
    with pytest.raises(ConfigError, match="duplicate key 'model'") as info:
        load_config(cfg_path)
    assert "first_base.py" in str(info.value) and "second_base.py" in str(info.value)


def test_base_cycle_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "a.py", "_base_ = 'b.py'\nx = 1\n")
    write(tmp_path / "b.py", "_base_ = 'a.py'\ny = 2\n")
    with pytest.raises(ConfigError, match=r"cycle.*a\.py.*b\.py.*a\.py"):
        load_config(tmp_path / "a.py")


def test_self_including_base_is_a_cycle(tmp_path: Path) -> None:
    cfg_path = write(tmp_path / "self.py", "_base_ = './self.py'\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(cfg_path)


def test_missing_base_names_entry_and_child(tmp_path: Path) -> None:
    cfg_path = write(tmp_path / "child.py", "x = 1\n_base_ = ['nowhere.py']\n")
    with pytest.raises(ConfigError, match=r"child\.py, line 2: .*'nowhere\.py' not found"):
        load_config(cfg_path)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not found.*absent\.py"):
        load_config(tmp_path / "absent.py")


def test_non_literal_base_is_an_error(tmp_path: Path) -> None:
    cfg_path = write(tmp_path / "child.py", "name = 'b'\n_base_ = name + '.py'\n")
    with pytest.raises(ConfigError, match=r"child\.py, line 2: _base_ must be a literal"):
        load_config(cfg_path)


def test_package_scoped_base_is_rejected(tmp_path: Path) -> None:
    cfg_path = write(tmp_path / "child.py", "_base_ = 'mmdet::_base_/models/ssd300.py'\n")
    with pytest.raises(ConfigError, match="package-scoped"):
        load_config(cfg_path)


def test_base_diamond_is_a_duplicate_like_mmengine(tmp_path: Path) -> None:
    write(tmp_path / "root.py", "shared = 1\n")
    write(tmp_path / "left.py", "_base_ = 'root.py'\n")
    write(tmp_path / "right.py", "_base_ = 'root.py'\n")
    cfg_path = write(tmp_path / "child.py", "_base_ = ['left.py', 'right.py']\n")
    with pytest.raises(ConfigError, match="duplicate key 'shared'"):
        load_config(cfg_path)


def test_base_values_are_readable_in_child(tmp_path: Path) -> None:
    write(tmp_path / "base.py", """
        backend_args = None
        model = dict(data_preprocessor=dict(mean=[1.0, 2.0, 3.0], bgr_to_rgb=True))
    """)
    cfg = load_config(write(tmp_path / "child.py", """
        _base_ = ['base.py']
        pipeline = [
            dict(type='Load', backend_args={{_base_.backend_args}}),
            dict(type='Expand', mean={{ _base_.model.data_preprocessor.mean }},
                 to_rgb=_base_.model.data_preprocessor.bgr_to_rgb),
        ]
    """))
    assert cfg.pipeline[1].to_dict() == {"type": "Expand", "mean": [1.0, 2.0, 3.0], "to_rgb": True}
    assert cfg.pipeline[0].backend_args is None


def test_missing_base_reference_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "base.py", "model = dict()\n")
    cfg_path = write(tmp_path / "child.py", "_base_ = 'base.py'\nx = {{_base_.model.nope}}\n")
    with pytest.raises(ConfigError, match=r"child\.py, line 2: .*'model\.nope'"):
        load_config(cfg_path)


# --------------------------------------------------------------------------- errors, markers


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    cfg_path = write(tmp_path / "broken_cfg.py", "a = 1\nmodel = dict(type='SSD'\nb = 2\n")
    with pytest.raises(ConfigError, match=r"broken_cfg\.py, line \d+: syntax error") as info:
        load_config(cfg_path)
    assert "model = dict(type='SSD'" in str(info.value) or "b = 2" in str(info.value)


def test_runtime_error_names_file_line_and_text(tmp_path: Path) -> None:
    cfg_path = write(tmp_path / "runtime.py", "a = 1\nb = undefined_name + 1\n")
    with pytest.raises(ConfigError, match=r"runtime\.py, line 2: NameError") as info:
        load_config(cfg_path)
    assert "b = undefined_name + 1" in str(info.value)


def test_syntax_error_in_base_names_the_base(tmp_path: Path) -> None:
    write(tmp_path / "bad_base.py", "x = (\n")
    cfg_path = write(tmp_path / "child.py", "_base_ = 'bad_base.py'\n")
    with pytest.raises(ConfigError, match=r"bad_base\.py"):
        load_config(cfg_path)


def test_file_name_markers_are_substituted(tmp_path: Path) -> None:
    cfg_path = write(tmp_path / "sub" / "my.cfg.py", """
        data_root = '{{fileDirname}}/data/'
        names = ('{{ fileBasename }}', '{{fileBasenameNoExtension}}', '{{fileExtname}}')
    """)
    cfg = load_config(cfg_path)
    assert cfg.data_root == f"{tmp_path / 'sub'}/data/"
    assert cfg.names == ("my.cfg.py", "my.cfg", ".py")


def test_markers_in_base_refer_to_the_base_file(tmp_path: Path) -> None:
    write(tmp_path / "bases" / "base.py", "root = '{{fileDirname}}'\n")
    cfg = load_config(write(tmp_path / "child.py", "_base_ = 'bases/base.py'\n"))
    assert cfg.root == str(tmp_path / "bases")


def test_read_base_style_is_rejected_clearly(tmp_path: Path) -> None:
    cfg_path = write(tmp_path / "new_style.py", """
        from mmengine.config import read_base

        with read_base():
            from .._base_.models.ssd300 import *

        model.update(dict(bbox_head=dict(num_classes=3)))
    """)
    with pytest.raises(ConfigError, match=r"new_style\.py.*not supported yet.*_base_"):
        load_config(cfg_path)


def test_non_python_file_is_rejected(tmp_path: Path) -> None:
    cfg_path = write(tmp_path / "cfg.yaml", "a: 1\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml"):
        load_config(cfg_path)


# --------------------------------------------------------------------------- Config and ConfigDict


def test_attribute_and_item_access(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "c.py", """
        model = dict(type='SSD', bbox_head=dict(num_classes=80))
        pipeline = [dict(type='Load')]
    """))
    assert cfg.model.bbox_head.num_classes == 80
    assert cfg["model"]["bbox_head"]["num_classes"] == 80
    assert isinstance(cfg.model, ConfigDict) and isinstance(cfg.model, dict)
    assert cfg.pipeline[0].type == "Load"
    assert cfg.get("missing", 5) == 5 and cfg.get("model") is cfg.model
    assert "model" in cfg and sorted(cfg) == ["model", "pipeline"] and len(cfg) == 2
    with pytest.raises(AttributeError, match="missing"):
        _ = cfg.missing
    with pytest.raises(AttributeError, match="nope"):
        _ = cfg.model.nope
    with pytest.raises(KeyError):
        _ = cfg["missing"]


def test_editing_through_attributes(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "c.py", "model = dict(head=dict(n=1))\n"))
    cfg.model.head.n = 3
    cfg.model.neck = {"type": "FPN"}
    cfg["lr"] = 0.5
    assert cfg.model.neck.type == "FPN"
    assert cfg.to_dict() == {"model": {"head": {"n": 3}, "neck": {"type": "FPN"}}, "lr": 0.5}
    with pytest.raises(ConfigError, match="object"):
        cfg["bad"] = object()


def test_to_dict_is_plain_and_independent(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "c.py", "model = dict(a=[dict(b=1)])\n"))
    plain = cfg.to_dict()
    assert type(plain["model"]) is dict and type(plain["model"]["a"][0]) is dict
    plain["model"]["a"][0]["b"] = 2
    assert cfg.model.a[0].b == 1


def test_from_dict_validates_and_copies() -> None:
    source = {"model": {"type": "SSD", "sizes": (1, 2)}}
    cfg = Config.from_dict(source, filename="x.py")
    source["model"]["type"] = "changed"
    assert cfg.model.type == "SSD" and cfg.filename == "x.py"
    assert Config.from_dict({}).filename is None
    with pytest.raises(ConfigError, match="1j"):
        Config.from_dict({"model": {"x": 1j}})
    with pytest.raises(ConfigError, match="not a string"):
        Config.from_dict({1: "a"})


# --------------------------------------------------------------------------- pretty_text


def test_pretty_text_uses_mmdetection_layout() -> None:
    cfg = Config.from_dict({
        "model": {
            "type": "SSD",
            "backbone": {
                "type": "SSDVGG",
                "depth": 16,
                "out_indices": (3, 4),
                "init_cfg": {"type": "Pretrained", "checkpoint": "open-mmlab://vgg16_caffe"},
            },
        },
        "lr": 0.01,
    })
    text = cfg.pretty_text()
    assert text.startswith("model = dict(\n    type='SSD',\n    backbone=dict(\n")
    assert "lr = 0.01\n" in text
    assert all(len(line) <= 79 for line in text.splitlines())


def test_pretty_text_round_trip(tmp_path: Path) -> None:
    data = {
        "model": {
            "type": "SSD",
            "backbone": {"type": "SSDVGG", "depth": 16, "out_indices": (3, 4), "frozen": (),
                         "single": (7,), "init_cfg": None},
            "bbox_head": {
                "num_classes": 80,
                "anchor_generator": {"ratios": [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
                                     "basesize_ratio_range": (0.15, 0.9),
                                     "strides": [8, 16, 32, 64, 100, 300]},
                "loss": {"weight": 1e-05, "neg": -3, "inf": float("inf"), "ninf": float("-inf")},
            },
            "odd keys": {"with space": 1, 2: "int key", "class": True, "": None, "º": 0},
            "empty": {},
        },
        "names": ["it's", 'quote"d', "new\nline", "{{fileDirname}}", "{{_base_.x}}", "ünï"],
        "deep": [[[[{"a": [(1, {"b": (2,)})] * 10}]]]],
        "flag": False,
        "nothing": None,
        "big": 10**30,
    }
    cfg = Config.from_dict(data)
    path = tmp_path / "snippet.py"
    path.write_text(cfg.pretty_text(), encoding="utf-8")
    assert load_config(path).to_dict() == cfg.to_dict() == data


def test_pretty_text_rejects_unwritable_top_level_keys() -> None:
    for key in ("not valid", "class", "_base_", "dict", "__x", "º"):
        with pytest.raises(ConfigError, match="cannot be written"):
            Config.from_dict({key: 1}).pretty_text()


_scalars = (
    st.none() | st.booleans() | st.integers()
    | st.floats(allow_nan=False)
    | st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
)
_keys = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6) | st.integers(-5, 5)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.lists(inner, max_size=4).map(tuple)
    | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=25,
)
_top_names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda name: not keyword.iskeyword(name) and name not in {"dict", "float"}
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(_top_names, _values, max_size=4))
def test_pretty_text_round_trip_property(data: dict) -> None:
    cfg = Config.from_dict(data)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "snippet.py"
        path.write_text(cfg.pretty_text(), encoding="utf-8")
        assert load_config(path).to_dict() == cfg.to_dict()


# --------------------------------------------------------------------------- merge_dicts


def test_merge_dicts_does_not_mutate_or_share() -> None:
    base = {"model": {"head": {"n": 80, "w": [1, 2]}, "neck": {"a": 1}}, "keep": [1]}
    override = {"model": {"head": {"n": 3}, "neck": {"_delete_": True, "b": 2}}, "new": {"x": [0]}}
    base_before, override_before = copy.deepcopy(base), copy.deepcopy(override)
    merged = merge_dicts(base, override)
    assert merged == {
        "model": {"head": {"n": 3, "w": [1, 2]}, "neck": {"b": 2}},
        "keep": [1],
        "new": {"x": [0]},
    }
    assert base == base_before and override == override_before
    merged["model"]["head"]["w"].append(3)
    merged["keep"].append(2)
    merged["new"]["x"].append(1)
    assert base == base_before and override == override_before


def test_merge_dicts_rules() -> None:
    assert merge_dicts({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}
    assert merge_dicts({"a": {"b": 1}}, {"a": 5}) == {"a": 5}
    assert merge_dicts({"a": None}, {"a": {"b": 1}}) == {"a": {"b": 1}}
    assert merge_dicts({"a": 1}, {"_delete_": True, "b": 2}) == {"b": 2}
    assert merge_dicts({}, {"a": {"_delete_": True, "b": {"_delete_": False}}}) == {"a": {"b": {}}}
    merged = merge_dicts(ConfigDict(a={"b": 1}), {"a": {"c": 2}})
    assert type(merged) is dict and type(merged["a"]) is dict and merged == {"a": {"b": 1, "c": 2}}
    with pytest.raises(TypeError, match=r"\[1\]"):
        merge_dicts({}, [1])  # type: ignore[arg-type]
