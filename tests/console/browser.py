"""Headless Chromium from Debian, driven by Selenium, and a check that a screenshot shows
something. Nothing is downloaded: the browser and its driver are named by path, and Selenium
Manager is told to stay offline."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def available() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} is missing (scripts/system-deps.sh test installs chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


def chromium(profile: Path, *, width: int = 1360, height: int = 1000) -> Any:
    """A fresh headless Chromium with its own profile directory; quit() it when done."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never fetch a browser or driver
    os.environ["SE_AVOID_STATS"] = "true"
    profile.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    service = Service(executable_path=str(CHROMEDRIVER))
    return webdriver.Chrome(options=options, service=service)


def screenshot_stats(png: bytes) -> tuple[int, float]:
    """(distinct colours, fraction of pixels that are not near-white) of a PNG."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    small = image.resize((image.width // 2, image.height // 2))
    pixels = list(small.get_flattened_data())
    colours = len(set(pixels))
    dark = sum(1 for r, g, b in pixels if r + g + b < 3 * 235)
    return colours, dark / len(pixels)


def full_page_png(driver: Any) -> bytes:
    """The whole page: the window grown to the document's height, then a screenshot."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, min(max(int(height) + 120, 600), 4000))
    return driver.get_screenshot_as_png()
