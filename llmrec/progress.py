"""Rich progress bars for every long loop, quiet when output is not a terminal; and the console
kept for them and for results, with other libraries' output sent to a log file."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")
console = Console(stderr=True)


def _progress() -> Progress:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=console, transient=False, disable=not console.is_terminal)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    with _progress() as progress:
        yield from progress.track(items, total=total, description=description)


@contextmanager
def progress_bar(total: int, description: str, completed: int = 0) -> Iterator[Callable[[], None]]:
    """A bar for a loop that is not a plain iteration (it may resume midway, or stop early):
    yields the function that advances it by one."""
    with _progress() as progress:
        task = progress.add_task(description, total=total, completed=completed)
        yield lambda: progress.advance(task)


@contextmanager
def status(message: str):
    """A spinner for a single long step that has no natural count."""
    if console.is_terminal:
        with console.status(message):
            yield
    else:
        yield


LIBRARY_ENVIRONMENT = {
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}  # unless set


@contextmanager
def libraries_to(log_path: str | Path, keep: Iterable[Console] = (console,)):
    """While inside, everything written to the process's stdout and stderr goes to `log_path`:
    other libraries' warnings, log records and progress bars, C extensions (Triton, kernels),
    the vLLM engine's subprocess. Only the rich consoles in `keep` (llmrec's results and
    progress bars) keep the terminal, so that is all the console shows.

    It works on file descriptors 1 and 2, which every writer ends at; the kept consoles get
    copies of the terminal's. Where sys.stdout is not the process's own stream (a test that
    captures it), the consoles are left writing to it."""
    import os
    import sys

    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    set_env = {key: value for key, value in LIBRARY_ENVIRONMENT.items() if key not in os.environ}
    os.environ.update(set_env)
    kept = list(keep)
    own_streams = _is_fd(sys.stdout, 1) and _is_fd(sys.stderr, 2)
    terminals = {fd: open(os.dup(fd), "w", encoding="utf-8", buffering=1) for fd in (1, 2)} if own_streams else {}
    for target in kept:
        if terminals:
            target.file = terminals[2 if target.stderr else 1]
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with open(log_path, "a", encoding="utf-8") as log:
        for fd in (1, 2):
            os.dup2(log.fileno(), fd)
        try:
            yield log_path
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            for target in kept:
                target.file = None
            for terminal in terminals.values():
                terminal.close()
            for key in set_env:
                os.environ.pop(key, None)


def _is_fd(stream, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):
        return False
