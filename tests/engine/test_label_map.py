"""One label map from project categories to model labels (debug views, scan, evaluation)."""
from __future__ import annotations

import ast
from pathlib import Path

from detengine.data.project import Category
from detengine.project_eval import class_map

CATS = [Category(7, "dog"), Category(2, "cat"), Category(4, "bird")]


def test_a_model_made_for_the_project_numbers_categories_by_id():
    m = class_map(None, CATS)
    assert m.label_to_cat == {0: 2, 1: 4, 2: 7} and m.cat_to_label == {2: 0, 4: 1, 7: 2}
    assert m.class_names == ["cat", "bird", "dog"] and m.num_classes == 3 and not m.problems
    assert m.encode([7, 2, 9, 4]) == ([0, 1, 3], [2, 0, 1])       # unknown category 9 left out


def test_a_checkpoints_classes_meet_the_project_by_name():
    m = class_map(["dog", "horse", "cat"], CATS)
    assert m.label_to_cat == {0: 7, 2: 2} and m.num_classes == 3
    assert m.class_names == ["dog", "horse", "cat"] and m.name(1) == "horse (not in the project)" and m.name(0) == "dog" and m.name(5) == "model class 5"
    assert m.encode([4, 2, 7]) == ([1, 2], [2, 0])                # bird is unknown to the model
    assert any("horse" in p for p in m.problems) and any("bird" in p for p in m.problems)


def test_no_second_copy_of_the_mapping():
    """Project boxes become model labels only through LabelMap.encode: no module indexes a
    cat->label dict of its own."""
    root = Path(__file__).resolve().parents[2]
    offenders = []
    for path in [*(root / "app").rglob("*.py"), root / "detengine" / "scan.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and \
                    node.value.id in ("cat_to_label", "cat2label"):
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not offenders, offenders
