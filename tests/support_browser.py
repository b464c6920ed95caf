"""A web page as a reader sees it: rendered by headless Chromium (Debian's package), scripts
run, then the text of the resulting DOM."""

from __future__ import annotations

import html
import re
import shutil
import subprocess

from support_skips import skip_unless_required

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser() -> str:
    """The headless browser's path; skips (or fails under VDP_REQUIRE_BROWSER=1) without one."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    skip_unless_required(
        "no headless Chromium here (apt-get install chromium)", "VDP_REQUIRE_BROWSER"
    )
    raise AssertionError("unreachable")


def rendered_text(url: str, *, budget_ms: int = 20_000) -> str:
    """The visible text of ``url`` once its scripts have run for up to ``budget_ms`` of virtual
    time (the page's own API calls included), whitespace collapsed."""
    command = [
        browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", f"--virtual-time-budget={budget_ms}", "--dump-dom", url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", done.stdout, flags=re.S | re.I)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())
