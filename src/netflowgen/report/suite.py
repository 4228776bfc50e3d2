"""The report of a benchmark suite: Markdown and HTML with PNG plots, from ``results.json``.

Plots: for every task, PR-AUC against the label budget for every method (mean and spread over
seeds); for trace-driven tasks, PR-AUC and episodes detected against the attack intensity; and a
timeline of one test node (traffic, labels, the scores and alerts of FlowGPT and the best
baseline). Everything is written under temporary names and renamed into place.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import polars as pl

__all__ = ["comparison_table", "intensity_table", "main_table", "summary_text", "verdict_sentences", "write_report"]

_COLUMNS = [("pr_auc", "PR-AUC"), ("roc_auc", "ROC-AUC"), ("f1", "F1"), ("precision", "precision"), ("recall", "recall"),
            ("detected_fraction", "episodes detected"), ("mean_delay", "delay (steps)"),
            ("false_alerts_per_node_day", "false alerts / node-day")]


def _fmt(stat: dict[str, Any] | None, digits: int = 3) -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    mean, std = stat["mean"], stat.get("std")
    text = f"{mean:.{digits}f}" if abs(mean) < 1000 else f"{mean:,.0f}"
    return text + (f" ± {std:.{digits}f}" if std is not None and abs(mean) < 1000 else "")


def main_table(results: dict[str, Any]) -> list[dict[str, str]]:
    """One row per task, method and budget: the metrics as mean ± std over seeds."""
    rows = []
    for name, task in results["tasks"].items():
        for s in task.get("summary", []):
            row = {"task": name, "method": s["method"], "budget": s["budget"], "seeds": str(s["seeds"])}
            for key, title in _COLUMNS:
                row[title] = _fmt(s["metrics"].get(key), 1 if key in ("mean_delay", "false_alerts_per_node_day") else 3)
            rows.append(row)
    return rows


def _ci(d: dict[str, Any] | None, digits: int = 3, signed: bool = False) -> str:
    if not d or d.get("value") is None:
        return "–"
    f = f"{{:+.{digits}f}}" if signed else f"{{:.{digits}f}}"
    return f"{f.format(d['value'])} [{f.format(d['low'])}, {f.format(d['high'])}]"


def _methods_in_order(results: dict[str, Any], present: set[str]) -> list[str]:
    known = results.get("methods", [])
    return [m for m in known if m in present] + sorted(present - set(known))


def corpus_table(corpus: dict[str, Any]) -> list[dict[str, str]]:
    """Per dataset of a pre-training corpus: its size, and the run's and baselines' held-out
    next-step cross-entropy on active steps."""
    rows = []
    for name, d in corpus.items():
        ce, seasonal = d.get("active", {}), d.get("seasonal active rows", {})
        row = {"dataset": name, "flows": f"{d['flows']:,}", "nodes": f"{d['nodes']:,}", "node-steps": f"{d['node_steps']:,}",
               "held-out active steps": f"{ce.get('flowgpt', {}).get('targets', 0):,}"}
        for m in ("flowgpt", "persistence", "node-frequency"):
            row[m] = f"{ce[m]['mean_cross_entropy']:.3f}" if m in ce and ce[m]["targets"] else "–"
        both = "flowgpt" in seasonal and "seasonal-naive" in seasonal and seasonal["flowgpt"]["targets"]
        row["seasonal-naive (flowgpt) a day on"] = (f"{seasonal['seasonal-naive']['mean_cross_entropy']:.3f} "
                                                    f"({seasonal['flowgpt']['mean_cross_entropy']:.3f})") if both else "–"
        rows.append(row)
    return rows


def comparison_table(results: dict[str, Any]) -> list[dict[str, str]]:
    """One row per task, budget and method: test PR-AUC with its 95% interval (bootstrap over
    victims) and the paired differences from the best baseline and from scratch."""
    rows = []
    for name, task in results["tasks"].items():
        for budget, c in ((task.get("comparisons") or {}).get("budgets", {})).items():
            ref = c.get("reference", "")
            for m in _methods_in_order(results, set(c["pr_auc"])):
                d, sc = (c.get("vs_reference") or {}).get(m), (c.get("vs_scratch") or {}).get(m)
                zl, vb = (c.get("vs_zero_label") or {}).get(m), (c.get("vs_base") or {}).get(m)
                rows.append({"task": name, "budget": budget, "method": m, "PR-AUC [95% CI]": _ci(c["pr_auc"][m]),
                             "best baseline": ref,
                             "vs best baseline": (_ci(d, signed=True) + f" {d['verdict']}") if d else ("reference" if m == ref else "–"),
                             "vs scratch": (_ci(sc, signed=True) + f" {sc['verdict']}") if sc else "–",
                             "vs zero-label surprise": (_ci(zl, signed=True) + f" {zl['verdict']}") if zl else "–",
                             "vs its base (ablation)": (_ci(vb, signed=True) + f" {vb['verdict']} vs {vb['base']}") if vb else "–"})
    return rows


def intensity_table(results: dict[str, Any], task: dict[str, Any]) -> list[dict[str, str]]:
    """One row per attack intensity and method of a trace-driven task: test PR-AUC with its
    interval over victims at every budget (the intensity's positives against every test
    negative), with the difference from that budget's best baseline in words."""
    levels = task.get("intensity_comparisons") or {}
    budgets = list(dict.fromkeys(b for lv in levels.values() for b in lv.get("budgets", {})))
    rows = []
    for level in sorted(levels, key=_intensity_key, reverse=True):
        lv = levels[level]
        methods = {m for c in lv["budgets"].values() for m in c["pr_auc"]}
        best = lv.get("best_single_feature") or {}
        for m in _methods_in_order(results, methods):
            row = {"intensity": level, "positive steps": f"{lv.get('positive_steps', 0):,}",
                   "best single feature": f"{best.get('name', '–')} {best['pr_auc']:.3f}" if best.get("pr_auc") is not None else "–",
                   "method": m}
            for b in budgets:
                c = lv["budgets"].get(b, {})
                d = (c.get("vs_reference") or {}).get(m)
                row[f"{b}: PR-AUC [95% CI]"] = _ci(c.get("pr_auc", {}).get(m)) + (
                    f" ({d['verdict']} vs {c['reference']})" if d else (" (best baseline)" if c.get("reference") == m else ""))
            rows.append(row)
    return rows


def verdict_sentences(results: dict[str, Any]) -> list[str]:
    """The comparisons in words: every win and loss against the best baseline; the rest are ties."""
    out = []
    for name, task in results["tasks"].items():
        for budget, c in ((task.get("comparisons") or {}).get("budgets", {})).items():
            ref = c.get("reference")
            for m, d in (c.get("vs_reference") or {}).items():
                if d["verdict"] in ("wins", "loses"):
                    word = "beats" if d["verdict"] == "wins" else "is beaten by"
                    out.append(f"{name}, budget {budget}: {m} {word} the best baseline ({ref}) by {_ci(d, signed=True)}.")
            ties = [m for m, d in (c.get("vs_reference") or {}).items() if d["verdict"] == "tie"]
            if ties:
                out.append(f"{name}, budget {budget}: {', '.join(ties)} tie with {ref} (the interval of the difference holds 0).")
    return out


def summary_text(results: dict[str, Any]) -> str:
    """The suite's headline as plain text that fits 80 columns: per task and budget, every
    method's test PR-AUC with its 95% interval (bootstrap over victims) and its paired
    difference from the best baseline, in words: a win or a loss only when the difference's
    interval excludes 0, a tie otherwise. A log, ``tee`` or CI keeps it readable, where a wide
    Rich table is cut into cells like ``0.…``; every other metric is in report.md."""
    lines = []
    for name, task in results["tasks"].items():
        lines.append(f"{name}: {task.get('test_positive', 0):,} test attack steps"
                     + (f" in {task['test_episodes']:,} episodes" if "test_episodes" in task else "")
                     + (f" at {task['test_victims']:,} victims" if "test_victims" in task else ""))
        best = task.get("best_single_feature")
        if best:
            lines.append(f"  best single causal feature: {best['name']} {best['pr_auc']:.3f}" + (" (trivial)" if task.get("trivial") else ""))
        comparisons = (task.get("comparisons") or {}).get("budgets", {})
        if not comparisons:
            lines += ["  no results" + (": " + "; ".join(task["errors"][:2]) if task.get("errors") else ""), ""]
            continue
        for budget, c in comparisons.items():
            ref = c.get("reference")
            lines.append(f"  budget {budget}: PR-AUC [95% CI]" + (f"; difference from the best baseline, {ref}" if ref else ""))
            for m in _methods_in_order(results, set(c["pr_auc"])):
                row = f"    {m:<18}{_ci(c['pr_auc'][m]):>22}"
                d = (c.get("vs_reference") or {}).get(m)
                if d:
                    row += f"  {_ci(d, 2, signed=True):>20} {d['verdict']}"
                lines.append(row.rstrip())
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _markdown_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(no results)\n"
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r[h] for h in head) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_report(results: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write report.md, report.html and plots/ into ``out``; returns their paths."""
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    figures: dict[str, list[Path]] = {}
    for name, task in results["tasks"].items():
        figures[name] = [p for p in (_budget_plot(name, task, results, plots), _intensity_plot(name, task, plots),
                                     _timeline_plot(name, task, out, plots)) if p is not None]
    md = _markdown(results, figures, out)
    paths = {"markdown": out / "report.md", "html": out / "report.html"}
    _atomic_write(paths["markdown"], md)
    _atomic_write(paths["html"], _html(results, figures, out))
    return paths


def _task_header(name: str, task: dict[str, Any]) -> list[str]:
    lines = [f"## {name}", "", task.get("description", ""), ""]
    split = task["split"]
    lines.append(f"- step {task['step_seconds']:g} s; {task['rows']:,} node-steps of {task['nodes']} nodes; "
                 f"fitting part {task['fit_rows']:,} steps ({task['fit_positive']} attack), "
                 f"test part {task['test_rows']:,} steps ({task['test_positive']} attack)")
    if "test_episodes" in task:
        lines.append(f"- attack episodes: {task['fit_episodes']:,} in the fitting part, {task['test_episodes']:,} in the test part"
                     + (f" at {task['test_victims']:,} victims" if "test_victims" in task else ""))
    lines.append(f"- split: test from {', '.join(f'{k} {v}' for k, v in split['cuts'].items())}"
                 + (f"; {len(split['test_nodes']):,} unseen nodes ({', '.join(split['test_nodes'][:8])}"
                    + (", ..." if len(split["test_nodes"]) > 8 else "") + ")" if split["test_nodes"] else "")
                 + (f"; held-out attack types {', '.join(split['test_only'])}" if split["test_only"] else ""))
    for note in split.get("notes", []):
        lines.append(f"- {note}")
    best = task.get("best_single_feature")
    if best:
        verdict = " — **trivial task** (one feature alone is above 0.95)" if task.get("trivial") else ""
        kind = "causal feature (its value, or `:z` its z-score against the node's past)" if best.get("causal") else "feature"
        lines.append(f"- best single {kind} on the test part: `{best['name']}`, PR-AUC {best['pr_auc']:.3f}{verdict}")
    for err in task.get("errors", [])[:10]:
        lines.append(f"- not run: {err}")
    return lines


def _markdown(results: dict[str, Any], figures: dict[str, list[Path]], out: Path) -> str:
    lines = [f"# netflowgen benchmark: {results['suite']}", ""]
    if results.get("synthetic"):
        lines += ["> **SYNTHETIC DATA.** Every figure below comes from the built-in simulator; none of it is a claim "
                  "about real traffic.", ""]
    if results.get("description"):
        lines += [results["description"], ""]
    lines += [f"Methods: {', '.join(results['methods'])}; label budgets: {', '.join(results['budgets'])}; "
              f"seeds: {', '.join(map(str, results['seeds']))}; {results.get('seconds', 0):.0f} s in all.", ""]
    for step, info in results.get("pretrain", {}).items():
        final = info.get("final") or {}
        lines.append(f"- pre-training at {step}: {info.get('size')} model, {info.get('parameters') or 0:,} parameters, "
                     f"{info.get('steps')} steps, held-out next-step loss {final.get('val_loss', float('nan')):.3f}")
    for step, info in results.get("pretrain", {}).items():
        corpus = info.get("corpus")
        if corpus:
            lines += ["", f"### Pre-training corpus at {step}: held-out next-step cross-entropy (nats, mean over features, "
                      "active steps; lower is better)", "", _markdown_table(corpus_table(corpus))]
    lines += ["", "## Comparisons (test part; 95% intervals from a bootstrap over victims, paired on the same draws)", "",
              _markdown_table(comparison_table(results)), ""]
    lines += [f"- {v}" for v in verdict_sentences(results)]
    lines += ["", "## Main table (mean ± std over seeds, test part only)", "", _markdown_table(main_table(results))]
    for name, task in results["tasks"].items():
        lines += _task_header(name, task) + [""]
        by_level = intensity_table(results, task)
        if by_level:
            lines += ["### By attack intensity (95% intervals over victims; each intensity's attack steps against "
                      "every test negative)", "", _markdown_table(by_level), ""]
        for fig in figures.get(name, []):
            lines += [f"![{fig.stem}]({fig.relative_to(out)})", ""]
    lines += ["## Definitions", "",
              "PR-AUC is average precision over the test part's node-steps. Thresholds are calibrated (max F1) on the "
              "calibration windows of each label draw, never on the test part. An episode is a run of attack steps of "
              "one node; its delay is the number of steps from its onset to the first alert inside it. False alerts "
              "per node-day count alerts on steps without attack per day of node time observed.", ""]
    return "\n".join(lines)


def _html(results: dict[str, Any], figures: dict[str, list[Path]], out: Path) -> str:
    esc = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             f"<title>netflowgen benchmark: {esc(results['suite'])}</title>",
             "<style>body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
             "td:first-child,td:nth-child(2){text-align:left}.synthetic{background:#fee;border:2px solid #c00;padding:1em}"
             "img{max-width:100%}</style></head><body>",
             f"<h1>netflowgen benchmark: {esc(results['suite'])}</h1>"]
    if results.get("synthetic"):
        parts.append("<p class='synthetic'><b>SYNTHETIC DATA.</b> Every figure below comes from the built-in simulator; "
                     "none of it is a claim about real traffic.</p>")
    if results.get("description"):
        parts.append(f"<p>{esc(results['description'])}</p>")
    comparisons = comparison_table(results)
    parts.append("<h2>Comparisons (test part; 95% intervals from a bootstrap over victims, paired on the same draws)</h2>")
    if comparisons:
        parts.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in comparisons[0]) + "</tr>")
        for r in comparisons:
            parts.append("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in r.values()) + "</tr>")
        parts.append("</table>")
    parts.append("<ul>" + "".join(f"<li>{esc(v)}</li>" for v in verdict_sentences(results)) + "</ul>")
    rows = main_table(results)
    parts.append("<h2>Main table (mean ± std over seeds, test part only)</h2>")
    if rows:
        head = list(rows[0])
        parts.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>")
        for r in rows:
            parts.append("<tr>" + "".join(f"<td>{esc(r[h])}</td>" for h in head) + "</tr>")
        parts.append("</table>")
    for name, task in results["tasks"].items():
        header = _task_header(name, task)
        parts.append(f"<h2>{esc(name)}</h2><p>{esc(task.get('description', ''))}</p><ul>")
        parts += [f"<li>{esc(line[2:])}</li>" for line in header[4:] if line.startswith("- ")]
        parts.append("</ul>")
        by_level = intensity_table(results, task)
        if by_level:
            parts.append("<h3>By attack intensity (95% intervals over victims)</h3><table><tr>"
                         + "".join(f"<th>{esc(h)}</th>" for h in by_level[0]) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{esc(v)}</td>" for v in r.values()) + "</tr>" for r in by_level]
            parts.append("</table>")
        for fig in figures.get(name, []):
            parts.append(f"<p><img src='{esc(str(fig.relative_to(out)))}' alt='{esc(fig.stem)}'></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


# --- plots -------------------------------------------------------------------------------------


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def _budget_plot(name: str, task: dict[str, Any], results: dict[str, Any], plots: Path) -> Path | None:
    summary = task.get("summary") or []
    if not summary:
        return None
    plt = _plt()
    budgets = results["budgets"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title in ((axes[0], "pr_auc", "PR-AUC"), (axes[1], "detected_fraction", "episodes detected")):
        for method in results["methods"]:
            xs, ys, es = [], [], []
            for i, b in enumerate(budgets):
                row = next((s for s in summary if s["method"] == method and s["budget"] == b), None)
                stat = row["metrics"].get(key) if row else None
                if stat and stat.get("mean") is not None:
                    xs.append(i)
                    ys.append(stat["mean"])
                    es.append(stat.get("std") or 0.0)
            if xs:
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=method)
        best = task.get("best_single_feature")
        if key == "pr_auc" and best:
            ax.axhline(best["pr_auc"], color="grey", ls="--", lw=1, label=f"best feature ({best['name']})")
        ax.set_xticks(range(len(budgets)), budgets)
        ax.set_xlabel("label budget")
        ax.set_ylabel(title)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{name}: detection against the label budget" + (" (SYNTHETIC)" if results.get("synthetic") else ""))
    path = _save(fig, plots / f"{name}-budget.png")
    plt.close(fig)
    return path


def _intensity_plot(name: str, task: dict[str, Any], plots: Path) -> Path | None:
    rows = [s for s in task.get("summary") or [] if s.get("by_intensity")]
    if not rows:
        return None
    plt = _plt()
    budget = rows[-1]["budget"]
    rows = [s for s in rows if s["budget"] == budget]
    levels = sorted({k for s in rows for k in s["by_intensity"]}, key=_intensity_key)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title in ((axes[0], "pr_auc", "PR-AUC"), (axes[1], "detected_fraction", "episodes detected")):
        for s in rows:
            ys = [(s["by_intensity"].get(lv, {}).get(key) or {}).get("mean") for lv in levels]
            es = [(s["by_intensity"].get(lv, {}).get(key) or {}).get("std") or 0.0 for lv in levels]
            pts = [(i, y, e) for i, (y, e) in enumerate(zip(ys, es)) if y is not None]
            if pts:
                ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3,
                            label=s["method"])
        ax.set_xticks(range(len(levels)), levels)
        ax.set_xlabel("attack intensity")
        ax.set_ylabel(title)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{name}: detection against attack intensity (budget {budget})")
    path = _save(fig, plots / f"{name}-intensity.png")
    plt.close(fig)
    return path


def _intensity_key(text: str) -> float:
    try:
        return float(text.rstrip("x")) + (1000.0 if text.endswith("x") else 0.0)
    except ValueError:
        return 0.0


def _timeline_plot(name: str, task: dict[str, Any], out: Path, plots: Path) -> Path | None:
    folder = out / "tasks" / name
    series_path = folder / "series.parquet"
    scores = {p.stem.removeprefix("scores-"): p for p in sorted(folder.glob("scores-*.parquet"))}
    if not series_path.is_file() or not scores:
        return None
    plt = _plt()
    series = pl.read_parquet(series_path)
    first = pl.read_parquet(next(iter(scores.values())))
    attacked = first.filter(pl.col("label") & pl.col("test")) if "test" in first.columns else first.filter(pl.col("label"))
    if attacked.height == 0:
        return None
    node = attacked["node"][0]
    onset = attacked.filter(pl.col("node") == node)["step"].min()
    lo, hi = onset - (onset - series["step"].min()) * 0 - _span(task) * 40, onset + _span(task) * 40  # type: ignore[operator]
    mine = series.filter((pl.col("node") == node) & pl.col("step").is_between(lo, hi)).sort("step")
    fig, axes = plt.subplots(3, 1, figsize=(11, 6.5), sharex=True)
    t = mine["step"].to_list()
    axes[0].plot(t, mine["flows_in"].to_list(), label="flows in", lw=1)
    axes[0].plot(t, mine["flows_out"].to_list(), label="flows out", lw=1)
    axes[0].plot(t, mine["packets_in"].to_list(), label="packets in", lw=1, alpha=0.6)
    axes[0].set_yscale("symlog")
    axes[0].legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("per step")
    lab = first.filter((pl.col("node") == node) & pl.col("step").is_between(lo, hi)).sort("step")
    for ax in axes:
        for s, y in zip(lab["step"].to_list(), lab["label"].to_list()):
            if y:
                ax.axvspan(s, s + _span(task), color="red", alpha=0.15, lw=0)
    for ax, method in zip(axes[1:], [m for m in ("flowgpt", "lightgbm", "volume", "scratch", "surprise") if m in scores][:2]):
        sc = pl.read_parquet(scores[method]).filter((pl.col("node") == node) & pl.col("step").is_between(lo, hi)).sort("step")
        ax.plot(sc["step"].to_list(), sc["score"].to_list(), lw=1, label=f"{method} score")
        thr = sc["threshold"][0] if "threshold" in sc.columns else None
        if thr is not None:
            ax.axhline(thr, color="k", ls=":", lw=1, label="threshold")
        al = sc.filter(pl.col("alert"))
        ax.scatter(al["step"].to_list(), al["score"].to_list(), color="red", s=12, zorder=3, label="alert")
        ax.legend(fontsize=7, loc="upper left")
        ax.set_ylabel("score")
    fig.suptitle(f"{name}: node {node} around an attack in the test part (red: attack steps)")
    path = _save(fig, plots / f"{name}-timeline.png")
    plt.close(fig)
    return path


def _span(task: dict[str, Any]) -> Any:
    from datetime import timedelta

    return timedelta(seconds=task["step_seconds"])


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
