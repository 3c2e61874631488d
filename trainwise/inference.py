"""Using a saved run: ``evaluate`` (the sealed test split, or other labelled data), ``predict`` (new rows or
image files) and ``load`` (a `SavedModel` to call repeatedly), all with exactly the run's own preprocessing, on
paths, DataFrames, arrays or tensors."""
from __future__ import annotations

import os
import sys
import warnings
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .data import Preprocessor, TargetEncoder, TensorBatches, load_source, open_npz, prepare, read_npz_array, read_table, to_tensors
from .data.columns import ColumnRoles
from .data.images import IMAGE_SUFFIXES, read_image, to_unit
from .errors import TrainwiseError
from .frames import is_frame, is_series, pandas
from .models.check import check_model_fits
from .pipeline import load_raw
from .runs import atomic_write, check_output_file, write_json
from .saved import LoadedRun, load_run
from .train import Trainer
from .train.components import make_loss
from .train.metrics import MetricAccumulator, resolve_extra_metrics

if TYPE_CHECKING:  # annotations only: pandas loads on first use (frames.pandas)
    import pandas as pd

__all__ = ["evaluate", "predict", "load", "SavedModel"]


class SavedModel:
    """A finished run, loaded for use (`load`): ``.predict``, ``.predict_proba``, ``.evaluate`` on files, arrays,
    DataFrames or tensors, with exactly the run's own preprocessing. ``.model`` is the trained ``nn.Module`` (best
    weights, eval mode, CPU), ``.preprocess`` the fitted feature preprocessing (``.transform(X)``), ``.target`` the
    target's encoding, ``.classes_`` the class labels (None for regression), ``.config`` and ``.summary`` the run's.

    >>> import numpy as np, tempfile, trainwise
    >>> X = np.random.default_rng(0).normal(size=(90, 3)); y = (X[:, 0] > 0).astype(int)
    >>> run_dir = tempfile.mkdtemp() + "/run"
    >>> _ = trainwise.fit(X, y, run_dir=run_dir, epochs=3, quiet=True)
    >>> m = trainwise.load(run_dir)
    >>> m.predict(X[:4]).shape, m.predict_proba(X[:4]).shape, m.classes_
    ((4,), (4, 2), ['0', '1'])
    """

    def __init__(self, run: LoadedRun):
        self._run, self.path = run, run.path
        self.model, self.config, self.summary = run.model, run.config, run.summary
        self.preprocess = Preprocessor.from_state(run.preprocessing["features"])
        self.target = TargetEncoder.from_state(run.preprocessing["target"])
        self.kind: str = run.preprocessing["kind"]
        self.classes_: list[str] | None = run.preprocessing["class_names"] if self.kind != "regression" else None

    def __repr__(self) -> str:
        return f"SavedModel('{self.path}', {self.summary.get('model', {}).get('spec', '?')}, {self.kind})"

    def predict_frame(self, X, *, source: str = "X") -> pd.DataFrame:
        """What `trainwise predict` writes: ``prediction`` and, for classification, ``prob_<class>`` columns; a run
        with an ``--id-column`` gets that column first, copied from the input."""
        features = _features(self._run, X, source)
        frame = _frame(self._run, _forward(self._run, _transform(self.preprocess, features, source)))
        id_column = self.config.id_column
        if id_column and is_frame(features) and id_column in features.columns:
            frame.insert(0, id_column, features[id_column].to_numpy())
        return frame

    def predict(self, X) -> np.ndarray:
        """Class labels (as in training) or values in the target's own units, one per row of ``X`` (several
        targets: one column each, in ``--target`` order; several label columns: 0/1 each)."""
        frame = self.predict_frame(X)
        several = [c for c in frame.columns if c.startswith("prediction_")]
        return frame[several].to_numpy() if several else frame["prediction"].to_numpy()

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, one column per class in ``classes_`` order (several label columns: the
        probability of a 1 in each)."""
        if self.classes_ is None:
            raise TrainwiseError(f"run '{self.path}' is a regression model: it has no class probabilities", hint="use .predict(X)")
        frame = self.predict_frame(X)
        return frame[[f"prob_{c}" for c in self.classes_]].to_numpy()

    def evaluate(self, X, y=None) -> dict[str, float]:
        """Loss and metrics (keys ``eval/...``) on labelled data: a file or DataFrame holding the target column, or
        features ``X`` with targets ``y``. The run's own test split is `evaluate(run_dir)` (sealed, counted)."""
        pp, cfg, data = self._run.preprocessing, self.config, X
        target = cfg.target or pp["target_name"]
        if isinstance(data, (str, Path)):
            if str(data) == "-":
                data = read_table(sys.stdin, cfg.na_values)
            else:
                image = pp.get("image")
                raw = load_source(str(data), target=target, missing=cfg.missing, seed=cfg.seed, data_dir=cfg.data_dir,
                                  image_size=image["size"] if image else None, channels=str(image["channels"]) if image else "auto",
                                  na_values=cfg.na_values, roles=ColumnRoles.of(cfg) if str(data).lower().endswith(".csv") else None)
                X = _transform(self.preprocess, raw.X, data)
                return _metrics(self._run, X, self.target.encode(raw.y, what=f"target of '{data}'"), "eval")
        if y is None:
            if not is_frame(data) or not set(target.split(",")) <= set(data.columns) and target not in data.columns:
                raise TrainwiseError("evaluate needs targets: got features without y", hint=f"pass y=..., or a DataFrame/CSV with the "
                                                                                            f"target column '{target}'")
            y = data[target.split(",") if target not in data.columns else target].to_numpy()
        y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        X = _features(self._run, data, "data")
        if len(y) != len(X):
            raise TrainwiseError(f"evaluate got {len(X)} rows of features but {len(y)} targets", hint="give one target per row")
        X = _transform(self.preprocess, X, "data")
        y = y.reshape(-1) if y.ndim > 1 and y.shape[1] == 1 else y
        return _metrics(self._run, X, self.target.encode(y, what="y"), "eval")


def load(run_dir: str | Path, *, trust_code: bool = False) -> SavedModel:
    """A finished run's model and preprocessing, ready to predict (see `SavedModel`). Nothing is unpickled and no
    code runs, unless the model is user code and ``trust_code`` is given (see `load_run`)."""
    return SavedModel(load_run(run_dir, trust_code=trust_code))


def evaluate(run_dir: str | Path, data=None, y=None, *, force_test: bool = False,
             trust_code: bool = False) -> dict[str, float]:
    """Loss and metrics of a saved run on ``data`` — a .csv/.npz path or a DataFrame holding the target column, or
    features (array, tensor) with targets ``y`` — or on its own test split (rebuilt from its config).

    The test split is sealed: `fit` evaluates it once, and a second look is refused unless ``force_test``;
    every look is counted in summary.json's ``test_evaluations``. ``trust_code``: allow a run whose model is
    user code (imported from the file recorded at fit time, only while its SHA-256 matches; see `load_run`).
    """
    run = load_run(run_dir, trust_code=trust_code)
    if data is not None:
        return SavedModel(run).evaluate(data, y)
    cfg = run.config
    if run.summary.get("cv_fold"):
        raise TrainwiseError(f"'{run_dir}' is fold {run.summary['cv_fold']} of a cross-validation; its test split is not "
                             "the one its config would rebuild", hint="see the fold's summary.json and the CV's cv.csv, or "
                                                                     "pass --data FILE to evaluate it on other data")
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
    prep = prepare(load_raw(cfg), **cfg.prepare_options())
    if "test" not in prep.arrays:
        raise TrainwiseError(f"run '{run_dir}' has no test split (split={cfg.split})", hint="pass --data FILE with targets")
    metrics = _metrics(run, *prep.arrays["test"], "test")
    write_json(run.path / "summary.json", {**run.summary, "test_evaluations": run.summary.get("test_evaluations", 0) + 1})
    return metrics


def _metrics(run, X: np.ndarray, y: np.ndarray, prefix: str) -> dict[str, float]:
    pp = run.preprocessing
    t, cfg = pp["target"], run.config
    n_classes = len(pp["class_names"]) if pp["kind"] != "regression" else None
    extras = resolve_extra_metrics(cfg.metrics, task=cfg.task, n_classes=n_classes, multilabel=pp["kind"] == "multilabel")  # as reported
    eval_metrics = partial(MetricAccumulator, extra_metrics=extras, n_classes=n_classes, target_mean=t["mean"]) if extras else None
    weights = run.summary.get("class_weight")  # the loss the run trained and reported: weighted by class, if it was
    loss = make_loss(pp["loss"], torch.tensor([float(weights[c]) for c in pp["class_names"]])) if weights else pp["loss"]
    trainer = Trainer(run.model, loss=loss, kind=pp["kind"], optimizer=None, target_std=t["std"], eval_metrics=eval_metrics)
    Xt, yt = to_tensors(X, y, pp["kind"], torch.device("cpu"))
    check_model_fits(run.model, Xt[:2], run.recipe, run.summary.get("model", {}).get("spec", "?"), None)
    return trainer.evaluate(TensorBatches(Xt, yt, batch_size=4096, shuffle=False), prefix=prefix)


def predict(run_dir: str | Path, inputs, output: str | Path | None = None, *, trust_code: bool = False):
    """Predictions (and class probabilities) of a saved run as a DataFrame, written as CSV to ``output`` when given.

    ``inputs``: a .csv or .npz file of feature rows (``-``: CSV read from standard input), a DataFrame, an array,
    a tensor, or image files (one row per image, with a ``file`` column; an unreadable image gets its ``error``
    and the others are still predicted). The run's own preprocessing (for images: channels, size,
    normalization) is applied. ``trust_code``: as in `evaluate`.
    """
    if output is not None:
        check_output_file(output)
    run = load_run(run_dir, trust_code=trust_code)
    if not _is_paths(inputs):
        frame = SavedModel(run).predict_frame(inputs, source="input")
    else:
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
            frame = SavedModel(run).predict_frame(paths[0], source=str(paths[0]))
    if output is not None:
        atomic_write(output, frame.to_csv(index=False))
    return frame


def _is_paths(inputs) -> bool:
    if isinstance(inputs, (str, os.PathLike)):
        return True
    return isinstance(inputs, (list, tuple)) and len(inputs) > 0 and all(isinstance(p, (str, os.PathLike)) for p in inputs)


def _features(run, X, source: str):
    """Feature rows from what a user holds: a path (.csv, .npz; ``-`` is CSV on standard input), a DataFrame (a
    target column in it is dropped), an array, a tensor or a list of rows. A table run given an array gets the
    training columns' names, in order."""
    pd = pandas()
    pp = run.preprocessing
    columns = pp["features"].get("columns")
    if isinstance(X, (str, os.PathLike)):
        X = _read_table(run, X)
    if is_frame(X):
        X = X.drop(columns=[c for c in {pp["target_name"], *pp["target_name"].split(",")} if c in X.columns])
        if columns is not None:
            return X
        text = [str(c) for c, t in X.dtypes.items() if not (pd.api.types.is_numeric_dtype(t) or pd.api.types.is_bool_dtype(t))]
        if text:  # trained on an array (a built-in set, .npz): a table must be numbers only, its columns in order
            raise TrainwiseError(f"{source}: column(s) {', '.join(text[:5])} hold text, but this run was trained on an array of numbers",
                                 hint="give only the numeric feature columns, in training order")
        X = X.to_numpy(dtype=np.float64)
    if is_series(X):
        raise TrainwiseError(f"{source}: got a pandas Series (one column)", hint="pass a DataFrame, e.g. df[[column]] or series.to_frame()")
    X = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
    if X.ndim == 1:
        raise TrainwiseError(f"{source}: got a 1-D array of {len(X)} values; rows of features are 2-D",
                             hint="pass X.reshape(1, -1) for one row, or X.reshape(-1, 1) for one feature")
    if columns is not None:  # trained on a table: an array is taken as its columns, in training order
        if X.ndim != 2 or X.shape[1] != len(columns):
            raise TrainwiseError(f"{source}: got an array of shape {X.shape}; this run was trained on a table of "
                                 f"{len(columns)} columns ({', '.join(columns[:8])}{', ...' if len(columns) > 8 else ''})",
                                 hint="pass a DataFrame with those columns, or an array of that many columns in that order")
        return pd.DataFrame(X, columns=columns)
    return X


def _read_table(run, path: str | Path):
    pp = run.preprocessing
    if str(path) == "-":
        if pp.get("image"):
            raise TrainwiseError(f"run '{run.path}' was trained on images; standard input holds a table",
                                 hint="give image files (" + ", ".join(IMAGE_SUFFIXES) + ")")
        return read_table(sys.stdin, run.config.na_values)
    path = Path(path)
    if pp.get("image"):
        raise TrainwiseError(f"run '{run.path}' was trained on images; '{path}' is not one",
                             hint="give image files (" + ", ".join(IMAGE_SUFFIXES) + ")")
    if not path.is_file():
        raise TrainwiseError(f"input file '{path}' does not exist", hint="give a .csv or .npz file of feature rows")
    if path.suffix.lower() == ".csv":
        return read_table(path, run.config.na_values)  # (`_features` drops the target columns)
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
    pd = pandas()
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
    pd = pandas()
    pp = run.preprocessing
    t = pp["target"]
    if pp["kind"] == "regression":
        if isinstance(t["mean"], list):  # several targets: one prediction column each, named after the target
            values = (out * torch.tensor(t["std"], dtype=out.dtype) + torch.tensor(t["mean"], dtype=out.dtype)).numpy()
            return pd.DataFrame({f"prediction_{name}": values[:, i] for i, name in enumerate(pp["target_name"].split(","))})
        return pd.DataFrame({"prediction": (out[:, 0] * t["std"] + t["mean"]).numpy()})
    names = pp["class_names"]
    if pp["kind"] == "multilabel":  # several label columns: 0/1 and the probability of a 1, per label
        probs = out.sigmoid()
        return pd.DataFrame({**{f"prediction_{n}": (probs[:, i] > 0.5).long().numpy() for i, n in enumerate(names)},
                             **{f"prob_{n}": probs[:, i].numpy() for i, n in enumerate(names)}})
    probs = torch.softmax(out, -1) if pp["kind"] == "multiclass" else torch.cat([1 - out.sigmoid(), out.sigmoid()], 1)
    frame = pd.DataFrame({"prediction": [names[i] for i in probs.argmax(1).tolist()]})
    for i, name in enumerate(names):
        frame[f"prob_{name}"] = probs[:, i].numpy()
    return frame
