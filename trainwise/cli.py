"""`trainwise` command line: thin — parse, call the API, print. Input errors exit 2 with the fix."""
from __future__ import annotations

import argparse
import atexit
import os
import re
import signal
import sys
import threading
from importlib.metadata import PackageNotFoundError, version
from typing import NoReturn

from . import signals
from .config import CHOICES, RunConfig, suggest_key
from .console import secondary_rank
from .errors import EXIT_BAD_INPUT, EXIT_BUG, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, Terminated, TrainwiseError, did_you_mean

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


def _add_config_options(p: argparse.ArgumentParser, *, run_dir: str | None = None) -> None:
    """Every RunConfig key as an option. ``run_dir``: what --run-dir means for this command, which writes a folder
    of its own (lr-find, tune, auto); there ``--out``, its old name, still works."""
    for name, field in RunConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        default = field.default if not isinstance(field.default, tuple) else ",".join(map(str, field.default))
        choices = f"; one of {', '.join(CHOICES[name])}" if name in CHOICES else ""
        help_ = f"{field.description}{choices} (default: {default})"
        if name == "mlflow":  # --mlflow alone: MLflow's local store
            p.add_argument(flag, dest=name, metavar="TRACKING_URI", nargs="?", const="sqlite:///mlflow.db", default=argparse.SUPPRESS,
                           help=help_)
            continue
        if name == "run_dir" and run_dir:
            p.add_argument(flag, dest=name, metavar="DIR", default=argparse.SUPPRESS, help=run_dir)
            p.add_argument("--out", dest=name, default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # the old name: works, unlisted
            continue
        if field.annotation is bool:
            p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_)
        else:
            p.add_argument(flag, dest=name, metavar=name.upper(), default=argparse.SUPPRESS, help=help_)


def _add_trust_code(p: argparse.ArgumentParser, prefix: str = "") -> None:
    p.add_argument("--trust-code", action="store_true",
                   help=f"{prefix}allow a run whose model is user code (file.py:function, package.module:function): import the "
                        "file recorded at fit time, only if its SHA-256 is unchanged. Only for runs from a trusted source")


def _version(package: str = "trainwise") -> str:
    try:
        return version(package)  # from the installed metadata: --version imports no torch
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="trainwise", description="Train PyTorch models the careful way: split, validate, stop early, test once.",
                     allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"trainwise {_version()}, torch {_version('torch')}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser,
                                metavar="{fit,evaluate,predict,export,runs,compare,sanity,lr-find,tune,cv,auto,summary,gradcheck,backprop,report}")
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
                    help=".csv (same columns as training), .npz (array X), - (CSV on standard input), or image files "
                         "(img1.png img2.jpg ...)")
    pr.add_argument("--output", metavar="FILE", help="CSV to write, - for standard output (default for a table: INPUT's name "
                                                     "+ .predictions.csv; for -: standard output; images: printed only)")
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
    bp = sub.add_parser("backprop", help="the lecture's 1-2-1 sigmoid network: forward values, chain-rule gradients, one SGD step",
                        allow_abbrev=False)
    bp.add_argument("--json", action="store_true", help="print the numbers as JSON")
    for name, default in (("x", 1.0), ("y", 3.0), ("w1", 1.0), ("w2", -1.0), ("b1", 1.0), ("b2", 2.0), ("w3", 1.0),
                          ("w4", 2.0), ("b3", -1.0)):
        bp.add_argument(f"--{name}", type=float, default=default, help=f"(default: {default:g})")
    bp.add_argument("--lr", type=float, default=0.01, help="learning rate of the one SGD step shown (default: 0.01, the lecture's)")
    lf = sub.add_parser("lr-find", help="learning-rate range test for --model on --data: curve, points, suggestion",
                        allow_abbrev=False)
    lf.add_argument("--start-lr", type=float, default=1e-7, metavar="LR", help="(default: 1e-7)")
    lf.add_argument("--end-lr", type=float, default=10.0, metavar="LR", help="(default: 10)")
    lf.add_argument("--steps", type=int, default=100, metavar="N", help="optimizer steps in the sweep (default: 100)")
    _add_config_options(lf, run_dir="where lr_find.csv/.png go (default: runs/<data>-lr-find-<time>)")
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
    tu.add_argument("--no-retrain", action="store_true", help="do not retrain the best configuration and test it")
    tu.add_argument("--workers", type=int, default=1, metavar="N",
                    help="N worker processes on one Optuna study (--storage, default a journal file in --run-dir); "
                         "the test split is looked at once, after them; the same command resumes the study")
    tu.add_argument("--worker-only", action="store_true",
                    help="run --trials trials of the shared study (--storage, --study-name) and stop: no test look")
    tu.add_argument("--finish", action="store_true",
                    help="run no trials: retrain the shared study's best trial and test it, once (after the workers)")
    tu.add_argument("--pruner", default="median", choices=["median", "none"],
                    help="optuna: stop trials whose epoch is worse than the median of earlier trials' (default: median)")
    tu.add_argument("--heartbeat", type=float, default=10.0, metavar="S",
                    help="seconds between a running trial's heartbeats; a dead worker's trial fails after 3 (default: 10)")
    _add_config_options(tu, run_dir="where trials, results.csv and best_config.yaml go (default: runs/<data>-tune-<time>)")
    au = sub.add_parser("auto", help="the whole recipe: sanity, LR finder, regularized run, search, test once, report",
                        allow_abbrev=False)
    au.add_argument("--budget-minutes", type=float, default=10.0, metavar="M", help="time budget (default: 10)")
    au.add_argument("--ensemble", type=int, default=5, metavar="K",
                    help="final model: the K best trials with probabilities averaged; 1 retrains the single best (default: 5)")
    _add_config_options(au, run_dir="where everything goes (default: runs/<data>-auto-<time>)")
    ex = sub.add_parser("export", help="a saved run as an ONNX model (preprocessing folded in where it is arithmetic)",
                        allow_abbrev=False)
    ex.add_argument("run_dir", metavar="RUN_DIR")
    ex.add_argument("--format", default="onnx", choices=["onnx"], help="(default: onnx)")
    ex.add_argument("--output", metavar="FILE", help="the model file (default: RUN_DIR/model.onnx); its description goes "
                                                     "beside it as FILE.json")
    _add_trust_code(ex)
    rn = sub.add_parser("runs", help="the runs in a folder as a table: data, model, status, best validation, test, time",
                        allow_abbrev=False)
    rn.add_argument("directory", metavar="DIR", nargs="?", default="runs", help="(default: runs)")
    rn.add_argument("--json", action="store_true", help="print JSON")
    co = sub.add_parser("compare", help="one HTML page: the runs' curves overlaid, configs side by side, differences highlighted",
                        allow_abbrev=False)
    co.add_argument("run_dirs", metavar="RUN_DIR", nargs="+")
    co.add_argument("--output", metavar="FILE", default="compare.html", help="the page to write (default: compare.html)")
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
            from trainwise import commands  # torch and the rest load only for a command that runs, not for --help
            code = commands.run_command(args)
            if code is not None:
                if sigs.received and code == EXIT_OK:  # a signal came while the finished run was saved
                    code = EXIT_INTERRUPTED
                return EXIT_TERMINATED if code == EXIT_INTERRUPTED and sigs.received == "SIGTERM" else code
            parser.print_help()
            return EXIT_BAD_INPUT
    except TrainwiseError as e:
        if not secondary_rank():  # the ranks of a data-parallel job fail alike: rank 0 says so once
            print(f"trainwise {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as e:
        if not secondary_rank():
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


def run() -> NoReturn:
    """The `trainwise` command (console script and `python -m trainwise`): `main`, then `exit_now`."""
    exit_now(main())


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` without tearing the interpreter down: with torch loaded, freeing every module
    and object at exit costs about 0.45 s here, a tenth of the digits main job, and the operating system frees
    it all anyway. Output is flushed and the atexit functions run first (libraries close what they registered
    there; every file of a run is already written and closed, atomically). Where another non-daemon thread still
    runs, Python's own exit waits for it as usual."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()  # what Python runs at exit: the only part of the teardown that has effects
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


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


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so Python's exit-time flush does not complain."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    run()
