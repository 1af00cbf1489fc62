"""Recurrent layers that ignore padding without ``pack_padded_sequence``.

Packing needs the lengths on the host (a sync per step) and is opaque to ``torch.compile``.
Instead each direction is a unidirectional module run over a padded [B,T,C] tensor:

* forward direction: output t depends only on inputs 0..t, so every valid step (t < length)
  is exact whatever follows it;
* backward direction: each sequence is reversed *within its own length* (a per-sample index
  gather), run forward, and reversed back, so it also sees only valid inputs.

Two unidirectional modules hold exactly the parameters of one ``bidirectional=True`` module.
Masks must be prefix masks (True for t < length), as the loader produces; lengths >= 1.
"""

from __future__ import annotations

import torch
from torch import nn

RNN_TYPES: dict[str, type[nn.RNN | nn.GRU | nn.LSTM]] = {
    "rnn": nn.RNN,
    "gru": nn.GRU,
    "lstm": nn.LSTM,
}


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x [B,T,C] with each sample's first ``length`` steps reversed; padding stays in place."""
    t = torch.arange(x.shape[1], device=x.device)
    src = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    batch = torch.arange(x.shape[0], device=x.device)[:, None]
    return x[batch, src]  # a permutation that is its own inverse


def at_step(x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """x [B,T,C] at one time step per sample (step [B]) -> [B,C]."""
    return x[torch.arange(x.shape[0], device=x.device), step]


class LengthAwareRNN(nn.Module):
    """One-layer RNN/GRU/LSTM (batch_first) over padded input, exact for every valid step.

    Returns ``(outputs [B,T,D], final [B,D])``: outputs are zero on padding (like
    ``pad_packed_sequence``); ``final`` is what ``h_n`` would hold with packing, i.e. the forward
    output at t = length-1, concatenated for bidirectional layers with the backward output at
    t = 0. For LSTMs that is h, not c.
    """

    def __init__(self, kind: str, input_size: int, hidden_size: int, bidirectional: bool) -> None:
        super().__init__()
        rnn = RNN_TYPES[kind]
        self.forward_rnn = rnn(input_size, hidden_size, batch_first=True)
        self.backward_rnn = (
            rnn(input_size, hidden_size, batch_first=True) if bidirectional else None
        )
        self.out_features = hidden_size * (2 if bidirectional else 1)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.forward_rnn(x)[0]
        final = at_step(out, (lengths - 1).clamp(min=0))
        if self.backward_rnn is not None:
            back = self.backward_rnn(reverse_within_length(x, lengths))[0]
            back = reverse_within_length(back, lengths)
            out = torch.cat([out, back], dim=-1)
            final = torch.cat([final, back[:, 0]], dim=-1)
        return out * mask[..., None].to(out.dtype), final
