"""The model zoo: registry, exact parameter counts, masking, batch independence, weights, speed
contracts (autocast, channels_last, no host syncs, torch.compile). CPU, tiny images. Pretrained
weights: tests/test_weights.py."""

from __future__ import annotations

import csv
import json
from importlib import resources

import pytest
import torch
from model_helpers import model, prefix_mask
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.utils._python_dispatch import TorchDispatchMode

from jersey_ray.errors import UserError
from jersey_ray.models import (
    REGISTRY,
    ModelOutput,
    build_model,
    count_params,
    get_spec,
    protocol,
)
from jersey_ray.models.__main__ import main as models_main
from jersey_ray.models.attention import TopKPool, fill_padding
from jersey_ray.models.recurrent import LengthAwareRNN

H, W = 32, 16
IDS = list(REGISTRY)
REPORT = [i for i in IDS if REGISTRY[i].phase != "comp"]  # the report's 18
COMP_SEQUENCE = [i for i in IDS if i.startswith("comp_seq_")]  # comp_ readers of every frame
SEQUENCE = [i for i in REPORT if REGISTRY[i].phase != "phase0"] + COMP_SEQUENCE
ATTENTION = [i for i in IDS if REGISTRY[i].phase == "phaseB"]
LITE0_PARAMS = 3_397_909  # timm efficientnet_lite0 without classifier (3,371,008) + heads 26,901


def frames_for(lengths: list[int], t: int | None = None, seed: int = 1) -> torch.Tensor:
    """Padded [B,T,3,H,W]; padding holds noise so that any leak into the outputs shows."""
    g = torch.Generator().manual_seed(seed)
    mask = prefix_mask(lengths, t)
    return torch.randn(*mask.shape, 3, H, W, generator=g)


def batch(lengths: list[int], t: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch every model takes: packed real frames and the mask."""
    mask = prefix_mask(lengths, t)
    return frames_for(lengths, t)[mask], mask


def tensors(out: ModelOutput) -> list[torch.Tensor]:
    """The output's tensors (weights only where the model has them)."""
    return [x for x in out if x is not None]


# --- registry ------------------------------------------------------------------------------


def test_registry_ids_phases_and_names():
    expected = [
        *("basic_r18", "basic_effb0", "basic_effl0", "basic_mv3l", "basic_mv3s", "basic_sv2"),
        *("seq_brnn_mp", "seq_urnn_fs", "seq_bgru_mp", "seq_ugru_fs", "seq_blstm_mp"),
        "seq_ulstm_fs",
        *("attn_bgru_bahdanau", "attn_bgru_luong", "attn_bgru_gate", "attn_bgru_hc"),
        *("attn_ugru_gate", "attn_ugru_hc"),
    ]
    assert expected == REPORT and IDS[: len(expected)] == expected
    for mid in REPORT:
        spec = REGISTRY[mid]
        assert spec.id == mid
        phase = {"basic": "phase0", "seq": "phaseA", "attn": "phaseB"}[mid.split("_")[0]]
        assert spec.phase == phase
        assert model(mid).input_frames == (1 if phase == "phase0" else None)
        scheme = "uniform" if phase == "phase0" else "discriminative"
        assert protocol(mid) == {"lr_scheme": scheme}
        assert spec.description and "\n" not in spec.description
        if mid.endswith("_mp"):
            assert "mean pool" in spec.display and "mean" in spec.description
        if mid.endswith("_fs"):
            assert "final state" in spec.display and "last valid step" in spec.description
    assert REGISTRY["attn_bgru_hc"].display == "BiGRU + top-k (HC)"
    assert REGISTRY["attn_bgru_gate"].display == "BiGRU + gate (softmax)"
    assert len({REGISTRY[i].display for i in REPORT}) == 18


def test_unknown_id_lists_valid_ids():
    with pytest.raises(UserError) as err:
        get_spec("seq_bgrru_mp")
    assert "seq_bgrru_mp" in str(err.value)
    assert all(mid in str(err.value) for mid in IDS)
    with pytest.raises(UserError):
        build_model("basic")


@pytest.mark.parametrize("model_id", [i for i in IDS if i != "basic_effl0"])
def test_param_count_equals_report(model_id):
    assert count_params(model(model_id)) == REGISTRY[model_id].report_params
    assert REGISTRY[model_id].note == ""


def test_report_params_are_the_report_tables():
    table = resources.files("jersey_ray.results").joinpath("report_tables.csv").read_text("utf-8")
    report = {row["model_id"]: int(row["params"]) for row in csv.DictReader(table.splitlines())}
    assert report == {mid: REGISTRY[mid].report_params for mid in REPORT}


def test_effl0_is_a_real_lite0_with_its_own_count_and_a_note():
    m = model("basic_effl0")
    assert count_params(m) == LITE0_PARAMS != REGISTRY["basic_effl0"].report_params
    assert "B0" in REGISTRY["basic_effl0"].note and "Lite0" in REGISTRY["basic_effl0"].note
    names = {type(x).__name__ for x in m.modules()}
    assert "SqueezeExcite" not in names and "ReLU6" in names
    assert not any(type(x).__name__ in ("SiLU", "Swish") for x in m.modules())


def test_cli_json_and_table(capsys):
    assert models_main(["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == IDS
    assert all({"id", "phase", "display", "params"} <= set(r) for r in rows)
    by_id = {r["id"]: r for r in rows}
    assert by_id["basic_effl0"]["params"] == LITE0_PARAMS
    assert by_id["seq_bgru_mp"]["params"] == 11_674_965
    assert models_main([]) == 0
    table = capsys.readouterr().out
    assert "11,740,757" in table and "basic_effl0" in table and "* basic_effl0" in table
    rows_shown = [line for line in table.splitlines() if line.split(" ")[0] in by_id]
    ends = {len(line.rstrip(" *")) for line in rows_shown}
    assert len(rows_shown) == len(IDS) and len(ends) == 1, "columns aligned for the longest name"


# --- parameter groups ----------------------------------------------------------------------


@pytest.mark.parametrize("model_id", IDS)
def test_param_groups_cover_every_parameter_once(model_id):
    m = model(model_id)
    groups = m.param_groups()
    assert set(groups) == {"backbone", "temporal", "heads"}
    ids = [id(p) for group in groups.values() for p in group]
    assert len(ids) == len(set(ids)), "a parameter is in two groups"
    assert set(ids) == {id(p) for p in m.parameters() if p.requires_grad}
    if model_id in REPORT:
        assert len(groups["heads"]) == 4
        assert bool(groups["temporal"]) == (model_id in SEQUENCE)
    else:  # comp_: the reader is the heads group (test_compositional checks it)
        assert groups["backbone"] and groups["heads"]
    if model_id.endswith("_hc"):
        assert any(p is m.pool.temperature for p in groups["temporal"])


# --- forward / backward --------------------------------------------------------------------


@pytest.mark.parametrize("model_id", IDS)
def test_forward_backward_variable_lengths(model_id):
    m = model(model_id).train()
    m.zero_grad(set_to_none=True)
    out = m(*batch([3, 1, 4]))
    assert isinstance(out, ModelOutput)
    assert (out.tens.shape, out.ones.shape) == ((3, 11), (3, 10))
    if model_id in ATTENTION:
        assert out.weights.shape == (3, 4)
    else:
        assert out.weights is None
    (out.tens.logsumexp(1).sum() + out.ones.logsumexp(1).sum()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(p.grad).all(), name
    # A softmax ignores a shift shared by all its inputs: a bias that only shifts every frame's
    # score has a true gradient of exactly 0 (a float result is 0 or a rounding residue).
    pool = getattr(m, "pool", None)
    blind = {f"pool.{n}" for n in getattr(pool, "shift_invariant", ())}
    named = dict(m.named_parameters())
    for name in blind:
        assert named[name].grad.abs().max() < 1e-6, f"{name} should not see the loss"
    temporal = [n for n in named if not n.startswith(("backbone.", "heads.")) and n not in blind]
    for name in temporal if model_id in SEQUENCE else []:
        assert named[name].grad.abs().sum() > 0, f"{name} gets a zero gradient"


def test_shift_invariant_parameters_are_declared_where_they_exist():
    assert model("attn_bgru_gate").pool.shift_invariant == ("gate_mlp.2.bias",)
    assert model("attn_ugru_hc").pool.shift_invariant == ("score_mlp.2.bias",)
    assert model("attn_bgru_luong").pool.shift_invariant == ("attn_key.bias",)
    assert model("attn_bgru_bahdanau").pool.shift_invariant == ()


@pytest.mark.parametrize("model_id", SEQUENCE)
def test_length_one_sequences_are_finite(model_id):
    m = model(model_id).eval()
    with torch.no_grad():
        out = m(*batch([1, 1]))
    assert all(torch.isfinite(o).all() for o in tensors(out))
    if model_id in ATTENTION:
        assert torch.equal(out.weights, torch.ones(2, 1))


@pytest.mark.parametrize("model_id", IDS)
def test_eval_output_is_independent_of_the_batch(model_id):
    """Padded or packed, alone or beside longer and shorter neighbours: the same outputs."""
    m = model(model_id).eval()
    lengths = [5, 3, 1]
    mask = prefix_mask(lengths, t=7)  # longer and shorter neighbours, plus all-padding steps
    frames = frames_for(lengths, t=7)
    with torch.no_grad():
        padded = m(frames, mask)
        packed = m(frames[mask], mask)
        alone = [m(frames[i : i + 1, :n], mask[i : i + 1, :n]) for i, n in enumerate(lengths)]
    for a, b in zip(tensors(padded), tensors(packed), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for i, n in enumerate(lengths):
        for k, (a, b) in enumerate(zip(tensors(alone[i]), tensors(padded), strict=True)):
            expected = b[i, :n] if k == 2 else b[i]
            torch.testing.assert_close(a[0], expected, atol=1e-5, rtol=1e-5)


def test_single_frame_models_read_the_anchor_only():
    m = model("basic_r18").eval()
    frames, mask = batch([3, 1, 2])
    starts = [0, 3, 4]  # each sequence's first packed frame
    with torch.no_grad():
        full = m(frames, mask)
        anchors = m(frames[starts], torch.ones(3, 1, dtype=torch.bool))
        other = frames.clone()
        other[[1, 2, 5]] = 0  # change every non-anchor frame
        changed = m(other, mask)
    torch.testing.assert_close(full.tens, anchors.tens)
    torch.testing.assert_close(full.tens, changed.tens)


# --- attention -----------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", ATTENTION)
def test_attention_weights_are_masked_and_normalised(model_id):
    m = model(model_id).eval()
    lengths = [6, 2, 1, 4]
    mask = prefix_mask(lengths)
    with torch.no_grad():
        weights = m(frames_for(lengths)[mask], mask).weights
    assert weights.dtype == torch.float32
    assert torch.equal(weights[~mask], torch.zeros(int((~mask).sum())))
    torch.testing.assert_close(weights.sum(1), torch.ones(4))
    assert (weights >= 0).all()
    nonzero = (weights > 0).sum(1)
    if model_id.endswith("_hc"):
        assert (nonzero <= torch.tensor(lengths).clamp(max=3)).all()
        assert nonzero[0] <= 3 < lengths[0]
    else:
        assert torch.equal(nonzero, torch.tensor(lengths))


def test_padding_scores_are_the_most_negative_finite_float():
    filled = fill_padding(torch.zeros(1, 3, dtype=torch.float16), prefix_mask([1], t=3))
    assert filled.dtype == torch.float32
    assert filled.tolist() == [[0.0, *[torch.finfo(torch.float32).min] * 2]]


def test_topk_pool_equals_renormalised_top3_of_the_softmax():
    torch.manual_seed(3)
    pool = TopKPool(8)
    lengths = [5, 2, 1, 3]
    mask = prefix_mask(lengths)
    outputs = torch.randn(4, 5, 8) * mask[..., None]
    weights = pool(outputs, torch.zeros(4, 8), mask)
    scores = pool.score_mlp(outputs).squeeze(-1) / pool.temperature
    for i, n in enumerate(lengths):  # the reference's per-sample loop, without its fallbacks
        p = torch.softmax(scores[i, :n], 0)
        top, index = p.topk(min(3, n))
        expected = torch.zeros(5).index_put((index,), top / top.sum())
        torch.testing.assert_close(weights[i], expected)
    weights.sum().backward()
    scores_grad = pool.score_mlp[0].weight.grad
    assert scores_grad is not None and pool.temperature.grad is not None
    # the temperature is clamped to [1e-3, 10] in the forward
    with torch.no_grad():
        pool.temperature.fill_(-5.0)
    assert torch.isfinite(pool(outputs, torch.zeros(4, 8), mask)).all()


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_length_aware_rnn_equals_packed_bidirectional(kind):
    torch.manual_seed(0)
    ours = LengthAwareRNN(kind, 6, 5, bidirectional=True)
    ref = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[kind](
        6, 5, batch_first=True, bidirectional=True
    )
    assert count_params(ours) == count_params(ref)
    with torch.no_grad():
        for name, p in ours.forward_rnn.named_parameters():
            getattr(ref, name).copy_(p)
        for name, p in ours.backward_rnn.named_parameters():
            getattr(ref, f"{name}_reverse").copy_(p)
    lengths = torch.tensor([4, 1, 6, 3])
    mask = prefix_mask(lengths.tolist())
    x = torch.randn(4, 6, 6)  # padding holds noise, as the packed path never reads it
    out, final = ours(x, mask, lengths)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    ref_out, h_n = ref(packed)
    ref_out = pad_packed_sequence(ref_out, batch_first=True, total_length=6)[0]
    h_n = h_n[0] if kind == "lstm" else h_n
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(final, torch.cat([h_n[0], h_n[1]], dim=1))


# --- speed contracts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "dtype"),
    [*((i, torch.bfloat16) for i in IDS), ("attn_bgru_hc", torch.float16)],
    ids=[*(f"{i}-bf16" for i in IDS), "attn_bgru_hc-fp16"],
)
def test_autocast_forward(model_id, dtype):
    m = model(model_id).eval()
    inputs = batch([2, 1])
    with torch.no_grad():
        ref = m(*inputs)
        with torch.autocast("cpu", dtype=dtype):
            out = m(*inputs)
    for a, b in zip(tensors(out), tensors(ref), strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a.float(), b, atol=0.15, rtol=0.1)
    if model_id in ATTENTION:
        torch.testing.assert_close(out.weights.sum(1), torch.ones(2))


@pytest.mark.parametrize("model_id", ["basic_mv3s", "seq_blstm_mp", "attn_bgru_luong"])
def test_channels_last_gives_the_same_outputs(model_id):
    m = model(model_id).eval()
    frames, mask = batch([3, 2])
    with torch.no_grad():
        ref = m(frames, mask)
        m.to(memory_format=torch.channels_last)
        out = m(frames.contiguous(memory_format=torch.channels_last), mask)
        m.to(memory_format=torch.contiguous_format)
    for a, b in zip(tensors(out), tensors(ref), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


class ForbidHostSync(TorchDispatchMode):
    """Fails on aten ops that make a CUDA host wait: value reads and data-dependent shapes."""

    SYNCING = frozenset(
        f"aten::{op}"
        for op in (
            "_local_scalar_dense",
            "item",
            "is_nonzero",
            "nonzero",
            "masked_select",
            "equal",
            "unique",
            "_unique2",
            "repeat_interleave",
        )
    )

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        bool_index = name.startswith("aten::index") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool
            for i in (args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else ())
        )
        if name in self.SYNCING or bool_index:
            raise AssertionError(f"host sync: {name}")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("model_id", IDS)
def test_packed_forward_and_backward_never_sync(model_id):
    m = model(model_id).train()
    lengths = [3, 1, 2]
    mask = prefix_mask(lengths)
    frames = frames_for(lengths)[mask]
    with ForbidHostSync():
        out = m(frames, mask)
        (out.tens.sum() + out.ones.sum()).backward()
    if model_id in SEQUENCE:
        with ForbidHostSync(), pytest.raises(AssertionError, match="host sync"):
            m(frames_for(lengths), mask)  # the padded convenience path syncs (boolean index)


@pytest.mark.parametrize("model_id", ["seq_bgru_mp", "attn_bgru_hc"])
def test_torch_compile_full_graph(model_id):
    """One graph, no breaks, forward and backward (dynamo traces nn.GRU only with allow_rnn)."""
    torch.manual_seed(0)
    m = build_model(model_id).train()
    mask = prefix_mask([2, 1])
    frames = frames_for([2, 1])[mask]
    eager = m(frames, mask)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(allow_rnn=True):
        out = torch.compile(m, fullgraph=True, backend="aot_eager")(frames, mask)
        out.tens.sum().backward()
    for a, b in zip(tensors(out), tensors(eager), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert all(p.grad is not None for p in m.param_groups()["backbone"])


def test_torch_compile_shares_one_graph_across_batch_sizes_at_a_fixed_t():
    """allow_rnn unrolls the GRU and guards on T, so the trainer pads to one T; B and N may vary
    (one automatic-dynamic recompile, then no more)."""
    from torch._dynamo.utils import counters

    m = model("attn_ugru_hc").eval()
    torch._dynamo.reset()
    graphs = counters["stats"]["unique_graphs"]
    with torch._dynamo.config.patch(allow_rnn=True), torch.no_grad():
        compiled = torch.compile(m, fullgraph=True, backend="eager")
        for lengths in ([2, 1], [1, 3, 3], [3, 2, 1, 1], [1, 1, 2, 3, 3]):
            mask = prefix_mask(lengths, t=3)
            frames = frames_for(lengths, t=3)[mask]
            torch.testing.assert_close(tensors(compiled(frames, mask)), tensors(m(frames, mask)))
    assert counters["stats"]["unique_graphs"] - graphs == 2


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("model_id", ["seq_blstm_mp", "attn_bgru_hc"])
def test_torch_jit_script_matches_eager(model_id):
    """bench infer's TorchScript variant: scripting compiles and gives the eager outputs, packed
    or padded."""
    m = model(model_id).eval()
    lengths = [3, 1, 2]
    mask = prefix_mask(lengths)
    padded = frames_for(lengths)
    scripted = torch.jit.script(m)
    with torch.no_grad():
        ref = m(padded[mask], mask)
        for frames in (padded[mask], padded):
            for a, b in zip(tensors(scripted(frames, mask)), tensors(ref), strict=True):
                torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
