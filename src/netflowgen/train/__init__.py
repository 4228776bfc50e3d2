"""Training: windows over token shards, the one training loop, checkpoints, pre-training."""
