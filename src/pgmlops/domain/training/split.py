"""Deterministic split by row content.

A row's side (train, validation or holdout) follows from a seeded hash of its feature values
alone: rows whose key falls below `test_size` are holdout, the next `validation_size` are
validation. The same row lands on the same side in every dataset it appears in, so when data
grows (retraining with new labelled rows) no model ever trains on a row another model with
the same split settings held out, and identical feature rows never straddle train and holdout.
Class proportions are kept in expectation (each class is split by the same uniform keys);
a class too small to reach every side gets its lowest-key rows moved there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pgmlops.errors import DataError

_UINT64 = float(2**64)


@dataclass(frozen=True)
class Split:
    """Row positions of each part."""

    train: np.ndarray
    validation: np.ndarray
    holdout: np.ndarray


# Every class needs a row in training, validation and holdout.
MIN_CLASS_ROWS = 3


def row_keys(x: pd.DataFrame, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per row, from its feature values and the seed."""
    hashed = pd.util.hash_pandas_object(x, index=False, hash_key=f"pgmlops-{seed % 10**8:08d}")
    return hashed.to_numpy(dtype=np.uint64) / _UINT64


def split_rows(
    x: pd.DataFrame, y: pd.Series, task: str, *, test_size: float, validation_size: float, seed: int
) -> Split:
    """Holdout = keys below test_size; validation = the next validation_size; train = the rest."""
    n = len(y)
    if n < 10:
        raise DataError(f"the dataset has {n} usable rows; training needs at least 10")
    keys = row_keys(x, seed)
    side = np.where(keys < test_size, 2, np.where(keys < test_size + validation_size, 1, 0))
    if task != "regression":
        labels = y.to_numpy()
        for label in pd.unique(labels):
            idx = np.flatnonzero(labels == label)
            if len(idx) < MIN_CLASS_ROWS:
                raise DataError(
                    f"class {label!r} has {len(idx)} row(s); every class needs at least 3 "
                    "(one each for training, validation and holdout)"
                )
            for part in (2, 1, 0):
                sides = side[idx]
                if not (sides == part).any():
                    # Take the lowest-key row from this class's fullest side.
                    fullest = idx[sides == int(np.argmax(np.bincount(sides, minlength=3)))]
                    side[fullest[np.argmin(keys[fullest])]] = part
    return Split(np.flatnonzero(side == 0), np.flatnonzero(side == 1), np.flatnonzero(side == 2))


def on_training_side(
    x: pd.DataFrame, *, test_size: float, validation_size: float, seed: int
) -> np.ndarray:
    """True for rows a model with these split settings would train on if its data held them.

    Only the rare rows moved to fill a class's empty side differ from what the key says.
    """
    return row_keys(x, seed) >= test_size + validation_size
