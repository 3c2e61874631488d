"""MLflow tracking as a callback of the run writer (``--mlflow [TRACKING_URI]``): the resolved config as
parameters when training starts, every epoch's metrics live (step = epoch), and at the end the summary's
metrics (best epoch's validation, test), its status, and the run's files as artifacts (summary.json, config.yaml,
metrics.csv, the model files, report.html and the plots). The MLflow run's id is kept in ``RUN_DIR/mlflow.json``,
so ``--resume`` goes on logging into the same MLflow run. Only MLflow's client API is used (no autologging, no
global active run)."""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from ..errors import TrainwiseError
from ..runs import atomic_write, read_metrics_csv
from ..train.trainer import Callback, Trainer

__all__ = ["MLflowLogger", "DEFAULT_TRACKING_URI", "absolute_uri"]

# MLflow 3's local store: a SQLite database in the working folder (artifacts beside it in ./mlruns); its old
# plain-file store is in maintenance mode and refused by default
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
ARTIFACTS = ("summary.json", "config.yaml", "metrics.csv", "model.safetensors", "model.json", "preprocess.json", "report.html",
             "curves.png", "confusion.png", "gradient_flow.png", "samples.png", "test_predictions.png", "regression.png")
_STATUS = {"completed": "FINISHED", "early_stopped": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


def absolute_uri(uri: str) -> str:
    """A SQLite store's path made absolute (``sqlite:///mlflow.db`` names a file in the working folder, which a
    ``--resume`` from another folder would not find); other URIs as given.

    >>> absolute_uri("postgresql://db/mlflow"), absolute_uri("sqlite:////tmp/x.db")
    ('postgresql://db/mlflow', 'sqlite:////tmp/x.db')
    """
    if not uri.startswith("sqlite:///") or uri.startswith("sqlite:////"):
        return uri
    return "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())


def _artifacts_beside(uri: str) -> str | None:
    """A local SQLite store keeps its experiments' artifacts in ``mlruns/`` beside the database file (MLflow's
    default is the working folder, wherever the run happened to start); other stores keep MLflow's default."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlruns").as_uri()


class MLflowLogger(Callback):
    """Logs one trainwise run into one MLflow run of experiment ``experiment`` at ``tracking_uri``."""

    def __init__(self, tracking_uri: str, run_dir: str | Path, *, experiment: str = "trainwise", params: dict[str, Any] | None = None):
        self.tracking_uri, self.run_dir, self.experiment = absolute_uri(tracking_uri), Path(run_dir), experiment
        self.params = params or {}
        self.client_, self.run_id_, self.logged_epochs_ = None, None, 0

    def _start(self) -> None:
        if self.client_ is not None:
            return
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its database set-up notes are not the user's business
        try:
            from mlflow.tracking import MlflowClient  # lazy: ~1.2 s, only with --mlflow
        except ImportError:
            raise TrainwiseError("--mlflow needs the package mlflow (or mlflow-skinny), which is not installed",
                                 hint="pip install 'trainwise[mlflow]'") from None
        client = MlflowClient(tracking_uri=self.tracking_uri)
        saved = self.run_dir / "mlflow.json"
        if saved.is_file():  # a resumed run: the same MLflow run goes on
            info = json.loads(saved.read_text())
            if info.get("tracking_uri") == self.tracking_uri:
                self.client_, self.run_id_ = client, info["run_id"]
                client.update_run(self.run_id_, status="RUNNING")
                return
        found = client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found is not None else \
            client.create_experiment(self.experiment, artifact_location=_artifacts_beside(self.tracking_uri))
        run = client.create_run(experiment_id, run_name=self.run_dir.name, tags={"trainwise.run_dir": str(self.run_dir.resolve())})
        self.client_, self.run_id_ = client, run.info.run_id
        atomic_write(saved, json.dumps({"tracking_uri": self.tracking_uri, "experiment": self.experiment,
                                        "experiment_id": experiment_id, "run_id": self.run_id_}, indent=2) + "\n")
        from mlflow.entities import Param  # lazy: as above

        params = [Param(k, str(v)[:6000]) for k, v in sorted(self.params.items())]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
            self.client_.log_batch(self.run_id_, params=params[i:i + 100])

    def _metrics(self, values: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric  # lazy: as above

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in values.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
        for i in range(0, len(batch), 1000):
            self.client_.log_batch(self.run_id_, metrics=batch[i:i + 1000])

    def on_fit_start(self, trainer: Trainer) -> None:
        self._start()

    def on_epoch_end(self, trainer: Trainer, *, epoch: int, logs: dict[str, float]) -> None:
        self._metrics({k: v for k, v in logs.items() if k != "epoch"}, epoch)
        self.logged_epochs_ += 1

    def finish(self, summary: dict[str, Any]) -> None:
        """The run's end: its summary metrics and status, its files as artifacts."""
        self._start()
        if not self.logged_epochs_:  # restarts, ensembles: the members trained; the run's own curves are its metrics.csv
            self._log_metrics_csv()
        step = summary.get("best_epoch") or summary.get("epochs_run") or 0
        self._metrics({f"best/{k}": v for k, v in (summary.get("best") or {}).items()} | (summary.get("test") or {}), step)
        for k in ("status", "stop_reason", "monitor"):
            if summary.get(k) is not None:
                self.client_.set_tag(self.run_id_, f"trainwise.{k}", str(summary[k])[:5000])
        for name in ARTIFACTS:
            if (self.run_dir / name).is_file():
                self.client_.log_artifact(self.run_id_, str(self.run_dir / name))
        self.client_.set_terminated(self.run_id_, _STATUS.get(summary.get("status"), "FINISHED"))

    def _log_metrics_csv(self) -> None:
        for row in read_metrics_csv(self.run_dir / "metrics.csv"):
            self._metrics({k: v for k, v in row.items() if k != "epoch"}, int(row.get("epoch", 0)))
