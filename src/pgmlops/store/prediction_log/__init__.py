"""The prediction log's rows: inserts, spill, partitions, labels."""
