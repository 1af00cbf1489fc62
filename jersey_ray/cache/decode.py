"""Decoding for the cache build: open an image, letterbox it the reference's way, and turn a
batch of sequences into Parquet rows (the Ray Data ``map_batches`` functions).

Ray workers import this module, so it stays light: no torch, no data layer.

Decoding follows the reference (report-spec 1.6): ``PIL.Image.convert("RGB")`` (grayscale,
palette, CMYK; RGBA/LA lose their alpha), ``s = min(H/h, W/w)``, ``new = int(h*s), int(w*s)``
(at least 1 pixel), PIL bilinear, pasted at ``((H-nh)//2, (W-nw)//2)`` on black. JPEG
``Image.draft`` is *not* used: decoding at 1/2 or 1/4 scale before the resize changed pixels by
up to 2-8 levels (mean 0.2-1.2) against the full decode on test images, so it is not the
reference's preprocessing; the crops of this task are small enough that it rarely applied.
Unusable images raise :class:`FrameError` with a reason (``empty_file``, ``truncated``,
``not_an_image``, ``corrupt``, ``unreadable``, ``too_large``) that the manifest lists.

Row schema: ``frames`` (binary, T*H*W*3 uint8, HWC, letterboxed, only the real selected frames),
``n_frames`` int32, ``tens``/``ones`` int64, ``jersey``/``track``/``seq_id`` string, ``anchor``
int32 (index of the anchor within the stored frames).
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
from PIL import Image, UnidentifiedImageError

COLUMNS = ("frames", "n_frames", "tens", "ones", "jersey", "track", "seq_id", "anchor")
"""The stored columns, in order."""


class FrameError(Exception):
    """An image that cannot be used; ``reason`` is one of the manifest's decode reasons."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def letterbox_geometry(h: int, w: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(new_h, new_w, top, left)`` of an ``h x w`` image letterboxed into ``size`` (H, W).

    The reference's arithmetic (``int(h * s)`` in float), with at least one pixel per side
    where the reference would have failed on an extremely thin image.
    """
    height, width = size
    s = min(height / h, width / w)
    nh, nw = max(1, min(height, int(h * s))), max(1, min(width, int(w * s)))
    return nh, nw, (height - nh) // 2, (width - nw) // 2


def letterbox(img: Image.Image, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """RGB letterbox of ``img`` as uint8 [H, W, 3] (written into ``out``, zeroed, if given)."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    nh, nw, top, left = letterbox_geometry(img.height, img.width, size)
    if (nw, nh) != img.size:  # PIL returns a plain copy for the same size
        img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    if out is None:
        out = np.zeros((*size, 3), np.uint8)
    out[top : top + nh, left : left + nw] = np.asarray(img)
    return out


def decode_frame(path: str, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Open, decode and letterbox one image file; raises :class:`FrameError` if unusable."""
    try:
        if os.path.getsize(path) == 0:
            raise FrameError("empty_file", "0 bytes")
        with Image.open(path) as img:
            img.load()
            return letterbox(img, size, out)
    except FrameError:
        raise
    except UnidentifiedImageError:
        raise FrameError("not_an_image", "PIL cannot identify an image format") from None
    except Image.DecompressionBombError as err:
        raise FrameError("too_large", str(err)) from None
    except (PermissionError, FileNotFoundError, IsADirectoryError) as err:
        raise FrameError("unreadable", err.strerror or type(err).__name__) from None
    except OSError as err:  # decoder errors: "image file is truncated", "broken data stream"
        reason = "truncated" if "truncat" in str(err).lower() else "corrupt"
        raise FrameError(reason, str(err) or type(err).__name__) from None
    except (ValueError, SyntaxError, EOFError) as err:  # PIL's plugins raise these on bad data
        raise FrameError("corrupt", str(err) or type(err).__name__) from None


def decode_batch(table: pa.Table, *, root: str, size: tuple[int, int]) -> pa.Table:
    """Ray Data ``map_batches`` function: sequences (paths) -> rows of letterboxed frames.

    All frames of the batch are decoded into one zeroed buffer that becomes the ``frames``
    column without a copy. Every input row gives an output row; a row with ``n_frames == 0``
    is a dropped sequence (filtered before writing), ``skipped`` lists ``path\\treason\\tdetail``
    of its failed frames.
    """
    height, width = size
    frame_bytes = height * width * 3
    paths = table.column("paths").to_pylist()
    buf = np.zeros((sum(map(len, paths)), height, width, 3), np.uint8)
    offsets, skipped, used = [0], [], 0
    for seq_paths in paths:
        failed = []
        for rel in seq_paths:
            try:
                decode_frame(os.path.join(root, rel), size, buf[used])
                used += 1
            except FrameError as err:
                buf[used] = 0  # a failure may have written part of the frame
                failed.append(f"{rel}\t{err.reason}\t{err.detail}")
        offsets.append(used * frame_bytes)
        skipped.append(failed)
    n = len(paths)
    wide = offsets[-1] > np.iinfo(np.int32).max  # binary offsets are int32: 2 GB per batch
    frames = pa.Array.from_buffers(
        pa.large_binary() if wide else pa.binary(),
        n,
        [
            None,
            pa.py_buffer(np.asarray(offsets, np.int64 if wide else np.int32)),
            pa.py_buffer(buf[:used].reshape(-1)),
        ],
    )
    counts = np.diff(np.asarray(offsets, np.int64)) // frame_bytes
    return pa.table(
        {
            "frames": frames,
            "n_frames": pa.array(counts.astype(np.int32)),
            "tens": table.column("tens").cast(pa.int64()),
            "ones": table.column("ones").cast(pa.int64()),
            "jersey": table.column("jersey"),
            "track": table.column("track"),
            "seq_id": table.column("seq_id"),
            "anchor": pa.array(np.zeros(n, np.int32)),  # selection puts the anchor first
            "split": table.column("split"),
            "skipped": pa.array(skipped, pa.list_(pa.string())),
        }
    )


def keep_split(table: pa.Table, *, split: str) -> pa.Table:
    """``map_batches`` filter: the stored rows of one split, in the stored schema."""
    import pyarrow.compute as pc

    keep = pc.and_(pc.equal(table["split"], split), pc.greater(table["n_frames"], 0))
    table = table.select(list(COLUMNS))
    return table if pc.all(keep).as_py() else table.filter(keep)  # filter copies the frames
