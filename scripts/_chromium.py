"""Headless Chromium for the benchmark scripts: a page opened offline, every request refused.

Playwright driving the Debian chromium at /usr/bin/chromium, as the report tests do (their
twin is tests/browser.py: tests do not import scripts/). Used by bench_report_html.py and
bench_report_index.py:

    reason = unavailable()                 # None, or why there is no browser here
    with offline_browser() as browser:
        for _ in range(repeats):
            with offline_page(browser, path, init_script=JS) as tab:
                tab.page.wait_for_function(...)
                tab.errors, tab.blocked        # console errors, refused requests
                tab.check()                    # SystemExit if there are any

Only the page's own file (and data: URLs, which are no request) is let through: anything
else the page asks for is aborted and listed in `blocked`, and the browser's own background
traffic is switched off, so a figure is never one of the network.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:   # playwright is imported lazily: the scripts run (without timing) without it
    from playwright.sync_api import Browser, Page, Route, ViewportSize

CHROMIUM = "/usr/bin/chromium"     # the Debian package, as tests/test_report_html.py uses
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync",
        "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND"]
VIEWPORT: ViewportSize = {"width": 1400, "height": 1000}


def unavailable() -> Optional[str]:
    """None when Playwright and Chromium are both here; else why not (for a "skipped" line)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@contextmanager
def offline_browser() -> Iterator[Browser]:
    """The headless Chromium, closed (with Playwright) on leaving. Check unavailable() first."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class OfflinePage:
    """An open page; `errors`: console errors and uncaught exceptions, `blocked`: the URLs of
    the requests refused, both in order, both filled while the page runs."""

    page: Page
    url: str
    errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def check(self) -> None:
        """Stop the benchmark if the page broke (a console error) or asked for anything but
        itself: a figure of a broken or not self-contained page is no figure."""
        if self.errors or self.blocked:
            raise SystemExit(f"{self.url}: console errors {self.errors[:5]}, requests refused "
                             f"{self.blocked[:5]}")


@contextmanager
def offline_page(browser: Browser, path: Path, *, init_script: Optional[str] = None,
                 timeout_ms: float = 120_000) -> Iterator[OfflinePage]:
    """`path` opened (until its load event) in a fresh offline context of `browser`, with
    `init_script` run before any script of the page; the context closed on leaving."""
    url = path.resolve().as_uri()
    errors: list[str] = []
    blocked: list[str] = []

    def only_the_file(route: Route) -> None:
        u = route.request.url
        if u == url or u.startswith("data:"):
            route.continue_()
        else:
            blocked.append(u)
            route.abort()

    context = browser.new_context(viewport=VIEWPORT, offline=True)
    try:
        context.route("**/*", only_the_file)
        if init_script is not None:
            context.add_init_script(init_script)
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url, wait_until="load", timeout=timeout_ms)
        yield OfflinePage(page, url, errors, blocked)
    finally:
        context.close()
