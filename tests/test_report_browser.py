"""The report of a small run in a real browser (headless Debian chromium): no console message, no
broken link; the summary, the matrix and a case page with its ladder diagram render; the screenshot
stays in the run's directory (screenshot.png)."""
import shutil

import pytest
from testbed.report.browser import broken_links, load, screenshot

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None,
                                reason="chromium is not installed: run scripts/setup (Debian's chromium)")


def header_is_drawn(png) -> bool:
    """The report's dark header band fills the top of the first screen (the page was laid out)."""
    from PIL import Image
    img = Image.open(png).convert("RGB")
    r, g, b = img.getpixel((img.width // 2, 8))
    return (r, g, b) == (0x20, 0x30, 0x3f)


def test_report_renders_in_chromium(run):
    index = run / "index.html"
    page = load(index)
    assert page.console == [], f"console messages on the index page: {page.console}"
    assert broken_links(index, page.dom) == []
    for marker in ('id="summary"', 'id="matrix"', "Implementation &times; requirement", "What was tested",
                   "Against what", "How it went", "Needs attention"):
        assert marker in page.dom or marker.replace("&times;", "\u00d7") in page.dom, marker
    shot = screenshot(index, run / "screenshot.png")
    assert header_is_drawn(shot)

    case = next((run / "cases").glob("*test_tunnel_is_established_remote-access-basic_*")) / "case.html"
    case_page = load(case)
    assert case_page.console == [] and broken_links(case, case_page.dom) == []
    assert 'class="ladder"' in case_page.dom and "IKE_SA_INIT" in case_page.dom
