"""The run directory's file writing."""
import os
import stat

import pytest

from trainwise.runs import atomic_write


def test_atomic_write_gives_normal_permissions_and_leaves_no_temp_files(tmp_path):
    atomic_write(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello"
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # as open() would create it (mkstemp alone gives 0600)
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    atomic_write(tmp_path / "a.txt", "old")
    with pytest.raises(TypeError):
        atomic_write(tmp_path / "a.txt", 12345)  # not bytes or str: fails before the rename
    assert (tmp_path / "a.txt").read_text() == "old" and len(list(tmp_path.iterdir())) == 1
