"""Outputs are written atomically: a failed write leaves the previous file and no debris."""

from __future__ import annotations

import polars as pl
import pytest

from llmrec.io import atomic_path, write_parquet


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out" / "pred.parquet"
    write_parquet(pl.DataFrame({"a": [1]}), target)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_bytes(b"half a file")
            raise RuntimeError("interrupted")
    assert pl.read_parquet(target)["a"].to_list() == [1]
    assert [p.name for p in target.parent.iterdir()] == ["pred.parquet"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)
