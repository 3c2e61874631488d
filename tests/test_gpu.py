"""The GPU path (skipped without CUDA): data on the device, no host synchronisation per step, bf16, CUDA graphs."""
import pytest
import torch

import trainwise
from trainwise import TensorBatches, Trainer
from trainwise.train import MetricAccumulator

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class _ReadsOnlyAtTheEnd(MetricAccumulator):
    """Lets the epoch's one read through: any other synchronising call in the epoch raises."""

    def compute(self, prefix):
        torch.cuda.set_sync_debug_mode(0)
        return super().compute(prefix)


@cuda
@pytest.mark.parametrize("precision", ["32", "bf16"])
def test_a_training_epoch_on_the_gpu_reads_the_device_once(precision):
    dev = torch.device("cuda")
    X, y = torch.randn(512, 20, device=dev), torch.randint(0, 3, (512,), device=dev)
    model = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    t = Trainer(model, loss="cross_entropy", device=dev, precision=precision, metrics=_ReadsOnlyAtTheEnd)
    batches = TensorBatches(X, y, batch_size=64)
    t.begin(batches, 1)
    torch.cuda.set_sync_debug_mode("error")  # a .item(), .cpu() or nonzero() in the step would raise here
    try:
        logs = t.train_epoch(batches)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert set(logs) == {"train/loss", "train/accuracy"} and logs["train/loss"] > 0


@cuda
def test_fit_on_the_gpu_keeps_the_data_there_and_reports_the_device():
    r = trainwise.fit("digits", epochs=2, quiet=True, device="cuda", precision="bf16")
    assert r.summary["status"] == "completed" and r.summary["device"].startswith("cuda")
    assert next(r.model.parameters()).is_cuda and r.summary["test"]["test/accuracy"] > 0.5


@cuda
def test_cuda_graphs_through_compile_mode_train_like_eager():
    eager = trainwise.fit("iris", epochs=3, quiet=True, device="cuda", dropout=0.0)
    graphs = trainwise.fit("iris", epochs=3, quiet=True, device="cuda", dropout=0.0, compile=True, compile_mode="reduce-overhead")
    assert graphs.summary["status"] == "completed"
    assert graphs.history[-1]["train/loss"] == pytest.approx(eager.history[-1]["train/loss"], rel=1e-3)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs (nccl)")
def test_two_nccl_ranks_train_like_one_process(tmp_path):
    import subprocess
    import sys

    from safetensors.torch import load_file

    common = ["-m", "trainwise", "fit", "--data", "digits", "--epochs", "3", "--dropout", "0", "--quiet", "--device", "cuda"]
    one = subprocess.run([sys.executable, *common, "--batch-size", "64", "--run-dir", str(tmp_path / "one")], capture_output=True, text=True)
    two = subprocess.run([sys.executable, *common, "--batch-size", "32", "--nproc", "2", "--run-dir", str(tmp_path / "two")],
                         capture_output=True, text=True)
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-5, rtol=0)
