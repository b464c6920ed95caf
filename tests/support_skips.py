"""Skips that CI turns into failures, so that a green run says the test did run."""

from __future__ import annotations

import os

import pytest


def skip_unless_required(reason: str, setting: str) -> None:
    """Skip the test, or fail it when ``setting`` is 1 (.ci/run sets VDP_REQUIRE_SAMPLE and
    VDP_REQUIRE_TMPFS): a missing sample or mount must not pass for a test that ran."""
    if os.environ.get(setting) == "1":
        pytest.fail(f"{reason}, and {setting}=1 makes that a failure (set {setting}=0 to skip)")
    pytest.skip(reason)
