"""How much a reference drawn as whole clusters of repeated rows really knows.

The split hashes feature values, so every copy of a feature vector lands on the same side and
a reference (training rows for feature drift, holdout outputs for prediction drift) is a
sample of clusters, not of rows. Rows of one cluster are identical, so any statistic of the
features (or of the model's output on them) moves with the cluster as a whole. For a mean
over a cluster sample the variance grows by Kish's design effect deff = sum(c^2) / sum(c)
over the cluster sizes c (intra-cluster correlation 1). The reference is a share s of the
training data drawn without replacement, so only (1 - s) of that extra variance is sampling
error relative to the training data's own mix, which the monitored traffic is assumed to
repeat: Var_ref = sigma^2 (s + (1 - s) deff) / n_ref. docs/monitoring.md gives the reasoning.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field


class SampleDesign(BaseModel):
    """How a reference was drawn: the design effect of its repeated rows and its share."""

    deff: float = Field(
        1.0, ge=1.0, description="sum(c^2)/sum(c) over the reference's feature-vector counts c"
    )
    share: float = Field(
        1.0, gt=0.0, le=1.0, description="the reference's share of the training data's rows"
    )
    distinct: int | None = Field(None, description="distinct feature vectors in the reference")

    @property
    def inflation(self) -> float:
        """Variance of a reference statistic over that of as many independent rows."""
        return self.share + (1.0 - self.share) * self.deff


def cluster_sizes(x: pd.DataFrame) -> np.ndarray:
    """How many rows repeat each distinct feature vector (row order and index ignored)."""
    if len(x) == 0:
        return np.zeros(0, dtype=np.int64)
    hashed = pd.util.hash_pandas_object(x, index=False).to_numpy(dtype=np.uint64)
    return np.unique(hashed, return_counts=True)[1]


def sample_design(x: pd.DataFrame, total_rows: int) -> SampleDesign:
    """The design of reference rows ``x`` taken, as whole clusters, from ``total_rows``."""
    counts = cluster_sizes(x).astype(np.float64)
    deff = float(np.sum(counts**2) / np.sum(counts)) if counts.size else 1.0
    share = min(1.0, len(x) / total_rows) if total_rows and len(x) else 1.0
    return SampleDesign(deff=max(deff, 1.0), share=share, distinct=int(counts.size))


def reference_rows(n_ref: float, inflation: float) -> float:
    """The number of independent rows a reference of ``n_ref`` rows is worth."""
    return n_ref / max(inflation, 1.0)


def pair_rows(n_ref: float, n_cur: float, inflation: float = 1.0) -> float:
    """n_ref' * n_cur / (n_ref' + n_cur) with the reference at its effective size n_ref'."""
    ref = reference_rows(n_ref, inflation)
    return ref * n_cur / (ref + n_cur) if ref + n_cur else 0.0
