"""Turn a sweep's run folder into a phase table (``table.md``, ``table.csv``, ``summary.json``),
figures, and the results index.

``python -m jersey_ray.results RUN_DIR [--out DIR]``; the sweep calls :func:`collect` at its end.

Numbers come only from what the trials reported through Tune (read by :mod:`.runs`); logs and
TensorBoard files are never parsed. Statistics over seeds use the sample std (ddof 1) and say
so; comparisons with the reference model are a paired bootstrap over test tracks and seeds on the
trials' predictions, Holm-adjusted per table (:mod:`.compare`), so a reader sees which gains are
larger than the track-to-track and seed-to-seed noise. Every model or trial choice is made on
validation metrics. Rendering is :mod:`.tables`.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from jersey_ray import metrics as M
from jersey_ray.errors import UserError
from jersey_ray.results import figures, heldout, reference, stats
from jersey_ray.results.compare import (
    choose_reference,
    compare_to_reference,
    find_reference,
    report_check,
)
from jersey_ray.results.index import write_index
from jersey_ray.results.majority import majority_class
from jersey_ray.results.predictions import RunPredictions
from jersey_ray.results.runs import (
    CHOICE_RULE,
    Run,
    Trial,
    chosen_checkpoint,
    failed_trials,
    read_run,
    record_skip,
    searched_key,
    searched_names,
    unfinished_trials,
)
from jersey_ray.results.stats import STD_LABEL, describe
from jersey_ray.results.tables import TEST_KEYS, render_csv, render_markdown

log = logging.getLogger(__name__)

TIME_TOTAL_S = "time_total_s"
"""Tune's wall time of a trial so far (seconds); the last row holds the trial's total."""
NO_PRUNING_RECORD = (
    "no pruning record (stopped or interrupted): last reported epoch, mean val acc_number"
)


# --------------------------------------------------------------------------- aggregation


def display_name(model_id: str) -> str:
    """The model zoo's display name (what the code does); the id for unregistered models."""
    from jersey_ray.models import REGISTRY  # the zoo imports torch: only when names are needed

    spec = REGISTRY.get(model_id)
    return spec.display if spec is not None else model_id


def _last_values(trials: list[Trial], key: str) -> list[float]:
    return [float(t.last[key]) for t in trials if isinstance(t.last.get(key), (int, float))]


def _mean_or_none(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _params(config: str, trials: list[Trial]) -> int | None:
    reported = [
        next((int(r[M.N_PARAMS]) for r in reversed(t.rows) if M.N_PARAMS in r), None)
        for t in trials
    ]
    counts = Counter(v for v in reported if v is not None)
    if len(counts) > 1:
        log.warning("%s: trials report different n_params %s", config, sorted(counts))
    return counts.most_common(1)[0][0] if counts else None


def _pruned_info(pruned: list[Trial], entry: dict | None) -> dict[str, Any] | None:
    if entry is not None:
        info = {
            "epoch": entry.get("epoch"),
            "rung_acc": entry.get("rung_acc"),
            "seeds": entry.get("seeds", [t.seed for t in pruned]),
            "source": "pruned.json",
        }
        # the scheduler names the seeds it judged without (failed or ended before the rung)
        if entry.get("missing"):
            info["missing"] = entry["missing"]
        return info
    if not pruned:
        return None
    epochs = [int(t.last[M.EPOCH]) for t in pruned if M.EPOCH in t.last]
    return {
        "epoch": max(epochs) if epochs else None,
        "rung_acc": _mean_or_none(_last_values(pruned, M.VAL_ACC_NUMBER)),
        "seeds": [t.seed for t in pruned],
        "source": NO_PRUNING_RECORD,
    }


def _report_entry(model_id: str) -> dict[str, Any] | None:
    row = reference.report_row(model_id)
    if row is None:
        return None
    entry: dict[str, Any] = {"table": row.table, "display": row.display, "params": row.params}
    for m in reference.METRICS:
        entry[f"{m}_mean"] = row.mean[m]
        entry[f"{m}_std"] = row.std[m]
    entry.update({"n": reference.REPORT_N, "std": "population (ddof=0)"})
    return entry


def summarize_config(
    config: str, trials: list[Trial], pruned_entry: dict | None = None, held_out: bool = False
) -> dict[str, Any]:
    """One table row: statistics over the finished trials of one configuration (a configuration
    in pruned.json has none: :attr:`runs.Trial.status`)."""
    by_status: dict[str, list[Trial]] = {"finished": [], "pruned": [], "failed": []}
    for t in trials:
        by_status[t.status].append(t)
    done = by_status["finished"]
    model = trials[0].model
    times = _last_values(done, TIME_TOTAL_S)
    record: dict[str, Any] = {
        "id": model,
        "config": config,
        "display": display_name(model),
        "params": _params(config, trials),
        "n_finished": len(done),
        "n_pruned": len(by_status["pruned"]),
        "n_failed": len(by_status["failed"]),
        "seeds": {k: [t.seed for t in v] for k, v in by_status.items()},
    }
    for key in TEST_KEYS:
        record[key] = describe(_last_values(done, key))
    record["best_val_acc_number"] = describe(_last_values(done, M.BEST_VAL_ACC_NUMBER))
    record["best_epoch_mean"] = _mean_or_none(_last_values(done, M.BEST_EPOCH))
    record["train_minutes_mean"] = _mean_or_none([s / 60.0 for s in times])
    record["report"] = _report_entry(model)
    record["pruned"] = _pruned_info(by_status["pruned"], pruned_entry)
    if held_out:
        heldout.add_fields(record, done)
    return record


def _model_order(sweep: dict[str, Any], configs: list[str], model_of: dict[str, str]) -> list[str]:
    declared = [m for m in sweep.get("models", []) if isinstance(m, str)]
    rank = {m: i for i, m in enumerate(declared)}
    return sorted(configs, key=lambda c: (rank.get(model_of[c], len(rank)), c))


def _pruned_entries(run: Run, groups: dict[str, list[Trial]]) -> dict[str, dict[str, Any]]:
    """pruned.json entries by configuration. The scheduler keys them with the searched params
    of a trial (model and grid axes, no seed), which :func:`runs.searched_key` rebuilds."""
    names = searched_names(run)
    # a configuration's trials differ only in their seed, so its first trial gives its key
    keys = {config: searched_key(trials[0], names) for config, trials in groups.items()}
    for key in sorted(set(run.pruned) - set(keys.values())):
        record_skip(run.skipped, f"pruned.json:{key}", "no trial of the run has this configuration")
    return {config: run.pruned[key] for config, key in keys.items() if key in run.pruned}


def summarize_run(run: Run) -> list[dict[str, Any]]:
    """One record per configuration, in the sweep's model order."""
    groups: dict[str, list[Trial]] = {}
    for t in run.trials:
        groups.setdefault(t.config, []).append(t)
    model_of = {c: ts[0].model for c, ts in groups.items()}
    pruned = _pruned_entries(run, groups)
    declared = [s for s in run.sweep.get("seeds") or [] if isinstance(s, int)]
    held_out = heldout.is_heldout(run.sweep)
    records = []
    for config in _model_order(run.sweep, list(groups), model_of):
        record = summarize_config(config, groups[config], pruned.get(config), held_out)
        present = {t.seed for t in groups[config]}
        record["seeds"]["missing"] = [s for s in declared if s not in present]
        records.append(record)
    return records


def compute_hours(run: Run) -> dict[str, Any]:
    """Total accelerator hours of the run: sum of trial wall time x devices per trial."""
    seconds = sum(float(t.last.get(TIME_TOTAL_S, 0.0)) for t in run.trials)
    gpus = float(run.sweep.get("gpus_per_trial") or 0)
    if gpus > 0:
        per_trial, unit = gpus, "GPU"
    else:  # a CPU-only trial occupies its CPUs instead
        per_trial, unit = float(run.sweep.get("cpus_per_trial") or 1), "CPU"
    return {"hours": seconds * per_trial / 3600.0, "unit": unit, "per_trial": per_trial}


# --------------------------------------------------------------------------- summary


COMPARISON_METHOD = (
    "paired hierarchical bootstrap of model - reference test acc_number: tracks resampled "
    "(shared by both models), seeds resampled per model; percentile interval; two-sided "
    "p = 2 min((k<=0 + 1), (k>=0 + 1)) / (R + 1); Holm-adjusted per table. Welch's t over seeds "
    "beside it (welch_seeds), and the method where predictions are missing"
)


def _sweep_meta(sweep: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "description", "reference", "models", "seeds", "epochs", "scheduler")
    more = ("gpus_per_trial", "cpus_per_trial", "hardware", "data", "started", "finished")
    return {k: sweep.get(k) for k in keys + more}


def build_summary(
    run: Run, records: list[dict[str, Any]], ref: dict[str, Any] | None
) -> dict[str, Any]:
    sweep = run.sweep
    ref_id = sweep.get("reference") or ""
    return {
        "phase": sweep["phase"],
        "run_dir": run.location,
        "n_seeds_declared": len(sweep.get("seeds") or []),
        "std": STD_LABEL,
        "sweep": _sweep_meta(sweep),
        "compute": compute_hours(run),
        "reference": {
            "id": ref_id,
            "source": ref["source"] if ref else None,
            "n": ref[M.TEST_ACC_NUMBER]["n"] if ref else 0,
            "method": COMPARISON_METHOD,
            "confidence": stats.CONFIDENCE,
            "replicates": stats.REPLICATES,
            "bootstrap_seed": stats.BOOTSTRAP_SEED,
            "p_adjust": "holm",
            "alpha": stats.ALPHA,
        },
        "name": sweep.get("name"),
        "models": records,
        "report_check": report_check(sweep["phase"]),
        "failed": failed_trials(run),
        "unfinished": unfinished_trials(run, records),
        "skipped": run.skipped,
    }


# --------------------------------------------------------------------------- figures


def _label(rec: dict[str, Any]) -> str:
    return rec["display"] if rec["config"] == rec["id"] else f"{rec['display']} [{rec['config']}]"


def _analysis(run: Run, out_dir: Path) -> tuple[list[str], list[str]]:
    """Confusion matrices and the mistakes sheet of the run chosen on validation."""
    try:
        chosen, ckpt = chosen_checkpoint(run)
    except UserError as err:
        return [], [f"Analysis figures skipped: {err}"]
    cache = str((run.sweep.get("data") or {}).get("cache") or "")
    if not cache or ("://" not in cache and not Path(cache).exists()):
        return [], [
            f"Analysis figures skipped: the cache named in sweep.json ({cache!r}) is absent."
        ]
    title = (
        f"{display_name(chosen.model)} ({chosen.config}), seed {chosen.seed}; chosen on "
        f"validation: {CHOICE_RULE} ({chosen.last[M.BEST_VAL_ACC_NUMBER]:.4f})"
    )
    try:
        names = figures.error_figures(ckpt, cache, out_dir, title=title)
    except UserError as err:
        return [], [f"Analysis figures skipped: {err}"]
    return names, [f"Analysis run: `{chosen.dir}`, checkpoint `{ckpt.parent.name}` ({title})."]


def make_figures(
    run: Run, records: list[dict[str, Any]], out_dir: Path
) -> tuple[list[str], list[str]]:
    """Write the phase's figures; returns their file names and notes on what was skipped."""
    finished = [r for r in records if r["n_finished"]]
    if not finished:
        return [], ["Figures skipped: no finished trial."]
    curves = {
        _label(r): [
            t.by_epoch(M.VAL_ACC_NUMBER)
            for t in run.trials
            if t.config == r["config"] and t.status == "finished"
        ]
        for r in finished
    }
    phase = run.sweep["phase"]
    names = [
        figures.learning_curves(curves, out_dir / "learning_curves.png", phase=phase),
        figures.accuracy_vs_params(
            [(_label(r), r["params"], r[M.TEST_ACC_NUMBER]) for r in finished],
            out_dir / "acc_vs_params.png",
            phase=phase,
        ),
    ]
    if heldout.is_heldout(run.sweep):
        points = [(_label(r), r[heldout.SEEN], r[heldout.UNSEEN]) for r in finished]
        names.append(figures.seen_vs_unseen(points, out_dir / "seen_vs_unseen.png", phase=phase))
    more, notes = _analysis(run, out_dir)
    return [p.name for p in names] + more, notes


# --------------------------------------------------------------------------- entry points


def _out_dir(run: Run, out_dir: Path | str | None) -> Path:
    if out_dir is not None:
        return Path(out_dir)
    phase = run.sweep["phase"]
    if not phase or Path(phase).name != phase or phase in (".", ".."):
        raise UserError(
            f"{run.location}/sweep.json: phase {phase!r} is not a folder name; pass --out"
        )
    return Path("results") / phase


def collect(run_dir: Path | str, out_dir: Path | str | None = None) -> dict[str, Any]:
    """Write table.md, table.csv, summary.json and figures for one run; regenerate the index.

    ``out_dir`` defaults to ``results/<phase>/``; the index is ``README.md`` in its parent.
    ``run_dir`` may be a URI (``s3://bucket/runs/<name>``): its small files are read, the
    chosen trial's checkpoint alone is fetched for the analysis figures, and the outputs are
    written locally all the same. Returns the summary (as written to summary.json).
    """
    run = read_run(run_dir)
    out = _out_dir(run, out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = summarize_run(run)
    declared = str(run.sweep.get("reference") or "")
    choice = choose_reference(declared, out, run.skipped)
    ref = find_reference(choice, records, out, run.skipped)
    preds = RunPredictions(run)
    summary = build_summary(run, records, ref)
    summary["reference"].update(id=choice.id, declared=declared, chosen=choice.chosen)
    summary["comparisons"] = compare_to_reference(preds, records, ref)
    summary["majority_class"] = majority_class(run.sweep)
    if heldout.is_heldout(run.sweep):
        summary["heldout"] = heldout.heldout_summary(run.sweep, preds, records)
    summary["figures"], summary["figure_notes"] = make_figures(run, records, out)
    summary["table_md"] = (out / "table.md").as_posix()
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "table.csv").write_text(render_csv(summary), encoding="utf-8")
    (out / "table.md").write_text(render_markdown(summary), encoding="utf-8")
    write_index(out.parent)
    return summary
