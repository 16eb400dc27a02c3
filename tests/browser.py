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


def cut_tables(page: Path, scratch: Path, width: int = 1400) -> tuple[list[str], int, int]:
    """(tables cut at a window `width` px wide: their first header, page scroll width, viewport width). A table is
    cut when its right edge passes the viewport and no ancestor scrolls it sideways."""
    probe = scratch / f"layout{width}.html"
    probe.write_text(page.read_text().replace("</body>", """<script>window.addEventListener("load", () => {
      const view = document.documentElement.clientWidth;
      const cut = [...document.querySelectorAll("table")].filter(t => {
        if (t.getBoundingClientRect().right <= view + 1) return false;
        for (let box = t.parentElement; box; box = box.parentElement) {
          const overflow = getComputedStyle(box).overflowX;
          if ((overflow === "auto" || overflow === "scroll") && box.getBoundingClientRect().right <= view + 1)
            return false;
        }
        return true;
      }).map(t => (t.querySelector("th") || t).textContent.trim().slice(0, 40));
      document.body.dataset.layout = JSON.stringify({cut, scroll: document.documentElement.scrollWidth, view});
    });</script></body>"""))
    dom = subprocess.run([chromium(), *FLAGS, f"--window-size={width},1000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    import html
    import json

    raw = dom.stdout.split('data-layout="', 1)[1].split('"', 1)[0]
    layout = json.loads(html.unescape(raw))
    return layout["cut"], layout["scroll"], layout["view"]
