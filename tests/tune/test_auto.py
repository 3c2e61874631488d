"""`trainwise auto`: every stage runs, in budget, and the test split is looked at once."""
import json

import pandas as pd
import pytest

from trainwise.tune.auto import auto


@pytest.mark.slow
def test_auto_runs_the_recipe_within_budget(tmp_path):
    s = auto("wine", budget_minutes=0.5, out=tmp_path / "a", epochs=8, monitor="val/loss")  # short trials: several complete even on a busy machine
    assert s["status"] == "done" and s["wall_time_s"] <= 30 + 10  # the budget, plus the final retrain's margin
    assert [st["stage"] for st in s["stages"]] == ["sanity", "lr_finder", "search", "final"]
    assert s["stages"][0]["can_learn"] and s["test_evaluations"] == 1 and s["test"]["test/accuracy"] > 0.8
    low, high = s["stages"][1]["search_range"]
    top = s["stages"][1]["suggestion"]
    assert (low, high) == (min(top / 10, 1e-3), max(top, 1e-2))  # below the suggestion, and Adam's usual rates
    trials = pd.read_csv(tmp_path / "a" / "search" / "results.csv")
    assert len(trials) == s["stages"][2]["trials"] >= 4
    assert set(trials["model"]) <= {"mlp:128,64", "mlp:256,128", "mlp:256"}  # capacity is searched too
    first = trials[trials["trial"] == 0].iloc[0]
    assert first["model"] == "mlp:128,64" and first["dropout"] == 0.0 and abs(first["lr"] - (top * top / 10) ** 0.5) < 1e-12  # the regularized run
    plain = trials.set_index("trial").loc[[1, 2, 3]]  # then a practitioner's grid: Adam's usual rates, dropout and weight decay 0
    assert plain["lr"].tolist() == [1e-3, 3e-3, 1e-2] and (plain["weight_decay"] == 0).all() and (plain["dropout"] == 0).all()
    assert (plain[["model", "batch_size"]] == first[["model", "batch_size"]]).all().all()
    assert low <= trials["lr"].min() and trials["lr"].max() <= high
    for trial in trials["trial"]:
        assert json.loads((tmp_path / "a" / "search" / f"trial-{trial}" / "summary.json").read_text())["test"] is None
    assert (tmp_path / "a" / "best" / "report.html").is_file() and (tmp_path / "a" / "lr_find.png").is_file()
    best = json.loads((tmp_path / "a" / "best" / "summary.json").read_text())
    assert best["test_evaluations"] == 1 and best["test"] == s["test"]
    # the final model averages the best complete trials (up to 5), best validation loss first
    complete = trials[trials["status"] == "complete"].head(5)
    assert [m["trial"] for m in best["members"]] == complete["trial"].tolist() == [
        m["trial"] for m in sorted(best["members"], key=lambda m: m["best_val/loss"])]
    assert s["stages"][3]["members"] == len(complete) >= 2


def test_ensemble_run_is_an_ordinary_run(tmp_path):
    import pytest
    import torch

    import trainwise
    from trainwise.errors import TrainwiseError
    from trainwise.tune.ensemble import ensemble_run

    runs = [trainwise.fit("wine", seed=0, model=m, lr=lr, epochs=15, quiet=True, run_dir=str(tmp_path / f"m{i}"))
            for i, (m, lr) in enumerate([("mlp:32", 3e-3), ("mlp:16,16", 1e-2), ("mlp:64", 1e-3)])]
    s = ensemble_run([r.run_dir for r in runs], tmp_path / "ens")
    assert s["model"]["recipe"]["builder"] == "ensemble" and s["model"]["parameters"] == sum(
        r.summary["model"]["parameters"] for r in runs)
    X = torch.from_numpy(runs[0].data.arrays["test"][0])
    with torch.no_grad():
        mean_p = sum(torch.softmax(r.model.eval()(X), -1) for r in runs) / 3
    import numpy as np

    np.savez(tmp_path / "rows.npz", X=trainwise.load_source("wine").X[runs[0].data.indices["test"]])  # raw rows
    pred = trainwise.predict(tmp_path / "ens", tmp_path / "rows.npz")
    assert pred["prediction"].tolist() == [runs[0].data.class_names[i] for i in mean_p.argmax(1).tolist()]
    acc = float((mean_p.argmax(1).numpy() == runs[0].data.arrays["test"][1]).mean())
    assert s["test"]["test/accuracy"] == pytest.approx(acc, abs=1e-9)
    with pytest.raises(TrainwiseError, match="already evaluated 1 time"):
        trainwise.evaluate(tmp_path / "ens")
    assert (tmp_path / "ens" / "report.html").is_file() and s["test_confusion"] is not None


class _Searched(Exception):
    pass


@pytest.mark.parametrize(("options", "rates", "searched"), [
    ({"optimizer": "sgd"}, [1e-2, 3e-2, 1e-1], {"lr", "dropout", "weight_decay", "batch_size", "model"}),
    ({"optimizer": "adamw", "dropout": [0.3, 0.1]}, [1e-3, 3e-3, 1e-2], {"lr", "weight_decay", "batch_size"}),
])
def test_the_search_is_given_the_optimizers_usual_rates_as_valid_points(tmp_path, monkeypatch, options, rates, searched):
    calls = {}

    def tune(space, **kwargs):  # stands in for the search: records what auto asks of it
        calls.update(space=space, **kwargs)
        raise _Searched

    monkeypatch.setattr("trainwise.tune.auto.tune", tune)
    with pytest.raises(_Searched):
        auto("iris", budget_minutes=1, out=tmp_path / "a", epochs=3, **options)
    space, (first, *plain) = calls["space"], calls["enqueue"]
    assert set(space) == set(first) == searched and [p["lr"] for p in plain] == rates
    for p in plain:  # the rest of trial 0's settings, with no dropout or weight decay of auto's own
        assert {k: v for k, v in p.items() if k not in ("lr", "dropout", "weight_decay")} == {
            k: v for k, v in first.items() if k not in ("lr", "dropout", "weight_decay")}
        assert p["weight_decay"] == 0.0 and p.get("dropout", 0.0) == 0.0 and set(p) == searched
        assert space["lr"]["low"] <= p["lr"] <= space["lr"]["high"]
        assert p["weight_decay"] in space["weight_decay"]["choices"] and p["batch_size"] in space["batch_size"]["choices"]
    assert space["lr"]["low"] <= first["lr"] <= space["lr"]["high"]
