"""The one training loop: AdamW, warmup + cosine decay, gradient clipping, mixed precision,
periodic validation, atomic checkpoints, exact resume, and DDP when launched by ``torchrun``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from netflowgen.train.checkpoint import load_checkpoint, save_checkpoint
from netflowgen.train.config import TrainConfig
from netflowgen.train.windows import Batch

__all__ = ["TrainConfig", "RESUME_MAY_CHANGE", "resume_changes", "lr_at", "train_loop", "make_optimizer", "autocast_dtype", "DistInfo", "dist_info", "distributed"]

log = logging.getLogger(__name__)


#: The TrainConfig fields a resume may change: how long to train (``steps``, at least the
#: checkpoint's step) and the time budget. Every other field changes what the remaining steps
#: compute (batches, learning rates, random draws, numerics) or what the records hold, so a
#: resume with it would be neither the run it continues nor a run of the new options.
RESUME_MAY_CHANGE = ("steps", "max_seconds")


def resume_changes(recorded: dict[str, Any], cfg: TrainConfig, at_step: int, where: Path) -> dict[str, dict[str, Any]]:
    """Compare the TrainConfig a checkpoint recorded (``asdict`` of it, at step ``at_step``)
    with the one a resume is given: the allowed changes (:data:`RESUME_MAY_CHANGE`) as
    ``{field: {"from": old, "to": new}}``; any other change is a ValueError naming each field,
    its old and its new value.

    >>> old = asdict(TrainConfig(steps=100))
    >>> resume_changes(old, TrainConfig(steps=200), 100, Path("run"))
    {'steps': {'from': 100, 'to': 200}}
    >>> resume_changes(old, TrainConfig(steps=100, lr=1e-3), 100, Path("run"))
    Traceback (most recent call last):
    ...
    ValueError: run: cannot resume with options that differ from the checkpoint's (step 100): lr: the checkpoint has 0.0003, this run 0.001. Resume with the run's options (only steps and max_seconds may change), or start a new run
    """
    given = asdict(cfg)
    changed = {k: {"from": recorded.get(k), "to": v} for k, v in given.items() if k in recorded and recorded[k] != v}
    refused = [f"{k}: the checkpoint has {c['from']!r}, this run {c['to']!r}" for k, c in changed.items() if k not in RESUME_MAY_CHANGE]
    if cfg.steps < at_step:
        refused.append(f"steps: the checkpoint is at step {at_step}; this run's {cfg.steps} would end before it")
    if refused:
        raise ValueError(f"{where}: cannot resume with options that differ from the checkpoint's (step {at_step}): "
                         + "; ".join(refused) + ". Resume with the run's options (only " + " and ".join(RESUME_MAY_CHANGE)
                         + " may change), or start a new run")
    return changed


def lr_at(step: int, cfg: TrainConfig, progress: float | None = None) -> float:
    """Linear warmup to the peak, then cosine decay to ``min_lr_ratio`` of it; ``progress`` (the
    share of a time budget spent since the warmup) moves the decay on when it is further along
    than the step count.

    >>> cfg = TrainConfig(steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    >>> round(lr_at(0, cfg), 3), round(lr_at(9, cfg), 3), round(lr_at(99, cfg), 3), round(lr_at(20, cfg, 1.0), 3)
    (0.1, 1.0, 0.1, 0.1)
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(cfg.steps - 1 - cfg.warmup_steps, 1)
    progress = min(max((step - cfg.warmup_steps) / span, progress or 0.0), 1.0)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _cpu_has_bf16_matmul() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


#: Below this width bf16 autocast costs more in casts than it saves in matmuls on a CPU
#: (measured with benchmarks/train.py on an AVX512-BF16 CPU: tiny, d=64, 0.5x; small, d=256, 1.3x).
CPU_BF16_MIN_WIDTH = 256


def autocast_dtype(precision: str, device: torch.device, width: int = CPU_BF16_MIN_WIDTH) -> torch.dtype | None:
    """The autocast dtype to use, or None for plain fp32.

    ``auto`` is bf16 on CUDA, and on CPUs with bf16 matrix instructions (AMX or AVX512-BF16)
    for models at least ``CPU_BF16_MIN_WIDTH`` wide; fp32 otherwise.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16
    return torch.bfloat16 if width >= CPU_BF16_MIN_WIDTH and _cpu_has_bf16_matmul() else None


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """Rank and world size under ``torchrun`` (initialising the process group), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if world > 1:
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


@contextlib.contextmanager
def distributed() -> Iterator[DistInfo]:
    """``dist_info()`` for the duration of a block, tearing down a process group the block created.

    A gloo group left to interpreter shutdown can abort the process ("terminate called without an
    active exception") when one rank exits while its peer still holds pending work, so the group is
    destroyed explicitly, after a barrier, on the success path. On failure it is left alone: a
    collective destroy would hang waiting for the failed peer, and torchrun reaps the job anyway.
    A group that already existed belongs to the caller and is kept.
    """
    owned = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
    info = dist_info()
    yield info
    if owned and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """The loop's AdamW: weight decay on matrices (not biases, norms), per-parameter lr scales, fused."""
    # No weight decay on biases, norms and embeddings' position rows: the usual GPT recipe.
    # A model may scale the learning rate of some of its parameters (``lr_scale(name)``): a
    # fine-tuned backbone moves more slowly than its new heads.
    scale_of = getattr(model, "lr_scale", lambda name: 1.0)
    groups: dict[tuple[bool, float], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.dim() >= 2 and "ln" not in name
        groups.setdefault((decay, float(scale_of(name))), []).append(p)
    param_groups = [{"params": ps, "weight_decay": cfg.weight_decay if decay else 0.0, "lr_scale": scale}
                    for (decay, scale), ps in groups.items()]
    # The fused kernel (one pass over each parameter for the whole update) where torch has one:
    # measured with 2 CPU threads, clipping and step of the small size's 3.6M parameters take
    # 5.9 ms instead of 10.8 ms (tiny: 0.7 ms instead of 2.0 ms). A checkpoint written by the
    # unfused optimizer resumes unfused (its saved param groups say so).
    devices = {p.device.type for group in param_groups for p in group["params"]}
    fused = bool(devices) and devices <= {"cpu", "cuda"}
    return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=(0.9, 0.95), fused=fused)


def _trim_metrics(path: Path, last_step: int) -> None:
    """Drop metric lines logged after the checkpoint a run resumes from."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= last_step]
    path.write_text("".join(line + "\n" for line in keep))


def train_loop(
    model: torch.nn.Module,
    sample: Callable[[int, int], Batch],
    validate: Callable[[torch.nn.Module], dict[str, float]] | None,
    loss_of: Callable[[torch.nn.Module, Batch], torch.Tensor],
    cfg: TrainConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    device: torch.device | str = "cpu",
    show_progress: bool = True,
    tokens_per_batch: int = 0,
) -> list[dict[str, float]]:
    """Train ``model`` for ``cfg.steps`` steps; returns the metric records.

    ``sample(step, rank)`` gives the batch of a step; ``loss_of(model, batch)`` its loss;
    ``validate(model)`` validation metrics. Rank 0 writes metrics and checkpoints to ``run_dir``.
    Every log record says the rate since the previous one (``steps_per_s``, ``tokens_per_s``) and
    the share of that time spent getting batches (``data_share``: ``sample`` and the copy to the
    device); validation and checkpoints in that interval count in the rate, not in the share.
    """
    device = torch.device(device)
    info = dist_info()
    model.to(device)
    train_model: torch.nn.Module = model
    if info.world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(model, cfg)
    metrics_path = run_dir / "metrics.jsonl"
    start = 0
    records: list[dict[str, float]] = []
    state: dict[str, Any] = {}
    if resume:
        state = load_checkpoint(run_dir, model, optimizer)
        start = int(state["step"])
        records = state.get("records", [])
        if info.main:
            _trim_metrics(metrics_path, start)
    amp = autocast_dtype(cfg.precision, device, getattr(getattr(model, "cfg", None), "d_model", CPU_BF16_MIN_WIDTH))
    metrics_file = open(metrics_path, "a") if info.main else None

    def log_record(rec: dict[str, float]) -> None:
        records.append(rec)
        if metrics_file:
            metrics_file.write(json.dumps(rec) + "\n")
            metrics_file.flush()

    progress = _progress(show_progress and info.main, cfg.steps, start)
    t_last, n_last = time.perf_counter(), start
    clock = _Budget(cfg, info, state["elapsed"] if resume and "elapsed" in state else 0.0, start)
    data_s = 0.0  # seconds spent in sample() and .to(device) since the last log record
    try:
        with progress:
            task = progress.add_task("train", total=cfg.steps, completed=start, loss=float("nan"), rate=0.0, tps=0.0)
            for step in range(start, cfg.steps):
                model.train()
                # Seeded per step: dropout and sampling do not depend on where a run was resumed.
                torch.manual_seed(cfg.seed * 1_000_003 + info.rank * 7_919 + step)
                t_data = time.perf_counter()
                batch = sample(step, info.rank).to(device)
                data_s += time.perf_counter() - t_data
                lr = lr_at(step, cfg, clock.progress(step))
                for group in optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_scale", 1.0)
                with torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext():
                    loss = loss_of(train_model, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                done = step + 1
                last = done == cfg.steps or clock.spent()
                if done % cfg.log_every == 0 or last:
                    now = time.perf_counter()
                    rate = (done - n_last) / max(now - t_last, 1e-9)
                    share = data_s / max(now - t_last, 1e-9)
                    t_last, n_last, data_s = now, done, 0.0
                    rec = {"step": done, "loss": float(loss.detach()), "lr": lr,
                           "grad_norm": float(grad_norm), "steps_per_s": rate, "tokens_per_s": rate * tokens_per_batch * info.world,
                           "data_share": share}
                    if last and done < cfg.steps:
                        rec["stopped"] = "time budget"
                    log_record(rec)
                    progress.update(task, completed=done, loss=rec["loss"], rate=rate, tps=rec["tokens_per_s"])
                else:
                    progress.update(task, completed=done)
                if validate is not None and (done % cfg.eval_every == 0 or last):
                    if info.main:
                        log_record({"step": done, **validate(model)})
                    if info.world > 1:
                        dist.barrier()
                if info.main and (done % cfg.checkpoint_every == 0 or last):
                    save_checkpoint(run_dir, model, optimizer, {"step": done, "records": records, "config": asdict(cfg),
                                                                "elapsed": clock.elapsed()})
                if last:
                    break
    finally:
        if metrics_file:
            metrics_file.close()
    return records


class _Budget:
    """The wall-clock budget of ``TrainConfig.max_seconds`` (nothing without one). With several
    processes rank 0's clock decides, so that every rank stops at the same step."""

    def __init__(self, cfg: TrainConfig, info: Any, elapsed: float, start: int) -> None:
        self.cfg, self.info = cfg, info
        self.t0 = time.perf_counter() - elapsed
        self.warm_at: float | None = elapsed if start >= cfg.warmup_steps else None

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def progress(self, step: int) -> float | None:
        """Share of the budget left after the warmup that is spent (None: no budget)."""
        if self.cfg.max_seconds is None:
            return None
        now = self.elapsed()
        if step < self.cfg.warmup_steps:
            return 0.0
        if self.warm_at is None:
            self.warm_at = now
        return (now - self.warm_at) / max(self.cfg.max_seconds - self.warm_at, 1e-9)

    def spent(self) -> bool:
        if self.cfg.max_seconds is None:
            return False
        over = torch.tensor([float(self.elapsed() >= self.cfg.max_seconds)])
        if self.info.world > 1:
            dist.broadcast(over, src=0)
        return bool(over.item())


def _progress(enabled: bool, total: int, start: int) -> Progress:
    return Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.1f} steps/s  {task.fields[tps]:,.0f} steps of traffic/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )

