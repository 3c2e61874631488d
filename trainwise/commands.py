"""The command line's commands: each takes the parsed arguments, calls the API and prints; returns the exit
status. `trainwise.cli` parses and dispatches here (this module loads torch; the parser and --help do not)."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from .api import check_fit, evaluate, fit, predict
from .config import RunConfig, load_config
from .console import console as make_console
from .console import secondary_rank
from .data import to_tensors
from .data.images import IMAGE_SUFFIXES
from .diagnose import explain_backprop, format_backprop, gradcheck
from .errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, TrainwiseError
from .export import export
from .models.summary import summarize
from .pipeline import build_batches, build_trainer, model_for
from .report import drawing
from .report.compare import RUN_COLUMNS, compare_runs, list_runs
from .report.html import write_report
from .report.writer import save_lr_find
from .runs import check_output_dir, new_run_dir
from .train import make_loss
from .train.distributed import launch, world_from_env
from .train.lr_finder import lr_find
from .tune import cross_validate, sanity, tune
from .tune.auto import auto

__all__ = ["HANDLERS", "run_command", "print_diagnostics"]


def _config_options(args: argparse.Namespace) -> dict[str, Any]:
    """The run options given on the command line (config flags are only present when given)."""
    return {k: v for k, v in vars(args).items() if k in RunConfig.model_fields}


def _auto(args: argparse.Namespace) -> int:
    options = _config_options(args)
    out = options.pop("run_dir", None)  # --run-dir: the folder auto writes (trials, best run, summary)
    result = auto(budget_minutes=args.budget_minutes, out=out, ensemble=args.ensemble, console=make_console(soft_wrap=True),
                  **options)
    print(f"{result['status']} in {result.get('wall_time_s', '?')} s; summary: {out or 'runs/'}")
    return EXIT_OK if result["status"] == "done" else EXIT_INTERRUPTED if result["status"] == "interrupted" else EXIT_FAILED


def _report(args: argparse.Namespace) -> int:
    print(f"report written to {write_report(args.run_dir, trust_code=args.trust_code)}")
    return 0


def _fit(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = _config_options(args)
    console = make_console(soft_wrap=True)
    if args.trust_code and not args.resume:
        raise TrainwiseError("--trust-code is for --resume (loading a run's model code); a new run imports the model you name "
                             "with --model or in --config without it", hint="leave --trust-code out")
    if args.resume:
        if args.config:
            raise TrainwiseError("--resume and --config cannot be combined", hint="--resume uses the run's own config.yaml")
        saved = Path(args.resume) / "config.yaml"
        nproc = load_config(saved).nproc if saved.is_file() else 1
        if nproc > 1 and world_from_env() is None:
            return launch(args.argv, nproc, run_dir=args.resume)
        if not secondary_rank():
            drawing.start()
        result = fit(resume=args.resume, console=console, trust_code=args.trust_code, **overrides)
        quiet = overrides.get("quiet", False)
    else:
        cfg = load_config(args.config, overrides) if args.config else RunConfig.build(overrides, source="option")
        if cfg.nproc > 1 and world_from_env() is None:
            return _launch(args, cfg)
        if not secondary_rank():
            drawing.start()  # matplotlib loads and the figures are drawn beside the training
        result = fit(config=cfg, console=console, to_disk=True)
        quiet = cfg.quiet
    s = result.summary
    if secondary_rank():  # rank 0 reports the job
        return EXIT_FAILED if s["status"] == "failed" else EXIT_INTERRUPTED if s["status"] == "interrupted" else EXIT_OK
    if "restarts" in s:
        r = s["restarts"]
        spread = ", ".join(f"{k} {v['mean']:.4f} ± {v['std']:.4f}" for k, v in r["spread"].items())
        console.print(f"{len(r['seeds'])} restarts: {spread}; kept seed {r['chosen_seed']} (best {r['monitor']})")
    if not quiet:
        console.print(f"{s['data']['name']}: {s['data']['sizes']} rows (train/val/test), model {s['model']['spec']} "
                      f"({s['model']['parameters']:,} parameters), {s['epochs_run']} epochs, best epoch {s['best_epoch']}")
    test = ", ".join(f"{k} {v:.4f}" for k, v in (s["test"] or {}).items()) or "not evaluated"
    console.print(f"[bold]{s['status']}[/bold] — test: {test} — {s['wall_time_s']:.1f}s — run: {result.run_dir}")
    print_diagnostics(console, s.get("diagnostics") or [])
    if s["status"] == "failed":
        print(f"trainwise fit: training failed: {s['stop_reason']}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_INTERRUPTED if s["status"] == "interrupted" else EXIT_OK


def _launch(args: argparse.Namespace, cfg: RunConfig) -> int:
    """``--nproc N``: check the input once here, then run the same command as N processes (torch's launcher);
    they all write to one run folder, chosen here."""
    check_fit(cfg)
    argv = list(args.argv)
    if cfg.run_dir is None:
        run_dir = str(new_run_dir(None, cfg.data))
        argv += ["--run-dir", run_dir]
    return launch(argv, cfg.nproc, run_dir=cfg.run_dir or run_dir)


def print_diagnostics(console, diagnostics: list[dict]) -> None:
    """The doctor's findings in words: severity, code, what was seen, what to do."""
    colors = {"info": "cyan", "warning": "yellow", "error": "red"}
    if not diagnostics:
        console.print("diagnostics: none — no sign of over- or underfitting, LR or gradient trouble")
    for d in diagnostics:
        console.print(f"[{colors[d['severity']]}]{d['severity']}[/] [bold]{d['code']}[/bold]: {d['evidence']}. "
                      f"[dim]Try: {d['advice']}.[/dim]")


def _sanity(args: argparse.Namespace) -> int:
    options = _config_options(args)
    result = sanity(batches=args.batches, steps=args.steps, tol=args.tol, config=RunConfig.build(options, source="option"))
    print(result.verdict)
    return EXIT_OK if result.can_learn else EXIT_FAILED


def _inspect(args: argparse.Namespace) -> int:
    cfg = RunConfig.build(_config_options(args), source="option")
    model, setup = model_for(cfg)
    if args.command == "summary":
        s = summarize(model, setup.prep.input_shape, batch_size=setup.cfg.batch_size, device=setup.device)
        print(json.dumps(s.to_dict(), indent=2) if args.json else f"{setup.cfg.model} on {cfg.data}\n{s}")
        return 0
    X, y = setup.prep.arrays["train"]
    xt, yt = to_tensors(X[:args.rows], y[:args.rows], setup.kind, torch.device("cpu"))
    result = gradcheck(model.cpu(), make_loss(setup.loss), xt, yt, max_elements=args.elements, tol=args.tol, seed=cfg.seed)
    print(f"{setup.cfg.model} on {args.rows} rows of {cfg.data}, loss {setup.loss}, float64, central differences\n{result}")
    return EXIT_OK if result.passed else EXIT_FAILED


def _lr_find(args: argparse.Namespace) -> int:
    options = _config_options(args)
    out_dir = options.pop("run_dir", None)  # --run-dir: the folder lr_find.csv/.png go to
    cfg = RunConfig.build(options, source="option")
    check_output_dir(out_dir, "--run-dir")
    model, s = model_for(cfg)
    trainer = build_trainer(s, model, [])
    result = lr_find(trainer, build_batches(s, cfg.seed, augment=False)["train"], start_lr=args.start_lr, end_lr=args.end_lr,
                     steps=args.steps)
    out = new_run_dir(None, f"{cfg.data}-lr-find") if out_dir is None else _mkdir(out_dir)
    save_lr_find(result, out)
    if result.suggestion is None:
        print(f"no suggestion: {result.stop_reason}; see {out / 'lr_find.png'}")
        return EXIT_FAILED
    print(f"suggested lr {result.suggestion:.2e} (steepest descent of the smoothed loss, at most the minimum's "
          f"LR/10 = {result.min_over_10:.2e}); {len(result.lrs)} steps, {result.stop_reason}")
    print(f"curve: {out / 'lr_find.png'}, points: {out / 'lr_find.csv'}")
    return 0


def _cv(args: argparse.Namespace) -> int:
    options = _config_options(args)
    console = make_console(soft_wrap=True)
    r = cross_validate(folds=args.folds, rotate=args.rotate, console=console, **options)
    for row in r.folds:
        console.print(f"fold {row['fold']}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if "/" in k))
    console.print("[bold]mean ± std[/bold]: " + ", ".join(f"{k} {v['mean']:.4f} ± {v['std']:.4f}" for k, v in r.spread.items()))
    if r.test:
        console.print(f"held-out test (fold {r.summary['chosen_fold']}'s model, once): "
                      + ", ".join(f"{k} {v:.4f}" for k, v in r.test.items()))
    console.print(f"run: {r.run_dir}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    if args.storage and not args.study_name:
        raise TrainwiseError("--storage needs --study-name", hint="name the shared study, e.g. --study-name digits-search")
    options = _config_options(args)
    out = options.pop("run_dir", None)  # --run-dir: the search's folder (each trial's run is in it)
    console = make_console(soft_wrap=True)
    r = tune(args.space, method=args.method, trials=args.trials, out=out, storage=args.storage,
             study_name=args.study_name, retrain=not args.no_retrain, console=console, workers=args.workers,
             worker_only=args.worker_only, finish=args.finish, heartbeat=args.heartbeat, pruner=args.pruner, **options)
    if args.worker_only:
        console.print(f"worker done: {len(r['results'])} trials in study '{args.study_name}'; trial folders in {r['out']}")
        return 0
    console.print(r["results"].to_string(index=False, max_colwidth=30))
    if r.get("incomplete"):
        console.print(f"results so far: {r['out'] / 'results.csv'}")
        return EXIT_FAILED
    console.print(f"best: {r['best']} -> {r['best_config']}")
    if r["test"]:
        console.print("best configuration retrained, test split (once): " + ", ".join(f"{k} {v:.4f}" for k, v in r["test"].items()))
    console.print(f"results: {r['out'] / 'results.csv'}")
    return 0


def _mkdir(path: str):
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    return p


def _backprop(args: argparse.Namespace) -> int:
    params = {k: getattr(args, k) for k in ("w1", "w2", "b1", "b2", "w3", "w4", "b3")}
    r = explain_backprop(args.x, args.y, lr=args.lr, **params)
    print(json.dumps(r, indent=2) if args.json else format_backprop(r))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    with _warnings_to_stderr(args.command):
        metrics = evaluate(args.run_dir, args.data, force_test=args.force_test, trust_code=args.trust_code)
    for k, v in metrics.items():
        print(f"{k}: {v:.6g}")
    return 0


@contextlib.contextmanager
def _warnings_to_stderr(command: str):
    """Warnings about the input (e.g. categories never seen in training) as one line each, not Python's format."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            for w in caught:
                print(f"trainwise {command}: warning: {w.message}", file=sys.stderr)


def _predict(args: argparse.Namespace) -> int:
    images = any(Path(p).suffix.lower() in IMAGE_SUFFIXES for p in args.inputs)
    stdin = args.inputs == ["-"]
    output = args.output or ("-" if stdin else None if images else str(Path(args.inputs[0]).with_suffix("")) + ".predictions.csv")
    with _warnings_to_stderr(args.command):
        frame = predict(args.run_dir, args.inputs if images else args.inputs[0], None if output == "-" else output,
                        trust_code=args.trust_code)
    if output == "-":  # a pipe: the CSV alone on standard output
        frame.to_csv(sys.stdout, index=False)
        return 0
    if not images:
        print(frame.head(10).to_string(index=False))
        print(f"{len(frame)} predictions written to {output}")
        return 0
    probs = [c for c in frame.columns if c.startswith("prob_")]
    failed = frame["error"].notna() if "error" in frame else frame["file"].isna()
    for _, row in frame.iterrows():
        if "error" in frame and isinstance(row["error"], str):
            print(f"{row['file']}: ERROR {row['error']}", file=sys.stderr)
            continue
        top = sorted(((row[c], c[5:]) for c in probs), reverse=True)[:3]
        print(f"{row['file']}: {row['prediction']} (" + ", ".join(f"{n} {p:.3f}" for p, n in top) + ")")
    if output:
        print(f"{len(frame)} rows written to {output}")
    if failed.any():
        print(f"{int(failed.sum())} of {len(frame)} images could not be read (see above); the others were predicted",
              file=sys.stderr)
        return EXIT_BAD_INPUT  # some inputs were unreadable (named above)
    return 0


def _export(args: argparse.Namespace) -> int:
    path = export(args.run_dir, args.output, format=args.format, trust_code=args.trust_code)
    print(f"ONNX model written to {path} (input 'x', described in {path.name}.json)")
    return 0


def _runs(args: argparse.Namespace) -> int:
    rows = list_runs(args.directory)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no runs in {args.directory}")
        return 0
    from rich.table import Table  # lazy: only this command draws a table

    table = Table(box=None, header_style="bold")
    for c in RUN_COLUMNS:
        table.add_column(c, no_wrap=True)
    for r in rows:
        table.add_row(*(str(r[c]) for c in RUN_COLUMNS))
    console = make_console(soft_wrap=True)
    console.width = max(console.width, 160)  # a pipe or a narrow terminal: long rows overflow rather than fold
    console.print(table)
    return 0


def _compare(args: argparse.Namespace) -> int:
    print(f"comparison written to {compare_runs(args.run_dirs, args.output)}")
    return 0


HANDLERS = {"fit": _fit, "runs": _runs, "compare": _compare, "evaluate": _evaluate, "predict": _predict, "export": _export,
            "sanity": _sanity, "summary": _inspect,
             "gradcheck": _inspect, "backprop": _backprop, "lr-find": _lr_find, "cv": _cv, "tune": _tune,
             "auto": _auto, "report": _report}


def run_command(args: argparse.Namespace) -> int | None:
    """Run ``args.command`` (None: there is no such command). Figures still being drawn by the helpers are on disk
    before it returns, whichever command sent them and however it ends."""
    handler = HANDLERS.get(args.command)
    if handler is None:
        return None
    try:
        code = handler(args)
    except BaseException:
        with contextlib.suppress(Exception):  # the figures are waited for, but the error that ended the run is the one told
            drawing.finish()
        raise
    drawing.finish()
    return code
