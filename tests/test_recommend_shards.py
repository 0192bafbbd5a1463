"""`recommend --shard I/N`: shards share one fit (sources and reranker, as files) and merge into
exactly the lists one process writes."""

from __future__ import annotations

import socket
import subprocess
import threading
import time

import polars as pl
import pytest

from llmrec.cli.main import main
from llmrec.data.dataset import AmazonM2
from llmrec.errors import UserError
from llmrec.rank import ranking_data, recommend, recommend_shard
from llmrec.shards import Shard, computed_once
from tests.helpers import GroundTruthText, config, titles_for

SASREC = ["candidates.sasrec_top=20", "candidates.sasrec.dim=16", "candidates.sasrec.epochs=1"]


def test_shards_share_one_fit_and_merge_into_the_one_process_lists(tiny_data, tmp_path):
    """The test split with every kind of fitted state (co-visitation, SKNN, SASRec weights, the
    LightGBM reranker) and grounded titles: eight shards of the seven chunks (one empty), merged,
    equal the unsharded lists; the sources and the reranker are fitted by the first shard only."""
    settings = config(tiny_data, "task=1", "split.name=test", "chunk_size=50", "reranker.deterministic=true", *SASREC)
    dataset = AmazonM2(tiny_data)
    data = ranking_data(dataset, settings)
    test, valid = data.target, data.learn
    truth = dict(zip(test.sessions["session_id"].to_list(), test.targets.to_list()))
    text = GroundTruthText(truth, test.catalog)
    titles, valid_titles = titles_for(test), titles_for(valid)
    one, _ = recommend(settings, data, tmp_path / "one.parquet", titles, valid_titles, text, log=lambda _: None)

    logged = []
    for index in range(8):
        lists, report = recommend_shard(
            settings, data, tmp_path / "eight.parquet", Shard(index, 8), titles, valid_titles, text, log=logged.append
        )
        start, end = Shard(index, 8).rows(test.sessions.height, settings.chunk_size)
        assert lists.height == end - start and report.reranker["trees"] >= 1
    assert sum("fitted in" in line for line in logged) == 2  # the validation and the test split, once
    assert sum("read from" in line for line in logged) == 8  # each shard reads the test split's fit
    assert (tmp_path / "eight.fitted" / "sources" / "sasrec.safetensors").exists()
    main(["merge", "--out", str(tmp_path / "eight.parquet")])
    assert pl.read_parquet(tmp_path / "eight.parquet").equals(one)

    other = config(tiny_data, "task=1", "split.name=test", "chunk_size=50", "reranker.num_trees=7", *SASREC)
    with pytest.raises(UserError, match="eight.fitted holds partial outputs of another run"):
        recommend_shard(other, data, tmp_path / "eight.parquet", Shard(0, 3), titles, valid_titles, text)


def test_cli_shards_of_a_fused_validation_run_merge_into_its_lists(tiny_data, tmp_path, capsys):
    args = ["recommend", "--task", "1", "--data", str(tiny_data), "--limit", "300", "text.enabled=false"]
    args += ["reranker.kind=fusion", "chunk_size=70"]
    main([*args, "--out", str(tmp_path / "one.parquet")])
    for index in (1, 0):
        main([*args, "--out", str(tmp_path / "two.parquet"), "--shard", f"{index}/2"])
    assert (tmp_path / "two.shard-0-of-2.config.yaml").exists()
    assert not (tmp_path / "two.config.yaml").exists()  # each shard's config and report are its own
    main(["merge", "--out", str(tmp_path / "two.parquet")])
    assert pl.read_parquet(tmp_path / "two.parquet").equals(pl.read_parquet(tmp_path / "one.parquet"))
    assert (tmp_path / "two.config.yaml").read_text() == (tmp_path / "two.shard-1-of-2.config.yaml").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit):  # cross-fitting needs every scored session in one process
        main([*args[:-2], "--out", str(tmp_path / "lgb.parquet"), "--shard", "0/2"])
    assert "cross-fitted on every scored session" in capsys.readouterr().err


def test_shared_state_is_computed_once_while_other_shards_wait(tmp_path):
    calls, results = [], []

    def compute(folder):
        calls.append(folder)
        time.sleep(0.5)
        (folder / "state.txt").write_text("fitted")

    def shard():
        results.append(
            computed_once(tmp_path / "run.fitted", {"seed": 1}, compute, log=lambda _: None, poll_seconds=0.05)
        )

    threads = [threading.Thread(target=shard) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and results == [tmp_path / "run.fitted"] * 3
    assert (tmp_path / "run.fitted" / "state.txt").read_text() == "fitted"
    assert not list(tmp_path.glob("run.fitted.*"))  # no lock, no temporary folder left
    with pytest.raises(UserError, match="seed differs"):
        computed_once(tmp_path / "run.fitted", {"seed": 2}, compute)


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "run.fitted.lock").write_text(f"{socket.gethostname()} {dead.pid}\n")
    folder = computed_once(tmp_path / "run.fitted", {}, lambda f: (f / "x").write_text("1"), log=lambda _: None)
    assert (folder / "x").read_text() == "1" and not (tmp_path / "run.fitted.lock").exists()


def test_ray_runs_the_recommend_shards_as_tasks_and_merges_them(tiny_data, tmp_path):
    """`recommend --engine ray` on a local two-worker Ray: both shard tasks start at once, one
    fits the shared state while the other waits for it, and the merge equals one process."""
    pytest.importorskip("ray", reason="ray is missing: pip install ray (the llmrec[ray] extra)")
    args = ["recommend", "--task", "1", "--data", str(tiny_data), "--limit", "200", "text.enabled=false"]
    args += ["reranker.kind=fusion", "chunk_size=60"]
    main([*args, "--out", str(tmp_path / "one.parquet")])
    main([*args, "--out", str(tmp_path / "ray.parquet"), "--engine", "ray", "--shards", "2"])
    assert pl.read_parquet(tmp_path / "ray.parquet").equals(pl.read_parquet(tmp_path / "one.parquet"))
    assert len(list(tmp_path.glob("ray.shard-*-of-2.parquet"))) == 2 and (tmp_path / "ray.fitted").is_dir()
