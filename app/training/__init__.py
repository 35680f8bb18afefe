"""Training and evaluation from the window: the panels and the training child process."""
