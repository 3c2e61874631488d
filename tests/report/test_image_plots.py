"""The plots a practitioner looks at: training images (as loaded and augmented), test predictions with the
mistakes first, and the regression fit in the target's own units; only where they apply."""
import re

import numpy as np
import pytest
import sklearn.datasets
from PIL import Image

from tests.conftest import class_images
from trainwise import pipeline
from trainwise.config import RunConfig
from trainwise.data.preprocess import Preprocessor
from trainwise.report.plots import (
    confusion_matrix,
    denormalize_images,
    pick_by_class,
    pick_test_samples,
    plot_samples,
    plot_test_predictions,
    regression_points,
)
from trainwise.report.writer import RunWriter

NEW_PLOTS = ("samples.png", "test_predictions.png", "regression.png")


# --- choosing what to show -------------------------------------------------------------------------
def test_pick_by_class_shows_every_class_before_any_twice():
    labels = [2, 2, 2, 0, 1, 1, 2, 0]
    assert pick_by_class(labels, 3) == [3, 4, 0]  # one of each class (in class order), the first row of each
    assert pick_by_class(labels, 100) == [3, 4, 0, 7, 5, 1, 2, 6]  # then the second of each, ...
    assert pick_by_class([], 4) == []


def test_pick_test_samples_puts_exactly_the_wrong_ones_first():
    y_true = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    y_pred = np.array([0, 2, 2, 1, 1, 2, 0, 1, 0, 0])  # wrong: rows 1, 3, 8
    shown = pick_test_samples(y_true, y_pred, 6)
    assert sorted(shown[:3]) == [1, 3, 8] and shown[:3] == [3, 1, 8]  # class by class of the true label
    assert all(y_true[i] == y_pred[i] for i in shown[3:]) and len(set(shown)) == 6
    # more mistakes than places: a quarter of them stays for right answers, as long as there are some
    y_pred_bad = (y_true + 1) % 3
    y_pred_bad[[0, 4]] = y_true[[0, 4]]  # two right
    shown = pick_test_samples(y_true, y_pred_bad, 8)
    assert [y_true[i] == y_pred_bad[i] for i in shown] == [False] * 6 + [True] * 2
    assert pick_test_samples(y_true, (y_true + 1) % 3, 4) == pick_by_class(y_true, 4)  # all wrong: all shown are
    assert pick_test_samples(y_true, y_true, 4) == pick_by_class(y_true, 4)  # none wrong


def test_plot_test_predictions_returns_what_it_drew(tmp_path):
    X, y = class_images(30, 3, size=12)
    pred = y.copy()
    pred[[4, 10]] = (pred[[4, 10]] + 1) % 3
    shown = plot_test_predictions(X[:, None] / 255.0, y, pred, ["a", "b", "c"], tmp_path / "t.png", n=9, cols=3)
    assert shown[:2] == [4, 10] and len(shown) == 9 and all(y[i] == pred[i] for i in shown[2:])
    with Image.open(tmp_path / "t.png") as img:
        assert img.format == "PNG" and img.size[0] > 200


def test_samples_get_a_second_block_only_with_augmentation(tmp_path):
    X = np.random.default_rng(0).random((8, 3, 10, 10))
    plot_samples(X, list("abcdefgh"), tmp_path / "one.png")
    plot_samples(X, list("abcdefgh"), tmp_path / "two.png", augmented=X[:, :, ::-1], augment="vflip")
    with Image.open(tmp_path / "one.png") as one, Image.open(tmp_path / "two.png") as two:
        assert one.size[0] == two.size[0] and two.size[1] > 1.8 * one.size[1]


# --- undoing normalization -------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["half", "train", "imagenet", "none"])
@pytest.mark.parametrize("channels", [1, 3])
def test_denormalize_round_trips(norm, channels):
    pixels = np.random.default_rng(1).random((6, channels, 5, 4)).astype(np.float32)
    pre = Preprocessor(image_norm=norm).fit(pixels)
    normalized = pre.transform(pixels)
    assert norm == "none" or not np.allclose(normalized, pixels)
    np.testing.assert_allclose(denormalize_images(normalized, pre.mean_, pre.std_), pixels, atol=1e-6, rtol=0)


def test_the_run_shows_the_pixels_it_loaded(image_run, tiny_fashion):
    from trainwise.data.images import read_idx

    prep = image_run.data
    raw = read_idx(tiny_fashion / "train-images-idx3-ubyte.gz")[prep.indices["train"]][:, None] / 255
    shown = denormalize_images(prep.arrays["train"][0], prep.preprocessor.mean_, prep.preprocessor.std_)
    np.testing.assert_allclose(shown, raw, atol=1e-6, rtol=0)


def test_regression_points_are_in_the_targets_units():
    true, pred, resid = regression_points(np.array([[-1.0], [0.5]]), np.array([1.0, 0.0], np.float32), mean=100.0, std=10.0)
    assert true.tolist() == [110.0, 100.0] and pred.tolist() == [90.0, 105.0] and resid.tolist() == [20.0, -5.0]


# --- what a run writes -------------------------------------------------------------------------------
def test_image_run_writes_samples_and_test_predictions(image_run):
    d = image_run.run_dir
    for name in ("samples.png", "test_predictions.png"):
        with Image.open(d / name) as img:
            assert img.format == "PNG" and img.size[0] > 500 and img.size[1] > 300
    assert not (d / "regression.png").exists()
    with Image.open(d / "samples.png") as img:  # two blocks (as loaded, augmented) of 2 rows of 8 images
        assert img.size[1] > 0.6 * img.size[0]


def test_regression_run_writes_the_fit_in_target_units(regression_run):
    d = regression_run.run_dir
    with Image.open(d / "regression.png") as img:
        assert img.format == "PNG" and img.size[0] > 500
    assert not any((d / n).exists() for n in ("samples.png", "test_predictions.png", "confusion.png"))


def test_test_predictions_are_the_ones_the_confusion_matrix_counts(tiny_fashion, tmp_path):
    setup = pipeline.setup_run(RunConfig(data="fashion-mnist", data_dir=str(tiny_fashion), model="mlp:16", epochs=2, quiet=True))
    result = pipeline.train_run(setup)  # in memory: nothing written
    y = setup.prep.arrays["test"][1]
    assert result.test_predictions.shape == y.shape
    assert confusion_matrix(y, result.test_predictions, 10) == result.confusion
    assert np.mean(result.test_predictions == y) == pytest.approx(result.test["test/accuracy"])
    # the writer draws them; a trial's writer (plots off, as the search makes them) draws nothing
    trial = RunWriter(tmp_path / "search").sub("trial-0", plots=False)
    trial.write_summary(result, result.summary())
    assert {p.name for p in trial.run_dir.iterdir()} == {"summary.json"}
    full = RunWriter(tmp_path / "full")
    full.write_summary(result, result.summary())
    assert {"samples.png", "test_predictions.png", "confusion.png"} <= {p.name for p in full.run_dir.iterdir()}


def test_regression_predictions_match_the_test_metrics_in_original_units():
    setup = pipeline.setup_run(RunConfig(data="diabetes", epochs=3, quiet=True))
    result = pipeline.train_run(setup)
    true, pred, resid = regression_points(result.test_predictions, setup.prep.arrays["test"][1],
                                          mean=setup.prep.target.mean, std=setup.prep.target.std)
    y = sklearn.datasets.load_diabetes().target[setup.prep.indices["test"]]
    np.testing.assert_allclose(true, y, rtol=1e-5)  # the standardization undone: the data set's own numbers
    assert np.sqrt(np.mean(resid ** 2)) == pytest.approx(result.test["test/rmse"], rel=1e-4)
    assert np.mean(np.abs(resid)) == pytest.approx(result.test["test/mae"], rel=1e-4)


def test_tabular_classification_gets_none_of_the_new_plots(tmp_path):
    import trainwise

    r = trainwise.fit("iris", epochs=2, quiet=True, checkpoint=False, run_dir=tmp_path / "r")
    assert (r.run_dir / "confusion.png").is_file() and not any((r.run_dir / n).exists() for n in NEW_PLOTS)
    assert "<figure>" not in (r.run_dir / "report.html").read_text()


# --- report.html ----------------------------------------------------------------------------------
def test_report_embeds_the_image_plots_with_captions(image_run):
    page = (image_run.run_dir / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 5  # curves, gradient flow, confusion, samples, test predictions
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", page)
    m = np.array(image_run.summary["test_confusion"])
    wrong = int(m.sum() - np.trace(m))
    assert captions == [f"Test images labelled predicted / true: {wrong} of {m.sum()} wrong; the wrong ones are shown "
                        "first, in red and framed.",
                        "Training images with their labels, as loaded (normalization undone), then as the training "
                        "batches see them (--augment flip,rotate=10)."]
    assert page.index('alt="test predictions"') < page.index('id="diagnostics"') < page.index('id="data"') < \
        page.index('alt="training images"') < page.index('id="model"')


def test_report_embeds_the_regression_plot(regression_run):
    page = (regression_run.run_dir / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3  # curves, gradient flow, regression
    assert re.findall(r"<figcaption>([^<]*)</figcaption>", page) == [
        "Test split in the target&#x27;s own units (y): predicted vs true (dashed: y = x) and residuals "
        "(true − predicted) vs predicted."]
