"""The product's errors and how the CLI shows them: every error class in flows/ derives from
VdpError; a VdpError is one `vdp: error:` line, anything else is named an unexpected error with
the hint to use --debug; --debug (or VDP_DEBUG=1) prints the traceback before that line."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys

import pytest

import flows
from flows import cli
from flows.errors import VdpError


def _error_classes() -> list[type[BaseException]]:
    """Every public exception class defined in a module of the flows package."""
    found = []
    for info in pkgutil.walk_packages(flows.__path__, "flows."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not name.startswith("_")
            ):
                found.append(value)
    return found


def test_every_error_class_of_the_product_derives_from_vdp_error() -> None:
    classes = _error_classes()
    assert len(classes) >= 20, [c.__name__ for c in classes]  # the walk did reach the modules
    assert [c.__qualname__ for c in classes if not issubclass(c, VdpError)] == []


@pytest.fixture(autouse=True)
def _cli_environment(monkeypatch) -> None:
    """cli.main sets Prefect's console stream in the environment: undone after each test."""
    monkeypatch.delenv("PREFECT_LOGGING_HANDLERS_CONSOLE_STREAM", raising=False)
    monkeypatch.delenv("VDP_DEBUG", raising=False)


@pytest.fixture
def no_lake(tmp_path, monkeypatch) -> list[str]:
    """A `vdp query` that fails with a product error (CatalogError: no lake there)."""
    monkeypatch.setenv("VDP_LAKE_ROOT", str(tmp_path / "lake"))
    return ["query", "select 1"]


def _run(capsys, argv: list[str]) -> tuple[int, list[str]]:
    code = cli.main(argv)
    return code, capsys.readouterr().err.splitlines()


def test_a_product_error_is_one_line_without_a_traceback(no_lake, capsys) -> None:
    code, err = _run(capsys, no_lake)
    assert code == 1
    assert len(err) == 1 and err[0].startswith("vdp: error: no lake at "), err


@pytest.mark.parametrize("where", ["before", "after", "env"])
def test_debug_prints_the_traceback_then_the_same_line(
    where: str, no_lake, capsys, monkeypatch
) -> None:
    argv = {"before": ["--debug", *no_lake], "after": [*no_lake, "--debug"], "env": no_lake}[where]
    if where == "env":
        monkeypatch.setenv("VDP_DEBUG", "1")
    code, err = _run(capsys, argv)
    assert code == 1
    assert err[0] == "Traceback (most recent call last):"
    assert any(line.startswith("flows.catalog.CatalogError: no lake at ") for line in err)
    assert err[-1].startswith("vdp: error: no lake at ")


def test_an_unexpected_error_says_so_and_points_at_debug(no_lake, capsys, monkeypatch) -> None:
    def broken(*args, **kwargs):
        return {}["missing"]

    monkeypatch.setattr("flows.catalog.query", broken)
    code, err = _run(capsys, no_lake)
    assert code == 1
    assert err == [
        "vdp: error: unexpected error: KeyError: 'missing' (run with --debug for the traceback)"
    ]
    code, err = _run(capsys, ["--debug", *no_lake])
    assert err[0] == "Traceback (most recent call last):" and "KeyError: 'missing'" in err
    assert err[-1] == "vdp: error: unexpected error: KeyError: 'missing'"


def test_an_invalid_setting_is_a_product_error_naming_the_variable(no_lake, capsys, monkeypatch):
    monkeypatch.setenv("VDP_LOOKBACK_DAYS", "99")
    code, err = _run(capsys, no_lake)
    assert (code, len(err)) == (1, 1)
    assert err[0].startswith("vdp: error: invalid settings: VDP_LOOKBACK_DAYS: "), err


def test_a_range_that_ends_before_it_starts_is_a_usage_error(capsys) -> None:
    code, err = _run(capsys, ["reprocess", "--start", "2019-06-03", "--end", "2019-06-01"])
    assert (code, err) == (1, ["vdp: error: --end 2019-06-01 is before --start 2019-06-03"])


def test_demo_without_its_extra_names_the_extra(capsys, monkeypatch) -> None:
    """moto is only in the `demo` extra: without it the demo stops before starting anything."""
    monkeypatch.setitem(sys.modules, "moto", None)  # as if not installed: import raises
    monkeypatch.setitem(sys.modules, "moto.server", None)
    code, err = _run(capsys, ["demo"])
    assert code == 1 and len(err) == 1
    assert err[0].startswith("vdp: error: vdp demo needs the 'demo' extra (moto")
    assert "pip install 'vehicle-data-pipeline[demo]'" in err[0]
