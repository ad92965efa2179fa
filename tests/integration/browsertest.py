"""
The web console's scenario in a real browser, shared by test_browser.py
(headless Chromium through Selenium and chromedriver) and test_firefox.py
(headless Firefox through Marionette): it logs in, creates a key and uses
the secret shown against the gateway, checks the secret is gone once the
page moved on, edits the key, disables it (the gateway refuses it),
enables it, regenerates it (the new secret works), deletes it (typed
confirmation); visits the gateway page; opens the API Explorer and runs a
GET; logs out.  Each test then checks, its own browser's way, that the
page logged no error and sent no request outside the admin origin.
"""

import json
import time

import kgtest as kg

WAIT = 10.0


def gateway(d, secret):
    return kg.get(d.port, "/echo/b", headers={"X-API-KEY": secret}).status


class Page:
    """The driver, with waits that fail with what was awaited."""

    def __init__(self, drv, by, stale):
        self.d = drv
        self.By = by
        self.stale = stale

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
        for _ in range(5):
            try:
                self.find(css).click()
                return
            except self.stale:
                time.sleep(0.1)
        self.find(css).click()

    def select(self, css, value):
        """Pick the option of value in the select at css."""
        self.find(css).find_element(self.By.CSS_SELECTOR, "option[value="
                                    "'%s']" % value).click()


def gateway(d, secret):
    return kg.get(d.port, "/echo/b", headers={"X-API-KEY": secret}).status


def start():
    """A daemon with one keyed route and an admin listener; its origin."""
    d = kg.start(kg.config("route GET ^/echo/b auth=api-key "
                           "scope=billing upstream=echo",
                           "route * .* auth=deny", admin="{port2}"),
                 nports=2)
    return d, "http://127.0.0.1:%d" % d.admin_port


def run(d, p, origin):
    """The scenario, in whichever browser p drives."""
    drv = p.d
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
    p.select("[data-role=grace]", "0")
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
