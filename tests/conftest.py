import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before any test module imports transformers: no model hub, ever

import polars as pl
import pytest

from llmrec.data.dataset import AmazonM2
from llmrec.data.synth import SynthConfig, generate


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The built-in synthetic dataset at its smallest scale, generated once per test run."""
    return generate(tmp_path_factory.mktemp("synth") / "tiny", SynthConfig(scale="tiny", seed=0))


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Like CI: no model hub, ever."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def catalog(tiny_data) -> pl.DataFrame:
    return AmazonM2(tiny_data).products()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """No silent skips: every skipped test is named at the end with why, and so with what
    would run it (each skip reason says which command enables the capability)."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    terminalreporter.section("SKIPPED CAPABILITIES: these were NOT tested", sep="!", red=True, bold=True)
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        terminalreporter.write_line(
            f"NOT TESTED: {report.nodeid}: {reason.removeprefix('Skipped: ')}", red=True, bold=True
        )
