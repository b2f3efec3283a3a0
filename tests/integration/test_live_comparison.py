"""Live comparison (issue 25 §4): production against its challenger on logged traffic.

Traffic is logged two ways: through the real app (shadow pairs, canary rows) and, where the
test needs a challenger of known quality, as prediction rows written by the log's own store
with the outputs of two simulated scorers of known skill. Labels arrive as feedback.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pgmlops import Client
from pgmlops.config import Settings
from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.records import PredictionRecord
from pgmlops.errors import NotFoundError
from pgmlops.store.predictions import PredictionStore
from tests.integration.test_live_deployments import _logged, _second_version
from tests.integration.test_python_api import churn_version, register  # noqa: F401


@pytest.fixture
def client(settings: Settings):
    with Client(settings=settings) as c:
        yield c


def _scorer(truth: np.ndarray, skill: float, rng: np.random.Generator) -> np.ndarray:
    """P(positive) that separates the classes by `skill` (0: coin flip), with noise."""
    return np.clip(0.5 + skill * (truth - 0.5) + rng.normal(0, 0.25, len(truth)), 0.0, 1.0)


def log_traffic(
    client: Client,
    *,
    mode: str,
    n: int,
    labelled: int,
    production_skill: float,
    challenger_skill: float,
    seed: int = 0,
    start: datetime | None = None,
) -> dict[str, list[str]]:
    """Log `n` records of live traffic for churn v1 (production) and v2 (challenger).

    shadow: every record scored by both, the v2 row paired to the v1 row; canary: every
    record answered by one version (alternately). The first `labelled` records get labels.
    """
    rng = np.random.default_rng(seed)
    truth = (rng.random(n) < 0.3).astype(int)
    p1 = _scorer(truth, production_skill, rng)
    p2 = _scorer(truth, challenger_skill, rng)
    start = start or datetime.now(UTC) - timedelta(hours=1)
    records, labels = [], []
    ids: dict[str, list[str]] = {"production": [], "challenger": []}
    for k in range(n):
        at = start + timedelta(milliseconds=10 * k)
        pid, cid = str(uuid.uuid4()), str(uuid.uuid4())

        def row(rid, version, p, role=None, paired=None, latency=5.0, at=at, k=k):
            label = "1" if p >= 0.5 else "0"
            return PredictionRecord(
                rid, "churn", version, at, {"Age": 40}, label, float(p), None, None,
                latency, f"req-{seed}-{k}", None, role, paired,
            )  # fmt: skip

        if mode == "shadow":
            records.append(row(pid, 1, p1[k], latency=4.0 + k % 5))
            records.append(row(cid, 2, p2[k], "shadow", pid, 20.0, at + timedelta(microseconds=10)))
            ids["production"].append(pid)
            ids["challenger"].append(cid)
            if k < labelled:
                labels.append((pid, str(truth[k])))
        elif k % 2:
            records.append(row(cid, 2, p2[k], "canary", latency=9.0))
            ids["challenger"].append(cid)
            if k < labelled:
                labels.append((cid, str(truth[k])))
        else:
            records.append(row(pid, 1, p1[k]))
            ids["production"].append(pid)
            if k < labelled:
                labels.append((pid, str(truth[k])))
    store = PredictionStore(client.context.db)
    store.write_batch(records)
    if labels:
        store.add_feedback(labels)
    return ids


def _two_versions(client: Client, trained, mode: str = "shadow") -> int:
    register(client, trained, "churn")
    v2 = _second_version(client, trained)
    if mode == "shadow":
        client.deploy("churn", v2, shadow=True)
    else:
        client.deploy("churn", v2, canary="50%")
    return v2


def test_shadow_traffic_of_the_real_app_agrees_with_itself(client, settings, churn_version) -> None:  # noqa: F811
    """v2 is v1's artifacts: every shadowed record agrees, the distributions coincide."""
    from pgmlops.api.app import create_app

    _two_versions(client, churn_version)
    records = make_churn(30, seed=4).drop(columns=["Exited"]).to_dict("records")
    with TestClient(create_app(settings)) as http:
        answers = [http.post("/predict", json=r).json() for r in records]
        _logged(client, 60)
        http.post(
            "/feedback",
            json=[{"prediction_id": a["prediction_id"], "label": "1"} for a in answers[:10]],
        )
    result = client.compare("churn", live=True)
    assert (result.production_version, result.challenger_version) == (1, 2)
    assert result.deployment == "shadow"
    rows = {(v["version"], v["role"]): v for v in result.versions}
    assert rows[(1, "production")]["rows"] == 30 and rows[(2, "shadow")]["rows"] == 30
    assert rows[(2, "shadow")]["errors"] == 0 and rows[(2, "shadow")]["error_rate"] == 0.0
    assert rows[(1, "production")]["p99_latency_ms"] >= rows[(1, "production")]["p50_latency_ms"]
    assert result.shadow is not None and result.shadow.agreement == 1.0
    assert result.shadow.score_distance["js_distance"] == pytest.approx(0.0, abs=1e-9)
    assert result.shadow.records == {"records": 30, "labelled": 10}
    assert result.shadow.labelled["interval"] is None
    assert result.shadow.labelled["note"] == "not enough labels (n=10 < 200)"
    assert result.canary is None


def test_a_clearly_better_shadow_challenger_wins_a_paired_interval(client, churn_version) -> None:  # noqa: F811
    _two_versions(client, churn_version)
    log_traffic(
        client, mode="shadow", n=600, labelled=400, production_skill=0.2, challenger_skill=0.9
    )
    result = client.compare("churn", live=True)
    shadow = result.shadow
    assert shadow is not None and shadow.pairing == "paired"
    gain = shadow.labelled
    assert gain["pairing"] == "paired" and gain["metric"] == "roc_auc"
    assert gain["production_n"] == gain["challenger_n"] == 400
    assert gain["interval"][0] > 0 and gain["favours"] == "challenger"
    assert gain["low"] <= gain["gain"] <= gain["high"]
    assert gain["challenger_value"] > gain["production_value"]
    assert 0.5 < shadow.agreement < 1.0
    assert shadow.score_distance["js_distance"] > 0.05
    rows = {(v["version"], v["role"]): v for v in result.versions}
    assert rows[(2, "shadow")]["p50_latency_ms"] == pytest.approx(20.0)
    assert rows[(1, "production")]["p50_latency_ms"] == pytest.approx(6.0)
    assert rows[(1, "production")]["requests"] == 600


def test_paired_interval_is_narrower_than_unpaired_on_the_same_labels(
    client,
    churn_version,  # noqa: F811
) -> None:
    """Canary traffic is compared unpaired, and says so; same skills, a wider interval."""
    _two_versions(client, churn_version, mode="canary")
    log_traffic(
        client, mode="canary", n=1200, labelled=1200, production_skill=0.5, challenger_skill=0.6
    )
    start = datetime.now(UTC) - timedelta(hours=3)
    log_traffic(
        client,
        mode="shadow",
        n=600,
        labelled=600,
        production_skill=0.5,
        challenger_skill=0.6,
        start=start,
    )
    result = client.compare("churn", live=True)
    canary, shadow = result.canary, result.shadow
    assert canary is not None and canary.pairing == "unpaired"
    assert canary.labelled["pairing"] == "unpaired"
    # Production's rows of the canary's span: the first record (production's) precedes it.
    assert canary.records["production"] == 599 and canary.records["challenger"] == 600
    assert canary.agreement is None  # different records: no agreement to speak of
    width = lambda g: g["high"] - g["low"]  # noqa: E731
    assert shadow is not None and width(shadow.labelled) < width(canary.labelled)
    assert result.deployment == "canary 50%"


def test_a_shadow_that_missed_records_counts_them_as_errors(client, churn_version) -> None:  # noqa: F811
    _two_versions(client, churn_version)
    ids = log_traffic(client, mode="shadow", n=100, labelled=0, production_skill=0.5,
                      challenger_skill=0.5)  # fmt: skip
    from sqlalchemy import delete

    from pgmlops.store.tables import PredictionRow

    dropped = [uuid.UUID(i) for i in ids["challenger"][10:30]]
    with client.context.db.session() as s:
        s.execute(delete(PredictionRow).where(PredictionRow.id.in_(dropped)))
    rows = {(v["version"], v["role"]): v for v in client.compare("churn", live=True).versions}
    shadow = rows[(2, "shadow")]
    # The span runs from the first shadow row: the first production row precedes it.
    assert shadow["errors"] == 20 and shadow["error_rate"] == pytest.approx(20 / 99)
    assert "no shadow row" in shadow["error_basis"]
    assert rows[(1, "production")]["error_rate"] is None


def test_since_limits_the_window_and_a_missing_challenger_is_one_line(
    client,
    churn_version,  # noqa: F811
) -> None:
    v2 = _two_versions(client, churn_version)
    log_traffic(client, mode="shadow", n=50, labelled=0, production_skill=0.5,
                challenger_skill=0.5, start=datetime.now(UTC) - timedelta(days=3))  # fmt: skip
    log_traffic(client, mode="shadow", n=20, labelled=0, production_skill=0.5,
                challenger_skill=0.5, seed=1)  # fmt: skip
    result = client.compare("churn", live=True, since="24h")
    assert result.shadow.records["records"] == 20
    assert client.compare("churn", live=True).shadow.records["records"] == 70
    client.deploy("churn", stop=True)
    with pytest.raises(NotFoundError, match="no challenger deployed"):
        client.compare("churn", live=True)
    assert client.compare("churn", live=True, version=v2).shadow.records["records"] == 70
