from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from trainwise.cli import main


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    def run(*argv: str):
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


@pytest.fixture
def small_csv(tmp_path):
    """120 rows: two numeric features, one text feature, a text label that depends on them."""
    rng = np.random.default_rng(0)
    n = 120
    a, b = rng.normal(size=n), rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], size=n)
    label = np.where(a + (color == "red") * 1.5 > 0.3, "yes", "no")
    path = tmp_path / "small.csv"
    pd.DataFrame({"a": a, "b": b, "color": color, "label": label}).to_csv(path, index=False)
    return path


@pytest.fixture
def blobs():
    """Three well-separated Gaussian blobs in 4-D (300 rows)."""
    rng = np.random.default_rng(1)
    centers = rng.normal(scale=4, size=(3, 4))
    y = np.repeat(np.arange(3), 100)
    X = centers[y] + rng.normal(size=(300, 4))
    return X.astype(np.float32), y
