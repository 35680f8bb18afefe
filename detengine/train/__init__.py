"""Training: the loop, its settings, checkpoints, schedules, runs under torchrun."""
