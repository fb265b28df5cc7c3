"""Files the runner writes: atomically (grasp.utils.atomic_path), and readable as a plain open()
would leave them, so a group sharing a cluster directory can read each other's results."""

from __future__ import annotations

import os
import stat

import pytest

from grasp.utils import atomic_path


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_an_atomic_write_gets_the_mode_the_umask_allows(tmp_path, umask, mode):
    before = os.umask(umask)
    try:
        with atomic_path(tmp_path / "results.csv") as tmp:
            tmp.write_text("a,b\n")
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "results.csv").stat().st_mode) == mode


def test_an_interrupted_atomic_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("old\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]
