"""A quiet console: inside `libraries_to`, other libraries' warnings, log records, prints, C-level
writes and subprocess output all land in the run's log; the terminal shows only llmrec's
results and progress."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOISY = """
import logging, os, subprocess, sys, warnings
from rich.console import Console
from llmrec.progress import console, libraries_to

out = Console()
with libraries_to(sys.argv[1], keep=(out, console)):
    warnings.warn("a library warning")
    logging.getLogger("transformers").warning("a library log record")
    os.write(2, b"native noise\\n")
    engine = "import sys; print('engine stderr', file=sys.stderr); print('engine stdout')"
    subprocess.run([sys.executable, "-c", engine])
    print("a stray print")
    out.print("RESULT 42")
    console.print("progress line")
out.print("after")
"""


def test_libraries_write_to_the_log_and_llmrec_to_the_terminal(tmp_path):
    log = tmp_path / "libraries.log"
    done = subprocess.run(
        [sys.executable, "-c", NOISY, str(log)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["RESULT", "42", "after"]
    assert done.stderr.strip() == "progress line"
    written = log.read_text()
    for line in (
        "a library warning",
        "a library log record",
        "native noise",
        "engine stderr",
        "engine stdout",
        "a stray print",
    ):
        assert line in written
