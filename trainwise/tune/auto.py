"""`trainwise auto`: the lecture's systematic approach in one command, within a time budget.

1. prove the model can learn (overfit a tiny subset), 2. find a learning rate (range test), 3. a regularized
run with early stopping, 4. a bounded Optuna search around it, whose next trials are the optimizer's usual rates
(a practitioner's first grid) with no dropout or weight decay of auto's own, 5. retrain the best and evaluate the
test split once, 6. write the report. Stages 3-4 only ever see the train and validation splits.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from ..api import fit
from ..config import RunConfig
from ..errors import TrainwiseError
from ..pipeline import build_batches, build_trainer, check_run, model_for, setup_run
from ..report.writer import RunWriter, save_lr_find
from ..runs import check_output_dir
from ..train.lr_finder import lr_find
from .ensemble import ensemble_run
from .sanity import sanity
from .search import plain, tune

__all__ = ["auto", "capacity_choices", "usual_rates"]

_DECAYS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2)
# A practitioner's first grid: the optimizer's usual rates. Auto tries them right after trial 0 with dropout and weight
# decay 0 (a per-layer --dropout and --l1/--l2 stay as given), so its search also starts from the learning rates a
# hand-tuned script would try (README: Results on data nobody tuned for).
_USUAL_RATES = {"sgd": (1e-2, 3e-2, 1e-1)}
_ADAPTIVE_RATES = (1e-3, 3e-3, 1e-2)  # adam, adamw, rmsprop


def usual_rates(optimizer: str) -> tuple[float, ...]:
    """The learning rates a practitioner's grid starts from for ``optimizer``.

    >>> usual_rates("adam"), usual_rates("sgd")
    ((0.001, 0.003, 0.01), (0.01, 0.03, 0.1))
    """
    return _USUAL_RATES.get(optimizer, _ADAPTIVE_RATES)


def capacity_choices(model: str) -> list[str]:
    """The model as given plus roomier variants, so the search can trade capacity against regularization
    (the lecture: start from a model that can overfit, then regularize).

    >>> capacity_choices("mlp:128,64")
    ['mlp:128,64', 'mlp:256,128', 'mlp:256']
    >>> capacity_choices("cnn:16,32")
    ['cnn:16,32', 'cnn:32,64']
    >>> capacity_choices("resmlp:64,2"), capacity_choices("resnet:16,32:2")
    (['resmlp:64,2', 'resmlp:128,2', 'resmlp:64,4'], ['resnet:16,32:2', 'resnet:32,64:2'])
    >>> capacity_choices("my_models.py:build"), capacity_choices("tabular")
    (['my_models.py:build'], ['tabular'])
    """
    kind, _, rest = model.partition(":")
    conv, _, dense = rest.partition(":")
    if kind not in ("mlp", "cnn", "resmlp", "resnet") or not conv or not all(w.strip().isdigit() for w in conv.split(",")) \
            or (kind in ("mlp", "resmlp") and dense) or (kind == "resmlp" and conv.count(",") != 1):
        return [model]  # user code (or a spec we do not vary): its architecture is the user's decision
    widths = [int(w) for w in conv.split(",")]
    if kind in ("cnn", "resnet"):  # wider stages; a resnet's blocks per stage stay
        return [model, f"{kind}:{','.join(str(2 * w) for w in widths)}" + (f":{dense}" if dense else "")]
    if kind == "resmlp":  # wider, or deeper: twice the blocks
        return [model, f"resmlp:{2 * widths[0]},{widths[1]}", f"resmlp:{widths[0]},{2 * widths[1]}"]
    variants = [widths, [2 * w for w in widths], [2 * widths[0]]]
    return list(dict.fromkeys(f"mlp:{','.join(map(str, v))}" for v in variants))


def auto(data: str | None = None, *, budget_minutes: float = 10.0, out: str | Path | None = None, console=None,
         ensemble: int = 5, **options: Any) -> dict[str, Any]:
    """Run the recipe; returns a summary dict (also written to ``out/summary.json``). The final model averages
    the ``ensemble`` best trials (1: retrain the single best configuration)."""
    if ensemble < 1:
        raise TrainwiseError(f"ensemble must be >= 1, got {ensemble}", hint="e.g. --ensemble 5, or 1 for the single best trial")
    if budget_minutes <= 0:
        raise TrainwiseError(f"budget_minutes must be > 0, got {budget_minutes}", hint="e.g. --budget-minutes 5")
    t0 = time.perf_counter()
    deadline = t0 + 60 * budget_minutes
    if data is not None:
        options["data"] = data
    cfg = RunConfig.build({**options, "quiet": True}, source="option")
    if cfg.mlflow:
        raise TrainwiseError("--mlflow logs the runs of `trainwise fit`; cv, tune and auto do not log to MLflow yet",
                             hint="drop --mlflow here; train the chosen configuration with `trainwise fit --config ... --mlflow`")
    check_output_dir(out, "--run-dir")
    check_run(setup_run(cfg))  # input errors before the output folder exists
    writer = RunWriter(out) if out else RunWriter.create(None, f"{cfg.data}-auto")
    out_dir = writer.run_dir
    say = (lambda msg: console.print(msg)) if console is not None else (lambda msg: None)
    stages: list[dict[str, Any]] = []

    def stage(name: str, started: float, **info: Any) -> None:
        stages.append({"stage": name, "seconds": round(time.perf_counter() - started, 2), **info})

    s0 = time.perf_counter()
    say("[bold]1/6 can the model learn?[/bold] training on a tiny subset with regularization off")
    check = sanity(config=cfg)
    say(f"    {check.verdict}")
    stage("sanity", s0, can_learn=check.can_learn, verdict=check.verdict)
    if not check.can_learn:
        summary = {"status": "stopped", "reason": check.verdict, "stages": stages}
        writer.write_json("summary.json", summary)
        return summary

    s0 = time.perf_counter()
    say("[bold]2/6 learning-rate range test[/bold]")
    model, setup = model_for(cfg)
    found = lr_find(build_trainer(setup, model, []), build_batches(setup, cfg.seed, augment=False)["train"])
    save_lr_find(found, out_dir)
    top = found.suggestion or 1e-2
    low, high = top / 10, top  # the suggestion tends to sit near the edge of stability: search below it
    center = math.sqrt(low * high)
    rates = usual_rates(cfg.optimizer)
    low, high = min(low, rates[0]), max(high, rates[-1])  # the search range holds the usual rates too
    say(f"    suggested {top:.2e}; searching {low:.1e} .. {high:.1e}")
    stage("lr_finder", s0, suggestion=found.suggestion, search_range=[low, high])

    cfg = cfg.model_copy(update={k: getattr(setup.cfg, k) for k in ("model", "batch_size", "patience", "monitor")})  # autos resolved
    say(f"[bold]3/6 regularized run[/bold]: lr {center:.2e}, dropout {cfg.dropout}, early stopping (patience {cfg.patience})")
    say("[bold]4/6 bounded search around it[/bold] (Optuna TPE, median pruning; train/val only); next, "
        f"{cfg.optimizer}'s usual rates " + ", ".join(f"{r:g}" for r in rates) + " with dropout and weight decay 0")
    space = {"lr": {"type": "loguniform", "low": low, "high": high},
             "dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
             "weight_decay": {"type": "categorical", "choices": list(_DECAYS)},
             "batch_size": {"type": "categorical", "choices": sorted({cfg.batch_size, 16, 32, 64})},
             "model": {"type": "categorical", "choices": capacity_choices(cfg.model)}}
    if isinstance(cfg.dropout, list):  # the user's per-layer rates stay, and so does the model they fit
        space = {k: v for k, v in space.items() if k not in ("dropout", "model")}
    s0 = time.perf_counter()
    first = {"lr": center, "dropout": cfg.dropout, "weight_decay": cfg.weight_decay if cfg.weight_decay in _DECAYS
             else 0.0, "batch_size": cfg.batch_size, "model": cfg.model}
    first = {k: v for k, v in first.items() if k in space}
    fixed = {k: v for k, v in cfg.model_dump().items() if k not in space and k not in ("quiet", "checkpoint", "run_dir", "seed")}
    plain_points = [{**first, "lr": lr, "weight_decay": 0.0, **({"dropout": 0.0} if "dropout" in space else {})}
                    for lr in rates]
    reserve = 0.15 * (deadline - time.perf_counter()) + 10  # time kept for the final retrain and the report
    result = tune(space, method="optuna", trials=10_000, out=out_dir / "search", seed=cfg.seed,
                  timeout=max(deadline - time.perf_counter() - reserve, 1.0), enqueue=[first, *plain_points],
                  retrain=False, console=None, **fixed)
    table = result["results"]
    base_row = table[table["trial"] == 0].iloc[0]
    key = [c for c in table.columns if c.startswith("best_")][0]
    say(f"    the regularized run (trial 0): {key[5:]} {base_row[key]:.4f}")
    say(f"    {len(table)} trials ({(table['status'] == 'pruned').sum()} pruned); best {key[5:]} "
        f"{table.iloc[0][key]:.4f} with {result['best']}")
    stage("search", s0, trials=len(table), best=result["best"], best_value=float(table.iloc[0][key]),
          regularized_run=float(base_row[key]))

    s0 = time.perf_counter()
    complete = table[table["status"] == "complete"].head(ensemble)
    if len(complete) > 1:
        say(f"[bold]5/6 final model[/bold]: the {len(complete)} best trials by {key[5:]}, probabilities averaged "
            "(steadier than the single best on a small validation split); test split evaluated once")
        members = [{"trial": int(r["trial"]), key: float(r[key]), **{k: plain(r[k]) for k in space},
                    "run_dir": str(out_dir / "search" / f"trial-{int(r['trial'])}")} for _, r in complete.iterrows()]
        # trust_code: the trials were trained just now from the model spec the user gave; hashes are still checked
        final_summary = ensemble_run([m["run_dir"] for m in members], out_dir / "best", info=members, trust_code=True)
        say(f"    ensemble {key[5:]} {final_summary['best'].get(key[5:], float('nan')):.4f} "
            f"(best single trial {complete.iloc[0][key]:.4f})")
    else:
        say("[bold]5/6 retrain the best configuration and evaluate the test split once[/bold]")
        final_cfg = RunConfig.build({**fixed, **result["best"], "seed": cfg.seed, "quiet": True,
                                     "run_dir": str(out_dir / "best")}, source="best trial")
        final_summary = fit(config=final_cfg).summary
    test, run_dir = final_summary["test"], out_dir / "best"
    say("    test: " + ", ".join(f"{k} {v:.4f}" for k, v in (test or {}).items()))
    stage("final", s0, test=test, members=len(complete) if len(complete) > 1 else 1)
    say(f"[bold]6/6 report[/bold]: {run_dir / 'report.html'}")
    for d in final_summary["diagnostics"]:
        if d["severity"] != "info":
            say(f"    {d['severity']} {d['code']}: {d['evidence']}")
    summary = {"status": "done", "budget_minutes": budget_minutes, "wall_time_s": round(time.perf_counter() - t0, 1),
               "stages": stages, "best": result["best"], "test": test, "test_evaluations": 1,
               "run_dir": str(run_dir), "report": str(run_dir / "report.html")}
    writer.write_json("summary.json", summary)
    return summary
