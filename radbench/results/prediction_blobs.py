"""How a job's test predictions sit in the store: scores as float32 (half of float64; a job's metrics are computed
from these same values, see as_stored, and every metric differs from the float64 scores' by under 1e-6 where no
two scores merge into a tie, tests/test_store_blobs.py), targets and the
sample / patient id lists zlib-compressed (a 25 596 x 14 NIH split: 1.4 MB of 0/1 targets and 0.9 MB of ids per
job become a few tens of KB). Stores written before hold float64 scores, raw float32 targets and JSON id text: read
as they are."""

from __future__ import annotations

import json
import zlib

import numpy as np

MAGIC = b"RBZ1"  # before a compressed blob: raw float32 targets are 0, 1 or NaN and never begin with these bytes
SCORE_DTYPE = np.float32  # what this version writes; as_stored rounds to it, so metrics and the store agree
SCORE_DTYPES = {4: np.float32, 8: np.float64}  # bytes per score: this version, and stores written before it


class DamagedPredictions(ValueError):
    """A predictions blob that does not decode to its recorded shape."""


def as_stored(scores: np.ndarray) -> np.ndarray:
    """Scores at the precision the store keeps them (float32 values, held as float64). A job's metrics are computed
    from these, so that every number recomputed from the stored predictions equals the stored one: rounding to
    float32 can merge nearly equal scores into ties, which moves an AUROC on a small test set."""
    return np.asarray(scores, dtype=SCORE_DTYPE).astype(np.float64)


def pack_scores(scores: np.ndarray) -> bytes:
    return np.ascontiguousarray(scores, dtype=SCORE_DTYPE).tobytes()


def pack_targets(targets: np.ndarray) -> bytes:
    return MAGIC + zlib.compress(np.ascontiguousarray(targets, dtype=np.float32).tobytes(), 6)


def pack_ids(ids) -> bytes:
    return MAGIC + zlib.compress(json.dumps([str(i) for i in ids]).encode(), 6)


def unpack_scores(blob: bytes, shape: tuple) -> np.ndarray:
    """float64 scores (exact float32 values from this version, the float64 ones from earlier stores)."""
    size = int(np.prod(shape))
    dtype = SCORE_DTYPES.get(len(blob) // size if size else 8) if size and len(blob) % size == 0 else None
    if dtype is None:
        raise DamagedPredictions(f"{len(blob)} score bytes for shape {list(shape)}")
    return np.frombuffer(blob, dtype=dtype).reshape(shape).astype(np.float64)


def unpack_targets(blob: bytes, shape: tuple) -> np.ndarray:
    raw = _inflate(blob)
    if len(raw) != 4 * int(np.prod(shape)):
        raise DamagedPredictions(f"{len(raw)} target bytes for shape {list(shape)}")
    return np.frombuffer(raw, dtype=np.float32).reshape(shape)


def unpack_ids(value) -> list[str]:
    """A stored id list: compressed JSON (this version) or JSON text (earlier stores)."""
    return json.loads(_inflate(value) if isinstance(value, bytes) else value)


def plausible(shape: tuple, targets_head: bytes, target_bytes: int, score_bytes: int) -> str:
    """Why a row's blobs cannot hold `shape` ('' when their sizes fit), read from sizes and the targets' first
    bytes without loading the blobs."""
    size = int(np.prod(shape))
    if score_bytes not in (4 * size, 8 * size):
        return f"{score_bytes} score bytes for shape {list(shape)}, {4 * size} expected"
    if bytes(targets_head or b"")[:len(MAGIC)] != MAGIC and target_bytes != 4 * size:
        return f"{target_bytes} target bytes for shape {list(shape)}, {4 * size} expected"
    return ""


def _inflate(blob: bytes) -> bytes:
    if not blob.startswith(MAGIC):
        return blob
    try:
        return zlib.decompress(blob[len(MAGIC):])
    except zlib.error as error:
        raise DamagedPredictions(f"compressed blob unreadable ({error})") from None
