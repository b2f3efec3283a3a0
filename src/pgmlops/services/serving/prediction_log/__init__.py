"""The prediction log: every answered prediction is written, or counted as lost.

`PredictionLogWriter` runs in the serving process (a writer thread); `ProcessLogWriter` hands
rows to a logging process of its own so that the serving process only encodes and appends.
"""

from pgmlops.services.serving.prediction_log.child import LogProcessConfig
from pgmlops.services.serving.prediction_log.process import ProcessLogWriter
from pgmlops.services.serving.prediction_log.writer import COUNTERS, PredictionLogWriter

__all__ = ["COUNTERS", "LogProcessConfig", "PredictionLogWriter", "ProcessLogWriter"]
