"""Opens a run report in headless Chromium (Debian's `chromium`, `make chromium`) with networking off.

Returns what a test checks: the requests the page tried beyond its own file, console errors, the
figures, the visible text and tables, and a screenshot.
"""
import dataclasses
import os
import shutil
from typing import Dict, List

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]


@dataclasses.dataclass
class LoadedReport:
    outside_requests: List[str]
    console_errors: List[str]
    figures: List[str]  # data-figure names of figures that drew an SVG with a visible size
    svg_count: int
    outcome: str
    text: str  # the page's visible text
    tables: Dict[str, List[List[str]]]  # table id -> rows of cell texts
    screenshot: bytes


def load(path: str, screenshot_path: str = None, width: int = 1280, height: int = 900,
         full_page: bool = False) -> LoadedReport:
    from playwright.sync_api import sync_playwright  # pylint: disable=import-outside-toplevel

    url = "file://" + os.path.abspath(path)
    outside, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(offline=True, viewport={"width": width, "height": height})
            page = context.new_page()

            def refuse(route):  # anything but the report itself is a request leaving the file
                if route.request.url != url:
                    outside.append(route.request.url)
                    route.abort()
                else:
                    route.continue_()
            page.route("**/*", refuse)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url, wait_until="load")
            figures = page.eval_on_selector_all(
                "[data-figure]", "els => els.filter(e => { const s = e.querySelector('svg');"
                " if (!s) return false; const r = s.getBoundingClientRect();"
                " return r.width > 50 && r.height > 50; }).map(e => e.dataset.figure)")
            tables = page.eval_on_selector_all(
                "table[id]", "ts => Object.fromEntries(ts.map(t => [t.id, [...t.rows].map("
                "r => [...r.cells].map(c => c.innerText.trim()))]))")
            shot = page.screenshot(path=screenshot_path, full_page=full_page)
            return LoadedReport(outside_requests=outside, console_errors=errors, figures=figures,
                                svg_count=page.eval_on_selector_all("svg", "s => s.length"),
                                outcome=page.inner_text("#outcome"), tables=tables,
                                text=page.inner_text("body"),
                                screenshot=shot)
        finally:
            browser.close()


def distinct_colors(png: bytes) -> int:
    """How many colours a screenshot has: a blank page has one or two."""
    import io  # pylint: disable=import-outside-toplevel

    from PIL import Image  # pylint: disable=import-outside-toplevel  (matplotlib's dependency)

    image = Image.open(io.BytesIO(png)).convert("RGB")
    return len(image.getcolors(maxcolors=1 << 20) or [])
