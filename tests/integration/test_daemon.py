"""
keygated as a Unix daemon: the command line (-t, -v), daemonizing and the
pidfile, the worker processes (count, user, respawn after a crash, crash
loop back-off) and the signals (SIGTERM/SIGINT graceful, SIGQUIT fast,
SIGUSR1 log reopen).
"""

import fcntl
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import time

import kgtest as kg

ECHO = "route * ^/echo(/|$) auth=anonymous"


# --- the command line --------------------------------------------------------------

def good_conf_text(dir):
    return kg.fill(kg.config(ECHO), dir, [kg.free_port()])


def test_check_good_config():
    dir = kg.tempdir()
    path = kg.write_file(dir, "good.conf", good_conf_text(dir))
    p = kg.keygated("-t", "-c", path)
    kg.eq(p.returncode, 0, "exit status of -t on a good file (stderr %r)" %
          p.stderr)
    kg.check("configuration is valid" in p.stdout,
             "-t output %r lacks 'configuration is valid'" % p.stdout)
    kg.check(not os.path.exists(os.path.join(dir, "keygated.pid")),
             "-t created the pidfile")


# (name, bad line appended to a good file, expected message after FILE:LINE: )
BAD = [
    ("unknown_directive", "foo bar", r'unknown directive "foo"'),
    ("bad_regex", "route GET ^/(unclosed auth=anonymous", r"bad regex"),
    ("unknown_upstream", "route GET ^/x auth=anonymous upstream=x",
     r'unknown upstream "x"'),
    ("duplicate_upstream", "upstream echo echo", r'duplicate upstream'),
    ("bad_duration", "header_timeout soon", r"header_timeout"),
    ("bad_listen", "listen 127.0.0.1:notaport", r"listen"),
    ("unknown_auth", "route GET ^/y auth=magic", r"magic"),
    ("bad_size", "max_body_size lots", r"max_body_size"),
]


def make_bad_config_test(name, line, message):
    def t():
        dir = kg.tempdir()
        text = good_conf_text(dir) + "# a comment\n\n" + line + "\n"
        lineno = text.count("\n")
        path = kg.write_file(dir, name + ".conf", text)
        p = kg.keygated("-t", "-c", path)
        kg.eq(p.returncode, 1, "exit status of -t (stdout %r, stderr %r)" %
              (p.stdout, p.stderr))
        want = "keygated: %s:%d: " % (path, lineno)
        kg.check(p.stderr.startswith(want),
                 "stderr %r does not start with %r" % (p.stderr, want))
        kg.check(re.search(message, p.stderr),
                 "stderr %r does not say /%s/" % (p.stderr, message))
        kg.check("configuration is valid" not in p.stdout,
                 "a bad file reported valid")
    t.__name__ = "test_check_bad_" + name
    return t


def test_check_missing_file():
    dir = kg.tempdir()
    path = os.path.join(dir, "missing.conf")
    p = kg.keygated("-t", "-c", path)
    kg.eq(p.returncode, 1, "exit status of -t on a missing file")
    kg.check(path in p.stderr, "stderr %r does not name %s" % (p.stderr,
                                                               path))


def test_version():
    p = kg.keygated("-v")
    kg.eq(p.returncode, 0, "exit status of -v")
    kg.check(re.match(r"^keygated \d+\.\d+(\.\d+)?\S*\n?$", p.stdout),
             "-v printed %r" % p.stdout)


def test_check_finds_startup_failures():
    """-t fails on what start-up would fail on, naming each problem:
    log, pidfile and state_dir locations that cannot be created.  A
    missing pidfile directory is not one: start-up creates it with its
    parents, like state_dir (review of issue 10: -t refused it)."""
    dir = kg.tempdir()
    text = good_conf_text(dir)
    for name in ("error_log", "access_log"):
        text = re.sub(r"^%s %s/" % (name, re.escape(dir)),
                      "%s %s/no-%s/" % (name, dir, name), text, flags=re.M)
    kg.write_file(dir, "afile", "")
    text = text.replace("pidfile %s/" % dir, "pidfile %s/afile/" % dir)
    text = text.replace("state_dir %s/state" % dir,
                        "state_dir %s/afile/state" % dir)
    path = kg.write_file(dir, "paths.conf", text)
    p = kg.keygated("-t", "-c", path)
    kg.eq(p.returncode, 1, "exit status of -t (stdout %r, stderr %r)" %
          (p.stdout, p.stderr))
    kg.check("configuration is valid" not in p.stdout, "reported valid")
    for name in ("error_log", "access_log"):
        kg.check(re.search(r"%s %s/no-%s/\S+: directory %s/no-%s: No such "
                           r"file" % (name, re.escape(dir), name,
                                      re.escape(dir), name), p.stderr),
                 "-t does not name the missing %s directory: %r" %
                 (name, p.stderr))
    kg.check("pidfile %s/afile/keygated.pid: Not a directory" % dir in
             p.stderr, "-t does not name the bad pidfile directory: %r" %
             p.stderr)
    kg.check("state_dir %s/afile/state" % dir in p.stderr,
             "-t does not name the bad state_dir: %r" % p.stderr)
    # The same file starts once the log directories exist; a missing
    # state_dir and pidfile directory (and missing parents of them) are
    # created at start-up, and -t says so.
    for name in ("error_log", "access_log"):
        os.mkdir(os.path.join(dir, "no-" + name))
    pidfile = os.path.join(dir, "run", "keygate", "keygated.pid")
    path = kg.write_file(dir, "paths.conf", text.replace(
        "%s/afile/state" % dir, "%s/new/state" % dir).replace(
        "pidfile %s/afile/keygated.pid" % dir, "pidfile " + pidfile))
    p = kg.keygated("-t", "-c", path)
    kg.eq(p.returncode, 0, "exit status of -t once fixed (stderr %r)" %
          p.stderr)
    kg.check("configuration is valid" in p.stdout, "stdout %r" % p.stdout)
    kg.check(not os.path.exists(os.path.join(dir, "run")), "-t created the "
             "pidfile directory")
    try:
        p = kg.keygated("-c", path)
        kg.eq(p.returncode, 0, "exit status of the start (stderr %r)" %
              p.stderr)
        kg.check(os.path.exists(pidfile), "no pidfile %s" % pidfile)
    finally:
        kg.kill_dir_processes(dir)


def need_nobody():
    """Skip unless running as root with a user nobody; its passwd entry."""
    if os.geteuid() != 0:
        kg.skip("not running as root")
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        kg.skip("no user nobody")


def test_check_worker_user_paths():
    """-t checks that the worker user can reach the log directories (the
    start would fail when the workers open them)."""
    need_nobody()
    dir = kg.tempdir()
    os.chmod(dir, 0o755)
    os.mkdir(os.path.join(dir, "private"), 0o700)
    text = kg.fill(kg.config(ECHO, user="nobody"), dir, [kg.free_port()])
    path = kg.write_file(dir, "user.conf", text.replace(
        "access_log %s/access.log" % dir,
        "access_log %s/private/access.log" % dir))
    p = kg.keygated("-t", "-c", path)
    kg.eq(p.returncode, 1, "exit status of -t (stderr %r)" % p.stderr)
    kg.check(re.search(r"access_log %s/private/access.log: workers \(user "
                       r"nobody\) cannot reach directory %s/private" %
                       (re.escape(dir), re.escape(dir)), p.stderr),
             "-t does not say why: %r" % p.stderr)
    os.chmod(os.path.join(dir, "private"), 0o711)
    p = kg.keygated("-t", "-c", path)
    kg.eq(p.returncode, 0, "exit status of -t once reachable (stderr %r)" %
          p.stderr)


def test_check_warns_without_routes():
    dir = kg.tempdir()
    path = kg.write_file(dir, "noroute.conf",
                         kg.fill(kg.config(), dir, [kg.free_port()]))
    p = kg.keygated("-t", "-c", path)
    kg.eq(p.returncode, 0, "exit status of -t (stderr %r)" % p.stderr)
    kg.check("warning: no route is configured" in p.stderr,
             "no warning about the missing routes: %r" % p.stderr)
    p = kg.keygated("-t", "-c", kg.write_file(dir, "route.conf",
                                             good_conf_text(dir)))
    kg.check("no route" not in p.stderr, "warned with a route: %r" %
             p.stderr)


def test_help_and_long_options():
    for args in (["-h"], ["--help"]):
        p = kg.keygated(*args)
        kg.eq(p.returncode, 0, "exit status of %s" % args[0])
        kg.check(p.stdout.startswith("usage: keygated"),
                 "%s printed %r on stdout" % (args[0], p.stdout))
        kg.check("--version" in p.stdout, "long options not in the usage")
        kg.eq(p.stderr, "", "stderr of %s" % args[0])
    p = kg.keygated("--version")
    kg.eq(p.returncode, 0, "exit status of --version")
    kg.eq(p.stdout, kg.keygated("-v").stdout, "--version output")
    dir = kg.tempdir()
    path = kg.write_file(dir, "good.conf", good_conf_text(dir))
    p = kg.keygated("--test", "--config", path)
    kg.eq(p.returncode, 0, "exit status of --test --config (stderr %r)" %
          p.stderr)
    kg.check("configuration is valid" in p.stdout, "stdout %r" % p.stdout)
    p = kg.keygated("--bogus")
    kg.eq(p.returncode, 2, "exit status of an unknown option")
    kg.check("usage: keygated" in p.stderr and p.stdout == "",
             "usage of a bad option not on stderr: %r %r" % (p.stdout,
                                                             p.stderr))


def test_process_titles():
    """ps shows "keygated: master process ..." and "keygated: worker
    process", and workers are named keygated-worker (top, pidof)."""
    d = kg.start(kg.config(ECHO, workers=2), foreground=False)
    workers = d.wait_workers(2)
    argv = [a for a in kg.proc_cmdline(d.master_pid) if a]
    kg.eq(len(argv), 1, "strings in the master's cmdline %r" % argv)
    kg.check(argv[0].startswith("keygated: master process ") and
             argv[0].endswith(" -c " + d.conf_path),
             "master's title %r" % argv[0])
    with open("/proc/%d/comm" % d.master_pid) as f:
        kg.eq(f.read().strip(), "keygated", "master's comm")
    for w in workers:
        argv = [a for a in kg.proc_cmdline(w) if a]
        kg.eq(argv, ["keygated: worker process -c " + d.conf_path],
              "worker %d's title" % w)
        with open("/proc/%d/comm" % w) as f:
            kg.eq(f.read().strip(), "keygated-worker", "worker's comm")
    # The environment moved, not lost: the daemon still works.
    kg.check_echo(kg.get(d.port, "/echo/t"), "GET", "/echo/t")


def test_bad_config_refuses_to_start():
    dir = kg.tempdir()
    text = good_conf_text(dir) + "workers many\n"
    path = kg.write_file(dir, "bad.conf", text)
    p = kg.keygated("-c", path)
    kg.eq(p.returncode, 1, "exit status when starting on a bad file")
    kg.check(p.stderr.startswith("keygated: %s:%d: " % (path,
                                                         text.count("\n"))),
             "stderr %r lacks FILE:LINE" % p.stderr)
    kg.check(not os.path.exists(os.path.join(dir, "keygated.pid")),
             "pidfile left behind")


def test_port_in_use_refuses_to_start():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        dir = kg.tempdir()
        path = kg.write_file(dir, "k.conf",
                             kg.fill(kg.config(ECHO), dir, [port]))
        pidfile = os.path.join(dir, "keygated.pid")
        # In the foreground and daemonizing: no pidfile is left behind
        # (issue 10, item 20: an empty one was).
        for args in (("-f",), ()):
            p = kg.keygated(*(args + ("-c", path)))
            kg.eq(p.returncode, 1, "exit status when the port is taken")
            kg.check("Address already in use" in p.stderr and
                     "listen" in p.stderr, "stderr %r" % p.stderr)
            kg.check(not os.path.exists(pidfile), "pidfile left behind by "
                     "a start that failed (%s)" % (args or "daemonizing"))
        # A pidfile that was there (stale: nobody holds its lock) goes too,
        # as its lock was ours.
        with open(pidfile, "w") as f:
            f.write("999999\n")
        p = kg.keygated("-f", "-c", path)
        kg.eq(p.returncode, 1, "exit status when the port is taken")
        kg.check(not os.path.exists(pidfile), "stale pidfile left behind")
    finally:
        s.close()


def test_state_dir_parents_created():
    """
    A state_dir whose parents are missing is created with them, like
    mkdir -p (issue 10, item 21): parents 0755, state_dir 0700.
    """
    dir = kg.tempdir()
    sd = os.path.join(dir, "var", "lib", "keygate")
    text = kg.config(ECHO).replace("state_dir {dir}/state", "state_dir " + sd)
    d = kg.start(text)
    kg.check_echo(kg.get(d.port, "/echo/p"), "GET", "/echo/p")
    kg.check(os.path.isdir(sd), "state_dir %s was not created" % sd)
    kg.eq(os.stat(sd).st_mode & 0o777, 0o700, "mode of state_dir")
    for p in (os.path.join(dir, "var"), os.path.join(dir, "var", "lib")):
        kg.eq(os.stat(p).st_mode & 0o777, 0o755 & ~current_umask(),
              "mode of %s" % p)
    kg.eq(d.stop(), 0, "exit status of a graceful stop")


def current_umask():
    m = os.umask(0)
    os.umask(m)
    return m


def start_as_nobody_fails(dir, why):
    """Start keygated -f with user nobody in dir; it must exit 1."""
    path = kg.write_file(dir, "k.conf",
                         kg.fill(kg.config(ECHO, user="nobody"), dir,
                                 [kg.free_port()]))
    try:
        p = kg.keygated("-f", "-c", path)
    finally:
        kg.kill_dir_processes(dir)
    kg.eq(p.returncode, 1, "exit status with " + why)
    return p


def test_state_dir_symlink_refused():
    """
    As root with user nobody: a symbolic link that the worker user left in
    state_dir (keys.journal -> a file of root's) stops the start with a
    clear error, and root's file keeps its owner and its bytes (issue 10,
    item 4: it became nobody's and empty).
    """
    need_nobody()
    dir = kg.tempdir()
    sd = os.path.join(dir, "state")
    os.mkdir(sd, 0o700)
    victim = os.path.join(dir, "root-file")
    with open(victim, "w") as f:
        f.write("root's precious file\n")
    os.chmod(victim, 0o600)
    before = os.stat(victim)
    os.symlink(victim, os.path.join(sd, "keys.journal"))
    p = start_as_nobody_fails(dir, "a symlinked keys.journal")
    kg.check("keys.journal: a symbolic link (refused" in p.stderr,
             "stderr %r does not say why" % p.stderr[-500:])
    after = os.stat(victim)
    kg.eq((after.st_uid, after.st_gid, after.st_size),
          (before.st_uid, before.st_gid, before.st_size),
          "owner and size of root's file")
    with open(victim) as f:
        kg.eq(f.read(), "root's precious file\n", "root's file")


def test_log_symlink_refused():
    """
    As root with user nobody: access_log naming a symbolic link (which a
    worker user able to write the log directory could plant) to a file of
    root's stops the start; the file is not given to nobody (issue 10,
    item 4: the master opened it following the link and chowned it).
    """
    need_nobody()
    dir = kg.tempdir()
    victim = os.path.join(dir, "root-file")
    with open(victim, "w") as f:
        f.write("root's\n")
    os.chmod(victim, 0o600)
    os.symlink(victim, os.path.join(dir, "access.log"))
    p = start_as_nobody_fails(dir, "a symlinked access_log")
    kg.check("access.log: a symbolic link (refused)" in p.stderr,
             "stderr %r does not say why" % p.stderr[-500:])
    st = os.stat(victim)
    kg.eq((st.st_uid, st.st_size), (0, 7), "owner and size of root's file")


# --- daemonizing and the pidfile ---------------------------------------------------

def test_daemonize_pidfile_single_instance():
    d = kg.start(kg.config(ECHO, workers=2), foreground=False)
    kg.eq(d.start_rc, 0, "exit status of keygated (daemonizing)")
    pid = d.read_pidfile()
    kg.check(pid is not None and kg.proc_alive(pid),
             "pidfile %s does not hold a live pid" % d.pidfile)
    kg.check(any(d.conf_path in a for a in kg.proc_cmdline(pid)),
             "pid %d in the pidfile is not our keygated" % pid)
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    kg.eq(int(fields[3]), pid, "session id of the master (setsid)")
    kg.check(int(fields[1]) != os.getpid(), "master is still our child")
    workers = d.wait_workers(2)
    kg.check(pid not in workers, "the master serves as a worker")
    kg.check_echo(kg.get(d.port, "/echo/d"), "GET", "/echo/d")
    # The pidfile is locked.
    with open(d.pidfile) as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = False
        except BlockingIOError:
            locked = True
    kg.check(locked, "the pidfile is not locked")
    # A second instance with the same pidfile refuses to start.
    port2 = kg.free_port()
    conf2 = kg.write_file(d.dir, "second.conf",
                          kg.fill(d.template, d.dir, [port2]))
    for args in (("-c", conf2), ("-f", "-c", conf2)):
        p = kg.keygated(*args)
        kg.eq(p.returncode, 1, "exit status of a second instance %s" %
              " ".join(args))
        kg.check("another keygated is running (pid %d)" % pid in p.stderr,
                 "second instance said %r" % p.stderr)
    kg.eq(d.read_pidfile(), pid, "pidfile after the second instance")
    kg.eq(d.worker_pids(), workers, "workers after the second instance")
    # SIGTERM: everything stops and the pidfile goes away.
    d.signal(signal.SIGTERM)
    d.wait_exit(10)
    kg.wait_for(lambda: not d.our_pids(), 5, "all processes to exit")
    kg.check(not os.path.exists(d.pidfile), "pidfile left after SIGTERM")


def test_workers_count():
    d = kg.start(kg.config(ECHO, workers=3))
    w = d.wait_workers(3)
    time.sleep(0.3)
    kg.eq(d.worker_pids(), w, "workers after 0.3 s")
    for i in range(6):
        kg.check_echo(kg.get(d.port, "/echo/%d" % i), "GET", "/echo/%d" % i)


def test_user_nobody_privilege_drop():
    pw = need_nobody()
    d = kg.start(kg.config(ECHO, workers=2, user="nobody"))
    workers = d.wait_workers(2)
    kg.check_echo(kg.get(d.port, "/echo/nobody"), "GET", "/echo/nobody")
    for w in workers:
        # A worker changes user first thing after fork(): allow it a moment.
        try:
            kg.wait_for(lambda: kg.proc_uids(w) == [pw.pw_uid] * 4, 3,
                        "worker %d to run as nobody" % w)
        except AssertionError:
            kg.eq(kg.proc_uids(w), [pw.pw_uid] * 4, "uids of worker %d" % w)
        with open("/proc/%d/status" % w) as f:
            status = f.read()
        gid = re.search(r"^Gid:\s+(.*)$", status, re.M).group(1).split()
        kg.eq([int(g) for g in gid], [pw.pw_gid] * 4, "gids of worker %d" % w)
        groups = re.search(r"^Groups:\s*(.*)$", status, re.M).group(1).split()
        kg.check(all(int(g) == pw.pw_gid for g in groups),
                 "supplementary groups of worker %d: %s" % (w, groups))
    kg.eq(kg.proc_uids(d.master_pid), [0, 0, 0, 0], "uids of the master")
    kg.check(d.access_by_id(kg.get(d.port, "/echo/n2").header(
        "x-request-id")), "no access log line from a nobody worker")


def signals_pending(pid):
    """The signals pending for pid (thread and process-wide), as a set."""
    mask = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("SigPnd:", "ShdPnd:")):
                mask |= int(line.split()[1], 16)
    return set(n + 1 for n in range(64) if mask & (1 << n))


def set_subreaper(on):
    """prctl(PR_SET_CHILD_SUBREAPER): orphans of our descendants become ours."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1 if on else 0, 0, 0, 0) != 0:
        kg.skip("prctl(PR_SET_CHILD_SUBREAPER) failed")


def test_workers_as_nobody_get_parent_death_signal():
    """kill -9 of the master: the kernel sends its workers SIGTERM
    (PR_SET_PDEATHSIG) even though they changed user after fork().  The
    workers are stopped while the master dies, so the signal can be seen
    pending instead of guessing from how fast they exit (their once-a-second
    getppid() check would stop them too)."""
    need_nobody()
    d = kg.Daemon(kg.config(ECHO, workers=2, user="nobody"))
    kg.use(d)
    d.allow_worker_deaths = True

    def launch():
        # Its own process group in our session, and we are the subreaper:
        # the group stays non-orphaned when the master dies, so the kernel
        # does not SIGCONT the stopped workers.
        out = open(d.stderr_path, "ab")
        kw = {"process_group": 0} if sys.version_info >= (3, 11) else \
            {"preexec_fn": os.setpgrp}
        d.proc = subprocess.Popen([kg.binary(), "-f", "-c", d.conf_path],
                                  stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=out, cwd=d.dir, **kw)
        d.master_pid = d.proc.pid
        out.close()
    d._launch = launch
    set_subreaper(True)
    workers = []
    try:
        d.start()
        workers = d.wait_workers(2)
        for w in workers:
            kg.wait_for(lambda: kg.proc_uids(w) != [0, 0, 0, 0], 3,
                        "worker %d to drop root" % w)
            os.kill(w, signal.SIGSTOP)
        for w in workers:
            kg.wait_for(lambda: (kg.proc_stat(w) or "?")[0] == "T", 5,
                        "worker %d to stop" % w)
        os.kill(d.master_pid, signal.SIGKILL)
        d.proc.wait(5)
        for w in workers:
            kg.eq(kg.proc_stat(w)[1], os.getpid(), "parent of orphaned "
                  "worker %d" % w)
            kg.check(signal.SIGTERM in signals_pending(w),
                     "worker %d has no SIGTERM pending after its master died "
                     "(pending: %s)" % (w, sorted(signals_pending(w))))
        t0 = time.monotonic()
        for w in workers:
            os.kill(w, signal.SIGCONT)
        for w in workers:
            deadline = time.monotonic() + 10
            while os.waitpid(w, os.WNOHANG) == (0, 0):
                kg.check(time.monotonic() < deadline,
                         "orphaned worker %d still running" % w)
                time.sleep(0.01)
        kg.check(time.monotonic() - t0 < 10, "workers took too long")
    finally:
        for w in workers:
            try:
                os.kill(w, signal.SIGKILL)
            except OSError:
                pass
            try:
                os.waitpid(w, 0)
            except OSError:
                pass
        set_subreaper(False)


def test_start_fails_when_workers_cannot_start():
    """Workers that die before serving make the start fail, and the
    daemonizing parent says why (here: as nobody they cannot reach an
    access log in a root-only directory)."""
    if os.geteuid() != 0:
        kg.skip("not running as root")
    d = kg.tempdir()
    os.chmod(d, 0o755)
    os.mkdir(os.path.join(d, "private"), 0o700)
    conf = os.path.join(d, "keygate.conf")
    text = kg.fill(kg.config(ECHO, workers=2, user="nobody"), d,
                   [kg.free_port()]).replace(
        "access_log %s/access.log" % d, "access_log %s/private/access.log" % d)
    with open(conf, "w") as f:
        f.write(text)
    r = kg.keygated("-c", conf, timeout=20)
    kg.eq(r.returncode, 1, "exit status of a start whose workers fail")
    kg.check("failed to start: a new worker exited before it was ready"
             in r.stderr, "reason on stderr: %r" % r.stderr)
    kg.check(not os.path.exists(os.path.join(d, "keygated.pid")),
             "pidfile left behind")
    # The parent hears the reason just before the master exits.
    kg.wait_for(lambda: kg.pids_of_dir(d) == [], 5,
                "keygated processes to exit after the failed start")
    # An access log directory that does not exist fails before forking.
    with open(conf, "w") as f:
        f.write(text.replace("%s/private/access.log" % d,
                             "%s/missing/access.log" % d))
    r = kg.keygated("-f", "-c", conf, timeout=20)
    kg.eq(r.returncode, 1, "exit status with a missing log directory")
    kg.check("cannot create %s/missing/access.log" % d in r.stderr,
             "reason on stderr: %r" % r.stderr)


# --- workers dying -----------------------------------------------------------------

def test_killed_worker_respawned():
    d = kg.start(kg.config(ECHO, workers=2))
    d.allow_worker_deaths = True
    before = d.wait_workers(2)
    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    d.wait_log(r"worker %d killed by signal 9" % victim)
    after = d.wait_workers(2, exclude=[victim])
    kg.check(before[1] in after, "the other worker was replaced too")
    for i in range(20):
        kg.check_echo(kg.get(d.port, "/echo/r%d" % i), "GET", "/echo/r%d" % i,
                      what="request %d after the respawn" % i)


def new_worker(d, seen, timeout=5.0):
    """Wait for a worker pid not in seen; (pid, time it was seen)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in d.worker_pids():
            if p not in seen:
                return p, time.monotonic()
        time.sleep(0.005)
    raise AssertionError("no new worker within %.1f s (workers %s)" %
                         (timeout, d.worker_pids()))


def test_crash_loop_backoff():
    d = kg.start(kg.config(ECHO, workers=1))
    d.allow_worker_deaths = True
    tick = os.sysconf("SC_CLK_TCK")
    cpu0 = kg.proc_stat(d.master_pid)[2]
    seen, kills, appeared = set(), [], []
    kills_wanted = 5
    for i in range(kills_wanted):
        pid, t = new_worker(d, seen)
        appeared.append(t)
        seen.add(pid)
        os.kill(pid, signal.SIGKILL)
        kills.append(time.monotonic())
    d.wait_log(r"(?s)(next start in \d+ ms.*){%d}" % kills_wanted,
               what="%d back-off log lines" % kills_wanted)
    delays = [int(x) for x in re.findall(r"next start in (\d+) ms",
                                         d.errlog_text())]
    kg.eq(delays[:kills_wanted], [100 * 2 ** i for i in range(kills_wanted)],
          "logged back-off delays")
    # The replacements really waited that long.
    pid, t = new_worker(d, seen)
    appeared.append(t)
    for i in range(kills_wanted):
        gap = appeared[i + 1] - kills[i]
        kg.check(gap >= 0.9 * delays[i] / 1000.0,
                 "worker %d restarted %.3f s after the kill, back-off said "
                 "%d ms" % (i + 2, gap, delays[i]))
    cpu = (kg.proc_stat(d.master_pid)[2] - cpu0) / float(tick)
    kg.check(cpu < 0.5, "master used %.2f s of CPU during the crash loop" %
             cpu)
    # The last one is left alone and serves.
    d.wait_ready()
    kg.check_echo(kg.get(d.port, "/echo/after"), "GET", "/echo/after")


# --- signals -------------------------------------------------------------------------

def start_slow_request(d):
    """A POST whose body is half sent: a request in flight."""
    c = kg.Conn(d.port)
    c.send(b"POST /echo/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
           b"\r\n01234")
    time.sleep(0.2)		# let the worker read the headers
    return c


def graceful_stop(sig, wait):
    d = kg.start(kg.config(ECHO, workers=2, shutdown_timeout="10s"))
    c = start_slow_request(d)
    try:
        d.signal(sig)
        time.sleep(wait)
        kg.check(d.master_alive(), "master exited with a request in flight")
        c.send(b"56789")
        r = c.read_response()
        kg.check_echo(r, "POST", "/echo/slow", None, 10,
                      "the in-flight request")
        kg.check(r.closes(), "the in-flight answer lacks Connection: close")
        c.wait_closed(3.0)
    finally:
        c.close()
    rc = d.wait_exit(5)
    kg.eq(rc, 0, "exit status after a graceful stop")
    kg.check(not os.path.exists(d.pidfile), "pidfile left behind")
    kg.wait_for(lambda: not d.our_pids(), 5, "workers to exit")


def test_sigterm_finishes_inflight_request():
    graceful_stop(signal.SIGTERM, 1.0)


def test_sigint_graceful_stop():
    graceful_stop(signal.SIGINT, 0.5)


def test_sigterm_while_workers_start():
    """
    A stop that reaches workers still starting is a clean stop: no worker
    is "killed by signal 15" (their SIGTERM is blocked until handled).
    """
    for attempt in range(5):
        d = kg.start(kg.config(ECHO, workers=4))
        d.signal(signal.SIGTERM)
        kg.eq(d.wait_exit(10), 0, "exit status after an early SIGTERM")
        text = d.errlog_text()
        kg.check("killed by signal" not in text,
                 "a worker was killed by the stop (attempt %d):\n%s" %
                 (attempt + 1, text[-1500:]))


def test_sigquit_fast_stop():
    d = kg.start(kg.config(ECHO, workers=2, shutdown_timeout="10s"))
    c = start_slow_request(d)
    try:
        t0 = time.monotonic()
        d.signal(signal.SIGQUIT)
        rc = d.wait_exit(5)
        took = time.monotonic() - t0
        kg.eq(rc, 0, "exit status after SIGQUIT")
        kg.check(took < 3, "fast stop took %.1f s" % took)
        try:
            c.read_response()
            answered = True
        except (kg.NoResponse, kg.ProtocolError, OSError):
            answered = False
        kg.check(not answered, "the in-flight request was answered")
    finally:
        c.close()
    kg.check(not os.path.exists(d.pidfile), "pidfile left behind")
    kg.wait_for(lambda: not d.our_pids(), 5, "workers to exit")


def test_sigusr1_reopens_access_log():
    d = kg.start(kg.config(ECHO, workers=2))
    old = []
    for i in range(4):
        r = kg.get(d.port, "/echo/before", headers={"X-Request-Id":
                                                    "before-%d" % i})
        old.append(r.header("x-request-id"))
        d.access_by_id(old[-1])
    rotated = d.access_path + ".1"
    os.rename(d.access_path, rotated)
    d.signal(signal.SIGUSR1)
    d.wait_log(r"reopen", what="the master to log the reopen")

    def in_new_file():
        r = kg.get(d.port, "/echo/after")
        rid = r.header("x-request-id")
        return any(e["request_id"] == rid for e in d.access_lines())
    kg.wait_for(in_new_file, 5, "requests to reach a new %s" %
                d.access_path, interval=0.05)
    after = []
    for i in range(10):
        r = kg.get(d.port, "/echo/after", headers={"X-Request-Id":
                                                   "after-%d" % i})
        after.append(r.header("x-request-id"))
    time.sleep(0.1)
    new_ids = set(e["request_id"] for e in d.access_lines())
    old_ids = set(e["request_id"] for e in d.access_lines(rotated))
    kg.check(set(after) <= new_ids, "requests after the reopen missing from "
             "the new file: %s" % sorted(set(after) - new_ids))
    kg.check(not set(after) & old_ids, "requests after the reopen went to "
             "the renamed file: %s" % sorted(set(after) & old_ids))
    kg.check(set(old) <= old_ids and not set(old) & new_ids,
             "requests before the rename are not (only) in the old file")


def test_sigusr1_error_log_symlink_refused():
    """
    SIGUSR1 after the error log was moved away and a symbolic link to a
    file of root's put in its place (by anyone who can write the log
    directory, the worker user for one): the master, root, does not follow
    it.  The file keeps its bytes, the daemon keeps serving, and says why
    in the file it had open (review of issue 10: log_reopen() followed the
    link and the master appended its log lines to root's file).
    """
    d = kg.start(kg.config(ECHO, workers=2), foreground=False)
    victim = os.path.join(d.dir, "root-file")
    with open(victim, "w") as f:
        f.write("root's\n")
    os.chmod(victim, 0o600)
    rotated = d.errlog_path + ".1"
    os.rename(d.errlog_path, rotated)
    os.symlink(victim, d.errlog_path)

    def text(path):
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    d.signal(signal.SIGUSR1)
    kg.wait_for(lambda: "log files reopened" in text(rotated) + text(victim),
                5, "the master to log the reopen")
    kg.check_echo(kg.get(d.port, "/echo/after"), "GET", "/echo/after",
                  what="after the refused reopen")
    kg.eq(text(victim), "root's\n", "root's file after SIGUSR1")
    kg.check(re.search(r"master: cannot open error log %s: a symbolic link "
                       r"\(refused\); still logging to the file opened "
                       r"before" % re.escape(d.errlog_path), text(rotated)),
             "no warning in %s: %r" % (rotated, text(rotated)[-600:]))
    kg.check(os.path.islink(d.errlog_path), "the link was replaced")
    d.stop()
    kg.eq(text(victim), "root's\n", "root's file after the stop")
    kg.check("graceful stop" in text(rotated), "the stop was not logged in "
             "the file opened before")


def test_sigusr1_access_log_symlink_refused():
    """
    The same for the access log, which the workers reopen: without "user"
    they run as root, and a link put where the log was must not make them
    append request lines to root's file (they opened it following links).
    """
    d = kg.start(kg.config(ECHO, workers=1), foreground=False)
    kg.check_echo(kg.get(d.port, "/echo/before"), "GET", "/echo/before",
                  what="before")
    log = os.path.join(d.dir, "access.log")
    victim = os.path.join(d.dir, "root-file")
    with open(victim, "w") as f:
        f.write("root's\n")
    os.chmod(victim, 0o600)
    os.rename(log, log + ".1")
    os.symlink(victim, log)
    d.signal(signal.SIGUSR1)
    kg.wait_for(lambda: "log files reopened" in d.errlog_text(), 5,
                "the master to log the reopen")
    time.sleep(0.3)		# the workers reopen after the master
    for i in range(5):
        kg.check_echo(kg.get(d.port, "/echo/after%d" % i), "GET",
                      "/echo/after%d" % i, what="after the reopen")
    with open(victim) as f:
        kg.eq(f.read(), "root's\n", "root's file after SIGUSR1")
    d.stop()


TESTS = [
    test_check_good_config,
] + [make_bad_config_test(*b) for b in BAD] + [
    test_check_missing_file,
    test_version,
    test_check_finds_startup_failures,
    test_check_worker_user_paths,
    test_check_warns_without_routes,
    test_help_and_long_options,
    test_process_titles,
    test_bad_config_refuses_to_start,
    test_port_in_use_refuses_to_start,
    test_state_dir_parents_created,
    test_state_dir_symlink_refused,
    test_log_symlink_refused,
    test_daemonize_pidfile_single_instance,
    test_workers_count,
    test_user_nobody_privilege_drop,
    test_workers_as_nobody_get_parent_death_signal,
    test_start_fails_when_workers_cannot_start,
    test_killed_worker_respawned,
    test_crash_loop_backoff,
    test_sigterm_finishes_inflight_request,
    test_sigterm_while_workers_start,
    test_sigint_graceful_stop,
    test_sigquit_fast_stop,
    test_sigusr1_reopens_access_log,
    test_sigusr1_error_log_symlink_refused,
    test_sigusr1_access_log_symlink_refused,
]

if __name__ == "__main__":
    kg.run(TESTS)
