"""The domain classifier on a reference of repeated rows: quiet on its population, alert to a shift.

Panel data repeats a person's feature vector many times, and the training split hashes
feature values, so the reference keeps whole clusters of identical rows (design_effect.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pgmlops.domain.monitoring.design_effect import cluster_half, cluster_labels
from pgmlops.domain.monitoring.multivariate import domain_classifier

NUMERIC = [f"x{i}" for i in range(6)]


def _population(rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """500 people (six rounded numbers and a category), each seen about 10 times."""
    people = pd.DataFrame({name: rng.normal(size=500).round(2) for name in NUMERIC})
    people["g"] = rng.choice(["a", "b", "c", "d"], size=500, p=[0.4, 0.3, 0.2, 0.1])
    cluster = np.repeat(np.arange(500), 1 + rng.poisson(9, 500))
    return people.iloc[cluster].reset_index(drop=True), cluster


def _trial(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """Reference: the people a hash sends to training (60%); window: any 2,000 rows."""
    rng = np.random.default_rng(seed)
    data, cluster = _population(rng)
    kept = rng.random(500)[cluster] < 0.6
    window = data.iloc[rng.choice(len(data), size=2_000)].reset_index(drop=True)
    return data[kept].reset_index(drop=True), window, float(kept.mean())


def test_copies_of_a_row_fall_in_one_half_whichever_side_they_are_on() -> None:
    ref, window, _ = _trial(0)
    rows = np.vstack([ref.drop(columns="g").to_numpy(), window.drop(columns="g").to_numpy()])
    labels = cluster_labels(rows)
    half = cluster_half(labels, np.random.default_rng(1))
    assert len(np.unique(labels)) < len(rows) / 5
    for label in np.unique(labels):
        assert len(set(half[labels == label])) == 1
    assert 0.3 < half.mean() < 0.7


def test_the_domain_classifier_holds_its_level_on_a_clustered_reference_and_sees_a_shift() -> None:
    trials, quiet_alarms, detections = 30, 0, 0
    for seed in range(trials):
        ref, window, share = _trial(seed)
        same = domain_classifier(ref, window, NUMERIC, ["g"], alpha=0.01, seed=seed, share=share)
        quiet_alarms += same.drifted
        moved = window.assign(**{name: window[name] + 0.4 for name in NUMERIC[:4]})
        shifted = domain_classifier(ref, moved, NUMERIC, ["g"], alpha=0.01, seed=seed, share=share)
        detections += shifted.drifted
    # Split by rows, a model fitted on one half of the reference finds its copies in the
    # other: 8 of these 30 windows alarmed at alpha 0.01 before the split kept copies together.
    assert quiet_alarms <= 2
    assert detections >= trials - 3
