"""Where sharded work runs: one process per `--shard I/N` under any scheduler, or Ray tasks
(`--engine ray`, an optional extra)."""
