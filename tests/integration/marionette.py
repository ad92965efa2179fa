"""
Firefox driven through Marionette, its own remote protocol, for the web
console's test in Firefox.  Debian 12 packages Firefox (firefox-esr) but
not geckodriver, the program that turns Selenium's WebDriver HTTP calls
into Marionette's; this is the part of it the test needs: the same W3C
WebDriver commands, sent straight to the browser.

The protocol: a TCP connection to the port Firefox writes into the
profile's MarionetteActivePort (marionette.port 0: a free one); each
message is "LENGTH:JSON"; a command is [0, id, name, params], its answer
[1, id, error, result].  The first message is the server's hello.

Firefox runs headless in a profile of its own under the test's temporary
directory, with its background traffic (updates, telemetry, remote
settings, safe browsing) turned off.  The class offers what
browsertest.py uses of Selenium's WebDriver and WebElement, under the same
names, plus chrome(): a script run in the browser's own (privileged)
context, which reads the console and watches the network.
"""

import json
import os
import signal
import socket
import subprocess
import time

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"

# Prefs in the spirit of geckodriver's and mozprofile's: nothing leaves
# the machine on the browser's own account, no first-run pages.
PREFS = {
    "marionette.port": 0,
    "app.update.disabledForTesting": True,
    "app.normandy.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.newtabpage.enabled": False,
    "browser.aboutwelcome.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "browser.search.update": False,
    "browser.region.network.url": "",
    "browser.topsites.contile.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "toolkit.telemetry.server": "",
    "dom.push.connection.enabled": False,
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "services.settings.server": "data:,#remote-settings-dummy/v1",
    "messaging-system.rsexperimentloader.enabled": False,
    "remote.prefs.recommended": True,
}


class WebDriverError(Exception):
    """An error answer: .error is its W3C name ("no such element")."""

    def __init__(self, error, message):
        Exception.__init__(self, "%s: %s" % (error, message))
        self.error = error


class StaleElementReferenceException(WebDriverError):
    pass


class By:
    CSS_SELECTOR = "css selector"


class Element:
    def __init__(self, ff, eid):
        self.ff = ff
        self.id = eid

    def _do(self, command, **params):
        params["id"] = self.id
        return self.ff.command(command, params)

    def find_elements(self, using, value):
        return self.ff.find_elements(using, value, self.id)

    def find_element(self, using, value):
        found = self.find_elements(using, value)
        if not found:
            raise WebDriverError("no such element", value)
        return found[0]

    def is_displayed(self):
        return self._do("WebDriver:IsElementDisplayed")["value"]

    def is_enabled(self):
        return self._do("WebDriver:IsElementEnabled")["value"]

    def click(self):
        self._do("WebDriver:ElementClick")

    def clear(self):
        self._do("WebDriver:ElementClear")

    def send_keys(self, text):
        self._do("WebDriver:ElementSendKeys", text=text)

    @property
    def text(self):
        return self._do("WebDriver:GetElementText")["value"]

    def get_attribute(self, name):
        """The property if there is one (a field's value), as Selenium."""
        v = self._do("WebDriver:GetElementProperty", name=name)["value"]
        if v is None:
            v = self._do("WebDriver:GetElementAttribute", name=name)["value"]
        return v


class Firefox:
    """A headless Firefox of its own, in profile directory tmp/firefox."""

    def __init__(self, binary, tmp, timeout=60.0):
        self.prof = os.path.join(tmp, "firefox")
        os.mkdir(self.prof)
        with open(os.path.join(self.prof, "user.js"), "w") as f:
            for k, v in sorted(PREFS.items()):
                f.write("user_pref(%s, %s);\n" % (json.dumps(k),
                                                  json.dumps(v)))
        self.logpath = os.path.join(tmp, "firefox.log")
        env = dict(os.environ, HOME=tmp, MOZ_HEADLESS="1",
                   MOZ_CRASHREPORTER_DISABLE="1")
        with open(self.logpath, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, "-headless", "-marionette",
                 "-remote-allow-system-access", "-no-remote",
                 "-profile", self.prof],
                stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.sock = None
        self.buf = b""
        self.n = 0
        try:
            self._connect(timeout)
            self.command("WebDriver:NewSession", {"capabilities": {
                "alwaysMatch": {"acceptInsecureCerts": False}}})
            self.command("WebDriver:SetWindowRect", {"width": 1280,
                                                     "height": 900})
        except BaseException:
            self.quit()
            raise

    def _connect(self, timeout):
        deadline = time.monotonic() + timeout
        portfile = os.path.join(self.prof, "MarionetteActivePort")
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("firefox exited (%d) before Marionette "
                                   "listened; see %s" %
                                   (self.proc.returncode, self.logpath))
            try:
                with open(portfile) as f:
                    port = int(f.read().strip())
                self.sock = socket.create_connection(("127.0.0.1", port),
                                                     timeout)
                break
            except (OSError, ValueError):
                if time.monotonic() >= deadline:
                    raise RuntimeError("Marionette did not listen within "
                                       "%.0f s; see %s" %
                                       (timeout, self.logpath))
                time.sleep(0.1)
        hello = self._recv()
        if hello.get("marionetteProtocol") != 3:
            raise RuntimeError("unexpected Marionette hello %r" % hello)

    def _recv(self):
        while b":" not in self.buf:
            self._more()
        n, _, rest = self.buf.partition(b":")
        n = int(n)
        self.buf = rest
        while len(self.buf) < n:
            self._more()
        msg, self.buf = self.buf[:n], self.buf[n:]
        return json.loads(msg)

    def _more(self):
        b = self.sock.recv(65536)
        if not b:
            raise RuntimeError("Marionette closed the connection")
        self.buf += b

    def command(self, name, params=None):
        self.n += 1
        msg = json.dumps([0, self.n, name, params or {}]).encode()
        self.sock.sendall(b"%d:%s" % (len(msg), msg))
        while True:
            r = self._recv()
            if r[0] == 1 and r[1] == self.n:
                break
        if r[2] is not None:
            cls = StaleElementReferenceException if r[2]["error"] == \
                "stale element reference" else WebDriverError
            raise cls(r[2]["error"], r[2].get("message", ""))
        return r[3]

    # --- what Selenium's WebDriver offers, as far as the test uses it ----

    def get(self, url):
        self.command("WebDriver:Navigate", {"url": url})

    @property
    def current_url(self):
        return self.command("WebDriver:GetCurrentURL")["value"]

    @property
    def page_source(self):
        return self.command("WebDriver:GetPageSource")["value"]

    def execute_script(self, script, *args):
        return self.command("WebDriver:ExecuteScript",
                            {"script": script, "args": list(args)})["value"]

    def get_cookies(self):
        return self.command("WebDriver:GetCookies")

    def find_elements(self, using, value, within=None):
        params = {"using": using, "value": value}
        if within is not None:
            params["element"] = within
        return [Element(self, e[ELEMENT]) for e in
                self.command("WebDriver:FindElements", params)]

    def chrome(self, script, *args):
        """Run script in the browser's privileged context."""
        self.command("Marionette:SetContext", {"value": "chrome"})
        try:
            return self.execute_script(script, *args)
        finally:
            self.command("Marionette:SetContext", {"value": "content"})

    def quit(self):
        """Ask Firefox to quit; kill it if it will not."""
        if self.sock is not None:
            try:
                self.command("Marionette:Quit")
            except (OSError, RuntimeError, WebDriverError):
                pass
            self.sock.close()
            self.sock = None
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()
