"""The figures drawn by forked helper processes (the `trainwise` command): the same bytes as in-process drawing,
errors raised as without helpers, a dead helper's figures drawn anyway, no helper left behind."""
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the drawing helpers are forked (POSIX)")

HISTORY = [{"epoch": e, "train/loss": 1 / e, "val/loss": 1 / e + 0.1, "train/accuracy": 1 - 1 / e, "val/accuracy": 0.9 - 1 / e}
           for e in range(1, 9)]


def _script(body: str, tmp_path) -> subprocess.CompletedProcess:
    """A fresh process (pytest's workers run threads, where no helper is forked)."""
    code = "import os, sys\nfrom trainwise.report import drawing, plots\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)


def test_helpers_draw_the_same_png_bytes_as_this_process(tmp_path):
    p = _script(f"""
        out = sys.argv[1]
        assert drawing.start() and len(drawing.running()) == 2
        pids = drawing.running()
        drawing.draw(plots.plot_curves, {HISTORY!r}, out + "/helper.png", metric="accuracy", best_epoch=5)
        drawing.draw(plots.plot_confusion, [[5, 1], [2, 7]], ["a", "b"], out + "/confusion-helper.png")
        drawing.finish()
        assert os.path.exists(out + "/helper.png") and os.path.exists(out + "/confusion-helper.png")
        drawing._shutdown()
        plots.plot_curves({HISTORY!r}, out + "/here.png", metric="accuracy", best_epoch=5)
        plots.plot_confusion([[5, 1], [2, 7]], ["a", "b"], out + "/confusion-here.png")
        print(*pids)
    """, tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "helper.png").read_bytes() == (tmp_path / "here.png").read_bytes()
    assert (tmp_path / "confusion-helper.png").read_bytes() == (tmp_path / "confusion-here.png").read_bytes()
    for pid in map(int, p.stdout.split()):  # the helpers ended with the shutdown
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_figure_the_helper_fails_raises_here_as_without_helpers(tmp_path):
    p = _script("""
        drawing.start()
        drawing.draw(plots.plot_confusion, [[1, 2], [3]], ["a", "b"], sys.argv[1] + "/c.png")  # a ragged matrix
        try:
            drawing.finish()
        except Exception as e:
            print("raised", type(e).__name__)
    """, tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[:2] == ["raised", "ValueError"]
    assert not (tmp_path / "c.png").exists()


def test_a_dead_helpers_figures_are_drawn_here(tmp_path):
    p = _script(f"""
        import signal, time
        drawing.start()
        for pid in drawing.running():
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        for i in range(3):
            drawing.draw(plots.plot_curves, {HISTORY!r}, f"{{sys.argv[1]}}/c{{i}}.png", metric="accuracy")
        drawing.finish()
        print("ok")
    """, tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr
    assert all((tmp_path / f"c{i}.png").stat().st_size > 1000 for i in range(3))


def test_the_fit_command_draws_in_helpers_and_leaves_none_behind(tmp_path):
    p = _script("""
        from trainwise.cli import main
        seen = []
        start = drawing.start
        drawing.start = lambda: (start(), seen.extend(drawing.running()))[0]
        code = main(["fit", "--data", "iris", "--epochs", "3", "--quiet", "--run-dir", sys.argv[1] + "/run"])
        print("RESULT", code, *seen)
        from trainwise.cli import exit_now
        exit_now(code)
    """, tmp_path)
    assert p.returncode == 0, p.stderr
    code, *pids = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT")][0].split()[1:]
    assert code == "0" and len(pids) == 2
    for name in ("curves.png", "confusion.png", "gradient_flow.png"):
        assert (tmp_path / "run" / name).stat().st_size > 1000
    assert "data:image/png;base64," in (tmp_path / "run" / "report.html").read_text()
    for pid in map(int, pids):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_figures_pending_in_a_helper_that_dies_are_drawn_here_once(tmp_path):
    p = _script(f"""
        import signal
        calls = []
        draw_curves = plots.plot_curves
        def counted(*a, **k):
            calls.append(os.getpid())
            draw_curves(*a, **k)
        counted.__name__ = "plot_curves"
        plots.plot_curves = counted
        drawing.start()
        for i in range(2):  # sent while the helpers still import matplotlib, then they die
            drawing.draw(plots.plot_curves, {HISTORY!r}, f"{{sys.argv[1]}}/c{{i}}.png", metric="accuracy")
        for pid in drawing.running():
            os.kill(pid, signal.SIGKILL)
        drawing.finish()
        drawing.finish()
        drawing.draw(plots.plot_curves, {HISTORY!r}, sys.argv[1] + "/after.png", metric="accuracy")  # no live helper: here
        print(calls.count(os.getpid()))
    """, tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "3"  # two redrawn once each, the third drawn here at once
    assert all((tmp_path / n).stat().st_size > 1000 for n in ("c0.png", "c1.png", "after.png"))


def test_a_hung_helper_is_killed_and_its_figure_drawn_here(tmp_path):
    p = _script(f"""
        import signal, time
        drawing.ANSWER_S = 1.0
        drawing.start()
        pids = drawing.running()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)  # hung: never answers
        drawing.draw(plots.plot_curves, {HISTORY!r}, sys.argv[1] + "/c.png", metric="accuracy")
        t = time.perf_counter()
        drawing.finish()
        print(round(time.perf_counter() - t), *pids)
    """, tmp_path)
    assert p.returncode == 0, p.stderr
    waited, *pids = p.stdout.split()
    assert int(waited) <= 3 and (tmp_path / "c.png").stat().st_size > 1000
