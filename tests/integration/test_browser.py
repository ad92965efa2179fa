#!/usr/bin/env python3
"""
The web console in headless Chromium driven by Selenium (Debian's
chromium, chromium-driver and python3-selenium; the test skips, saying
so, when one is missing): the scenario of browsertest.py, then the
browser's console log (no error) and its network log (no request outside
the admin origin).  test_firefox.py runs the same scenario in Firefox.
"""

import json
import os

import browsertest as bt
import kgtest as kg

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def first(paths):
    for p in paths:
        if os.access(p, os.X_OK):
            return p
    return None


# Debian's python3-selenium: re-exec with /usr/bin/python3 if need be.
SELENIUM_MISSING = kg.python_with(("selenium",), "KEYGATE_SELENIUM_PYTHON",
                                  "python3-selenium")


def browser(tmp):
    """A headless Chromium with its console and network logs kept."""
    if SELENIUM_MISSING is not None:
        kg.skip(SELENIUM_MISSING)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    binary, driver = first(CHROMIUM), first(DRIVER)
    if binary is None or driver is None:
        kg.skip("chromium or chromium-driver is not installed (apt-get "
                "install chromium chromium-driver)")
    o = webdriver.ChromeOptions()
    o.binary_location = binary
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
              "--disable-gpu", "--window-size=1280,900",
              "--no-first-run", "--no-default-browser-check",
              "--disable-background-networking", "--disable-sync",
              "--disable-component-update", "--disable-extensions",
              "--user-data-dir=" + os.path.join(tmp, "profile")):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL",
                                           "performance": "ALL"})
    return webdriver.Chrome(service=Service(driver, log_path=os.path.join(
        tmp, "chromedriver.log")), options=o)


def test_console_in_chromium():
    d, origin = bt.start()
    drv = browser(kg.tempdir())
    from selenium.webdriver.common.by import By
    from selenium.common.exceptions import StaleElementReferenceException
    try:
        drv.get_log("performance")	# what the browser did before
        bt.run(d, bt.Page(drv, By, StaleElementReferenceException), origin)
        check_logs(drv, origin)
    finally:
        drv.quit()


def check_logs(drv, origin):
    """No error in the browser's console; no request outside origin."""
    errors = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
    # The wrong token's 401 is the one error the browser logs, by design.
    errors = [e for e in errors if "/ui/api/login" not in e["message"]]
    kg.eq(errors, [], "errors in the browser's console")
    urls = set()
    for e in drv.get_log("performance"):
        m = json.loads(e["message"])["message"]
        if m.get("method") == "Network.requestWillBeSent":
            urls.add(m["params"]["request"]["url"])
    kg.check(len(urls) > 5, "the network log: %r" % sorted(urls))
    # What goes over a network: not the browser's own pages (chrome://)
    # nor what its date picker draws from data: URLs.
    away = sorted(u for u in urls if not u.startswith(origin + "/") and
                  u.split(":")[0] in ("http", "https", "ws", "wss", "ftp"))
    kg.eq(away, [], "requests outside the admin origin")


TESTS = [test_console_in_chromium]


if __name__ == "__main__":
    kg.run(TESTS)
