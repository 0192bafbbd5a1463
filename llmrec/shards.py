"""Work that fans out: `--shard I/N` makes a command process one deterministic slice of its
sessions, so any scheduler (a Slurm array, Ray, Kubernetes jobs) can run the N slices on as
many machines; `llmrec merge` then assembles them in the sessions' order.

Shard I of N holds a contiguous run of the n sessions the command would process unsharded:
of their C chunks (the command's unit of work, `chunk_size` rows), chunks [I * C // N,
(I + 1) * C // N). A chunk is computed the same way in a shard as in one process (the same
batches, so the same numbers), which makes merged shards equal the one-process output. It writes
`<stem>.shard-I-of-N.parquet` beside the output with a manifest (`.json`): which rows it holds,
of how many, and a digest of everything that decides its content (settings, data, model). The
merge refuses shards of different runs, a missing shard and overlapping ones, and writes the
output exactly as one process would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import polars as pl

from llmrec import io
from llmrec.errors import ConfigError, UserError
from llmrec.runs import stem

SHARD_FILE = re.compile(r"\.shard-(\d+)-of-(\d+)\.parquet$")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`I/N`, with 0 <= I < N."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
        if not match or not 0 <= int(match[1]) < int(match[2]):
            raise ConfigError(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/4")
        return cls(int(match[1]), int(match[2]))

    def rows(self, total: int, unit: int = 1) -> tuple[int, int]:
        """The half-open row range [start, end) of this shard among `total` rows cut in chunks
        of `unit` rows (a shard holds whole chunks)."""
        chunks = -(-total // unit)
        start, end = self.index * chunks // self.count * unit, (self.index + 1) * chunks // self.count * unit
        return min(start, total), min(end, total)

    def path(self, out: str | Path) -> Path:
        """`runs/titles.parquet` -> `runs/titles.shard-1-of-4.parquet`."""
        out = Path(out)
        return out.with_name(f"{stem(out)}.shard-{self.index}-of-{self.count}.parquet")


def computed_once(
    folder: Path,
    settings: dict,
    compute: Callable[[Path], None],
    log: Callable[[str], None] = print,
    poll_seconds: float = 1.0,
) -> Path:
    """`folder` as `compute(empty folder)` fills it, computed once for every shard of a run: the
    first shard to need it computes it while holding `<folder>.lock`, the others wait for it,
    later shards and reruns read it. It appears complete or not at all (filled under a temporary
    name, then renamed), with `settings` saved in it: a folder of other settings is an error. A
    lock left by a process that died on this machine is taken over."""
    lock = folder.with_name(folder.name + ".lock")
    told = False  # that this shard waits (said once)
    while True:
        if folder.exists():
            io.claim_folder(folder, settings)  # an error unless it holds these settings
            return folder
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if _abandoned(lock):
                lock.unlink(missing_ok=True)
                continue
            if not told:
                told = True
                log(f"waiting for another shard to compute {folder} (it holds {lock})")
            time.sleep(poll_seconds)
            continue
        temporary = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(f"{socket.gethostname()} {os.getpid()}\n")
            shutil.rmtree(temporary, ignore_errors=True)
            temporary.mkdir(parents=True)
            compute(temporary)
            io.write_json(settings, temporary / "settings.json")
            temporary.rename(folder)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)  # what a failed compute left (gone after the rename)
            lock.unlink(missing_ok=True)


def _abandoned(lock: Path) -> bool:
    """Whether the process that wrote `lock` died (known only for a process of this machine)."""
    try:
        host, pid = lock.read_text().split()
    except ValueError:  # written in the instant after its creation, or never: by a process killed then
        try:
            return time.time() - lock.stat().st_mtime > 60
        except OSError:
            return False
    except OSError:
        return False  # gone: its folder is done
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    return False


def manifest_path(shard_file: Path) -> Path:
    return shard_file.with_suffix(".json")


def seal_shard(path: Path, shard: Shard, total: int, unit: int, digest: str) -> Path:
    """The manifest of a finished shard file (written after the file: a shard without one is
    unfinished, and the merge says so)."""
    start, end = shard.rows(total, unit)
    rows = pl.scan_parquet(path).select(pl.len()).collect().item()
    if rows != end - start:
        raise ValueError(f"{path} has {rows} rows, shard {shard.index}/{shard.count} of {total} holds {end - start}")
    io.write_json(
        {"shard": shard.index, "shards": shard.count, "start": start, "end": end, "total": total, "digest": digest},
        manifest_path(path),
    )
    return path


def merge_shards(out: str | Path) -> pl.DataFrame:
    """Assembles `out` from its shard files, in row order, after checking that they are the
    shards of one run (same count, total and digest) and cover every row exactly once."""
    out = Path(out)
    name = stem(out)
    files = sorted(p for p in out.parent.glob(f"{name}.shard-*-of-*.parquet") if SHARD_FILE.search(p.name))
    if not files:
        raise ConfigError(f"{out}: no shard files {name}.shard-I-of-N.parquet beside it to merge")
    manifests = []
    for file in files:
        if not manifest_path(file).exists():
            raise UserError(f"{file}: its shard is unfinished (no {manifest_path(file).name}): run that shard again")
        manifests.append(json.loads(manifest_path(file).read_text(encoding="utf-8")) | {"file": file})
    first = manifests[0]
    for manifest in manifests:
        for key in ("shards", "total", "digest"):
            if manifest[key] != first[key]:
                raise UserError(
                    f"{manifest['file']} and {first['file']} come from different runs ({key} differs): "
                    "remove the stale shard files"
                )
    count = first["shards"]
    found = sorted(m["shard"] for m in manifests)
    missing = sorted(set(range(count)) - set(found))
    if missing:
        raise UserError(
            f"{out}: shard {missing[0]} of {count} is missing ({len(missing)} missing): run it, then merge again"
        )
    if len(found) != len(set(found)):
        raise UserError(f"{out}: a shard appears twice")
    manifests.sort(key=lambda m: m["shard"])
    position = 0
    for manifest in manifests:
        if manifest["start"] != position:
            raise UserError(
                f"{manifest['file']} starts at row {manifest['start']}, expected {position}: shards "
                "overlap or leave a gap"
            )
        position = manifest["end"]
    if position != first["total"]:
        raise UserError(f"{out}: the shards hold {position} rows of {first['total']}")
    merged = pl.concat([pl.read_parquet(m["file"]) for m in manifests])
    if merged.height != first["total"]:
        raise UserError(f"{out}: the shard files hold {merged.height} rows, their manifests say {first['total']}")
    io.write_parquet(merged, out)
    config = manifests[0]["file"].with_suffix(".config.yaml")  # the run's settings, the same in every shard
    if config.exists():
        io.write_text(config.read_text(encoding="utf-8"), out.with_name(f"{name}.config.yaml"))
    return merged
