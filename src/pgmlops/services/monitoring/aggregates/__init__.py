"""Monitoring from aggregates computed in PostgreSQL, not from the window's rows.

On PostgreSQL ``pgmlops monitor`` asks the database for counts (store/monitoring/window_summary.py):
cells of every numeric feature on its reference profile's points, category counts, the
output's cells, the sum of confidences, labelled rows grouped by (label, prediction, score
bin) or summed errors, and a bounded random sample of rows for the detectors that need raw
values (the multivariate domain classifier; a regression model's loss models). The same
tests then run on those numbers: drift and confidence exactly as on rows, labelled metrics
and CBPE exactly except AUCs, where rows in one fine score bin count as tied (see
domain/monitoring/binned_metrics.py). The direct loss estimate of a regression model runs on the
sample and is judged at the sample's size, so its interval stays honest.

Multiclass models, and every model on SQLite, keep the row path (services/monitoring/run.py).
"""

from pgmlops.services.monitoring.aggregates.assess import (
    SAMPLE_ROWS,
    assess_summary,
    reads_aggregates,
    summarise_window,
)

__all__ = ["SAMPLE_ROWS", "assess_summary", "reads_aggregates", "summarise_window"]
