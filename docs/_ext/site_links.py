"""After an HTML build, check every internal link and image of the site: the target file
exists and, for ``page.html#anchor``, the page has that id. Offline, unlike ``-b linkcheck``
(which would also try every external address); a broken link is a warning, so ``-W`` fails
the build."""

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

EXTERNAL = ("http", "https", "mailto", "data", "javascript")


class _Page(HTMLParser):
    def __init__(self, text: str):
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        for key in ("href", "src"):
            if attrs.get(key):
                self.links.append(attrs[key])


def broken_links(root: Path) -> tuple[int, list[str]]:
    """``(links checked, "page: link (why)" for each broken one)`` of the site under root."""
    root = root.resolve()
    pages = {f.resolve(): _Page(f.read_text(errors="replace")) for f in root.rglob("*.html")}
    checked, broken = 0, []
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme in EXTERNAL or link.startswith("//"):
                continue
            checked += 1
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            where = f"{path.relative_to(root)}: {link}"
            if not target.exists():
                broken.append(f"{where} (no such file)")
            elif parts.fragment and target in pages and parts.fragment not in pages[target].ids:
                broken.append(f"{where} (no such anchor)")
    return checked, broken


def _check(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    # Sphinx is imported here, by the build that calls this, so that broken_links and its
    # test need only the standard library (the dev environment has no Sphinx).
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    checked, broken = broken_links(Path(app.outdir))
    for problem in broken:
        logger.warning(f"broken internal link: {problem}")
    logger.info(f"site_links: {checked} internal links and images checked, {len(broken)} broken")


def setup(app):
    app.connect("build-finished", _check)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
