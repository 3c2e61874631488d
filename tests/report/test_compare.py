"""trainwise runs DIR (a table of runs) and trainwise compare RUN RUN (one HTML page, checked in headless Chromium)."""
import json
import re
import shutil
import subprocess

import pytest

import trainwise


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    a = trainwise.fit("iris", epochs=4, quiet=True, run_dir=str(d / "a"))
    b = trainwise.fit("iris", epochs=6, lr=0.01, quiet=True, run_dir=str(d / "b"))
    (d / "not-a-run").mkdir()
    return d, a, b


def test_runs_lists_every_run_with_its_results(cli, two_runs):
    d, a, b = two_runs
    code, out, err = cli("runs", str(d), "--json")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(rows) == {"a", "b"}  # a folder without summary.json is not a run
    assert rows["a"]["data"] == "iris" and rows["a"]["model"] == "mlp:128,64" and rows["a"]["status"] == a.summary["status"]
    assert rows["b"]["test"] == f"test/accuracy {b.summary['test']['test/accuracy']:.4f}"
    monitor = b.summary["monitor"]
    assert rows["b"]["best validation"] == f"{monitor} {b.summary['best'][monitor]:.4f}"
    for name, r in (("a", a), ("b", b)):
        assert rows[name]["time"] == f"{r.summary['wall_time_s']:.1f} s"
    code, out, _ = cli("runs", str(d))
    assert code == 0 and re.search(r"\ba\s+iris\s+mlp:128,64", out) and "best validation" in out.splitlines()[0]
    code, _, err = cli("runs", str(d / "missing"))
    assert code == 2 and "is not a folder" in err


def _chromium():
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def test_compare_writes_one_page_with_differences_highlighted(cli, two_runs, tmp_path):
    d, a, b = two_runs
    page = tmp_path / "cmp.html"
    code, out, err = cli("compare", str(d / "a"), str(d / "b"), "--output", str(page))
    assert code == 0 and f"comparison written to {page}" in out, err
    text = page.read_text()
    differ = re.search(r"(\d+) of (\d+) settings differ \(highlighted\): ([^<]*)</p>", text)
    assert differ and set(differ.group(3).split(", ")) == _differing(d) and {"epochs", "lr"} <= _differing(d)
    assert text.count("<tr class=diff>") == int(differ.group(1))
    assert "<tr class=diff><th>lr</th><td>0.003</td><td>0.01</td></tr>" in text
    if _chromium() is None:
        pytest.skip("no Chromium to render the page (scripts/setup.sh installs it where it can)")
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("</body>", "<script>addEventListener('load',()=>document.body.dataset.images=[...document.images]"
                                              ".filter(i=>i.complete&&i.naturalWidth>0).length+'/'+document.images.length)</script></body>"))
    dom = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
                          "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert 'data-images="1/1"' in dom  # the overlaid curves decoded
    assert re.findall(r'<h2 id="(\w+)"', dom) == ["results", "curves", "config"]


def _differing(d):
    import yaml

    a, b = (yaml.safe_load((d / r / "config.yaml").read_text()) for r in ("a", "b"))
    return {k for k in set(a) | set(b) if a.get(k) != b.get(k)}


def test_compare_refuses_what_is_not_a_run(cli, two_runs, tmp_path):
    d, _, _ = two_runs
    code, _, err = cli("compare", str(d / "a"), str(d / "not-a-run"), "--output", str(tmp_path / "x.html"))
    assert code == 2 and "not-a-run' is not a trainwise run" in err and not (tmp_path / "x.html").exists()
    code, _, err = cli("compare", str(d / "a"))
    assert code == 2 and "at least two runs" in err


def test_the_overlaid_curves_draw_every_runs_own_epochs(two_runs, tmp_path, monkeypatch):
    import matplotlib.axes
    import pandas as pd

    from trainwise.report.compare import compare_runs

    d, _, _ = two_runs
    drawn, plot = {}, matplotlib.axes.Axes.plot

    def spy(ax, x, y, *args, label=None, **kwargs):
        panel = ("loss", "accuracy")[ax.get_subplotspec().colspan.start]  # the figure's panels, left to right
        drawn[(panel, label)] = (list(x), list(y))
        return plot(ax, x, y, *args, label=label, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    compare_runs([d / "a", d / "b"], tmp_path / "cmp.html")
    for name in ("a", "b"):
        m = pd.read_csv(d / name / "metrics.csv")
        for panel in ("loss", "accuracy"):
            for split in ("train", "val"):
                x, y = drawn[(panel, f"{name} ({split})")]
                assert x == pytest.approx(m["epoch"].tolist()) and y == pytest.approx(m[f"{split}/{panel}"].tolist())
    assert len(drawn) == 2 * 2 * 2  # each run's train and validation loss and accuracy, once
