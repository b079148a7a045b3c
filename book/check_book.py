"""Check a built book the way an offline reader meets it.

Two checks, both over ``book/_build/html`` (or the folder given):

* ``static`` (cheap, no browser): every page's ``<script src>``, stylesheet/preload/icon
  ``<link href>``, ``<img>``/``<iframe>``/``<source>``/``<object>`` source and every CSS
  ``url(...)``/``@import`` (in the page and in the local stylesheets it links) stays on the
  page's own folder tree. A reference to another host (``https://…``, ``//host/…``) is what
  leaves a reader without math, fonts or layout when there is no network.
* ``browser`` (needs Chromium): each page is opened at 1280 px with the network cut off; a
  small script added to a scratch copy of the page waits for MathJax and reports, per page, the
  typeset equations, the TeX left raw, the display equations wider than their column and the
  code blocks that scroll sideways. Chromium's NetLog records every request the page makes;
  any to another host is reported.

Run ``python book/check_book.py [static|browser|all] [html_dir]``; it prints one line per page
and exits 1 when a page fails.
"""
from __future__ import annotations

import functools
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_HTML = HERE / "_build" / "html"
REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)|@import\s+['"]([^'"]+)""", re.IGNORECASE)
LOADING_RELS = {"stylesheet", "preload", "modulepreload", "prefetch", "icon", "shortcut",
                "apple-touch-icon", "manifest", "dns-prefetch", "preconnect"}
SOURCE_ATTRS = {"script": "src", "img": "src", "iframe": "src", "source": "src",
                "video": "src", "audio": "src", "embed": "src", "object": "data"}


def is_remote(url: str) -> bool:
    """True for a URL that names a host (``https://x``, ``//x``); data: and relative are local."""
    return bool(REMOTE.match(url.strip()))


class _Loads(HTMLParser):
    """Collects what a page loads (not what it links to: ``<a href>`` is a link, no request)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.loads: list[tuple[str, str]] = []      # (what, url)
        self.styles: list[str] = []                 # inline <style> text and style="" values
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in SOURCE_ATTRS and a.get(SOURCE_ATTRS[tag]):
            self.loads.append((f"<{tag} {SOURCE_ATTRS[tag]}>", a[SOURCE_ATTRS[tag]]))
        if tag == "link" and a.get("href"):
            rels = set((a.get("rel") or "").lower().split())
            if rels & LOADING_RELS:
                self.loads.append((f"<link rel={'/'.join(sorted(rels))}>", a["href"]))
        if a.get("style"):
            self.styles.append(a["style"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def css_urls(css: str) -> list[str]:
    return [a or b for a, b in CSS_URL.findall(css)]


@functools.lru_cache(maxsize=None)
def _stylesheet_urls(sheet: Path) -> tuple[str, ...]:
    """The url()s of one local stylesheet (every page links the same few)."""
    return tuple(css_urls(sheet.read_text(encoding="utf-8", errors="replace")))


def page_loads(page: Path) -> list[tuple[str, str]]:
    """(what, url) for everything ``page`` loads, including url()s of its local stylesheets."""
    parser = _Loads()
    parser.feed(page.read_text(encoding="utf-8", errors="replace"))
    loads = list(parser.loads)
    loads += [("inline css url()", u) for s in parser.styles for u in css_urls(s)]
    for what, url in parser.loads:
        if what.startswith("<link") and "stylesheet" in what and not is_remote(url):
            sheet = (page.parent / url.split("?")[0].split("#")[0]).resolve()
            if sheet.is_file():
                loads += [(f"url() in {sheet.name}", u) for u in _stylesheet_urls(sheet)]
    return loads


def static_check(html_dir: Path) -> dict[str, list[str]]:
    """Page (relative path) -> the remote URLs it loads; every built page is a key."""
    report = {}
    for page in sorted(html_dir.rglob("*.html")):
        remote = sorted({f"{what} {url}" for what, url in page_loads(page) if is_remote(url)})
        report[str(page.relative_to(html_dir))] = remote
    return report


# --- the browser check -------------------------------------------------------------------

MEASURE = r"""
<script>
(function () {
  function measure() {
    var out = {typeset: 0, raw: 0, wide_math: [], wide_code: 0, code_blocks: 0};
    out.typeset = document.querySelectorAll('mjx-container').length;
    document.querySelectorAll('.math').forEach(function (el) {
      if (!el.querySelector('mjx-container')) { out.raw += 1; }
    });
    document.querySelectorAll('mjx-container[display="true"]').forEach(function (el) {
      var math = el.querySelector('mjx-math'), column = el.parentElement;
      if (!math || !column) { return; }
      var need = math.getBoundingClientRect().width, have = column.clientWidth;
      if (need > have + 1) {
        out.wide_math.push({need: Math.round(need), have: have,
                            tex: (el.parentElement.textContent || '').slice(0, 80)});
      }
    });
    document.querySelectorAll('div.highlight pre, div.output pre, .cell_output pre').forEach(
      function (el) {
        out.code_blocks += 1;
        if (el.scrollWidth > el.clientWidth + 1) {
          out.wide_code += 1;
          var box = el.closest('div.cell_output') ? 'output' :
                    (el.closest('div.cell') ? 'cell' : 'included');
          out.wide_code_where = (out.wide_code_where || []).concat(
            [box + ': ' + (el.textContent || '').split('\n').sort(function (a, b) {
              return b.length - a.length; })[0].slice(0, 100)]);
        }
      });
    var pre = document.createElement('pre');
    pre.id = 'minimem-measure';
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }
  window.addEventListener('load', function () {
    var ready = (window.MathJax && MathJax.startup && MathJax.startup.promise)
      ? MathJax.startup.promise : Promise.resolve();
    ready.then(function () { setTimeout(measure, 300); }, measure);
  });
})();
</script>
"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _requests_to_other_hosts(netlog: Path) -> list[str]:
    """URLs with a host that the page itself requested, from a Chromium NetLog.

    The browser's own traffic (update checks, accounts, spelling dictionaries) is in the log
    too; a request made *by the page* is the one whose network isolation key is the page's
    site, ``file://``.
    """
    if not netlog.is_file():
        return []
    text = netlog.read_text(encoding="utf-8", errors="replace").rstrip().rstrip(",")
    try:
        log = json.loads(text)
    except json.JSONDecodeError:        # Chromium may exit before closing the JSON
        log = json.loads(text + "]}")
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = set()
    for event in log["events"]:
        params = event.get("params") or {}
        if (event.get("type") == start_job and "file://" in params.get("network_isolation_key", "")
                and is_remote(params.get("url", ""))):
            urls.add(params["url"])
    return sorted(urls)


def browse(page: Path, chromium: str, width: int = 1280) -> dict:
    """Open a scratch copy of ``page`` (measuring script added) offline; return the measures."""
    scratch = page.with_name(f".measure-{page.name}")
    source = page.read_text(encoding="utf-8", errors="replace")
    scratch.write_text(source.replace("</body>", MEASURE + "</body>", 1), encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        netlog = Path(tmp) / "netlog.json"
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
               "--no-first-run", "--disable-extensions", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-default-browser-check",
               f"--user-data-dir={tmp}/profile", f"--window-size={width},900",
               # the network is cut: every host resolves to nothing
               "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
               f"--log-net-log={netlog}", "--allow-file-access-from-files",
               "--virtual-time-budget=20000", "--dump-dom", scratch.as_uri()]
        try:
            dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
        finally:
            scratch.unlink(missing_ok=True)
        other_hosts = _requests_to_other_hosts(netlog)
    found = re.search(r'<pre id="minimem-measure"[^>]*>(.*?)</pre>', dom, re.DOTALL)
    result = json.loads(html.unescape(found.group(1))) if found else {
        "error": "the measuring script did not report (page failed to load?)"}
    result["other_hosts"] = other_hosts
    return result


def content_pages(html_dir: Path) -> list[Path]:
    """The book's own pages (not search/genindex/_modules source listings)."""
    skip = {"search.html", "genindex.html", "py-modindex.html"}
    pages = [p for p in sorted(html_dir.rglob("*.html"))
             if p.name not in skip and not p.name.startswith(".measure-")
             and "_modules" not in p.parts and "_static" not in p.parts]
    # index.html is a redirect to the landing page: nothing to measure there
    return [p for p in pages
            if 'http-equiv="refresh"' not in p.read_text(errors="replace")[:2000].lower()]


def browser_check(html_dir: Path, chromium: str) -> dict[str, dict]:
    return {str(p.relative_to(html_dir)): browse(p, chromium) for p in content_pages(html_dir)}


def _failures_static(report):
    return {page: remote for page, remote in report.items() if remote}


def _failures_browser(report):
    bad = {}
    for page, r in report.items():
        why = []
        if "error" in r:
            why.append(r["error"])
        if r.get("raw"):
            why.append(f"{r['raw']} equations left as raw TeX")
        if r.get("wide_math"):
            why.append(f"{len(r['wide_math'])} display equations wider than the column")
        if r.get("wide_code"):
            why.append(f"{r['wide_code']} of {r['code_blocks']} code blocks scroll sideways")
        if r.get("other_hosts"):
            why.append(f"requests to other hosts: {r['other_hosts']}")
        if why:
            bad[page] = why
    return bad


def main(argv: list[str]) -> int:
    mode = argv[0] if argv else "all"
    if mode not in ("static", "browser", "all"):
        print(f"check_book: mode must be static, browser or all, got {mode!r}", file=sys.stderr)
        return 2
    html_dir = Path(argv[1]) if len(argv) > 1 else DEFAULT_HTML
    if not (html_dir / "index.html").is_file():
        print(f"check_book: no built book at {html_dir} (run `make book` first)", file=sys.stderr)
        return 2
    failed = False
    if mode in ("static", "all"):
        report = static_check(html_dir)
        bad = _failures_static(report)
        print(f"static: {len(report)} pages, {len(bad)} load from another host")
        for page, remote in bad.items():
            print(f"  {page}: {remote[:5]}")
        failed |= bool(bad)
    if mode in ("browser", "all"):
        chromium = find_chromium()
        if chromium is None:
            print("browser: no Chromium found (apt-get install chromium); skipped")
            return 1 if failed or mode == "browser" else 0
        report = browser_check(html_dir, chromium)
        for page, r in report.items():
            print(f"  {page}: {r.get('typeset', 0)} equations typeset, raw {r.get('raw')}, "
                  f"wide equations {len(r.get('wide_math', []))}, wide code "
                  f"{r.get('wide_code')}/{r.get('code_blocks')}, other hosts "
                  f"{len(r.get('other_hosts', []))}")
            for w in r.get("wide_math", []):
                print(f"      wide equation ({w['need']} px > {w['have']} px): {w['tex']!r}")
            for where in r.get("wide_code_where", []):
                print(f"      wide code ({where})")
        bad = _failures_browser(report)
        print(f"browser: {len(report)} pages, {len(bad)} fail")
        for page, why in bad.items():
            print(f"  {page}: {'; '.join(why)}")
        failed |= bool(bad)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
