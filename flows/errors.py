"""The product's errors share one base: a ``VdpError`` is a failure the user can act on, and its
message is one safe line (no password, no traceback). The CLI prints it as ``vdp: error: …``;
anything else that escapes is a bug, reported as an unexpected error (``vdp --debug`` shows its
traceback)."""

from __future__ import annotations


class VdpError(Exception):
    """Base of every error the pipeline raises on purpose; the message says what to do."""
