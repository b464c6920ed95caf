"""Where stage modules log: the Prefect run logger inside a run, a module logger otherwise."""

from __future__ import annotations

import logging

from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger


def run_logger(module: str) -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run logger inside a flow or task run, else ``module``'s logger (a direct
    call from the CLI, a test or a benchmark)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(module)
