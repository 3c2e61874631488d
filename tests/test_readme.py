"""The README's Python code blocks run as printed, on data the test provides for the names they leave open
(X, y, df, my_module, X_new, X_train, ...), in a scratch folder (they write runs/ and read new.csv there)."""
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_digits, load_iris

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def _namespace():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)).astype(np.float32)
    y = (X @ np.array([1.0, -2.0, 0.5, 0.0, 1.5]) + 0.1 * rng.normal(size=200)).astype(np.float32)
    digits = load_digits()
    pd.DataFrame(digits.data[:20], columns=[f"pixel_{i}" for i in range(64)]).to_csv("new.csv", index=False)
    df = pd.DataFrame({"area": rng.uniform(30, 200, 100), "city": rng.choice(["a", "b", "c"], 100)})
    df["price"] = 3 * df["area"] + np.where(df["city"] == "a", 100, 0) + rng.normal(0, 10, 100)
    return {"X": X, "y": y, "df": df, "my_module": torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)),
            "X_new": digits.data[:10], "X_val": digits.data[-100:], "y_val": digits.target[-100:]}


def test_the_readme_has_the_python_blocks_this_test_knows():
    assert len(BLOCKS) == 3 and "trainwise.load(" in BLOCKS[0] and "GridSearchCV" in BLOCKS[1] and "class PrintLR" in BLOCKS[2]


def test_python_api_block_runs_as_printed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns = _namespace()
    exec(compile(BLOCKS[0], "README.md (Python)", "exec"), ns)
    assert ns["result"].test["test/accuracy"] > 0.9 and (tmp_path / "runs" / "digits-wide" / "summary.json").is_file()
    assert ns["model"].predict(ns["X_new"]).shape == (10,) and ns["model"].predict_proba(ns["X_new"]).shape == (10, 10)
    assert ns["model"].evaluate(ns["X_val"], ns["y_val"])["eval/accuracy"] > 0.9


def test_scikit_learn_block_runs_as_printed():
    ns = _iris()
    exec(compile(BLOCKS[1], "README.md (scikit-learn)", "exec"), ns)
    assert ns["search"].best_score_ > 0.8


def test_trainer_block_runs_as_printed(capsys):
    ns = {k: torch.as_tensor(v) for k, v in _iris().items()}
    ns["model"] = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    ns["X_train"], ns["X_val"] = ns["X_train"].float(), ns["X_test"].float()
    ns["y_val"] = ns["y_test"]
    exec(compile(BLOCKS[2], "README.md (Trainer)", "exec"), ns)
    printed = capsys.readouterr().out.splitlines()
    assert printed and printed[0].split()[0] == "1" and len(printed) == len(ns["trainer"].history)


def _iris():
    Xi, yi = load_iris(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(yi))
    Xi, yi = Xi[order], yi[order]
    return {"X_train": Xi[:100], "y_train": yi[:100], "X_test": Xi[100:], "y_test": yi[100:]}
