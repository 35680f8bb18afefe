"""Every question the window asks the user, in one object. Tests swap in an object with the
same methods that answers without showing a modal dialog."""
from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QPlainTextEdit,
    QRadioButton,
    QVBoxLayout,
)

__all__ = ["Dialogs", "ConsoleDialogs", "ProblemsDialog", "ClassPickDialog", "SHORTCUTS"]

SHORTCUTS = [
    ("N / D", "next image"), ("P / A", "previous image"), ("W", "draw a box (next drag draws, even over a box)"),
    ("drag on empty image", "draw a box"), ("click", "select a box (Ctrl+click: add to the selection)"),
    ("drag a box / a handle", "move / resize it"), ("arrows (Shift: x10)", "nudge the selected boxes by 1 px"),
    ("1 … 9", "class of the selected boxes (and of the next box)"),
    ("right-click / double-click", "class popup for a box"), ("Del / Backspace", "delete the selected boxes"),
    ("Ctrl+C / Ctrl+V", "copy / paste boxes (also into another image)"), ("Ctrl+D", "duplicate the selected boxes"),
    ("Ctrl+Z / Ctrl+Y", "undo / redo (per image)"), ("Ctrl+S", "save"), ("Ctrl+Shift+S", "save as"),
    ("F / Ctrl+0", "fit the image to the window"), ("Ctrl+1", "1:1 (one image pixel per screen pixel)"),
    ("wheel / Ctrl+wheel", "zoom around the cursor"), ("middle drag / Space+drag", "pan"),
    ("Esc", "cancel drawing, clear the selection, leave a debug view's selected GT"),
    ("E", "debug views: edit boxes / back to inspecting (a click there only asks the view)"), ("Ctrl+O", "open a COCO JSON"), ("Ctrl+Shift+O", "open a folder"),
    ("F11", "image only: hide the panels (again: show them); View > Reset Layout puts every panel back"),
    ("Ctrl+A", "select every box of the image"), ("Ctrl+H / Ctrl+L", "show or hide the boxes / their class names"),
]


class ClassPickDialog(QDialog):
    """The class of a new box, as labelme asks it: a name field (type-ahead filters the list of
    the project's classes; a name not in it makes a new class) over the list; Enter or a double
    click takes it."""

    def __init__(self, names: list[str], current: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Class of the new box")
        self.names = list(names)
        self.edit = QLineEdit(current)
        self.edit.setPlaceholderText("class name (a new name makes a new class)")
        self.edit.selectAll()
        self.list = QListWidget()
        self.list.addItems(self.names)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.edit)
        layout.addWidget(self.list)
        layout.addWidget(buttons)
        self.edit.textEdited.connect(self.filter)
        self.edit.returnPressed.connect(self.accept)
        self.list.currentTextChanged.connect(lambda text: text and self.edit.setText(text))
        self.list.itemDoubleClicked.connect(lambda _item: self.accept())
        self.filter(current if current not in self.names else "")

    def filter(self, text: str) -> None:
        """Only the classes whose name holds ``text`` (any case); the first one is highlighted."""
        needle = text.strip().lower()
        for row in range(self.list.count()):
            item = self.list.item(row)
            item.setHidden(bool(needle) and needle not in item.text().lower())

    def name(self) -> str:
        return self.edit.text().strip()


EXPORT_CHOICES = (("coco", "COCO JSON (one file)"), ("yolo", "YOLO / Ultralytics (data.yaml, images/, labels/)"),
                  ("voc", "Pascal VOC (Annotations/, JPEGImages/, ImageSets/)"),
                  ("labelme", "labelme (one JSON beside each image)"))


class ExportAnnotationsDialog(QDialog):
    """Format, destination (a new or empty folder; a .json file for COCO) and whether the image
    files are linked or copied into a folder format."""

    def __init__(self, suggested_folder: str, parent=None):
        from PySide6.QtWidgets import QCheckBox, QFormLayout, QHBoxLayout, QPushButton
        super().__init__(parent)
        self.setWindowTitle("Export annotations as")
        self.folder = suggested_folder
        self.format = QComboBox()
        for key, text in EXPORT_CHOICES:
            self.format.addItem(text, key)
        self.path = QLineEdit()
        browse = QPushButton("Browse…")
        self.copy = QCheckBox("copy the image files (default: links to them)")
        row = QHBoxLayout()
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        form = QFormLayout(self)
        form.addRow("Format", self.format)
        form.addRow("Write to", row)
        form.addRow(self.copy)
        note = QLabel("A folder format is written into a new (or empty) folder; nothing existing is overwritten.")
        note.setWordWrap(True)
        form.addRow(note)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.format.currentIndexChanged.connect(self._suggest)
        browse.clicked.connect(self._browse)
        self._suggest()

    def _suggest(self, *_args) -> None:
        from pathlib import Path
        key = self.format.currentData()
        name = "annotations.json" if key == "coco" else f"export_{key}"
        self.path.setText(str(Path(self.folder) / name))

    def _browse(self) -> None:
        if self.format.currentData() == "coco":
            path, _ = QFileDialog.getSaveFileName(self, "Export COCO JSON", self.path.text(), "COCO JSON (*.json)")
        else:
            path = QFileDialog.getExistingDirectory(self, "Export into this (new or empty) folder", self.folder)
        if path:
            self.path.setText(path)

    def answer(self) -> tuple[str, str, str]:
        return self.format.currentData(), self.path.text().strip(), "copy" if self.copy.isChecked() else "link"


class ProblemsDialog(QDialog):
    """What an open skipped or repaired, one line per record, copyable."""

    def __init__(self, title: str, lines: list[str], parent=None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(820, 420)
        text = QPlainTextEdit("\n".join(lines))
        text.setReadOnly(True)
        text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"{len(lines)} problem(s). What was valid is open; these were not used:"))
        layout.addWidget(text)
        layout.addWidget(buttons)


class _DeleteClassDialog(QDialog):
    def __init__(self, name: str, count: int, others: list[tuple[int, str]], parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Delete class {name!r}")
        self.delete_boxes = QRadioButton(f"Delete its {count} box(es) too")
        self.move_boxes = QRadioButton("Give its boxes another class:")
        self.target = QComboBox()
        for cat_id, other in others:
            self.target.addItem(other, cat_id)
        self.delete_boxes.setChecked(True)
        self.move_boxes.setEnabled(bool(others))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Class {name!r} has {count} box(es). Undo history of the images they are in "
                                "is cleared (this cannot be undone)."))
        for widget in (self.delete_boxes, self.move_boxes, self.target, buttons):
            layout.addWidget(widget)


class Dialogs:
    """Modal questions, parented to ``window``."""

    def __init__(self, window):
        self.window = window

    def error(self, title: str, text: str) -> None:
        QMessageBox.critical(self.window, title, text)

    def info(self, title: str, text: str) -> None:
        QMessageBox.information(self.window, title, text)

    def show_problems(self, title: str, lines: list[str]) -> None:
        ProblemsDialog(title, lines, self.window).exec()

    def ask_save_changes(self, what: str) -> str:
        """``"save"``, ``"discard"`` or ``"cancel"``."""
        box = QMessageBox(QMessageBox.Icon.Warning, "Unsaved edits", f"{what} has unsaved edits. Save them?",
                          QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                          | QMessageBox.StandardButton.Cancel, self.window)
        box.setDefaultButton(QMessageBox.StandardButton.Save)
        answer = box.exec()
        return {QMessageBox.StandardButton.Save: "save",
                QMessageBox.StandardButton.Discard: "discard"}.get(QMessageBox.StandardButton(answer), "cancel")

    def ask_file_changed(self, path: str) -> str:
        """The project file changed on disk since this window read or saved it: ``"reload"``,
        ``"overwrite"``, ``"save_as"`` or ``"cancel"``."""
        box = QMessageBox(QMessageBox.Icon.Warning, "The file changed on disk",
                          f"{path} was changed by another DetScope window or another program since this window "
                          "opened or last saved it.\n\nReload: read it again (your unsaved edits are dropped).\n"
                          "Overwrite: write your edits over it (its current content is kept as a .bak).\n"
                          "Save As: write your edits to another file.", QMessageBox.StandardButton.NoButton,
                          self.window)
        buttons = {box.addButton("Reload", QMessageBox.ButtonRole.DestructiveRole): "reload",
                   box.addButton("Overwrite", QMessageBox.ButtonRole.AcceptRole): "overwrite",
                   box.addButton("Save As…", QMessageBox.ButtonRole.ActionRole): "save_as"}
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(cancel)
        box.exec()
        return buttons.get(box.clickedButton(), "cancel")

    def ask_stop_training(self, run: str) -> bool:
        """Closing while ``run`` trains: True to stop it (after the current iteration, last.pth
        saved) and quit, False to keep training (the window stays)."""
        box = QMessageBox(QMessageBox.Icon.Question, "Training is running",
                          f"Training is running ({run}).\n\nStop it and quit: it stops after the current iteration "
                          "and saves last.pth (Resume run in the Runs tab continues it later).\nKeep training: "
                          "the window stays open.", QMessageBox.StandardButton.NoButton, self.window)
        stop = box.addButton("Stop it and quit", QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Keep training", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(keep)
        box.exec()
        return box.clickedButton() == stop

    def notice(self, title: str, text: str) -> None:
        """A message that does not block the window (it stays until closed)."""
        box = QMessageBox(QMessageBox.Icon.Information, title, text, QMessageBox.StandardButton.Ok, self.window)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.show()

    def ask_recover(self, what: str, saved_at: float, note: str = "") -> bool:
        when = datetime.fromtimestamp(saved_at).strftime("%Y-%m-%d %H:%M:%S")
        note = f"\n{note}" if note else ""
        answer = QMessageBox.question(
            self.window, "Recover unsaved edits?",
            f"DetScope closed without saving edits to {what}.\nThey were autosaved at {when}.{note}\n\n"
            "Recover them? (No discards them.)")
        return answer == QMessageBox.StandardButton.Yes

    def ask_run_config(self, path: str) -> bool:
        answer = QMessageBox.question(
            self.window, "Run this config file?",
            f"{path}\n\nThis config file comes with a checkpoint. Config files are Python: opening it runs its "
            "code, as in mmdetection. Run it only if you trust where it came from.\n\nRun it? (No: the debug "
            "views keep the current config.) The answer is remembered for this file.")
        return answer == QMessageBox.StandardButton.Yes

    def ask_class_name(self, existing: list[str], title: str = "New class", initial: str = "") -> str | None:
        name, ok = QInputDialog.getText(self.window, title, "Class name:", text=initial)
        return name.strip() if ok and name.strip() else None

    def ask_export_annotations(self, folder: str) -> tuple[str, str, str] | None:
        """(format, destination, "link" | "copy") for File > Export Annotations As…, or None."""
        dialog = ExportAnnotationsDialog(folder, self.window)
        if dialog.exec() != QDialog.DialogCode.Accepted or not dialog.answer()[1]:
            return None
        return dialog.answer()

    def ask_box_class(self, names: list[str], current: str) -> str | None:
        dialog = ClassPickDialog(names, current, self.window)
        if dialog.exec() != QDialog.DialogCode.Accepted or not dialog.name():
            return None
        return dialog.name()

    def ask_color(self, name: str, current: str) -> str | None:
        """A colour for class ``name`` (``"#rrggbb"``), or None when cancelled."""
        from PySide6.QtGui import QColor
        from PySide6.QtWidgets import QColorDialog
        color = QColorDialog.getColor(QColor(current), self.window, f"Colour of {name!r}")
        return color.name() if color.isValid() else None

    def ask_merge_target(self, name: str, others: list[tuple[int, str]]) -> int | None:
        names = [n for _, n in others]
        choice, ok = QInputDialog.getItem(self.window, f"Merge {name!r}",
                                          f"Give every {name!r} box this class, then delete {name!r}:",
                                          names, 0, False)
        return others[names.index(choice)][0] if ok and choice in names else None

    def ask_delete_class(self, name: str, count: int, others: list[tuple[int, str]]) -> tuple[bool, int | None]:
        """``(confirmed, reassign_to)`` with ``reassign_to`` None meaning delete its boxes."""
        dialog = _DeleteClassDialog(name, count, others, self.window)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return False, None
        return True, (dialog.target.currentData() if dialog.move_boxes.isChecked() else None)

    def ask_open_json(self, folder: str) -> str | None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open annotations (COCO JSON or Ultralytics data.yaml)", folder,
                                              "Annotations (*.json *.yaml *.yml);;COCO JSON (*.json);;"
                                              "Ultralytics data.yaml (*.yaml *.yml);;All files (*)")
        return path or None

    def ask_open_folder(self, folder: str, title: str = "Open a folder: Pascal VOC, YOLO (labelImg), labelme, "
                                                          "or just images") -> str | None:
        return QFileDialog.getExistingDirectory(self.window, title, folder) or None

    def ask_checkpoint(self, folder: str = "") -> str | None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Start training from a checkpoint", folder,
                                              "Checkpoint (*.pth *.pt);;All files (*)")
        return path or None

    def ask_save_path(self, suggested: str) -> str | None:
        """A file to save the project to; ``suggested``: the folder, or a path with the name to offer."""
        dialog = QFileDialog(self.window, "Save COCO JSON", suggested, "COCO JSON (*.json)")
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setDefaultSuffix("json")          # the overwrite question then sees the real name
        if dialog.exec() != QDialog.DialogCode.Accepted or not dialog.selectedFiles():
            return None
        return dialog.selectedFiles()[0]

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{v}</td></tr>" for k, v in SHORTCUTS)
        box = QMessageBox(self.window)
        box.setWindowTitle("Keyboard shortcuts")
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setText(f"<table>{rows}</table>")
        box.exec()


class ConsoleDialogs:
    """For ``--screenshot`` runs, where nobody can answer: messages go to stderr and every
    question gets the answer that changes nothing (keep the recovery file, do not save, never
    overwrite a file that changed on disk)."""

    def __init__(self, stream=None):
        import sys
        self.stream = stream or sys.stderr

    def _say(self, text: str) -> None:
        print(f"detscope: {text}", file=self.stream)

    def error(self, title: str, text: str) -> None:
        self._say(f"{title}: {text}")

    info = error

    def show_problems(self, title: str, lines: list[str]) -> None:
        self._say(f"{title}: {len(lines)} problem(s)")
        for line in lines[:20]:
            self._say(f"  {line}")

    def ask_save_changes(self, what: str) -> str:
        return "cancel"

    def ask_run_config(self, path: str) -> None:
        self._say(f"{path} (a config file beside the checkpoint) was not run: config files are Python; "
                  f"pass it with --config to use it")
        return None

    def ask_recover(self, what: str, saved_at: float, note: str = "") -> None:
        return None                              # keep the recovery file for an interactive start

    def ask_file_changed(self, path: str) -> str:
        self._say(f"{path} changed on disk since it was opened: not overwritten (nobody to ask); "
                  "the edits were not saved")
        return "cancel"

    def notice(self, title: str, text: str) -> None:
        self._say(f"{title}: {text}")

    def __getattr__(self, name: str):
        if name.startswith("ask_") or name == "show_shortcuts":
            return lambda *args, **kwargs: None
        raise AttributeError(name)
