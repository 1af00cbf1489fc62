"""What each part of ``bench gpu`` runs and how its result is read back (:mod:`.gpu`).

Every part takes the check and its time limit and returns its entry of the result: ``status``,
``seconds``, ``limit_s``, ``reason`` and what it measured.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import re
import shlex
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from jersey_ray.bench.gpu_run import Check, Running, python_cmd, read_json, skipped, status_of
from jersey_ray.config import DataConfig

DATA_LIMIT = (0.25, 150.0)  # share of the budget and seconds, whichever is less
TRAIN_ARGS = shlex.split("--device cuda --batch-size 64 --steps 30 --warmup 8 --rounds 3")
TRAIN_RUNS = (  # (key, model, flags, seconds at most), in priority order
    ("basic_r18 compiled", "basic_r18", ("--compile",), 75.0),
    ("attn_bgru_luong compiled", "attn_bgru_luong", ("--compile",), 75.0),
    ("basic_r18 eager", "basic_r18", (), 25.0),
    ("basic_r18 eager + CUDA graphs", "basic_r18", ("--cuda-graphs",), 25.0),
    ("basic_r18 eager, not deterministic", "basic_r18", ("--no-deterministic",), 25.0),
    ("basic_r18 compiled + CUDA graphs", "basic_r18", ("--compile", "--cuda-graphs"), 60.0),
)
TRAIN_LEAST_S = 10.0  # a run is not started with less time than this left
TRAIN_FIELDS = (
    "trial_frames_per_s",
    "ceiling_frames_per_s",
    "ratio",
    "graph_replays",
    "precision",
    "deterministic",
    "mean_frames_per_sequence",
    "device",
)
INFER_ARGS = shlex.split(
    f"--model attn_bgru_luong --device cuda --batch-sizes 1,256 --frames 16 "
    f"--size {DataConfig().size_text} --iters 30 --warmup 5"
)
INFER_EAGER = "bf16-autocast,fp16-autocast,torchscript-trace-fp16"
INFER_COMPILED = ("compile-bf16", "compile-reduce-overhead-bf16")
"""bf16 + torch.compile variants, if ``bench infer`` has them; else its max-autotune one."""
PACK_OVERHEAD_S = 25.0  # per configuration: trial processes, data, model, warm-up


def parse_junit(path: Path) -> dict[str, Any]:
    """Counts and failed test ids from pytest's ``--junitxml`` file."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    count = lambda key: sum(int(s.get(key, 0)) for s in suites)  # noqa: E731
    failures = []
    for case in root.iter("testcase"):
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is not None:
            why = (bad.get("message") or "").splitlines()[0][:200] if bad.get("message") else ""
            failures.append(f"{case.get('name')}: {why}")
    failed, errors, skip = count("failures"), count("errors"), count("skipped")
    passed = count("tests") - failed - errors - skip
    return {
        "passed": passed,
        "failed": failed,
        "errors": errors,
        "skipped": skip,
        "failures": failures,
    }


def parse_pytest_log(text: str) -> dict[str, Any]:
    """The same counts from ``pytest -v`` lines, for a run stopped before its junit file."""
    seen = dict(re.findall(r"::(\S+) (PASSED|FAILED|ERROR|SKIPPED)", text))
    n = lambda what: sum(v == what for v in seen.values())  # noqa: E731
    bad = [name for name, v in seen.items() if v not in ("PASSED", "SKIPPED")]
    failures = [f"{name}: see logs/tests.log" for name in bad]
    return {
        "passed": n("PASSED"),
        "failed": n("FAILED"),
        "errors": n("ERROR"),
        "skipped": n("SKIPPED"),
        "failures": failures,
    }


def part_tests(check: Check, limit: float) -> dict[str, Any]:
    tests = check.root / "tests" / "test_cuda.py"
    if not tests.is_file():
        return skipped(f"{tests} not found: run from a checkout of the project", limit)
    if importlib.util.find_spec("pytest") is None:
        return skipped("pytest is not installed for this Python", limit)
    xml = check.work / "cuda-tests.xml"
    xml.unlink(missing_ok=True)
    options = shlex.split("-m cuda -p no:cacheprovider -p no:randomly -v -rfE")  # file order
    cmd = python_cmd("-m", "pytest", str(tests), *options, f"--junitxml={xml}")
    outcome = check.run("tests", cmd, limit)
    log = check.out / "logs" / "tests.log"
    counts = parse_junit(xml) if xml.is_file() else parse_pytest_log(log.read_text())
    part = status_of(outcome, limit, **counts)
    if outcome.status == "failed" and counts:
        part["reason"] = f"{counts['failed']} failed, {counts['errors']} errors"
    if outcome.status == "ok" and not counts.get("passed"):  # all skipped: no GPU seen there
        part.update(status="failed", reason=f"no CUDA test ran ({counts.get('skipped')} skipped)")
    return part


def part_train(check: Check, limit: float) -> dict[str, Any]:
    if check.cache is None:
        return skipped("no cache: the data part did not finish", limit)
    deadline, runs = time.monotonic() + limit, list[dict[str, Any]]()
    for i, (key, model, flags, cap) in enumerate(TRAIN_RUNS):
        room = min(deadline - time.monotonic(), cap)  # a hung compile cannot take it all
        if room < TRAIN_LEAST_S:
            runs.append({"key": key, "status": "skipped", "reason": "the part's time was spent"})
            continue
        out = check.work / f"train-{i}.json"
        out.unlink(missing_ok=True)
        cmd = python_cmd("-m", "jersey_ray.bench", "train", "--model", model, *TRAIN_ARGS)
        cmd += ["--cache", check.cache, "--json", str(out), *flags]
        outcome = check.run(f"train-{i}", cmd, room)
        got = read_json(out) or {}
        runs.append(
            {
                "key": key,
                "model": model,
                "flags": list(flags),
                "status": outcome.status,
                "seconds": outcome.seconds,
                **{k: got.get(k) for k in TRAIN_FIELDS},
            }
        )
        check.result["parts"]["train"] = {"status": "running", "runs": runs}
        check.save()
    done = sum(r["status"] == "ok" for r in runs)
    status = "ok" if done == len(runs) else "partial" if done else "failed"
    if all(r["status"] == "skipped" for r in runs):
        status = "skipped"
    seconds = limit - max(deadline - time.monotonic(), 0.0)
    return {
        "status": status,
        "seconds": seconds,
        "limit_s": limit,
        "reason": f"{done} of {len(runs)} runs measured",
        "runs": runs,
    }


def part_pack(check: Check, limit: float) -> dict[str, Any]:
    if check.cache is None:
        return skipped("no cache: the data part did not finish", limit)
    seconds = min(max((limit - 3 * PACK_OVERHEAD_S) / 3, 5.0), 12.0)
    out = check.work / "pack.json"
    out.unlink(missing_ok=True)
    cmd = python_cmd("-m", "jersey_ray.bench.gpu_work", "pack", "--cache", check.cache)
    cmd += ["--json", str(out), "--seconds", f"{seconds:.1f}"]
    outcome = check.run("pack", cmd, limit)
    got = read_json(out) or {}
    part = status_of(outcome, limit, **got)
    if outcome.status != "ok" and got.get("configs"):
        part["status"] = "partial"
    return part


def infer_variants() -> str:
    from jersey_ray.bench.variants import BY_NAME

    names = [v for v in INFER_COMPILED if v in BY_NAME]
    return ",".join(names or ["compile-max-autotune-bf16"])


def _infer_rows(got: dict) -> list[dict[str, Any]]:
    keep = ("variant", "batch", "latency_ms", "seq_per_s")
    return [
        {k: r[k] for k in keep}
        for r in got.get("rows", [])
        if r.get("status") == "ok" and r.get("input") == "fixed"
    ]


def best_targets(items: list[dict]) -> list[dict]:
    """``bench infer``'s targets from several runs: the lowest latency, the highest rate."""
    best: dict[str, dict] = {}
    for item in items:
        have = best.get(item["name"])
        lower = "latency" in item["name"]
        better = (
            have is None
            or have.get("value") is None
            or (
                item.get("value") is not None
                and (item["value"] < have["value"] if lower else item["value"] > have["value"])
            )
        )
        if better:
            best[item["name"]] = item
    return list(best.values())


def part_infer(check: Check, limit: float) -> dict[str, Any]:
    deadline, rows, items, outcomes = time.monotonic() + limit, list[dict[str, Any]](), [], []
    runs = (("eager", INFER_EAGER, 0.35), ("compiled", infer_variants(), 1.0))
    for name, variants, share in runs:
        out = check.work / f"infer-{name}.json"
        out.unlink(missing_ok=True)
        cmd = python_cmd("-m", "jersey_ray.bench", "infer", *INFER_ARGS)
        cmd += ["--variants", variants, "--json", str(out)]
        outcomes.append(check.run(f"infer-{name}", cmd, share * (deadline - time.monotonic())))
        got = read_json(out) or {}
        seen = {(r["variant"], r["batch"]) for r in rows}
        rows += [r for r in _infer_rows(got) if (r["variant"], r["batch"]) not in seen]
        items += got.get("targets", [])
    ok = [o.status == "ok" for o in outcomes]
    status = "ok" if all(ok) else "partial" if any(ok) else outcomes[-1].status
    reasons = [f"{n}: {o.status}" for (n, _, _), o in zip(runs, outcomes, strict=True)]
    return {
        "status": status,
        "seconds": sum(o.seconds for o in outcomes),
        "limit_s": limit,
        "reason": ", ".join(reasons),
        "rows": rows,
        "targets": best_targets(items),
    }


def part_sweep(check: Check, limit: float) -> dict[str, Any]:
    name = f"gpu-check-phaseB-{dt.datetime.now():%H%M%S}"  # a sweep name never runs twice
    options = shlex.split("--seeds 42 --epochs 2 --pretrained none --max-failures 0")
    cmd = python_cmd("-m", "jersey_ray.sweep", "phaseB", *options, "--name", name)
    if check.data_root:  # the data part's set and cache; else the sweep makes its own
        cmd += ["--data", check.data_root]
    check.work.mkdir(parents=True, exist_ok=True)
    outcome = check.run("sweep", cmd, limit, cwd=check.work)
    table = check.work / "results" / name / "table.md"
    text = table.read_text() if table.is_file() else None
    return status_of(outcome, limit, name=name, table_md=text)


def start_data(check: Check) -> tuple[Running, float]:
    check.work.mkdir(parents=True, exist_ok=True)
    limit = min(DATA_LIMIT[0] * check.budget_s, DATA_LIMIT[1])
    out = check.work / "data.json"
    cmd = python_cmd("-m", "jersey_ray.bench.gpu_work", "data", "--json", str(out))
    return Running(cmd, check.out / "logs" / "data.log", check.work, check.env), limit


def finish_data(check: Check, running: Running, limit: float) -> None:
    outcome = running.wait(limit)
    got = read_json(check.work / "data.json") or {}
    check.cache = got.get("cache") if outcome.status == "ok" else None
    check.data_root = got.get("root") if outcome.status == "ok" else None
    check.result["parts"]["data"] = status_of(outcome, limit, **got)
    check.save()
