"""
What "make install" makes, checked the way an operator would meet it.

In "make check" (the default) every test works on a fresh
"make install DESTDIR=TMP" of this build.  With KEYGATE_INSTALLED=1 (the
installcheck-local target, run by "make distcheck") the same checks run on
the tree "make install" put in the configured prefix, and the sample
configuration is checked with the installed keygated exactly as installed.

Checked: the programs, manual pages and documents; the directories the
compiled-in defaults need (state_dir, the log directory, the pidfile's
directory); the sample keygate.conf (substituted, valid for keygated -t,
never overwritten by a second "make install", removed by "make uninstall"
only if unchanged); the logrotate file and the systemd unit (substituted,
pointing at this build's paths and at keygated's own default pidfile, and
accepted by systemd-analyze verify when it is installed).

Paths come from the Makefile ($KEYGATE_SBINDIR and friends); make is run in
$KEYGATE_BUILDDIR.
"""

import os
import re
import stat
import subprocess

import kgtest as kg

ENV = os.environ
INSTALLED = ENV.get("KEYGATE_INSTALLED") == "1"
BUILDDIR = ENV.get("KEYGATE_BUILDDIR", "")
VERSION = ENV.get("KEYGATE_VERSION", "")
D = {k: ENV.get("KEYGATE_" + k.upper(), "") for k in (
    "prefix", "sbindir", "bindir", "sysconfdir", "localstatedir",
    "runstatedir", "docdir", "mandir", "unitdir")}
ANALYZE = ENV.get("KEYGATE_SYSTEMD_ANALYZE", "")

PLACEHOLDER = re.compile(r"@[A-Za-z_]+@")

_root = None		# DESTDIR of this file's install ("" when INSTALLED)


def make(*targets, destdir=None):
    """Run make TARGETS in the build directory; its output, or fail."""
    env = dict(ENV)
    # Not part of the parent make's job server, and not silenced by it.
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        env.pop(k, None)
    args = [ENV.get("KEYGATE_MAKE", "make"), "-C", BUILDDIR] + list(targets)
    if destdir:
        args.append("DESTDIR=" + destdir)
    r = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True,
                       env=env, timeout=300)
    kg.check(r.returncode == 0, "%s failed (%d):\n%s" %
             (" ".join(args), r.returncode, r.stdout[-3000:]))
    return r.stdout


def root():
    """The DESTDIR holding the install under test (made once)."""
    global _root
    if _root is None:
        for k in ("prefix", "sbindir", "sysconfdir", "localstatedir",
                  "runstatedir", "docdir"):
            kg.check(D[k].startswith("/"), "KEYGATE_%s %r is not an "
                     "absolute path" % (k.upper(), D[k]))
        if INSTALLED:
            _root = ""
        else:
            kg.check(os.path.isfile(os.path.join(BUILDDIR, "Makefile")),
                     "KEYGATE_BUILDDIR %r has no Makefile" % BUILDDIR)
            _root = os.path.join(kg.tempdir(), "destdir")
            make("install", destdir=_root)
    return _root


def at(*parts):
    """The path of an installed file: DESTDIR + the configured path."""
    return root() + os.path.join(*parts)


def read(path):
    with open(path) as f:
        return f.read()


def no_placeholder(path):
    text = read(path)
    m = PLACEHOLDER.search(text)
    kg.check(m is None, "%s: %s left unsubstituted" %
             (path, m.group(0) if m else ""))
    return text


def conf_path():
    return at(D["sysconfdir"], "keygate", "keygate.conf")


def unit_path():
    if not D["unitdir"]:
        raise kg.Skip("configured --without-systemdsystemunitdir")
    return at(D["unitdir"], "keygated.service")


def default_pidfile():
    return os.path.join(D["runstatedir"], "keygate", "keygated.pid")


def keygated_t(conf):
    """The installed keygated -t -c conf: (status, output)."""
    r = subprocess.run([at(D["sbindir"], "keygated"), "-t", "-c", conf],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True,
                       timeout=30)
    return r.returncode, r.stdout


def unit_settings(text):
    """[(key, value)] of a unit file, in order (comments dropped)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and line[0] not in "#;[" and "=" in line:
            k, v = line.split("=", 1)
            out.append((k, v))
    return out


# --- the tests -----------------------------------------------------------------------

def test_programs_and_docs():
    for p, what in ((at(D["sbindir"], "keygated"), "keygated"),
                    (at(D["bindir"], "keygatectl"), "keygatectl")):
        kg.check(os.access(p, os.X_OK), "%s not installed at %s" % (what, p))
    for sec, page in (("8", "keygated.8"), ("5", "keygate.conf.5"),
                      ("1", "keygatectl.1")):
        p = at(D["mandir"], "man" + sec, page)
        kg.check(os.path.isfile(p), "manual page %s not installed" % p)
    for name in ("README.md", "LICENSE", "NEWS", "openapi.json"):
        p = at(D["docdir"], name)
        kg.check(os.path.isfile(p), "%s not installed in docdir" % p)
    kg.check('"version": "%s"' % VERSION in read(at(D["docdir"],
                                                     "openapi.json")),
             "the installed openapi.json does not say version %s" % VERSION)


def test_directories():
    for parts, mode in (((D["localstatedir"], "lib", "keygate"), 0o700),
                        ((D["localstatedir"], "log", "keygate"), None),
                        ((D["runstatedir"], "keygate"), None)):
        p = at(*parts)
        kg.check(os.path.isdir(p), "directory %s was not created" % p)
        if mode is not None and not INSTALLED:
            kg.eq(stat.S_IMODE(os.stat(p).st_mode), mode, "mode of " + p)


def built_sample():
    return read(os.path.join(BUILDDIR, "contrib", "keygate.conf"))


def test_sample_config():
    conf = conf_path()
    kg.check(os.path.isfile(conf), "no sample configuration at " + conf)
    text = no_placeholder(conf + ".default")
    kg.check(text == built_sample(),
             "keygate.conf.default is not this build's contrib/keygate.conf")
    # (An operator's keygate.conf may differ, in an installcheck.)
    if not INSTALLED:
        kg.check(read(conf) == text, "keygate.conf is not the sample")
    # The defaults it documents are this build's.
    for line in ("#pidfile\t" + default_pidfile(),
                 "#state_dir\t" + os.path.join(D["localstatedir"], "lib",
                                               "keygate")):
        kg.check(line in text.splitlines(), "sample lacks %r" % line)
    if INSTALLED:
        # As installed: every default path is there (make install made it).
        rc, out = keygated_t(conf)
    else:
        # The defaults point outside DESTDIR: point them inside.
        copy = os.path.join(kg.tempdir(), "keygate.conf")
        with open(copy, "w") as f:
            f.write(text + "pidfile %s\nstate_dir %s\n" % (
                at(default_pidfile()),
                at(D["localstatedir"], "lib", "keygate")))
        rc, out = keygated_t(copy)
    kg.eq(rc, 0, "keygated -t of the sample (output %r)" % out)
    kg.check("configuration is valid" in out, "keygated -t said %r" % out)


def test_compiled_defaults_match():
    """The unit, the logrotate file and the sample name keygated's pidfile."""
    pidfile = default_pidfile()
    with open(at(D["sbindir"], "keygated"), "rb") as f:
        kg.check((pidfile + "\0").encode() in f.read(),
                 "keygated's compiled-in pidfile is not %s" % pidfile)
    lr = no_placeholder(at(D["sysconfdir"], "logrotate.d", "keygate"))
    kg.check(os.path.join(D["localstatedir"], "log", "keygate", "*.log {")
             in lr, "logrotate file does not rotate the log directory")
    kg.check(('kill -USR1 "$(cat %s)"' % pidfile) in lr,
             "logrotate file does not signal the pid in %s" % pidfile)


def test_unit():
    s = unit_settings(no_placeholder(unit_path()))
    keys = dict(s)
    conf = os.path.join(D["sysconfdir"], "keygate", "keygate.conf")
    keygated = os.path.join(D["sbindir"], "keygated")
    kg.eq(keys.get("Type"), "forking", "Type")
    kg.eq(keys.get("PIDFile"), default_pidfile(), "PIDFile")
    kg.eq(keys.get("ExecStart"), "%s -c %s" % (keygated, conf), "ExecStart")
    kg.eq(keys.get("ExecStartPre"), "%s -t -c %s" % (keygated, conf),
          "ExecStartPre")
    # Reload: check first (a failure stops the reload), then signal.
    kg.eq([v for k, v in s if k == "ExecReload"],
          ["%s -t -c %s" % (keygated, conf), "/bin/kill -HUP $MAINPID"],
          "ExecReload")
    kg.eq(keys.get("ProtectSystem"), "strict", "ProtectSystem")
    kg.eq(keys.get("SystemCallFilter"), "@system-service", "SystemCallFilter")
    kg.eq(keys.get("NoNewPrivileges"), "yes", "NoNewPrivileges")
    kg.eq(keys.get("UMask"), "0027", "UMask")
    # The pidfile's directory is writable under ProtectSystem=strict.
    if D["runstatedir"] == "/run":
        kg.eq(keys.get("RuntimeDirectory"), "keygate", "RuntimeDirectory")
    rw = [v.lstrip("-") for k, v in s if k == "ReadWritePaths"]
    for p in (os.path.join(D["runstatedir"], "keygate"),
              os.path.join(D["localstatedir"], "lib", "keygate"),
              os.path.join(D["localstatedir"], "log", "keygate")):
        kg.check(p in rw, "%s is not in ReadWritePaths (%r)" % (p, rw))


def test_unit_verify():
    """systemd-analyze verify accepts the unit without a single warning."""
    if not ANALYZE or not os.access(ANALYZE, os.X_OK):
        raise kg.Skip("systemd-analyze not found by configure: the unit "
                      "was not verified")
    text = read(unit_path())
    if not INSTALLED:
        # systemd-analyze checks that the commands exist: the DESTDIR ones.
        text = text.replace(D["sbindir"] + "/", at(D["sbindir"]) + "/")
    d = kg.tempdir()
    path = os.path.join(d, "keygated.service")
    with open(path, "w") as f:
        f.write(text)
    # --man=no: Documentation= needs man(1), which CI may not have; the
    # pages themselves are checked by test_programs_and_docs.
    r = subprocess.run([ANALYZE, "verify", "--man=no", path],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True,
                       timeout=60)
    kg.eq(r.returncode, 0, "systemd-analyze verify status (%r)" % r.stdout)
    kg.eq(r.stdout.strip(), "", "systemd-analyze verify output")


def exec_lines(cmds, mainpid):
    """
    Run a unit's commands as systemd does: in order, $MAINPID replaced,
    stopping at the first failure.  The index of the failed one (None if
    all succeeded) and its output.
    """
    for i, cmd in enumerate(cmds):
        argv = [str(mainpid) if a == "$MAINPID" else a for a in cmd.split()]
        r = subprocess.run(argv, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=30)
        if r.returncode != 0:
            return i, r.stdout
    return None, ""


def test_unit_reload():
    """The unit's ExecReload= fails on a broken file, and reloads a good one."""
    if INSTALLED:
        raise kg.Skip("runs the build's keygated in make check")
    unit = os.path.join(BUILDDIR, "contrib", "keygated.service")
    conf = os.path.join(D["sysconfdir"], "keygate", "keygate.conf")
    keygated = os.path.join(D["sbindir"], "keygated")
    d = kg.start(kg.config("route * ^/ auth=anonymous"))
    cmds = [v.replace(keygated, kg.binary()).replace(conf, d.conf_path)
            for k, v in unit_settings(read(unit)) if k == "ExecReload"]
    good = read(d.conf_path)
    with open(d.conf_path, "a") as f:
        f.write("no_such_directive 1\n")
    failed, out = exec_lines(cmds, d.master_pid)
    kg.eq(failed, 0, "the command that failed the reload of a broken file")
    kg.check("no_such_directive" in out, "the failed reload said %r" % out)
    with open(d.conf_path, "w") as f:
        f.write(good)
    failed, out = exec_lines(cmds, d.master_pid)
    kg.eq(failed, None, "a failed command in the reload of a good file "
          "(%r)" % out)
    d.wait_log(r"configuration reloaded", timeout=10)
    kg.check("reload failed" not in d.errlog_text(),
             "the master was signalled with the broken file")
    kg.eq(kg.get(d.port, "/x").status, 200, "a request after the reload")


def test_reinstall_keeps_edited_config():
    """A second make install keeps the operator's files in sysconfdir."""
    conf = conf_path()
    lr = at(D["sysconfdir"], "logrotate.d", "keygate")
    orig_conf, orig_lr = read(conf), read(lr)
    try:
        with open(conf, "a") as f:
            f.write("# edited by test_install\n")
        with open(lr, "a") as f:
            f.write("# edited by test_install\n")
        edited_conf, edited_lr = read(conf), read(lr)
        os.remove(conf + ".default")
        out = make("install", destdir=root() or None)
        kg.check(read(conf) == edited_conf,
                 "a second make install overwrote the edited keygate.conf")
        kg.check(read(lr) == edited_lr,
                 "a second make install overwrote the edited logrotate file")
        kg.check(read(conf + ".default") == built_sample(),
                 "a second make install did not put keygate.conf.default")
        kg.check("keeping %s" % os.path.join(D["sysconfdir"], "keygate",
                                             "keygate.conf") in out,
                 "make install did not say it kept keygate.conf:\n" + out)
        if INSTALLED:
            rc, o = keygated_t(conf)
            kg.eq(rc, 0, "keygated -t of the edited sample (%r)" % o)
    finally:
        with open(conf, "w") as f:
            f.write(orig_conf)
        if not os.path.exists(conf + ".default"):
            with open(conf + ".default", "w") as f:
                f.write(built_sample())
        with open(lr, "w") as f:
            f.write(orig_lr)


def test_uninstall_keeps_edited_config():
    """make uninstall leaves only the files the operator changed."""
    if INSTALLED:
        raise kg.Skip("make distcheck runs uninstall on the installed tree")
    conf = conf_path()
    with open(conf, "a") as f:
        f.write("# edited by test_install\n")
    make("uninstall", destdir=root())
    left = []
    for dirpath, _, files in os.walk(root()):
        left += [os.path.join(dirpath, n)[len(root()):] for n in files]
    kg.eq(left, [os.path.join(D["sysconfdir"], "keygate", "keygate.conf")],
          "files left by make uninstall")
    # The state, log and pidfile directories stay (they hold data).
    kg.check(os.path.isdir(at(D["localstatedir"], "lib", "keygate")),
             "make uninstall removed state_dir")


def test_pidfile_dir_created():
    """keygated makes its pidfile's directory (a tmpfs /run loses it)."""
    if INSTALLED:
        raise kg.Skip("runs the build's keygated in make check")
    t = kg.config("route * ^/ auth=anonymous").replace(
        "pidfile {dir}/keygated.pid", "pidfile {dir}/run/keygated.pid")
    for foreground in (True, False):
        d = kg.Daemon(t, foreground=foreground)
        d.pidfile = os.path.join(d.dir, "run", "keygated.pid")
        kg.use(d)
        d.start()
        kg.eq(stat.S_IMODE(os.stat(os.path.dirname(d.pidfile)).st_mode) &
              0o755, 0o755, "mode of the pidfile's directory")
        kg.eq(d.read_pidfile(), d.master_pid, "pid in the pidfile")
        kg.eq(kg.get(d.port, "/x").status, 200, "a request")
        d.kill()


kg.run([test_pidfile_dir_created, test_programs_and_docs, test_directories, test_sample_config,
        test_compiled_defaults_match, test_unit, test_unit_verify, test_unit_reload,
        test_reinstall_keeps_edited_config,
        test_uninstall_keeps_edited_config])
