"""The data the package ships beside its code: the warehouse's SQL (``flows.warehouse_sql``) and
the expectation suites (``flows.expectations``). Found through importlib.resources where they are
installed (inside the package from a wheel; the repository's top-level folders in an editable
install), never by walking up from the code."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def package_dir(package: str) -> Path:
    """The folder of an installed data package (pip installs wheels unpacked: it is a folder)."""
    found = files(package)
    if not isinstance(found, Path):
        raise TypeError(f"{package} is not installed as a folder of files: {found!r}")
    return found
