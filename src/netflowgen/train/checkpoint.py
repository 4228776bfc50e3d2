"""Checkpoints that resume exactly, written atomically, loaded without unpickling code.

``RUN/checkpoint/`` holds ``model.safetensors``, ``optimizer.pt`` (tensors and numbers only,
loaded with ``weights_only=True``) and ``state.json`` (step, metrics so far). It is written as a
new folder and renamed over the old one, so a crash mid-write keeps the previous checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from netflowgen.artifacts import DamagedArtifact, loading, read_json

__all__ = ["save_checkpoint", "load_checkpoint", "save_weights", "load_weights", "CHECKPOINT_DIR"]

CHECKPOINT_DIR = "checkpoint"


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """Weights as safetensors, atomically."""
    state = {k: v.detach().contiguous().cpu() for k, v in _unwrap(model).state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(state, str(tmp))
    os.replace(tmp, path)


def load_weights(model: torch.nn.Module, path: Path, strict: bool = True) -> None:
    """Safetensors weights into ``model``; a file that is not safetensors, or whose tensors do
    not fit the model (names, shapes), is a DamagedArtifact naming it."""
    with loading(Path(path), "the weights"):
        _unwrap(model).load_state_dict(load_file(str(path)), strict=strict)


def save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    final = run_dir / CHECKPOINT_DIR
    tmp = run_dir / f".{CHECKPOINT_DIR}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_weights(model, tmp / "model.safetensors")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    old = run_dir / f".{CHECKPOINT_DIR}.old-{os.getpid()}"
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    folder = run_dir / CHECKPOINT_DIR
    if not (folder / "state.json").is_file():
        raise FileNotFoundError(f"{run_dir}: no checkpoint to resume from")
    state = read_json(folder / "state.json")
    load_weights(model, folder / "model.safetensors")
    # weights_only: a pickle that would build any other object (and so run code) is refused.
    with loading(folder / "optimizer.pt", "the optimizer state (tensors and numbers only)"):
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True, map_location="cpu"))
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise DamagedArtifact(f"{folder / 'state.json'}: no step number; the checkpoint is damaged or was altered")
    return state
