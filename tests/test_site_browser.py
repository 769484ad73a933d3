"""The built site in a real browser: headless Chromium loads each page from a loopback web server.

Checks what a reader sees and a file check cannot: MathJax typesets the math, every image loads,
each chapter's Colab link opens the chapter's notebook, and no script of the site fails. The build
is the one of ``tests/test_book.py`` (no notebook execution), served by ``http.server`` on
127.0.0.1 so that pages load as they do on GitHub Pages (``file://`` blocks some scripts).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
]
# Headless Chromium logs every console message at INFO level, whatever its level; this probe,
# injected at the top of each served page, marks console.error calls so the test can tell them
# from ordinary logging. Uncaught exceptions ("Uncaught ...") and failed loads ("Failed to load
# resource ...") are reported by the browser itself, with the failing file as the source.
ERROR_MARK = "[console.error]"
PROBE = f'<script>console.error = console.error.bind(console, "{ERROR_MARK}");</script>'.encode()
ERROR_KINDS = (ERROR_MARK, "Uncaught", "Failed to load resource")
CONSOLE_LINE = re.compile(r':CONSOLE[:(]\d+\)?\] "(?P<text>.*)", source: (?P<source>\S*) \(\d+\)$')


def toc_pages() -> list[str]:
    """Every page of ``_toc.yml``, root first, as repository paths without suffix."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())

    def walk(entries) -> list[str]:
        return [page for entry in entries
                for page in ([entry["file"]] if "file" in entry else []) + walk(entry.get("chapters", []) + entry.get("sections", []))]

    return [toc["root"], *walk(toc.get("parts", []) + toc.get("chapters", []))]


PAGES = toc_pages()
NOTEBOOK_PAGES = [page for page in PAGES if (ROOT / f"{page}.ipynb").exists()]


class RecordingHandler(SimpleHTTPRequestHandler):
    """Serves the build, puts the probe into each HTML page and records (path, status) per request."""

    requests: list[tuple[str, int]]

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if path.suffix != ".html" or not path.is_file():
            return super().send_head()
        body = path.read_bytes().replace(b"<head>", b"<head>" + PROBE, 1)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return None

    def log_request(self, code="-", size="-"):
        self.requests.append((urlsplit(self.path).path, int(code)))

    def log_message(self, format, *args):
        pass  # failures are in `requests`; the test reports them


@dataclass
class Visit:
    """What the browser did on one page: the DOM after scripts ran, console errors, server requests."""

    url: str
    dom: str
    errors: list[str] = field(default_factory=list)
    requests: list[tuple[str, int]] = field(default_factory=list)


def console_errors(log: str, origin: str) -> list[str]:
    """Console messages from the browser's log that are errors raised by the site's own files.

    Failures of other origins (a CDN the offline test machine cannot reach) are network noise and
    are left out; the site itself serves everything it needs (MathJax included, see test_book).
    """
    errors = []
    for line in log.splitlines():
        match = CONSOLE_LINE.search(line)
        if not match:
            continue
        text, source = match["text"], match["source"]
        if source.startswith(origin) and text.startswith(ERROR_KINDS):
            errors.append(f"{text} ({source})")
    return errors


class Browser:
    """Headless Chromium pointed at a loopback server of ``html``; :meth:`visit` caches one visit per page.

    Each visit starts from a fresh profile, as a first-time reader does: nothing comes from the
    browser's cache, so the server sees every file a page needs.
    """

    def __init__(self, html: Path):
        self.html = html
        handler = type("Handler", (RecordingHandler,), {"requests": []})
        self.requests = handler.requests
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(html)))
        self.origin = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @functools.cache
    def visit(self, page: str) -> Visit:
        url = urljoin(self.origin, f"{page}.html")
        self.requests.clear()
        with tempfile.TemporaryDirectory() as profile:
            result = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                                    capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr[-2000:]
        return Visit(url, result.stdout, console_errors(result.stderr, self.origin), list(self.requests))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def browser(request):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"Chromium not found at {CHROMIUM}: install it (Debian/Ubuntu: apt-get install -y chromium) "
                    "to run the real-browser checks of the site")
    site = request.getfixturevalue("built_site")
    assert site.returncode == 0, site.log[-3000:]
    browser = Browser(site.html)
    yield browser
    browser.close()


class Tags(HTMLParser):
    """Collects the attributes of every ``<tag>`` of one name."""

    def __init__(self, tag: str):
        super().__init__()
        self.tag, self.found = tag, []

    def handle_starttag(self, tag, attrs):
        if tag == self.tag:
            self.found.append(dict(attrs))


def tags(html: str, tag: str) -> list[dict]:
    parser = Tags(tag)
    parser.feed(html)
    return parser.found


def test_math_is_typeset(browser):
    visit = browser.visit("book/intro")
    source = (browser.html / "book" / "intro.html").read_text()
    expected = source.count('class="math notranslate nohighlight"')
    typeset = visit.dom.count("<mjx-container")
    assert expected > 0, "intro.md has no math any more: point this test at a page with math"
    assert typeset == expected, f"MathJax typeset {typeset} of {expected} formulas on {visit.url}"


@pytest.mark.parametrize("page", PAGES)
def test_every_image_loads(browser, page):
    visit = browser.visit(page)
    served = {path for path, status in visit.requests if status == 200}
    for img in tags(visit.dom, "img"):
        src = img.get("src", "")
        if src.startswith("data:"):
            continue
        url = urlsplit(urljoin(visit.url, src))
        assert f"{url.scheme}://{url.netloc}/" == browser.origin, f"{page}: image from another site: {src}"
        assert (browser.html / url.path.lstrip("/")).is_file(), f"{page}: image {src} is not in the build"
        assert url.path in served, f"{page}: the browser did not load {src}"
    # Chromium asks every origin for /favicon.ico by itself; the site declares no icon.
    failed = [(path, status) for path, status in visit.requests if status >= 400 and path != "/favicon.ico"]
    assert not failed, f"{page}: requests that failed: {failed}"


@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_colab_link_opens_the_chapter_notebook(browser, page):
    visit = browser.visit(page)
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    colab = repo.replace("https://github.com/", "https://colab.research.google.com/github/")
    links = [a["href"] for a in tags(visit.dom, "a") if a.get("href", "").startswith("https://colab.research.google.com/")]
    assert links == [f"{colab}/blob/main/{page}.ipynb"], f"{page}: Colab links {links}"


@pytest.mark.parametrize("page", PAGES)
def test_no_console_errors(browser, page):
    visit = browser.visit(page)
    assert not visit.errors, f"{visit.url}:\n" + "\n".join(visit.errors)


# Injected into a copy of the deck: once reveal.js is ready, record which slide shows and how many
# top-level slides are visible, press the right-arrow key, and record again. --dump-dom returns the
# records. reveal.js reads the legacy keyCode, which a synthetic KeyboardEvent leaves at 0, hence
# the defineProperty.
DECK_PROBE = """<script>
function visibleSlides() {
  return [...document.querySelectorAll(".reveal .slides > section")].filter(s => {
    const style = getComputedStyle(s);
    return style.display !== "none" && style.visibility !== "hidden" && parseFloat(style.opacity) > 0;
  }).length;
}
function record(id, value) {
  const pre = document.createElement("pre"); pre.id = id; pre.textContent = JSON.stringify(value); document.body.appendChild(pre);
}
function pressRight() {
  record("before", {index: Reveal.getIndices().h, visible: visibleSlides(), total: Reveal.getTotalSlides()});
  const key = new KeyboardEvent("keydown", {key: "ArrowRight", bubbles: true});
  Object.defineProperty(key, "keyCode", {get: () => 39});
  Object.defineProperty(key, "which", {get: () => 39});
  document.dispatchEvent(key);
  setTimeout(() => record("after", {index: Reveal.getIndices().h, visible: visibleSlides()}), 2000);
}
if (typeof Reveal === "undefined") record("before", "reveal.js did not load");
else if (Reveal.isReady()) pressRight();
else Reveal.on("ready", pressRight);
</script>
</body>"""


def test_the_slide_deck_shows_one_slide_and_advances_on_a_key(browser):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("offline_slides", ROOT / "book" / "_ext" / "offline_slides.py")
    offline_slides = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(offline_slides)
    deck = offline_slides.write_deck(ROOT / "book" / "week4" / "05_slides.ipynb", browser.html / "slides")
    probe = deck.with_name("probe.html")
    probe.write_text(deck.read_text().replace("</body>", DECK_PROBE, 1))
    visit = browser.visit("slides/probe")
    found = dict(re.findall(r'<pre id="(before|after)">(.*?)</pre>', visit.dom))
    assert "before" in found, "the probe never ran: " + visit.dom[-500:]
    before = json.loads(found["before"].replace("&quot;", '"'))
    assert isinstance(before, dict), before
    assert before["total"] >= 8 and before["visible"] == 1 and before["index"] == 0, f"not one slide at a time: {before}"
    after = json.loads(found["after"].replace("&quot;", '"'))
    assert after["index"] == 1 and after["visible"] == 1, f"the right-arrow key did not advance one slide: {after}"
    assert not visit.errors, visit.errors
    failed = [(path, status) for path, status in visit.requests if path.startswith("/slides/") and status != 200]
    assert not failed, f"the deck's files did not load: {failed}"


class DevTools:
    """One page in headless Chromium driven over the DevTools protocol through a pipe
    (``--remote-debugging-pipe``: JSON messages ending in NUL, Chromium reads fd 3 and writes fd 4).

    Unlike ``--dump-dom``, it can send the reader's own input: :meth:`press` and :meth:`click` go
    through the browser's input pipeline (``Input.dispatch*``), so a slider moves as it does under
    a real keyboard or mouse (a ``KeyboardEvent`` made in the page moves nothing).
    """

    def __init__(self, url: str, width: int = 1200, height: int = 900):
        to_browser, self._send_fd = os.pipe()
        self._receive_fd, from_browser = os.pipe()
        self._profile = tempfile.TemporaryDirectory()
        self._log = tempfile.TemporaryFile()  # Chromium's own messages, for the error when it stops answering
        flags = [flag for flag in CHROMIUM_FLAGS if not flag.startswith("--virtual-time-budget")]
        # bash puts the two pipe ends at fds 3 and 4, where Chromium looks for them (dash, Debian's sh,
        # takes only one-digit fd numbers, and under pytest the pipe's are above 9).
        self._process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser}', CHROMIUM, *flags,
             "--remote-debugging-pipe", f"--user-data-dir={self._profile.name}", f"--window-size={width},{height}"],
            pass_fds=(to_browser, from_browser), stdout=subprocess.DEVNULL, stderr=self._log)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._next_id, self._events = b"", 0, []
        target = self._call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self._call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        self._wait_for_event("Page.loadEventFired")

    def _message(self, timeout: float) -> dict:
        import json
        import select

        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._receive_fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(self._receive_fd, 1 << 20) if ready else b""
            if not chunk:
                self._log.seek(0)
                raise AssertionError(f"Chromium went silent on its DevTools pipe (exit code {self._process.poll()}):\n"
                                     + self._log.read()[-3000:].decode(errors="replace"))
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _call(self, method: str, session: str | None = None, **params) -> dict:
        import json

        self._next_id += 1
        request = {"id": self._next_id, "method": method, "params": params} | ({"sessionId": session} if session else {})
        os.write(self._send_fd, json.dumps(request).encode() + b"\0")
        while True:
            message = self._message(timeout=60)
            if message.get("id") == self._next_id:
                assert "error" not in message, f"{method}: {message['error']}"
                return message["result"]
            self._events.append(message)

    def call(self, method: str, **params) -> dict:
        """A DevTools command to the page: its result."""
        return self._call(method, self._session, **params)

    def _wait_for_event(self, method: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(event.get("method") == method for event in self._events):
            self._events.append(self._message(timeout=max(0.0, deadline - time.monotonic())))

    def evaluate(self, expression: str):
        """The JSON value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_until(self, expression: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            assert time.monotonic() < deadline, f"still false after {timeout} s: {expression}"
            time.sleep(0.2)

    def press(self, key: str, key_code: int) -> None:
        """Press and release one key (``key`` as in ``KeyboardEvent.key``, its Windows key code) in the focused element."""
        for kind in ("rawKeyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=key_code)

    def click(self, x: float, y: float) -> None:
        """A left click at viewport point (x, y)."""
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, path: Path, selector: str, index: int = 0) -> None:
        """A PNG of the ``index``-th element matching ``selector``, as the reader sees it."""
        import base64

        box = self.evaluate(f"(() => {{ const e = document.querySelectorAll({selector!r})[{index}]; e.scrollIntoView({{behavior: 'instant'}});"
                            "const r = e.getBoundingClientRect(); return {x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height}; })()")
        shot = self.call("Page.captureScreenshot", format="png", clip={**box, "scale": 1})
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        # Browser.close lets Chromium end its helper processes, which write to the profile until then.
        try:
            self._call("Browser.close")
        except AssertionError:  # it may close the pipe before it answers
            pass
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._send_fd)
        os.close(self._receive_fd)
        self._log.close()
        self._profile.cleanup()


# What the reader sees of the index-th explorable: which views are displayed (decoded, with a size),
# the shown view's label, what the control says, and where the control is on the screen.
EXPLORABLE_STATE = """((index) => {
  const explorable = document.querySelectorAll(".course-explorable")[index];
  const views = [...explorable.querySelectorAll(".course-explorable-view")];
  const shown = views.map((view, i) => [view, i]).filter(([view]) =>
    getComputedStyle(view).display !== "none" && view.getBoundingClientRect().height > 0 && view.complete && view.naturalWidth > 0);
  const control = explorable.querySelector("input, select");
  control.scrollIntoView({block: "center", behavior: "instant"});  // the theme scrolls smoothly otherwise
  const box = control.getBoundingClientRect();
  const output = explorable.querySelector("output");
  return {shown: shown.map(([view, i]) => i), label: shown.length ? shown[0][0].dataset.label : null,
          src: shown.length ? shown[0][0].src.slice(-64) : null, views: views.length,
          kind: control.tagName.toLowerCase(), said: output ? output.value : control.selectedOptions[0].text,
          left: box.left, right: box.right, y: box.top + box.height / 2};
})(%d)"""


@pytest.fixture(scope="module")
def explorable_pages(browser) -> list[tuple[str, int]]:
    """(page, number of explorables its chapter calls for) for each chapter with an explorable."""
    from conftest import explorable_chapters

    pages = [(str(chapter.relative_to(ROOT)), len(re.findall(r"^widgets\.\w+\(", chapter.with_suffix(".py").read_text(), flags=re.M)))
             for chapter in explorable_chapters()]
    assert sum(count for _, count in pages) >= 3, f"Week 1's three explorables are not all in the book: {pages}"
    return pages


def test_each_explorable_changes_its_view_when_its_control_moves(browser, explorable_pages):
    for page, count in explorable_pages:
        tools = DevTools(urljoin(browser.origin, f"{page}.html"))
        try:
            assert tools.evaluate("document.querySelectorAll('.course-explorable').length") == count, f"{page}: explorables missing"
            for index in range(count):
                start = tools.evaluate(EXPLORABLE_STATE % index)
                where = f"{page}, explorable {index}"
                assert start["views"] >= 2 and len(start["shown"]) == 1, f"{where}: not one view shown at a time: {start}"
                assert start["said"] == start["label"], f"{where}: the control and the view disagree: {start}"
                # A key press steps one position (back from the last one); a click at the slider's left end goes to the first.
                step = 1 if start["shown"][0] < start["views"] - 1 else -1
                key = {("input", 1): ("ArrowRight", 39), ("input", -1): ("ArrowLeft", 37),
                       ("select", 1): ("ArrowDown", 40), ("select", -1): ("ArrowUp", 38)}[start["kind"], step]
                tools.evaluate(f"document.querySelectorAll('.course-explorable')[{index}].querySelector('input, select').focus()")
                tools.press(*key)
                moved = tools.evaluate(EXPLORABLE_STATE % index)
                assert moved["shown"] == [start["shown"][0] + step], f"{where}: {key[0]} showed {moved['shown']}, not one step from {start['shown']}"
                assert moved["src"] != start["src"] and moved["said"] == moved["label"] != start["label"], f"{where}: {start} -> {moved}"
                if start["kind"] == "input":
                    tools.click(start["left"] + 2, start["y"])
                    clicked = tools.evaluate(EXPLORABLE_STATE % index)
                    assert clicked["shown"] == [0] and clicked["said"] == clicked["label"], f"{where}: a click at the left end showed {clicked}"
        finally:
            tools.close()



# Each display equation once MathJax has typeset the page: its right edge and the text column's,
# whether its content is wider than its box, and whether the box scrolls to show the rest.
DISPLAY_MATH = """[...document.querySelectorAll('mjx-container[display="true"]')].map((math, index) => ({index,
  right: math.getBoundingClientRect().right, column: math.closest("article").getBoundingClientRect().right,
  wide: math.scrollWidth > math.clientWidth + 1, scrolls: ["auto", "scroll"].includes(getComputedStyle(math).overflowX)}))"""
ALL_MATH_TYPESET = "document.querySelectorAll('div.math').length === document.querySelectorAll('div.math mjx-container').length"


def test_display_equations_fit_a_desktop_column_and_scroll_within_a_phone_column(browser):
    pages = [page for page in PAGES if '<div class="math notranslate nohighlight">' in (browser.html / f"{page}.html").read_text()]
    assert pages, "no page has display math any more: point this test at one that does"
    for page in pages:
        tools = DevTools(urljoin(browser.origin, f"{page}.html"), width=1200, height=900)  # both sidebars shown
        try:
            tools.wait_until(ALL_MATH_TYPESET)
            for math in tools.evaluate(DISPLAY_MATH):
                assert not math["wide"] and math["right"] <= math["column"] + 1, f"{page}: an equation is wider than the text column: {math}"
            tools.call("Emulation.setDeviceMetricsOverride", width=380, height=800, deviceScaleFactor=1, mobile=True)
            for math in tools.evaluate(DISPLAY_MATH):
                assert math["right"] <= math["column"] + 1, f"{page}, on a phone: an equation sticks out of the text column: {math}"
                assert math["scrolls"] or not math["wide"], f"{page}, on a phone: an equation is cut off: {math}"
        finally:
            tools.close()
