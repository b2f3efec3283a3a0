"""Training, pure: the training frame, the pipeline, splits, thresholds."""
