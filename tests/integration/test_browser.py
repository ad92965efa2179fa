#!/usr/bin/env python3
"""
The web console in a real browser: headless Chromium driven by Selenium
(Debian's chromium, chromium-driver and python3-selenium; the test skips,
saying so, when one is missing).  It logs in, creates a key and uses the
secret shown against the gateway, checks the secret is gone once the page
moved on, edits the key, disables it (the gateway refuses it), enables
it, regenerates it (the new secret works), deletes it (typed
confirmation); opens the API Explorer and runs a GET; and checks that the
browser logged no error and sent no request outside the admin origin.
"""

import json
import os
import shutil
import sys
import time

import kgtest as kg

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
WAIT = 10.0


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


class Page:
    """The driver, with waits that fail with what was awaited."""

    def __init__(self, drv):
        from selenium.webdriver.common.by import By
        self.d = drv
        self.By = By

    def find(self, css, timeout=WAIT):
        def look():
            for e in self.d.find_elements(self.By.CSS_SELECTOR, css):
                if e.is_displayed():
                    return e
            return None
        return kg.wait_for(look, timeout, "a visible %s" % css)

    def gone(self, css, timeout=WAIT):
        kg.wait_for(lambda: not any(e.is_displayed() for e in
                                    self.d.find_elements(
                                        self.By.CSS_SELECTOR, css)),
                    timeout, "%s to go" % css)

    def text(self, css, want, timeout=WAIT):
        kg.wait_for(lambda: want in self.find(css).text, timeout,
                    "%r in %s" % (want, css))

    def type(self, css, text, clear=True):
        e = self.find(css)
        if clear:
            e.clear()
        e.send_keys(text)
        return e

    def click(self, css):
        """Click css; again if the page drew it anew meanwhile."""
        from selenium.common.exceptions import StaleElementReferenceException
        for _ in range(5):
            try:
                self.find(css).click()
                return
            except StaleElementReferenceException:
                time.sleep(0.1)
        self.find(css).click()


def gateway(d, secret):
    return kg.get(d.port, "/echo/b", headers={"X-API-KEY": secret}).status


def test_console_in_a_browser():
    d = kg.start(kg.config("route GET ^/echo/b auth=api-key "
                           "scope=billing upstream=echo",
                           "route * .* auth=deny", admin="{port2}"),
                 nports=2)
    tmp = kg.tempdir()
    drv = browser(tmp)
    origin = "http://127.0.0.1:%d" % d.admin_port
    try:
        run(d, Page(drv), origin)
        check_logs(drv, origin)
    finally:
        drv.quit()


def run(d, p, origin):
    from selenium.webdriver.support.ui import Select
    drv = p.d
    drv.get_log("performance")	# what the browser did before: not ours
    drv.get(origin + "/ui/")
    # Log in (a wrong token first: told so, not logged in).
    p.type("#login-token", "not-the-admin-token")
    p.click("#login-form button[type=submit]")
    p.text("#login-error", "not valid")
    p.type("#login-token", kg.ADMIN_TOKEN)
    p.click("#login-form button[type=submit]")
    p.find("table.keys")
    kg.check("keygate_session" in [c["name"] for c in drv.get_cookies()],
             "no session cookie")
    kg.eq(drv.execute_script("return document.cookie"), "",
          "document.cookie (the session cookie is HttpOnly)")
    # Create a key with a scope the routes require.
    p.click("[data-act=create]")
    p.type("#c-name", "Browser key")
    p.type("#c-owner", "browser-team")
    p.click("#c-scopes-pick-0")	# the scope the routes require
    kg.eq(p.find("#c-scopes").get_attribute("value"), "billing",
          "the scope picked")
    p.type("#c-r1", "50")
    p.click("dialog [type=submit]")
    secret = p.find("[data-role=secret]").get_attribute("value")
    p.text("dialog .warn", "will not be shown again")
    kg.check(secret.startswith("live_") and len(secret) > 20,
             "the secret shown: %r" % secret[:8])
    kg.eq(gateway(d, secret), 200, "the gateway with the new secret")
    p.click("dialog [data-act=done]")
    p.gone("dialog")
    kg.check(secret not in drv.page_source, "the secret is still in the "
             "page once its dialog is closed")
    # The list shows it; open it.
    p.type("#f-q", "Browser")
    p.text("[data-role=count]", "of 1 keys")	# the search's answer drawn
    kg.eq(p.find("table.keys tbody a").text, "Browser key",
          "the key in the list")
    p.click("table.keys tbody a")
    p.text("[data-role=title]", "Browser key")
    kg.check(secret not in drv.page_source, "the secret in the key's page")
    # Edit its name.
    p.type("#e-name", "Renamed key")
    p.click("[data-role=edit] [type=submit]")
    p.text("[data-role=title]", "Renamed key")
    kid = [x for x in drv.current_url.split("/") if x.startswith("key_")][0]
    k = kg.admin(d, "GET", "/v1/keys/" + kid).json()
    kg.eq((k["name"], k["scopes"], k["rate_limit"]["per_1s"]),
          ("Renamed key", ["billing"], 50), "the key as the API has it")
    # Disable: refused; enable: admitted.
    p.click("[data-act=toggle]")
    p.text("[data-act=toggle]", "Enable")
    kg.wait_for(lambda: gateway(d, secret) == 401, 5.0,
                "the gateway refusing the disabled key")
    p.click("[data-act=toggle]")
    p.text("[data-act=toggle]", "Disable")
    kg.wait_for(lambda: gateway(d, secret) == 200, 5.0,
                "the gateway admitting the key again")
    # Regenerate with no grace: the new secret works, the old one no more.
    p.click("[data-act=regenerate]")
    Select(p.find("[data-role=grace]")).select_by_value("0")
    p.click("dialog [type=submit]")
    new = p.find("[data-role=secret]").get_attribute("value")
    kg.check(new != secret and new.startswith("live_"), "a new secret")
    p.click("dialog [data-act=done]")
    p.gone("dialog")
    kg.eq(gateway(d, new), 200, "the gateway with the regenerated secret")
    kg.eq(gateway(d, secret), 401, "the gateway with the old secret")
    kg.check(new not in drv.page_source, "the new secret in the page")
    # Delete: only once the id is typed.
    p.click("[data-act=delete]")
    kg.check(not p.find("dialog [data-act=delete]").is_enabled(),
             "Delete enabled before the id was typed")
    p.type("[data-role=typed]", kid)
    p.click("dialog [data-act=delete]")
    kg.wait_for(lambda: drv.current_url.endswith("#/keys"), WAIT,
                "back to the list")
    kg.eq(kg.admin(d, "GET", "/v1/keys/" + kid).status, 404,
          "the deleted key")
    kg.eq(gateway(d, new), 401, "the gateway with the deleted key")
    # The gateway page: the routes, the refusals of the last hour.
    p.click("#nav a[data-nav=gateway]")
    p.text("#view", "^/echo/b")
    p.text("#view", "Refusals, last")
    # The explorer: GET /v1/health.
    p.click("#nav a[data-nav=explorer]")
    op = p.find("#op-health")
    op.find_element(p.By.CSS_SELECTOR, "summary").click()
    op.find_element(p.By.CSS_SELECTOR, "button[type=submit]").click()
    kg.wait_for(lambda: op.find_elements(p.By.CSS_SELECTOR,
                                         "[data-role=body]"), WAIT,
                "the explorer's answer")
    body = json.loads(op.find_element(p.By.CSS_SELECTOR,
                                      "[data-role=body]").text)
    kg.eq(body["status"], "ok", "the explorer's GET /v1/health")
    kg.check("200" in op.find_element(p.By.CSS_SELECTOR,
                                      "[data-role=result] strong").text,
             "the explorer's status line")
    # Log out: back to the login form, the session gone.
    p.click("#logout")
    p.find("#login-token")
    kg.eq(kg.request(d.admin_port, "GET", "/v1/keys", headers={
        "Cookie": "; ".join("%s=%s" % (c["name"], c["value"])
                            for c in drv.get_cookies())}).status, 401,
          "the session after logging out")


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


TESTS = [test_console_in_a_browser]


if __name__ == "__main__":
    kg.run(TESTS)
