"""Keep the prediction log's closed hours summarised, so a window reads each hour only once.

The worker runs this on its schedule for every watched model's production version: the
hours that closed since the newest one stored are counted (store/monitoring/log_summaries.py), a
bounded number of hours per call, so monitoring over months of history costs the new hours
and its edges, not the months.
"""

from __future__ import annotations

from pgmlops.domain.registry.records import PRODUCTION
from pgmlops.services.context import Context
from pgmlops.services.monitoring.aggregates.assess import (
    cell_specs,
    reads_aggregates,
    window_score_edges,
)
from pgmlops.services.monitoring.result import load_profile
from pgmlops.store.monitoring.window_summary import WindowSummaryStore

# Hours counted per call (a week): a long history is caught up over several calls.
HOURS_PER_CALL = 168


def summarise_closed_hours(ctx: Context, model_name: str) -> int:
    """Store the production version's closed hours not stored yet; how many were stored."""
    version = ctx.registry.alias_version(model_name, PRODUCTION)
    if version is None:
        return 0
    mv = ctx.registry.get_version(model_name, version)
    if not reads_aggregates(ctx, mv):
        return 0
    numeric, categorical, output = cell_specs(mv, load_profile(ctx, mv))
    return WindowSummaryStore(ctx.db).store_closed_hours(
        model_name,
        version,
        numeric,
        categorical,
        output,
        score_edges=window_score_edges(ctx, mv),
        limit=HOURS_PER_CALL,
    )
