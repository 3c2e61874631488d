"""Run plots: confusion matrix (numbers and PNG) and gradient flow."""
import numpy as np
from PIL import Image

import trainwise
from trainwise.report import confusion_matrix, plot_gradient_flow


def test_confusion_matrix_matches_test_accuracy_and_is_drawn(tmp_path):
    r = trainwise.fit("wine", run_dir=tmp_path / "r", quiet=True, epochs=10, checkpoint=False)
    m = np.array(r.summary["test_confusion"])
    assert m.shape == (3, 3) and m.sum() == r.summary["data"]["sizes"]["test"]
    assert np.trace(m) / m.sum() == r.test["test/accuracy"]
    assert m.sum(1).tolist() == np.bincount(r.data.arrays["test"][1], minlength=3).tolist()  # rows are true classes
    for name in ("confusion.png", "gradient_flow.png", "curves.png"):
        with Image.open(tmp_path / "r" / name) as img:
            assert img.format == "PNG" and img.size[0] > 200


def test_regression_has_no_confusion_matrix(tmp_path):
    r = trainwise.fit("diabetes", run_dir=tmp_path / "r", quiet=True, epochs=2, checkpoint=False)
    assert r.summary["test_confusion"] is None and not (tmp_path / "r" / "confusion.png").exists()


def test_confusion_matrix_counts():
    assert confusion_matrix([1, 1, 0], [1, 0, 0], 2) == [[1, 0], [1, 1]]


def test_gradient_flow_plot_tolerates_zero_norms(tmp_path):
    plot_gradient_flow(["a", "b", "c"], [[1e-8, 0.0, 1.0], [1e-7, 1e-3, 0.5]], tmp_path / "g.png")
    with Image.open(tmp_path / "g.png") as img:
        assert img.format == "PNG"
