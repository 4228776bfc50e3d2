"""The training configs, free of torch so that the CLI reads its option defaults from them
without importing it (about a second at every start)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["PretrainConfig", "TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by pre-training and fine-tuning."""

    steps: int = 2000
    """Optimizer steps."""
    batch_size: int = 32
    """Windows per step and per process."""
    lr: float = 3e-4
    """Peak learning rate."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of the peak (cosine decay)."""
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 200
    """Validate every this many steps (and at the end)."""
    eval_batches: int | None = 50
    """Validation batches per evaluation (None: the whole held-out part)."""
    checkpoint_every: int = 200
    seed: int = 0
    precision: str = "auto"
    """auto (bf16 on CUDA, and on CPUs with bf16 matrix instructions for wide models), fp32 or bf16."""
    log_every: int = 10
    max_seconds: float | None = None
    """A wall-clock budget: training ends when it is spent (or after ``steps``, whichever comes
    first), and after the warmup the cosine decay runs on the larger of the step and time
    fractions, so a budgeted run still decays fully by its end. The step count a time budget
    reaches depends on the machine; the records and the run's manifest say where it stopped."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be positive")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError("max_seconds must be positive")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, not {self.precision!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("min_lr_ratio must be in [0, 1]")


@dataclass(frozen=True)
class PretrainConfig:
    """What to pre-train on and how big."""

    tokens: Path
    """Tokens directory (from `netflowgen tokenize`)."""
    size: str = "tiny"
    """Named model size (tiny, small, base)."""
    context: int | None = None
    """Context length in steps (default: the size's)."""
    val_fraction: float = 0.1
    """Last part of every node's series held out for validation."""
    dropout: float = 0.0

    def __post_init__(self) -> None:
        from netflowgen.model import SIZES  # torch: only when a config is made, not when the CLI starts

        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; choose one of {', '.join(SIZES)}")
