"""Training: the trainer loop, optimisers (LARS), schedules, checkpoints."""
