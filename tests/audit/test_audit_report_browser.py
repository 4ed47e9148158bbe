"""The HTML report, opened in headless Chromium: its DOM holds the rows and its screenshot is not blank."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from audit_helpers import SECRET_EMAIL, entry, write_log
from click.testing import CliRunner

from pgwarden.cli import main
from pgwarden.proxy.audit import AuditLog

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium (Debian/Ubuntu: apt-get install chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,2000"]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, timeout=90, check=True)


def png_pixels(path: Path) -> tuple[int, int, bytes]:
    """Width, height and raw (filtered) scanline bytes of a PNG, with the standard library only."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    return width, height, zlib.decompress(idat)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    path = tmp / "audit.jsonl"
    write_log(path, 30)
    log = AuditLog(path, instance_id="test-1")
    log.append(entry(99, principal="<img src=x onerror=alert(1)>", decision="deny",
                     sql=f"SELECT * FROM hr.salaries WHERE email = '{SECRET_EMAIL}'"))
    log.close()
    out = tmp / "report.html"
    result = CliRunner().invoke(main, ["audit", "report", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_report_dom_holds_the_headings_and_rows(report: Path, tmp_path: Path) -> None:
    dom = chromium(tmp_path, "--dump-dom", report.as_uri()).stdout.decode()
    for heading in ("Decisions over time", "Top denied reasons", "Tables touched per principal", "Decisions"):
        assert f">{heading}</h2>" in dom
    assert "Hash chain verified" in dom
    assert re.search(r"<b id=\"total\">31</b>", dom)
    assert dom.count("<tr>") >= 31 + 3
    assert "SELECT * FROM hr.salaries WHERE email = ?" in dom
    assert "<svg" in dom and "<rect" in dom
    # The hostile principal id is text, not an element.
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom
    assert "<img" not in dom
    assert SECRET_EMAIL not in dom


def test_report_screenshot_is_not_blank(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={shot}", report.as_uri())
    width, height, raw = png_pixels(shot)
    assert (width, height) == (1280, 2000)
    assert shot.stat().st_size > 20_000
    assert len(set(raw)) > 64  # text, table rules, chart colours; a blank page has a handful of values
