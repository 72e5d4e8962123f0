"""PostgreSQL's own parser (libpg_query, through pglast's C extension), loaded in ~4 ms.

``import pglast`` costs 35-90 ms: its package imports the generated AST classes
and enum modules, which a run that only needs ``split`` and ``parse_sql_json``
never touches. A command-line apply with something to do paid that on every
start. ``parser()`` loads the extension module alone, with lazy stand-ins for
the two modules it binds at import time (``ast`` and ``enums``; they load for
real on first attribute use), so:

* a later ``import pglast`` anywhere in the process still works: the extension
  registered itself as ``pglast.parser``, its ``ast``/``enums`` resolve to the
  real modules, ``pglast.Error`` is the very class ``ParseError`` derives from
  (``pglast/error.py`` is registered under its real name), and a one-shot
  import hook binds ``pglast.parser``/``pglast.error`` on the package, which
  the import system skips for modules already in ``sys.modules``;
* if pglast is already imported, or anything about its layout differs from
  what this expects, the plain ``from pglast import parser`` is used instead.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

_ALIAS = "sqlrunner._pglast"
_loaded: ModuleType | None = None
_loading = threading.Lock()


class _OnFirstUse(ModuleType):
    """Stands for ``pglast.<name>`` until an attribute is read, then imports it for real."""

    def __getattr__(self, attribute: str) -> Any:
        return getattr(
            importlib.import_module(f"pglast.{self.__name__.rsplit('.', 1)[1]}"), attribute
        )


class _BindSubmodules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """On the real ``import pglast``: run the package, then bind the submodules we loaded."""

    inner: Any = None

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "pglast":
            return None
        sys.meta_path.remove(self)  # one shot; the real finder does the rest
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            self.inner = spec.loader
            spec.loader = self
        return spec

    def create_module(self, spec: Any) -> Any:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        for name in ("parser", "error"):
            if f"pglast.{name}" in sys.modules:
                setattr(module, name, sys.modules[f"pglast.{name}"])

    def __getattr__(self, name: str) -> Any:  # resource readers and the like
        if self.inner is None:
            raise AttributeError(name)
        return getattr(self.inner, name)


def parser() -> Any:
    """pglast's ``parser`` extension module (``split``, ``parse_sql_json``, ``ParseError``)."""
    global _loaded
    if _loaded is None:
        with _loading:
            if _loaded is None:
                _loaded = _load()
    return _loaded


def _load() -> ModuleType:
    if "pglast" not in sys.modules:
        try:
            return _load_alone()
        except Exception:  # any surprise: pay for the full package instead
            for name in (_ALIAS, f"{_ALIAS}.parser", f"{_ALIAS}.ast", f"{_ALIAS}.enums"):
                sys.modules.pop(name, None)
    from pglast import parser as full

    return full


def _load_alone() -> ModuleType:
    spec = importlib.util.find_spec("pglast")  # locates the package without running it
    if spec is None or spec.origin is None:
        raise ImportError("pglast is not installed")
    home = Path(spec.origin).parent
    extension = next(
        home / f"parser{suffix}"
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
        if (home / f"parser{suffix}").is_file()
    )
    error = sys.modules.get("pglast.error") or _run_file("pglast.error", home / "error.py")
    package = ModuleType(_ALIAS)
    package.__path__ = []
    stand_ins = {name: _OnFirstUse(f"{_ALIAS}.{name}") for name in ("ast", "enums")}
    # what the extension binds when it starts: ParseError derives from this Error
    vars(package).update(Error=error.Error, **stand_ins)
    sys.modules[_ALIAS] = package
    for name, stand_in in stand_ins.items():
        sys.modules[f"{_ALIAS}.{name}"] = stand_in
    module = _run_file(f"{_ALIAS}.parser", extension)
    module.split  # noqa: B018  # fail here, not mid-run, if the layout changed
    module.parse_sql_json  # noqa: B018
    module.ParseError  # noqa: B018
    sys.meta_path.insert(0, _BindSubmodules())
    return module


def _run_file(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
