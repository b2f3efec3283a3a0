"""Training on a Dask cluster: data read in partitions, the booster fitted through its Dask API.

The entry points are `train.train_on_dask` (`pgmlops train --engine dask`) and, for
services/retraining/runs.py, `retrain.dask_rows` and `retrain.retrain_on_dask`; dask itself is
imported lazily, so a missing `pgmlops[dask]` extra is one ConfigError (cluster.require_dask),
not an ImportError.
"""
