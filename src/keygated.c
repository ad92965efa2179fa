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

static void
usage(void)
{
	fprintf(stderr, "usage: keygated [-ftv] [-c file]\n"
	    "  -c file  configuration file (default %s)\n"
	    "  -f       stay in the foreground, log to stderr\n"
	    "  -t       check the configuration and exit\n"
	    "  -v       print the version and exit\n", KEYGATE_DEFAULT_CONFIG);
	exit(2);
}

/*
 * Create the pidfile's directory (mode 0755) if it is missing: the default
 * one, $(runstatedir)/keygate, is on a tmpfs that a reboot empties.  Only
 * the last component is made; path is absolute (config.c makes it so).
 */
static int
pidfile_dir_prepare(const char *path, char *err, size_t errlen)
{
	char	*dir, *slash;
	int	 rc = 0;

	if ((dir = strdup(path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return (-1);
	}
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0755) == -1 && errno != EEXIST) {
			snprintf(err, errlen, "cannot create the pidfile's "
			    "directory %s: %s", dir, strerror(errno));
			rc = -1;
		}
	}
	free(dir);
	return (rc);
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

	if (pidfile_dir_prepare(path, err, errlen) == -1)
		return (-1);
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) == -1) {
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

/* Create state_dir (mode 0700, owned by the worker user) if it is missing. */
static int
state_dir_prepare(const struct config *conf, char *err, size_t errlen)
{
	if (mkdir(conf->c_state_dir, 0700) == -1 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create state_dir %s: %s",
		    conf->c_state_dir, strerror(errno));
		return (-1);
	}
	if (conf->c_user != NULL && geteuid() == 0 && chown(conf->c_state_dir,
	    conf->c_uid, conf->c_gid) == -1) {
		snprintf(err, errlen, "cannot chown state_dir %s: %s",
		    conf->c_state_dir, strerror(errno));
		return (-1);
	}
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
	const char		*path = KEYGATE_DEFAULT_CONFIG;
	char			*abspath, *pidfile, *startdir;
	char			 err[CONFIG_ERRLEN];
	int			 ch, foreground = 0, test = 0, lfds[MASTER_MAX_LISTEN];
	size_t			 i;

	while ((ch = getopt(argc, argv, "c:ftv")) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'f':
			foreground = 1;
			break;
		case 't':
			test = 1;
			break;
		case 'v':
			printf("keygated %s\n", PACKAGE_VERSION);
			return (0);
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	if ((conf = config_load(path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "keygated: %s\n", err);
		return (1);
	}
	if (test) {
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
	for (i = 0; i < config_nlisten(conf); i++) {
		if ((lfds[i] = master_bind(config_listen(conf, i), err,
		    sizeof(err))) == -1) {
			fprintf(stderr, "keygated: %s\n", err);
			return (1);
		}
	}
	if ((shm = shm_create(conf->c_max_keys)) == NULL) {
		fprintf(stderr, "keygated: cannot map the shared memory segment "
		    "for max_keys %u: %s\n", conf->c_max_keys, strerror(errno));
		return (1);
	}
	if (master_keys_load(conf, shm, err, sizeof(err)) == -1) {
		fprintf(stderr, "keygated: %s\n", err);
		return (1);
	}
	if (master_prepare_logs(conf, err, sizeof(err)) == -1) {
		fprintf(stderr, "keygated: %s\n", err);
		return (1);
	}
	if (conf->c_user == NULL && geteuid() == 0)
		log_warnx("no \"user\" is configured: workers run as root");

	/* Reloads read the file again after chdir("/"). */
	if ((opts.mo_path = abspath = util_abspath(path)) == NULL ||
	    (pidfile = strdup(conf->c_pidfile)) == NULL) {
		fprintf(stderr, "keygated: out of memory\n");
		return (1);
	}
	opts.mo_foreground = foreground;
	if ((opts.mo_startdir = startdir = getcwd(NULL, 0)) == NULL) {
		fprintf(stderr, "keygated: getcwd: %s\n", strerror(errno));
		return (1);
	}
	opts.mo_readyfd = foreground ? -1 : daemonize();
	pidfile_write(opts.mo_pidfd);
	opts.mo_why[0] = '\0';
	ch = master_run(&opts, conf, lfds, config_nlisten(conf), shm);
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
	return (ch);
}
