"""The defaults are good: the issue's accuracy bars at seed 0, and better than scikit-learn's MLP on the same splits."""
import warnings

import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.neural_network import MLPClassifier, MLPRegressor

import trainwise


@pytest.mark.slow
@pytest.mark.parametrize("name,metric,bar", [("digits", "test/accuracy", 0.97), ("breast-cancer", "test/accuracy", 0.96),
                                             ("diabetes", "test/r2", 0.40)])
def test_default_beats_bar_and_sklearn(name, metric, bar, tmp_path):
    r = trainwise.fit(name, quiet=True, run_dir=tmp_path / "run")  # all defaults, seed 0
    ours = r.test[metric]
    assert ours >= bar
    (X, y), (Xte, yte) = r.data.arrays["train"], r.data.arrays["test"]  # the same training and test splits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if r.data.task == "classification":
            theirs = accuracy_score(yte, MLPClassifier(random_state=0).fit(X, y).predict(Xte))
        else:
            theirs = r2_score(yte, MLPRegressor(random_state=0).fit(X, y).predict(Xte))
    assert ours >= theirs, f"{name}: trainwise {ours:.4f} < sklearn {theirs:.4f}"
