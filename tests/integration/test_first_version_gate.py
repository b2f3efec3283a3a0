"""A first version is judged on every labelled row out of sample: small real data gets in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn import datasets

from pgmlops.errors import PromotionRefused
from pgmlops.services.commands import promote_command, train_command

ACTOR = "tester"


@pytest.fixture
def diabetes_csv(tmp_path: Path) -> Path:
    """scikit-learn's bundled diabetes set: 442 real rows, R² about 0.3 to 0.5."""
    path = tmp_path / "diabetes.csv"
    datasets.load_diabetes(as_frame=True, scaled=False).frame.to_csv(path, index=False)
    return path


def _first(ctx, path: Path, name: str) -> dict:
    version = train_command(
        ctx, data=str(path), target="target", model_name=name, onnx=False, actor=ACTOR
    )["version"]
    return promote_command(
        ctx, model_name=name, version=version, force=False, reason=None, actor=ACTOR
    )


def test_promotes_a_first_version_on_442_real_rows(ctx, diabetes_csv: Path) -> None:
    result = _first(ctx, diabetes_csv, "diabetes")
    baseline = result["decision"]["gates"][0]
    assert result["decision"]["approved"] and baseline["name"] == "baseline"
    assert baseline["numbers"]["rows"] == 442  # every labelled row, not the 85-row holdout
    assert baseline["numbers"]["low"] > 0


def test_refuses_shuffled_labels_and_names_the_remedy(
    ctx, diabetes_csv: Path, tmp_path: Path
) -> None:
    import pandas as pd

    frame = pd.read_csv(diabetes_csv)
    frame["target"] = np.random.default_rng(0).permutation(frame["target"].to_numpy())
    shuffled = tmp_path / "shuffled.csv"
    frame.to_csv(shuffled, index=False)
    with pytest.raises(PromotionRefused) as refused:
        _first(ctx, shuffled, "shuffled")
    message = str(refused.value)
    assert "on 442 rows" in message and "one-sided 99% CI" in message
    assert "force the promotion, with a reason" in message


def test_judges_repeated_feature_vectors_as_one_observation(ctx, tmp_path: Path) -> None:
    import pandas as pd

    from pgmlops.services.promotion import read_crossfit

    # 150 patients, each seen three times with different outcomes (panel data).
    frame = datasets.load_diabetes(as_frame=True, scaled=False).frame.iloc[:150]
    rng = np.random.default_rng(1)
    visits = [frame.assign(target=frame["target"] + rng.normal(0, 20, 150)) for _ in range(3)]
    path = tmp_path / "panel.csv"
    pd.concat(visits, ignore_index=True).to_csv(path, index=False)
    _first(ctx, path, "panel")
    version = ctx.registry.latest_version("panel")
    scores, clusters = read_crossfit(ctx, version)
    assert len(scores) == 450 and clusters is not None
    assert len(np.unique(clusters)) == 150  # each patient's three rows share one label
    evaluation = ctx.registry.promotion_events("panel")[-1].details["evaluation"]
    assert evaluation["distinct_vectors"] == 150
