"""Checkpoints that resume exactly, written atomically, loaded without unpickling code.

``RUN/checkpoint/`` holds ``model.safetensors``, ``optimizer.pt`` (tensors and numbers only,
loaded with ``weights_only=True``) and ``state.json`` (step, metrics so far). It is written as a
new folder that replaces the old one only when complete, the old one kept until then, so a crash
mid-write (or between the renames) keeps a complete checkpoint that ``--resume`` finds.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from netflowgen.artifacts import DamagedArtifact, loading, read_json, recover, replace_directory

__all__ = ["save_checkpoint", "checkpoint_state", "load_checkpoint", "save_weights", "load_weights", "CHECKPOINT_DIR"]

CHECKPOINT_DIR = "checkpoint"


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """Weights as safetensors, atomically (what a killed earlier write left is removed first)."""
    recover(path)
    state = {k: v.detach().contiguous().cpu() for k, v in _unwrap(model).state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        _written(lambda: save_file(state, str(tmp)), path)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_weights(model: torch.nn.Module, path: Path, strict: bool = True) -> None:
    """Safetensors weights into ``model``; a file that is not safetensors, or whose tensors do
    not fit the model (names, shapes), is a DamagedArtifact naming it."""
    with loading(Path(path), "the weights"):
        _unwrap(model).load_state_dict(load_file(str(path)), strict=strict)


def save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Write the checkpoint as a new folder and put it in place of the previous one
    (:func:`~netflowgen.artifacts.replace_directory`: the previous one is kept until then). A
    write that fails (a full disk) leaves the previous checkpoint and raises an OSError naming
    the folder."""
    final = run_dir / CHECKPOINT_DIR
    tmp = run_dir / f".{CHECKPOINT_DIR}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir()
        save_weights(model, tmp / "model.safetensors")
        _written(lambda: torch.save(optimizer.state_dict(), tmp / "optimizer.pt"), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        replace_directory(tmp, final)
    except OSError as e:
        message = f"{final}: cannot write the checkpoint of step {state.get('step')} ({e.strerror or e}); the previous checkpoint is kept"
        raise (OSError(e.errno, message) if e.errno is not None else OSError(message)) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _written(write: Callable[[], object], path: Path) -> None:
    """Run ``write`` of ``path``; safetensors and torch report a failed write (a full disk) as
    errors of their own, turned here into the OSError every command reports as one line."""
    try:
        write()
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001 - SafetensorError, RuntimeError from the zip writer
        raise OSError(f"{path}: cannot write ({type(e).__name__}: {' '.join(str(e).split())[:300]})") from e


def checkpoint_state(run_dir: Path) -> dict[str, Any]:
    """The ``state.json`` of a run's checkpoint (its step, records and TrainConfig)."""
    folder = run_dir / CHECKPOINT_DIR
    recover(folder)  # a save killed between its renames left the previous checkpoint aside
    if not (folder / "state.json").is_file():
        raise FileNotFoundError(f"{run_dir}: no checkpoint to resume from")
    state = read_json(folder / "state.json")
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise DamagedArtifact(f"{folder / 'state.json'}: no step number; the checkpoint is damaged or was altered")
    return state


def load_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    state = checkpoint_state(run_dir)
    folder = run_dir / CHECKPOINT_DIR
    load_weights(model, folder / "model.safetensors")
    # weights_only: a pickle that would build any other object (and so run code) is refused.
    with loading(folder / "optimizer.pt", "the optimizer state (tensors and numbers only)"):
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True, map_location="cpu"))
    return state
