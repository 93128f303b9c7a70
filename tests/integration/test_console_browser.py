"""The console in a real browser: headless Debian Chromium driven by Selenium, every page
loaded with data from a real Steward, log and UPS simulator (tests/console/world.py), a
screenshot of each checked not to be blank, markup in names, statements and UPS variables
shown as text, and a client off this machine refused without the token."""

from __future__ import annotations

import pytest

from tests.conftest import require
from tests.console import browser
from tests.console.world import HOSTILE_IMG, HOSTILE_SCRIPT, SECRET_VALUE, TOKEN, make_world

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def chromium_here():
    why_not = browser.available()
    require(why_not is None, why_not or "")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with make_world(tmp_path_factory.mktemp("world")) as w:
        yield w


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    d = browser.chromium(tmp_path_factory.mktemp("profile"))
    try:
        yield d
    finally:
        d.quit()


def no_markup_ran(driver) -> None:
    """Nothing the data carried became an element, and no dialog opened."""
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    assert driver.find_elements(By.TAG_NAME, "script") == []
    assert driver.find_elements(By.CSS_SELECTOR, "img, [onerror]") == []
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert  # noqa: B018 - the property raises when there is none


def body_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def load(driver, url: str) -> str:
    driver.set_window_size(1360, 1000)
    driver.get(url)
    png = browser.full_page_png(driver)
    colours, inked = browser.screenshot_stats(png)
    assert colours > 20 and inked > 0.03, f"{url}: a blank page ({colours} colours, {inked:.1%})"
    no_markup_ran(driver)
    return body_text(driver)


PAGES = {
    "keeps": "/keeps",
    "secrets": "/secrets",
    "log": "/log",
    "entry": "/log/entry/0",
    "trust": "/trust?ref=acme/hello:1.0&policy=hobbyist.toml",
    "power": "/power?hours=0.05",
}


@pytest.mark.parametrize("page", list(PAGES))
def test_each_page_loads_with_real_data_and_is_not_blank(world, driver, page):
    text = load(driver, world.console + PAGES[page])
    assert "motte console" in text and "500" not in driver.title
    if page == "keeps":
        assert "2 certificates issued, 3 requests refused" in text
        assert "acme/hello:1.0" in text  # the workload's name, from the package store
        assert "evil.example not in san_allow" in text or "evil.example" in text
    elif page == "secrets":
        # From the Steward's secrets' audit log: one release, one refusal, never the value.
        assert "1 secrets stored; 1 releases, 1 refusals" in text
        assert "db-password" in text and "db-password v1" in text
        assert "is not among digests" in text
        assert SECRET_VALUE not in text and SECRET_VALUE not in driver.page_source
    elif page == "log":
        assert "publication" in text and "review" in text and "acme/hello" in text
    elif page == "entry":
        assert "✔ verified: entry 0 is in" in text
        assert world.digest in text
    elif page == "trust":
        assert "accepted: acme/hello:1.0@" + world.digest in text
        for area in ("build", "integrity", "responsiveness", "provenance", "expertise"):
            assert area in text
    elif page == "power":
        from selenium.webdriver.common.by import By

        # Live, from the simulator: on battery, low, FSD set by the watch's shutdown.
        status = driver.find_element(By.ID, "status-1").text.split()
        assert {"OB", "LB", "FSD"} <= set(status)
        assert driver.find_element(By.ID, "charge-1").text == "58%"
        assert "readings" in text and "shutdown started" in text


def test_markup_in_the_steward_log_and_ups_shows_as_text(world, driver):
    from selenium.webdriver.common.by import By

    keeps = load(driver, world.console + "/keeps")
    assert HOSTILE_SCRIPT in keeps and HOSTILE_IMG in keeps
    found = load(driver, world.console + "/log")
    assert f"{HOSTILE_SCRIPT}/{HOSTILE_IMG}" in found  # the package a statement names
    # The raw entry and the hostile statement, each on its own page.
    hostile = driver.find_elements(By.CSS_SELECTOR, "#entries tbody tr td:first-child a")
    indices = [a.text for a in hostile]
    for index in indices[:2]:
        text = load(driver, f"{world.console}/log/entry/{index}")
        assert HOSTILE_SCRIPT in text and HOSTILE_IMG in text
    power = load(driver, world.console + "/power")
    driver.find_element(By.CSS_SELECTOR, "#ups-1 details summary").click()
    power = body_text(driver)
    assert HOSTILE_SCRIPT in power and HOSTILE_IMG in power
    # A query is echoed into the form and the result line: as text too.
    load(driver, world.console + "/log?q=" + HOSTILE_IMG.replace("#", ""))
    box = driver.find_element(By.NAME, "q")
    assert box.get_attribute("value") == HOSTILE_IMG
    no_markup_ran(driver)


def test_a_search_finds_entries_by_digest_name_key_and_identity(world, driver):
    from selenium.webdriver.common.by import By

    for query, at_least in (
        (world.digest, 3),
        ("acme/hello", 1),
        ("mailto:auditor@example.org", 1),
    ):
        text = load(driver, world.console + "/log?q=" + query)
        count = int(driver.find_element(By.ID, "found").text.split()[0])
        assert count >= at_least, (query, text)
    # Follow a key id from a result row: the same signer's entries.
    keyid = driver.find_element(By.CSS_SELECTOR, "#entries td:nth-child(5) a").text
    load(driver, world.console + "/log?q=" + keyid)
    assert int(driver.find_element(By.ID, "found").text.split()[0]) >= 2


def test_a_past_shutdown_is_replayed(world, driver):
    from selenium.webdriver.common.by import By

    load(driver, world.console + "/power")
    driver.find_element(By.CSS_SELECTOR, "#shutdowns a").click()
    text = body_text(driver)
    assert "Replay of" in text
    rows = driver.find_elements(By.CSS_SELECTOR, "#replay-timeline .rowlabel")
    labels = [r.text for r in rows]
    assert "app" in labels and "nas" in labels and "pi" in labels
    assert "self-stop" not in labels  # the coordinator's own steps are on its row
    kinds = [
        e.text for e in driver.find_elements(By.CSS_SELECTOR, "#replay-events td:nth-child(2)")
    ]
    assert kinds[0] == "SHUTDOWN" and "down" in kinds
    # The plan's timeline: the coordinator last, the switch kept up.
    plan = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#plan-timeline .rowlabel")]
    assert plan[-2:] == ["pi", "switch"]
    no_markup_ran(driver)


def test_off_this_machine_the_token_is_required(world, driver):
    if world.far is None:
        pytest.skip(
            "this machine has no address but loopback (tests/console/test_guard.py "
            "checks the rule at the ASGI level with a non-loopback client)"
        )
    driver.get(world.far + "/keeps")
    assert "needs its token" in body_text(driver)
    assert "certificates issued" not in body_text(driver)
    driver.get(world.far + "/keeps?token=" + "x" * 43)
    assert "wrong token" in body_text(driver)
    driver.get(world.far + "/keeps?token=" + TOKEN)
    assert driver.current_url == world.far + "/keeps"  # the token left the address bar
    assert "certificates issued" in body_text(driver)
    driver.get(world.far + "/log")  # the cookie carries on
    assert "Latest entries" in body_text(driver)
    driver.delete_all_cookies()
    driver.get(world.far + "/log")
    assert "needs its token" in body_text(driver)
