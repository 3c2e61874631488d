"""report.html: one self-contained page per run (images inline) — config, data (with sample images), model,
curves, diagnostics, test metrics, confusion matrix, test predictions (images) or the regression fit. Rebuilt from
the run directory alone by `trainwise report RUN_DIR`."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from ..config import load_config
from ..models.summary import summarize
from ..runs import atomic_write
from ..saved import load_run, read_summary

__all__ = ["write_report", "esc", "html_table", "PAGE_CSS"]

PAGE_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f4f4f4}pre{background:#f7f7f7;padding:.8em;overflow:auto}img{max-width:100%}
figure{margin:1em 0}figcaption{color:#555;font-size:.9em}
.info{color:#0b6a8a}.warning{color:#9a6200}.error{color:#b00020}.sev{font-weight:bold;text-transform:uppercase}"""


def esc(x: Any) -> str:
    return html.escape(str(x))


def html_table(rows: list[list[Any]], head: list[str] | None = None) -> str:
    h = "<tr>" + "".join(f"<th>{esc(c)}</th>" for c in head) + "</tr>" if head else ""
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{h}{body}</table>"


def _img(path: Path, alt: str) -> str:
    if not path.is_file():
        return f"<p><em>{esc(alt)}: not available</em></p>"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def _figure(path: Path, alt: str, caption: str) -> str:
    """A plot with its one-line caption; nothing when the run has no such file (the plot does not apply to it)."""
    if not path.is_file():
        return ""
    return f"<figure>{_img(path, alt)}<figcaption>{esc(caption)}</figcaption></figure>"


def write_report(run_dir: str | Path, model=None, *, trust_code: bool = False) -> Path:
    """Write ``run_dir/report.html`` from the run's files and return its path. ``model``: the trained module
    (the writer passes it; nothing is rebuilt then). Without it the model is rebuilt by `load_run`, which
    refuses a model that is user code unless ``trust_code``."""

    run_dir = Path(run_dir)
    if model is None:
        run = load_run(run_dir, trust_code=trust_code)
        model, s, cfg = run.model, run.summary, run.config
    else:
        s, cfg = read_summary(run_dir / "summary.json"), load_config(run_dir / "config.yaml")
    data = s.get("data", {})
    parts = [f"<h1>trainwise run: {esc(data.get('name', run_dir.name))}</h1>",
             f"<p>{esc(s.get('status'))} — {esc(s.get('stop_reason'))}; {s.get('epochs_run')} epochs, best epoch "
             f"{s.get('best_epoch')} by {esc(s.get('monitor'))}; {s.get('wall_time_s')} s on {esc(s.get('device'))}</p>"]

    parts.append('<h2 id="test">Test metrics</h2>')
    test = s.get("test")
    parts.append(html_table([[k, f"{v:.4f}"] for k, v in test.items()], ["metric", "value"]) if test else
                 "<p>The test split was not evaluated (the run did not finish, or there is no test split).</p>")
    if s.get("test_confusion"):
        names = data.get("class_names") or [str(i) for i in range(len(s["test_confusion"]))]
        parts.append("<h3>Confusion matrix (rows: true class, columns: predicted)</h3>")
        parts.append(html_table([[n, *row] for n, row in zip(names, s["test_confusion"])], ["true \\ predicted", *names]))
        parts.append(_img(run_dir / "confusion.png", "confusion matrix"))
        if s.get("test_per_class"):
            parts.append('<h3 id="per-class">Per class (test split)</h3>')
            parts.append(html_table([[r["class"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", r["support"]]
                                 for r in s["test_per_class"]], ["class", "precision", "recall", "F1", "support"]))
        total = sum(map(sum, s["test_confusion"]))
        wrong = total - sum(row[i] for i, row in enumerate(s["test_confusion"]))
        parts.append(_figure(run_dir / "test_predictions.png", "test predictions",
                             f"Test images labelled predicted / true: {wrong} of {total} wrong; the wrong ones are shown first, "
                             "in red and framed."))
    if s.get("test_per_class") and not s.get("test_confusion"):  # several label columns: a row per label
        parts.append('<h3 id="per-label">Per label (test split; support: rows with a 1)</h3>')
        parts.append(html_table([[r["label"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", r["support"]]
                                 for r in s["test_per_class"]], ["label", "precision", "recall", "F1", "support"]))
    parts.append(_figure(run_dir / "regression.png", "regression: predicted vs true and residuals",
                         f"Test split in the target's own units ({data.get('target')}): predicted vs true (dashed: y = x) "
                         "and residuals (true − predicted) vs predicted."))

    parts.append('<h2 id="diagnostics">Diagnostics</h2>')
    diags = s.get("diagnostics") or []
    if not diags:
        parts.append("<p>None: no sign of over- or underfitting, learning-rate or gradient trouble.</p>")
    for d in diags:
        parts.append(f'<p class="{esc(d["severity"])}"><span class="sev">{esc(d["severity"])}</span> '
                     f'<b>{esc(d["code"])}</b>: {esc(d["evidence"])}.<br>Advice: {esc(d["advice"])}.</p>')

    parts.append('<h2 id="curves">Learning curves</h2>')
    parts.append(_img(run_dir / "curves.png", "learning curves"))
    parts.append(_img(run_dir / "gradient_flow.png", "gradient flow"))

    parts.append('<h2 id="data">Data</h2>')
    rows = [["name", data.get("name")], ["task", data.get("task")], ["target", data.get("target")],
            ["input shape", data.get("input_shape")]] + [[f"{k} rows", v] for k, v in (data.get("sizes") or {}).items()]
    parts.append(html_table(rows))
    if data.get("train_class_counts"):
        counts = data["train_class_counts"]
        total = sum(counts.values())
        parts.append("<h3>Class balance (training split)</h3>")
        parts.append(html_table([[k, v, f"{100 * v / total:.1f}%"] for k, v in counts.items()], ["class", "rows", "share"]))
    augment = f", then as the training batches see them (--augment {s['augment']})" if s.get("augment") else ""
    parts.append(_figure(run_dir / "samples.png", "training images",
                         f"Training images with their labels, as loaded (normalization undone){augment}."))

    parts.append('<h2 id="model">Model</h2>')
    summary = summarize(model, tuple(data.get("input_shape") or ()), batch_size=cfg.batch_size,
                        device=next(model.parameters()).device if any(True for _ in model.parameters()) else "cpu")
    parts.append(f"<pre>{esc(s.get('model', {}).get('spec', ''))}\n{esc(summary)}</pre>")

    parts.append('<h2 id="config">Configuration</h2>')
    parts.append(f"<pre>{esc((run_dir / 'config.yaml').read_text())}</pre>")
    parts.append(f"<p><small>{esc(json.dumps(s.get('versions', {})))}</small></p>")

    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>trainwise: {esc(data.get('name', ''))}</title>"
            f"<style>{PAGE_CSS}</style></head><body>{''.join(parts)}</body></html>")
    out = run_dir / "report.html"
    atomic_write(out, page)
    return out
