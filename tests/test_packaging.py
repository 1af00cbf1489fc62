"""A clean install: sweep files found by path, dependencies exactly those imported, dev tools
pinned, one constraints file for the Makefile and both cluster configs, a Makefile that
reinstalls torch when asked, and a wheel that carries what it declares."""

from __future__ import annotations

import ast
import email
import functools
import importlib.metadata
import logging
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser from PyPI (in the dev extra)
    import tomli as tomllib

from jersey_ray.errors import UserError
from jersey_ray.sweep import sweep_files
from jersey_ray.sweep.settings import available_sweeps, load_sweep

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
BUILTIN = ("generalization", "phase0", "phaseA", "phaseB", "search_lr", "soccernet")


def norm(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def req_name(requirement: str) -> str:
    return norm(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0])


# --- sweep files: by path, the same for every entry point ------------------------------------

SWEEP_FILE = """\
from jersey_ray.config import SweepSpec

print("LOADED", __file__)
SWEEP = SweepSpec(name={name!r}, phase="p", description="d", models=("basic_r18",), seeds=(1,))
"""


def write_sweep(path: Path, name: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SWEEP_FILE.format(name=name))
    return path


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working directory outside the checkout, with no $JERSEY_RAY_SWEEPS."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(sweep_files.ENV, raising=False)
    return tmp_path


def test_builtin_sweeps_load_by_name_from_any_directory(elsewhere):
    assert sweep_files.builtin_folder() == REPO / "sweeps"
    assert set(BUILTIN) <= set(available_sweeps())
    assert load_sweep("phaseB").name == "phaseB"
    assert not any(m == "sweeps" or m.startswith("sweeps.") for m in sys.modules)


def test_sweeps_is_a_folder_not_a_package():
    assert not (REPO / "sweeps" / "__init__.py").exists()
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["jersey_ray*"]


def test_a_path_loads_as_given_and_same_names_never_collide(elsewhere):
    a = write_sweep(elsewhere / "a" / "phaseB.py", "from_a")
    b = write_sweep(elsewhere / "b" / "phaseB.py", "from_b")
    assert load_sweep(str(a)).name == "from_a"
    assert load_sweep(str(b)).name == "from_b"
    assert load_sweep("phaseB").name == "phaseB"  # the built-in one is untouched
    assert not [m for m in sys.modules if m.startswith("jersey_ray_sweep_")]


def test_working_directory_sweeps_come_before_the_builtin_ones(elsewhere, caplog):
    write_sweep(elsewhere / "sweeps" / "phaseB.py", "mine")
    write_sweep(elsewhere / "sweeps" / "my_sweep.py", "my_sweep")
    with caplog.at_level(logging.WARNING, logger=sweep_files.__name__):
        assert load_sweep("phaseB").name == "mine"
    assert "is not used" in caplog.text and str(REPO / "sweeps" / "phaseB.py") in caplog.text
    assert load_sweep("my_sweep").name == "my_sweep"
    assert {"my_sweep", *BUILTIN} <= set(available_sweeps())


def test_env_folders_come_first(elsewhere, monkeypatch):
    write_sweep(elsewhere / "sweeps" / "phaseB.py", "cwd")
    first, second = elsewhere / "first", elsewhere / "second"
    write_sweep(second / "phaseB.py", "env2")
    write_sweep(second / "extra.py", "extra")
    first.mkdir()
    monkeypatch.setenv(sweep_files.ENV, f"{first}{os.pathsep}{second}")
    assert load_sweep("phaseB").name == "env2"
    assert load_sweep("extra").name == "extra"
    assert sweep_files.search_path()[:3] == [first, second, Path("sweeps")]


def test_env_folder_that_does_not_exist_is_a_user_error(elsewhere, monkeypatch):
    monkeypatch.setenv(sweep_files.ENV, str(elsewhere / "nope"))
    with pytest.raises(UserError, match=r"JERSEY_RAY_SWEEPS: .*nope is not a folder"):
        load_sweep("phaseB")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nosuch", r"no sweep 'nosuch' in .*sweeps: choose all, one of .*phaseB"),
        ("missing.py", r"sweep file missing.py does not exist"),
        ("some/dir/phaseB", r"give a sweep name .* or a path ending in .py"),
        ("..", r"give a sweep name"),
    ],
)
def test_bad_sweep_names_are_user_errors(elsewhere, name, message):
    with pytest.raises(UserError, match=message):
        load_sweep(name)


def test_a_file_without_sweep_is_a_user_error(elsewhere):
    (elsewhere / "empty.py").write_text("X = 1\n")
    with pytest.raises(UserError, match=r"sweep file empty.py must define SWEEP = SweepSpec"):
        load_sweep("empty.py")


def test_no_builtin_folder_outside_a_checkout(monkeypatch, tmp_path):
    """An installed wheel: site-packages/jersey_ray, maybe beside someone's `sweeps` package."""
    site = tmp_path / "site-packages"
    (site / "jersey_ray").mkdir(parents=True)
    (site / "sweeps").mkdir()
    monkeypatch.setattr(sweep_files.jersey_ray, "__file__", str(site / "jersey_ray" / "x.py"))
    assert sweep_files.builtin_folder() is None


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != sweep_files.ENV}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


ENTRY_POINTS = {
    "python -m": [sys.executable, "-m", "jersey_ray.sweep"],
    "script": [str(Path(sys.executable).parent / "jersey-ray"), "sweep"],
}


@pytest.mark.parametrize("entry", ["python -m", "script"])
def test_both_commands_load_the_same_files(elsewhere, capsys, entry):
    """In this process: the script's dispatch and the sweep command's own main. The run stops
    at an unknown model id, before any data work."""
    from jersey_ray.__main__ import main as script_main
    from jersey_ray.sweep.__main__ import main as sweep_main

    own = write_sweep(elsewhere / "sweeps" / "phaseB.py", "own")
    mine = write_sweep(elsewhere / "elsewhere" / "my_sweep.py", "my_sweep")
    for arg, loaded in (("phaseB", own), ("elsewhere/my_sweep.py", mine)):
        argv = [arg, "--models", "no_such_model"]
        status = sweep_main(argv) if entry == "python -m" else script_main(["sweep", *argv])
        out, err = capsys.readouterr()
        assert f"LOADED {loaded.resolve()}" in out
        assert status != 0 and "no_such_model" in err


@pytest.mark.slow  # four fresh interpreters importing Ray and torch: about 100 s on 2 cores
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_both_entry_points_find_the_same_files(tmp_path, entry):
    """`-m` puts the working directory on sys.path, the script does not: neither matters now.
    The run stops at an unknown model id, before any data work."""
    if entry == "script" and not Path(ENTRY_POINTS["script"][0]).is_file():
        pytest.skip("the jersey-ray script is not installed next to this Python")
    own = write_sweep(tmp_path / "sweeps" / "phaseB.py", "own")
    mine = write_sweep(tmp_path / "elsewhere" / "my_sweep.py", "my_sweep")
    for arg, loaded in (("phaseB", own), ("elsewhere/my_sweep.py", mine)):
        proc = run_cli([*ENTRY_POINTS[entry], arg, "--models", "no_such_model"], tmp_path)
        assert f"LOADED {loaded.resolve()}" in proc.stdout, proc.stderr
        assert proc.returncode != 0 and "no_such_model" in proc.stderr


# --- dependencies: declared exactly as imported ----------------------------------------------

# Declared runtime dependencies that no jersey_ray module imports by name, with the module whose
# import needs them.
INDIRECT = {"tensorboard": "torch.utils.tensorboard"}


def imports(folder: Path) -> list[tuple[str, str, bool, bool]]:
    """(top-level name, file:line, at module level, under a try that catches ImportError)."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        found += _walk(tree, f"{path.relative_to(REPO)}", lazy=False, guarded=False)
    return found


def _catches_import_error(node: ast.Try) -> bool:
    names = set()
    for handler in node.handlers:
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        names |= {t.id for t in types if isinstance(t, ast.Name)}
    return bool(names & {"ImportError", "ModuleNotFoundError"})


def _type_checking_only(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, where: str, lazy: bool, guarded: bool) -> list:
    found = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import):
            found += [(a.name, f"{where}:{child.lineno}", lazy, guarded) for a in child.names]
        elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
            found.append((child.module, f"{where}:{child.lineno}", lazy, guarded))
        elif _type_checking_only(child):  # never imported at run time
            for stmt in child.orelse:
                found += _walk(ast.Module([stmt], []), where, lazy, guarded)
        else:
            inner_lazy = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Try) and _catches_import_error(child):
                for stmt in child.body:
                    found += _walk(ast.Module([stmt], []), where, inner_lazy, True)
                for part in (child.handlers, child.orelse, child.finalbody):
                    for stmt in part:
                        found += _walk(ast.Module([stmt], []), where, inner_lazy, guarded)
            else:
                found += _walk(child, where, inner_lazy, guarded)
    return found


def third_party(found: list, local: set[str] = frozenset()) -> list:
    skip = set(sys.stdlib_module_names) | {"jersey_ray", "__future__"} | set(local)
    return [(name, *rest) for name, *rest in found if name.split(".")[0] not in skip]


@functools.cache
def _top_level_dists() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def distribution(module: str) -> str:
    """The distribution that installs top-level module ``module`` here; a module not installed
    (e.g. a fallback for another Python) is taken to be its own distribution's name."""
    top = module.split(".")[0]
    dists = _top_level_dists().get(top)
    return norm(dists[0]) if dists else norm(top)


def extras() -> dict[str, set[str]]:
    """Each extra's distribution names, the project's own extras (`jersey-ray[bench]`) expanded."""
    raw = {k: list(v) for k, v in PROJECT["optional-dependencies"].items()}
    out: dict[str, set[str]] = {}
    for extra, reqs in raw.items():
        names = set()
        for req in reqs:
            if req_name(req) == norm(PROJECT["name"]):
                inner = re.search(r"\[(.*)\]", req).group(1)
                names |= {req_name(r) for e in inner.split(",") for r in raw[e.strip()]}
            else:
                names.add(req_name(req))
        out[extra] = names
    return out


RUNTIME = {req_name(r) for r in PROJECT["dependencies"]}


def test_every_runtime_import_is_declared():
    """Imported at module level (so on every run): a runtime dependency. Imported inside a
    function: a runtime dependency, or one of an extra (the feature that needs it). Under
    `try/except ImportError`: optional, whatever it is."""
    optional = set().union(*extras().values())
    wrong = []
    for name, where, lazy, guarded in third_party(
        imports(REPO / "jersey_ray") + imports(REPO / "sweeps")
    ):
        dist = distribution(name)
        if guarded or dist in RUNTIME or (lazy and dist in optional):
            continue
        need = "an extra's import inside a function" if dist in optional else "undeclared"
        wrong.append(f"{where}: {name} ({dist}: {need})")
    assert not wrong, "declare in [project] dependencies, or guard the import:\n" + "\n".join(wrong)


def test_every_runtime_dependency_is_imported():
    found = imports(REPO / "jersey_ray") + imports(REPO / "sweeps")
    direct = {distribution(name) for name, *_ in third_party(found)}
    modules = {name for name, *_ in found}
    for dist, via in INDIRECT.items():
        assert dist in RUNTIME, f"{dist} is listed as indirect but not declared"
        assert via in modules, f"{dist} is declared for {via}, which nothing imports any more"
    unused = RUNTIME - direct - set(INDIRECT)
    assert not unused, f"declared but never imported (move to an extra or drop): {unused}"


def test_tests_need_only_dev():
    """`pip install -e .[dev]` then `pytest`: what the tests import is there (an extra's module
    a test may lack is skipped with pytest.importorskip, which is no import statement)."""
    local = {p.stem for p in (REPO / "tests").glob("*.py")}
    dev = RUNTIME | extras()["dev"]
    missing = [
        f"{where}: {name} ({distribution(name)})"
        for name, where, _, guarded in third_party(imports(REPO / "tests"), local)
        if not guarded and distribution(name) not in dev
    ]
    assert not missing, "add to the dev extra:\n" + "\n".join(missing)


def test_the_dependency_check_sees_what_it_must():
    """The checker itself: lazy, guarded and top-level imports told apart."""
    tree = ast.parse(
        "import numpy\n"
        "try:\n    import pandas\nexcept ImportError:\n    pandas = None\n"
        "def f():\n    import onnx\n    from safetensors.torch import load_file\n"
        "if TYPE_CHECKING:\n    import polars\nelse:\n    import scipy\n"
    )
    assert _walk(tree, "x", lazy=False, guarded=False) == [
        ("numpy", "x:1", False, False),
        ("pandas", "x:3", False, True),
        ("onnx", "x:7", True, False),
        ("safetensors.torch", "x:8", True, False),
        ("scipy", "x:12", False, False),
    ]


def test_yaml_is_for_tests_only():
    assert "pyyaml" not in RUNTIME and "pyyaml" in extras()["dev"]
    assert {"huggingface-hub", "safetensors"} <= RUNTIME


def test_dev_tools_are_pinned_to_what_is_installed():
    pins = {}
    for req in PROJECT["optional-dependencies"]["dev"]:
        if "==" in req:
            name, version = req.split("==")
            pins[norm(name)] = version
    for tool in ("pytest", "pytest-randomly", "ruff", "mypy"):
        assert tool in pins, f"{tool} is not pinned exactly (==) in the dev extra"
        assert importlib.metadata.version(tool) == pins[tool], f"{tool}: run make install"


def test_tests_that_need_the_bench_extra_get_it_from_dev():
    assert extras()["bench"] <= extras()["dev"]


# --- one constraints file --------------------------------------------------------------------

CONSTRAINTS = REPO / "constraints.txt"


def constraints() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][A-Za-z0-9.+]*", line), line
            name, version = line.split("==")
            pins[norm(name)] = version
    return pins


def within(version: str, requirement: str) -> bool:
    """``version`` meets the >=, <, == bounds of ``requirement`` (numeric versions only)."""
    as_tuple = lambda v: tuple(int(x) for x in v.split("+")[0].split("."))  # noqa: E731
    ops = {">=": "__ge__", "<=": "__le__", "==": "__eq__", ">": "__gt__", "<": "__lt__"}
    for op, bound in re.findall(r"(>=|<=|==|>|<)\s*([0-9.]+)", requirement):
        have, want = as_tuple(version), as_tuple(bound)
        if op == "==":
            have = have[: len(want)]
        if not getattr(have, ops[op])(want):
            return False
    return True


def test_constraints_pin_torch_torchvision_and_ray_within_pyproject():
    pins = constraints()
    assert set(pins) == {"torch", "torchvision", "ray"}
    ranges = {req_name(r): r for r in PROJECT["dependencies"]}
    for name, version in pins.items():
        assert within(version, ranges[name]), (name, version, ranges[name])
    assert not within("2.61.0", ranges["ray"]) and not within("2.3", ranges["torch"])
    assert importlib.metadata.version("ray") == pins["ray"], "run make install"


def test_makefile_installs_with_the_constraints():
    text = (REPO / "Makefile").read_text()
    assert re.search(r"^\$\(STAMP\): pyproject.toml constraints.txt$", text, re.M)
    assert 'pip install -q -c $(PINS) -e ".[dev]"' in text
    assert not re.search(r"torch(vision)?==[0-9]", text), "versions live in constraints.txt"


def test_gpu_yaml_installs_with_the_constraints_and_runs_its_ray():
    raw = yaml.safe_load((REPO / "cluster" / "gpu.yaml").read_text())
    commands = raw["setup_commands"] + raw["head_setup_commands"]
    pips = [c for c in commands if "pip install" in c]
    assert pips and all("-c ~/jersey-ray/constraints.txt" in c for c in pips), pips
    assert not re.search(r"torch[<>=]", " ".join(pips)), "no versions outside constraints.txt"
    assert raw["docker"]["image"] == f"rayproject/ray:{constraints()['ray']}-py311-gpu"


def test_slurm_refuses_an_environment_older_than_the_constraints(tmp_path):
    repo = tmp_path / "repo"
    (repo / ".venv").mkdir(parents=True)
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(REPO / name, repo / name)
    stamp = repo / ".venv" / ".installed"
    stamp.touch()
    os.utime(repo / "pyproject.toml", (1, 1))
    script = REPO / "cluster" / "slurm.sbatch"
    check = f'source "{script}"; REPO="{repo}"; check_env; echo fine'
    env = {k: v for k, v in os.environ.items() if k not in ("JERSEY_RAY_PYTHON", "TORCH")}
    os.utime(repo / "constraints.txt", (1, 1))
    ok = subprocess.run(["bash", "-c", check], env=env, capture_output=True, text=True)
    assert ok.stdout.strip() == "fine", ok.stderr
    (repo / "constraints.txt").touch()  # changed after the install
    stale = subprocess.run(["bash", "-c", check], env=env, capture_output=True, text=True)
    assert stale.returncode != 0 and "fine" not in stale.stdout
    assert "older than constraints.txt" in stale.stderr and "make install" in stale.stderr
    named = subprocess.run(
        ["bash", "-c", check],
        env={**env, "JERSEY_RAY_PYTHON": "/x/python"},
        text=True,
        capture_output=True,
    )
    assert named.stdout.strip() == "fine"  # an environment the user names is theirs


# --- make install: the stamp, TORCH= -----------------------------------------------------------


@pytest.fixture
def make_repo(tmp_path):
    """The Makefile with a fake .venv whose python logs its arguments (nothing is installed)."""
    if not shutil.which("make"):
        pytest.skip("no make")
    repo = tmp_path / "repo"
    (repo / ".venv" / "bin").mkdir(parents=True)
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(REPO / name, repo / name)
    python = repo / ".venv" / "bin" / "python"
    python.write_text(f'#!/usr/bin/env bash\necho "$*" >> {tmp_path / "calls"}\n')
    python.chmod(0o755)
    return repo


def make_install(repo: Path, *args: str) -> list[str]:
    calls = repo.parent / "calls"
    calls.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "TORCH"}
    proc = subprocess.run(
        ["make", "-C", str(repo), "install", *args], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return calls.read_text().splitlines() if calls.exists() else []


def pins_file(repo: Path) -> set[str]:
    text = (repo / ".venv" / "constraints.txt").read_text()
    return {line for line in text.splitlines() if line and not line.startswith("#")}


def test_make_install_uses_the_constraints_and_only_when_stale(make_repo):
    pins = {f"{k}=={v}" for k, v in constraints().items()}
    calls = make_install(make_repo)
    assert calls[-1] == f"-m pip install -q -c {Path('.venv/constraints.txt')} -e .[dev]"
    assert pins_file(make_repo) == pins
    assert make_install(make_repo) == []  # up to date: nothing runs
    stamp = make_repo / ".venv" / ".installed"
    os.utime(stamp, (1, 1))  # constraints.txt changed since
    assert make_install(make_repo)[-1].endswith("-e .[dev]")


def test_make_install_torch_reinstalls_and_keeps_the_choice(make_repo):
    make_install(make_repo)
    torch = "torch==2.5.1 torchvision==0.20.1"
    calls = make_install(make_repo, f"TORCH={torch}")
    assert calls and calls[-1].endswith("-e .[dev]")  # installed although up to date
    want = {"torch==2.5.1", "torchvision==0.20.1", f"ray=={constraints()['ray']}"}
    assert pins_file(make_repo) == want
    os.utime(make_repo / ".venv" / ".installed", (1, 1))  # a later reinstall keeps it
    assert make_install(make_repo) and pins_file(make_repo) == want


# --- the wheel ---------------------------------------------------------------------------------


def test_build_floor_covers_the_spdx_license():
    requires = PYPROJECT["build-system"]["requires"]
    floor = next(r for r in requires if req_name(r) == "setuptools")
    assert isinstance(PROJECT["license"], str)  # an SPDX expression: setuptools >= 77
    assert tuple(int(x) for x in floor.split(">=")[1].split(".")) >= (77,)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The wheel, built from a copy of the sources (the checkout gets no build/ or egg-info)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("jersey_ray", "sweeps"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return zipfile.ZipFile(next(out.glob("*.whl")))


def test_wheel_installs_jersey_ray_only_typed_with_its_data(wheel):
    names = wheel.namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"jersey_ray"}, tops
    assert "jersey_ray/py.typed" in names
    assert any(n.startswith("jersey_ray/results/") and n.endswith(".csv") for n in names)


def test_wheel_metadata_declares_what_pyproject_says(wheel):
    meta_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    meta = email.message_from_bytes(wheel.read(meta_name))
    assert meta["License-Expression"] == "MIT"
    runtime = {req_name(r) for r in meta.get_all("Requires-Dist") if "extra ==" not in r}
    assert runtime == RUNTIME
