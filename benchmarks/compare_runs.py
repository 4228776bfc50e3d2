"""Two suite runs on the same split, compared paired: what changing the pre-training did.

A suite run compares methods within one pre-training. The scale curve (issue 12: pre-train on 1%,
10% and 100% of the corpus) and every other pre-training ablation need the same method compared
*across* runs: same tasks, same test rows, same label draws, different backbone. Each run's
``tasks/NAME/test_scores.npz`` holds every method's test scores per budget and seed; this script
checks that the two runs scored the very same rows with the same labels, then bootstraps over
victims exactly as the suite does (evaluate/uncertainty.py) and prints, per task, method and
budget: PR-AUC of A and B with 95% intervals, and A − B with the interval of the paired
difference (a win only when it excludes 0).

    python benchmarks/compare_runs.py runs/corpus-10 runs/corpus-100 --methods flowgpt,surprise [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from netflowgen.evaluate.suite import RESULTS_NAME, TEST_SCORES_NAME
from netflowgen.evaluate.uncertainty import Bootstrap, verdict


def _load(run: Path, task: str) -> dict[str, np.ndarray]:
    path = run / "tasks" / task / TEST_SCORES_NAME
    if not path.is_file():
        raise SystemExit(f"{path}: missing (a suite run from before test scores were saved?)")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def compare(a: Path, b: Path, methods: list[str] | None, replicates: int) -> dict[str, object]:
    ra, rb = (json.loads((r / RESULTS_NAME).read_text()) for r in (a, b))
    out: dict[str, object] = {"a": str(a), "b": str(b), "pretrain": {"a": ra.get("pretrain"), "b": rb.get("pretrain")},
                              "tasks": {}}
    for task in [t for t in ra["tasks"] if t in rb["tasks"]]:
        za, zb = _load(a, task), _load(b, task)
        for key in ("node", "step", "label"):
            if not np.array_equal(za[key], zb[key]):
                raise SystemExit(f"task {task}: the two runs scored different test rows or labels ({key} differs); "
                                 "compare runs of the same suite split only")
        seeds = min(len(ra["seeds"]), len(rb["seeds"]))
        boot = Bootstrap(za["node"], za["label"], seeds=seeds, replicates=replicates)
        pairs = {tuple(k.split("|")[1:3]) for k in za if k.startswith("score|")} & \
                {tuple(k.split("|")[1:3]) for k in zb if k.startswith("score|")}
        rows = []
        for method, budget in sorted(pairs):
            if methods and method not in methods:
                continue
            per = [[z[f"score|{method}|{budget}|{i}"].astype(np.float64) for i in range(seeds)
                    if f"score|{method}|{budget}|{i}" in z] for z in (za, zb)]
            if len(per[0]) != seeds or len(per[1]) != seeds:
                continue
            diff = boot.compare({"a": per[0], "b": per[1]}, "b")["a"]
            rows.append({"method": method, "budget": budget, "a": boot.pr_auc(per[0]).to_dict(),
                         "b": boot.pr_auc(per[1]).to_dict(), "a_minus_b": {**diff.to_dict(), "verdict": verdict(diff)}})
        out["tasks"][task] = {"victims": boot.victims, "rows": rows}  # type: ignore[index]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--methods", help="comma-separated (default: every method both runs scored)")
    p.add_argument("--replicates", type=int, default=1000)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    result = compare(args.a, args.b, args.methods.split(",") if args.methods else None, args.replicates)
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
        return

    def iv(e: dict) -> str:  # type: ignore[type-arg]
        return f"{e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}]" if e.get("value") is not None else "n/a"

    print(f"A = {args.a}\nB = {args.b}")
    for task, t in result["tasks"].items():  # type: ignore[union-attr]
        print(f"\n{task} ({t['victims']} test victims)")
        print(f"  {'method':<22}{'budget':<8}{'A':<24}{'B':<24}A - B")
        for r in t["rows"]:
            d = r["a_minus_b"]
            print(f"  {r['method']:<22}{r['budget']:<8}{iv(r['a']):<24}{iv(r['b']):<24}"
                  f"{d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] {d['verdict']}")


if __name__ == "__main__":
    main()
