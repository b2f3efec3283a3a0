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

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

# Which rows, scored how, make prediction drift's reference (docs/monitoring.md).
OutputRows = Literal["served", "held_out", "out_of_fold"]


class SampleDesign(BaseModel):
    """How a reference was drawn: the design effect of its repeated rows and its share."""

    deff: float = Field(
        1.0, ge=1.0, description="sum(c^2)/sum(c) over the reference's feature-vector counts c"
    )
    share: float = Field(
        1.0, gt=0.0, le=1.0, description="the reference's share of the training data's rows"
    )
    distinct: int | None = Field(None, description="distinct feature vectors in the reference")
    rows: OutputRows | None = Field(
        None,
        description="outputs only: every labelled row's output as traffic would be served it "
        "(served), the held-out rows' alone (held_out), or every labelled row's out-of-fold "
        "output (out_of_fold); None: a version trained before this was recorded: held-out rows",
    )

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


def repeated_rows(x: pd.DataFrame) -> np.ndarray:
    """True for each row whose feature vector appears more than once in ``x``."""
    if len(x) == 0:
        return np.zeros(0, dtype=bool)
    hashed = pd.util.hash_pandas_object(x, index=False).to_numpy(dtype=np.uint64)
    _, inverse, counts = np.unique(hashed, return_inverse=True, return_counts=True)
    return counts[inverse.ravel()] > 1


def cluster_labels(x: np.ndarray) -> np.ndarray:
    """For each row of a numeric matrix, the index of its distinct row (its cluster)."""
    if len(x) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(x, axis=0, return_inverse=True)[1].ravel().astype(np.int64)


def cluster_half(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random mask that puts every cluster, on whichever side its rows are, in one half.

    Each distinct row goes to the first half with probability 1/2, independently of which
    rows a reference happened to draw, so the halves of a cluster-sampled reference are
    independent samples (halving only the reference's own clusters would make them
    complements, and a model fitted on one would find the other unlike the population).
    """
    if len(labels) == 0:
        return np.zeros(0, dtype=bool)
    return rng.random(int(labels.max()) + 1)[labels] < 0.5


def labelled_design(labels: np.ndarray, share: float | None) -> SampleDesign:
    """The design of rows whose clusters are ``labels``, drawn as ``share`` of the data.

    ``share`` None (a reference that never recorded it) counts the whole design effect,
    the conservative side.
    """
    counts = np.bincount(labels).astype(np.float64)
    counts = counts[counts > 0]
    deff = float(np.sum(counts**2) / np.sum(counts)) if counts.size else 1.0
    return SampleDesign(deff=max(deff, 1.0), share=share or 1e-9, distinct=int(counts.size))


def sample_design(x: pd.DataFrame, total_rows: int) -> SampleDesign:
    """The design of reference rows ``x`` taken, as whole clusters, from ``total_rows``."""
    counts = cluster_sizes(x).astype(np.float64)
    return counted_design(len(x), float(np.sum(counts**2)), int(counts.size), total_rows)


def counted_design(rows: int, squares: float, distinct: int, total_rows: int) -> SampleDesign:
    """The design of ``rows`` reference rows in ``distinct`` clusters with sum(c^2) ``squares``.

    The sums alone, so rows counted where they live (a Dask cluster's partitions) need not
    come to one process; taken, as whole clusters, from ``total_rows``.
    """
    deff = squares / rows if rows else 1.0
    share = min(1.0, rows / total_rows) if total_rows and rows else 1.0
    return SampleDesign(deff=max(deff, 1.0), share=share, distinct=distinct)


def output_reference_note(design: SampleDesign | None) -> str | None:
    """What monitoring says when a version predates out-of-fold output references."""
    if design is not None and design.rows is not None:
        return None
    return (
        "outputs compared with the held-out rows' alone (a version trained before "
        "out-of-fold output references; on repeated rows they are few clusters and prediction "
        "drift has little power): retrain for a reference of every labelled row"
    )


def reference_rows(n_ref: float, inflation: float) -> float:
    """The number of independent rows a reference of ``n_ref`` rows is worth."""
    return n_ref / max(inflation, 1.0)


def pair_rows(n_ref: float, n_cur: float, inflation: float = 1.0) -> float:
    """n_ref' * n_cur / (n_ref' + n_cur) with the reference at its effective size n_ref'."""
    ref = reference_rows(n_ref, inflation)
    return ref * n_cur / (ref + n_cur) if ref + n_cur else 0.0
