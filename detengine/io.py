"""File writes that never leave a half-written file behind, never overwrite a read-only file,
write through symlinks, and keep a few versioned backups.

Temporary files are named ``.NAME.PID.XXXXXXXX.tmp`` beside the file they will replace, so one
left behind by a process that was killed mid-write (``kill -9``, power loss) is recognisable:
:func:`remove_stale_temp_files` deletes those of processes that are gone (the project opener
calls it), never those of a process that is still running.
"""
from __future__ import annotations

import filecmp
import os
import re
import shutil
import stat
import tempfile
from datetime import datetime
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "ReadOnlyFileError", "check_writable", "write_target",
           "keep_backup", "list_backups", "remove_stale_temp_files", "BACKUPS_KEPT", "OutputPathError",
           "check_output_path"]

BACKUPS_KEPT = 5
_TEMP_RE = re.compile(r"^\.(?P<base>.+)\.(?P<pid>\d+)\.(?P<rand>[A-Za-z0-9_]+)\.tmp$")
_STAMP_RE = r"\d{8}-\d{6}-\d{6}"


class ReadOnlyFileError(PermissionError):
    """The file to be replaced is read-only (no write permission bit, or not writable by this
    user): it is left as it is. ``path`` is the file as the caller named it."""

    def __init__(self, message: str, path):
        super().__init__(message)
        self.path = Path(path)


def write_target(path) -> Path:
    """Where a write to ``path`` must go: the file a symlink points to (so the link stays a
    link), else ``path`` itself."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def check_writable(path) -> None:
    """Raise :class:`ReadOnlyFileError` when ``path`` exists and its permission bits say it must
    not be written (``chmod 444``), even for root, who could write it anyway."""
    path = Path(path)
    target = write_target(path)
    try:
        st = target.stat()
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        return
    if not st.st_mode & 0o222 or not os.access(target, os.W_OK):
        shown = f"{path} (a link to {target})" if target != path else str(path)
        raise ReadOnlyFileError(f"{shown} is read-only ({stat.filemode(st.st_mode)}): it was not overwritten. "
                                "Save to another file (Save As), or make it writable first.", path)


class OutputPathError(ValueError):
    """An output path that cannot be written (a folder where a file is wanted, a read-only
    place, a file in the way of a folder). ``path`` is the path as the caller named it."""

    def __init__(self, message: str, path):
        super().__init__(message)
        self.path = Path(path)


def check_output_path(path, kind: str = "file", what: str = "output") -> Path:
    """Check, before any work starts, that ``path`` can be written as a ``kind`` (``"file"`` or
    ``"folder"``): a file must not be a folder nor read-only (:func:`check_writable`), a folder
    must not be a file, and the nearest existing folder above a missing path must be writable
    (``os.access``: root may write where the permission bits say no). Raises
    :class:`OutputPathError` with one message naming the path and ``what`` it is for; returns
    ``path`` as a :class:`~pathlib.Path`."""
    if kind not in ("file", "folder"):
        raise ValueError(f"kind must be 'file' or 'folder', got {kind!r}")
    path = Path(path)
    target = write_target(path)
    label = f"{what} {kind}"
    if kind == "file":
        if target.is_dir():
            raise OutputPathError(f"{label} {path} is a folder: give a file name (e.g. {path / 'results.json'})",
                                  path)
        if target.exists():
            try:
                check_writable(path)
            except ReadOnlyFileError as exc:
                raise OutputPathError(f"{label} {path} cannot be written: {exc}", path) from None
            if not os.access(target, os.W_OK):
                raise OutputPathError(f"{label} {path} cannot be written: permission denied", path)
            return path
        place = target.parent
    else:
        if target.exists() and not target.is_dir():
            raise OutputPathError(f"{label} {path} is a file, not a folder: give a folder", path)
        place = target
    # the nearest existing folder above (or at) ``place``: it must be a writable folder
    existing = place
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link: nothing can be made there
            raise OutputPathError(f"{label} {path} cannot be made: {existing} is a broken link", path)
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(f"{label} {path} cannot be made: {existing} is a file, not a folder", path)
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "it is" if existing == target else f"{existing} is"
        raise OutputPathError(f"{label} {path} cannot be written: {where} read-only (permission denied)", path)
    return path


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename over ``path``.

    A crash at any point leaves either the old file or the new one, never a mix. A symlink is
    written through (its target is replaced, the link stays); a read-only file raises
    :class:`ReadOnlyFileError` and is left unchanged."""
    check_writable(path)
    target = write_target(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(target, lambda f: f.write(data))
    _replace(tmp, target)


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> None:
    """:func:`atomic_write_bytes` for text."""
    atomic_write_bytes(path, text.encode(encoding))


def _write_temp(target: Path, fill, mode: int | None = None) -> str:
    """A fsynced temporary file ``.NAME.PID.XXXXXXXX.tmp`` beside ``target``, filled by ``fill(f)``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    try:
        os.chmod(tmp, _target_mode(target) if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


def _replace(tmp: str, target: Path) -> None:
    try:
        os.replace(tmp, target)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _target_mode(path: Path) -> int:
    """Keep an existing file's permissions; a new file gets 0o666 minus the umask."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


# --------------------------------------------------------------------------- versioned backups


def list_backups(path) -> list[Path]:
    """The versioned backups ``NAME.YYYYmmdd-HHMMSS-ffffff.bak`` of ``path`` (beside the file a
    symlink points to), oldest first."""
    target = write_target(path)
    pattern = re.compile(rf"^{re.escape(target.name)}\.{_STAMP_RE}\.bak$")
    try:
        names = sorted(p.name for p in target.parent.iterdir() if pattern.match(p.name))
    except FileNotFoundError:
        return []
    return [target.parent / name for name in names]


def keep_backup(path, keep: int = BACKUPS_KEPT) -> Path | None:
    """Copy ``path`` (if it exists) to a new timestamped ``.bak`` beside it before it is
    replaced, and delete all but the newest ``keep`` backups. A file identical to the newest
    backup is not copied again (saving twice does not push an older version out). The copy is
    atomic: a crash never leaves a truncated backup. Returns the backup of the current content."""
    target = write_target(path)
    if not target.is_file():
        return None
    backups = list_backups(target)
    if backups and filecmp.cmp(backups[-1], target, shallow=False):
        return backups[-1]
    backup = target.with_name(f"{target.name}.{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}.bak")
    while backup.exists():                                   # two saves in one microsecond (clock steps)
        backup = backup.with_name(backup.name[:-4] + "0.bak")
    with open(target, "rb") as src:
        tmp = _write_temp(backup, lambda f: shutil.copyfileobj(src, f, 1 << 20), stat.S_IMODE(target.stat().st_mode))
    _replace(tmp, backup)
    for old in list_backups(target)[:-max(1, keep)]:
        _unlink_quietly(old)
    return backup


# --------------------------------------------------------------------------- stale temporary files


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":                                      # os.kill(pid, 0) would terminate it there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:                                          # EPERM: alive, another user's
        return True
    return True


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` (of this machine) is still running: this process, another user's,
    or (on Windows, where it cannot be asked safely) any pid counts as running."""
    return _pid_alive(int(pid))


def remove_stale_temp_files(path) -> list[Path]:
    """Delete the temporary files that writes of ``path`` (and of its backups) left behind
    in processes that no longer exist; those of running processes are kept. Returns what was
    removed. Looks beside ``path`` and, for a symlink, beside its target."""
    path = Path(path)
    removed = []
    for place in {path, write_target(path)}:
        prefix = f".{place.name}."
        try:
            entries = [p for p in place.parent.iterdir() if p.name.startswith(prefix)]
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            m = _TEMP_RE.match(entry.name)
            if m is None or _pid_alive(int(m["pid"])) or not entry.is_file():
                continue
            try:
                entry.unlink()
                removed.append(entry)
            except OSError:
                pass
    return removed
