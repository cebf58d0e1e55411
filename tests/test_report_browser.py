"""The report in a real browser: headless Chromium opens it, offline, and every figure renders.

Chromium is driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``: messages
are NUL-terminated JSON on file descriptors 3 and 4), so no websocket client or Playwright is needed.
The test skips, saying why, where no Chromium is installed (``.ci/run`` installs Debian's).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

# The report fixtures (a crawled sample catalog after QC, a cohort folder, the report) are shared.
from tests.test_report import cohort_dir, crawled, full_catalog, report, report_html  # noqa: F401

CHROMIUM = next(
    (p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium; .ci/run does)"
)


class Chromium:
    """A headless Chromium and one page, spoken to over the DevTools pipe."""

    def __init__(self, profile: Path) -> None:
        assert CHROMIUM is not None
        cmd_r, cmd_w = os.pipe()  # we write commands, chromium reads fd 3
        ev_r, ev_w = os.pipe()  # chromium writes fd 4, we read

        def _fds() -> None:  # in the child before exec: our pipe ends become fds 3 and 4
            high_r = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(ev_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            preexec_fn=_fds,
            # close_fds would close 3 and 4 after preexec_fn; Python's other descriptors are
            # non-inheritable (PEP 446), so nothing else leaks into the browser.
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(cmd_r)
        os.close(ev_w)
        self._out = os.fdopen(cmd_w, "wb")
        self._in = os.fdopen(ev_r, "rb")
        self._next_id = 0
        self._messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]

    def _read(self) -> None:
        buf = b""
        while chunk := self._in.read1(65536):
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for m in messages:
                self._messages.put(json.loads(m))

    def send(
        self, method: str, params: dict[str, Any] | None = None, *, page: bool = False
    ) -> dict[str, Any]:
        """Send a command and wait for its answer, keeping the events that arrive meanwhile."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if page:
            msg["sessionId"] = self.session
        self._out.write(json.dumps(msg).encode() + b"\0")
        self._out.flush()
        deadline = time.monotonic() + 60
        while True:
            reply = self._messages.get(timeout=max(0.1, deadline - time.monotonic()))
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 60) -> dict[str, Any]:
        """Wait for an event (already received ones count)."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e.get("method") == method:
                    return e
            self.events.append(self._messages.get(timeout=max(0.1, deadline - time.monotonic())))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, page=True
        )
        return result["result"].get("value")

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the browser may already be gone
            self.send("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def load(
    browser: Chromium, html: Path, render_timeout: float = 30, fragment: str = ""
) -> list[int]:
    """Open ``html`` in ``browser``'s page and wait until plotly drew every figure (or time out).

    Returns [plot divs, plots with their SVG, figure divs, images, images decoded].
    """
    for domain in ("Runtime", "Log", "Page", "Network"):
        browser.send(f"{domain}.enable", page=True)
    browser.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1280, "height": 2400, "deviceScaleFactor": 1, "mobile": False},
        page=True,
    )
    browser.send("Page.navigate", {"url": html.resolve().as_uri() + fragment}, page=True)
    browser.wait_event("Page.loadEventFired")
    # plotly draws asynchronously after load: wait until every plot has its SVG, or time out.
    count_js = """[document.querySelectorAll('.js-plotly-plot').length,
        [...document.querySelectorAll('.js-plotly-plot')]
            .filter(d => d.querySelector('.main-svg') && d.querySelector('.plot-container'))
            .length,
        document.querySelectorAll('div[id^="fig-"]').length,
        document.querySelectorAll('img').length,
        [...document.querySelectorAll('img')].filter(i => i.complete && i.naturalWidth > 0)
            .length]"""
    deadline = time.monotonic() + render_timeout
    counts: list[int] = browser.evaluate(count_js)
    while counts[1] < counts[2] and time.monotonic() < deadline:
        time.sleep(0.2)
        counts = browser.evaluate(count_js)
    return counts


def open_in_chromium(html: Path, profile: Path, render_timeout: float = 30) -> dict[str, Any]:
    """Open ``html`` headless; return JS errors, outside requests, plot counts and a screenshot."""
    browser = Chromium(profile)
    try:
        counts = load(browser, html, render_timeout)
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, page=True)["data"]
        browser.send("Runtime.evaluate", {"expression": "1"}, page=True)  # flush pending events
        events = browser.events
    finally:
        browser.close()
    errors = [
        e["params"]["exceptionDetails"].get("text", "")
        + str(e["params"]["exceptionDetails"].get("exception", {}).get("description", ""))
        for e in events
        if e.get("method") == "Runtime.exceptionThrown"
    ]
    errors += [
        " ".join(str(a.get("value", a.get("description", ""))) for a in e["params"]["args"])
        for e in events
        if e.get("method") == "Runtime.consoleAPICalled"
        and e["params"]["type"] in ("error", "assert")
    ]
    errors += [
        e["params"]["entry"]["text"]
        for e in events
        if e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"
    ]
    requests = [
        e["params"]["request"]["url"]
        for e in events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    return {
        "errors": errors,
        "outside_requests": [u for u in requests if not u.startswith(("file:", "data:"))],
        "plots": counts[0],
        "rendered": counts[1],
        "figure_divs": counts[2],
        "images": counts[3],
        "images_loaded": counts[4],
        "screenshot": base64.b64decode(shot),
    }


def distinct_colors(png: bytes) -> int:
    """Number of distinct colours in a PNG screenshot."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    return len(img.getcolors(maxcolors=1 << 24) or [])


@needs_chromium
@pytest.mark.slow
def test_report_renders_in_headless_chromium(report_html: Path, tmp_path: Path) -> None:  # noqa: F811
    seen = open_in_chromium(report_html, tmp_path / "profile")
    assert seen["errors"] == []
    assert seen["outside_requests"] == [], "the report must work offline"
    assert seen["figure_divs"] >= 8
    assert seen["plots"] == seen["figure_divs"], "every figure div became a plotly plot"
    assert seen["rendered"] == seen["plots"], "every plot drew its SVG"
    assert seen["images"] >= 1 and seen["images_loaded"] == seen["images"]
    assert distinct_colors(seen["screenshot"]) > 50, "the screenshot is (nearly) blank"
    (tmp_path / "report.png").write_bytes(seen["screenshot"])


@needs_chromium
def test_browser_check_catches_a_broken_page(tmp_path: Path) -> None:
    """The harness itself: a JS error, an unrendered plot div and a blank page are all seen."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<html><body><div id='fig-x-1' class='js-plotly-plot'></div>"
        "<script>undefinedFunction()</script></body></html>"
    )
    seen = open_in_chromium(page, tmp_path / "profile", render_timeout=1)
    assert any("undefinedFunction" in e for e in seen["errors"])
    assert seen["rendered"] < seen["plots"]
    assert distinct_colors(seen["screenshot"]) <= 2


#: The series page the address shows, as the reader sees it: which one, whether the rest of the
#: report is out of the way, its header, findings and mosaic (decoded and laid out).
PAGE_STATE = """(() => {
    const page = document.querySelector('article.series-page:target');
    if (!page) { return {hash: location.hash, id: null}; }
    const img = page.querySelector('img.mosaic');
    const shown = el => el && el.getClientRects().length > 0;
    return {
        hash: location.hash, id: page.id, height: page.getBoundingClientRect().height,
        others_hidden: !shown(document.getElementById('findings'))
            && !shown(document.getElementById('overview')),
        header: [...page.querySelectorAll('.series-head table td')].map(td => td.textContent),
        findings: page.querySelectorAll('table.findings tbody tr').length,
        explained: page.querySelector('table.findings details') !== null,
        metrics: page.querySelectorAll('table.metrics tbody tr').length,
        mosaic: img ? [img.complete, img.naturalWidth, img.naturalHeight,
                       img.getBoundingClientRect().width] : null,
    };
})()"""

#: An isolated plot point (nothing within 12 px, so the click cannot land on a neighbour) whose
#: series has a page (``WANT`` true) or has none (false): [key, x, y] in the viewport, the point
#: scrolled into view.
LINKED_POINT = """((WANT) => {
    const centre = el => { const r = el.getBoundingClientRect();
                           return [r.x + r.width / 2, r.y + r.height / 2]; };
    for (const gd of document.querySelectorAll('#heterogeneity .js-plotly-plot, #pixels .js-plotly-plot')) {
        gd.scrollIntoView({block: 'center'});
        const pts = [...gd.querySelectorAll('.boxlayer .trace .points path.point')];
        const at = pts.map(centre);
        for (const [n, pt] of pts.entries()) {
            const trace = pt.closest('.trace').__data__[0].trace;
            const key = trace.customdata && trace.customdata[pt.__data__.i];
            const alone = at.every((c, m) => m === n
                || Math.hypot(c[0] - at[n][0], c[1] - at[n][1]) > 12);
            if (typeof key === 'string' && !!key === WANT && alone) {
                return [key, at[n][0], at[n][1]];
            }
        }
    }
    return null;
})"""


def _click(browser: Chromium, x: float, y: float) -> None:
    """A real left click at (x, y): plotly sees the hover, then the press and release."""
    for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
        browser.send(
            "Input.dispatchMouseEvent",
            {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1},
            page=True,
        )


def _wait_for_hash(browser: Chromium, want: str, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    got = browser.evaluate("location.hash")
    while got != want and time.monotonic() < deadline:
        time.sleep(0.05)
        got = browser.evaluate("location.hash")
    return str(got)


@needs_chromium
def test_series_pages_open_from_the_findings_table_and_a_plot_point(
    report_html: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    browser = Chromium(tmp_path / "profile")
    try:
        counts = load(browser, report_html)
        assert counts[1] == counts[2], "every plot drew"
        # 1. A link of the findings table, to a series drawn as a mosaic: a click opens its page.
        href = browser.evaluate(
            """(() => {
                const a = [...document.querySelectorAll('#findings a[href^="#series/S-"]')]
                    .find(a => document.getElementById(a.getAttribute('href').slice(1))
                                       .querySelector('img.mosaic'));
                a.click();
                return a.getAttribute('href');
            })()"""
        )
        assert _wait_for_hash(browser, href) == href
        page = browser.evaluate(PAGE_STATE)
        assert page["id"] == href[1:] and page["height"] > 300
        assert page["others_hidden"], "the page is shown alone"
        header = dict(zip(page["header"][::2], page["header"][1::2], strict=True))
        assert {"modality", "vendor (harmonized)", "instances", "patient"} <= set(header)
        assert header["patient"].startswith("P-") and header["instances"].isdigit()
        assert page["findings"] >= 1 and page["explained"] and page["metrics"] >= 1
        complete, width, height, shown_width = page["mosaic"]
        assert complete and width > 0 and height > 0 and shown_width > 0, page["mosaic"]
        # 2. Back to the report; a real mouse click on a plot point of a series with a page.
        browser.evaluate("location.hash = 'heterogeneity'")
        assert _wait_for_hash(browser, "#heterogeneity") == "#heterogeneity"
        assert browser.evaluate(PAGE_STATE)["id"] is None
        point = browser.evaluate(f"{LINKED_POINT}(true)")
        assert point is not None, "no clickable point of a series with a page"
        key, x, y = point
        _click(browser, x, y)
        assert _wait_for_hash(browser, f"#series/{key}") == f"#series/{key}"
        page = browser.evaluate(PAGE_STATE)
        assert page["id"] == f"series/{key}" and page["height"] > 300 and page["others_hidden"]
        # A point of a series without a page opens the note that says so.
        browser.evaluate("location.hash = 'heterogeneity'")
        assert _wait_for_hash(browser, "#heterogeneity") == "#heterogeneity"
        point = browser.evaluate(f"{LINKED_POINT}(false)")
        assert point is not None and point[0] == ""
        _click(browser, point[1], point[2])
        assert _wait_for_hash(browser, "#series/none") == "#series/none"
        assert "No page for this series" in browser.evaluate(
            "document.querySelector('article.series-page:target').innerText"
        )
        # 3. Captions wrap: none runs out of its box, in the report or on a series page; and
        # the check can fail: without the wrapping rule, a thumbnail caption does overflow.
        overflow_js = """[...document.querySelectorAll('figcaption, td')]
            .filter(el => el.getClientRects().length && el.scrollWidth > el.clientWidth + 1)
            .length"""
        assert browser.evaluate(overflow_js) == 0
        browser.evaluate("location.hash = 'thumbnails'")
        assert _wait_for_hash(browser, "#thumbnails") == "#thumbnails"
        assert browser.evaluate(overflow_js) == 0
        assert browser.evaluate("document.querySelectorAll('#thumbnails figcaption').length") > 0
        unwrapped = browser.evaluate(
            """(() => {
                const caps = [...document.querySelectorAll('#thumbnails figcaption')];
                caps.forEach(c => { c.style.overflowWrap = 'normal'; });
                return caps.filter(c => c.scrollWidth > c.clientWidth + 1).length;
            })()"""
        )
        assert unwrapped > 0, "the sample's captions hold a token wider than their box"
        errors = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"]
        assert errors == []
    finally:
        browser.close()
