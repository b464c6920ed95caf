"""The documentation against the code: the mkdocs site builds with --strict, the settings tables
match flows/settings.py, the CLI commands documented exist, docker-compose.yml and the Dockerfile
reference what exists, and the data model's worked example gives its figures through the real
stage and transform."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from flows.cli import build_parser
from flows.lake import Lake
from flows.settings import Settings
from flows.stage import stage_day
from flows.transform import transform

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SETTINGS_PAGES = [ROOT / "README.md", DOCS / "setup.md"]


def _settings_rows(text: str) -> dict[str, str]:
    """`VDP_X` -> default cell, from the Markdown table rows that start with a VDP_ variable."""
    rows = re.findall(r"^\| `(VDP_[A-Z0-9_]+)` \| ([^|]+) \|", text, re.M)
    return {name: default.strip() for name, default in rows}


@pytest.mark.parametrize("page", SETTINGS_PAGES, ids=lambda p: p.name)
def test_settings_tables_list_every_setting_with_its_default(page: Path):
    rows = _settings_rows(page.read_text())
    fields = Settings.model_fields
    assert set(rows) == {f"VDP_{name.upper()}" for name in fields}
    for name, info in fields.items():
        default = info.default
        cell = rows[f"VDP_{name.upper()}"]
        if default is None:
            assert cell.startswith("unset"), (name, cell)
        elif isinstance(default, bool):
            assert cell == f"`{str(default).lower()}`", (name, cell)
        elif isinstance(default, Path):
            assert cell == f"`./{default}`", (name, cell)
        else:
            assert cell.startswith(f"`{default}`"), (name, cell)


def test_documented_vdp_commands_exist():
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    for page in [ROOT / "README.md", *DOCS.glob("*.md")]:
        used = set(re.findall(r"`vdp ([a-z]+)", page.read_text()))
        assert used <= commands, f"{page.name} documents unknown commands {used - commands}"


def test_docker_compose_references_what_exists():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["postgres"]["image"] == "postgres:16"
    built = [s for s in services.values() if "build" in s]
    assert {s["build"] for s in built} == {"."} and (ROOT / "Dockerfile").is_file()
    for path in re.findall(r"^COPY (.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M):
        for name in path.split():
            assert (ROOT / name).exists(), f"Dockerfile copies missing {name}"
    worker = services["worker"]
    assert worker["command"] == ["prefect", "worker", "start", "--pool", "vdp-process"]
    pool = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"][0]["work_pool"]
    assert pool["name"] == "vdp-process"
    env = worker["environment"]
    assert {k for k in env if k.startswith("VDP_")} <= {
        f"VDP_{n.upper()}" for n in Settings.model_fields
    }
    assert env["VDP_WAREHOUSE_URL"].endswith("@postgres:5432/vdp")
    assert worker["depends_on"]["deploy"]["condition"] == "service_completed_successfully"


def test_mkdocs_builds_strict(tmp_path: Path):
    pytest.importorskip("material", reason="needs mkdocs-material: pip install -e '.[docs]'")
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs is not None
    done = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(Path(sys.executable).parent)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    page = (tmp_path / "site" / "data-model" / "index.html").read_text()
    assert 'class="mermaid"' in page and "Worked example" in page


def _worked_example() -> bytes:
    text = (DOCS / "data-model.md").read_text().split("\n## Worked example", 1)[1]
    block = re.search(r"```json\n(.*?)```", text, re.S)
    assert block is not None
    return block.group(1).encode()


def test_worked_example_through_real_stage_and_transform(tmp_path: Path):
    day = dt.date(2019, 6, 1)
    lake = Lake(tmp_path / "lake")
    raw = lake.raw_day(day)
    raw.mkdir(parents=True)
    (raw / "2019-06-01-10-00-0-events.json").write_bytes(_worked_example())
    summary = stage_day(lake, day)
    assert (summary.lines, summary.events, summary.duplicates, summary.quarantined) == (9, 8, 1, 0)
    out = tmp_path / "curated"
    transform(lake, [day], out)
    rows = duckdb.sql(
        "select vehicle_id, distance_km, location_points "
        f"from read_parquet('{out}/fact_vehicle_operating_period/*/*.parquet') "
        "where operating_period_id = 'op_1' order by vehicle_id"
    ).fetchall()
    assert [(v, round(km, 6), n) for v, km, n in rows] == [("v1", 2.015455, 3), ("v2", 0.0, 1)]
    assert round(sum(km for _, km, _ in rows) / len(rows), 6) == 1.007727
    doc = (DOCS / "data-model.md").read_text()
    for figure in ("1.000756 km", "1.014699 km", "2.015455 km", "1.007727", "2.015455"):
        assert figure in doc
