/*
 * smsubmit.c: the parent process, "[priv]".
 *
 * It parses the configuration, binds the listening sockets, prepares the
 * queue directory, forks the listener, auth and queue processes, reads
 * the certificate and key and hands their contents to the listener, and
 * then only watches: signals, and its children.  If any child exits, the
 * others are stopped and the parent exits too.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>

#include <errno.h>
#include <event.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "file.h"
#include "log.h"
#include "smsubmit.h"

#define SHUTDOWN_GRACE	30	/* seconds before children are killed */
#define KEYPAIR_MAX	(IPC_MAX_PAYLOAD - 16)	/* each of cert and key */

enum { P_LISTENER, P_AUTH, P_QUEUE, P_COUNT };

static struct {
	struct smsubmit_conf	*conf;
	struct event_base	*base;
	pid_t			 pid[P_COUNT];
	struct ipc		*ipc[P_COUNT];
	int			 stopping;
	int			 status;
	struct event		*killer;
} env;

static const char *pname[P_COUNT] = { "listener", "auth", "queue" };

static __attribute__((noreturn)) void
usage(void)
{
	fprintf(stderr, "usage: smsubmit [-dnqQv] [-D macro=value] "
	    "[-f file]\n");
	exit(1);
}

void
proc_setup(const char *title, const char *user, const char *root)
{
	struct passwd	*pw;

	setproctitle("[%s]", title);
	log_procname(title);
	/* the parent says when to stop; a dead peer shows as EPIPE */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	if (geteuid() != 0) {
		if (root != NULL && chdir(root) == -1)
			fatal("chdir %s", root);
		return;
	}
	if ((pw = getpwnam(user)) == NULL)
		fatalx("unknown user %s", user);
	if (root != NULL && (chroot(root) == -1 || chdir("/") == -1))
		fatal("chroot %s", root);
	if (setgroups(1, &pw->pw_gid) == -1 ||
	    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) == -1 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == -1)
		fatal("cannot drop privileges to %s", user);
}

/* The listener's chroot: the user's home, which must be root's alone. */
static const char *
empty_dir(const char *user)
{
	static char	 dir[PATH_MAX];
	struct passwd	*pw;
	struct stat	 st;

	if ((pw = getpwnam(user)) == NULL)
		fatalx("unknown user %s", user);
	if (strlcpy(dir, pw->pw_dir, sizeof(dir)) >= sizeof(dir))
		fatalx("home of %s too long", user);
	if (stat(dir, &st) == -1)
		fatal("chroot directory %s of user %s", dir, user);
	if (!S_ISDIR(st.st_mode) || st.st_uid != 0 ||
	    (st.st_mode & (S_IWGRP | S_IWOTH)))
		fatalx("chroot directory %s must be a directory owned by "
		    "root and not writable by others", dir);
	return dir;
}

static void
queue_dirs(struct smsubmit_conf *conf)
{
	static const char *sub[] = { "", "/tmp", "/queue", "/corrupt" };
	struct passwd	*pw = NULL;
	char		 path[PATH_MAX];
	size_t		 i;

	if (geteuid() == 0 && (pw = getpwnam(conf->queue_user)) == NULL)
		fatalx("unknown user %s", conf->queue_user);
	for (i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
		if ((size_t)snprintf(path, sizeof(path), "%s%s",
		    conf->queue_dir, sub[i]) >= sizeof(path))
			fatalx("queue path too long");
		if (mkdir(path, 0700) == -1 && errno != EEXIST)
			fatal("mkdir %s", path);
		if (pw != NULL && chown(path, pw->pw_uid, pw->pw_gid) == -1)
			fatal("chown %s", path);
	}
}

static void
bind_listeners(struct smsubmit_conf *conf)
{
	struct listen_conf	*lc;
	int			 on = 1;

	TAILQ_FOREACH(lc, &conf->listeners, entry) {
		lc->fd = socket(lc->ss.ss_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (lc->fd == -1)
			fatal("socket for %s", lc->name);
		if (setsockopt(lc->fd, SOL_SOCKET, SO_REUSEADDR, &on,
		    sizeof(on)) == -1)
			fatal("SO_REUSEADDR");
		if (lc->ss.ss_family == AF_INET6 && setsockopt(lc->fd,
		    IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) == -1)
			fatal("IPV6_V6ONLY");
		if (bind(lc->fd, (struct sockaddr *)&lc->ss, lc->sslen) == -1)
			fatal("bind %s", lc->name);
		if (listen(lc->fd, 128) == -1)
			fatal("listen %s", lc->name);
	}
}

/* Read certificate and key and pass them to the listener. */
static int
send_keypair(void)
{
	char	*cert, *key;
	size_t	 certlen, keylen;

	if ((cert = file_read(env.conf->tls_cert, KEYPAIR_MAX, &certlen)) == NULL) {
		log_warn("certificate %s", env.conf->tls_cert);
		return -1;
	}
	if ((key = file_read(env.conf->tls_key, KEYPAIR_MAX, &keylen)) == NULL) {
		log_warn("key %s", env.conf->tls_key);
		free(cert);
		return -1;
	}
	ipc_send(env.ipc[P_LISTENER], IMSG_TLS_CERT, 0, -1, "b", cert,
	    certlen);
	ipc_send(env.ipc[P_LISTENER], IMSG_TLS_KEY, 0, -1, "b", key, keylen);
	ipc_send(env.ipc[P_LISTENER], IMSG_TLS_READY, 0, -1, "");
	free(cert);
	freezero(key, keylen + 1);
	return 0;
}

static void
kill_children(int sig)
{
	int	 i;

	for (i = 0; i < P_COUNT; i++)
		if (env.pid[i] > 0)
			kill(env.pid[i], sig);
}

static void
killer_cb(int fd, short ev, void *arg)
{
	log_warnx("children did not stop in time, killing them");
	kill_children(SIGKILL);
}

static void
stop(int status)
{
	struct timeval	 tv = { SHUTDOWN_GRACE, 0 };

	if (env.stopping)
		return;
	env.stopping = 1;
	env.status = status;
	/*
	 * The listener goes first and finishes its sessions; the queue and
	 * auth are told once it is gone, so a message being committed is
	 * not cut off.
	 */
	if (env.pid[P_LISTENER] > 0)
		kill(env.pid[P_LISTENER], SIGTERM);
	else
		kill_children(SIGTERM);
	env.killer = evtimer_new(env.base, killer_cb, NULL);
	evtimer_add(env.killer, &tv);
}

static void
reap(void)
{
	pid_t	 pid;
	int	 status, i, left = 0;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (i = 0; i < P_COUNT; i++) {
			if (env.pid[i] != pid)
				continue;
			env.pid[i] = 0;
			if (!env.stopping || WIFSIGNALED(status) ||
			    WEXITSTATUS(status) != 0) {
				if (WIFSIGNALED(status))
					log_warnx("%s process killed by "
					    "signal %d", pname[i],
					    WTERMSIG(status));
				else
					log_warnx("%s process exited with "
					    "status %d", pname[i],
					    WEXITSTATUS(status));
			}
			if (!env.stopping)
				stop(1);
			else if (i == P_LISTENER)
				kill_children(SIGTERM);
		}
	}
	for (i = 0; i < P_COUNT; i++)
		if (env.pid[i] > 0)
			left++;
	if (env.stopping && left == 0) {
		log_info("exiting");
		exit(env.status);
	}
}

static void
signal_cb(int sig, short ev, void *arg)
{
	switch (sig) {
	case SIGTERM:
	case SIGINT:
		log_info("received signal %d, shutting down", sig);
		stop(0);
		break;
	case SIGHUP:
		log_info("reloading certificate and key");
		if (send_keypair() == -1)
			log_warnx("reload failed, keeping the old keypair");
		break;
	case SIGCHLD:
		reap();
		break;
	}
}

static void
parent_dispatch(struct ipc *ipc, struct ipc_msg *msg, void *arg)
{
	uint32_t	 nr;

	if (msg == NULL)
		return;		/* the child is gone; SIGCHLD tells us how */
	if (msg->type != IMSG_SANDBOX_VIOLATION ||
	    ipc_unpack(msg, "u", &nr) == -1)
		fatalx("unexpected message %u from %s", msg->type, ipc->name);
	log_warnx("%s process killed by its sandbox: forbidden system call "
	    "%s", ipc->name, sandbox_syscall_name(nr));
}

static pid_t
start_child(int which, int fds[P_COUNT][2], int lq[2], int la[2])
{
	struct listen_conf	*lc;
	pid_t			 pid;
	int			 i;

	sigset_t		 mask;

	if ((pid = fork()) == -1)
		fatal("fork");
	if (pid > 0)
		return pid;
	sigfillset(&mask);
	sigprocmask(SIG_UNBLOCK, &mask, NULL);

	for (i = 0; i < P_COUNT; i++) {
		close(fds[i][0]);
		if (i != which)
			close(fds[i][1]);
	}
	if (which != P_LISTENER) {
		TAILQ_FOREACH(lc, &env.conf->listeners, entry)
			close(lc->fd);
	}
	switch (which) {
	case P_LISTENER:
		close(lq[1]);
		close(la[1]);
		listener_main(env.conf, fds[which][1], la[0], lq[0]);
	case P_AUTH:
		close(lq[0]);
		close(lq[1]);
		close(la[0]);
		auth_main(env.conf, fds[which][1], la[1]);
	default:
		close(la[0]);
		close(la[1]);
		close(lq[0]);
		queue_main(env.conf, fds[which][1], lq[1]);
	}
}

int
main(int argc, char *argv[])
{
	struct smsubmit_conf	*conf;
	struct listen_conf	*lc;
	struct event		*sev[4];
	sigset_t		 mask;
	const char		*file = SMSUBMIT_CONF;
	int			 sigs[4] = { SIGTERM, SIGINT, SIGHUP, SIGCHLD };
	const char		*control = NULL;
	int			 ch, debug = 0, checkonly = 0, verbose = 0;
	int			 fds[P_COUNT][2], lq[2], la[2], i;

#ifdef __linux__
	setproctitle_init(argc, argv, environ);
#endif
	log_init(1, 0);
	while ((ch = getopt(argc, argv, "dD:f:nqQv")) != -1) {
		switch (ch) {
		case 'd':
			debug = 1;
			break;
		case 'D':
			if (cmdline_symset(optarg) == -1)
				fatalx("could not parse macro definition %s",
				    optarg);
			break;
		case 'f':
			file = optarg;
			break;
		case 'n':
			checkonly = 1;
			break;
		case 'q':
			control = "list";
			break;
		case 'Q':
			control = "flush";
			break;
		case 'v':
			verbose++;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	if ((conf = calloc(1, sizeof(*conf))) == NULL)
		fatal("calloc");
	if (parse_config(file, conf) == -1)
		exit(1);
	if (checkonly) {
		fprintf(stderr, "configuration OK\n");
		exit(0);
	}
	if (control != NULL)
		exit(control_client(conf, control));
	env.conf = conf;
	log_init(debug, verbose);

	if (geteuid() == 0)
		(void)empty_dir(conf->user);
	else
		log_warnx("not started as root: no chroot and no change of "
		    "user; the privilege separation is weaker");
	queue_dirs(conf);
	bind_listeners(conf);
	if (!debug && daemon(0, 0) == -1)
		fatal("daemon");

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	    lq) == -1 || socketpair(AF_UNIX,
	    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, la) == -1)
		fatal("socketpair");
	for (i = 0; i < P_COUNT; i++)
		if (socketpair(AF_UNIX,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
		    fds[i]) == -1)
			fatal("socketpair");
	signal(SIGPIPE, SIG_IGN);
	/* held until the parent's handlers are in place; children unblock */
	sigemptyset(&mask);
	for (i = 0; i < 4; i++)
		sigaddset(&mask, sigs[i]);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	/* the queue and auth first: the listener needs both at once */
	env.pid[P_AUTH] = start_child(P_AUTH, fds, lq, la);
	env.pid[P_QUEUE] = start_child(P_QUEUE, fds, lq, la);
	env.pid[P_LISTENER] = start_child(P_LISTENER, fds, lq, la);

	setproctitle("[priv]");
	log_procname("priv");
	close(lq[0]);
	close(lq[1]);
	close(la[0]);
	close(la[1]);
	TAILQ_FOREACH(lc, &conf->listeners, entry)
		close(lc->fd);

	if ((env.base = event_base_new()) == NULL)
		fatalx("event_base_new");
	for (i = 0; i < P_COUNT; i++) {
		close(fds[i][1]);
		env.ipc[i] = ipc_new(env.base, fds[i][0], pname[i],
		    parent_dispatch, NULL);
	}
	for (i = 0; i < 4; i++) {
		sev[i] = evsignal_new(env.base, sigs[i], signal_cb, NULL);
		if (sev[i] == NULL || evsignal_add(sev[i], NULL) == -1)
			fatalx("evsignal");
	}
	sigprocmask(SIG_UNBLOCK, &mask, NULL);
	if (send_keypair() == -1) {
		log_warnx("cannot start without a certificate and key");
		stop(1);
	}
	log_info("started, version %s", SMSUBMIT_VERSION);
	event_base_dispatch(env.base);
	return 0;
}
