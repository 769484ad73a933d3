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
