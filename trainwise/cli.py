"""`trainwise` command line: thin — parse, call the API, print. Input errors exit 2 with the fix."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from . import signals
from .api import check_fit, evaluate, fit, predict
from .config import CHOICES, RunConfig, load_config, suggest_key
from .console import console as make_console
from .data import to_tensors
from .data.images import IMAGE_SUFFIXES
from .diagnose import explain_backprop, format_backprop, gradcheck
from .errors import EXIT_BAD_INPUT, EXIT_BUG, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, Terminated, TrainwiseError, did_you_mean
from .models.summary import summarize
from .pipeline import build_batches, build_trainer, model_for
from .report.html import write_report
from .report.writer import save_lr_find
from .runs import check_output_dir, new_run_dir
from .train import make_loss
from .train.distributed import launch, world_from_env
from .train.lr_finder import lr_find
from .tune import cross_validate, sanity, tune
from .tune.auto import auto

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse with 'did you mean' for unknown options and subcommands, exiting 2 in one paragraph."""

    def error(self, message: str) -> None:  # noqa: D102
        hint = ""
        unknown = re.search(r"unrecognized arguments: (.*)", message)
        if unknown:
            known = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
            for opt in unknown.group(1).split():
                if opt.startswith("-"):
                    hint = did_you_mean(opt.split("=")[0], known) if self.prog != "trainwise fit" else \
                        suggest_key(opt.split("=")[0]) or did_you_mean(opt.split("=")[0], known)
                    break
            message = f"unknown option(s): {unknown.group(1)}"
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            hint = did_you_mean(choice.group(1), re.findall(r"'?([\w-]+)'?", choice.group(2)))
        hint = hint or f"see `{self.prog} --help`"
        self.exit(2, f"{self.prog}: error: {message}. HINT: {hint}\n")


def _add_config_options(p: argparse.ArgumentParser) -> None:
    for name, field in RunConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        default = field.default if not isinstance(field.default, tuple) else ",".join(map(str, field.default))
        choices = f"; one of {', '.join(CHOICES[name])}" if name in CHOICES else ""
        help_ = f"{field.description}{choices} (default: {default})"
        if field.annotation is bool:
            p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_)
        else:
            p.add_argument(flag, dest=name, metavar=name.upper(), default=argparse.SUPPRESS, help=help_)


def _add_trust_code(p: argparse.ArgumentParser, prefix: str = "") -> None:
    p.add_argument("--trust-code", action="store_true",
                   help=f"{prefix}allow a run whose model is user code (file.py:function, package.module:function): import the "
                        "file recorded at fit time, only if its SHA-256 is unchanged. Only for runs from a trusted source")


def _version() -> str:
    try:
        return version("trainwise")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="trainwise", description="Train PyTorch models the careful way: split, validate, stop early, test once.",
                     allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"trainwise {_version()}, torch {torch.__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser,
                                metavar="{fit,evaluate,predict,sanity,lr-find,tune,cv,auto,summary,gradcheck,backprop,report}")
    fit = sub.add_parser("fit", help="train a model and write a run directory (default: an MLP on digits)", allow_abbrev=False)
    fit.add_argument("--config", metavar="FILE", help="YAML config (e.g. a run's config.yaml); other options override it")
    fit.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run from its last checkpoint (--epochs may be raised)")
    _add_trust_code(fit, "with --resume: ")
    _add_config_options(fit)
    ev = sub.add_parser("evaluate", help="metrics of a saved run on its test split or on --data FILE", allow_abbrev=False)
    ev.add_argument("run_dir", metavar="RUN_DIR")
    ev.add_argument("--data", metavar="FILE", help=".csv/.npz with targets (default: the run's own test split)")
    ev.add_argument("--force-test", action="store_true", help="evaluate the run's test split again (counted in summary.json)")
    _add_trust_code(ev)
    pr = sub.add_parser("predict", help="predictions of a saved run for a .csv/.npz file or image files", allow_abbrev=False)
    pr.add_argument("run_dir", metavar="RUN_DIR")
    pr.add_argument("inputs", metavar="INPUT", nargs="+",
                    help=".csv (same columns as training), .npz (array X), or image files (img1.png img2.jpg ...)")
    pr.add_argument("--output", metavar="FILE", help="CSV to write (default for a table: INPUT's name + .predictions.csv; "
                                                     "images: printed only)")
    _add_trust_code(pr)
    sa = sub.add_parser("sanity", help="can the model overfit a tiny subset? (run this before tuning anything)",
                        allow_abbrev=False)
    sa.add_argument("--batches", type=int, default=2, metavar="N", help="training batches in the subset (default: 2)")
    sa.add_argument("--steps", type=int, default=200, metavar="N", help="most optimizer steps (default: 200)")
    sa.add_argument("--tol", type=float, default=0.05, metavar="LOSS", help="training loss that counts as learned (default: 0.05)")
    _add_config_options(sa)
    su = sub.add_parser("summary", help="per-layer output shapes, parameters and memory of --model on --data",
                        allow_abbrev=False)
    su.add_argument("--json", action="store_true", help="print JSON")
    _add_config_options(su)
    gc = sub.add_parser("gradcheck", help="autograd vs finite differences (float64) for --model on a batch of --data",
                        allow_abbrev=False)
    gc.add_argument("--rows", type=int, default=4, metavar="N", help="rows in the batch (default: 4)")
    gc.add_argument("--elements", type=int, default=20, metavar="N", help="entries checked per parameter tensor (default: 20)")
    gc.add_argument("--tol", type=float, default=1e-5, metavar="E", help="largest relative error that passes (default: 1e-5)")
    _add_config_options(gc)
    bp = sub.add_parser("backprop", help="the lecture's 1-2-1 sigmoid network: forward values and chain-rule gradients",
                        allow_abbrev=False)
    bp.add_argument("--json", action="store_true", help="print the numbers as JSON")
    for name, default in (("x", 1.0), ("y", 3.0), ("w1", 1.0), ("w2", -1.0), ("b1", 1.0), ("b2", 2.0), ("w3", 1.0),
                          ("w4", 2.0), ("b3", -1.0)):
        bp.add_argument(f"--{name}", type=float, default=default, help=f"(default: {default:g})")
    lf = sub.add_parser("lr-find", help="learning-rate range test for --model on --data: curve, points, suggestion",
                        allow_abbrev=False)
    lf.add_argument("--start-lr", type=float, default=1e-7, metavar="LR", help="(default: 1e-7)")
    lf.add_argument("--end-lr", type=float, default=10.0, metavar="LR", help="(default: 10)")
    lf.add_argument("--steps", type=int, default=100, metavar="N", help="optimizer steps in the sweep (default: 100)")
    lf.add_argument("--out", metavar="DIR", help="where lr_find.csv/.png go (default: runs/<data>-lr-find-<time>)")
    _add_config_options(lf)
    cv = sub.add_parser("cv", help="k-fold cross-validation: per-fold runs, mean ± std", allow_abbrev=False)
    cv.add_argument("--folds", type=int, default=5, metavar="K", help="number of folds (default: 5)")
    cv.add_argument("--rotate", action="store_true",
                    help="the lecture's variant: one fold validates, one tests, the rest train; rotated so every fold "
                         "is the test fold once (default: hold out --split's test fraction, folds over the rest)")
    _add_config_options(cv)
    tu = sub.add_parser("tune", help="hyperparameter search (grid, random, optuna) over a search-space YAML",
                        allow_abbrev=False)
    tu.add_argument("--space", required=True, metavar="FILE", help="YAML: option: {type: loguniform|uniform|int|categorical, ...}")
    tu.add_argument("--method", default="random", choices=["grid", "random", "optuna"], help="(default: random)")
    tu.add_argument("--trials", type=int, default=None, metavar="N",
                    help="trials to run (default: 10; grid: every point, or N of them drawn at random)")
    tu.add_argument("--storage", metavar="URL", help="Optuna storage shared by several workers: a database URL (e.g. "
                    "postgresql+psycopg2://USER@HOST/DB, sqlite:///study.db) or a file ending in .journal")
    tu.add_argument("--study-name", metavar="NAME", help="the shared study's name (with --storage)")
    tu.add_argument("--out", metavar="DIR", help="where trials, results.csv and best_config.yaml go (default: runs/<data>-tune-<time>)")
    tu.add_argument("--no-retrain", action="store_true", help="do not retrain the best configuration and test it")
    tu.add_argument("--workers", type=int, default=1, metavar="N",
                    help="N worker processes on one Optuna study (--storage, default a journal file in --out); "
                         "the test split is looked at once, after them; the same command resumes the study")
    tu.add_argument("--worker-only", action="store_true",
                    help="run --trials trials of the shared study (--storage, --study-name) and stop: no test look")
    tu.add_argument("--finish", action="store_true",
                    help="run no trials: retrain the shared study's best trial and test it, once (after the workers)")
    tu.add_argument("--pruner", default="median", choices=["median", "none"],
                    help="optuna: stop trials whose epoch is worse than the median of earlier trials' (default: median)")
    tu.add_argument("--heartbeat", type=float, default=10.0, metavar="S",
                    help="seconds between a running trial's heartbeats; a dead worker's trial fails after 3 (default: 10)")
    _add_config_options(tu)
    au = sub.add_parser("auto", help="the whole recipe: sanity, LR finder, regularized run, search, test once, report",
                        allow_abbrev=False)
    au.add_argument("--budget-minutes", type=float, default=10.0, metavar="M", help="time budget (default: 10)")
    au.add_argument("--ensemble", type=int, default=5, metavar="K",
                    help="final model: the K best trials with probabilities averaged; 1 retrains the single best (default: 5)")
    au.add_argument("--out", metavar="DIR", help="where everything goes (default: runs/<data>-auto-<time>)")
    _add_config_options(au)
    rp = sub.add_parser("report", help="rebuild RUN_DIR/report.html (one self-contained page)", allow_abbrev=False)
    rp.add_argument("run_dir", metavar="RUN_DIR")
    _add_trust_code(rp)
    parser.subcommands = sub.choices
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv or ["--help"])
        args.argv = argv  # as given: a launcher runs the same command in each of its processes
        if extra:  # report unknown options from the subcommand's parser, which knows its own options
            parser.subcommands.get(args.command, parser).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:  # argparse's exits (usage errors: 2, --help: 0) as a return value
        return int(e.code or 0)
    sigs = _Signals(args.command)
    try:
        with sigs:
            handler = _HANDLERS.get(args.command)
            if handler is not None:
                code = handler(args)
                if sigs.received and code == EXIT_OK:  # a signal came while the finished run was saved
                    code = EXIT_INTERRUPTED
                return EXIT_TERMINATED if code == EXIT_INTERRUPTED and sigs.received == "SIGTERM" else code
            parser.print_help()
            return EXIT_BAD_INPUT
    except TrainwiseError as e:
        if not _secondary_rank():  # the ranks of a data-parallel job fail alike: rank 0 says so once
            print(f"trainwise {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as e:
        if not _secondary_rank():
            print(f"trainwise {args.command}: {'terminated' if isinstance(e, Terminated) else 'interrupted'}", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(e, Terminated) or sigs.received == "SIGTERM" else EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head`, which closed early: not an error of ours
        _quiet_stdout()
        return EXIT_OK
    except Exception as e:  # noqa: BLE001 - a bug, not bad input: short message, traceback on request
        if os.environ.get("TRAINWISE_DEBUG"):
            raise
        print(f"trainwise {args.command}: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. "
              "HINT: rerun with TRAINWISE_DEBUG=1 for the traceback and report it", file=sys.stderr)
        return EXIT_BUG


class _Signals:
    """SIGTERM is handled like Ctrl-C (the run checkpoints, writes its summary and can be resumed). While the run
    is being saved after the first signal, a second one is only announced, so the summary still gets written;
    a third stops at once (files already written stay whole: every write is atomic)."""

    def __init__(self, command: str):
        self.command, self.received, self.count, self._old = command, None, 0, {}

    def __enter__(self) -> _Signals:
        signals.reset()
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread (main() called from a thread): leave Python's handlers alone
            self._old = {}
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum: int, _frame) -> None:
        self.count += 1
        if self.received is None:
            self.received = signal.Signals(signum).name
            if not signals.should_defer():
                raise signals.interrupt_for(self.received)
            signals.STATE.pending = self.received  # between training loops: the save finishes, no next loop starts
        if self.count <= 2:
            print(f"trainwise {self.command}: saving the run (checkpoint, summary) before stopping; "
                  "signal again to stop at once", file=sys.stderr, flush=True)
            return
        raise signals.interrupt_for(self.received)


def _secondary_rank() -> bool:
    world = world_from_env()
    return world is not None and not world.main


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so Python's exit-time flush does not complain."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _config_options(args: argparse.Namespace) -> dict[str, Any]:
    """The run options given on the command line (config flags are only present when given)."""
    return {k: v for k, v in vars(args).items() if k in RunConfig.model_fields}


def _auto(args: argparse.Namespace) -> int:
    result = auto(budget_minutes=args.budget_minutes, out=args.out, ensemble=args.ensemble, console=make_console(soft_wrap=True),
                  **_config_options(args))
    print(f"{result['status']} in {result.get('wall_time_s', '?')} s; summary: {args.out or 'runs/'}")
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
        result = fit(resume=args.resume, console=console, trust_code=args.trust_code, **overrides)
        quiet = overrides.get("quiet", False)
    else:
        cfg = load_config(args.config, overrides) if args.config else RunConfig.build(overrides, source="option")
        if cfg.nproc > 1 and world_from_env() is None:
            return _launch(args, cfg)
        result = fit(config=cfg, console=console, to_disk=True)
        quiet = cfg.quiet
    s = result.summary
    if _secondary_rank():  # rank 0 reports the job
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
        s = summarize(model, setup.prep.input_shape, batch_size=cfg.batch_size, device=setup.device)
        print(json.dumps(s.to_dict(), indent=2) if args.json else f"{cfg.model} on {cfg.data}\n{s}")
        return 0
    X, y = setup.prep.arrays["train"]
    xt, yt = to_tensors(X[:args.rows], y[:args.rows], setup.kind, torch.device("cpu"))
    result = gradcheck(model.cpu(), make_loss(setup.loss), xt, yt, max_elements=args.elements, tol=args.tol, seed=cfg.seed)
    print(f"{cfg.model} on {args.rows} rows of {cfg.data}, loss {setup.loss}, float64, central differences\n{result}")
    return EXIT_OK if result.passed else EXIT_FAILED


def _lr_find(args: argparse.Namespace) -> int:
    cfg = RunConfig.build(_config_options(args), source="option")
    check_output_dir(args.out, "--out")
    model, s = model_for(cfg)
    trainer = build_trainer(s, model, [])
    result = lr_find(trainer, build_batches(s, cfg.seed, augment=False)["train"], start_lr=args.start_lr, end_lr=args.end_lr,
                     steps=args.steps)
    out = new_run_dir(args.out, f"{cfg.data}-lr-find") if args.out is None else _mkdir(args.out)
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
    console = make_console(soft_wrap=True)
    r = tune(args.space, method=args.method, trials=args.trials, out=args.out, storage=args.storage,
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
    r = explain_backprop(args.x, args.y, **params)
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
    output = args.output or (None if images else str(Path(args.inputs[0]).with_suffix("")) + ".predictions.csv")
    with _warnings_to_stderr(args.command):
        frame = predict(args.run_dir, args.inputs if images else args.inputs[0], output, trust_code=args.trust_code)
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


_HANDLERS = {"fit": _fit, "evaluate": _evaluate, "predict": _predict, "sanity": _sanity, "summary": _inspect,
             "gradcheck": _inspect, "backprop": _backprop, "lr-find": _lr_find, "cv": _cv, "tune": _tune,
             "auto": _auto, "report": _report}


if __name__ == "__main__":
    sys.exit(main())
