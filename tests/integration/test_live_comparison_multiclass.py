"""Live comparison of a 3-class model (issue 25 §4), on both databases.

A real iris model is trained and registered twice (production and a shadow challenger);
shadow traffic is logged by the log's own store with the outputs of two simulated 3-class
scorers of known skill, labels arrive as feedback. Agreement and the paired interval of the
primary metric (macro F1) must match what is computed here from the same rows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from pgmlops import Client
from pgmlops.config import Settings
from pgmlops.domain.registry.records import PRODUCTION, PredictionRecord
from pgmlops.services.commands import train_command
from pgmlops.store.prediction_log.predictions import PredictionStore

CLASSES = ["setosa", "versicolor", "virginica"]


@pytest.fixture
def client(settings: Settings):
    with Client(settings=settings) as c:
        yield c


def _iris_in_shadow(client: Client, tmp_path: Path) -> tuple[int, int]:
    """Train iris (v1, production) and register its artifacts again as v2, in shadow."""
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame.rename(columns={"target": "species"})
    frame["species"] = frame["species"].map(dict(enumerate(CLASSES)))
    path = tmp_path / "iris.csv"
    frame.to_csv(path, index=False)
    ctx = client.context
    v1 = train_command(ctx, data=str(path), target="species", model_name="iris", actor="t")[
        "version"
    ]
    ctx.registry.move_alias(
        "iris",
        PRODUCTION,
        new_version=v1,
        expected_version=None,
        action="promote",
        actor="t",
        reason=None,
    )
    mv = ctx.registry.get_version("iris", v1)
    files = {key: ctx.artifacts.put(ctx.artifacts.get(f)) for key, f in mv.files.items()}
    sign = lambda number, fs: ctx.artifacts.sign_files("iris", number, fs)  # noqa: E731
    v2 = ctx.registry.create_version("iris", files, mv.card, "t", sign=sign).version
    client.deploy("iris", v2, shadow=True)
    return v1, v2


def _scorer(truth: np.ndarray, skill: float, rng: np.random.Generator) -> np.ndarray:
    """Class probabilities that favour the true class by `skill` (0: noise only)."""
    logits = 3.0 * skill * np.eye(len(CLASSES))[truth] + rng.normal(0, 1.0, (len(truth), 3))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _log_shadow(
    client: Client, v1: int, v2: int, *, n: int, labelled: int, skills: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n shadowed records (v2's row paired to v1's), the first `labelled` with a label."""
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, n)
    probs = [_scorer(truth, skill, rng) for skill in skills]
    start = datetime.now(UTC)
    records, labels = [], []
    for k in range(n):
        at = start + timedelta(milliseconds=10 * k)
        pid = str(uuid.uuid4())
        for version, p, role, paired in ((v1, probs[0], None, None), (v2, probs[1], "shadow", pid)):
            rid = pid if role is None else str(uuid.uuid4())
            records.append(
                PredictionRecord(
                    rid,
                    "iris",
                    version,
                    at + timedelta(microseconds=10 if role else 0),
                    {"sepal length (cm)": 5.0},
                    CLASSES[int(p[k].argmax())],
                    None,
                    float(p[k].max()),
                    {"probabilities": dict(zip(CLASSES, p[k].tolist(), strict=True))},
                    5.0,
                    f"req-{k}",
                    None,
                    role,
                    paired,
                )
            )
        if k < labelled:
            labels.append((pid, CLASSES[truth[k]]))
    store = PredictionStore(client.context.db)
    store.write_batch(records)
    store.add_feedback(labels)
    predicted = [np.array(CLASSES)[p.argmax(axis=1)] for p in probs]
    return np.array(CLASSES)[truth], predicted[0], predicted[1]


def test_a_better_three_class_challenger_wins_its_paired_macro_f1_interval(
    client, tmp_path: Path
) -> None:
    v1, v2 = _iris_in_shadow(client, tmp_path)
    truth, p1, p2 = _log_shadow(client, v1, v2, n=600, labelled=400, skills=(0.3, 1.0))
    result = client.compare("iris", live=True)
    assert result.task == "multiclass" and result.primary_metric == "f1_macro"
    assert (result.production_version, result.challenger_version) == (v1, v2)
    shadow = result.shadow
    assert shadow is not None and shadow.pairing == "paired"
    assert shadow.records == {"records": 600, "labelled": 400}
    assert shadow.agreement == pytest.approx(float(np.mean(p1 == p2)))
    assert 0.3 < shadow.agreement < 0.9
    gain = shadow.labelled
    assert gain["metric"] == "f1_macro" and gain["pairing"] == "paired"
    assert gain["production_n"] == gain["challenger_n"] == 400
    f1 = lambda p: f1_score(truth[:400], p[:400], average="macro")  # noqa: E731
    assert gain["production_value"] == pytest.approx(f1(p1))
    assert gain["challenger_value"] == pytest.approx(f1(p2))
    assert gain["interval"][0] > 0 and gain["favours"] == "challenger"
    assert gain["low"] <= gain["gain"] <= gain["high"]
    assert gain["gain"] == pytest.approx(f1(p2) - f1(p1))


def test_a_three_class_challenger_that_answers_the_same_neither_wins_nor_loses(
    client, tmp_path: Path
) -> None:
    v1, v2 = _iris_in_shadow(client, tmp_path)
    _log_shadow(client, v1, v2, n=400, labelled=300, skills=(0.8, 0.8))
    shadow = client.compare("iris", live=True).shadow
    assert shadow is not None
    gain = shadow.labelled
    # Two scorers of equal skill, drawn independently: they disagree on some records, and
    # the paired interval of their macro F1 difference holds 0.
    assert gain["interval"][0] <= 0 <= gain["interval"][1]
    assert gain["favours"] not in ("challenger", "production")
    assert shadow.score_distance is not None and shadow.score_distance["js_distance"] < 0.1
