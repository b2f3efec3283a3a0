"""Progress on a terminal: a spinner line per step with elapsed time, boosting iterations."""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from pgmlops.cli.progress import spinner, steps, wanted
from pgmlops.domain.training.boosting import iteration_fit_params


def test_each_step_stays_as_a_line_with_its_elapsed_time_and_iteration_count() -> None:
    out = io.StringIO()
    terminal = Console(file=out, force_terminal=True, width=100)
    with steps(True, terminal) as step:
        assert step is not None
        step("reading data.csv")
        step("fitting LGBMClassifier on 1,000 rows")
        step.advance(120, 500)
    text = out.getvalue()
    assert "reading data.csv" in text and "fitting LGBMClassifier on 1,000 rows" in text
    assert "120/500" in text and "0:00:00" in text


def test_off_a_terminal_each_step_is_one_plain_line_and_json_or_quiet_show_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Under pytest stdout is a pipe, as in `pgmlops train ... | tee log` or a cron job.
    assert wanted() == "lines"
    assert wanted(as_json=True) == "" and wanted(quiet=True) == ""
    with steps(wanted()) as step:
        assert step is not None
        step("fitting RandomForestClassifier on 80,000 rows")
        step.advance(3, 10)
    assert capsys.readouterr() == ("", "› fitting RandomForestClassifier on 80,000 rows\n")
    with steps(wanted(quiet=True)) as step, spinner(wanted(as_json=True), "monitoring"):
        assert step is None
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("lightgbm.LGBMClassifier", {"n_estimators": 15, "verbose": -1}),
        (
            "catboost.CatBoostClassifier",
            {"iterations": 15, "verbose": False, "allow_writing_files": False},
        ),
    ],
)
def test_boosting_libraries_report_every_iteration_and_keep_no_callback(
    path: str, params: dict
) -> None:
    import pickle

    module, name = path.rsplit(".", 1)
    estimator = getattr(pytest.importorskip(module), name)(**params)
    pipeline = Pipeline([("scale", StandardScaler()), ("model", estimator)])
    x = np.random.default_rng(0).random((200, 3))
    seen: list[tuple[int, int | None]] = []

    pipeline.fit(
        x, x[:, 0] > 0.5, **iteration_fit_params(estimator, lambda d, t: seen.append((d, t)))
    )

    assert [d for d, _ in seen] == list(range(1, 16)) and {t for _, t in seen} == {15}
    pickle.dumps(pipeline)  # the callback is not part of the stored model


def test_estimators_without_a_per_fit_hook_report_no_iterations() -> None:
    from sklearn.linear_model import LogisticRegression

    assert iteration_fit_params(LogisticRegression(), lambda d, t: None) == {}
    assert iteration_fit_params(LogisticRegression(), None) == {}
