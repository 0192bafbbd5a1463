"""The test suite itself: a capability it could not test is named loudly, never skipped in silence."""

from __future__ import annotations

from pathlib import Path

pytest_plugins = ["pytester"]


def test_a_skipped_capability_is_named_with_the_command_that_enables_it(pytester):
    pytester.makeconftest(Path(__file__).with_name("conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(
        "import pytest\n\ndef test_browser():\n    pytest.skip('chromium is missing: apt-get install -y chromium')\n"
    )
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(
        ["*SKIPPED CAPABILITIES*", "*NOT TESTED: *test_browser*chromium is missing: apt-get install -y chromium*"]
    )
