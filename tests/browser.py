"""Headless Chromium (Debian's package) opening a report page from file://: the images that decoded and the
console errors, for tests that look at the page as a reader's browser shows it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def open_page(page: Path, scratch: Path) -> tuple[int, int, str]:
    """(images decoded, images on the page, console lines) of `page` opened in headless Chromium."""
    html = page.read_text()
    probe = scratch / "probe.html"  # the page plus a script counting the images that decoded
    probe.write_text(html.replace("</body>", '<script>window.addEventListener("load", () => { '
                                  "document.body.dataset.loaded = [...document.images].filter("
                                  "i => i.complete && i.naturalWidth > 0).length + '/' + document.images.length; });"
                                  "</script></body>"))
    dom = subprocess.run([chromium(), *FLAGS, "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                         timeout=120)
    images = html.count("<img ")
    loaded = dom.stdout.split('data-loaded="', 1)[1].split("/", 1)[0] if 'data-loaded="' in dom.stdout else "0"
    console = "\n".join(line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line)
    return int(loaded), images, console
