"""`pgmlops predict --canary` (issue 25 §3): batch rows split between production and the
challenger by /predict's own rule, each output row and log row saying who answered it."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from pgmlops import Client
from pgmlops.config import Settings
from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.live.modes import sticky_bucket
from pgmlops.errors import ConfigError
from pgmlops.services.batch import BatchRequest, run_batch_predict
from pgmlops.store.tables import PredictionRow
from tests.integration.test_python_api import churn_version, register  # noqa: F401

ACTOR = "test"


@pytest.fixture
def client(settings: Settings):
    with Client(settings=settings) as c:
        yield c


def _second_version(client: Client, trained) -> int:
    card, blobs = trained
    ctx = client.context
    files = {key: ctx.artifacts.put(data) for key, data in blobs.items()}
    sign = lambda number, fs: ctx.artifacts.sign_files("churn", number, fs)  # noqa: E731
    return ctx.registry.create_version("churn", files, card, ACTOR, sign=sign).version


def _score(client: Client, data: Path, out: Path, **kw) -> tuple[pd.DataFrame, dict]:
    req = BatchRequest(data=str(data), out=str(out), model_name="churn", canary=True, **kw)
    summary = run_batch_predict(client.context, req)
    return pd.read_parquet(out), summary.to_dict()


def _roles_logged(client: Client, request_id: str) -> dict[str, tuple[int, str | None]]:
    with client.context.db.session() as s:
        rows = s.execute(
            select(PredictionRow.id, PredictionRow.version, PredictionRow.role).where(
                PredictionRow.request_id == request_id
            )
        )
        return {str(r.id): (r.version, r.role) for r in rows}


def _within_binomial(k: int, n: int, p: float) -> bool:
    """k within 5 standard deviations of n*p: a false alarm about once in 3.5 million runs."""
    return abs(k - n * p) <= 5 * math.sqrt(n * p * (1 - p))


def test_random_canary_answers_its_share_and_says_who_answered(
    client: Client,
    churn_version,  # noqa: F811
    tmp_path: Path,
) -> None:
    register(client, churn_version, "churn")
    v2 = _second_version(client, churn_version)
    client.deploy("churn", v2, canary="30%")
    data = tmp_path / "in.csv"
    n = 2_000
    make_churn(n, seed=11).drop(columns=["Exited"]).to_csv(data, index=False)
    out, summary = _score(client, data, tmp_path / "out.parquet", chunk_rows=700)
    assert len(out) == n
    canary = out[out["role"] == "canary"]
    assert _within_binomial(len(canary), n, 0.3), len(canary)
    assert set(canary["version"]) == {v2}
    assert set(out.loc[out["role"] == "production", "version"]) == {1}
    assert summary["canary"]["rows"] == {
        "production": n - len(canary),
        "canary": len(canary),
        "canary_failed": 0,
    }
    assert summary["canary"]["challenger_version"] == v2
    # The log says the same, row by row: role canary for the challenger, NULL for production.
    logged = _roles_logged(client, summary["request_id"])
    assert len(logged) == n
    for pid, version, role in out[["prediction_id", "version", "role"]].itertuples(index=False):
        assert logged[pid] == (version, "canary" if role == "canary" else None)


def test_sticky_canary_sends_each_key_where_predict_sends_it_every_time(
    client: Client,
    churn_version,  # noqa: F811
    tmp_path: Path,
) -> None:
    register(client, churn_version, "churn")
    v2 = _second_version(client, churn_version)
    client.deploy("churn", v2, canary="40%", sticky_key="CustomerId")
    frame = make_churn(1_500, seed=12).drop(columns=["Exited"])
    data = tmp_path / "in.csv"
    frame.to_csv(data, index=False)
    first, _ = _score(client, data, tmp_path / "a.parquet", id_column="CustomerId")
    # The same customers in another order and other chunks: each keeps its version.
    data2 = tmp_path / "shuffled.csv"
    frame.sample(frac=1.0, random_state=4).to_csv(data2, index=False)
    second, _ = _score(client, data2, tmp_path / "b.parquet", id_column="CustomerId", chunk_rows=97)
    a = dict(zip(first["CustomerId"], first["role"], strict=True))
    b = dict(zip(second["CustomerId"], second["role"], strict=True))
    assert a == b
    # The server's rule: a key's bucket under the canary's share, the key as /predict reads it.
    expected = {str(k): sticky_bucket("churn", str(k)) < 0.4 for k in frame["CustomerId"]}
    assert {k: r == "canary" for k, r in a.items()} == expected
    assert _within_binomial(sum(expected.values()), len(frame), 0.4)


def test_canary_needs_a_canary_deployment(
    client: Client,
    churn_version,  # noqa: F811
    tmp_path: Path,
) -> None:
    register(client, churn_version, "churn")
    data = tmp_path / "in.csv"
    make_churn(20, seed=1).drop(columns=["Exited"]).to_csv(data, index=False)
    out = tmp_path / "out.parquet"
    with pytest.raises(ConfigError, match="no canary deployed"):
        _score(client, data, out)
    v2 = _second_version(client, churn_version)
    client.deploy("churn", v2, shadow=True)
    with pytest.raises(ConfigError, match="shadow answers nothing"):
        _score(client, data, out)
    with pytest.raises(ConfigError, match="it takes no version or alias"):
        _score(client, data, out, version=1)
    client.deploy("churn", canary="10%", sticky_key="CustomerId")
    no_key = tmp_path / "no_key.csv"
    make_churn(20, seed=1).drop(columns=["Exited", "CustomerId"]).to_csv(no_key, index=False)
    with pytest.raises(ConfigError, match="sticks by 'CustomerId'"):
        _score(client, no_key, out)
    assert not out.exists()
