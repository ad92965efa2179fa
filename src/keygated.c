/*
 * keygated: the API gateway daemon.  Parses the command line, loads and
 * checks the configuration, takes the pidfile lock, binds the listeners,
 * daemonizes and hands over to the master (master.c).
 *
 * Everything that can fail because of the operator's input happens before
 * daemonizing, so that the error reaches the terminal that started us; the
 * parent only exits once the master says its workers are running.
 */

#include <sys/types.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "master.h"
#include "shm.h"
#include "util.h"

#ifndef KEYGATE_SYSCONFDIR
#define KEYGATE_SYSCONFDIR "/etc"
#endif
#define KEYGATE_DEFAULT_CONFIG	KEYGATE_SYSCONFDIR "/keygate/keygate.conf"

/* The usage message: on stdout with status 0 for -h, else on stderr. */
static void
usage(int help)
{
	fprintf(help ? stdout : stderr,
	    "usage: keygated [-fhtv] [-c file]\n"
	    "  -c, --config file  configuration file (default %s)\n"
	    "  -f, --foreground   stay in the foreground, log to stderr\n"
	    "  -h, --help         print this help and exit\n"
	    "  -t, --test         check the configuration and exit\n"
	    "  -v, --version      print the version and exit\n",
	    KEYGATE_DEFAULT_CONFIG);
	exit(help ? 0 : 2);
}

/* The command line as one string, for the master's process title. */
static char *
cmdline(int argc, char *argv[])
{
	size_t	 len = 1, n, off = 0;
	char	*s;
	int	 i;

	for (i = 0; i < argc; i++)
		len += strlen(argv[i]) + 1;
	if ((s = malloc(len)) == NULL)
		return (NULL);
	for (i = 0; i < argc; i++) {
		if (i > 0)
			s[off++] = ' ';
		n = strlen(argv[i]);
		memcpy(s + off, argv[i], n);
		off += n;
	}
	s[off] = '\0';
	return (s);
}

/*
 * Create the missing parents of the absolute path, like mkdir -p: mode
 * 0755 (less the umask), owned by whoever runs us (root).  Used for
 * state_dir and for the pidfile, whose default directory,
 * $(runstatedir)/keygate, is on a tmpfs that a reboot empties.
 */
static int
mkdir_parents(const char *path, const char *what, char *err, size_t errlen)
{
	char	*p, *slash;

	if ((p = strdup(path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return (-1);
	}
	for (slash = strchr(p + 1, '/'); slash != NULL;
	    slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (slash[1] != '\0' && mkdir(p, 0755) == -1 &&
		    errno != EEXIST) {
			snprintf(err, errlen, "cannot create %s (a parent of "
			    "%s): %s", p, what, strerror(errno));
			free(p);
			return (-1);
		}
		*slash = '/';
	}
	free(p);
	return (0);
}

/*
 * Open and lock the pidfile; a second instance finds it locked and says
 * which pid holds it.  The lock lives as long as the open file description,
 * which the daemonized master inherits.
 */
static int
pidfile_lock(const char *path, char *err, size_t errlen)
{
	char	 buf[32];
	ssize_t	 n;
	int	 fd;

	if (mkdir_parents(path, "the pidfile", err, errlen) == -1)
		return (-1);
	if ((fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
	    0644)) == -1) {
		snprintf(err, errlen, "cannot open pidfile %s: %s", path,
		    strerror(errno));
		return (-1);
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return (fd);
	if (errno == EWOULDBLOCK) {
		n = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		snprintf(err, errlen, "another keygated is running (pid %s): "
		    "%s is locked", buf[0] != '\0' ? buf : "unknown", path);
	} else
		snprintf(err, errlen, "cannot lock pidfile %s: %s", path,
		    strerror(errno));
	close(fd);
	return (-1);
}

/*
 * A start that failed after pidfile_lock(): remove the pidfile, which we
 * hold locked (so no other keygated uses it), if the path still names the
 * file we locked, then drop the lock.
 */
static void
pidfile_abort(int fd, const char *path)
{
	struct stat	 a, b;

	if (fd == -1)
		return;
	if (fstat(fd, &a) == 0 && lstat(path, &b) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		(void)unlink(path);
	close(fd);
}

/* Write our pid into the locked pidfile. */
static void
pidfile_write(int fd)
{
	char	 buf[32];
	int	 n;

	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) == -1 || pwrite(fd, buf, (size_t)n, 0) != n)
		log_warn("cannot write pidfile");
}

/*
 * Create state_dir (mode 0700, owned by the worker user) and its missing
 * parents.  The directory is then opened without following a symbolic
 * link and given to the user through that descriptor: state_dir must be
 * a real directory (journal.c opens it the same way).
 */
static int
state_dir_prepare(const struct config *conf, char *err, size_t errlen)
{
	struct stat	 st;
	int		 fd;

	if (mkdir_parents(conf->c_state_dir, "state_dir", err, errlen) == -1)
		return (-1);
	if (mkdir(conf->c_state_dir, 0700) == -1 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create state_dir %s: %s",
		    conf->c_state_dir, strerror(errno));
		return (-1);
	}
	if ((fd = open(conf->c_state_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "cannot open state_dir %s: %s",
		    conf->c_state_dir, errno == ELOOP || errno == ENOTDIR ?
		    "not a directory or a symbolic link (name the real "
		    "directory)" : strerror(errno));
		return (-1);
	}
	if (conf->c_user != NULL && geteuid() == 0 && fstat(fd, &st) == 0 &&
	    (st.st_uid != conf->c_uid || st.st_gid != conf->c_gid) &&
	    fchown(fd, conf->c_uid, conf->c_gid) == -1) {
		snprintf(err, errlen, "cannot chown state_dir %s: %s",
		    conf->c_state_dir, strerror(errno));
		close(fd);
		return (-1);
	}
	close(fd);
	return (0);
}

/*
 * Detach from the terminal.  The parent waits on a pipe until the master
 * has started its workers (one byte) or died (EOF), and exits accordingly.
 */
static int
daemonize(void)
{
	int	 p[2], fd;
	char	 why[512];
	ssize_t	 n;
	pid_t	 pid;

	if (pipe(p) == -1 || (pid = fork()) == -1)
		fatal("daemonize");
	if (pid > 0) {
		close(p[1]);
		n = read(p[0], why, sizeof(why) - 1);
		if (n == 1 && why[0] == '1')
			_exit(0);
		why[n > 0 ? n : 0] = '\0';
		fprintf(stderr, "keygated: failed to start%s%s (error log: %s)\n",
		    n > 0 ? ": " : "", why, log_dest());
		_exit(1);
	}
	close(p[0]);
	if (setsid() == -1)
		fatal("setsid");
	if (chdir("/") == -1)
		fatal("chdir");
	if ((fd = open("/dev/null", O_RDWR)) != -1) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	return (p[1]);
}

int
main(int argc, char *argv[])
{
	struct master_opts	 opts;
	struct config		*conf;
	struct shm_header	*shm;
	static struct master_listeners lsn;	/* 4 KiB: not on the stack */
	static const struct option longopts[] = {
		{ "config",	required_argument,	NULL,	'c' },
		{ "foreground",	no_argument,		NULL,	'f' },
		{ "help",	no_argument,		NULL,	'h' },
		{ "test",	no_argument,		NULL,	't' },
		{ "version",	no_argument,		NULL,	'v' },
		{ NULL,		0,			NULL,	0 }
	};
	const char		*path = KEYGATE_DEFAULT_CONFIG;
	char			*abspath, *pidfile, *startdir, *title;
	char			 err[CONFIG_ERRLEN];
	int			 ch, foreground = 0, test = 0;

	/* Before anything reads argv[]: titles are written over it. */
	util_proctitle_init(argc, argv);
	util_clock_init();
	while ((ch = getopt_long(argc, argv, "c:fhtv", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'f':
			foreground = 1;
			break;
		case 'h':
			usage(1);
			break;
		case 't':
			test = 1;
			break;
		case 'v':
			printf("keygated %s\n", PACKAGE_VERSION);
			return (0);
		default:
			usage(0);
		}
	}
	if (optind != argc)
		usage(0);

	if ((conf = config_load(path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "keygated: %s\n", err);
		return (1);
	}
	if (test) {
		/* Like nginx -t: the listeners are not bound (it may run). */
		if (master_check(conf) > 0) {
			fprintf(stderr, "keygated: %s: configuration test "
			    "failed\n", path);
			config_free(conf);
			return (1);
		}
		printf("keygated: %s: configuration is valid\n", path);
		config_free(conf);
		return (0);
	}
	if (config_nlisten(conf) > MASTER_MAX_LISTEN) {
		fprintf(stderr, "keygated: too many listen directives\n");
		return (1);
	}
	if (log_init(foreground ? LOG_TO_STDERR : conf->c_error_log,
	    conf->c_log_level, "keygated", err, sizeof(err)) == -1 ||
	    state_dir_prepare(conf, err, sizeof(err)) == -1 ||
	    (opts.mo_pidfd = pidfile_lock(conf->c_pidfile, err,
	    sizeof(err))) == -1) {
		fprintf(stderr, "keygated: %s\n", err);
		return (1);
	}
	/* From here on, a failed start removes the pidfile it created. */
	if (master_listen(conf, &lsn, err, sizeof(err)) == -1)
		goto fail;
	if ((shm = shm_create(conf->c_max_keys, config_max_active(conf))) ==
	    NULL) {
		snprintf(err, sizeof(err), "cannot map the shared memory "
		    "segment for max_keys %u, max_active_keys %u: %s",
		    conf->c_max_keys, config_max_active(conf), strerror(errno));
		goto fail;
	}
	if (master_keys_load(conf, shm, err, sizeof(err)) == -1 ||
	    master_prepare_logs(conf, err, sizeof(err)) == -1)
		goto fail;
	if (conf->c_user == NULL && geteuid() == 0)
		log_warnx("no \"user\" is configured: workers run as root");
	if (util_clock_skew() != 0)
		log_warnx("test: clocks moved by %lld ms "
		    "(KEYGATE_TEST_CLOCK_SKEW_MS)", (long long)util_clock_skew());
	master_nofile(conf);

	/* Reloads read the file again after chdir("/"). */
	if ((opts.mo_path = abspath = util_abspath(path)) == NULL ||
	    (pidfile = strdup(conf->c_pidfile)) == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	opts.mo_foreground = foreground;
	if ((opts.mo_startdir = startdir = getcwd(NULL, 0)) == NULL) {
		snprintf(err, sizeof(err), "getcwd: %s", strerror(errno));
		goto fail;
	}
	opts.mo_readyfd = foreground ? -1 : daemonize();
	pidfile_write(opts.mo_pidfd);
	opts.mo_why[0] = '\0';
	/* Only options were accepted: getopt_long() did not reorder argv[]. */
	title = cmdline(argc, argv);
	util_proctitle("master process %s", title != NULL ? title : path);
	ch = master_run(&opts, conf, &lsn, shm);
	unlink(pidfile);
	close(opts.mo_pidfd);
	/* A failed first start: the parent in daemonize() says why, and exits. */
	if (opts.mo_readyfd != -1) {
		(void)write(opts.mo_readyfd, opts.mo_why, strlen(opts.mo_why));
		close(opts.mo_readyfd);
	}
	free(pidfile);
	free(abspath);
	free(startdir);
	free(title);
	return (ch);
fail:
	fprintf(stderr, "keygated: %s\n", err);
	pidfile_abort(opts.mo_pidfd, conf->c_pidfile);
	return (1);
}
