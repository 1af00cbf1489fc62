"""The compositional readers' small CNN: a 6-conv VGG-style network for 32x32 number crops that
keeps the width axis, and how its weights are loaded.

A network that pools space away before two linear heads has to memorise whole numbers to tell
the left digit from the right one; the readers of :mod:`jersey_ray.models.compositional` read
the digits off a feature map that still has columns. Three stages of two 3x3 conv-BN-ReLU
layers; the first two stages halve height and width, the last halves the height only, so a
32x32 crop becomes a 128 x 4 x 8 map (8 columns, one per 4 pixels of width) and a 32x16 one a
128 x 4 x 4 map. The issue's probe measured this shape of network at 0.997 on seen SoccerNet
numbers (the study's ResNet-18 at the same size: 0.94-0.975).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from jersey_ray.models.backbones import WeightsError, read_state_dict

CHANNELS = (32, 64, 128)
"""Output channels of the three stages (two convolutions each)."""
POOLS = ((2, 2), (2, 2), (2, 1))
"""Max-pool kernel (= stride) after each stage, (height, width): height is pooled more."""


class DigitCNN(nn.Module):
    """[N,3,H,W] -> feature map [N,128,H/8,W/4] (conv-BN-ReLU x2 per stage, max-pools)."""

    out_channels = CHANNELS[-1]

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for cout, pool in zip(CHANNELS, POOLS, strict=True):
            for _ in range(2):
                # no conv bias: BatchNorm's shift makes it redundant
                layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)]
                layers.append(nn.ReLU(inplace=True))
                cin = cout
            layers.append(nn.MaxPool2d(pool, pool))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def load_weights(model: nn.Module, pretrained: str, model_id: str) -> nn.Module:
    """``model`` (a compositional reader with a ``backbone``) with weights from ``pretrained``.

    ``none``: as built. ``imagenet``: a WeightsError (this CNN has no ImageNet weights). A state
    dict file: the whole model when it holds exactly this model's keys; else its ``backbone.*``
    keys (any ``comp_`` model's); else a bare backbone state dict. (Runs, trials and trainer
    checkpoints of this project are :mod:`jersey_ray.models.warmstart`'s, before this.)
    """
    if pretrained == "none":
        return model
    if pretrained == "imagenet":
        raise WeightsError(
            f"{model_id} has a small CNN with no ImageNet weights: pass --pretrained none or a "
            "checkpoint / state dict file of a comp_ model"
        )
    path = Path(pretrained)
    state = read_state_dict(path)
    try:
        if set(state) == set(model.state_dict()):
            model.load_state_dict(state)
            return model
        prefix = "backbone."
        inner = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        model.get_submodule("backbone").load_state_dict(inner or state)
    except RuntimeError as err:  # missing, unexpected or misshapen keys
        text = " ".join(str(err).split())[:240]
        raise WeightsError(f"{path}: weights do not fit {model_id}'s CNN: {text}") from err
    return model
