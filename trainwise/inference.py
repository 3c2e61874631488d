"""Using a saved run: ``evaluate`` (the sealed test split, or other labelled data) and ``predict`` (new rows or
image files), both with exactly the run's own preprocessing."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .data import Preprocessor, TargetEncoder, TensorBatches, load_source, open_npz, prepare, read_npz_array, read_table, to_tensors
from .data.images import IMAGE_SUFFIXES, read_image, to_unit
from .errors import TrainwiseError
from .models.check import check_model_fits
from .pipeline import load_raw
from .runs import atomic_write, check_output_file, write_json
from .saved import load_run
from .train import Trainer

__all__ = ["evaluate", "predict"]


def evaluate(run_dir: str | Path, data: str | None = None, *, force_test: bool = False,
             trust_code: bool = False) -> dict[str, float]:
    """Loss and metrics of a saved run on ``data``, or on its own test split (rebuilt from its config).

    The test split is sealed: `fit` evaluates it once, and a second look is refused unless ``force_test``;
    every look is counted in summary.json's ``test_evaluations``. ``trust_code``: allow a run whose model is
    user code (imported from the file recorded at fit time, only while its SHA-256 matches; see `load_run`).
    """
    run = load_run(run_dir, trust_code=trust_code)
    cfg, pp = run.config, run.preprocessing
    if data is None and run.summary.get("cv_fold"):
        raise TrainwiseError(f"'{run_dir}' is fold {run.summary['cv_fold']} of a cross-validation; its test split is not "
                             "the one its config would rebuild", hint="see the fold's summary.json and the CV's cv.csv, or "
                                                                     "pass --data FILE to evaluate it on other data")
    image = pp.get("image")
    if data is None:
        status = run.summary.get("status")
        if status not in (None, "completed", "early_stopped") and not force_test:
            raise TrainwiseError(f"run '{run_dir}' is unfinished (status '{status}': {run.summary.get('stop_reason')}); "
                                 "its test split is evaluated on the final model, once",
                                 hint=f"finish it with `trainwise fit --resume {run_dir}` (it then evaluates the test split), "
                                      "or pass --force-test to evaluate the weights it has now (the look is counted)")
        seen = run.summary.get("test_evaluations", 0)
        if seen and not force_test:
            previous = ", ".join(f"{k} {v:.4f}" for k, v in (run.summary.get("test") or {}).items())
            raise TrainwiseError(
                f"the test split of run '{run_dir}' was already evaluated {seen} time(s) ({previous}); looking again "
                "invites choosing models by their test score, which makes it an optimistic estimate",
                hint="report the number in summary.json; compare models on validation metrics; pass --force-test to "
                     "evaluate it again anyway (it will be counted)")
        prep = prepare(load_raw(cfg), task=cfg.task, split=cfg.split, seed=cfg.seed, standardize=cfg.standardize,
                       impute=cfg.missing == "median", image_norm=cfg.image_norm)
        if "test" not in prep.arrays:
            raise TrainwiseError(f"run '{run_dir}' has no test split (split={cfg.split})", hint="pass --data FILE with targets")
        X, yy, prefix = *prep.arrays["test"], "test"
    else:
        raw = load_source(data, target=cfg.target or pp["target_name"], missing=cfg.missing, seed=cfg.seed,
                          data_dir=cfg.data_dir, image_size=image["size"] if image else None,
                          channels=str(image["channels"]) if image else "auto", na_values=cfg.na_values)
        X = _transform(Preprocessor.from_state(pp["features"]), raw.X, data)
        yy, prefix = TargetEncoder.from_state(pp["target"]).encode(raw.y, what=f"target of '{data}'"), "eval"
    trainer = Trainer(run.model, loss=pp["loss"], kind=pp["kind"], optimizer=None,
                      target_std=pp["target"]["std"])
    Xt, yt = to_tensors(X, yy, pp["kind"], torch.device("cpu"))
    check_model_fits(run.model, Xt[:2], run.recipe, run.summary.get("model", {}).get("spec", "?"), None)
    metrics = trainer.evaluate(TensorBatches(Xt, yt, batch_size=4096, shuffle=False), prefix=prefix)
    if prefix == "test":
        write_json(run.path / "summary.json", {**run.summary, "test_evaluations": run.summary.get("test_evaluations", 0) + 1})
    return metrics


def predict(run_dir: str | Path, inputs: str | Path | list, output: str | Path | None = None, *, trust_code: bool = False):
    """Predictions (and class probabilities) of a saved run as a DataFrame, written as CSV to ``output`` when given.

    ``inputs``: a .csv or .npz file of feature rows, or image files (one row per image, with a ``file`` column;
    an unreadable image gets its ``error`` and the others are still predicted). The run's own preprocessing
    (for images: channels, size, normalization) is applied. ``trust_code``: as in `evaluate`.
    """
    if output is not None:
        check_output_file(output)
    run = load_run(run_dir, trust_code=trust_code)
    paths = [Path(p) for p in (inputs if isinstance(inputs, (list, tuple)) else [inputs])]
    images = [p.suffix.lower() in IMAGE_SUFFIXES for p in paths]
    if any(images):
        if not all(images):
            raise TrainwiseError(f"cannot mix image files and other inputs: {', '.join(str(p) for p, i in zip(paths, images) if not i)}",
                                 hint="give only image files (" + ", ".join(IMAGE_SUFFIXES) + "), or one .csv/.npz file")
        frame = _predict_images(run, paths)
    elif len(paths) != 1:
        raise TrainwiseError(f"got {len(paths)} input files; tables are predicted one file at a time", hint="give one .csv or .npz file")
    else:
        X = _read_table(run, paths[0])
        frame = _frame(run, _forward(run, _transform(Preprocessor.from_state(run.preprocessing["features"]), X, paths[0])))
    if output is not None:
        atomic_write(output, frame.to_csv(index=False))
    return frame


def _read_table(run, path: Path):
    pp = run.preprocessing
    if pp.get("image"):
        raise TrainwiseError(f"run '{run.path}' was trained on images; '{path}' is not one",
                             hint="give image files (" + ", ".join(IMAGE_SUFFIXES) + ")")
    if not path.is_file():
        raise TrainwiseError(f"input file '{path}' does not exist", hint="give a .csv or .npz file of feature rows")
    if path.suffix.lower() == ".csv":
        X = read_table(path, run.config.na_values)
        return X.drop(columns=[pp["target_name"]]) if pp["target_name"] in X.columns else X
    if path.suffix.lower() == ".npz":
        npz = open_npz(path)
        key = next((k for k in ("X", "X_test") if k in npz.files), None)
        if key is None:
            raise TrainwiseError(f"'{path}' has no array 'X' (keys: {npz.files})", hint="save features with numpy.savez(path, X=...)")
        X = read_npz_array(npz, key, path)
        if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool) or np.iscomplexobj(X) or X.ndim < 1:
            raise TrainwiseError(f"'{path}': array '{key}' has dtype {X.dtype} and shape {X.shape}, not rows of real numbers",
                                 hint="save the features as numbers: numpy.savez(path, X=X.astype('float32'))")
        with np.errstate(invalid="ignore"):
            bad = ~(np.abs(X.astype(np.float64).reshape(len(X), -1)) <= np.finfo(np.float32).max).all(axis=1)
        if bad.any():
            raise TrainwiseError(f"'{path}': {int(bad.sum())} rows of '{key}' hold NaN, infinite or too large values, "
                                 f"e.g. row {int(np.flatnonzero(bad)[0])}", hint="clean those rows before predicting")
        return X
    raise TrainwiseError(f"cannot predict from '{path}': unsupported file type '{path.suffix}'",
                         hint="use a .csv or .npz file, or image files (" + ", ".join(IMAGE_SUFFIXES) + ")")


def _transform(pre: Preprocessor, X, source) -> np.ndarray:
    """The run's preprocessing applied to ``X``, with a warning per one-hot column for categories the training
    split never had (encoded as all zeros), naming the values and how many rows hold them."""
    for col, values in pre.unseen_categories(X).items():
        listing = ", ".join(f"{v!r} ({n})" for v, n in list(values.items())[:5]) + (", ..." if len(values) > 5 else "")
        warnings.warn(f"'{source}': column '{col}' has {sum(values.values())} row(s) with categories never seen in training: "
                      f"{listing}; they are encoded as all zeros (no category)", UserWarning, stacklevel=3)
    return pre.transform(X)


def _predict_images(run, paths: list[Path]):
    image = run.preprocessing.get("image")
    if not image:
        raise TrainwiseError(f"run '{run.path}' was trained on table rows (input shape {run.summary['data']['input_shape']}), "
                             "not images", hint="give a .csv or .npz file of feature rows")
    decoded, errors = [], []
    for p in paths:
        try:
            decoded.append(read_image(p, image["channels"], tuple(image["size"])))
            errors.append(None)
        except TrainwiseError as e:
            errors.append(str(e))
    frame = pd.DataFrame({"file": [str(p) for p in paths]})
    if decoded:
        X = Preprocessor.from_state(run.preprocessing["features"]).transform(to_unit(np.stack(decoded)))
        ok = [i for i, e in enumerate(errors) if e is None]
        frame = frame.join(_frame(run, _forward(run, X)).set_axis(ok))  # rows of unreadable files stay empty
    if any(e is not None for e in errors):
        frame["error"] = errors
    return frame


def _forward(run, X: np.ndarray) -> torch.Tensor:
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    check_model_fits(run.model, Xt[:2], run.recipe, run.summary.get("model", {}).get("spec", "?"), None)
    with torch.inference_mode():
        return torch.cat([run.model(Xt[i:i + 4096]) for i in range(0, len(Xt), 4096)]).double()


def _frame(run, out: torch.Tensor):
    pp = run.preprocessing
    t = pp["target"]
    if pp["kind"] == "regression":
        return pd.DataFrame({"prediction": (out[:, 0] * t["std"] + t["mean"]).numpy()})
    probs = torch.softmax(out, -1) if pp["kind"] == "multiclass" else torch.cat([1 - out.sigmoid(), out.sigmoid()], 1)
    names = pp["class_names"]
    frame = pd.DataFrame({"prediction": [names[i] for i in probs.argmax(1).tolist()]})
    for i, name in enumerate(names):
        frame[f"prob_{name}"] = probs[:, i].numpy()
    return frame
