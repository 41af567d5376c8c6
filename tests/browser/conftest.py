"""Browser tests: reports opened in Debian's headless Chromium, driven by Playwright.

No browser can be downloaded here, so Playwright launches /usr/bin/chromium
(scripts/ensure-chromium.sh installs it; `make test` runs that first).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import skip_or_fail

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        skip_or_fail(f"no {CHROMIUM}: install it with 'make chromium'")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@dataclass
class Opened:
    """A report drawn in a page, with what went wrong and every request it made."""

    page: Any
    url: str
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def drawn_ms(self) -> float:
        return float(self.page.get_attribute("#report", "data-drawn-ms"))

    def count(self, selector: str) -> int:
        return int(self.page.locator(selector).count())

    def text(self, selector: str) -> list[str]:
        return [str(t) for t in self.page.locator(selector).all_text_contents()]

    def check_clean(self) -> None:
        """No JavaScript error, no console error (a CSP refusal is one), no request but the file."""
        assert self.errors == []
        assert {u for u in self.requests if not u.startswith("data:")} == {self.url}


def open_report(browser: Any, path: Path, width: int = 1280) -> Opened:
    page = browser.new_page(viewport={"width": width, "height": 1000})
    opened = Opened(page, path.resolve().as_uri())
    page.on("pageerror", lambda exc: opened.errors.append(f"pageerror: {exc}"))
    page.on("console", lambda m: opened.errors.append(m.text) if m.type == "error" else None)

    def route(r: Any) -> None:
        # Every request is recorded; any but the file itself is refused before it leaves.
        opened.requests.append(r.request.url)
        if r.request.url.startswith(("file:", "data:")):
            r.continue_()
        else:
            r.abort()

    page.route("**/*", route)
    page.goto(opened.url)
    page.wait_for_selector("#report[data-drawn-ms]", timeout=60_000)
    return opened
