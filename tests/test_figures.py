"""Figures: written, non-empty PNGs; the band arithmetic and confusion counts by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fake_runs import standard_run
from matplotlib.image import imread

from jersey_ray.results import collect, figures
from jersey_ray.results.figures import Mistake

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_px: int = 200) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = imread(path)
    assert min(image.shape[:2]) >= min_px
    assert image[..., :3].std() > 0.01  # something is drawn
    return image


def test_curve_band_by_hand() -> None:
    series = [{1: 0.5, 2: 0.7, 3: 0.8}, {1: 0.5, 2: 0.8}, {1: 0.8, 2: 0.9}]
    epochs, mean, std = figures.curve_band(series)
    assert epochs == [1, 2, 3]
    assert mean == pytest.approx([0.6, 0.8, 0.8])
    # epoch 1: deviations -0.1, -0.1, 0.2 -> sqrt(0.06 / 2); epoch 3 has one seed -> 0
    assert std == pytest.approx([0.1732051, 0.1, 0.0], abs=1e-7)


def test_learning_curves_and_accuracy_vs_params(tmp_path: Path) -> None:
    curves = {"A (n=2)": [{1: 0.5, 2: 0.6}, {1: 0.55, 2: 0.7}], "B": [{1: 0.4}]}
    path = figures.learning_curves(curves, tmp_path / "curves.png", phase="phaseA")
    assert_png(path)
    points = [
        ("A", 11_000_000, {"mean": 0.95, "std": 0.01, "n": 3}),
        ("B", 1_500_000, {"mean": 0.93, "std": None, "n": 1}),
        ("no params", None, {"mean": 0.9, "std": 0.0, "n": 2}),
    ]
    assert_png(figures.accuracy_vs_params(points, tmp_path / "acc.png", phase="phaseA"))


def test_collect_writes_the_phase_figures(tmp_path: Path) -> None:
    run = standard_run(tmp_path / "runs" / "a")
    summary = collect.collect(run, tmp_path / "results" / "phaseA")
    assert summary["figures"] == ["learning_curves.png", "acc_vs_params.png"]
    for name in summary["figures"]:
        assert_png(tmp_path / "results" / "phaseA" / name)


def test_confusion_counts_by_hand() -> None:
    from jersey_ray.metrics import confusion

    true = np.array([0, 0, 1, 10])
    pred = np.array([0, 1, 1, 0])
    counts = confusion(true, pred, 11)
    assert counts.shape == (11, 11)
    assert counts[0, 0] == 1 and counts[0, 1] == 1 and counts[1, 1] == 1 and counts[10, 0] == 1
    assert counts.sum() == 4


def test_confusion_figure(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tens = rng.integers(0, 11, 50)
    ones = rng.integers(0, 10, 50)
    path = figures.confusion_png(
        {"tens": tens, "ones": ones},
        {
            "tens": np.where(rng.random(50) < 0.8, tens, 10),
            "ones": np.where(rng.random(50) < 0.8, ones, 8),
        },
        tmp_path / "confusion.png",
        title="model X, seed 42 (chosen on validation)",
    )
    assert_png(path)


def _mistake(i: int, weights: bool) -> Mistake:
    frames = np.full((3 + i % 3, 16, 8, 3), 40 * (i % 5), dtype=np.uint8)
    frames[:, 4:12, 2:6] = 255
    w = np.linspace(1, 2, frames.shape[0]) if weights else None
    return Mistake(
        f"9/t{i}/s0", frames, (10, 9), (10, 8), 0.5 + i / 100, w / w.sum() if weights else None
    )


@pytest.mark.parametrize("attention", [True, False])
def test_mistakes_sheet_caps_rows_and_states_total(
    tmp_path: Path, attention: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(figures, "MISTAKES_CAP", 4)  # the real cap (24) only costs time
    mistakes = [_mistake(i, attention) for i in range(6)]
    path = figures.mistakes_sheet(
        mistakes, tmp_path / "mistakes.png", title="m, seed 42", total=6, n_test=100
    )
    height = assert_png(path).shape[0]
    four = figures.mistakes_sheet(mistakes[:4], tmp_path / "4.png", title="t", total=4, n_test=9)
    one = figures.mistakes_sheet(mistakes[:1], tmp_path / "1.png", title="t", total=1, n_test=9)
    assert height == imread(four).shape[0] > imread(one).shape[0] + 150  # capped at 4 rows
    assert figures.sheet_rows(mistakes) == sorted(mistakes, key=lambda m: -m.confidence)[:4]


@pytest.mark.parametrize("rows", [1, 24])
def test_mistakes_sheet_header_clears_the_first_row(rows: int) -> None:
    """The header sat at a fraction of the height, so a tall sheet's first row ran into it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    mistakes = [_mistake(i, True) for i in range(rows)]
    fig = figures.mistakes_figure(
        mistakes, title="a long model name, seed 42", total=rows, n_test=9
    )
    renderer = FigureCanvasAgg(fig).get_renderer()
    [header] = [
        t.get_window_extent(renderer) for t in fig.texts if t.get_text() == fig.get_suptitle()
    ]
    first = max(fig.axes, key=lambda ax: ax.get_position().y1)  # pixels grow upwards
    row_title = first.title.get_window_extent(renderer)
    assert header.y0 > row_title.y1 and row_title.y0 >= first.get_window_extent(renderer).y1
    assert fig.get_figheight() * fig.dpi - header.y1 < 0.2 * fig.dpi  # near the top edge


def test_mistakes_sheet_without_mistakes(tmp_path: Path) -> None:
    path = figures.mistakes_sheet(
        [],
        tmp_path / "m.png",
        title="t",
        total=0,
        n_test=10,
    )
    assert_png(path, min_px=50)


# --------------------------------------------------------------------------- analysis figures


@pytest.fixture(scope="module")
def test_split():
    from fake_runs import tiny_split

    return tiny_split("test", 7, 3)


@pytest.mark.parametrize(
    ("model_id", "attention", "legacy"),
    [("attn_bgru_luong", True, False), ("basic_r18", False, False), ("seq_ugru_fs", False, True)],
)
def test_load_model_and_evaluate(
    tmp_path: Path, test_split, model_id: str, attention: bool, legacy: bool
) -> None:
    """The one checkpoint loader and the one evaluation loop (old single-config checkpoints
    load too, so old run folders still collect)."""
    import torch
    from fake_runs import TINY_SIZE, write_checkpoint

    from jersey_ray.train.checkpoint import load_model
    from jersey_ray.train.evaluate import evaluate

    path = write_checkpoint(tmp_path, model_id, legacy=legacy)
    trained = load_model(path)
    assert (trained.train.model, trained.checkpoint["epoch"]) == (model_id, 2)
    assert trained.model.training is False and trained.data.size == TINY_SIZE
    full = evaluate(trained.model, test_split, batch_size=256, keep=True)
    small = evaluate(trained.model, test_split, batch_size=2, keep=True)
    assert full.metrics == pytest.approx(small.metrics)  # batch-independent
    assert set(full.metrics) == {"test_loss", "test_acc_number", "test_acc_tens", "test_acc_ones"}
    full, small = full.predictions, small.predictions
    assert full.tens_prob.shape == (7, 11) and full.ones_prob.shape == (7, 10)
    assert torch.allclose(full.tens_prob.sum(1), torch.ones(7), atol=1e-5)
    assert torch.allclose(full.tens_prob, small.tens_prob, atol=1e-5)  # batch-independent
    assert torch.allclose(full.ones_prob, small.ones_prob, atol=1e-5)
    if not attention:
        assert full.weights is None
        return
    lengths = test_split.lengths
    assert full.weights.shape == (7, int(lengths.max()))
    assert torch.allclose(full.weights.sum(1), torch.ones(7), atol=1e-5)
    for i, n in enumerate(lengths.tolist()):
        assert torch.all(full.weights[i, n:] == 0)


def test_load_checkpoint_bad_files_are_user_errors(tmp_path: Path) -> None:
    import torch
    from fake_runs import write_checkpoint

    from jersey_ray.errors import UserError
    from jersey_ray.train.checkpoint import load_model as load_checkpoint

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_checkpoint(bad)
    path = write_checkpoint(tmp_path, "basic_r18")
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"] = {"nonsense": torch.zeros(1)}
    torch.save(ckpt, path)
    with pytest.raises(UserError, match="weights do not fit"):
        load_checkpoint(path)


def test_collect_writes_the_analysis_figures_of_the_val_choice(
    tmp_path: Path, test_split, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fake_runs import write_checkpoint

    from jersey_ray.cache import loader

    cache = tmp_path / "cache"
    cache.mkdir()
    run = standard_run(tmp_path / "runs" / "a", data={"cache": str(cache), "size": [32, 16]})
    # the val choice (seq_ugru_fs seed 42) and the test-best trial both have checkpoints
    write_checkpoint(run / "seq_ugru_fs-seed42", "seq_ugru_fs")
    write_checkpoint(run / "seq_blstm_mp-seed456", "seq_blstm_mp")
    loaded = []

    def fake_load_split(path, split, device):
        loaded.append((str(path), split))
        return test_split

    monkeypatch.setattr(loader, "load_split", fake_load_split)
    out = tmp_path / "results" / "phaseA"
    summary = collect.collect(run, out)
    assert loaded == [(str(cache), "test")]
    assert summary["figures"][2:] == ["confusion.png", "mistakes.png"]
    assert_png(out / "confusion.png")
    assert_png(out / "mistakes.png")
    note = summary["figure_notes"][0]
    assert note.startswith("Analysis run: `seq_ugru_fs-seed42`, checkpoint `checkpoint_000002`")
    assert "chosen on validation" in note and "never a test metric" in note
    assert "[mistakes.png](mistakes.png)" in (out / "table.md").read_text()


def test_analysis_size_mismatch_is_a_note(
    tmp_path: Path, test_split, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from fake_runs import write_checkpoint

    from jersey_ray.cache import loader

    cache = tmp_path / "cache"
    cache.mkdir()
    run = standard_run(tmp_path / "runs" / "a", data={"cache": str(cache)})
    write_checkpoint(run / "seq_ugru_fs-seed42", "seq_ugru_fs")
    monkeypatch.setattr(loader, "load_split", lambda *a: replace(test_split, size=(64, 32)))
    summary = collect.collect(run, tmp_path / "results" / "phaseA")
    assert len(summary["figures"]) == 2
    assert "was trained on (32, 16) frames but the cache" in summary["figure_notes"][0]
    assert "(64, 32)" in summary["figure_notes"][0]


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic data set through the real cache builder (Ray Data, started once)."""
    import ray

    from jersey_ray.cache.build import build_cache
    from jersey_ray.config import DataConfig
    from jersey_ray.data.synth import generate

    root = tmp_path_factory.mktemp("cache")
    generate(root / "data", sequences=40, size=(32, 16), frames=(2, 4), workers=1, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        data = DataConfig(root=str(root / "data"), size=(32, 16), max_frames=4)
        build_cache(data, root / "cache", progress=False)
    finally:
        ray.shutdown()
    return root / "cache"


def test_analysis_figures_from_a_real_cache(tmp_path: Path, real_cache: Path) -> None:
    from fake_runs import write_checkpoint

    run = standard_run(tmp_path / "runs" / "a", data={"cache": str(real_cache)})
    write_checkpoint(run / "seq_ugru_fs-seed42", "seq_ugru_fs")
    out = tmp_path / "results" / "phaseA"
    summary = collect.collect(run, out)
    assert summary["figures"] == [
        "learning_curves.png",
        "acc_vs_params.png",
        "confusion.png",
        "mistakes.png",
    ]
    assert_png(out / "confusion.png")
    assert_png(out / "mistakes.png")


def test_seen_vs_unseen_figure(tmp_path: Path) -> None:
    points = [
        ("A", {"mean": 0.95, "std": 0.01, "n": 3}, {"mean": 0.4, "std": 0.1, "n": 3}),
        ("B", {"mean": 0.9, "std": None, "n": 1}, {"mean": 0.0, "std": 0.0, "n": 0}),
    ]
    assert_png(figures.seen_vs_unseen(points, tmp_path / "seen.png", phase="holdout"))
