"""Re-runnable recipes (the shipped checkpoints)."""
