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
from pgmlops.domain.registry.records import PredictionRecord
from pgmlops.errors import NotFoundError
from pgmlops.store.prediction_log.predictions import PredictionStore
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
    # After the deployment by default: shadow coverage counts the shadow mode's time only.
    start = start or datetime.now(UTC)
    records, labels = [], []
    ids: dict[str, list[str]] = {"production": [], "challenger": []}
    for k in range(n):
        at = start + timedelta(milliseconds=10 * k)
        pid, cid = str(uuid.uuid4()), str(uuid.uuid4())

        def row(rid, version, p, role=None, paired=None, latency=5.0, at=at, k=k):
            label = "1" if p >= 0.5 else "0"
            return PredictionRecord(
                rid, "churn", version, at, {"Age": 40}, label, float(p), None, None,
                latency, f"req-{seed}-{k}", f"key-{seed}-{k}", role, paired,
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
    """Misses are production rows of shadow time without a shadow row; a canary between
    two shadow periods (production rows without partners, by design) is not counted."""
    import time

    from sqlalchemy import delete

    from pgmlops.store.tables import PredictionRow

    _two_versions(client, churn_version)
    ids = log_traffic(client, mode="shadow", n=100, labelled=0, production_skill=0.5,
                      challenger_skill=0.5)  # fmt: skip
    time.sleep(1.1)  # past the last logged row (10 ms apart), then the mode changes
    client.deploy("churn", canary="50%")
    log_traffic(client, mode="canary", n=40, labelled=0, production_skill=0.5,
                challenger_skill=0.5, seed=1)  # fmt: skip
    time.sleep(0.5)
    client.deploy("churn", shadow=True)
    log_traffic(client, mode="shadow", n=30, labelled=0, production_skill=0.5,
                challenger_skill=0.5, seed=2)  # fmt: skip
    dropped = [uuid.UUID(i) for i in ids["challenger"][10:30]]
    with client.context.db.session() as s:
        s.execute(delete(PredictionRow).where(PredictionRow.id.in_(dropped)))
    rows = {(v["version"], v["role"]): v for v in client.compare("churn", live=True).versions}
    shadow = rows[(2, "shadow")]
    # The span runs from the first shadow row (the first production row precedes it);
    # the canary's 20 production rows fall outside the shadow periods.
    assert shadow["errors"] == 20 and shadow["error_rate"] == pytest.approx(20 / (99 + 30))
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


def _env(client: Client) -> dict[str, str]:
    return {
        "PGMLOPS_DATABASE_URL": client.settings.database_url,
        "PGMLOPS_ARTIFACT_ROOT": client.settings.artifact_root,
        "PGMLOPS_MODEL_NAME": "churn",
    }


def test_compare_live_on_the_command_line(client, churn_version, tmp_path) -> None:  # noqa: F811
    import json

    from typer.testing import CliRunner

    from pgmlops.cli import app as cli_app

    _two_versions(client, churn_version)
    log_traffic(
        client, mode="shadow", n=400, labelled=300, production_skill=0.2, challenger_skill=0.9
    )
    env, runner = _env(client), CliRunner()
    report = tmp_path / "live.html"
    done = runner.invoke(
        cli_app, ["compare", "-m", "churn", "--live", "--html", str(report)], env=env
    )
    assert done.exit_code == 0, done.output
    assert "production v1 vs challenger v2 (shadow)" in done.stdout
    assert "shadow (paired): records 400, labelled 300" in done.stdout
    assert "agreement:" in done.stdout and "roc_auc gain +" in done.stdout
    assert "the interval excludes 0: challenger is better" in done.stdout
    page = report.read_text()
    assert "<b>paired</b>" in page and "challenger better" in page
    done = runner.invoke(cli_app, ["compare", "--live", "--since", "2h", "--json"], env=env)
    assert done.exit_code == 0, done.output
    body = json.loads(done.stdout)
    assert body["shadow"]["labelled"]["pairing"] == "paired"
    assert body["shadow"]["labelled"]["favours"] == "challenger"
    assert body["canary"] is None and body["since"] is not None
    for args, words in (
        (["--live", "--since", "yesterday"], "--since 'yesterday' is neither an ISO time"),
        (["--live", "--since", "5 parsecs"], "not a duration"),
        (["--live", "--since", "2999-01-01"], "in the future"),
        ([], "compare needs --live"),
        (["--live", "--version", "9"], "9"),
    ):
        done = runner.invoke(cli_app, ["compare", *args], env=env)
        assert done.exit_code != 0
        lines = done.output.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], done.output
        assert "Traceback" not in done.output


def test_the_http_routes_answer_json_and_the_report(client, settings, churn_version) -> None:  # noqa: F811
    from pgmlops.api.app import create_app

    _two_versions(client, churn_version, mode="canary")
    log_traffic(
        client, mode="canary", n=200, labelled=50, production_skill=0.5, challenger_skill=0.5
    )
    with TestClient(create_app(settings)) as http:
        body = http.get("/compare", params={"model_name": "churn"}).json()
        assert body["canary"]["pairing"] == "unpaired"
        # 25 labels a side, one of production's before the canary's span: the smaller side counts.
        assert body["canary"]["records"]["challenger_labelled"] == 25
        assert body["canary"]["labelled"]["note"] == "not enough labels (n=24 < 200)"
        assert body["canary"]["labelled"]["interval"] is None
        page = http.get("/compare/report")
        assert page.status_code == 200 and "<b>unpaired</b>" in page.text
        assert "not enough labels (n=24 &lt; 200)" in page.text
        bad = http.get("/compare", params={"since": "soon"})
        # HTTP answers in the query's own field names, never the command line's flags.
        assert bad.status_code == 400
        assert bad.json()["error"].startswith("since 'soon' is neither an ISO time")
        assert http.get("/compare", params={"model_name": "nope"}).status_code == 404
        client.deploy("churn", stop=True)
        gone = http.get("/compare")
        assert gone.status_code == 404 and "no challenger" in gone.json()["error"]
        assert "give version N" in gone.json()["error"] and "--" not in gone.json()["error"]


# -- live promotion, run by `pgmlops worker` (issue 25 §5) --------------------------------


@pytest.fixture(scope="session")
def weak_churn_version(tmp_path_factory: pytest.TempPathFactory):
    """A churn model fitted on 400 rows: the offline gates let the full model replace it."""
    from pgmlops.services.commands import train_command
    from pgmlops.services.context import Context

    root = tmp_path_factory.mktemp("weak-trained")
    data = root / "churn-small.csv"
    make_churn(400, seed=11).to_csv(data, index=False)
    ctx = Context(
        Settings(
            database_url=f"sqlite:///{root / 'train.db'}",
            artifact_root=str(root / "artifacts"),
            model_name="churn",
        )
    )
    try:
        trained = train_command(
            ctx, data=str(data), target="Exited", model_name="churn", actor="test"
        )
        mv = ctx.registry.get_version("churn", trained["version"])
        return mv.card, {key: ctx.artifacts.get(f) for key, f in mv.files.items()}
    finally:
        ctx.close()


def _better_challenger(client: Client, weak, strong) -> int:
    """Production v1 is the weak model, the shadow challenger v2 the full one."""
    register(client, weak, "churn")
    v2 = _second_version(client, strong)
    client.deploy("churn", v2, shadow=True)
    return v2


def _worker(settings: Settings, **policy: object):
    from pgmlops.domain.live.comparison import LivePolicy
    from pgmlops.services.context import Context
    from pgmlops.services.worker import Worker

    live = LivePolicy(promotion=True, **policy)  # type: ignore[arg-type]
    ctx = Context(settings.model_copy(update={"live": live}))
    said: list[str] = []
    return ctx, Worker(ctx, say=said.append), said


def test_the_worker_promotes_a_challenger_that_wins_live_and_audits_why(
    client,
    settings,
    churn_version,  # noqa: F811
    weak_churn_version,
) -> None:
    v2 = _better_challenger(client, weak_churn_version, churn_version)
    ctx, worker, said = _worker(settings)
    try:
        # Too few labels: the worker waits, nothing moves.
        log_traffic(
            client, mode="shadow", n=300, labelled=150, production_skill=0.2, challenger_skill=0.9
        )
        worker.live_checks(datetime.now(UTC))
        assert said == ["churn: v2 not promoted on live evidence: not enough labels (n=150 < 200)"]
        assert client.context.registry.alias_version("churn", "production") == 1
        assert client.challenger("churn")["version"] == v2
        # Enough labels, the interval excludes 0 for v2, the offline gates approve.
        log_traffic(
            client,
            mode="shadow",
            n=300,
            labelled=300,
            production_skill=0.2,
            challenger_skill=0.9,
            seed=1,
        )
        worker.live_checks(datetime.now(UTC) + timedelta(hours=1))
        assert client.context.registry.alias_version("churn", "production") == v2
        assert client.challenger("churn") is None
        moves = client.history("churn", alias=None)
        promoted, stopped = moves[-2], moves[-1]
        assert (promoted.alias, promoted.action, promoted.new_version) == (
            "production",
            "promote",
            v2,
        )
        assert promoted.reason.startswith(f"live promotion: v{v2} beat v1 on live traffic, roc_auc")
        assert "paired, n=450" in promoted.reason
        assert (stopped.alias, stopped.action, stopped.previous_version) == (
            "challenger",
            "stop",
            v2,
        )
        decision = client.context.registry.promotion_events("churn")[-1]
        evidence = decision.details["evidence"]
        assert decision.decision == "approved" and evidence["pairing"] == "paired"
        assert evidence["production_n"] == 450 and evidence["low"] > 0
    finally:
        ctx.close()


def test_the_worker_leaves_production_alone_without_clear_live_evidence(
    client,
    settings,
    churn_version,  # noqa: F811
) -> None:
    v2 = _two_versions(client, churn_version, mode="canary")
    log_traffic(
        client, mode="canary", n=800, labelled=800, production_skill=0.6, challenger_skill=0.6
    )
    ctx, worker, said = _worker(settings)
    try:
        worker.live_checks(datetime.now(UTC))
    finally:
        ctx.close()
    assert said[0].startswith("churn: v2 not promoted on live evidence: roc_auc gain")
    result = client.compare("churn", live=True)
    low, high = result.canary.labelled["interval"]
    assert low < 0 < high  # equal skills: the unpaired interval straddles 0
    assert client.context.registry.alias_version("churn", "production") == 1
    assert client.challenger("churn")["version"] == v2
    assert client.context.registry.promotion_events("churn") == []
    # Off by default: even clear evidence moves nothing.
    log_traffic(
        client, mode="shadow", n=500, labelled=500, production_skill=0.1, challenger_skill=0.9
    )
    from pgmlops.services.worker import Worker

    Worker(client.context).live_checks(datetime.now(UTC))
    assert client.context.registry.alias_version("churn", "production") == 1


def test_live_evidence_does_not_override_refusing_offline_gates(
    client,
    settings,
    churn_version,  # noqa: F811
) -> None:
    """v2 is v1's artifacts: a tie, which the offline gates refuse whatever the live numbers."""
    v2 = _two_versions(client, churn_version)
    log_traffic(
        client, mode="shadow", n=400, labelled=400, production_skill=0.2, challenger_skill=0.9
    )
    ctx, worker, said = _worker(settings)
    try:
        now = datetime.now(UTC)
        worker.live_checks(now)
        worker.live_checks(now + timedelta(hours=1))  # the same pair: the gates are not asked again
    finally:
        ctx.close()
    assert "the offline gates refuse" in said[0] and "a tie is no improvement" in said[0]
    assert "not asked again" in said[1]
    assert client.context.registry.alias_version("churn", "production") == 1
    assert client.challenger("churn")["version"] == v2
    refusals = client.context.registry.promotion_events("churn")
    assert [e.decision for e in refusals] == ["refused"]
    assert refusals[0].details["evidence"]["favours"] == "challenger"


def test_a_label_sent_by_key_lands_on_the_row_that_answered_not_its_shadow(
    client,
    churn_version,  # noqa: F811
) -> None:
    _two_versions(client, churn_version)
    ids = log_traffic(
        client, mode="shadow", n=5, labelled=0, production_skill=0.5, challenger_skill=0.5
    )
    found = PredictionStore(client.context.db).latest_by_key("churn", ["key-0-3"])
    # The shadow row carries the same key and was logged later; production answered.
    assert found == {"key-0-3": (ids["production"][3], 1)}


@pytest.fixture(scope="session")
def prices_version(tmp_path_factory: pytest.TempPathFactory):
    """A small regression model (prices): its card and artifact bytes."""
    import pandas as pd

    from pgmlops.services.commands import train_command
    from pgmlops.services.context import Context

    root = tmp_path_factory.mktemp("prices-trained")
    rng = np.random.default_rng(4)
    n = 600
    frame = pd.DataFrame(
        {"area": rng.uniform(30, 200, n).round(1), "rooms": rng.integers(1, 7, n).astype(float)}
    )
    frame["price"] = frame["area"] * 3.0 + frame["rooms"] * 10 + rng.normal(0, 5, n)
    frame.to_csv(root / "prices.csv", index=False)
    ctx = Context(
        Settings(
            database_url=f"sqlite:///{root / 'train.db'}",
            artifact_root=str(root / "artifacts"),
            model_name="prices",
        )
    )
    try:
        trained = train_command(
            ctx, data=str(root / "prices.csv"), target="price", model_name="prices", actor="t"
        )
        mv = ctx.registry.get_version("prices", trained["version"])
        return mv.card, {key: ctx.artifacts.get(f) for key, f in mv.files.items()}
    finally:
        ctx.close()


def test_regression_shadow_traffic_is_compared_by_mean_absolute_difference_and_rmse(
    client,
    prices_version,
) -> None:
    card, blobs = prices_version
    register(client, prices_version, "prices")
    ctx = client.context
    files = {key: ctx.artifacts.put(data) for key, data in blobs.items()}
    sign = lambda number, fs: ctx.artifacts.sign_files("prices", number, fs)  # noqa: E731
    v2 = ctx.registry.create_version("prices", files, card, "t", sign=sign).version
    client.deploy("prices", v2, shadow=True)
    rng = np.random.default_rng(9)
    n = 300
    truth = rng.uniform(100, 600, n)
    first, second = truth + rng.normal(0, 20, n), truth + rng.normal(0, 2, n)
    start = datetime.now(UTC) - timedelta(hours=1)
    records, labels = [], []
    for k in range(n):
        pid, sid, at = str(uuid.uuid4()), str(uuid.uuid4()), start + timedelta(milliseconds=k)
        a, b = repr(float(first[k])), repr(float(second[k]))
        records += [
            PredictionRecord(pid, "prices", 1, at, {}, a, None, None, None, 3.0, None),
            PredictionRecord(
                sid, "prices", v2, at, {}, b, None, None, None, 3.0, None, None, "shadow", pid
            ),
        ]
        labels.append((sid if k % 3 == 0 else pid, repr(float(truth[k]))))
    store = PredictionStore(ctx.db)
    store.write_batch(records)
    store.add_feedback(labels)
    result = client.compare("prices", live=True)
    assert result.task == "regression" and result.primary_metric == "rmse"
    shadow = result.shadow
    assert shadow.agreement is None
    assert shadow.mean_abs_difference == pytest.approx(np.mean(np.abs(first - second)))
    assert "deciles" in shadow.score_distance["basis"]
    gain = shadow.labelled
    assert gain["pairing"] == "paired" and gain["production_n"] == n  # labels on either row
    assert gain["production_value"] == pytest.approx(np.sqrt(np.mean((first - truth) ** 2)))
    assert gain["gain"] > 0 and gain["favours"] == "challenger"  # lower rmse is the gain
    rows = {(v["version"], v["role"]): v for v in result.versions}
    assert rows[(1, "production")]["requests"] is None  # no request ids were logged
