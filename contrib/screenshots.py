#!/usr/bin/python3
"""
Take the web console's screenshots for the README (doc/console-*.png):
a keygated with some keys and traffic, headless Chromium (chromium,
chromium-driver, python3-selenium).

    KEYGATED=_build/src/keygated /usr/bin/python3 contrib/screenshots.py [DIR]

DIR defaults to doc/.  Everything runs on 127.0.0.1 and is removed after.
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import browsertest as bt                # noqa: E402
import kgtest as kg                     # noqa: E402
import test_browser as B                # noqa: E402


def main():
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                          os.path.join(HERE, "..", "doc"))
    d = kg.start(kg.config("route GET ^/echo/b auth=api-key scope=billing "
                           "upstream=echo",
                           "route GET ^/echo/r auth=api-key "
                           "scope=reports:read upstream=echo",
                           "route * .* auth=deny", admin="{port2}",
                           rate_limit="5/1s 200/10s 1000/60s"), nports=2)
    try:
        keys = []
        for name, owner, scopes in (("Billing service", "payments",
                                     ["billing"]),
                                    ("Reports dashboard", "analytics",
                                     ["reports:read"]),
                                    ("Partner sandbox", "partner-acme", []),
                                    ("Mobile app", "mobile", ["billing"])):
            k, s = kg.create_key(d, owner=owner, name=name, scopes=scopes)
            keys.append((k, s))
        kg.admin(d, "PATCH", "/v1/keys/" + keys[2][0]["id"],
                 {"disabled": True})
        for _ in range(40):
            kg.get(d.port, "/echo/b", headers={"X-API-KEY": keys[0][1]})
            time.sleep(0.01)
        for scheme in ("light", "dark"):
            drv = B.browser(kg.tempdir())	# a profile of its own
            from selenium.webdriver.common.by import By
            from selenium.common.exceptions import \
                StaleElementReferenceException as Stale
            try:
                drv.execute_cdp_cmd("Emulation.setEmulatedMedia", {
                    "features": [{"name": "prefers-color-scheme",
                                  "value": scheme}]})
                shots(drv, bt.Page(drv, By, Stale), d, keys, out, scheme)
            finally:
                drv.quit()
    finally:
        d.stop()


def shots(drv, p, d, keys, out, scheme):
    origin = "http://127.0.0.1:%d" % d.admin_port
    drv.set_window_size(1280, 800)
    drv.get(origin + "/ui/")
    if scheme == "light":
        p.find("#login-token")
        drv.save_screenshot(os.path.join(out, "console-login.png"))
    p.type("#login-token", kg.ADMIN_TOKEN)
    p.click("#login-form button[type=submit]")
    p.find("table.keys tbody a")
    time.sleep(0.3)
    drv.save_screenshot(os.path.join(out, "console-keys-%s.png" % scheme))
    if scheme == "dark":
        return
    drv.get(origin + "/ui/#/keys/" + keys[0][0]["id"])
    p.find("[data-role=hour] svg")
    time.sleep(0.3)
    drv.save_screenshot(os.path.join(out, "console-key.png"))
    drv.get(origin + "/ui/#/explorer")
    op = p.find("#op-listKeys")
    op.find_element(p.By.CSS_SELECTOR, "summary").click()
    op.find_element(p.By.CSS_SELECTOR, "button[type=submit]").click()
    p.find("#op-listKeys [data-role=body]")
    drv.execute_script("document.getElementById('op-listKeys')"
                       ".scrollIntoView()")
    time.sleep(0.3)
    drv.save_screenshot(os.path.join(out, "console-explorer.png"))


if __name__ == "__main__":
    main()
