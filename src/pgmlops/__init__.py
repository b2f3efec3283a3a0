"""pgmlops: the whole life of a tabular model, with PostgreSQL as the source of truth."""

__version__ = "0.1.0"
