#!/usr/bin/env python3
"""Take the screenshots in docs/console/ with the browser tests' own code: the same real
world (tests/console/world.py: a Steward, the log, a trust root, a UPS simulator and a watch
that shut a rehearsal lab down) and the same headless Debian Chromium driven by Selenium.

    .venv/bin/python scripts/console-screenshots.py [OUT_DIR]     # default docs/console
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.console import browser  # noqa: E402
from tests.console.world import make_world  # noqa: E402

PAGES = {
    "keeps": "/keeps",
    "secrets": "/secrets",
    "log": "/log?q=acme/hello",
    "entry": "/log/entry/0",
    "trust": "/trust?ref=acme/hello:1.0&policy=hobbyist.toml",
    "power": "/power?hours=0.05",
}


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "console"
    why_not = browser.available()
    if why_not:
        print(f"console-screenshots: {why_not}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="console-shots-") as tmp:
        with make_world(Path(tmp) / "world") as world:
            driver = browser.chromium(Path(tmp) / "profile", width=1280)
            try:
                for name, path in PAGES.items():
                    driver.set_window_size(1280, 900)
                    driver.get(world.console + path)
                    if name == "power":  # show the replay of the rehearsed shutdown
                        from selenium.webdriver.common.by import By

                        driver.find_element(By.CSS_SELECTOR, "#shutdowns a").click()
                    png = browser.full_page_png(driver)
                    colours, inked = browser.screenshot_stats(png)
                    (out / f"{name}.png").write_bytes(png)
                    print(f"{name}: {len(png)} bytes, {colours} colours, {inked:.0%} inked")
            finally:
                driver.quit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
