#!/usr/bin/env python3
"""
The web console in headless Firefox (Debian's firefox-esr; the test skips,
saying so, without it), driven through Marionette by marionette.py since
Debian has no geckodriver: the scenario of browsertest.py, as in
Chromium; then, read in the browser's privileged context, its console
(no error or CSP violation from the page) and every HTTP request the page
caused (none outside the admin origin).
"""

import os

import browsertest as bt
import kgtest as kg
import marionette

FIREFOX = ("/usr/bin/firefox-esr", "/usr/bin/firefox")

# Every HTTP request Firefox makes from now on: its URL, and the origins
# of the principals that caused it (the page's, for what the page asks).
WATCH = """
const seen = [];
Services.obs.addObserver({
    observe(subject) {
        const ch = subject.QueryInterface(Ci.nsIHttpChannel);
        const li = ch.loadInfo, o = p => p ? p.origin : "";
        seen.push([ch.URI.spec, li ? o(li.triggeringPrincipal) : "",
            li ? o(li.loadingPrincipal) : ""]);
    }
}, "http-on-modify-request");
window.keygateSeen = seen;
"""

# The console's errors (not warnings) that came from a page, not from the
# browser's own code: a script's exception, a CSP violation.  (In the
# parent process, where this runs, they carry no window id.)
ERRORS = """
const out = [];
for (const m of Services.console.getMessageArray()) {
    if (!(m instanceof Ci.nsIScriptError) || m.isFromChromeContext ||
        (m.flags & Ci.nsIScriptError.warningFlag) ||
        (m.flags & Ci.nsIScriptError.infoFlag))
        continue;
    out.push(m.category + ": " + m.errorMessage + " (" + m.sourceName +
        ":" + m.lineNumber + ")");
}
return out;
"""


def browser(tmp):
    binary = None
    for p in FIREFOX:
        if os.access(p, os.X_OK):
            binary = p
            break
    if binary is None:
        kg.skip("firefox is not installed (apt-get install firefox-esr)")
    return marionette.Firefox(binary, tmp)


def test_console_in_firefox():
    d, origin = bt.start()
    ff = browser(kg.tempdir())
    try:
        ff.chrome(WATCH)
        bt.run(d, bt.Page(ff, marionette.By,
                          marionette.StaleElementReferenceException), origin)
        check_logs(ff, origin)
    finally:
        ff.quit()


def check_logs(ff, origin):
    """No error from the page; no request of its outside origin."""
    kg.eq(ff.chrome(ERRORS), [], "errors in the browser's console")
    seen = ff.chrome("return window.keygateSeen;")
    ours = [s[0] for s in seen if origin in (s[1], s[2])]
    kg.check(len(ours) > 5, "the requests the page made: %r" % seen)
    away = sorted(set(u for u in ours if not u.startswith(origin + "/")))
    kg.eq(away, [], "requests outside the admin origin")


TESTS = [test_console_in_firefox]


if __name__ == "__main__":
    kg.run(TESTS)
