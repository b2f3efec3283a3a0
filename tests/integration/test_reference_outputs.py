"""Training keeps monitoring's reference: held-out rows plus cross-fitted training rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgmlops.domain.intervals import ReferenceOutputs
from pgmlops.services.commands import train_command

ACTOR = "tester"


@pytest.mark.parametrize("folds", [3, 0])
def test_the_reference_holds_every_row_once_cross_fitted_or_only_the_held_out_ones(
    ctx, churn_csv: Path, folds: int
) -> None:
    info = train_command(
        ctx,
        data=str(churn_csv),
        target="Exited",
        model_name="churn",
        actor=ACTOR,
        onnx=False,
        overrides={"reference_folds": folds},
    )
    mv = ctx.registry.get_version("churn", info["version"])
    ref = ReferenceOutputs.model_validate_json(ctx.artifacts.read(mv, "reference_outputs"))
    split = mv.card.split
    held_out = split.validation_rows + split.holdout_rows
    expected = held_out + split.train_rows if folds else held_out
    assert ref.n_source == expected == len(ref.y_true)
