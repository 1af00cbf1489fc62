"""``python -m jersey_ray.predict`` and the shared ONNX export, on a fabricated folder.

The folder mixes labelled and ``unknown`` tracks with every kind of bad input; the model is a
tiny untrained one registered for these tests (a 2-layer CNN, the real length-aware GRU and
pooling) in a checkpoint written like a trial's (TINY_SIZE 32x16, max_frames 4). Expected
outputs are computed here from the files each sequence should read, one sequence at a time.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from fake_runs import TINY_SIZE, FakeTrial, write_checkpoint, write_sweep, write_trial
from PIL import Image
from torch import nn

from jersey_ray.__main__ import COMMANDS
from jersey_ray.cache.augment import to_model_input
from jersey_ray.cache.decode import decode_frame
from jersey_ray.metrics import number_string
from jersey_ray.models import REGISTRY, ModelSpec
from jersey_ray.models import export as export_mod
from jersey_ray.models.attention import AttentionModel, DotProductPool, TopKPool
from jersey_ray.models.recurrent import LengthAwareRNN
from jersey_ray.models.single import SingleFrameModel
from jersey_ray.predict.__main__ import main
from jersey_ray.train.checkpoint import load_model

ATTN, TOPK, SINGLE = "predict_tiny_attn", "predict_tiny_topk", "predict_tiny_single"
COMP = next(i for i in REGISTRY if i.startswith("comp_seq_"))  # a real registry model, small


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def _attention(pool: type[nn.Module], bidirectional: bool) -> nn.Module:
    rnn = LengthAwareRNN("gru", 8, 8, bidirectional=bidirectional)
    return AttentionModel(_cnn(), rnn, pool(rnn.out_features))


BUILDERS = {
    ATTN: lambda pretrained: _attention(DotProductPool, True),
    TOPK: lambda pretrained: _attention(TopKPool, False),
    SINGLE: lambda pretrained: SingleFrameModel(_cnn(), 8),
}


@pytest.fixture(scope="module", autouse=True)
def tiny_models():
    with pytest.MonkeyPatch.context() as mp:
        for mid, build in BUILDERS.items():
            phase = "phase0" if mid == SINGLE else "phaseB"
            mp.setitem(REGISTRY, mid, ModelSpec(mid, phase, mid, "test model", build, 0))
        yield


# ------------------------------------------------------------------------------- the folder


def png(seed: int, size: tuple[int, int] = (20, 10)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


GARBAGE = b"this is not an image"
FILES = {
    "7/t1/s1": {"anchor.png": 1, "f1.png": 2, "f2.png": 3, "readme.txt": GARBAGE},
    "7/t1/s2": {"anchor.png": GARBAGE, **{f"f{i}.png": 10 + i for i in range(1, 7)}},
    "48/t2/s1": {"f1.png": 20, "f2.png": b"", "f3.png": 21},
    "48/t2/s2": {"f1.png": "truncated"},
    "unknown/u1/s1": {"anchor.png": 30, "f1.png": 31},
    "unknown/u2/s1": {"f1.png": 40},
    "unknown/u2/s2": {"f1.png": 41, "f2.png": 42},
    "abc/t/s": {"f1.png": 50},
}
"""seq folder -> {file: seed of a random PNG, or raw bytes, or "truncated" (half a PNG)}."""
READ = {
    "7/t1/s1": ["anchor.png", "f1.png", "f2.png"],
    "7/t1/s2": ["f1.png", "f3.png", "f5.png"],  # anchor + rest[0, 2, 4]; the anchor is bad
    "48/t2/s1": ["f1.png", "f3.png"],
    "unknown/u1/s1": ["anchor.png", "f1.png"],
    "unknown/u2/s1": ["f1.png"],
    "unknown/u2/s2": ["f1.png", "f2.png"],
}
"""What a sequence model reads of each sequence (max_frames 4); a single-frame model reads the
first file only."""
TRUE = {"7/t1": "7", "48/t2": "48", "unknown/u1": "", "unknown/u2": ""}
SKIPS = {
    ("notes.txt", "wrong_depth", "index"),
    ("abc", "bad_jersey_folder", "index"),
    ("7/t1/s1/readme.txt", "not_an_image", "index"),
    ("7/t1/s2/anchor.png", "not_an_image", "decode"),
    ("48/t2/s1/f2.png", "empty_file", "decode"),
    ("48/t2/s2/f1.png", "truncated", "decode"),
    ("48/t2/s2", "no_decodable_frame", "sequence"),
}


def make_folder(root: Path, files: dict = FILES) -> Path:
    for seq, content in files.items():
        (root / seq).mkdir(parents=True)
        for name, what in content.items():
            if what == "truncated":
                data = png(99)[:60]
            else:
                data = what if isinstance(what, bytes) else png(what, (12 + what % 9, 8))
            (root / seq / name).write_bytes(data)
    (root / "notes.txt").write_text("not data")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("predict") / "footage")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("checkpoints")
    return {mid: write_checkpoint(base / mid, mid, seed=3) for mid in (*BUILDERS, COMP)}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def run_predict(tmp: Path, *args: str) -> dict[str, Path]:
    out = tmp / "out" / "predictions.csv"
    assert main([*args, "--out", str(out), "--no-progress", "--workers", "2"]) == 0
    return {
        "sequences": out,
        "tracks": out.with_name("predictions_tracks.csv"),
        "skipped": out.with_name("predictions_skipped.csv"),
    }


# --------------------------------------------------------------------------- expectations


def expected_log_probs(model: nn.Module, root: Path) -> dict[str, tuple[torch.Tensor, ...]]:
    """seq_id -> (log p(tens), log p(ones)), each sequence run alone on the files it reads."""
    found = {}
    for seq, names in READ.items():
        names = names[: model.input_frames or len(names)]
        frames = np.stack([decode_frame(str(root / seq / n), TINY_SIZE) for n in names])
        x = to_model_input(torch.from_numpy(frames), augment=False)
        with torch.no_grad():
            out = model(x, torch.ones(1, len(names), dtype=torch.bool))
        found[seq] = (out.tens.log_softmax(1)[0].double(), out.ones.log_softmax(1)[0].double())
    return found


def prediction(tens: torch.Tensor, ones: torch.Tensor) -> tuple[str, float, float]:
    """(number, p_tens, p_ones) of one row's log-probabilities."""
    return number_string(int(tens.argmax()), int(ones.argmax())), tens.exp().max(), ones.exp().max()


def check_row(row: dict[str, str], number: str, p_tens: float, p_ones: float) -> None:
    assert row["predicted"] == number
    assert float(row["p_tens"]) == pytest.approx(float(p_tens), abs=2e-6)
    assert float(row["p_ones"]) == pytest.approx(float(p_ones), abs=2e-6)
    assert float(row["confidence"]) == pytest.approx(float(p_tens * p_ones), abs=2e-6)


# -------------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("mid", [ATTN, SINGLE, COMP])
def test_sequences_and_tracks_match_hand_aggregation(mid, folder, checkpoints, tmp_path):
    files = run_predict(tmp_path, "--checkpoint", str(checkpoints[mid]), str(folder))
    expected = expected_log_probs(load_model(checkpoints[mid]).model, folder)
    rows = read_csv(files["sequences"])
    assert [r["seq_id"] for r in rows] == list(READ)  # sorted; the dropped one is absent
    for row in rows:
        seq = row["seq_id"]
        check_row(row, *prediction(*expected[seq]))
        track = seq.rsplit("/", 1)[0]
        assert row["track"] == track and row["true"] == TRUE[track]
        assert int(row["frames"]) == (1 if mid == SINGLE else len(READ[seq]))
        right = row["predicted"] == TRUE[track]
        assert row["correct"] == ("" if not TRUE[track] else str(int(right)))
    tracks = read_csv(files["tracks"])
    assert [r["track"] for r in tracks] == list(TRUE)
    for row in tracks:
        members = [s for s in READ if s.rsplit("/", 1)[0] == row["track"]]
        mean = [torch.stack([expected[s][h] for s in members]).mean(0) for h in (0, 1)]
        check_row(row, *prediction(*(m.log_softmax(0) for m in mean)))
        assert int(row["sequences"]) == len(members) and row["true"] == TRUE[row["track"]]


def test_track_probabilities_are_the_normalized_geometric_mean(folder, checkpoints, tmp_path):
    """The per-track rule in numbers: p(c) = prod_i p_i(c)^(1/n) / sum over classes."""
    files = run_predict(tmp_path, "--checkpoint", str(checkpoints[ATTN]), str(folder))
    expected = expected_log_probs(load_model(checkpoints[ATTN]).model, folder)
    row = next(r for r in read_csv(files["tracks"]) if r["track"] == "unknown/u2")
    ones = [expected[s][1].exp() for s in ("unknown/u2/s1", "unknown/u2/s2")]
    geometric = (ones[0] * ones[1]).sqrt()
    assert float(row["p_ones"]) == pytest.approx(
        float((geometric / geometric.sum()).max()), abs=2e-6
    )


def test_skips_are_counted_and_listed(folder, checkpoints, tmp_path, capsys):
    files = run_predict(tmp_path, "--checkpoint", str(checkpoints[ATTN]), str(folder))
    listed = {(r["path"], r["reason"], r["stage"]) for r in read_csv(files["skipped"])}
    assert listed == SKIPS
    line = capsys.readouterr().out.splitlines()[0]
    assert "predicted 6 sequences (1 dropped), 4 tracks" in line
    assert (
        "skipped: bad_jersey_folder 1, empty_file 1, no_decodable_frame 1, not_an_image 2, "
        "truncated 1, wrong_depth 1" in line
    )


def test_accuracy_counts_labelled_rows_only(folder, checkpoints, tmp_path, capsys):
    """A checkpoint whose heads always say 7: right on 7/t1, wrong on 48/t2, unknown unscored."""
    ckpt = torch.load(checkpoints[ATTN], weights_only=True)
    ckpt["model"]["heads.fc_tens.bias"][10] += 100.0
    ckpt["model"]["heads.fc_ones.bias"][7] += 100.0
    path = tmp_path / "seven.pt"
    torch.save(ckpt, path)
    files = run_predict(tmp_path, "--checkpoint", str(path), str(folder))
    seqs = {r["seq_id"]: r["correct"] for r in read_csv(files["sequences"])}
    assert seqs == {"7/t1/s1": "1", "7/t1/s2": "1", "48/t2/s1": "0", "unknown/u1/s1": "",
                    "unknown/u2/s1": "", "unknown/u2/s2": ""}  # fmt: skip
    line = capsys.readouterr().out.splitlines()[0]
    assert "accuracy per sequence 0.6667 (2/3 labelled)" in line
    assert "accuracy per track 0.5000 (1/2 labelled)" in line


def test_unlabelled_folder_has_no_accuracy(tmp_path, checkpoints, capsys):
    root = make_folder(tmp_path / "new", {"unknown/a/s": {"f1.png": 1}})
    files = run_predict(tmp_path, "--checkpoint", str(checkpoints[ATTN]), str(root))
    assert [r["true"] for r in read_csv(files["sequences"])] == [""]
    assert "accuracy" not in capsys.readouterr().out


def test_json_map_is_the_track_predictions(folder, checkpoints, tmp_path):
    out = tmp_path / "tracks.json"
    files = run_predict(
        tmp_path, "--checkpoint", str(checkpoints[ATTN]), str(folder), "--json", str(out)
    )
    mapping = json.loads(out.read_text(encoding="utf-8"))
    tracks = read_csv(files["tracks"])
    assert list(mapping) == list(TRUE)
    assert mapping == {r["track"]: r["predicted"] for r in tracks}
    assert all(isinstance(v, str) for v in mapping.values())


def test_run_uses_the_trial_chosen_on_validation(folder, tmp_path, capsys):
    run = tmp_path / "run"
    write_sweep(run, models=[ATTN])
    # seed 1 is best on test, seed 2 on validation: validation decides
    for seed, val, test in ((1, [0.5, 0.9], 0.99), (2, [0.5, 0.95], 0.5)):
        trial = write_trial(run, FakeTrial(ATTN, seed, val, (test, test, test)))
        write_checkpoint(trial, ATTN, seed)
    write_trial(run, FakeTrial(ATTN, 3, [0.99], None))  # pruned: never chosen
    chosen = run_predict(tmp_path / "chosen", "--run", str(run), str(folder))
    assert f"{ATTN}-seed2 (chosen on validation" in capsys.readouterr().out
    seed2 = run / f"{ATTN}-seed2" / "checkpoint_000002" / "best.pt"
    seed1 = run / f"{ATTN}-seed1" / "checkpoint_000002" / "best.pt"
    direct = run_predict(tmp_path / "direct", "--checkpoint", str(seed2), str(folder))
    other = run_predict(tmp_path / "other", "--checkpoint", str(seed1), str(folder))
    text = chosen["sequences"].read_text()
    assert text == direct["sequences"].read_text() != other["sequences"].read_text()


def test_the_command_is_registered() -> None:
    assert COMMANDS["predict"][0] == "predict"


# --------------------------------------------------------------------------------- export


def onnx_vs_torch(path: Path, model: nn.Module, lengths: list[int]) -> tuple[float, bool]:
    """(max |Δlogit|, same predicted digits) of the ONNX file against ``model`` on one batch."""
    frames, mask = export_mod.random_batch(lengths, TINY_SIZE, seed=len(lengths))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["tens", "ones"], {"frames": frames.numpy(), "mask": mask.numpy()})
    with torch.no_grad():
        ref = model(frames, mask)
    pairs = [(torch.from_numpy(g), r) for g, r in zip(got, ref[:2], strict=True)]
    diff = max(float((g - r).abs().max()) for g, r in pairs)
    return diff, all(torch.equal(g.argmax(1), r.argmax(1)) for g, r in pairs)


def test_export_round_trip_has_dynamic_batch_and_length(folder, checkpoints, tmp_path, capsys):
    onnx_path = tmp_path / "model.onnx"
    args = ["--checkpoint", str(checkpoints[ATTN]), str(folder), "--export", str(onnx_path)]
    run_predict(tmp_path, *args)
    assert "N, B and T dynamic" in capsys.readouterr().out
    model = load_model(checkpoints[ATTN]).model
    for lengths in ([4, 1, 3], [6, 2], [1]):  # B 3, 2, 1 and T 4, 6 (> max_frames), 1
        diff, same = onnx_vs_torch(onnx_path, model, lengths)
        assert diff < 1e-4 and same, lengths
    import onnx

    props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert props["jersey_ray.model"] == ATTN and props["jersey_ray.size"] == "32x16"
    assert props["jersey_ray.max_frames"] == "4" and "normalized" in props["jersey_ray.inputs"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("mid", [TOPK, SINGLE])
def test_export_handles_top_k_and_single_frame_models(mid, checkpoints, tmp_path):
    """Top-k pooling traces k as a constant (padding steps keep T >= k); single-frame models
    branch on a one-step mask (the example has two steps, so the general path is exported)."""
    model = load_model(checkpoints[mid]).model
    steps = {TOPK: 2, SINGLE: 1}[mid]  # shorter than k; one step: the branch a trace could keep
    done = export_mod.export_onnx(model, tmp_path / "m.onnx", TINY_SIZE, steps=steps)
    assert done.checked == [(3, steps), (2, steps + 2), (1, 1)] and done.max_abs_diff < 1e-4
    assert ("padding steps" in " ".join(done.notes)) == (mid == TOPK)
    for lengths in ([1, 1], [2, 1], [5, 3, 1]):
        diff, same = onnx_vs_torch(done.path, model, lengths)
        assert diff < 1e-4 and same, lengths


def test_a_failing_check_writes_nothing(checkpoints, tmp_path):
    path = tmp_path / "m.onnx"
    model = load_model(checkpoints[ATTN]).model
    with pytest.raises(export_mod.ExportError, match="not written") as err:
        export_mod.export_onnx(model, path, TINY_SIZE, steps=4, atol=-1.0)  # nothing passes
    assert "differs from PyTorch" in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ bad input


def _nothing_decodable(tmp: Path) -> list[str]:
    root = make_folder(tmp / "bad", {"7/t/s": {"a.png": GARBAGE, "b.png": b""}})
    return ["--checkpoint", "CKPT", str(root)]


def _no_finished_trial(tmp: Path) -> list[str]:
    run = tmp / "run"
    write_sweep(run, models=[ATTN])
    write_trial(run, FakeTrial(ATTN, 1, [0.5, 0.6], None))
    return ["--run", str(run), str(tmp)]


def _failing_export(tmp: Path) -> list[str]:
    return ["--checkpoint", "CKPT", "FOLDER", "--export", str(tmp / "m.onnx")]


BAD = {
    "no such checkpoint": (
        lambda tmp: ["--checkpoint", str(tmp / "nope.pt"), "FOLDER"],
        "checkpoint not found",
    ),
    "root is not a folder": (lambda tmp: ["--checkpoint", "CKPT", str(tmp / "x")], "not a folder"),
    "empty root": (lambda tmp: ["--checkpoint", "CKPT", str(tmp)], "no valid sequence"),
    "nothing decodable": (_nothing_decodable, "no sequence has a decodable frame (skipped: "),
    "no finished trial": (_no_finished_trial, "no finished trial"),
    "both model options": (
        lambda tmp: ["--checkpoint", "CKPT", "--run", str(tmp), "FOLDER"],
        "not allowed with argument",
    ),
    "no model option": (lambda tmp: ["FOLDER"], "one of the arguments --run --checkpoint"),
    "output is a folder": (
        lambda tmp: ["--checkpoint", "CKPT", "FOLDER", "--json", str(tmp)],
        "is a folder",
    ),
    "export fails its check": (_failing_export, "not written, the exported graph fails"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line(case, folder, checkpoints, tmp_path, capsys, monkeypatch):
    if case == "export fails its check":

        def disagree(*args, **kwargs):
            raise export_mod.ExportError("ONNX Runtime differs from PyTorch by 1 (test)")

        monkeypatch.setattr(export_mod, "check_onnx", disagree)
    fill = {"CKPT": str(checkpoints[ATTN]), "FOLDER": str(folder)}
    argv = [fill.get(a, a) for a in BAD[case][0](tmp_path)]
    out = tmp_path / "out.csv"
    assert main([*argv, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and BAD[case][1] in err[0], err
    if case == "export fails its check":  # the predictions stand; no model file, no temp file
        assert out.is_file() and not (tmp_path / "m.onnx").exists()
        assert not (tmp_path / ".m.onnx.tmp").exists()
