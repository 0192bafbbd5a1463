"""One error type for malformed input, printed as a single line naming file, row and field."""

from __future__ import annotations

from pathlib import Path

from llmrec.errors import UserError


def one_line(text: str) -> str:
    """`text` on one line: carriage returns and newlines written as \\r and \\n."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


class DataFormatError(UserError):
    def __init__(self, path: str | Path, message: str, row: int | None = None, field: str | None = None):
        self.path, self.row, self.field = str(path), row, field
        where = self.path
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field '{field}'"
        # One line, whatever the message quotes from the file (a column name can hold a newline).
        super().__init__(one_line(f"{where}: {message}"))
