"""The progress bar inside slow epochs: shown on a terminal once an epoch runs long, never for --quiet or a pipe."""
import io
import time

import torch
from rich.console import Console

import trainwise
from trainwise.data import TensorBatches
from trainwise.train import Callback, Trainer
from trainwise.train.callbacks import BatchProgress


class Slow(Callback):
    def on_batch_end(self, trainer, *, step, loss):
        time.sleep(0.002)


def _terminal():
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=120, highlight=False), out


def test_bar_appears_in_a_slow_epoch_with_batches_rate_and_eta():
    console, out = _terminal()
    X, y = torch.randn(640, 3), torch.randint(0, 2, (640,))
    bar = BatchProgress(console, after_s=0.05)
    Trainer(torch.nn.Linear(3, 2), lr=0.1, callbacks=[Slow(), bar]).fit(TensorBatches(X, y, batch_size=8), epochs=1)
    text = out.getvalue()
    assert "epoch 1" in text and "/80" in text and "batches/s" in text and "ETA" in text
    assert bar.progress_ is None  # stopped at the end of fit


def test_fast_epochs_never_show_a_bar():
    console, out = _terminal()
    X, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    Trainer(torch.nn.Linear(3, 2), lr=0.1, callbacks=[BatchProgress(console, after_s=5)]).fit(TensorBatches(X, y, batch_size=8), epochs=2)
    assert out.getvalue() == ""


def test_fit_adds_the_bar_only_for_a_terminal():
    console, _ = _terminal()
    kinds = lambda r: [type(c).__name__ for c in r.trainer.callbacks]  # noqa: E731
    assert "BatchProgress" in kinds(trainwise.fit("iris", epochs=1, console=console))
    piped = Console(file=io.StringIO(), force_terminal=False)
    assert "BatchProgress" not in kinds(trainwise.fit("iris", epochs=1, console=piped))
    assert "BatchProgress" not in kinds(trainwise.fit("iris", epochs=1, console=console, quiet=True))


def test_the_table_marks_the_epoch_early_stopping_keeps_equal_accuracies_by_loss():
    from trainwise.train import EarlyStopping, ProgressTable

    out = io.StringIO()
    table = ProgressTable("val/accuracy", console=Console(file=out, width=200, color_system=None))
    stopper = EarlyStopping("val/accuracy", patience=10)
    trainer = type("T", (), {"model": torch.nn.Linear(1, 1)})()
    epochs = [(0.80, 0.50), (0.90, 0.40), (0.90, 0.30), (0.90, 0.35), (0.85, 0.20)]  # (val/accuracy, val/loss)
    for epoch, (acc, loss) in enumerate(epochs, 1):
        logs = {"val/accuracy": acc, "val/loss": loss, "time/epoch_s": 0.1}
        table.on_epoch_end(trainer, epoch=epoch, logs=logs)
        stopper.on_epoch_end(trainer, epoch=epoch, logs=logs)
    starred = [int(line.split()[0]) for line in out.getvalue().splitlines()[1:] if line.rstrip().endswith("*")]
    assert starred == [1, 2, 3] and stopper.best_epoch_ == 3  # epoch 3 ties 0.90 with a lower loss: the kept one
