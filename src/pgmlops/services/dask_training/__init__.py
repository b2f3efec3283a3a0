"""Training on a Dask cluster: data read in partitions, the booster fitted through its Dask API.

Only `train.train_on_dask` is the entry point; dask itself is imported lazily, so a missing
`pgmlops[dask]` extra is one ConfigError (cluster.require_dask), not an ImportError.
"""
