"""Batch scoring: files or a SQL query in, predictions out, every row logged like /predict."""

from pgmlops.services.batch.predict import (
    DEFAULT_CHUNK_ROWS,
    BatchRequest,
    BatchSummary,
    run_batch_predict,
)

__all__ = ["DEFAULT_CHUNK_ROWS", "BatchRequest", "BatchSummary", "run_batch_predict"]
