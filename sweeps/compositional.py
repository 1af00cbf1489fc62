"""Compositional readers: do the ``comp_`` models read two-digit numbers never seen in training
(issue 20), and what does each part buy?

On the held-out split (every track of the held-out numbers in ``unseen``; chosen by the fair
rule of ``jersey_ray.data.split``: each digit seen in place in >= 2 other two-digit training
numbers with >= 20 training sequences), 3 seeds:

- ``attn_bgru_luong``: the best existing baseline (ResNet-18, BiGRU, attention, pooled heads);
- ``comp_pooled``: the readers' own small width-keeping CNN with the study's pooled tens/ones
  heads, so the table separates what the reader buys from what the backbone buys;
- ``comp_tied`` (position-tied digit reader), ``comp_ctc`` (CTC over the map's columns) and
  ``comp_seq_tied`` (the tied reader over every frame of a sequence);
- every model with and without the digit splice (``splice``: 0.0 off, 0.5 half the two-digit
  training sequences of a batch spliced; ``jersey_ray.cache.splice``), so the table has each
  reader alone, the splice alone (on the baselines) and their combination. The runner's axes
  apply to every model, so the baselines run with the splice too: it says whether the
  technique alone fixes the study's heads.

The table (``python -m jersey_ray.results`` after the run) compares every configuration with
the baseline without splice: seen test acc_number (paired bootstrap over the test tracks, Holm)
and unseen acc_number (paired bootstrap over the unseen tracks, Holm), each held-out number
with its in-place coverage and its accuracy per model.

Data: real crops with ``--data`` (e.g. ``--data data/soccernet``: 32x32, 4 frames, as
``sweeps/soccernet.py``); without it, the built-in synthetic numbers 0-99 as number-region
crops like the real ones (30 tracks each; broadcast quality: blur, noise, JPEG; ``--quick``:
clean). ``--quick``: one seed, 3 epochs at 32x32, 3 frames (the preset).

Synthetic-to-real is two sweeps of this protocol, reduced to the baseline and
``comp_seq_tied``: ``sweeps/synth_pretrain.py`` (stage 1, on the built-in numbers, run once
WITHOUT the real data's held-out numbers and once over ALL 00-99) and ``sweeps/synth_to_real.py``
(stage 2, the real crops from scratch and from each stage-1 run, one grid); their docstrings
give the commands. ``pretrained`` may name any run of this project: each model then starts from
its own trial chosen on validation there (``jersey_ray.models.warmstart``), and the table marks
each row that started from renders of the held-out numbers (``Saw renders``).

Budget: real crops at 8 epochs, 10 configurations x 3 seeds is a few CPU hours (the ResNet-18
baseline dominates); split it across sessions with ``--resume``, or prune the grid
(``--models``) with what ``--quick`` showed, and state the reduction beside the table.
"""

from jersey_ray.config import DEFAULT_SIZE, SweepSpec

SWEEP = SweepSpec(
    name="compositional",
    phase="compositional",
    description="Compositional readers and digit splice on held-out two-digit numbers",
    models=("attn_bgru_luong", "comp_pooled", "comp_tied", "comp_ctc", "comp_seq_tied"),
    axes={"splice": (0.0, 0.5)},
    data={"size": (32, 32), "max_frames": 4, "split": "heldout"},
    train={
        "pretrained": "none",
        "batch_size": 64,
        "lr": 3e-3,
        "lr_backbone": 1e-3,
        "lr_temporal": 3e-3,
        "lr_heads": 3e-3,
        "epochs": 8,
    },
    seeds=(42, 123, 456),
    synth={
        # every number 0-99, 30 tracks each: every digit in place in many numbers (fair)
        "numbers": tuple(str(n) for n in range(100)),
        "imbalance": 0.0,
        "sequences": 3000,
        "sequences_per_track": 1.0,
        # the number region cut from a player scene of the report's size, as the real crops
        # (a whole player letterboxed to 32x32 leaves the digits a few pixels high)
        "crop": "number",
        "size": DEFAULT_SIZE,
    },
    reference="attn_bgru_luong/splice=0.0",
)
