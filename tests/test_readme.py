"""The README's quick start runs as written: every line of the bash block under "## Quick start"
with bash in an empty working directory, against a fresh PostgreSQL database, exit code 0, and
`vdp report` prints the answer table with the periods the generator's oracle expects."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent
ANSWER_HEADER = (
    "operating_period_id | organization_id | start_at | finish_at | vehicles | "
    "avg_distance_km | total_distance_km | total_break_distance_km"
)


def quick_start_commands(text: str) -> list[str]:
    """The non-empty, non-comment lines of the first bash block under "## Quick start"."""
    section = text.split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None, "README quick start has no ```bash block"
    lines = [line.strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _env(pg_url: str) -> dict[str, str]:
    """The user's shell: the venv on PATH, a fresh database; the session's Prefect API so each
    `vdp run` does not start its own temporary server."""
    from prefect.settings import get_current_settings

    env = {k: v for k, v in os.environ.items() if not k.startswith("VDP_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VDP_WAREHOUSE_URL"] = pg_url
    api_url = get_current_settings().api.url
    if api_url:
        env["PREFECT_API_URL"] = str(api_url)
    return env


def _columns(line: str) -> str:
    return " | ".join(cell.strip() for cell in line.split("|"))


def two_commands(text: str) -> list[str]:
    """The bash blocks under "## Two commands" (README) or "## The two commands" (docs)."""
    section = re.split(r"\n## (?:The t|T)wo commands\n", text, maxsplit=1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_the_two_commands_install_what_they_run():
    """The demo command installs the extra that holds moto (not a dependency of the pipeline),
    the test command is the one .ci/run runs, and the set-up page shows the same two."""
    demo, tests = two_commands(README.read_text())
    assert two_commands((ROOT / "docs" / "setup.md").read_text()) == [demo, tests]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert demo.endswith("pip install -e '.[demo]' && vdp demo")
    assert any(d.startswith("moto[server]") for d in extras["demo"])
    assert any(d.startswith("moto[server]") for d in extras["test"])
    assert not any(d.startswith("moto") for d in project["dependencies"])
    install = tests.removesuffix(" && pytest").replace("pip install -e", "pip install -q -e")
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"\n{install}\n" in ci and ci.index(install) < ci.index("\npytest\n")
    assert "\nwheel_demo\n" in ci, "CI runs vdp demo from the wheel"


def test_quick_start_block_is_what_users_copy():
    commands = quick_start_commands(README.read_text())
    assert commands[0].startswith("vdp generate ")
    assert any(c.startswith("vdp report") for c in commands)
    assert all(c.startswith("vdp ") for c in commands), "only vdp commands, runnable anywhere"


@pytest.mark.slow
def test_quick_start_runs(tmp_path: Path, pg_url: str, prefect_backend: None):
    env = _env(pg_url)
    outputs = []
    for command in quick_start_commands(README.read_text()):
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{command!r} failed: {done.stderr[-2000:]}"
        outputs.append((command, done.stdout))
    report = next(out for cmd, out in outputs if cmd.startswith("vdp report"))
    lines = report.strip().splitlines()
    assert _columns(lines[0]) == ANSWER_HEADER
    expected = json.loads((tmp_path / "quickstart" / "source" / "expected.json").read_text())
    live = {
        p["operating_period_id"]: p
        for p in expected["periods"]
        if not p["is_deleted"] and p["vehicles"] > 0
    }
    rows = {line.split("|")[0].strip(): line.split("|") for line in lines[2:-1]}
    assert set(live) <= set(rows) and lines[-1] == f"({len(rows)} rows)"
    for period_id, period in live.items():
        assert int(rows[period_id][4]) == period["vehicles"]
        assert float(rows[period_id][6].replace(",", "")) == pytest.approx(
            period["total_distance_km"], abs=5e-4
        )
        assert float(rows[period_id][7].replace(",", "")) == pytest.approx(
            period["total_break_distance_km"], abs=5e-4
        )
    query = next(out for cmd, out in outputs if cmd.startswith("vdp query"))
    assert _columns(query.splitlines()[0]) == "event | n"
    assert "update" in query
