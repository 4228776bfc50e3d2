"""Evaluation: next-step prediction against baselines (detection metrics come with adaptation)."""
