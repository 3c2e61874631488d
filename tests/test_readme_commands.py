"""Every command line in the README's bash blocks is one the command line accepts: the subcommand and every
option exist (argparse, as `trainwise` parses them), and the options of a run make a valid config (names,
choices, values: RunConfig) with a model spec that resolves. Placeholders (``runs/<run>``) stand for a run folder
and ``[...]`` for optional arguments, checked with and without them. This is the quick check (no training) that a
README line names real options; tests/test_readme_run.py runs every line."""
import re
import shlex
from pathlib import Path

import pytest

from trainwise.cli import build_parser
from trainwise.config import RunConfig
from trainwise.models import resolve_model

README = Path(__file__).resolve().parent.parent / "README.md"
BASH = re.findall(r"^```bash\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def _commands() -> list[str]:
    """The trainwise command lines of the bash blocks: continuation lines joined, comments dropped, pipes and
    ``&&`` split, optional ``[...]`` parts both left out and kept."""
    found = []
    for block in BASH:
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            for part in re.split(r"\s*(?:&&|\|)\s*", line):
                part = re.sub(r"^.*?(?:\.venv/bin/)?(?=trainwise\s)", "", part) if re.search(r"(^|[\s/])trainwise\s", part) else ""
                part = re.sub(r"\s*>\s*\S+$", "", part)  # a redirection of the output
                if part.startswith("trainwise "):
                    found += [re.sub(r"\s*\[[^\]]*\]", "", part), re.sub(r"\[([^\]]*)\]", r"\1", part)] if "[" in part else [part]
    return list(dict.fromkeys(found))


COMMANDS = _commands()


def test_the_readme_has_the_command_lines_this_test_knows():
    assert len(COMMANDS) >= 40
    assert {c.split()[1] for c in COMMANDS} >= {"fit", "predict", "evaluate", "export", "runs", "compare", "sanity", "summary",
                                                  "gradcheck", "backprop", "report"}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_readme_command_line_parses_into_a_valid_config(command):
    argv = [a for a in shlex.split(re.sub(r"<[^>]*>", "run", command))[1:] if a != "..."]  # "...": more of the same
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as e:  # --version, --help: print and exit 0
        assert e.code == 0, command
        return
    assert not extra, f"{command}: unknown options {extra}"
    options = {k: v for k, v in vars(args).items() if k in RunConfig.model_fields and v is not None}
    if not options or getattr(args, "config", None):  # a command without run options, or one from a config file
        return
    cfg = RunConfig.build(options, source="option")
    if cfg.model not in ("auto",) and ".py:" not in cfg.model and not cfg.data.endswith("/"):
        resolve_model(cfg.model, (3, 32, 32) if cfg.model.startswith(("cnn", "resnet")) else (8,), 3,
                      activation=cfg.activation, dropout=cfg.dropout, batch_norm=cfg.batch_norm, n_numeric=4)
