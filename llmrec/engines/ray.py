"""`--engine ray`: the N shards of a command as Ray tasks, then `llmrec merge`.

Each task runs the same command with `--shard I/N` in a Ray worker, exactly as a process of a
Slurm array or a Kubernetes job would: Ray places the tasks (on GPUs when `gpus_per_shard`
asks for them), retries a failed one, and the driver merges the shard files when all are done.
llmrec carries no scheduler of its own. The shard files go where the command writes them, so
on a cluster that is a filesystem every node sees. Ray is an optional extra
(`pip install "llmrec[ray]"`); connects to `RAY_ADDRESS` when set, else starts a local Ray.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

from llmrec.errors import ConfigError


def _run_shard(argv: list[str]) -> str:
    """Inside a Ray worker: the command for one shard, in its own process as a Slurm array task
    would run it (a failure raises, and Ray retries the task)."""
    subprocess.run([sys.executable, "-m", "llmrec", *argv], check=True)
    return argv[argv.index("--shard") + 1]


def run_shards(
    argv: list[str],
    shards: int,
    out: Path,
    gpus_per_shard: float = 0.0,
    retries: int = 2,
    log: Callable[[str], None] = print,
):
    """Runs `llmrec <argv> --shard I/N` for I in 0..N-1 as Ray tasks, then merges them into `out`."""
    try:
        import ray
    except ModuleNotFoundError:
        raise ConfigError('--engine ray needs Ray: pip install "llmrec[ray]" (or pip install ray)') from None
    from llmrec.shards import merge_shards

    if shards < 1:
        raise ConfigError(f"--shards must be at least 1, got {shards}")
    started_here = not ray.is_initialized()
    if started_here:
        # Workers import this llmrec, also from a checkout that is not installed.
        source = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH", "")) if p)
        ray.init(
            address=os.environ.get("RAY_ADDRESS"),
            runtime_env={"env_vars": {"PYTHONPATH": path}},
            log_to_driver=False,
            include_dashboard=False,
        )
    try:
        # Ray runs it on one thread per CPU.
        task = ray.remote(num_cpus=1, num_gpus=gpus_per_shard, max_retries=retries)(_run_shard)
        pending = [task.remote([*argv, "--shard", f"{index}/{shards}"]) for index in range(shards)]
        log(
            f"ray: {shards} shards submitted ({ray.cluster_resources().get('CPU', 0):.0f} CPUs, "
            f"{ray.cluster_resources().get('GPU', 0):.0f} GPUs in the cluster)"
        )
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            log(f"ray: shard {ray.get(done[0])} done, {len(pending)} to go")
    finally:
        if started_here:
            ray.shutdown()
    return merge_shards(out)
