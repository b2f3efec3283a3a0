"""The training rows' design effect (domain/monitoring/design_effect.py), counted on the cluster.

Each partition's feature rows are hashed as design_effect.cluster_sizes hashes a local frame;
Dask's value_counts adds each hash's rows across partitions into hash-partitioned output
(split_out: no one task holds every distinct vector), and each output partition is reduced to
three integers (rows, sum(c^2), distinct vectors) before anything leaves the cluster. Integer
sums, so the design is the one a local run computes from the same rows, bit for bit.
"""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from pgmlops.domain.monitoring.design_effect import SampleDesign, counted_design


def _hashes(frame: pd.DataFrame) -> pd.Series:
    return pd.Series(pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64))


def _sums(sizes: pd.Series) -> np.ndarray:
    c = sizes.to_numpy(dtype=np.int64)
    return np.array([c.sum(), np.square(c).sum(), len(c)], dtype=np.int64)


def counted_feature_design(rows: dd.DataFrame, total_rows: int) -> SampleDesign:
    """The design of feature rows ``rows`` (every column a feature) taken from ``total_rows``."""
    hashes = rows.map_partitions(_hashes, meta=pd.Series(dtype=np.uint64))
    # A task shuffle: the P2P one logs warnings a training run would print.
    with dask.config.set({"dataframe.shuffle.method": "tasks"}):
        sizes = hashes.value_counts(split_out=max(1, rows.npartitions))
        parts = dask.compute(*[dask.delayed(_sums)(p) for p in sizes.to_delayed()])
    n, squares, distinct = (int(v) for v in np.sum(parts, axis=0))
    return counted_design(n, float(squares), distinct, total_rows)
