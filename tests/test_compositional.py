"""The ``comp_`` family: registry entries, the small CNN's shape, the tied and CTC readers, the
CTC label encoding and greedy decode, the sequence version's padding invariance, the training
loss hook, weights, TorchScript and ONNX export. (Every registry test of tests/test_models.py
runs on these ids too; ``predict`` on a folder: tests/test_predict.py.) CPU, tiny images."""

from __future__ import annotations

import json

import pytest
import torch
from model_helpers import model, prefix_mask
from torch import nn

from jersey_ray import metrics as M
from jersey_ray.cache.loader import Batch
from jersey_ray.config import TrainConfig
from jersey_ray.metrics import BLANK
from jersey_ray.models import REGISTRY, WeightsError, build_model, count_params, protocol
from jersey_ray.models import export as export_mod
from jersey_ray.models.ctc import (
    CTC_BLANK,
    FLOOR,
    ctc_loss,
    ctc_targets,
    decode_scores,
    greedy_regions,
)
from jersey_ray.models.small_backbone import DigitCNN
from jersey_ray.train.step import loss_fn, make_step, train_step

COMP = ["comp_pooled", "comp_tied", "comp_ctc", "comp_seq_tied"]
SEQ = "comp_seq_tied"


def packed(lengths: list[int], size=(32, 32), seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    mask = prefix_mask(lengths)
    return torch.randn(int(mask.sum()), 3, *size, generator=gen), mask


# --- registry ------------------------------------------------------------------------------


def test_the_family_follows_the_report_and_trains_from_scratch():
    ids = list(REGISTRY)
    assert [i for i in ids if i.startswith("comp_")] == COMP
    assert ids[-len(COMP) :] == COMP  # after the report's 18, which keep their order
    for mid in COMP:
        spec = REGISTRY[mid]
        assert spec.phase == "comp" and not spec.imagenet and spec.note == ""
        assert spec.description and "\n" not in spec.description
        assert protocol(mid) == {"lr_scheme": "uniform", "lr": 3e-3, "pretrained": "none"}
        assert model(mid).input_frames == (None if mid == SEQ else 1)
    assert all(REGISTRY[i].imagenet for i in ids if not i.startswith("comp_"))
    assert count_params(model("comp_seq_tied")) == count_params(model("comp_tied"))


def test_the_cnn_keeps_the_width_axis():
    cnn = DigitCNN()
    assert cnn(torch.zeros(2, 3, 32, 32)).shape == (2, 128, 4, 8)
    assert cnn(torch.zeros(1, 3, 32, 16)).shape == (1, 128, 4, 4)
    convs = [m for m in cnn.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 6


def test_groups_backbone_is_the_cnn_and_the_reader_is_the_heads():
    for mid in COMP:
        m = model(mid)
        groups = m.param_groups()
        assert {id(p) for p in groups["backbone"]} == {id(p) for p in m.backbone.parameters()}
        assert {id(p) for p in groups["heads"]} == {id(p) for p in m.heads.parameters()}
        assert groups["temporal"] == []


def test_tied_reader_shares_one_classifier_and_drops_the_ones_blank():
    m = model("comp_tied").eval()
    reader = m.heads
    classifiers = [x for x in reader.modules() if isinstance(x, nn.Linear)]
    assert len(classifiers) == 1 and classifiers[0].out_features == 11
    frames, mask = packed([1, 1])
    with torch.no_grad():
        fmap = m.backbone(frames)
        weights = reader.attention(fmap)
        pooled = torch.bmm(weights, fmap.flatten(2).transpose(1, 2)) + reader.position
        expected = reader.classifier(pooled)
        out = m(frames, mask)
    torch.testing.assert_close(out.tens, expected[:, 0])
    torch.testing.assert_close(out.ones, expected[:, 1, :10])
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2))
    # two positions, two different poolings (the queries differ)
    assert not torch.allclose(weights[:, 0], weights[:, 1])


def test_a_file_of_another_comp_model_loads_its_backbone(tmp_path):
    torch.manual_seed(5)
    source = build_model("comp_pooled")
    whole, bare = tmp_path / "pooled.pt", tmp_path / "cnn.pt"
    torch.save(source.state_dict(), whole)
    torch.save(source.backbone.state_dict(), bare)
    for path in (whole, bare):
        tied = build_model("comp_tied", str(path))
        expected = source.backbone.state_dict().values()
        for a, b in zip(tied.backbone.state_dict().values(), expected, strict=True):
            assert torch.equal(a, b)
    again = build_model("comp_pooled", str(whole))  # the same model: every weight
    for a, b in zip(again.state_dict().values(), source.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    ckpt = tmp_path / "best.pt"  # the trainer's checkpoint format
    torch.save({"model": source.state_dict(), "train": "{}", "epoch": 1}, ckpt)
    assert torch.equal(
        build_model("comp_pooled", str(ckpt)).heads.digits.fc_ones.bias,
        source.heads.digits.fc_ones.bias,
    )


def test_weights_errors_are_one_line(tmp_path):
    with pytest.raises(WeightsError, match="no ImageNet weights") as err:
        build_model("comp_ctc", "imagenet")
    assert "\n" not in str(err.value) and "--pretrained none" in str(err.value)
    with pytest.raises(WeightsError, match="not found"):
        build_model("comp_tied", str(tmp_path / "missing.pt"))
    wrong = tmp_path / "wrong.pt"
    torch.save({"layers.0.weight": torch.zeros(3)}, wrong)
    with pytest.raises(WeightsError, match="do not fit comp_tied") as err:
        build_model("comp_tied", str(wrong))
    assert "\n" not in str(err.value)


# --- forward / backward, padding -----------------------------------------------------------


@pytest.mark.parametrize("model_id", COMP)
def test_forward_backward_and_loss_on_variable_lengths(model_id):
    m = model(model_id).train()
    m.zero_grad(set_to_none=True)
    frames, mask = packed([3, 1, 4])
    out = m(frames, mask)
    assert (out.tens.shape, out.ones.shape, out.weights) == ((3, 11), (3, 10), None)
    if model_id == "comp_ctc":
        assert out.columns.shape == (3, 8, 11)  # the anchors' 8 columns
    elif model_id == SEQ:
        assert out.columns is None
    loss = m.training_loss(out, mask, torch.tensor([BLANK, 4, 0]), torch.tensor([7, 8, 7]), (1, 1))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} gets a zero gradient"
    with torch.no_grad():
        assert m.eval()(frames, mask).columns is None  # eval: the contract's three fields


def test_sequence_reader_is_the_mean_log_probability_of_its_frames():
    m = model(SEQ).eval()
    frames, mask = packed([3, 1])
    single = model("comp_tied")
    single.load_state_dict(m.state_dict())
    single.eval()
    with torch.no_grad():
        out = m(frames, mask)
        per_frame = [single(f[None], torch.ones(1, 1, dtype=torch.bool)) for f in frames]
    for head in ("tens", "ones"):
        logs = torch.stack([getattr(o, head)[0].log_softmax(0) for o in per_frame])
        torch.testing.assert_close(getattr(out, head)[0], logs[:3].mean(0))
        torch.testing.assert_close(getattr(out, head)[1], logs[3])


def test_sequence_output_is_padding_invariant():
    """A sequence reads the same alone, beside other sequences, padded or packed."""
    m = model(SEQ).eval()
    lengths = [2, 5, 1]
    mask = prefix_mask(lengths, t=6)  # an all-padding column too
    gen = torch.Generator().manual_seed(3)
    padded = torch.randn(*mask.shape, 3, 32, 32, generator=gen)  # noise in the padding
    with torch.no_grad():
        together = m(padded[mask], mask)
        from_padded = m(padded, mask)
        alone = [m(padded[i, :n], mask[i : i + 1, :n]) for i, n in enumerate(lengths)]
        junk = padded.clone()
        junk[~mask] = 100.0  # padding content must never matter
        junked = m(junk, mask)
    for out in (from_padded, junked):
        torch.testing.assert_close(out.tens, together.tens, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.ones, together.ones, atol=1e-5, rtol=1e-5)
    for i, single in enumerate(alone):
        torch.testing.assert_close(single.tens[0], together.tens[i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(single.ones[0], together.ones[i], atol=1e-5, rtol=1e-5)


# --- CTC -----------------------------------------------------------------------------------


def test_ctc_targets_encode_one_and_two_digit_numbers():
    tens = torch.tensor([BLANK, 4, 0, 1, BLANK])  # 7, 48, 07, 11, 0
    ones = torch.tensor([7, 8, 7, 1, 0])
    targets, lengths = ctc_targets(tens, ones)
    assert lengths.tolist() == [1, 2, 2, 2, 1]
    strings = [t[:n].tolist() for t, n in zip(targets, lengths, strict=True)]
    assert strings == [[7], [4, 8], [0, 7], [1, 1], [0]]


def path_log_probs(paths: list[list[int]], sure: float = 6.0) -> torch.Tensor:
    """[N,T,11] log-probabilities whose argmax per column is ``paths`` (10 = CTC blank)."""
    logits = torch.zeros(len(paths), len(paths[0]), 11)
    for n, path in enumerate(paths):
        for t, c in enumerate(path):
            logits[n, t, c] = sure
            logits[n, t, (c + 3) % 11] = sure / 2  # a runner-up, so scores are not flat
    return logits.log_softmax(-1)


B = CTC_BLANK
DECODE_CASES = [
    ([B, 4, 4, B, 8, B, B, B], (4, 8)),  # a repeat merged
    ([B, B, 7, 7, B, B, B, B], (BLANK, 7)),  # one digit: blank tens
    ([1, B, 1, B, B, B, B, B], (1, 1)),  # equal digits need a blank between them
    ([1, 1, B, B, B, B, B, B], (BLANK, 1)),  # ... without one they merge
    ([0, B, 7, B, B, B, B, B], (0, 7)),  # 07 is two digits
    ([1, 2, 3, B, B, B, B, B], (2, 3)),  # three digits: the last two
]


@pytest.mark.parametrize(("path", "number"), DECODE_CASES)
def test_greedy_decode_round_trip(path, number):
    log_probs = path_log_probs([path])
    tens, ones = decode_scores(log_probs)
    assert (int(tens.argmax(1)), int(ones.argmax(1))) == number
    if len([c for i, c in enumerate(path) if c != B and (i == 0 or path[i - 1] != c)]) > 2:
        return  # no number's string is the path's: nothing for the loss to agree with
    # the decoded string's CTC loss is the lowest of any number's
    losses = {
        (t, o): float(ctc_loss(log_probs, torch.tensor([t]), torch.tensor([o])))
        for t in [*range(10), BLANK]
        for o in range(10)
    }
    assert min(losses, key=losses.get) == number


def test_decode_scores_are_the_decoded_columns_posteriors():
    log_probs = path_log_probs([[B, 4, B, B, 8, B, B, B], [B, B, B, 7, B, B, B, B]])
    tens, ones = decode_scores(log_probs)
    torch.testing.assert_close(tens[0], log_probs[0, 1])  # the tens column, blank included
    torch.testing.assert_close(ones[0], log_probs[0, 4, :10])
    torch.testing.assert_close(ones[1], log_probs[1, 3, :10])
    # one digit: each tens class's best over the columns before it (all read as blank)
    torch.testing.assert_close(tens[1], log_probs[1, :3].amax(0))
    assert int(tens[1].argmax()) == BLANK


def test_decode_edge_cases():
    # a single digit in the first column: no column could hold a tens digit
    tens, ones = decode_scores(path_log_probs([[5, B, B, B]]))
    assert tens[0, BLANK] == 0 and torch.equal(tens[0, :10], torch.full((10,), FLOOR))
    assert int(ones.argmax()) == 5
    # nothing read: a one-digit number, the best digit of any column
    lp = path_log_probs([[B, B, B, B]])
    lp[0, 2, 6] = lp[0, 2, B] - 0.5  # 6 is the runner-up in column 2
    tens, ones = decode_scores(lp)
    assert int(tens.argmax()) == BLANK and int(ones.argmax()) == 6
    _, _, count = greedy_regions(lp)
    assert count.tolist() == [0]


def test_ctc_loss_is_the_mean_per_crop_nll():
    gen = torch.Generator().manual_seed(0)
    log_probs = torch.randn(3, 8, 11, generator=gen).log_softmax(-1)
    tens, ones = torch.tensor([BLANK, 4, 1]), torch.tensor([7, 8, 1])
    per_crop = [
        nn.functional.ctc_loss(
            log_probs[i : i + 1].transpose(0, 1),
            torch.tensor([s]),
            torch.tensor([8]),
            torch.tensor([len(s)]),
            blank=CTC_BLANK,
            reduction="sum",
        )
        for i, s in enumerate([[7], [4, 8], [1, 1]])
    ]
    torch.testing.assert_close(ctc_loss(log_probs, tens, ones), torch.stack(per_crop).mean())
    # too few columns for "11" (needs 3): zero instead of inf
    assert float(ctc_loss(log_probs[2:, :2], tens[2:], ones[2:])) == 0.0


# --- the training loss hook ----------------------------------------------------------------


def tiny_batch(mid: str) -> Batch:
    frames, mask = packed([2, 1, 2, 1], seed=7)
    if build_model(mid).input_frames == 1:
        starts = [0, 2, 3, 5]
        frames, mask = frames[starts], torch.ones(4, 1, dtype=torch.bool)
    tens, ones = torch.tensor([BLANK, 4, 0, 1]), torch.tensor([7, 8, 7, 1])
    index = torch.arange(4)
    return Batch(frames, mask, tens, ones, index, n_frames=frames.shape[0])


@pytest.mark.parametrize("model_id", ["comp_ctc", SEQ])
def test_train_step_uses_the_models_loss_and_learns(model_id, monkeypatch):
    torch.manual_seed(0)
    cfg = TrainConfig(model=model_id, epochs=1, warmup_epochs=0, lr=3e-3, device="cpu")
    step = make_step(cfg, build_model(model_id), n_train=4, device=torch.device("cpu"))
    batch = tiny_batch(model_id)
    calls = []
    hook = step.module.training_loss
    monkeypatch.setattr(step.module, "training_loss", lambda *a: calls.append(a) or hook(*a))

    def loss_now() -> float:
        step.module.train()
        with torch.no_grad():
            return float(loss_fn(step.module(batch.frames, batch.mask), batch, (1, 1), step.module))

    first = loss_now()
    if model_id == "comp_ctc":  # the CTC loss of the columns, not CE of the heads
        with torch.no_grad():
            out = step.module(batch.frames, batch.mask)
        assert first == pytest.approx(float(ctc_loss(out.columns, batch.tens, batch.ones)))
    calls.clear()
    step.scheduler = torch.optim.lr_scheduler.LambdaLR(step.optimizer, lambda s: 1.0)
    for _ in range(8):
        train_step(step, batch, M.SplitCounter("cpu"))
    assert len(calls) == 8
    assert loss_now() < first


def test_loss_fn_without_a_hook_is_the_report_ce():
    with torch.no_grad():
        plain = model("comp_pooled").eval()(*packed([1, 1]))
    tens, ones = torch.tensor([BLANK, 3]), torch.tensor([1, 2])
    batch = Batch(torch.zeros(2), torch.ones(2, 1, dtype=torch.bool), tens, ones, tens, 2)
    ce = nn.functional.cross_entropy
    expected = 2 * ce(plain.tens, batch.tens) + ce(plain.ones, batch.ones)
    # a module without training_loss, or none: the report's loss
    torch.testing.assert_close(loss_fn(plain, batch, (2.0, 1.0), nn.Linear(1, 1)), expected)
    torch.testing.assert_close(loss_fn(plain, batch, (2.0, 1.0)), expected)


# --- deployment ----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("model_id", COMP)
def test_torch_jit_script_matches_eager(model_id):
    m = model(model_id).eval()
    frames, mask = packed([3, 1, 2])
    scripted = torch.jit.script(m)
    with torch.no_grad():
        ref, got = m(frames, mask), scripted(frames, mask)
    torch.testing.assert_close(got.tens, ref.tens, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got.ones, ref.ones, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("model_id", COMP)
def test_onnx_export_matches_pytorch(model_id, tmp_path):
    """export_onnx checks ONNX Runtime against PyTorch on varied B, T and lengths itself; a
    further batch longer than any it checked must agree too."""
    import onnxruntime as ort

    m = model(model_id).eval()
    done = export_mod.export_onnx(m, tmp_path / "m.onnx", (32, 32), steps=3)
    assert done.max_abs_diff < 1e-4 and len(done.checked) == 3
    frames, mask = export_mod.random_batch([6, 2, 1, 4], (32, 32), seed=9)
    session = ort.InferenceSession(str(done.path), providers=["CPUExecutionProvider"])
    got = session.run(["tens", "ones"], {"frames": frames.numpy(), "mask": mask.numpy()})
    with torch.no_grad():
        ref = m(frames, mask)
    for new, old in zip(got, ref[:2], strict=True):
        torch.testing.assert_close(torch.from_numpy(new), old, atol=1e-4, rtol=1e-4)


def test_listing_marks_the_family_as_not_in_the_report(capsys, monkeypatch):
    from jersey_ray.models import __main__ as listing

    subset = {i: REGISTRY[i] for i in ("basic_mv3s", "comp_pooled", "comp_ctc")}
    monkeypatch.setattr(listing, "REGISTRY", subset)
    assert listing.main(["--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["comp_ctc"]["params"] == REGISTRY["comp_ctc"].report_params == 363_371
    assert rows["comp_ctc"]["report_params"] is None
    assert rows["basic_mv3s"]["report_params"] == 1_539_381
    assert listing.main([]) == 0
    table = capsys.readouterr().out
    line = next(x for x in table.splitlines() if x.startswith("comp_pooled"))
    assert line.split()[-2:] == ["290,165", "-"] and "*" not in table


def test_fetch_weights_by_default_skips_models_without_imagenet_weights(monkeypatch, capsys):
    from jersey_ray.models import __main__ as listing

    asked = []
    monkeypatch.setattr(listing, "fetch_weights", lambda ids: asked.append(ids) or {})
    assert listing.main(["fetch-weights"]) == 0
    assert asked == [[i for i in REGISTRY if not i.startswith("comp_")]]
    monkeypatch.undo()
    assert listing.main(["fetch-weights", "comp_tied"]) == 2  # asked by name: a one-line error
    assert "no ImageNet weights" in capsys.readouterr().err
