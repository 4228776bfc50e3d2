"""Training throughput: achieved FLOP/s of FlowGPT training against the machine's matmul peak.

The reference is measured in the same run: the fp32 matrix-multiply rate of this machine at the
model's own matrix sizes (the projections of a block on a batch of windows). The model figure
counts 6 FLOPs per parameter of every matrix per position (forward and backward) plus attention,
the usual accounting (PaLM appendix B), from FlowGPT.flops_per_step(). Also: bf16 autocast
against fp32 on this CPU (faster only on CPUs with bf16 matrix units), and, with --device cuda,
model-FLOPs utilization against the GPU's matmul peak measured the same way.

    .venv/bin/python benchmarks/train.py [--size small] [--steps 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from netflowgen.model import SIZES, FlowGPT, FlowGPTConfig


def batch(cfg: FlowGPTConfig, size: int, device: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    traffic = torch.stack([torch.randint(0, b, (size, cfg.context), generator=g) for b in cfg.bins], -1)
    time_ = torch.stack([torch.randint(0, s, (size, cfg.context), generator=g) for s in cfg.time_sizes], -1)
    return {
        "traffic": traffic.to(device), "time": time_.to(device),
        "node": torch.randint(0, cfg.n_nodes, (size,), generator=g).to(device),
        "group": torch.randint(0, cfg.n_groups, (size,), generator=g).to(device),
        "targets": traffic.to(device),
    }


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(m: int, k: int, n: int, dtype: torch.dtype, device: str, seconds: float = 2.0) -> float:
    """Best FLOP/s of (m x k) @ (k x n) matmuls over a few timed rounds."""
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        reps = 10
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = max(best, 2 * m * k * n * reps / (time.perf_counter() - t))
    return best


def train_rate(model: FlowGPT, data: dict[str, torch.Tensor], steps: int, amp: torch.dtype | None, device: str,
               progress: Progress | None, label: str) -> float:
    """Training steps per second (after warm-up steps)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    task = progress.add_task(label, total=steps + 3) if progress else None

    def one() -> None:
        with torch.autocast(device.split(":")[0], dtype=amp) if amp else torch.autocast("cpu", enabled=False):
            out = model(data["traffic"], data["time"], data["node"], data["group"], targets=data["targets"])
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        if progress:
            progress.advance(task)

    for _ in range(3):
        one()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        one()
    sync(device)
    return steps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="small", choices=list(SIZES))
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--features", type=int, default=24, help="traffic features (the registry has 24)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    torch.manual_seed(0)
    cfg = FlowGPTConfig(bins=(10,) * args.features, n_nodes=1000, n_groups=100, **SIZES[args.size])
    tokens = args.batch_size * cfg.context
    flops_per_step = FlowGPT(cfg).flops_per_step() * tokens
    console = Console(stderr=True)
    results: dict[str, object] = {"size": args.size, "device": args.device, "threads": torch.get_num_threads(),
                                  "batch_size": args.batch_size, "context": cfg.context,
                                  "parameters": FlowGPT(cfg).num_params(), "flops_per_step": flops_per_step}
    with Progress(console=console, disable=args.json) as progress:
        # The model's matrices: (tokens x d) @ (d x 4d) is the largest, (tokens x d) @ (d x d) the most common.
        d = cfg.d_model
        peak32 = max(matmul_peak(tokens, d, 4 * d, torch.float32, args.device), matmul_peak(tokens, d, d, torch.float32, args.device))
        results["matmul_peak_fp32_flops"] = peak32
        model = FlowGPT(cfg).to(args.device)
        fp32 = train_rate(model, batch(cfg, args.batch_size, args.device), args.steps, None, args.device, progress, "fp32")
        results["fp32_steps_per_s"] = fp32
        results["fp32_flops"] = fp32 * flops_per_step
        results["fp32_utilization_vs_fp32_matmul_peak"] = fp32 * flops_per_step / peak32
        results["fp32_steps_of_traffic_per_s"] = fp32 * tokens
        model = FlowGPT(cfg).to(args.device)
        bf16 = train_rate(model, batch(cfg, args.batch_size, args.device), args.steps, torch.bfloat16, args.device, progress, "bf16")
        peak16 = max(matmul_peak(tokens, d, 4 * d, torch.bfloat16, args.device), matmul_peak(tokens, d, d, torch.bfloat16, args.device))
        results["matmul_peak_bf16_flops"] = peak16
        results["bf16_steps_per_s"] = bf16
        results["bf16_speedup_vs_fp32"] = bf16 / fp32
        results["bf16_utilization_vs_bf16_matmul_peak"] = bf16 * flops_per_step / peak16
    if args.json:
        print(json.dumps(results, indent=1))
        return
    t = Table("figure", "value", title=f"FlowGPT-{args.size} training on {args.device}", title_justify="left")
    for k, v in results.items():
        t.add_row(k, f"{v:,.3g}" if isinstance(v, float) else str(v))
    Console().print(t)


if __name__ == "__main__":
    main()
