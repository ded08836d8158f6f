"""The documentation site (`make docs`, tools/docs.py): a page for every notebook, the README as its index, the stored
outputs on the pages (the coloured tokens as HTML, the figures as images), no output printed as a repr.

Building the site takes one to two minutes on 2 cores, so the site is checked where it is built: under `make slow` (which
builds it here) or wherever `_docs/` already exists (after `make docs`); otherwise that test is skipped. The page names
are checked always: nbdev names a page after its notebook less the number, so two notebooks can claim one page.
"""
import re, subprocess, sys

import pytest

from conftest import FLAGS, ROOT

SITE = ROOT / "_docs"


def pages() -> dict:
    from nbdev.config import nbpath2html
    return {p.name: nbpath2html(p).name for p in sorted((ROOT / "nbs").glob("*.ipynb"))}


def test_a_page_per_notebook():
    names = pages()
    clash = {page: [nb for nb, p in names.items() if p == page] for page in names.values() if list(names.values()).count(page) > 1}
    assert clash == {}, f"notebooks that would share a page (rename one): {clash}"
    assert names["index.ipynb"] == "index.html"


@pytest.fixture(scope="module")
def site():
    if "slow" in FLAGS:
        done = subprocess.run([sys.executable, str(ROOT / "tools" / "docs.py")], cwd=ROOT, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stderr[-3000:]
    elif not SITE.exists(): pytest.skip("no _docs/: run `make docs` (or TOKCLEAN_FLAGS=slow, which builds it)")
    return SITE


def test_site(site):
    names = pages()
    assert sorted(p for p in names.values() if not (site / p).exists()) == []
    index = (site / "index.html").read_text()
    assert "Token cleaning" in index and "make test" in index  # the README's text is the index
    viz = (site / names["05a_viz.ipynb"]).read_text()
    assert 'style="background:#c6dbef"' in viz, "the coloured tokens of 05a_viz are not on its page as HTML"
    figure = re.compile(r'<img[^>]+src="(data:image/png;base64,|[^"]+\.png")')
    assert figure.search(viz) and figure.search((site / names["11_figures.ipynb"]).read_text())
    reprs = {p: m[0] for p in names.values() if (m := re.search(r"&lt;(IPython\.core\.display\.\w+|[\w.]+ object at 0x[0-9a-f]+)&gt;",
                                                                 (site / p).read_text()))}
    assert reprs == {}, f"outputs shown as their repr: {reprs}"
    hrefs = {(p, h) for p in names.values() for h in re.findall(r'href="([^"#:]+)(?:#[^"]*)?"', (site / p).read_text())}
    broken = sorted((p, h) for p, h in hrefs if not (site / h).exists())
    assert broken == [], f"links to pages or files that are not in the site: {broken[:10]}"


def test_formulas_render_offline(site):
    "The pages load MathJax from the site itself (the docs extra's copy), not from a CDN a reader offline cannot reach."
    pytest.importorskip("jupyter_server_mathjax", reason="the docs extra is not installed: `make docs` installs it")
    selection = (site / pages()["05_selection.ipynb"]).read_text()
    assert r"$O(N \log N)$" in selection  # a formula of the page, left for MathJax
    src = re.search(r'<script[^>]+src="([^"]*MathJax\.js[^"]*)"', selection)
    assert src and not src[1].startswith("http") and (site / src[1].split("?")[0]).exists(), src and src[1]
