"""`python -m pgmlops.cli`: the same as the `pgmlops` console script."""

from pgmlops.cli import main

main()
