"""The system Chromium driven by Playwright, for the tests that need a real browser.

Playwright's own browser download cannot work offline; ``bin/test`` installs Debian's
``chromium`` when it is missing. Where there is no browser the test is skipped and says why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("MICROLENS_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def sync_playwright_or_skip() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (bin/test installs it as root on Debian)")
    return sync_playwright


@contextmanager
def launch_chromium_or_skip() -> Iterator[Any]:
    """A headless Chromium browser, closed afterwards."""
    sync_playwright = sync_playwright_or_skip()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


# Reported by the page itself (every violation, with its directive) and by Chromium's
# console ("Refused to execute inline script because it violates ... Content Security
# Policy ..."), so a violation cannot pass unseen.
_REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", function (event) {
  console.error("CSP violation: " + event.violatedDirective + " blocked " + event.blockedURI);
});
"""


def watch_csp_violations(page: Any) -> list[str]:
    """The Content-Security-Policy violations of every document ``page`` loads from now on."""
    violations: list[str] = []
    page.add_init_script(_REPORT_VIOLATIONS)

    def on_console(message: Any) -> None:
        text = message.text
        if "Content Security Policy" in text or text.startswith("CSP violation"):
            violations.append(f"{page.url}: {text}")

    page.on("console", on_console)
    return violations
