"""Errors a user can fix, printed by the command line as one line without a traceback.

`DataFormatError` (malformed input files, in `llmrec.data.errors`) and `ConfigError`
(settings, in `llmrec.config`) derive from `UserError`; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem with what the user asked for or gave, explained in the first line."""


class ConfigError(UserError):
    """A setting that cannot work: unknown key, wrong type, a value out of range, a model,
    adapter or file that a setting names but that is not there."""


def first_line(error: Exception) -> str:
    """An error's first line, at most 200 characters (library errors can span pages)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
