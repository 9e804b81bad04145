"""The HTML reports in a real headless Chromium: no console error, every image decodes, every
local link resolves (see tests/browser.py)."""

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from tests.browser import chromium_or_skip, load_page

pytestmark = pytest.mark.slow


def local_targets(links: list[str]) -> list[Path]:
    return [Path(unquote(urlparse(u).path)) for u in links if u.startswith("file://")]


def check_class_page(wd: Path, target_class: str, charts: int | None = None) -> None:
    page = wd / "classes" / target_class / "index.html"
    data = json.loads((page.parent / "results_summaries" / "ace_results.json").read_text())
    kept = [c for c in data["concepts"] if c["significant"]]
    examples = data["concept_examples"]
    r = load_page(page.as_uri())
    assert r.errors == [] and r.broken == [], (r.errors, r.broken)
    assert r.title == f"ACE: {target_class}"
    assert r.svg == (charts or len(data["run"]["layers"]))  # one TCAV chart per layer (and SSC/SDC)
    # 10 (or fewer) examples and as many "where it sits" images per significant concept, and the
    # scoring images painted with the concepts (with --evaluate)
    assert r.images == sum(2 * min(10, len(examples[f"{c['layer']}:{c['concept']}"])) for c in kept) + len(
        data.get("where", {}).get("images", []))
    assert all(p.exists() for p in local_targets(r.links)), r.links
    html = page.read_text()
    on_page = sorted(kept, key=lambda c: html.index(f">{c['concept']} <span"))
    directions = [c["direction"] for c in on_page]
    assert directions == sorted(directions, key=lambda d: d != "raises")  # raising concepts first
    raising = [c["tcav_mean"] for c in on_page if c["direction"] == "raises"]
    assert raising == sorted(raising, reverse=True)  # highest TCAV first


def test_broken_page_is_caught(tmp_path):
    """The check can fail: a missing image and a console error are both reported."""
    chromium_or_skip()
    page = tmp_path / "bad.html"
    page.write_text('<!doctype html><html><head><link rel="icon" href="data:,"><title>bad</title></head><body>'
                    '<img src="missing.png"><script>console.error("boom")</script></body></html>')
    r = load_page(page.as_uri())
    assert r.broken == ["missing.png"]
    assert any("boom" in e for e in r.errors) and any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e for e in r.errors)


def test_demo_report_page_loads_cleanly(demo_run):
    kwargs, _ = demo_run
    wd = Path(kwargs["working_dir"])
    check_class_page(wd, kwargs["target_class"])
    index = load_page((wd / "index.html").as_uri())
    assert index.errors == [] and index.broken == []
    assert (wd / "classes" / kwargs["target_class"] / "index.html") in local_targets(index.links)


def test_zebra_report_page_loads_cleanly(zebra_run):
    wd, _ = zebra_run
    check_class_page(wd, "zebra")
