"""`python -m pgmlops.cli`: the same as the `pgmlops` console script."""

from pgmlops.cli import main

# Guarded: a LocalCluster's worker processes (training.engine dask) re-import the main module.
if __name__ == "__main__":
    main()
