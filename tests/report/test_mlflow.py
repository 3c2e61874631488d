"""--mlflow: parameters, per-epoch metrics, the summary, the model and the report, read back with MLflow's own client."""
import json

import pytest

import trainwise

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402


def test_a_run_is_logged_to_mlflow_and_read_back(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # --mlflow alone: MLflow's local store in the working folder
    code, _, err = cli("fit", "--data", "iris", "--epochs", "6", "--lr", "0.01", "--quiet", "--run-dir", "run", "--mlflow")
    assert code == 0, err
    assert (tmp_path / "mlflow.db").is_file()
    info = json.loads((tmp_path / "run" / "mlflow.json").read_text())
    client = MlflowClient(tracking_uri=info["tracking_uri"])
    run = client.get_run(info["run_id"])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["lr"] == "0.01" and run.data.params["data"] == "iris" and run.data.params["model"] == "mlp:128,64"
    history = client.get_metric_history(info["run_id"], "val/loss")
    assert [m.step for m in history] == list(range(1, summary["epochs_run"] + 1))  # live, one per epoch
    metrics_csv = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert history[-1].value == pytest.approx(float(metrics_csv[-1].split(",")[metrics_csv[0].split(",").index("val/loss")]))
    assert run.data.metrics["test/accuracy"] == pytest.approx(summary["test"]["test/accuracy"])
    assert run.data.metrics[f"best/{summary['monitor']}"] == pytest.approx(summary["best"][summary["monitor"]])
    assert run.data.tags["trainwise.status"] == summary["status"]
    artifacts = {a.path for a in client.list_artifacts(info["run_id"])}
    assert {"summary.json", "config.yaml", "metrics.csv", "model.safetensors", "model.json", "preprocess.json", "report.html",
            "curves.png"} <= artifacts
    local = client.download_artifacts(info["run_id"], "summary.json", str(tmp_path))
    assert json.loads(open(local).read()) == summary


def test_a_resumed_run_goes_on_in_the_same_mlflow_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'track.db'}"

    class CtrlC(trainwise.Callback):
        def on_epoch_end(self, trainer, *, epoch, logs):
            if epoch == 3:
                raise KeyboardInterrupt

    run_dir = tmp_path / "run"
    first = trainwise.fit("iris", epochs=6, quiet=True, run_dir=str(run_dir), mlflow=uri, callbacks=[CtrlC()], schedule="none")
    assert first.summary["status"] == "interrupted"
    info = json.loads((run_dir / "mlflow.json").read_text())
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(info["run_id"]).info.status == "KILLED"
    done = trainwise.fit(resume=str(run_dir), quiet=True)
    assert json.loads((run_dir / "mlflow.json").read_text())["run_id"] == info["run_id"]
    assert client.get_run(info["run_id"]).info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(info["run_id"], "train/loss")]
    assert steps == list(range(1, done.summary["epochs_run"] + 1))
    assert len(client.search_runs([client.get_experiment_by_name("trainwise").experiment_id])) == 1
    assert client.get_run(info["run_id"]).info.artifact_uri.startswith((tmp_path / "mlruns").as_uri())  # beside the database


def test_the_local_store_is_saved_as_an_absolute_path_and_cv_refuses_mlflow(cli, tmp_path, monkeypatch):
    import yaml

    monkeypatch.chdir(tmp_path)
    assert cli("fit", "--data", "iris", "--epochs", "2", "--quiet", "--run-dir", "run", "--mlflow")[0] == 0
    want = f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"  # a --resume from another folder finds the same store
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["mlflow"] == want
    assert json.loads((tmp_path / "run" / "mlflow.json").read_text())["tracking_uri"] == want
    code, _, err = cli("cv", "--data", "iris", "--folds", "2", "--epochs", "1", "--quiet", "--mlflow", "--run-dir", "cv")
    assert code == 2 and "cv, tune and auto do not log to MLflow yet" in err and not (tmp_path / "cv").exists()
