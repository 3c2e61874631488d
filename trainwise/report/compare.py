"""Runs side by side: `list_runs` (what ``trainwise runs DIR`` prints) and `compare_runs` (one HTML page with the
runs' curves overlaid and their configs side by side, differences highlighted). Both read the run files as data:
summary.json, metrics.csv and config.yaml; no model is rebuilt and no code runs."""
from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Any

from ..config import read_yaml_mapping
from ..errors import TrainwiseError
from ..runs import atomic_write, check_output_file, read_metrics_csv
from ..saved import read_summary
from .html import PAGE_CSS, esc, html_table

__all__ = ["list_runs", "compare_runs", "RUN_COLUMNS"]

RUN_COLUMNS = ("name", "data", "model", "status", "best validation", "test", "time")


def _main(metrics: dict[str, float] | None) -> tuple[str, float] | None:
    """The headline metric of a metrics dict: accuracy, else R², else the loss."""
    if not metrics:
        return None
    for name in ("accuracy", "r2", "loss"):
        key = next((k for k in metrics if k.endswith("/" + name)), None)
        if key is not None and metrics[key] is not None:
            return key, metrics[key]
    return None


def _fmt(pair: tuple[str, float] | None) -> str:
    return f"{pair[0]} {pair[1]:.4f}" if pair and isinstance(pair[1], (int, float)) else ""


def list_runs(directory: str | Path = "runs") -> list[dict[str, Any]]:
    """One row per run folder directly in ``directory`` (those with a summary.json), newest first: name, data,
    model, status, the best epoch's monitored validation value, the test's main metric, wall time.

    >>> list_runs("/nonexistent")
    Traceback (most recent call last):
    ...
    trainwise.errors.TrainwiseError: '/nonexistent' is not a folder. HINT: give the folder that holds your runs (default: runs)
    """
    root = Path(directory)
    if not root.is_dir():
        raise TrainwiseError(f"'{root}' is not a folder", hint="give the folder that holds your runs (default: runs)")
    rows = []
    for path in sorted((p for p in root.iterdir() if (p / "summary.json").is_file()), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            s = read_summary(path / "summary.json")
        except TrainwiseError as e:  # one damaged run does not hide the others
            rows.append({"name": path.name, "data": "", "model": "", "status": f"unreadable: {e.message}", "best validation": "",
                         "test": "", "time": "", "path": str(path)})
            continue
        monitor, best = s.get("monitor"), s.get("best") or {}
        rows.append({"name": path.name, "data": (s.get("data") or {}).get("name", ""),
                     "model": (s.get("model") or {}).get("spec", ""), "status": s.get("status", ""),
                     "best validation": _fmt((monitor, best[monitor])) if monitor in best else _fmt(_main(best)),
                     "test": _fmt(_main(s.get("test"))),
                     "time": f"{s['wall_time_s']:.1f} s" if isinstance(s.get("wall_time_s"), (int, float)) else "",
                     "path": str(path)})
    return rows


def compare_runs(run_dirs: list[str | Path], output: str | Path = "compare.html") -> Path:
    """Write one self-contained HTML page comparing ``run_dirs``: a table of their results, their learning
    curves overlaid (loss and main metric, train dashed, validation solid), and their configs side by side with
    the keys that differ highlighted. Returns the page's path."""
    if len(run_dirs) < 2:
        raise TrainwiseError(f"compare needs at least two runs, got {len(run_dirs)}", hint="trainwise compare RUN_A RUN_B [...]")
    output = Path(output)
    check_output_file(output)
    runs = []
    for d in map(Path, run_dirs):
        if not (d / "summary.json").is_file() or not (d / "config.yaml").is_file():
            raise TrainwiseError(f"'{d}' is not a trainwise run (no summary.json and config.yaml)",
                                 hint="give run directories that `trainwise fit` wrote (see `trainwise runs`)")
        runs.append({"name": d.name, "path": d, "summary": read_summary(d / "summary.json"),
                     "config": read_yaml_mapping(d / "config.yaml", "config", "give the run's own config.yaml"),
                     "metrics": read_metrics_csv(d / "metrics.csv")})
    names = _unique([r["name"] for r in runs])
    results = [[n, (r["summary"].get("data") or {}).get("name", ""), (r["summary"].get("model") or {}).get("spec", ""),
                r["summary"].get("status", ""), r["summary"].get("epochs_run", ""), r["summary"].get("best_epoch", ""),
                _fmt(_main(r["summary"].get("best"))), _fmt(_main(r["summary"].get("test")))] for n, r in zip(names, runs)]
    keys = sorted(set().union(*(r["config"] for r in runs)))
    differ = [k for k in keys if len({repr(r["config"].get(k)) for r in runs}) > 1]
    config_rows = "".join(
        f"<tr{' class=diff' if k in differ else ''}><th>{esc(k)}</th>" + "".join(f"<td>{esc(r['config'].get(k, ''))}</td>" for r in runs)
        + "</tr>" for k in keys)
    parts = [f"<h1>trainwise: {len(runs)} runs compared</h1>",
             '<h2 id="results">Results</h2>',
             html_table(results, ["run", "data", "model", "status", "epochs", "best epoch", "best validation", "test"]),
             '<h2 id="curves">Learning curves</h2>', _curves(runs, names),
             f'<h2 id="config">Configuration</h2><p>{len(differ)} of {len(keys)} settings differ (highlighted): '
             f"{esc(', '.join(differ)) or 'none'}</p>",
             "<table><tr><th>setting</th>" + "".join(f"<th>{esc(n)}</th>" for n in names) + f"</tr>{config_rows}</table>"]
    css = PAGE_CSS + "tr.diff td,tr.diff th{background:#fff3c4;font-weight:bold}"
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>trainwise: compare</title><style>{css}</style></head>"
            f"<body>{''.join(parts)}</body></html>")
    atomic_write(output, page)
    return output


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


def _curves(runs: list[dict[str, Any]], names: list[str]) -> str:
    """The loss and the main metric per epoch, every run in its own colour (train dashed, validation solid)."""
    import matplotlib  # lazy: plotting loads only where a figure is drawn

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # lazy: as above

    metric = next((m for m in ("accuracy", "r2") if any(f"val/{m}" in row or f"train/{m}" in row
                                                         for r in runs for row in r["metrics"][:1])), None)
    panels = ["loss"] + ([metric] if metric else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, name in zip(axes[0], panels):
        for i, (run, label) in enumerate(zip(runs, names)):
            rows, color = run["metrics"], f"C{i % 10}"
            epochs = [row.get("epoch") for row in rows]
            for split, style in (("train", "--"), ("val", "-")):
                values = [row.get(f"{split}/{name}", math.nan) for row in rows]
                if any(not math.isnan(v) for v in values):
                    ax.plot(epochs, values, style, color=color, label=f"{label} ({split})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return f'<img alt="learning curves" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'
