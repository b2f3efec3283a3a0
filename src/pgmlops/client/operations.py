"""The Client's operations on files and the log: labels from a file, batch scoring, clean-up."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pgmlops.services.batch import BatchSummary
    from pgmlops.services.context import Context
    from pgmlops.services.training import Progress


class Operations:
    """Feedback files, batch scoring and garbage collection; mixed into `Client`."""

    if TYPE_CHECKING:
        # Provided by Client; declared so the methods below type-check on their own.
        @property
        def context(self) -> Context: ...

    def feedback(
        self, path: str | Path, *, key: str | None = None, model_name: str | None = None
    ) -> dict[str, Any]:
        """Store true labels from a CSV of prediction_id,label rows (or key,label rows).

        With ``key`` (a feature column such as customer_id), each label goes to the model's
        latest prediction logged with that key; keys no prediction carries are counted and
        listed, not stored. Any bad row stops the load: nothing is stored.
        """
        from pgmlops.services.serving.feedback_files import load_feedback_file

        return load_feedback_file(self.context, Path(path), key=key, model_name=model_name)

    def predict_batch(
        self,
        data: str,
        out: str,
        *,
        model_name: str | None = None,
        version: int | None = None,
        alias: str | None = None,
        query: str | None = None,
        id_column: str | None = None,
        log: bool = True,
        chunk_rows: int | None = None,
        on_error: Literal["fail", "skip"] = "fail",
        rejects: Path | None = None,
        sep: str | None = None,
        encoding: str | None = None,
        decimal: str | None = None,
        canary: bool = False,
        progress: Progress | None = None,
    ) -> BatchSummary:
        """Score a file or a query (``data``) into ``out`` with one version, logging each row.

        All or nothing unless ``on_error="skip"`` (refused rows then go to ``rejects``);
        ``canary=True`` answers the canary's share with the challenger, as /predict does.
        """
        from pgmlops.services.batch import DEFAULT_CHUNK_ROWS, BatchRequest, run_batch_predict

        request = BatchRequest(
            data=data,
            out=out,
            model_name=model_name,
            version=version,
            alias=alias,
            query=query,
            id_column=id_column,
            log=log,
            chunk_rows=DEFAULT_CHUNK_ROWS if chunk_rows is None else chunk_rows,
            on_error=on_error,
            rejects=rejects,
            sep=sep,
            encoding=encoding,
            decimal=decimal,
            canary=canary,
        )
        return run_batch_predict(self.context, request, progress)

    def collect_garbage(
        self,
        model_name: str | None = None,
        *,
        keep: int | None = None,
        recent_days: float | None = None,
        predictions_older_than: timedelta | str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Delete old unaliased versions (of one model, or all) and the artifacts only they used.

        ``predictions_older_than`` ("90d", or a timedelta) also drops older logged predictions
        and their labels; ``dry_run=True`` says what would go and deletes nothing.
        """
        from pgmlops.services.retention import collect_garbage, parse_age

        age = (
            parse_age(predictions_older_than)
            if isinstance(predictions_older_than, str)
            else predictions_older_than
        )
        return collect_garbage(
            self.context,
            model_name,
            keep=keep,
            recent_days=recent_days,
            predictions_older_than=age,
            dry_run=dry_run,
        )
