"""
contrib/quickstart.sh's package step ("sh contrib/quickstart.sh deps
demo|test", the first thing demo and test do), run against stand-ins for
apt-get, dpkg-query, id and sudo placed first on PATH, so that nothing is
installed and no system file is touched (QUICKSTART_POLICY_RC_D points the
policy-rc.d it writes into a temporary directory).

Checked: apt-get waits for the dpkg lock; demo asks only for what the demo
needs; test adds the test tools and nginx-light unless another nginx
package is installed; nothing is installed when everything is; the
policy-rc.d it made is gone after a success, a failure, SIGINT and SIGTERM,
and one that was there before is left alone.
"""

import os
import signal
import subprocess

import kgtest as kg

SCRIPT = os.path.join(kg.SRCDIR, "contrib", "quickstart.sh")

DEMO_ONLY = {"build-essential", "autoconf", "automake", "pkg-config",
             "libevent-dev", "libpcre2-dev", "libjansson-dev", "libssl-dev",
             "libcurl4-openssl-dev", "libyaml-dev", "libhiredis-dev", "curl",
             "python3-jwt", "python3-cryptography"}
TEST_ADDS = {"libcmocka-dev", "python3", "clang", "libclang-rt-dev",
             "systemd", "procps", "openssl", "prometheus", "redis-server",
             "chromium", "chromium-driver", "python3-selenium",
             "firefox-esr"}
LOCK = "-o DPkg::Lock::Timeout=600"

STUBS = {
    # Root, so that the script writes policy-rc.d (at our path).
    "id": '[ "$1" = -u ] && { echo 0; exit 0; }\nexec /usr/bin/id "$@"\n',
    "sudo": 'echo "sudo $*" >> "$STUB_LOG"\nexit 1\n',
    # Installed: the packages named in $STUB_INSTALLED.
    "dpkg-query": 'for p; do :; done\n'
                  'case " $STUB_INSTALLED " in *" $p "*)\n'
                  '  printf "install ok installed"; exit 0;; esac\n'
                  'exit 1\n',
    # Logs its arguments, and during install whether policy-rc.d refuses
    # to start services; then does what $STUB_APT says.
    "apt-get": 'echo "apt-get $*" >> "$STUB_LOG"\n'
               'case " $* " in *" install "*)\n'
               '  if grep -q "exit 101" "$QUICKSTART_POLICY_RC_D" 2>/dev/null &&\n'
               '      [ -x "$QUICKSTART_POLICY_RC_D" ]; then\n'
               '    echo "policy-rc.d: 101" >> "$STUB_LOG"; fi\n'
               '  case "$STUB_APT" in\n'
               '  fail) exit 100;;\n'
               '  hang) : > "$STUB_LOG.hang"; exec sleep 30;;\n'
               '  esac;;\n'
               'esac\n'
               'exit 0\n',
}


class Run:
    """One run of the script with the stand-ins."""

    def __init__(self, step, installed=(), apt="ok", policy=None):
        self.dir = kg.tempdir()
        bindir = os.path.join(self.dir, "bin")
        os.mkdir(bindir)
        for name, body in STUBS.items():
            p = os.path.join(bindir, name)
            with open(p, "w") as f:
                f.write("#!/bin/sh\n" + body)
            os.chmod(p, 0o755)
        self.log = os.path.join(self.dir, "log")
        self.policy = os.path.join(self.dir, "policy-rc.d")
        if policy is not None:
            with open(self.policy, "w") as f:
                f.write(policy)
        self.env = dict(os.environ, PATH=bindir + ":" + os.environ["PATH"],
                        STUB_LOG=self.log, STUB_APT=apt,
                        STUB_INSTALLED=" ".join(installed),
                        QUICKSTART_POLICY_RC_D=self.policy)
        self.proc = subprocess.Popen(
            ["sh", SCRIPT, "deps", step], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=self.env, start_new_session=True, universal_newlines=True)

    def wait(self):
        try:
            self.out, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise
        return self.proc.returncode

    def lines(self):
        try:
            with open(self.log) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def installs(self):
        """The package set of the apt-get install call (one expected)."""
        calls = [l for l in self.lines() if " install " in l]
        kg.eq(len(calls), 1, "apt-get install calls (%r)" % self.lines())
        words = calls[0].split()
        return set(words[words.index("-qq") + 1:])


def test_demo_installs_only_what_the_demo_needs():
    r = Run("demo")
    kg.eq(r.wait(), 0, "status (%r)" % getattr(r, "out", ""))
    kg.eq(r.installs(), DEMO_ONLY, "packages for demo")
    lines = r.lines()
    kg.check(lines[0].startswith("apt-get " + LOCK + " update"),
             "apt-get update does not wait for the lock: %r" % lines[0])
    kg.check(("apt-get %s install" % LOCK) in lines[1],
             "apt-get install does not wait for the lock: %r" % lines[1])
    kg.check("policy-rc.d: 101" in lines,
             "no policy-rc.d refusing service starts during install")
    kg.check(not os.path.exists(r.policy), "policy-rc.d left behind")


def test_test_adds_tools_and_nginx_light():
    r = Run("test")
    kg.eq(r.wait(), 0, "status (%r)" % getattr(r, "out", ""))
    kg.eq(r.installs(), DEMO_ONLY | TEST_ADDS | {"nginx-light"},
          "packages for test")
    kg.check(not os.path.exists(r.policy), "policy-rc.d left behind")


def test_other_nginx_accepted():
    for pkg in ("nginx", "nginx-full", "nginx-extras", "nginx-core"):
        r = Run("test", installed=[pkg])
        kg.eq(r.wait(), 0, "status with %s" % pkg)
        kg.eq(r.installs(), DEMO_ONLY | TEST_ADDS,
              "packages for test with %s installed" % pkg)


def test_nothing_missing_nothing_run():
    r = Run("test", installed=sorted(DEMO_ONLY | TEST_ADDS | {"nginx"}))
    kg.eq(r.wait(), 0, "status")
    kg.eq(r.lines(), [], "apt-get calls when everything is installed")


def test_policy_removed_when_apt_fails():
    r = Run("demo", apt="fail")
    kg.check(r.wait() != 0, "a failed apt-get install did not fail the step")
    kg.check("policy-rc.d: 101" in r.lines(), "no policy-rc.d during install")
    kg.check(not os.path.exists(r.policy),
             "policy-rc.d left behind after a failed install")


def test_policy_removed_on_signals():
    for sig in (signal.SIGINT, signal.SIGTERM):
        r = Run("test", apt="hang")
        kg.wait_for(lambda: os.path.exists(r.log + ".hang"), 30,
                    "apt-get install to start")
        kg.check(os.path.exists(r.policy), "no policy-rc.d during install")
        # As a ^C at the terminal: the whole process group.
        os.killpg(r.proc.pid, sig)
        kg.check(r.wait() != 0, "the step survived signal %d" % sig)
        kg.check(not os.path.exists(r.policy),
                 "policy-rc.d left behind after signal %d" % sig)


def test_existing_policy_kept():
    mine = "#!/bin/sh\n# the administrator's own\nexit 101\n"
    r = Run("demo", policy=mine)
    kg.eq(r.wait(), 0, "status")
    with open(r.policy) as f:
        kg.eq(f.read(), mine, "the administrator's policy-rc.d")


kg.run([test_demo_installs_only_what_the_demo_needs,
        test_test_adds_tools_and_nginx_light, test_other_nginx_accepted,
        test_nothing_missing_nothing_run, test_policy_removed_when_apt_fails,
        test_policy_removed_on_signals, test_existing_policy_kept])
