"""CI check: ruff with the project's rules, which include the security rules (bandit's S
rules, selected in pyproject.toml), finds nothing in flows/; a failure shows ruff's report."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_security_rules_are_selected() -> None:
    lint = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert "S" in lint["select"]
    # only these reviewed S rules may be ignored (subprocess with fixed argv, SQL from files)
    assert {r for r in lint.get("ignore", []) if r.startswith("S")} <= {
        "S101",
        "S603",
        "S607",
        "S608",
    }


def test_ruff_with_security_rules_passes_on_flows() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "flows"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"ruff check flows/ failed:\n{done.stdout}{done.stderr}"
