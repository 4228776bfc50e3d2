"""Training throughput: achieved FLOP/s of FlowGPT training against the machine's matmul peak.

The reference is measured in the same run: the best fp32 matrix-multiply rate of this machine at
the model's own matrix sizes (a block's projections on a batch of windows, forward and backward
shapes). The model figure counts what FlowGPT.flops_per_step() counts: 6 FLOPs per weight of every
matrix that multiplies activations (the blocks' projections and the output heads) per position,
forward and backward, plus causal attention (T (T + 1) / 2 query-key pairs per window). Not
counted, because no matrix multiply is done: the input layer (an embedding_bag: a sum of gathered
rows, the same function as a Linear over one-hots), the node/group/position embeddings, biases,
norms, activations, softmax and the optimizer. Also: bf16 autocast against fp32 on this CPU (faster
only on CPUs with bf16 matrix units), and, with --device cuda, model-FLOPs utilization against the
GPU's matmul peak measured the same way.

With --tokens DIR it also runs the real path: `pretrain` (the training loop fed by TokenWindows
from the token shards in DIR) for --real-steps steps, and reports its steps/s, the share of the
loop's time spent getting batches, and its FLOP/s against the same peak.

Other processes' CPU use during each timed part is reported (Linux): figures taken while the
machine was shared are not the machine's.

    .venv/bin/python benchmarks/train.py [--size small] [--steps 20] [--tokens DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from netflowgen.model import SIZES, FlowGPT, FlowGPTConfig
from netflowgen.train.loop import TrainConfig, autocast_dtype, make_optimizer


def batch(cfg: FlowGPTConfig, size: int, device: str) -> dict[str, torch.Tensor]:
    """A batch as TokenWindows gives it: uint8 bins and time fields, int64 ids and targets."""
    g = torch.Generator().manual_seed(0)
    traffic = torch.stack([torch.randint(0, b, (size, cfg.context), generator=g) for b in cfg.bins], -1)
    time_ = torch.stack([torch.randint(0, s, (size, cfg.context), generator=g) for s in cfg.time_sizes], -1)
    return {
        "traffic": traffic.to(torch.uint8).to(device), "time": time_.to(torch.uint8).to(device),
        "node": torch.randint(0, cfg.n_nodes, (size,), generator=g).to(device),
        "group": torch.randint(0, cfg.n_groups, (size,), generator=g).to(device),
        "targets": traffic.to(device),
    }


class Contention:
    """Share of the machine's CPU time that other processes used between start() and stop()."""

    def __init__(self) -> None:
        self.shares: list[float] = []

    @staticmethod
    def _read() -> tuple[float, float, float] | None:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        tick = os.sysconf("SC_CLK_TCK")
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / tick  # all but idle and iowait
        total = sum(fields[:8]) / tick
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return busy, total, own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def start(self) -> None:
        self._t0 = self._read()

    def stop(self) -> float | None:
        t1 = self._read()
        if self._t0 is None or t1 is None or t1[1] <= self._t0[1]:
            return None
        share = max(0.0, (t1[0] - self._t0[0]) - (t1[2] - self._t0[2])) / (t1[1] - self._t0[1])
        self.shares.append(share)
        return share


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(m: int, k: int, n: int, dtype: torch.dtype, device: str, seconds: float = 1.5) -> float:
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


def model_peak(cfg: FlowGPTConfig, tokens: int, dtype: torch.dtype, device: str) -> float:
    """The best matmul rate at the model's shapes: a block's (tokens x d) @ (d x 4d) and (d x d)
    forward, and the (tokens x 4d) @ (4d x d) and (4d x tokens) @ (tokens x d) of the backward."""
    d = cfg.d_model
    shapes = [(tokens, d, 4 * d), (tokens, d, d), (tokens, 4 * d, d), (4 * d, tokens, d)]
    return max(matmul_peak(m, k, n, dtype, device) for m, k, n in shapes)


def train_rate(model: FlowGPT, data: dict[str, torch.Tensor], steps: int, amp: torch.dtype | None, device: str,
               progress: Progress | None, label: str, contention: Contention | None = None) -> float:
    """Training steps per second (after warm-up steps): a step of the training loop (its
    optimizer, gradient clipping) on one batch, without the data path."""
    train = TrainConfig(lr=1e-4)
    opt = make_optimizer(model, train)
    task = progress.add_task(label, total=steps + 3) if progress else None

    def one() -> None:
        with torch.autocast(device.split(":")[0], dtype=amp) if amp else torch.autocast("cpu", enabled=False):
            out = model(data["traffic"], data["time"], data["node"], data["group"], targets=data["targets"])
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        opt.step()
        if progress:
            progress.advance(task)

    for _ in range(3):
        one()
    sync(device)
    if contention:
        contention.start()
    t = time.perf_counter()
    for _ in range(steps):
        one()
    sync(device)
    rate = steps / (time.perf_counter() - t)
    if contention:
        contention.stop()
    return rate


def real_loop(tokens: Path, size: str, steps: int, batch_size: int, precision: str, device: str, contention: Contention) -> dict[str, object]:
    """`pretrain` on real token shards: the loop's steps/s (log intervals after the first, which
    holds the warm-up) and the share of that time spent getting batches from TokenWindows."""
    from netflowgen.train.pretrain import PretrainConfig, pretrain  # imports the tokenizer: only when asked

    every = max(1, steps // 5)
    train = TrainConfig(steps=steps, batch_size=batch_size, warmup_steps=min(100, steps), log_every=every,
                        eval_every=10 * steps, checkpoint_every=10 * steps, eval_batches=10, precision=precision)
    with tempfile.TemporaryDirectory() as tmp:
        contention.start()
        t = time.perf_counter()
        _, model = pretrain(PretrainConfig(tokens, size), train, Path(tmp) / "run", device=device, show_progress=False)
        wall = time.perf_counter() - t
        share = contention.stop()
        records = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    logs = [r for r in records if "steps_per_s" in r]
    spans = [(r["step"] - prev, r) for prev, r in zip([0] + [r["step"] for r in logs], logs)]
    spans = spans[1:] or spans  # the first interval holds the warm-up
    seconds = sum(n / r["steps_per_s"] for n, r in spans)
    rate = sum(n for n, _ in spans) / seconds
    data_share = sum(r["data_share"] * n / r["steps_per_s"] for n, r in spans) / seconds
    cfg = model.cfg
    return {"real_tokens": str(tokens), "real_bins": " ".join(map(str, cfg.bins)), "real_precision": precision, "real_steps": steps,
            "real_wall_s": wall, "real_steps_per_s": rate, "real_data_share": data_share,
            "real_flops": rate * model.flops_per_step() * batch_size * cfg.context, "real_others_cpu_share": share}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="small", choices=list(SIZES))
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--features", type=int, default=24, help="traffic features (the registry has 24)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--no-bf16", action="store_true", help="skip the bf16 autocast figures")
    ap.add_argument("--tokens", type=Path, default=None, help="also time `pretrain` on these token shards")
    ap.add_argument("--real-steps", type=int, default=50)
    ap.add_argument("--real-precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started = time.perf_counter()
    cfg = FlowGPTConfig(bins=(10,) * args.features, n_nodes=1000, n_groups=100, **SIZES[args.size])
    tokens = args.batch_size * cfg.context
    probe = FlowGPT(cfg)
    flops_per_step = probe.flops_per_step() * tokens
    console = Console(stderr=True)
    contention = Contention()
    results: dict[str, object] = {
        "size": args.size, "device": args.device, "threads": torch.get_num_threads(),
        "batch_size": args.batch_size, "context": cfg.context, "parameters": probe.num_params(),
        "matmul_parameters": probe.matmul_params(), "flops_per_step": flops_per_step,
        "flops_counted": "6 x matmul_parameters (block projections, heads) + causal attention 6 x layers x d x (T + 1), "
                         "per position; the embedding_bag input layer, embeddings, norms, softmax, optimizer: 0",
    }
    with Progress(console=console, disable=args.json) as progress:
        contention.start()
        peak32 = model_peak(cfg, tokens, torch.float32, args.device)
        results["matmul_peak_fp32_flops"] = peak32
        results["peak_others_cpu_share"] = contention.stop()
        model = FlowGPT(cfg).to(args.device)
        fp32 = train_rate(model, batch(cfg, args.batch_size, args.device), args.steps, None, args.device, progress, "fp32", contention)
        results["fp32_others_cpu_share"] = contention.shares[-1] if contention.shares else None
        results["fp32_steps_per_s"] = fp32
        results["fp32_flops"] = fp32 * flops_per_step
        results["fp32_utilization_vs_fp32_matmul_peak"] = fp32 * flops_per_step / peak32
        results["fp32_steps_of_traffic_per_s"] = fp32 * tokens
        peak16 = None
        if not args.no_bf16:
            model = FlowGPT(cfg).to(args.device)
            bf16 = train_rate(model, batch(cfg, args.batch_size, args.device), args.steps, torch.bfloat16, args.device, progress, "bf16",
                              contention)
            results["bf16_others_cpu_share"] = contention.shares[-1] if contention.shares else None
            peak16 = model_peak(cfg, tokens, torch.bfloat16, args.device)
            results["matmul_peak_bf16_flops"] = peak16
            results["bf16_steps_per_s"] = bf16
            results["bf16_speedup_vs_fp32"] = bf16 / fp32
            results["bf16_utilization_vs_bf16_matmul_peak"] = bf16 * flops_per_step / peak16
    results["synthetic_wall_s"] = time.perf_counter() - started
    if args.tokens is not None:
        real = real_loop(args.tokens, args.size, args.real_steps, args.batch_size, args.real_precision, args.device, contention)
        amp = autocast_dtype(args.real_precision, torch.device(args.device), cfg.d_model)  # what the loop chose
        if amp is not None and peak16 is None:
            peak16 = model_peak(cfg, tokens, torch.bfloat16, args.device)
        peak = peak16 if amp is not None else peak32
        real["real_autocast"] = str(amp).replace("torch.", "") if amp else "fp32"
        real["real_utilization_vs_matmul_peak"] = float(real["real_flops"]) / float(peak)  # type: ignore[arg-type]
        results |= real
    results["wall_s"] = time.perf_counter() - started
    busy = max(contention.shares, default=0.0)
    results["max_others_cpu_share"] = busy
    if busy > 0.1:
        console.print(f"[yellow]warning: other processes used up to {busy:.0%} of the CPUs while this ran; "
                      "these figures are not this machine's (rerun when it is idle)")
    if args.json:
        print(json.dumps(results, indent=1))
        return
    t = Table("figure", "value", title=f"FlowGPT-{args.size} training on {args.device}", title_justify="left")
    for k, v in results.items():
        t.add_row(k, f"{v:,.3g}" if isinstance(v, float) else str(v))
    Console().print(t)


if __name__ == "__main__":
    main()
