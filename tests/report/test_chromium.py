"""Must show: the pipeline's report.html renders in headless Chromium, with the stage table
and every plot image present and non-empty (decoded by the browser), and a screenshot."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(BROWSER is None, reason="chromium is not installed (.ci/run installs it: apt-get install -y chromium)")


def _chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.timeout(300)
def test_report_renders_in_headless_chromium(pipeline_run, tmp_path):
    page = pipeline_run / "report.html"
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-500:]
    html = dom.stdout
    assert 'data-loaded="1"' in html  # the page's load event ran

    table = re.search(r'<table id="stage-table">(.*?)</table>', html, re.S)
    assert table is not None
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S)
    assert len(rows) == 1 + 7  # header + one row per stage
    assert "retrain" in table.group(1) and "baseline" in table.group(1)

    images = re.findall(r"<img[^>]*>", html)
    expected = len(list((pipeline_run / "report-files").glob("*.png")))
    assert expected >= 6 and len(images) == expected
    for img in images:
        size = re.search(r'data-natural="(\d+)x(\d+)"', img)
        assert size is not None, img[:120]
        assert int(size.group(1)) > 100 and int(size.group(2)) > 100  # decoded, not a broken image

    shot = tmp_path / "report.png"
    res = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri())
    assert res.returncode == 0 and shot.exists(), res.stderr[-500:]
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 2400)
        colors = im.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colors is not None and len(colors) > 200  # text, tables and plots, not a blank page
