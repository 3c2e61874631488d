"""`trainwise auto`: every stage runs, in budget, and the test split is looked at once."""
import json

import pandas as pd

from trainwise.tune.auto import auto


def test_auto_runs_the_recipe_within_budget(tmp_path):
    s = auto("wine", budget_minutes=0.5, out=tmp_path / "a")
    assert s["status"] == "done" and s["wall_time_s"] <= 30 + 10  # the budget, plus the final retrain's margin
    assert [st["stage"] for st in s["stages"]] == ["sanity", "lr_finder", "search", "retrain"]
    assert s["stages"][0]["can_learn"] and s["test_evaluations"] == 1 and s["test"]["test/accuracy"] > 0.8
    low, high = s["stages"][1]["search_range"]
    assert high == s["stages"][1]["suggestion"] and low == high / 10
    trials = pd.read_csv(tmp_path / "a" / "search" / "results.csv")
    assert len(trials) == s["stages"][2]["trials"] >= 2
    first = trials[trials["trial"] == 0].iloc[0]
    assert first["dropout"] == 0.1 and abs(first["lr"] - (low * high) ** 0.5) < 1e-12  # the regularized run
    assert low <= trials["lr"].min() and trials["lr"].max() <= high
    for trial in trials["trial"]:
        assert json.loads((tmp_path / "a" / "search" / f"trial-{trial}" / "summary.json").read_text())["test"] is None
    assert (tmp_path / "a" / "best" / "report.html").is_file() and (tmp_path / "a" / "lr_find.png").is_file()
    assert json.loads((tmp_path / "a" / "best" / "summary.json").read_text())["test_evaluations"] == 1


def test_auto_stops_when_the_model_cannot_learn(tmp_path, cli):
    code, out, _ = cli("auto", "--data", "iris", "--lr", "1e-9", "--budget-minutes", "1", "--out", str(tmp_path / "a"))
    assert code == 1 and "it cannot: training loss" in out
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["status"] == "stopped"
    assert not (tmp_path / "a" / "search").exists()
