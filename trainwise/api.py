"""The one-call API, a thin façade over the pipeline: ``fit`` (config -> parts -> Trainer -> result -> writer),
``evaluate`` and ``predict`` (from `inference`) on a saved run."""
from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from .config import RunConfig, load_config
from .data import PreparedData
from .errors import TrainwiseError
from .inference import SavedModel, evaluate, load, predict
from .models import is_builtin_spec
from .options import IN_MEMORY
from .pipeline import RunResult, check_distributed, check_run, in_memory_name, model_recipe, resolve_device, setup_run, train_run
from .population import Member, run_population, select_best, spread
from .report.writer import RunWriter
from .runs import check_output_dir
from .saved import read_recipe, read_summary
from .train import Callback, Trainer
from .train.callbacks import tie_breaker
from .train.distributed import leave, world_from_env
from .train.state import load_trainer_state

__all__ = ["fit", "evaluate", "predict", "load", "SavedModel", "FitResult", "resolve_device", "check_fit"]

_RUN_FILES = ("model.safetensors", "model.json", "preprocess.json", "metrics.csv", "curves.png")


@dataclass
class FitResult:
    """What `fit` returns: per-epoch history, the summary (as in summary.json), the model, the run folder
    (None when the run was kept in memory), the trainer and the prepared data."""

    history: list[dict[str, float]]
    summary: dict[str, Any]
    model: nn.Module
    run_dir: Path | None
    trainer: Trainer
    data: PreparedData

    @property
    def test(self) -> dict[str, float] | None:
        return self.summary["test"]

    @classmethod
    def of(cls, result: RunResult, summary: dict[str, Any], writer: RunWriter | None) -> FitResult:
        return cls(result.history, summary, result.model, writer.run_dir if writer else None, result.trainer,
                   result.setup.prep)


def fit(data: Any = None, y: Any = None, *, config: RunConfig | str | Path | None = None,
        callbacks: list[Callback] = (), console=None, resume: str | Path | None = None, to_disk: bool | None = None,
        trust_code: bool = False, sample_weight: Any = None, **options: Any) -> FitResult:
    """Train a model the careful way.

    ``data`` is a built-in name, a .csv/.npz path, or a feature array/tensor (with ``y``). ``options`` are
    any `RunConfig` keys (``model`` may also be an ``nn.Module``); ``config`` is a RunConfig or a YAML file.
    With ``run_dir`` the run is written there; without one nothing touches the disk (``to_disk=True``: write
    to runs/<data>-<time>, as the command line does). ``resume`` continues a stopped run from its last
    checkpoint (only ``epochs`` and ``quiet`` may change); its model is rebuilt from the run's model.json, and
    one that is user code needs ``trust_code=True`` (it is then imported only from the file recorded at fit
    time, while its SHA-256 matches; ``trust_code`` means nothing without ``resume``). ``sample_weight``: a weight
    per row of the arrays or DataFrame given (numbers >= 0), as ``weight_column`` is for a CSV file's rows.

    >>> result = fit("iris", epochs=3, quiet=True)
    >>> sorted(result.summary["test"]), result.run_dir
    (['test/accuracy', 'test/loss'], None)
    """
    if resume is not None:
        return _resume(Path(resume), data, y, callbacks, console, options, trust_code=trust_code, sample_weight=sample_weight)
    user_model = options.pop("model") if isinstance(options.get("model"), nn.Module) else None
    if isinstance(data, (str, os.PathLike)):
        options["data"], data = str(data), str(data)
    elif data is not None:
        options.setdefault("data", in_memory_name(data))
    cfg = config if isinstance(config, RunConfig) else load_config(config, options) if config else RunConfig.build(options, source="option")
    if isinstance(config, RunConfig) and options:
        cfg = RunConfig.build({**config.model_dump(), **options}, source="option")
    if user_model is not None and cfg.restarts > 1:
        raise TrainwiseError("restarts need a fresh model per seed, but `model` is one nn.Module instance",
                             hint="pass model as a spec string (mlp:..., file.py:function) so each restart builds its own")
    to_disk = cfg.run_dir is not None if to_disk is None else to_disk
    cfg, world, to_disk = _rank_config(cfg, to_disk)
    if to_disk:
        check_output_dir(cfg.run_dir)
    try:
        setup = setup_run(cfg, data, y, user_model=user_model, world=world, sample_weight=sample_weight)
        check_run(setup)  # every input error before the run directory exists: nothing half-made is left
        writer = RunWriter.for_config(cfg) if to_disk else None
        with writer or nullcontext():
            if writer is not None:
                writer.write_config(setup.cfg)
            if cfg.restarts > 1:
                return _fit_restarts(setup, writer, callbacks, console)
            result = train_run(setup, callbacks=callbacks, writer=writer, console=console, evaluate_test=world is None or world.main)
            return _finish(result, writer, _distributed(setup))
    finally:
        leave()


def _rank_config(cfg: RunConfig, to_disk: bool):
    """In a data-parallel job (torchrun's environment): this rank's config (the job's size as ``nproc``; quiet
    but on rank 0), its place in the job, and whether it writes (rank 0 only). A config asking for processes
    outside such a job is refused: they are started by torch's launcher, not by `fit`."""
    world = world_from_env()
    if world is None:
        if cfg.nproc > 1:
            raise TrainwiseError(f"nproc={cfg.nproc} needs processes started by torch's launcher, which fit() does not start",
                                 hint=f"run `trainwise fit --nproc {cfg.nproc} ...` (it launches them) or "
                                      f"`torchrun --nproc-per-node {cfg.nproc} -m trainwise fit ...`")
        return cfg, None, to_disk
    return cfg.model_copy(update={"nproc": world.size} | ({} if world.main else {"quiet": True})), world, to_disk and world.main


def _distributed(setup) -> dict[str, Any] | None:
    world = setup.world
    if world is None:
        return None
    return {"distributed": {"nproc": world.size, "backend": "nccl" if setup.device.type == "cuda" else "gloo",
                            "batch_per_rank": setup.cfg.batch_size, "global_batch": setup.cfg.batch_size * world.size}}


def check_fit(cfg: RunConfig) -> None:
    """The input errors `fit` would raise before training (data, model, options, output folder), found without
    training or writing: the launcher of a data-parallel job checks them once, before any process starts."""
    if cfg.run_dir is not None:
        check_output_dir(cfg.run_dir)
    setup = setup_run(cfg)
    check_run(setup)
    check_distributed(setup.cfg, setup.prep)


def _finish(result: RunResult, writer: RunWriter | None, extra: dict[str, Any] | None = None,
            previous_tests: int = 0) -> FitResult:
    summary = result.summary(extra, previous_tests)
    if writer is not None:
        writer.write_summary(result, summary)
        writer.close()
    return FitResult.of(result, summary, writer)


def _fit_restarts(setup, writer: RunWriter | None, callbacks, console, *, resume: bool = False,
                  previous_tests: int = 0) -> FitResult:
    """Train seeds seed..seed+N-1 on the same split, keep the best by the monitored metric, test it once.

    Each restart keeps its own metrics.csv and curves under restarts/seed-<k>/; the chosen one's files are
    also the run's own. The result looks like one run plus a ``restarts`` summary section. On disk (and
    with checkpoints on) the population checkpoints every epoch under checkpoints/ (stacked restarts: one
    file for all; one by one: each in its folder), and ``resume`` continues it exactly (`run_population`).
    """
    cfg = setup.cfg
    checkpoints = writer.run_dir / "checkpoints" if writer is not None and cfg.checkpoint else None
    seeds = [cfg.seed + i for i in range(cfg.restarts)]
    members = [Member(f"seed-{s}", setup=setup, seed=s, callbacks=callbacks, checkpoint=False,
                      writer=writer.sub(f"restarts/seed-{s}") if writer else None) for s in seeds]

    def announce(i: int, m: Member) -> None:
        if console is not None and not cfg.quiet:
            console.print(f"[bold]restart {i + 1}/{len(seeds)}: seed {m.seed}[/bold]")

    def check(i: int, r) -> None:  # a failed restart stops the population at once
        trainer = r.result.trainer
        if trainer.status == "interrupted" and isinstance(trainer.ended_by, KeyboardInterrupt):
            # Ctrl-C / SIGTERM: the run says so in its summary, and the interrupt goes on to the caller (exit 130/143)
            if writer is not None:
                again = f"resume it: trainwise fit --resume {writer.run_dir}" if checkpoints is not None else \
                    "it ran without checkpoints, so start it again"
                trainer.stop_reason = f"{trainer.stop_reason} of the restart with seed {r.member.seed}; {again}"
                writer.write_summary(r.result, r.result.summary({"restarts": {"seeds": seeds, "interrupted_seed": r.member.seed}}))
            raise trainer.ended_by
        if not r.result.ok:
            where = f"; finished restarts are in {writer.run_dir / 'restarts'}" if writer else ""
            raise TrainwiseError(f"restart with seed {r.member.seed} ended as '{r.result.trainer.status}': "
                                 f"{r.result.trainer.stop_reason}", hint="fix the cause and run again" + where)

    done = run_population(members, console=None if cfg.quiet else console, on_start=announce, on_done=check,
                          checkpoints=checkpoints, resume=resume)
    results = [r.result for r in done]
    runs = [{"seed": r.seed, "best_epoch": r.stopper.best_epoch_, "epochs_run": r.trainer.epoch, "best": r.stopper.best_,
             "metrics": {k: v for k, v in r.history[(r.stopper.best_epoch_ or r.trainer.epoch) - 1].items()
                         if k.startswith(("val/", "train/"))}} for r in results]
    tie = tie_breaker(results[0].stopper.monitor)  # equal accuracies: the lower validation loss wins
    chosen = results[select_best([r.stopper.best_ for r in results], results[0].stopper.mode,
                                 tie=[r.best.get(tie) for r in results] if tie else None)]
    if writer is not None:
        writer.copy_from(writer.sub(f"restarts/seed-{chosen.seed}"), _RUN_FILES)
    keys = [k for k in runs[0]["metrics"] if k.startswith("val/") or not any(m.startswith("val/") for m in runs[0]["metrics"])]
    extra = {"restarts": {"seeds": seeds, "chosen_seed": chosen.seed, "monitor": chosen.stopper.monitor, "runs": runs,
                          "spread": spread([r["metrics"] for r in runs], keys)}}
    if resume:
        extra["restarts"]["resumed"] = True
    chosen.evaluate_test()
    return _finish(chosen, writer, extra, previous_tests)


def _resume(run_dir: Path, data: Any, y: Any, callbacks, console, options: dict[str, Any], *,
            trust_code: bool = False, sample_weight: Any = None) -> FitResult:
    """Continue a stopped run from checkpoints/last.safetensors with the run's own config.

    The model is rebuilt from the run's model.json (checked, never from config.yaml's model spec): a built-in
    one must match config.yaml; one that is user code is refused unless ``trust_code``, and then imported
    only from the file recorded at fit time while its SHA-256 matches. The checkpoint must fit that model,
    the optimizer and the config (counters, history); any mismatch is an error naming the file.
    """
    allowed = {"epochs", "quiet"}
    if set(options) - allowed:
        raise TrainwiseError(f"--resume continues a run with its own config; cannot change {', '.join(sorted(set(options) - allowed))}",
                             hint="only --epochs and --quiet may be given with --resume; start a new run to change anything else")
    if not (run_dir / "config.yaml").is_file():
        raise TrainwiseError(f"'{run_dir}' is not a trainwise run directory (no config.yaml)",
                             hint="give the run directory that `trainwise fit` printed")
    cfg = load_config(run_dir / "config.yaml", options)
    cfg, world, writes = _rank_config(cfg, True)
    try:
        # first: a run another process is writing (or resuming) is refused before anything is read or written
        writer = RunWriter(run_dir, tensorboard=cfg.tensorboard, histogram_every=cfg.histogram_every, lock=True,
                           mlflow=cfg.mlflow) if writes else None
        with writer or nullcontext():
            return _resume_locked(run_dir, cfg, writer, data, y, callbacks, console, trust_code, world, sample_weight)
    finally:
        leave()


def _resume_locked(run_dir: Path, cfg: RunConfig, writer: RunWriter | None, data: Any, y: Any, callbacks, console,
                   trust_code: bool, world=None, sample_weight: Any = None) -> FitResult:
    summary_path = run_dir / "summary.json"
    done = read_summary(summary_path) if summary_path.is_file() else None
    if done and (done.get("status") == "early_stopped" or (done.get("status") == "completed" and cfg.epochs <= (done.get("epochs_run") or 0))):
        raise TrainwiseError(f"run '{run_dir}' already finished ({done['status']}: {done.get('stop_reason')})",
                             hint="early stopping ended it, so more epochs would end at once; to train on, start a new "
                                  f"run with more patience: trainwise fit --config {run_dir / 'config.yaml'} --run-dir NEW_DIR "
                                  "--patience N (or --no-early-stopping; in Python: trainwise.fit(..., run_dir=NEW_DIR, patience=N))"
                             if done.get("status") == "early_stopped" else
                             "resume continues interrupted or killed runs; to train longer give --epochs "
                             f"above {done.get('epochs_run')}, or start a new run")
    if done and done.get("status") == "failed" and done.get("diverged_at"):
        raise TrainwiseError(f"run '{run_dir}' failed ({done.get('stop_reason')}); continuing it would continue the failure",
                             hint="fix the cause and start a new run (trainwise fit --config "
                                  f"{run_dir / 'config.yaml'} --run-dir NEW_DIR, with the fix as an option)")
    previous = load_config(run_dir / "config.yaml")
    if cfg.epochs != previous.epochs and cfg.schedule in ("cosine", "onecycle"):
        raise TrainwiseError(f"run '{run_dir}' uses the {cfg.schedule} schedule, which spans its {previous.epochs} epochs",
                             hint="resume it without --epochs; to train longer, start a new run")
    if cfg.data in IN_MEMORY and data is None:
        raise TrainwiseError(f"run '{run_dir}' was trained on {'in-memory arrays' if cfg.data == 'arrays' else 'a DataFrame'}",
                             hint="pass the same data to fit(X, y, resume=...) or fit(df, resume=...)")
    if cfg.restarts > 1:
        return _resume_restarts(run_dir, cfg, previous, writer, data, y, callbacks, console, trust_code,
                                (done or {}).get("test_evaluations", 0))
    last = run_dir / "checkpoints" / "last.safetensors"
    if cfg.checkpoint and not last.is_file():
        raise TrainwiseError(f"run '{run_dir}' has no checkpoint yet: it stopped before its first epoch was saved",
                             hint=f"start it again: trainwise fit --config {run_dir / 'config.yaml'} --run-dir NEW_DIR")
    recipe = _recorded_recipe(run_dir, cfg, trust_code)
    state = load_trainer_state(last, map_location=resolve_device(cfg.device))
    _check_epochs(state["epoch"], last, cfg.epochs, previous.epochs)
    setup = setup_run(cfg, data, y, recipe=recipe, world=world, sample_weight=sample_weight)
    recorded, now = (done or {}).get("data", {}), setup.prep.describe()
    for key, what, given in (("train_weights", "sample weights", "sample_weight"),
                             ("train_probabilities_sha256", "class probabilities as targets (soft targets)", "y")):
        # an in-memory run's rows are not in its files: the stopped run's summary records what they were
        was, is_now = recorded.get(key), now.get(key)
        if done and was != is_now:
            raise TrainwiseError(f"run '{run_dir}' was trained {'with' if was else 'without'} {what}, but "
                                 f"{('other' if is_now else 'none') if was else 'some'} were given now",
                                 hint=f"pass the same {given} as when it started")
    if recipe is not None and recipe["builder"] != "import" and recipe != model_recipe(
            cfg, setup.prep, setup.output_size, setup.kind):
        raise TrainwiseError(f"'{run_dir / 'model.json'}' does not describe the model of '{run_dir / 'config.yaml'}' "
                             f"({cfg.model} on inputs of shape {setup.prep.input_shape})",
                             hint="one of the two files was edited: restore it, or start the run again")
    result = train_run(setup, callbacks=callbacks, writer=writer, console=console, resume_state=state, resume_source=str(last),
                       evaluate_test=world is None or world.main)
    if writer is not None:
        writer.write_config(setup.cfg)
    return _finish(result, writer, {"resumed_from_epoch": state["epoch"]} | (_distributed(setup) or {}),
                   previous_tests=(done or {}).get("test_evaluations", 0))


def _resume_restarts(run_dir: Path, cfg: RunConfig, previous: RunConfig, writer: RunWriter, data: Any, y: Any, callbacks,
                     console, trust_code: bool, previous_tests: int) -> FitResult:
    """Continue a `--restarts` run from its population's checkpoints (each restart, or the stacked group,
    where it was; those not started from the start)."""
    if not cfg.checkpoint:
        raise TrainwiseError(f"run '{run_dir}' was trained with --no-checkpoint, so there is nothing to resume from",
                             hint=f"start it again: trainwise fit --config {run_dir / 'config.yaml'} --run-dir NEW_DIR")
    if cfg.epochs != previous.epochs:
        raise TrainwiseError(f"run '{run_dir}' has {cfg.restarts} restarts, which resume with their own {previous.epochs} epochs",
                             hint="resume it without --epochs; to train longer, start a new run")
    first = run_dir / "restarts" / f"seed-{cfg.seed}"
    recipe = _recorded_recipe(first, cfg, trust_code) if (first / "model.json").is_file() else \
        _recorded_recipe(run_dir, cfg, trust_code)
    setup = setup_run(cfg, data, y, recipe=recipe)
    return _fit_restarts(setup, writer, callbacks, console, resume=True, previous_tests=previous_tests)


def _recorded_recipe(run_dir: Path, cfg: RunConfig, trust_code: bool) -> dict[str, Any] | None:
    """The model a resumed run continues: its model.json (checked; user code only with ``trust_code`` and a
    matching hash). Without one (a run from before model.json was written up front) None: only a built-in
    spec in config.yaml, which imports nothing, is then resolved from the config."""
    path = run_dir / "model.json"
    if path.is_file():
        recipe = read_recipe(path, trust_code=trust_code)
        if recipe["builder"] == "ensemble":
            raise TrainwiseError(f"run '{run_dir}' is an ensemble of trained runs, which has nothing to resume",
                                 hint="resume its member runs, then build the ensemble again")
        if (recipe["builder"] == "import") != (not is_builtin_spec(cfg.model)):
            raise TrainwiseError(f"'{path}' ({recipe['builder']}) and '{run_dir / 'config.yaml'}' (model {cfg.model}) "
                                 "describe different models", hint="one of the two files was edited: restore it, or start the run again")
        return recipe
    if not is_builtin_spec(cfg.model):
        raise TrainwiseError(f"run '{run_dir}' has no model.json recording which file its model code ({cfg.model}) came from "
                             "and its SHA-256, so it cannot be checked", hint="start the run again (runs now record it before the first epoch)")
    return None


def _check_epochs(done: int, checkpoint: Path, epochs: int, configured: int) -> None:
    """A checkpoint's epoch counter must be possible under the run's config (and the --epochs asked for)."""
    if epochs == configured and done > configured:
        raise TrainwiseError(f"'{checkpoint}' says {done} epochs are done, but the run's config.yaml allows only {configured}",
                             hint="the checkpoint was edited or comes from another run (if this run was resumed with a "
                                  "higher --epochs before, give that --epochs again)")
    if done > epochs:
        raise TrainwiseError(f"--epochs {epochs} is below the {done} epochs '{checkpoint}' already has",
                             hint=f"give --epochs above {done} to train longer, or leave it out")
