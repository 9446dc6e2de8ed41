/*
 * proc.c: how the parent starts a child, and what every child does first.
 *
 * A child is not a copy of the parent: after fork() it re-executes the
 * smsubmit binary ("smsubmit -X smtp ..."), as OpenSSH and OpenSMTPD do,
 * so each process gets its own address-space layout and holds nothing of
 * the parent's memory (the configuration text, other processes' secrets).
 * The only descriptors that survive the exec are stdin, stdout, stderr
 * and the channel to the parent, always descriptor 3.
 *
 * Over that channel the parent then sends, in order, the configuration
 * file's text (the child parses the very bytes the parent checked), the
 * channels to its peers, the listening sockets (listener only) and
 * IMSG_START.  The child reads them synchronously, before it has an event
 * loop, then sets itself up, drops its privileges and enters its sandbox.
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "smsubmit.h"

#define START_TIMEOUT	30000	/* ms for the parent's start-up messages */
#define ARGV_MAX	32

static const char *names[PROC_MAX] = {
	"priv", "smtp", "auth", "queue", "crypto"
};

const char *
proc_name(enum proc_type t)
{
	return t < PROC_MAX ? names[t] : "?";
}

enum proc_type
proc_type(const char *name)
{
	int	 t;

	for (t = PROC_SMTP; t < PROC_MAX; t++)
		if (strcmp(name, names[t]) == 0)
			return t;
	return PROC_MAX;
}

/* The binary to re-execute: this very one, even if replaced on disk. */
static const char *
self_path(void)
{
#ifdef __linux__
	return "/proc/self/exe";
#else
	extern const char *__progname_full;

	return __progname_full;
#endif
}

pid_t
proc_spawn(enum proc_type t, int instance, char *const extra[], int *channel)
{
	char		*argv[ARGV_MAX], inst[16];
	sigset_t	 mask;
	pid_t		 pid;
	int		 sp[2], argc = 0, i;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == -1)
		fatal("socketpair");
	if ((pid = fork()) == -1)
		fatal("fork");
	if (pid > 0) {
		close(sp[1]);
		*channel = sp[0];
		return pid;
	}

	/* the child: only stdio and the channel survive the exec */
	close(sp[0]);
	if (sp[1] == PROC_FD) {
		if (fcntl(PROC_FD, F_SETFD, 0) == -1)
			_exit(1);
	} else if (dup2(sp[1], PROC_FD) == -1)
		_exit(1);
	closefrom(PROC_FD + 1);
	/* signals the parent held back are the child's to take */
	sigfillset(&mask);
	sigprocmask(SIG_UNBLOCK, &mask, NULL);

	snprintf(inst, sizeof(inst), "%d", instance);
	argv[argc++] = "smsubmit";
	argv[argc++] = "-X";
	argv[argc++] = (char *)proc_name(t);
	argv[argc++] = "-I";
	argv[argc++] = inst;
	for (i = 0; extra != NULL && extra[i] != NULL &&
	    argc < ARGV_MAX - 1; i++)
		argv[argc++] = extra[i];
	argv[argc] = NULL;
	execv(self_path(), argv);
	/* stderr is all there is to say it on */
	dprintf(STDERR_FILENO, "smsubmit: cannot re-execute %s: %s\n",
	    self_path(), strerror(errno));
	_exit(1);
}

static void
peer_set(struct proc_peers *p, struct ipc_msg *msg)
{
	uint32_t	 type, inst;

	if (ipc_unpack(msg, "uu", &type, &inst) == -1 || msg->fd == -1)
		fatalx("bad PEER from parent");
	switch (type) {
	case PROC_SMTP:
		if (p->listener != -1)
			fatalx("second listener channel");
		p->listener = msg->fd;
		return;
	case PROC_QUEUE:
		if (p->queue != -1)
			fatalx("second queue channel");
		p->queue = msg->fd;
		return;
	case PROC_CRYPTO:
		if (p->crypto != -1)
			fatalx("second key process channel");
		p->crypto = msg->fd;
		return;
	case PROC_AUTH:
		if (inst != (uint32_t)p->nauth || p->nauth == AUTH_WORKERS_MAX)
			fatalx("auth channel %u out of order", inst);
		p->auth[p->nauth++] = msg->fd;
		return;
	default:
		fatalx("channel to unknown process %u", type);
	}
}

static void
listen_set(struct smsubmit_conf *conf, struct ipc_msg *msg)
{
	struct listen_conf	*lc;
	uint32_t		 idx, i = 0;

	if (ipc_unpack(msg, "u", &idx) == -1 || msg->fd == -1)
		fatalx("bad LISTEN from parent");
	TAILQ_FOREACH(lc, &conf->listeners, entry)
		if (i++ == idx)
			break;
	if (lc == NULL || lc->fd != -1)
		fatalx("LISTEN %u does not match the configuration", idx);
	lc->fd = msg->fd;
}

void
proc_child(enum proc_type t, int instance, struct smsubmit_conf *conf,
    struct proc_peers *p)
{
	struct ipc_msg		 msg;
	struct listen_conf	*lc;
	const uint8_t		*text;
	const char		*file;
	size_t			 len;
	int			 r, have_conf = 0;

	setproctitle("[%s]", proc_name(t));
	log_procname(proc_name(t));
	memset(p, 0, sizeof(*p));
	p->instance = instance;
	p->listener = p->queue = p->crypto = -1;
	p->parent = ipc_open(PROC_FD, "parent");

	for (;;) {
		if ((r = ipc_read_sync(p->parent, &msg, START_TIMEOUT)) != 1)
			fatalx("parent %s before the start", r == 0 ?
			    "went away" : "silent");
		if (msg.type == IMSG_START) {
			if (ipc_unpack(&msg, "") == -1 || !have_conf)
				fatalx("bad START from parent");
			break;
		}
		if (msg.type == IMSG_CONF) {
			if (have_conf || ipc_unpack(&msg, "sb", &file, &text,
			    &len) == -1)
				fatalx("bad CONF from parent");
			/* the parent parsed the same text: it cannot fail */
			if (parse_config_mem(file, (const char *)text, len,
			    conf) == -1)
				fatalx("configuration from parent refused");
			TAILQ_FOREACH(lc, &conf->listeners, entry)
				lc->fd = -1;
			have_conf = 1;
			continue;
		}
		if (!have_conf)
			fatalx("message %u from parent before CONF", msg.type);
		if (msg.type == IMSG_PEER)
			peer_set(p, &msg);
		else if (msg.type == IMSG_LISTEN && t == PROC_SMTP)
			listen_set(conf, &msg);
		else
			fatalx("unexpected message %u from parent at start",
			    msg.type);
	}
	ipc_consume(p->parent);
}

void
proc_drop(const char *user, const char *root)
{
	struct passwd	*pw;

	/* the parent says when to stop; a dead peer shows as EPIPE */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	sandbox_prepare();
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
