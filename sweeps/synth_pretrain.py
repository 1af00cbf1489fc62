"""Synthetic-to-real, stage 1 (issue 20): pre-train on the built-in synthetic number crops.

The compositional sweep's data and protocol (numbers 0-99 as number-region crops, 32x32,
4 frames, 8 epochs, 3 seeds), reduced to the best baseline (``attn_bgru_luong``) and the best
reader (``comp_seq_tied``, measured by ``compositional --quick`` and on the real crops), splice
off. Run it twice, the two variants kept apart (stage 2's table marks each row ``Saw renders``):

- WITHOUT the held-out numbers of the real data (they go to the synthetic ``unseen`` split: no
  image of them anywhere in training, a pure test of composition; give the numbers the real
  data's split holds out, which ``python -m jersey_ray.data summary ROOT --split heldout``
  lists, e.g. SoccerNet's automatic fair choice)::

      python -m jersey_ray.sweep synth_pretrain --name synth-heldout --heldout 14,16,25,31,33,56

- covering ALL 00-99 (the practical recipe for a new roster: render what no clip shows; one
  seed is enough, stage 2 starts from the trial chosen on validation)::

      python -m jersey_ray.sweep synth_pretrain --name synth-all --split tracks --seeds 42

Its own table is the synthetic held-out measurement (seen vs unseen, per held-out number).
Then stage 2: ``python -m jersey_ray.sweep synth_to_real --data data/soccernet``.
"""

import dataclasses

from jersey_ray.sweep.sweep_files import load

_COMPOSITIONAL = load("compositional")

SWEEP = dataclasses.replace(
    _COMPOSITIONAL,
    name="synth_pretrain",
    description="Synthetic pre-training of the baseline and the sequence tied reader",
    models=("attn_bgru_luong", "comp_seq_tied"),
    axes={},
    train={**_COMPOSITIONAL.train, "splice": 0.0},
    reference="attn_bgru_luong",
)
