"""The data layer: index a root in the reference layout, split it, import real data.

``python -m jersey_ray.data summary ROOT`` and ``... import-soccernet SRC OUT`` are its CLI.
"""

from jersey_ray.data.index import (
    DataError,
    Index,
    Sequence,
    Skip,
    index_root,
    natural_key,
    parse_label,
    select_frames,
)
from jersey_ray.data.split import SPLITS, split_counts, split_tracks

__all__ = [
    "SPLITS",
    "DataError",
    "Index",
    "Sequence",
    "Skip",
    "index_root",
    "natural_key",
    "parse_label",
    "select_frames",
    "split_counts",
    "split_tracks",
]
