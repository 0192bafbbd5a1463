"""Rich progress bars for every long loop, quiet when output is not a terminal."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")
console = Console(stderr=True)


def _progress() -> Progress:
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
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
