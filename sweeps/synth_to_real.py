"""Synthetic-to-real, stage 2 (issue 20): the real crops from scratch against fine-tuning from
the two stage-1 runs of ``sweeps/synth_pretrain.py`` (run those first, with the names below).

One grid over the starting weights, so every row is paired with the same test and unseen tracks:

- ``pretrained=none``: from scratch (the reference: the baseline from scratch);
- ``results/runs/synth-heldout``: pre-trained on renders WITHOUT the held-out numbers (no image
  of a held-out number anywhere in training); ``Saw renders`` no;
- ``results/runs/synth-all``: pre-trained on renders of all 00-99; ``Saw renders`` yes.

Each model starts from its own trial chosen on validation in that run
(:mod:`jersey_ray.models.warmstart`); every starting point is loaded once on the driver before
any data work (a missing run is one line). The real run's held-out numbers are chosen
automatically (the fair rule) and must be the ones stage 1 held out: the same data and split
seed give the same choice; the table lists them. Runs elsewhere than ``results/runs``: copy this
file and edit the paths (relative paths are read from the directory the sweep starts in).

    python -m jersey_ray.sweep synth_to_real --data data/soccernet
"""

import dataclasses

from jersey_ray.sweep.sweep_files import load

_COMPOSITIONAL = load("compositional")

SWEEP = dataclasses.replace(
    _COMPOSITIONAL,
    name="synth_to_real",
    description="Real crops from scratch vs fine-tuned from synthetic pre-training",
    models=("attn_bgru_luong", "comp_seq_tied"),
    axes={"pretrained": ("none", "results/runs/synth-heldout", "results/runs/synth-all")},
    train={**_COMPOSITIONAL.train, "splice": 0.0},
    reference="attn_bgru_luong/pretrained=none",
)
