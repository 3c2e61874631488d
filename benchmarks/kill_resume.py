"""Kill runs at random points and check that every resumed run ends exactly as an uninterrupted one.

Run: .venv/bin/python benchmarks/kill_resume.py [--trials 20] [--seed 0]

One reference run of `trainwise fit` (wine; dropout, batch norm, a step schedule, clipping and early stopping,
so every kind of state matters), then ``--trials`` runs of the same command, each sent SIGKILL or SIGTERM
(chosen at random) after a random delay, then `trainwise fit --resume` until it finishes. A run killed before
its first checkpoint is started again (what the error message says to do). Each trial must end with
metrics.csv (time column aside), model.safetensors and the summary's status/epochs/best/test equal to the
reference; SIGTERM must exit 143 with status `interrupted` in summary.json. Exit status 0 only if all held.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIT = [sys.executable, "-m", "trainwise.cli", "fit", "--data", "wine", "--epochs", "40", "--dropout", "0.3",
       "--schedule", "step", "--step-size", "3", "--patience", "4", "--batch-norm", "--clip-norm", "1.0", "--quiet"]
KEYS = ("status", "stop_reason", "epochs_run", "best_epoch", "best", "test")


def without_time(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    col = lines[0].split(",").index("time/epoch_s")
    return [",".join(c for i, c in enumerate(line.split(",")) if i != col) for line in lines]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="trainwise-kill-"))
    t0 = time.perf_counter()
    subprocess.run([*FIT, "--run-dir", str(root / "reference")], check=True, capture_output=True)
    full_s = time.perf_counter() - t0
    ref = root / "reference"
    ref_summary = json.loads((ref / "summary.json").read_text())
    print(f"reference: {ref_summary['status']}, {ref_summary['epochs_run']} epochs, {full_s:.1f} s wall")
    failures = 0
    for trial in range(1, args.trials + 1):
        sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
        delay = rng.uniform(0.3, full_s)
        run = root / f"trial-{trial}"
        proc = subprocess.Popen([*FIT, "--run-dir", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(sig)
        code = proc.wait()
        err = proc.stderr.read()
        notes, resumes, restarted = [], 0, False
        checkpointed = (run / "checkpoints" / "last.safetensors").is_file()
        summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
        if sig == signal.SIGTERM:
            # before Python has set up trainwise's handler (start-up imports) or after main() returned, the default
            # action ends the process (-15); then no run may be half-made: nothing to resume, or a finished run
            if code == -15 and checkpointed and summary.get("status") not in ("completed", "early_stopped"):
                notes.append("SIGTERM outside trainwise's handler left an unfinished run")
            elif code not in (-15, 0, 143):
                notes.append(f"SIGTERM gave exit {code}: {err.strip()[-200:]}")
            elif code == 143 and checkpointed and summary.get("status") not in ("interrupted", "completed", "early_stopped"):
                notes.append(f"SIGTERM (exit 143) left summary status {summary.get('status')}")
        if summary.get("status") in ("completed", "early_stopped"):
            code = 0  # it finished before the signal arrived
        while code != 0 and resumes < 5:
            if not (run / "checkpoints" / "last.safetensors").is_file():  # killed before the first checkpoint
                shutil.rmtree(run, ignore_errors=True)
                code, restarted = subprocess.run([*FIT, "--run-dir", str(run)], capture_output=True).returncode, True
            else:
                done = subprocess.run([*FIT[:4], "--resume", str(run), "--quiet"], capture_output=True, text=True)
                code, resumes = done.returncode, resumes + 1
                if code != 0:
                    notes.append(f"resume exit {code}: {done.stderr.strip()[-200:]}")
        if code == 0:
            s = json.loads((run / "summary.json").read_text())
            if without_time(run / "metrics.csv") != without_time(ref / "metrics.csv"):
                notes.append("metrics.csv differs")
            if (run / "model.safetensors").read_bytes() != (ref / "model.safetensors").read_bytes():
                notes.append("weights differ")
            notes += [f"summary {k} differs" for k in KEYS if s.get(k) != ref_summary.get(k)]
        ok = code == 0 and not notes
        failures += not ok
        how = "restarted (killed before epoch 1's checkpoint)" if restarted else f"{resumes} resume(s)"
        print(f"trial {trial:2d}: {signal.Signals(sig).name:7s} after {delay:4.1f} s, exit {proc.returncode:4d}, {how}: "
              f"{'identical' if ok else 'FAILED: ' + '; '.join(notes)}")
    print(f"{args.trials - failures} of {args.trials} interrupted runs ended identical to the reference")
    shutil.rmtree(root, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
