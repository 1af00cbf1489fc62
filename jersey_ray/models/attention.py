"""Phase B: length-aware GRU outputs pooled with per-frame weights (report-spec 2.5, fixed).

Every pooling returns float32 weights [B,T] that are exactly 0 on padding and sum to 1 over
each sample's valid frames. Masking uses the most negative finite float and a final multiply by
the mask, so no -inf enters the softmax and a fully padded row cannot produce NaN.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from jersey_ray.models.heads import DigitHeads, ModelOutput
from jersey_ray.models.recurrent import LengthAwareRNN
from jersey_ray.models.sequence import RecurrentModel


def fill_padding(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``scores`` in float32 with the most negative finite float where ``mask`` is False."""
    # torch.finfo(torch.float32).min written out: TorchScript reads neither finfo nor a global
    return scores.float().masked_fill(~mask, -3.4028234663852886e38)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 1 of the True positions; exact zeros elsewhere (float32)."""
    weights = torch.softmax(fill_padding(scores, mask), dim=1)
    return weights * mask


class AdditivePool(nn.Module):
    """Bahdanau-style: e_t = v . tanh(W_q q + W_k o_t), q = the RNN's final states."""

    shift_invariant: tuple[str, ...] = ()
    """Parameters the softmax cannot see: none (the tanh is not shift-invariant)."""

    def __init__(self, features: int, attention_dim: int = 128) -> None:
        super().__init__()
        self.attn_query = nn.Linear(features, attention_dim)
        self.attn_key = nn.Linear(features, attention_dim)
        self.attn_score = nn.Linear(attention_dim, 1, bias=False)

    def forward(
        self, outputs: torch.Tensor, final: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        hidden = torch.tanh(self.attn_query(final)[:, None] + self.attn_key(outputs))
        return masked_softmax(self.attn_score(hidden).squeeze(-1), mask)


class DotProductPool(nn.Module):
    """Scaled dot product with a summary query: e_t = (W_q q) . (W_k o_t) / sqrt(d_attn).

    The reference calls it "Luong", but there is no decoder state: q is the RNN's final states.
    The key bias adds the same (b_k . W_q q) to every frame's score, and a softmax ignores a
    shift shared by all its inputs, so that bias gets an exact zero gradient and never learns;
    it stays because the report's parameter counts include it.
    """

    shift_invariant = ("attn_key.bias",)
    """Parameters the softmax cannot see (their true gradient is 0)."""

    def __init__(self, features: int, attention_dim: int = 128) -> None:
        super().__init__()
        self.attn_query = nn.Linear(features, attention_dim)
        self.attn_key = nn.Linear(features, attention_dim)
        self.scale = 1.0 / math.sqrt(attention_dim)

    def forward(
        self, outputs: torch.Tensor, final: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        keys = self.attn_key(outputs)
        scores = torch.bmm(keys, self.attn_query(final)[:, :, None]).squeeze(-1)
        return masked_softmax(scores * self.scale, mask)


def _scorer(features: int, hidden: int = 64) -> nn.Sequential:
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, 1))


class GatePool(nn.Module):
    """Per-frame MLP score, softmax over valid frames (the reference's "gate" is not a sigmoid).

    The scorer's last bias shifts every frame's score alike, which the softmax ignores: its true
    gradient is exactly 0 (a float result is 0 or a rounding residue, depending on the order of
    operations). It cannot learn and stays only because the report's parameter counts include it.
    """

    shift_invariant = ("gate_mlp.2.bias",)
    """Parameters the softmax cannot see (their true gradient is 0)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.gate_mlp = _scorer(features)

    def forward(
        self, outputs: torch.Tensor, final: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        return masked_softmax(self.gate_mlp(outputs).squeeze(-1), mask)


class TopKPool(nn.Module):
    """Per-sample top-k softmax: MLP scores / learnable temperature over the k = min(top_k,
    length) best valid frames, renormalised there, zero elsewhere (decisions row 4).

    Deterministic and the same in train and eval; the reference calls it "Hard-Concrete" but has
    no stochastic relaxation. Equal to its top-k-then-renormalise of the full softmax. As in
    :class:`GatePool`, the scorer's last bias shifts every score alike (the ranking and the
    softmax ignore it): its true gradient is 0 and it stays for the report's parameter counts.
    """

    shift_invariant = ("score_mlp.2.bias",)
    """Parameters the ranking and the softmax cannot see (their true gradient is 0)."""

    def __init__(self, features: int, top_k: int = 3, temperature: float = 0.1) -> None:
        super().__init__()
        self.score_mlp = _scorer(features)
        self.temperature = nn.Parameter(torch.tensor(temperature))
        self.top_k = top_k

    def forward(
        self, outputs: torch.Tensor, final: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        tau = self.temperature.float().clamp(1e-3, 10.0)
        scores = fill_padding(self.score_mlp(outputs).squeeze(-1).float() / tau, mask)
        top, index = scores.topk(min(self.top_k, scores.shape[1]), dim=1)
        # Padding ranks last, so a sample shorter than k keeps only its valid frames.
        kept = masked_softmax(top, mask.gather(1, index))
        return torch.zeros_like(scores).scatter(1, index, kept)


class AttentionModel(RecurrentModel):
    """CNN per real frame -> LengthAwareRNN -> attention pooling of the outputs -> heads.

    ``forward(frames, mask)`` returns a :class:`ModelOutput` with the weights [B,T].
    """

    def __init__(self, backbone: nn.Module, rnn: LengthAwareRNN, pool: nn.Module) -> None:
        super().__init__(backbone, rnn)
        self.pool = pool
        self.heads = DigitHeads(rnn.out_features)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> ModelOutput:
        outputs, final, _ = self.encode(frames, mask)
        weights = self.pool(outputs, final, mask)
        context = torch.bmm(weights[:, None].to(outputs.dtype), outputs).squeeze(1)
        tens, ones = self.heads(context)
        return ModelOutput(tens, ones, weights)
