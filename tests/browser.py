"""Headless Chromium for the tests: a page opened offline, every request but the page's own
file refused (tests/test_report_html.py, test_report_index.py, test_report_publish.py,
test_security_report_html.py).

Playwright driving the Debian chromium at /usr/bin/chromium. The API mirrors
scripts/_chromium.py (the benchmarks' copy: tests do not import scripts/), but a missing
Playwright or Chromium is a skip that prints why, or a failure under CI=true
(tests/services.py):

    with offline_browser() as browser:
        with offline_page(browser, path, viewport={"width": 1400, "height": 2000}) as tab:
            tab.page.wait_for_selector(...)
            tab.requests, tab.errors, tab.blocked   # all requests, console errors, refused

Only the page's own file (and data: URLs, which are no request) is let through: anything
else the page asks for is aborted and listed in `blocked`, and the browser's own background
traffic is switched off.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from services import require_service

CHROMIUM = "/usr/bin/chromium"     # the Debian package; scripts/ci_services.sh installs it
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync",
        "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND"]


def require_chromium() -> Any:
    """Playwright's sync_playwright, with a Chromium to drive; else a skip that says what is
    missing (a failure under CI=true: see tests/services.py)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_service("Playwright", False, "the playwright package is not installed (it is "
                        "in the `test` extra: pip install playwright)")
    require_service("Chromium", os.access(CHROMIUM, os.X_OK),
                    f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; "
                    "scripts/ci_services.sh installs it in CI)")
    return sync_playwright


@contextmanager
def offline_browser() -> Iterator[Any]:
    """The headless Chromium (a Playwright Browser), closed with Playwright on leaving; a skip
    (CI=true: a failure) when there is none, or when it cannot start here."""
    sync_playwright = require_chromium()
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        except Exception as e:   # a browser that cannot start here is an environment problem
            require_service("Chromium", False,
                            f"Chromium at {CHROMIUM} did not start under Playwright: {e}")
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class OfflinePage:
    """An open page; `requests`: the URLs of every request it made (its own file first),
    `blocked`: those refused, `errors`: console errors and uncaught exceptions; all in order,
    filled while the page runs."""

    page: Any
    url: str
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@contextmanager
def offline_page(browser: Any, path: Path, *,
                 viewport: Optional[dict[str, int]] = None,
                 permissions: Sequence[str] = (),
                 init_script: Optional[str] = None) -> Iterator[OfflinePage]:
    """`path` opened (until its load event) in a fresh offline context of `browser`
    (`viewport`: Playwright's default when None; `permissions` granted to the context, e.g.
    "clipboard-read"; `init_script` run in the page before its own scripts); the context
    closed on leaving."""
    tab = OfflinePage(None, path.resolve().as_uri())

    def only_the_file(route: Any) -> None:
        u = route.request.url
        if u == tab.url or u.startswith("data:"):
            route.continue_()
        else:
            tab.blocked.append(u)
            route.abort()

    context = (browser.new_context(offline=True) if viewport is None
               else browser.new_context(viewport=viewport, offline=True))
    try:
        if permissions:
            context.grant_permissions(list(permissions))
        if init_script is not None:
            context.add_init_script(init_script)
        context.route("**/*", only_the_file)
        tab.page = page = context.new_page()
        page.on("request", lambda r: tab.requests.append(r.url))
        page.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: tab.errors.append(str(e)))
        page.goto(tab.url, wait_until="load")
        yield tab
    finally:
        context.close()
