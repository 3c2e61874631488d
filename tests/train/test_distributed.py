"""Data-parallel training (`fit --nproc`): shards, the launcher's refusals, and 2 gloo processes against one."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import trainwise
from trainwise import TrainwiseError
from trainwise.data import TensorBatches
from trainwise.train.distributed import ShardedBatches, World, join, shard_rows


def _shards(n: int, batch: int, seed: int = 3):
    X, y = torch.arange(float(n))[:, None], torch.arange(n)
    ranks = [ShardedBatches(TensorBatches(X, y, batch_size=batch, seed=seed), World(r, 2, r)) for r in range(2)]
    return ranks, [[b[1].tolist() for b in rank] for rank in ranks]


def test_each_rank_takes_its_half_of_every_global_batch_of_the_same_permutation():
    ranks, (r0, r1) = _shards(10, 2)
    single = [b[1].tolist() for b in TensorBatches(torch.zeros(10, 1), torch.arange(10), batch_size=4, seed=3)]
    assert [a + b for a, b in zip(r0, r1)] == single  # global batch 4 = 2 ranks x 2, in the one-process order
    assert [len(b) for b in r0] == [2, 2, 1] and [len(b) for b in r1] == [2, 2, 1]
    assert len(ranks[0]) == 3
    assert ranks[0].take_share() == pytest.approx(0.5)
    assert ranks[0].take_share() == 0.0  # counted afresh after each step


def test_an_uneven_last_batch_is_weighted_by_share_and_one_smaller_than_the_ranks_is_left_out():
    ranks, (r0, r1) = _shards(7, 2)  # global batches of 4 and 3: the 3 split 2 + 1
    assert [len(b) for b in r0] == [2, 2] and [len(b) for b in r1] == [2, 1]
    for _ in ranks[0]:
        pass
    for _ in ranks[1]:
        pass
    assert ranks[0].take_share() == pytest.approx(4 / 7) and ranks[1].take_share() == pytest.approx(3 / 7)
    ranks, (r0, r1) = _shards(9, 2)  # 4, 4, then 1 row for 2 ranks: left out
    assert len(ranks[0]) == 2 and len(r0) == 2 and len(set(sum(r0 + r1, []))) == 8
    assert sorted(shard_rows(5, World(0, 2, 0)).tolist() + shard_rows(5, World(1, 2, 1)).tolist()) == list(range(5))


def test_a_job_size_other_than_nproc_and_nproc_without_a_launcher_are_refused():
    with pytest.raises(TrainwiseError, match=r"--nproc 2 was given, but torchrun started 4 processes.*leave --nproc out"):
        join(World(0, 4, 0), torch.device("cpu"), nproc=2)
    with pytest.raises(TrainwiseError, match=r"nproc=2 needs processes started by torch's launcher.*trainwise fit --nproc 2"):
        trainwise.fit("iris", nproc=2, epochs=1, quiet=True)


@pytest.mark.parametrize("options, message", [
    (["--restarts", "3"], "does not take --restarts"),
    (["--lr", "auto"], "does not take --lr auto"),
])
def test_the_launcher_refuses_what_a_job_cannot_do_before_any_process_starts(tmp_path, cli, options, message):
    code, _, err = cli("fit", "--data", "iris", "--nproc", "2", "--run-dir", str(tmp_path / "run"), *options)
    assert code == 2 and message in err and "HINT:" in err
    assert not (tmp_path / "run").exists()


def _trainwise(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainwise", *argv], capture_output=True, text=True, timeout=300, **kw)


def _start(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "trainwise", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finished(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


@pytest.mark.slow
def test_two_gloo_ranks_train_the_weights_one_process_trains_with_the_global_batch(tmp_path):
    common = ["fit", "--data", "digits", "--epochs", "3", "--dropout", "0", "--quiet"]
    started = _start(*common, "--batch-size", "64", "--run-dir", str(tmp_path / "one"))  # side by side: start-up dominates
    two = _trainwise(*common, "--batch-size", "32", "--nproc", "2", "--run-dir", str(tmp_path / "two"))
    one = _finished(started)
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:  # the same steps, summed in another order: float32 rounding only
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=0)
    assert _files(tmp_path / "one") == _files(tmp_path / "two")
    s1, s2 = (json.loads((tmp_path / r / "summary.json").read_text()) for r in ("one", "two"))
    assert s2["distributed"] == {"nproc": 2, "backend": "gloo", "batch_per_rank": 32, "global_batch": 64}
    assert s2["test_evaluations"] == 1 and s2["epochs_run"] == s1["epochs_run"] == 3
    for k, v in s1["test"].items():
        assert s2["test"][k] == pytest.approx(v, abs=1e-6)
    for r1, r2 in zip(s1["best"].items(), s2["best"].items()):
        assert r1[0] == r2[0] and r2[1] == pytest.approx(r1[1], abs=1e-6)
    assert "--nproc" not in two.stdout and two.stdout.count("completed") == 1  # one report, from rank 0


def test_a_tabular_model_trains_on_two_ranks_as_in_one_process(tmp_path):
    from ..conftest import small_table

    small_table(300, seed=1).to_csv(tmp_path / "t.csv", index=False)
    common = ["fit", "--data", str(tmp_path / "t.csv"), "--target", "label", "--model", "tabular:k=2,width=16", "--epochs", "2",
              "--quiet"]  # the members' (batch, k, out) training outputs are scored combined on every rank, then summed
    started = _start(*common, "--batch-size", "32", "--run-dir", str(tmp_path / "one"))
    two = _trainwise(*common, "--batch-size", "16", "--nproc", "2", "--run-dir", str(tmp_path / "two"))
    one = _finished(started)
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-5, rtol=0)
    m1, m2 = (list(csv.DictReader((tmp_path / r / "metrics.csv").read_text().splitlines())) for r in ("one", "two"))
    for k in ("train/accuracy", "train/loss", "val/accuracy", "val/loss", "val/f1", "val/auroc", "val/average_precision"):
        # training: the members combined, summed over ranks; F1, AUROC, ...: from the outputs gathered from both ranks
        assert [float(r[k]) for r in m2] == pytest.approx([float(r[k]) for r in m1], abs=1e-5), k
    s1, s2 = (json.loads((tmp_path / r / "summary.json").read_text())["test"] for r in ("one", "two"))
    assert s2.keys() == s1.keys() and "test/auroc" in s2
    for k, v in s1.items():
        assert s2[k] == pytest.approx(v, abs=1e-5), k


def _rank_pid(run: Path, rank: int) -> int | None:
    for proc in Path("/proc").iterdir():
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            cmd = (proc / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if f"RANK={rank}".encode() in env and str(run).encode() in cmd and b"trainwise" in cmd:
            return int(proc.name)
    return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process through /proc")
def test_a_killed_rank_stops_the_job_with_a_message_and_resume_finishes_it_exactly(tmp_path):
    common = ["fit", "--data", "digits", "--epochs", "50", "--patience", "200", "--batch-size", "32", "--nproc", "2", "--quiet"]
    run = tmp_path / "killed"
    whole = _start(*common, "--run-dir", str(tmp_path / "whole"))  # the uninterrupted job, side by side
    proc = _start(*common, "--run-dir", str(run))
    deadline = time.time() + 120
    while not (run / "checkpoints" / "last.safetensors").is_file() and time.time() < deadline:
        time.sleep(0.1)
    pid = _rank_pid(run, 1)
    assert pid is not None and proc.poll() is None
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    assert f"rank 1 of 2 died (killed by SIGKILL), so the job was stopped; resume it: trainwise fit --resume {run}" in err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs_run"] < 80
    resumed = _trainwise("fit", "--resume", str(run), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    whole = _finished(whole)
    assert whole.returncode == 0, whole.stderr
    # dropout 0.1 draws per rank and epoch: the resumed job is the uninterrupted one, byte for byte
    assert (run / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()
    rows = [[line.split(",")[:-1] for line in (r / "metrics.csv").read_text().splitlines()] for r in (run, tmp_path / "whole")]
    assert rows[0] == rows[1]  # every column but the epoch time
    assert json.loads((run / "summary.json").read_text())["test"] == json.loads((tmp_path / "whole" / "summary.json").read_text())["test"]


def test_several_targets_train_on_two_ranks_as_in_one_process(tmp_path):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(240, 3))
    df = pd.DataFrame(X, columns=["a", "b", "c"]).assign(price=100 + 30 * X[:, 0], rooms=3 + X[:, 1] - X[:, 2])
    df.to_csv(tmp_path / "t.csv", index=False)
    common = ["fit", "--data", str(tmp_path / "t.csv"), "--target", "price,rooms", "--model", "mlp:16", "--epochs", "2",
              "--dropout", "0", "--metrics", "mape", "--split", "0.9,0.005,0.095", "--quiet"]  # 1 validation row: rank 1 has none
    started = _start(*common, "--batch-size", "32", "--run-dir", str(tmp_path / "one"))
    two = _trainwise(*common, "--batch-size", "16", "--nproc", "2", "--run-dir", str(tmp_path / "two"))
    one = _finished(started)
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    m1, m2 = (list(csv.DictReader((tmp_path / r / "metrics.csv").read_text().splitlines())) for r in ("one", "two"))
    for k in ("train/loss", "val/loss", "val/mae", "val/rmse", "val/r2", "val/mape"):  # averaged over both targets
        assert [float(r[k]) for r in m2] == pytest.approx([float(r[k]) for r in m1], rel=1e-5, nan_ok=True), k
