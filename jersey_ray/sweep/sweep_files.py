"""Sweep files, found by path: a sweep is a ``.py`` file that defines ``SWEEP = SweepSpec(...)``.

``python -m jersey_ray.sweep NAME`` and ``jersey-ray sweep NAME`` look for ``NAME.py`` in these
folders, in this order (the first match wins):

1. each folder of ``$JERSEY_RAY_SWEEPS`` (several separated by ``os.pathsep``), if set;
2. ``./sweeps`` in the working directory (a project's own sweeps);
3. the built-in sweeps: the ``sweeps/`` folder of the source checkout this package runs from
   (``make install`` / ``pip install -e .``). A wheel ships none: pass a path or use 1 or 2.

A name ending in ``.py`` is a path and is loaded as given. Nothing named ``sweeps`` is installed
or imported: each file is executed as its own module, named after its resolved path, so two
``phaseB.py`` files never collide, and the entry point (``-m`` or the script) or the working
directory's ``sys.path`` entry never decides which file runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path

import jersey_ray
from jersey_ray.config import SweepSpec
from jersey_ray.errors import UserError

ENV = "JERSEY_RAY_SWEEPS"
"""Environment variable: folders searched first for a sweep given by name."""
log = logging.getLogger(__name__)


def builtin_folder() -> Path | None:
    """``sweeps/`` beside the ``jersey_ray`` package, when it runs from a source checkout.

    The ``pyproject.toml`` check keeps an unrelated ``site-packages/sweeps`` (another
    distribution's package beside an installed ``jersey_ray``) from being taken for it.
    """
    root = Path(jersey_ray.__file__).resolve().parents[1]
    folder = root / "sweeps"
    return folder if (root / "pyproject.toml").is_file() and folder.is_dir() else None


def search_path() -> list[Path]:
    """The folders a sweep name is looked up in, in order (see the module docstring)."""
    folders = []
    for entry in os.environ.get(ENV, "").split(os.pathsep):
        if not entry:
            continue
        if not Path(entry).is_dir():
            raise UserError(f"{ENV}: {entry} is not a folder; set it to folders of sweep files")
        folders.append(Path(entry))
    if Path("sweeps").is_dir():
        folders.append(Path("sweeps"))
    builtin = builtin_folder()
    if builtin is not None:
        folders.append(builtin)
    unique: dict[Path, Path] = {}
    for folder in folders:  # ./sweeps in the checkout is the built-in folder: list it once
        unique.setdefault(folder.resolve(), folder)
    return list(unique.values())


def available() -> list[str]:
    """Every sweep name the search path offers (files starting with ``_`` are not sweeps)."""
    return sorted(
        {p.stem for folder in search_path() for p in folder.glob("*.py") if p.stem[0] != "_"}
    )


def find(name: str) -> Path:
    """The file of sweep ``name`` (a name, or a path ending in ``.py``)."""
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise UserError(f"sweep file {path} does not exist")
        return path
    if Path(name).name != name or name.startswith("."):
        raise UserError(f"sweep {name!r}: give a sweep name (e.g. phaseB) or a path ending in .py")
    matches = [folder / f"{name}.py" for folder in search_path()]
    matches = [p for p in matches if p.is_file()]
    if not matches:
        where = ", ".join(str(f) for f in search_path()) or "no sweeps folder"
        raise UserError(
            f"no sweep {name!r} in {where}: choose all, one of {', '.join(available())}, "
            "or pass a path to a sweep file"
        )
    for other in matches[1:]:
        log.warning("sweep %s: %s comes first, %s is not used", name, matches[0], other)
    return matches[0]


def load(name: str) -> SweepSpec:
    """The ``SWEEP`` of sweep ``name`` (see :func:`find`), its file executed as a fresh module.

    The module stays out of ``sys.modules``: what the file defines (e.g. a function in a Tune
    domain) is then pickled by value for Ray's workers, which could not import it by name.
    """
    path = find(name)
    resolved = path.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:8]
    module_name = f"jersey_ray_sweep_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    if spec is None or spec.loader is None:  # only for a file Python cannot load as source
        raise UserError(f"sweep file {path} cannot be loaded as Python source")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sweep = getattr(module, "SWEEP", None)
    if not isinstance(sweep, SweepSpec):
        raise UserError(f"sweep file {path} must define SWEEP = SweepSpec(...)")
    log.info("sweep %s: %s", name, path)
    return sweep
