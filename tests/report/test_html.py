"""report.html: self-contained, with every section, rendered by headless Chromium."""
import base64
import re
import shutil
import subprocess

import pytest

import trainwise

SECTIONS = ["test", "diagnostics", "curves", "data", "model", "config"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("html") / "r"
    return trainwise.fit("wine", run_dir=path, quiet=True, epochs=8, checkpoint=False)


def test_report_has_every_section_and_inline_images(run):
    page = (run.run_dir / "report.html").read_text()
    assert re.findall(r'<h2 id="(\w+)"', page) == SECTIONS
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert "src=\"http" not in page and "<link" not in page  # nothing fetched from elsewhere
    acc = run.test["test/accuracy"]
    assert f"<td>test/accuracy</td><td>{acc:.4f}</td>" in page
    for name, count in run.summary["data"]["train_class_counts"].items():
        assert f"<td>{name}</td><td>{count}</td>" in page
    assert "parameters: " in page and "lr: 0.003" in page  # model summary and config
    # a table of numbers: no sample images, no test images, no regression plot (neither file nor figure)
    assert not any((run.run_dir / n).exists() for n in ("samples.png", "test_predictions.png", "regression.png"))
    assert "<figure>" not in page


def test_report_command_rebuilds_it(run, cli):
    (run.run_dir / "report.html").unlink()
    code, out, _ = cli("report", str(run.run_dir))
    assert code == 0 and "report written to" in out and (run.run_dir / "report.html").is_file()
    code, _, err = cli("report", str(run.run_dir / "nope"))
    assert code == 2 and "is not a finished trainwise run" in err


def _chromium():
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.skipif(_chromium() is None, reason="no Chromium: scripts/setup.sh installs Debian's chromium package where "
                                                "it runs as root with apt; install it to run this test")
@pytest.mark.parametrize("which, n_images", [("run", 3), ("image_run", 5)])
def test_report_renders_in_headless_chromium(which, n_images, request, tmp_path):
    run = request.getfixturevalue(which)  # wine (a table) and a tiny image set (sample images, test predictions)
    # a probe script counts the images the browser actually decoded once the page has loaded
    probe = tmp_path / "probe.html"
    probe.write_text((run.run_dir / "report.html").read_text().replace(
        "</body>", "<script>addEventListener('load',()=>document.body.dataset.images=[...document.images]"
                   ".filter(i=>i.complete&&i.naturalWidth>0).length+'/'+document.images.length)</script></body>"))
    dom = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
                          "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert f'data-images="{n_images}/{n_images}"' in dom
    assert re.findall(r'<h2 id="(\w+)"', dom) == SECTIONS
    assert "Confusion matrix" in dom and "Class balance" in dom
    captions = re.findall(r"<figure><img alt=\"([^\"]+)\"[^>]*><figcaption>([^<]+)</figcaption></figure>", dom)
    if which == "image_run":  # each new plot sits in a figure with its caption, and was decoded (counted above)
        assert [alt for alt, _ in captions] == ["test predictions", "training images"]
        assert captions[0][1].startswith("Test images labelled predicted / true") and "--augment flip" in captions[1][1]
    else:
        assert captions == []
