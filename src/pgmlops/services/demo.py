"""The demo loop on the embedded default: data, train, promote, refuse a worse model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.registry.records import PRODUCTION
from pgmlops.errors import PromotionRefused
from pgmlops.services.commands import promote_command, train_command

DEMO_MODEL = "churn"


def run_demo(ctx, *, rows: int, actor: str, say: Callable[[str], None]) -> str:
    """Run the offline loop and return the demo model's name."""
    folder = Path(ctx.settings.artifact_root).parent / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "churn.csv"
    frame = make_churn(rows, seed=7)
    frame.to_csv(data, index=False)
    say(f"1/4 wrote {rows:,} demo customers to {data}")
    first = train_command(ctx, data=str(data), target="Exited", model_name=DEMO_MODEL, actor=actor)
    say(
        f"2/4 trained {DEMO_MODEL} v{first['version']}: "
        + ", ".join(f"{k}={v:.3f}" for k, v in first["metrics"].items() if v is not None)
    )
    try:
        promoted = promote_command(
            ctx,
            model_name=DEMO_MODEL,
            version=first["version"],
            force=False,
            reason=None,
            actor=actor,
        )
        say(f"3/4 promoted v{promoted['candidate_version']} to production")
    except PromotionRefused as exc:
        # On a second run v1 is production and this retrain on the same data ties it:
        # the gates refuse a copy, so production stays where it was.
        current = ctx.registry.alias_version(DEMO_MODEL, PRODUCTION)
        stays = f"production stays v{current}" if current is not None else "no production model"
        say(f"3/4 v{first['version']} was not promoted ({stays}):")
        for gate in exc.decision.failed():
            say(f"    FAIL {gate.name}: {gate.detail}")
    shuffled = frame.assign(Exited=np.random.default_rng(1).permutation(frame["Exited"].to_numpy()))
    worse = folder / "churn_shuffled_labels.csv"
    shuffled.to_csv(worse, index=False)
    second = train_command(
        ctx, data=str(worse), target="Exited", model_name=DEMO_MODEL, actor=actor
    )
    try:
        promote_command(
            ctx,
            model_name=DEMO_MODEL,
            version=second["version"],
            force=False,
            reason=None,
            actor=actor,
        )
        say(f"4/4 v{second['version']} (trained on shuffled labels) was promoted?! check the gates")
    except PromotionRefused as exc:
        say(f"4/4 v{second['version']}, trained on shuffled labels, was refused as it should be:")
        for gate in exc.decision.failed():
            say(f"    FAIL {gate.name}: {gate.detail}")
    return DEMO_MODEL
