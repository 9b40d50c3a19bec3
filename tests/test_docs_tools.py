"""The documentation build's own check of internal links (docs/_ext/site_links.py) finds a
missing page, a missing anchor and a missing image, and passes a site whose links resolve."""

import importlib.util
from pathlib import Path

PATH = Path(__file__).resolve().parents[1] / "docs" / "_ext" / "site_links.py"
spec = importlib.util.spec_from_file_location("site_links", PATH)
site_links = importlib.util.module_from_spec(spec)
spec.loader.exec_module(site_links)


def test_internal_links_are_checked_and_external_ones_left_alone(tmp_path):
    (tmp_path / "guide").mkdir()
    (tmp_path / "index.html").write_text(
        '<a href="guide/page.html#usage">ok</a> <a href="https://pyro.ai">external</a>'
        '<a href="#top" id="top">self</a> <img src="data:image/png;base64,AAAA">'
    )
    (tmp_path / "guide" / "page.html").write_text(
        '<h2 id="usage">Usage</h2><a href="../index.html">up</a>'
    )
    assert site_links.broken_links(tmp_path) == (3, [])
    (tmp_path / "guide" / "page.html").write_text(
        '<h2 id="usage">Usage</h2><a href="../index.html#nowhere">up</a>'
        '<a href="missing.html">gone</a><img src="../_images/fig.png">'
    )
    checked, broken = site_links.broken_links(tmp_path)
    assert checked == 5
    assert sorted(broken) == [
        "guide/page.html: ../_images/fig.png (no such file)",
        "guide/page.html: ../index.html#nowhere (no such anchor)",
        "guide/page.html: missing.html (no such file)",
    ]
