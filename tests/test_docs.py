"""The documentation site: it builds with warnings as errors, and the built HTML is sound.

The build (``python -m sphinx -W --keep-going -b html docs OUT``, tutorials executed) needs
the ``docs`` extra; without it these tests are skipped. Set ``UNITARY_LOWRANK_DOCS_HTML`` to
an HTML folder already built that way (as CI does right after its build) to check that one
instead of building again.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# the Sphinx extensions of docs/conf.py (their distributions are in the docs extra)
DOC_MODULES = ("sphinx", "numpydoc", "myst_parser", "myst_nb", "ipykernel", "matplotlib")

# module -> API page that documents every name of its __all__
API_PAGES = {
    "unitary_lowrank": "api/unitary_lowrank.html",
    "unitary_lowrank.conv": "api/conv.html",
    "unitary_lowrank.testing": "api/testing.html",
    "unitary_lowrank.testing.reference": "api/testing.html",
    "unitary_lowrank.testing.strategies": "api/testing.html",
    "unitary_lowrank.torch": "api/torch.html",
    "unitary_lowrank.methods": "api/methods.html",
}

# tutorial -> strings that only its executed output contains
TUTORIAL_OUTPUT = {
    "tutorials/numpy_updates.html": ["all within", ": True", "after reunitarize:"],
    "tutorials/torch_projunn.html": ["step 300", "|W - Q|_2 ="],
    "tutorials/orthogonal_conv.html": ["step 40", "norm ratio:"],
    "tutorials/property_testing.html": [
        "test_update_stays_unitary: passed",
        "test_update_matches_reference: passed",
        "Hypothesis found a counterexample",
        "test_inverse_is_adjoint: passed",
    ],
}


@pytest.fixture(scope="session")  # once per run, also when the tests run interleaved
def html_dir(tmp_path_factory) -> Path:
    """The built site: UNITARY_LOWRANK_DOCS_HTML, or a fresh ``-W`` build in a temp dir."""
    given = os.environ.get("UNITARY_LOWRANK_DOCS_HTML")
    if given:
        out = Path(given).resolve()
        if not (out / "index.html").is_file():
            pytest.fail(f"UNITARY_LOWRANK_DOCS_HTML={given} has no index.html")
        return out
    missing = [m for m in DOC_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the docs extra is not installed (missing {', '.join(missing)})")
    base = tmp_path_factory.mktemp("docs")
    out = base / "html"  # MyST-NB writes the executed notebooks beside it, in base
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
           "-d", str(base / "doctrees"), str(DOCS), str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"sphinx build failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return out


class _Page(HTMLParser):
    """Ids, links, images and scripts of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.images: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        if tag == "a" and attrs.get("href") is not None:
            self.links.append(attrs["href"])
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _pages(html_dir: Path) -> list[Path]:
    return sorted(p for p in html_dir.rglob("*.html") if "_static" not in p.parts)


@pytest.mark.slow
def test_builds_every_page(html_dir):
    names = {p.relative_to(html_dir).as_posix() for p in _pages(html_dir)}
    expected = {"index.html", "theory.html", "reliability.html", "tasks.html",
                "architecture.html", "benchmarks.html", "changelog.html", "api/index.html",
                *API_PAGES.values(), *TUTORIAL_OUTPUT,
                *(page for pages in OPTIONAL.values() for page in pages[:2])}
    assert expected <= names, sorted(expected - names)


@pytest.mark.slow
def test_api_pages_list_every_public_name(html_dir):
    for module, page in API_PAGES.items():
        ids = _parse(html_dir / page).ids
        names = importlib.import_module(module).__all__
        missing = [n for n in names if f"{module}.{n}" not in ids]
        assert not missing, f"{page} does not document {module}.{missing}"


# optional adapter -> its API page and tutorial, and strings of the tutorial's executed output
OPTIONAL = {
    "unitary_lowrank.optax": (
        "api/optax.html",
        "tutorials/jax_optax.html",
        ["step 300", "unitarity error after reunitarize:"],
    ),
}


@pytest.mark.slow
def test_optional_adapters(html_dir):
    # each page is the reference (tutorial) when the adapter imported at build time, else a
    # note that says why it is missing
    for module, (api_page, tutorial, expected) in OPTIONAL.items():
        api_text = (html_dir / api_page).read_text(encoding="utf-8")
        tutorial_text = (html_dir / tutorial).read_text(encoding="utf-8")
        if "could not be imported" in api_text:
            assert "could not be imported" in tutorial_text
            continue
        ids = _parse(html_dir / api_page).ids
        missing = [n for n in importlib.import_module(module).__all__
                   if f"{module}.{n}" not in ids]
        assert not missing, f"{api_page} does not document {module}.{missing}"
        assert "cell_output" in tutorial_text, f"{tutorial} has no executed output"
        for s in expected:
            assert s in tutorial_text, f"{tutorial} lacks the output {s!r}"
        assert "output stderr" not in tutorial_text, f"{tutorial} shows warnings (stderr)"


@pytest.mark.slow
def test_tutorials_are_executed(html_dir):
    for page, expected in TUTORIAL_OUTPUT.items():
        text = (html_dir / page).read_text(encoding="utf-8")
        assert "cell_output" in text, f"{page} has no executed output"
        for s in expected:
            assert s in text, f"{page} lacks the output {s!r}"
        assert "Traceback" not in text, f"{page} shows a traceback"
        assert "output stderr" not in text, f"{page} shows warnings or errors (stderr)"
    # the figure of the NumPy tutorial, written by the executed cell and copied with the site
    images = _parse(html_dir / "tutorials/numpy_updates.html").images
    assert images, "the NumPy tutorial has no figure"
    for src in images:
        assert (html_dir / "tutorials" / src).resolve().is_file(), src


@pytest.mark.slow
def test_figures_of_the_background_pages(html_dir):
    for page, count in (("tasks.html", 4), ("benchmarks.html", 1)):
        images = _parse(html_dir / page).images
        assert len(images) >= count, (page, images)
        for src in images:
            assert (html_dir / src).resolve().is_file(), (page, src)


@pytest.mark.slow
def test_internal_links_resolve(html_dir):
    parsed: dict[Path, _Page] = {}

    def page(path: Path) -> _Page:
        if path not in parsed:
            parsed[path] = _parse(path)
        return parsed[path]

    broken = []
    for source in _pages(html_dir):
        for href in page(source).links:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc:  # external (http, mailto, ...)
                continue
            target = source if not parts.path else (source.parent / unquote(parts.path))
            target = target.resolve()
            where = f"{source.relative_to(html_dir)}: {href}"
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{where} (no such file)")
                continue
            if parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in page(target).ids:
                    broken.append(f"{where} (no such anchor)")
    assert not broken, "broken links:\n" + "\n".join(broken)


_MATH = re.compile(r'<(span|div) class="math[^"]*"[^>]*>(.*?)</\1>', re.S)
_CODE = re.compile(r"<(pre|code|script|style)\b.*?</\1>", re.S)


@pytest.mark.slow
def test_math_is_rendered_by_mathjax(html_dir):
    for name in ("tutorials/numpy_updates.html", "index.html", "api/conv.html"):
        path = html_dir / name
        text = path.read_text(encoding="utf-8")
        scripts = _parse(path).scripts
        mathjax = [s for s in scripts if "mathjax" in s.lower()]
        assert mathjax, f"{name} loads no MathJax"
        for src in mathjax:  # a local copy, when the build has one, must be there
            parts = urlsplit(src)
            if not parts.scheme and not parts.netloc:
                assert (path.parent / unquote(parts.path)).resolve().is_file(), src
        spans = [body for _, body in _MATH.findall(text)]
        assert spans, f"{name} has no math"
        assert all(b.strip().startswith(("\\(", "\\[")) for b in spans), spans[:3]
        # no TeX left as plain text outside the math elements and code blocks
        rest = _CODE.sub("", _MATH.sub("", text))
        raw = re.findall(r"\$[^$<]*\\[a-zA-Z]+[^$<]*\$", rest)
        assert not raw, f"{name} has raw TeX: {raw[:3]}"
