"""Load mmdetection-3.x-style Python config files without mmengine.

A config file is a Python file whose top-level variables (``model = dict(...)``,
``train_pipeline = [...]``) form a nested dict.  This module implements the part
of mmengine's ``Config.fromfile`` that DetScope needs:

* ``_base_ = 'x.py'`` or ``_base_ = ['a.py', 'b.py']`` (paths relative to the
  file), loaded recursively; a top-level key defined by two bases is an error,
  as in mmengine; the file's own variables are merged on top.
* mmengine's merge rule (:func:`merge_dicts`): dicts merge recursively, a dict
  holding ``_delete_=True`` replaces instead of merging, anything else replaces.
* ``{{fileDirname}}``, ``{{fileBasename}}``, ``{{fileBasenameNoExtension}}`` and
  ``{{fileExtname}}`` text substitution before the file is executed.
* Reading base values: ``{{_base_.model.data_preprocessor.mean}}`` (substituted
  after the bases are loaded) and plain ``_base_.backend_args`` (the file runs
  with ``_base_`` bound to the merged bases), both used by mmdetection's configs.

New-style "pure Python" configs (``with read_base(): from .x import *``) and
package-scoped bases (``'mmdet::...'``) are rejected with a :class:`ConfigError`.
Loaded values are restricted to dict, list, tuple, str, int, float, bool, None.

Executing a config file runs arbitrary Python, exactly like mmengine does: only
load files you trust.
"""

from __future__ import annotations

import ast
import copy
import keyword
import math
import os
import re
import types
import unicodedata
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["Config", "ConfigDict", "ConfigError", "load_config", "merge_dicts", "parse_cfg_value", "parse_cfg_options",
           "apply_cfg_options"]

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"
_LINE_WIDTH = 79
_INDENT = 4
_SKIPPED_TYPES = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type)
_BASE_REF = re.compile(r"\{\{\s*_base_\.([\w.]+)\s*\}\}")
_BASE_REF_TAG = "__detscope_base_ref_"
_RESERVED_TOP_KEYS = {BASE_KEY, "dict", "float"}


class ConfigError(ValueError):
    """A config file or config value that cannot be loaded; the message names the file."""


# --------------------------------------------------------------------------- containers


class ConfigDict(dict):
    """A dict whose keys can also be read and written as attributes.

    Nested dicts (also inside lists and tuples) are converted to ``ConfigDict`` on
    insertion.  Keys that clash with dict methods (``items``, ``keys``...) must be
    read with ``[...]``.
    """

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.update(*args, **kwargs)

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, _wrap(value))

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Insert items like ``dict.update``, wrapping nested dicts; returns None."""
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """Like ``dict.setdefault``; returns the (wrapped) stored value."""
        if key not in self:
            self[key] = default
        return self[key]

    def copy(self) -> ConfigDict:
        """Return a shallow copy as a ``ConfigDict``."""
        return ConfigDict(self)

    def to_dict(self) -> dict[Any, Any]:
        """Return a deep copy made of plain dicts, lists and tuples."""
        return _copy_plain(self)


class Config:
    """A loaded config: the merged top-level variables plus the file they came from.

    ``cfg["model"]``, ``cfg.model`` and ``cfg.get("model")`` return the stored
    :class:`ConfigDict` (edits through it change the config); :meth:`to_dict`
    returns an independent plain copy.
    """

    def __init__(
        self,
        cfg_dict: Mapping[str, Any] | None = None,
        filename: str | os.PathLike[str] | None = None,
    ) -> None:
        self._filename = None if filename is None else str(filename)
        self._cfg = ConfigDict(_sanitize_variables(cfg_dict or {}, self._filename or "<dict>"))

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], filename: str | os.PathLike[str] | None = None
    ) -> Config:
        """Return a Config holding a validated deep copy of *d*."""
        return cls(d, filename)

    @property
    def filename(self) -> str | None:
        """Return the absolute path of the loaded file, or None for configs built from dicts."""
        return self._filename

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._cfg[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __getitem__(self, key: str) -> Any:
        return self._cfg[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._cfg.update(_sanitize_variables({key: value}, self._filename or "<dict>"))

    def __contains__(self, key: object) -> bool:
        return key in self._cfg

    def __iter__(self) -> Iterator[str]:
        return iter(self._cfg)

    def __len__(self) -> int:
        return len(self._cfg)

    def __repr__(self) -> str:
        return f"Config(filename={self._filename!r}, keys={list(self._cfg)!r})"

    def keys(self) -> Any:
        """Return a view of the top-level keys."""
        return self._cfg.keys()

    def items(self) -> Any:
        """Return a view of the top-level (key, value) pairs."""
        return self._cfg.items()

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value stored under *key*, or *default* when absent."""
        return self._cfg.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        """Return a deep copy of the config made of plain dicts, lists and tuples."""
        return _copy_plain(self._cfg)

    def pretty_text(self) -> str:
        """Return Python source (``name = dict(...)`` per variable) that loads back to this config.

        Raises ConfigError when a top-level key cannot be a Python variable name.
        """
        lines = []
        for key, value in self._cfg.items():
            _check_top_level_key(key)
            prefix = f"{key} = "
            lines.append(prefix + _format(value, len(prefix), 0))
        return "".join(line + "\n" for line in lines)


def _wrap(value: Any) -> Any:
    """Return *value* with every nested mapping turned into a ConfigDict."""
    if isinstance(value, ConfigDict):
        return value
    if isinstance(value, Mapping):
        return ConfigDict(value)
    if isinstance(value, list):
        return [_wrap(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_wrap(item) for item in value)
    return value


def _copy_plain(value: Any, drop_delete: bool = False) -> Any:
    """Return a deep copy of *value* with mappings as plain dicts (minus ``_delete_`` if asked)."""
    if isinstance(value, Mapping):
        return {
            key: _copy_plain(item, drop_delete)
            for key, item in value.items()
            if not (drop_delete and key == DELETE_KEY)
        }
    if isinstance(value, list):
        return [_copy_plain(item, drop_delete) for item in value]
    if isinstance(value, tuple):
        return tuple(_copy_plain(item, drop_delete) for item in value)
    return copy.deepcopy(value)


# --------------------------------------------------------------------------- merging


def merge_dicts(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return a new dict with *override* merged into *base* by mmengine's rule.

    Dicts merge recursively; an override dict with ``_delete_=True`` replaces the
    base dict; lists and all other values replace.  An override dict over a
    non-dict base value replaces it (mmengine raises there).  ``_delete_`` keys
    never appear in the result.  Neither input is modified or shared.
    """
    for name, value in (("base", base), ("override", override)):
        if not isinstance(value, Mapping):
            raise TypeError(f"merge_dicts: {name} must be a mapping, got {value!r}")
    if override.get(DELETE_KEY):
        return _copy_plain(override, drop_delete=True)
    merged = _copy_plain(base, drop_delete=True)
    for key, value in override.items():
        if key == DELETE_KEY:
            continue
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            merged[key] = merge_dicts(current, value)
        else:
            merged[key] = _copy_plain(value, drop_delete=True)
    return merged


# --------------------------------------------------------------------------- command-line overrides


def parse_cfg_value(text: str) -> Any:
    """A ``--cfg-options`` value as mmengine's ``DictAction`` reads it: ``1`` -> int, ``0.1`` ->
    float, ``true`` / ``False`` -> bool, ``None``, ``[a,b]`` -> list, ``(a,b)`` -> tuple, nested
    (``[(1,2),(3,4)]``), a bare comma list ``a,b`` -> list, anything else a string. Quotes around
    the value and all spaces are dropped, as there."""
    text = text.strip("'\"").replace(" ", "")
    if text.startswith("(") and text.endswith(")"):
        return tuple(parse_cfg_value(part) for part in _split_top_level(text[1:-1]))
    if text.startswith("[") and text.endswith("]"):
        return [parse_cfg_value(part) for part in _split_top_level(text[1:-1])]
    if "," in text:
        return [parse_cfg_value(part) for part in _split_top_level(text)]
    return _parse_scalar(text)


def _parse_scalar(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return None if text == "None" else text


def _split_top_level(text: str) -> list[str]:
    """``"1,(2,3),[a,b]"`` -> ``["1", "(2,3)", "[a,b]"]``: commas outside brackets split."""
    if text.count("(") != text.count(")") or text.count("[") != text.count("]"):
        raise ConfigError(f"--cfg-options: unbalanced brackets in {text!r}")
    parts, depth, start = [], 0, 0
    for k, char in enumerate(text):
        depth += (char in "([") - (char in ")]")
        if char == "," and depth == 0:
            parts.append(text[start:k])
            start = k + 1
    if start < len(text):              # "1," is (1,): a trailing comma adds no element
        parts.append(text[start:])
    return parts


def parse_cfg_options(pairs: list[str]) -> dict[str, Any]:
    """``["model.test_cfg.score_thr=0.3", ...]`` -> ``{"model.test_cfg.score_thr": 0.3}``, split
    on the first ``=``; a later key wins."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--cfg-options wants KEY=VALUE, got {pair!r}")
        options[key] = parse_cfg_value(value)
    return options


def apply_cfg_options(cfg: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the config dict ``cfg`` with ``options`` (dotted keys, as mmengine's
    ``Config.merge_from_dict``) set: missing dict keys are created, a digit indexes a list
    (``train_pipeline.1.scale``), a key through a value that is neither dict nor list is an
    error. ``cfg`` is not modified."""
    out = _copy_plain(cfg)
    for key, value in options.items():
        _set_dotted(out, key, value)
    return out


def _set_dotted(node: Any, key: str, value: Any) -> None:
    parts = key.split(".")
    for depth, part in enumerate(parts):
        here = ".".join(parts[:depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"--cfg-options {key}: {here} is not an index of a list of {len(node)}")
            part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(f"--cfg-options {key}: {'.'.join(parts[:depth])} is {_short(node)}, not a dict or list")
        if depth == len(parts) - 1:
            node[part] = _copy_plain(value)
        elif isinstance(node, dict) and part not in node:
            node[part] = {}
        node = node[part]


# --------------------------------------------------------------------------- validation


def _sanitize_variables(variables: Any, where: str) -> dict[str, Any]:
    """Return a validated plain copy of the top-level mapping *variables*."""
    if not isinstance(variables, Mapping):
        raise ConfigError(f"{where}: a config must be a mapping, got {_short(variables)}")
    for key in variables:
        if not isinstance(key, str):
            raise ConfigError(f"{where}: top-level key {key!r} is not a string")
    return {key: _sanitize(value, key, where) for key, value in variables.items()}


def _sanitize(value: Any, key_path: str, where: str) -> Any:
    """Return a plain copy of *value*; raise ConfigError for types a config cannot hold."""
    if value is None or type(value) in (str, bool, int, float):
        return value
    if isinstance(value, (int, float)):  # subclasses such as IntEnum or numpy.float64
        return float(value) if isinstance(value, float) else int(value)
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if not (key is None or isinstance(key, (str, int, float))):
                raise ConfigError(f"{where}: {key_path} has unsupported key {_short(key)}")
            result[key] = _sanitize(item, f"{key_path}[{key!r}]", where)
        return result
    if isinstance(value, (list, tuple)):
        items = [_sanitize(item, f"{key_path}[{i}]", where) for i, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise ConfigError(
        f"{where}: {key_path} = {_short(value)} has unsupported type {type(value).__name__}; "
        "config values must be dict, list, tuple, str, int, float, bool or None"
    )


def _short(value: Any, limit: int = 120) -> str:
    """Return ``repr(value)``, cut to *limit* characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike[str]) -> Config:
    """Return the Config defined by the Python config file at *path* (bases merged in).

    Raises ConfigError (naming the file and line) for missing or unreadable files,
    syntax and runtime errors, bad or cyclic ``_base_`` entries, duplicate keys
    across bases, new-style configs and unsupported values.
    """
    abs_path = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    return Config(_load_file(abs_path, ()), filename=abs_path)


def _load_file(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """Return the merged variables of the config at *path*; *chain* are the files including it."""
    source = _read_source(path)
    text, base_refs = _substitute_markers(source, path)
    tree = _parse(text, source, path)
    _reject_new_style(tree, source, path)
    entries, base_line = _pop_base_entries(tree, source, path)
    base = _load_bases(path, source, base_line, entries, (*chain, path))
    namespace = _execute(tree, source, path, base)
    variables = _sanitize_variables(_collect_variables(namespace, tree), str(path))
    variables = _resolve_base_refs(variables, base_refs, base, path, source)
    return merge_dicts(base, variables)


def _error_at(path: Path, source: str, lineno: int | None, message: str) -> ConfigError:
    """Return a ConfigError for *message* at line *lineno* of *path*, quoting that line."""
    lines = source.splitlines()
    if lineno is None or not 0 < lineno <= len(lines):
        return ConfigError(f"{path}: {message}")
    return ConfigError(f"{path}, line {lineno}: {message}\n    {lines[lineno - 1].strip()}")


def _read_source(path: Path) -> str:
    """Return the text of the config file *path*."""
    if path.suffix != ".py":
        raise ConfigError(f"only Python (.py) config files are supported, got {str(path)!r}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc


def _substitute_markers(source: str, path: Path) -> tuple[str, dict[str, tuple[str, int]]]:
    """Return (text with ``{{...}}`` markers replaced, {placeholder: (base key path, line)}).

    File markers become the file's path parts; ``{{_base_.a.b}}`` becomes a quoted
    placeholder string that :func:`_resolve_base_refs` swaps for the base value.
    """
    name = path.name
    values = {
        "fileDirname": str(path.parent),
        "fileBasename": name,
        "fileBasenameNoExtension": os.path.splitext(name)[0],
        "fileExtname": os.path.splitext(name)[1],
    }
    text = source
    for key, value in values.items():
        pattern = r"\{\{\s*" + key + r"\s*\}\}"
        text = re.sub(pattern, lambda _m, v=value.replace("\\", "/"): v, text)
    refs: dict[str, tuple[str, int]] = {}

    def placeholder(match: re.Match[str]) -> str:
        tag = f"{_BASE_REF_TAG}{len(refs)}__"
        refs[tag] = (match.group(1), text.count("\n", 0, match.start()) + 1)
        return repr(tag)

    return _BASE_REF.sub(placeholder, text), refs


def _parse(text: str, source: str, path: Path) -> ast.Module:
    """Return the AST of *text*; raise ConfigError quoting the line of a syntax error."""
    try:
        return ast.parse(text, filename=str(path))
    except SyntaxError as exc:
        raise _error_at(path, source, exc.lineno, f"syntax error: {exc.msg}") from exc


def _module_level_nodes(tree: ast.Module) -> Iterator[ast.AST]:
    """Yield the nodes of *tree* that run at module level (not inside def, class or lambda)."""
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            pending.extend(ast.iter_child_nodes(node))


def _reject_new_style(tree: ast.Module, source: str, path: Path) -> None:
    """Raise ConfigError if *tree* is an mmengine pure-Python config (``read_base``); else None."""
    for node in _module_level_nodes(tree):
        uses_read_base = (
            isinstance(node, ast.ImportFrom) and any(a.name == "read_base" for a in node.names)
        ) or (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == "read_base"
        )
        if uses_read_base:
            raise _error_at(
                path, source, getattr(node, "lineno", None),
                "new-style (pure Python, read_base()) mmengine configs are not supported yet; "
                "write the config in the _base_ = [...] style instead",
            )


def _pop_base_entries(tree: ast.Module, source: str, path: Path) -> tuple[list[str], int | None]:
    """Remove top-level ``_base_ = ...`` statements from *tree*; return (base paths, line).

    The value must be a literal string or list/tuple of strings, as in mmengine.
    """
    assigns = [
        node for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == BASE_KEY for t in node.targets)
    ]
    if not assigns:
        return [], None
    tree.body = [node for node in tree.body if node not in assigns]
    node = assigns[-1]
    try:
        value = ast.literal_eval(node.value)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        value = None  # not a literal: rejected below
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, (list, tuple)) or not all(isinstance(e, str) for e in entries):
        raise _error_at(
            path, source, node.lineno,
            "_base_ must be a literal string or list of strings, "
            f"got {ast.unparse(node.value)!r}",
        )
    return list(entries), node.lineno


def _load_bases(
    path: Path, source: str, lineno: int | None, entries: list[str], chain: tuple[Path, ...]
) -> dict[str, Any]:
    """Return the merged variables of the base files *entries* listed in *path*.

    Raises ConfigError for missing or package-scoped bases, cycles, and top-level
    keys defined by two bases.
    """
    merged: dict[str, Any] = {}
    origin: dict[str, Path] = {}
    for entry in entries:
        if "::" in entry:
            raise _error_at(
                path, source, lineno,
                f"package-scoped base {entry!r} is not supported; copy the file next to "
                "the config and use a relative path",
            )
        base_path = Path(os.path.abspath(path.parent / os.path.expanduser(entry)))
        if base_path in chain:
            cycle = " -> ".join(str(p) for p in (*chain[chain.index(base_path):], base_path))
            raise _error_at(path, source, lineno, f"_base_ cycle: {cycle}")
        if not base_path.is_file():
            raise _error_at(path, source, lineno, f"base config {entry!r} not found: {base_path}")
        for key, value in _load_file(base_path, chain).items():
            if key in origin:
                raise _error_at(
                    path, source, lineno,
                    f"duplicate key {key!r} in base configs {origin[key]} and {base_path}; "
                    "a top-level key may be defined by only one _base_ file",
                )
            origin[key] = base_path
            merged[key] = value
    return merged


def _execute(tree: ast.Module, source: str, path: Path, base: dict[str, Any]) -> dict[str, Any]:
    """Run *tree* with ``_base_`` bound to the merged *base*; return its global namespace."""
    namespace: dict[str, Any] = {
        "__file__": str(path),
        "__name__": "__detscope_config__",
        BASE_KEY: ConfigDict(base),  # wrapping copies every container
    }
    try:
        exec(compile(tree, str(path), "exec"), namespace)  # noqa: S102 - config files are code
    except Exception as exc:
        raise _error_at(
            path, source, _failing_line(exc, str(path)), f"{type(exc).__name__}: {exc}"
        ) from exc
    namespace.pop(BASE_KEY, None)
    return namespace


def _failing_line(exc: BaseException, filename: str) -> int | None:
    """Return the deepest line of *filename* in the traceback of *exc*, or None."""
    lineno = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            lineno = tb.tb_lineno
        tb = tb.tb_next
    return lineno


def _imported_names(tree: ast.Module) -> set[str]:
    """Return the names bound by module-level import statements of *tree*."""
    names = set()
    for node in _module_level_nodes(tree):
        if isinstance(node, ast.Import):
            names.update(a.asname or a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names if a.name != "*")
    return names


def _collect_variables(namespace: dict[str, Any], tree: ast.Module) -> dict[str, Any]:
    """Return the config variables of *namespace*.

    Skipped: ``__dunder__`` names, imported names, modules, functions and classes.
    """
    imported = _imported_names(tree)
    return {
        name: value
        for name, value in namespace.items()
        if not name.startswith("__")
        and name not in imported
        and not isinstance(value, _SKIPPED_TYPES)
    }


def _resolve_base_refs(
    value: Any, refs: dict[str, tuple[str, int]], base: dict[str, Any], path: Path, source: str
) -> Any:
    """Return *value* with ``{{_base_.x}}`` placeholders replaced by copies of the base values."""
    if not refs:
        return value
    if isinstance(value, dict):
        return {k: _resolve_base_refs(v, refs, base, path, source) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_resolve_base_refs(v, refs, base, path, source) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, str) and value in refs:
        return _lookup_base(base, *refs[value], path, source)
    if isinstance(value, str) and _BASE_REF_TAG in value:
        raise ConfigError(
            f"{path}: {{{{_base_.xxx}}}} must be a whole value, not part of {value!r}"
        )
    return value


def _lookup_base(base: dict[str, Any], dotted: str, lineno: int, path: Path, source: str) -> Any:
    """Return a copy of ``base[a][b]...`` for *dotted* ``a.b...`` (digits index lists)."""
    current: Any = base
    for part in dotted.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, (list, tuple)) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise _error_at(
                path, source, lineno,
                f"{{{{_base_.{dotted}}}}}: {dotted!r} is not in the base configs",
            )
    return copy.deepcopy(current)


# --------------------------------------------------------------------------- pretty text


def _is_name(key: Any) -> bool:
    """Return True if *key* reads back unchanged as a Python name.

    Python NFKC-normalizes identifiers, so ``dict(º=1)`` would load as key ``'o'``.
    """
    return (
        isinstance(key, str)
        and key.isidentifier()
        and not keyword.iskeyword(key)
        and unicodedata.normalize("NFKC", key) == key
    )


def _check_top_level_key(key: Any) -> None:
    """Raise ConfigError unless *key* can be written as a config variable name; else None."""
    if not _is_name(key) or key.startswith("__") or key in _RESERVED_TOP_KEYS:
        raise ConfigError(f"top-level key {key!r} cannot be written as a config variable")


def _kwarg_keys(value: Mapping[Any, Any]) -> bool:
    """Return True when every key of *value* can be a ``dict(key=...)`` keyword."""
    return all(_is_name(k) for k in value)


def _format_scalar(value: Any) -> str:
    """Return Python source for a scalar; ``{{`` in strings is split so it is not substituted."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, str) and "{{" in value:
        return " ".join(repr(part) for part in re.split(r"(?<=\{)(?=\{)", value))
    return repr(value)


def _format_flat(value: Any) -> str:
    """Return one-line Python source for *value*."""
    if isinstance(value, Mapping):
        if _kwarg_keys(value):
            return "dict(" + ", ".join(f"{k}={_format_flat(v)}" for k, v in value.items()) + ")"
        items = (f"{_format_scalar(k)}: {_format_flat(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_format_flat(v) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(_format_flat(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return _format_scalar(value)


def _format(value: Any, column: int, indent: int) -> str:
    """Return Python source for *value* starting at *column* on a line indented by *indent*.

    Values that do not fit the line width are split one item per line, in
    mmdetection's layout (``dict(\\n    a=1,\\n    b=2)``).
    """
    flat = _format_flat(value)
    splittable = isinstance(value, (Mapping, list, tuple)) and len(value) > 0
    if column + len(flat) < _LINE_WIDTH or not splittable:
        return flat
    inner = indent + _INDENT
    pad = " " * inner
    if isinstance(value, Mapping):
        if _kwarg_keys(value):
            parts = [f"{pad}{k}={_format(v, inner + len(k) + 1, inner)}" for k, v in value.items()]
            return "dict(\n" + ",\n".join(parts) + ")"
        parts = []
        for k, v in value.items():
            key = _format_scalar(k)
            parts.append(f"{pad}{key}: {_format(v, inner + len(key) + 2, inner)}")
        return "{\n" + ",\n".join(parts) + "}"
    items = [f"{pad}{_format(v, inner, inner)}" for v in value]
    if isinstance(value, list):
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
    return "(\n" + "".join(item + ",\n" for item in items) + " " * indent + ")"
