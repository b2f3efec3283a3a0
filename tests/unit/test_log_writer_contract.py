"""Both prediction log writers keep the one contract the /predict route is typed against."""

from __future__ import annotations

import inspect
from pathlib import Path

from pgmlops.services.serving.prediction_log import PredictionLogWriter, ProcessLogWriter
from pgmlops.services.serving.prediction_log.child import LogProcessConfig
from pgmlops.services.serving.prediction_log.contract import AcknowledgedLog, PredictionLog
from pgmlops.store.db import Database
from pgmlops.store.prediction_log.predictions import PredictionStore


def test_the_thread_writer_is_an_acknowledging_prediction_log(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'log.db'}")
    writer = PredictionLogWriter(PredictionStore(db), tmp_path / "spill", acknowledged=True)
    assert isinstance(writer, PredictionLog) and isinstance(writer, AcknowledgedLog)
    assert writer.acknowledged is True


def test_the_process_writer_is_a_prediction_log_that_does_not_acknowledge(tmp_path: Path) -> None:
    config = LogProcessConfig(database_url="sqlite://", spill_dir=str(tmp_path / "spill"))
    writer = ProcessLogWriter(config)
    assert isinstance(writer, PredictionLog) and writer.acknowledged is False
    assert not isinstance(writer, AcknowledgedLog)


def test_every_method_of_the_contract_takes_the_protocols_arguments() -> None:
    for cls in (PredictionLogWriter, ProcessLogWriter):
        for name in ("submit", "offer", "refuse", "start", "stop", "flush"):
            wanted = inspect.signature(getattr(PredictionLog, name)).parameters
            have = inspect.signature(getattr(cls, name)).parameters
            assert list(wanted) == list(have)[: len(wanted)], (cls.__name__, name)
            extra = list(have)[len(wanted) :]
            assert all(have[p].default is not inspect.Parameter.empty for p in extra)
