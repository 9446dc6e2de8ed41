/*
 * check.c: what the operator can get wrong beyond the configuration's
 * syntax, checked by "smsubmit -n" and again at every start, before a
 * port is bound or a child started: the users exist and are not root, each
 * certificate and key can be read and match, the chroot directory is
 * root's, the queue tree has the owner and modes the queue user needs and
 * no symbolic link, and the auth user can read the SASL configuration and
 * the password store it names (Cyrus SASL would otherwise fall back to its
 * defaults without a word).
 *
 * Each problem is printed as "file:line: message", the line being that of
 * the statement that set the value; a built-in default has no line.
 *
 * The queue tree is made the way a root process must make a tree that an
 * unprivileged user owns: every directory is opened with O_NOFOLLOW and
 * changed through that descriptor only, and only a directory this call
 * created is given away.  What exists already is checked, never repaired.
 */
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "file.h"
#include "log.h"
#include "smsubmit.h"

#define SASL_LINE_MAX	1024

static struct {
	const char	*file;
	int		 problems;
} ck;

static void __attribute__((format(printf, 2, 3)))
problem(int line, const char *fmt, ...)
{
	va_list	 ap;

	ck.problems++;
	if (line > 0)
		fprintf(stderr, "%s:%d: ", ck.file, line);
	else
		fprintf(stderr, "%s: ", ck.file);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* The user a process runs as: must exist, and not be root. */
static struct passwd *
check_user(int line, const char *what, const char *name)
{
	struct passwd	*pw;

	if ((pw = getpwnam(name)) == NULL) {
		problem(line, "%s %s does not exist", what, name);
		return NULL;
	}
	if (pw->pw_uid == 0) {
		problem(line, "%s %s has uid 0; it must be unprivileged",
		    what, name);
		return NULL;
	}
	return pw;
}

static void
check_keypairs(struct smsubmit_conf *conf)
{
	struct keypair_conf	*kp;
	char			*cert, *key;
	size_t			 certlen, keylen;
	const char		*why;

	TAILQ_FOREACH(kp, &conf->keypairs, entry) {
		if ((cert = file_read(kp->cert, KEYPAIR_MAX, &certlen))
		    == NULL) {
			problem(kp->line, "certificate %s: %s", kp->cert,
			    strerror(errno));
			continue;
		}
		if ((key = file_read(kp->key, KEYPAIR_MAX, &keylen)) == NULL) {
			problem(kp->line, "key %s: %s", kp->key,
			    strerror(errno));
			free(cert);
			continue;
		}
		why = keypair_parse((uint8_t *)cert, certlen, (uint8_t *)key,
		    keylen, NULL);
		if (why != NULL)
			problem(kp->line, "certificate %s and key %s: %s",
			    kp->cert, kp->key, why);
		free(cert);
		explicit_bzero(key, keylen);
		free(key);
	}
	if (TAILQ_EMPTY(&conf->keypairs))
		problem(0, "no \"tls certificate\" statement");
}

/* The empty directory [smtp] and [crypto] are chrooted to: root's only. */
static void
check_empty_dir(void)
{
	struct stat	 st;

	if (stat(SMSUBMIT_EMPTY, &st) == -1)
		problem(0, "chroot directory %s: %s", SMSUBMIT_EMPTY,
		    strerror(errno));
	else if (!S_ISDIR(st.st_mode) || st.st_uid != 0 ||
	    (st.st_mode & (S_IWGRP | S_IWOTH)))
		problem(0, "chroot directory %s must be a directory owned by "
		    "root and writable by root only", SMSUBMIT_EMPTY);
}

/*
 * Open the directory name in dirfd (AT_FDCWD: an absolute path) without
 * following a link, making it if it is missing and create is set, and
 * check that it is the queue user's and private.  Its descriptor, or -1
 * after saying why.
 */
static int
queue_dir(int line, int dirfd, const char *name, const char *path,
    uid_t uid, gid_t gid, int create)
{
	struct stat	 st;
	int		 fd, made = 0;

	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (fd == -1 && errno == ENOENT && create) {
		if (mkdirat(dirfd, name, 0700) == -1) {
			problem(line, "queue directory %s: cannot create: %s",
			    path, strerror(errno));
			return -1;
		}
		made = 1;
		fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
		    O_CLOEXEC);
	}
	if (fd == -1) {
		if (errno == ENOENT && !create)
			return -1;	/* start-up will make it */
		if ((errno == ELOOP || errno == ENOTDIR) &&
		    fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			problem(line, "queue directory %s is %s", path,
			    S_ISLNK(st.st_mode) ? "a symbolic link" :
			    "not a directory");
		else
			problem(line, "queue directory %s: %s", path,
			    strerror(errno));
		return -1;
	}
	if (made && geteuid() == 0 && fchown(fd, uid, gid) == -1) {
		problem(line, "queue directory %s: chown: %s", path,
		    strerror(errno));
		close(fd);
		return -1;
	}
	if (fstat(fd, &st) == -1)
		fatal("fstat %s", path);
	if (st.st_uid != uid) {
		problem(line, "queue directory %s is owned by uid %lu, not by "
		    "the queue user (uid %lu)", path, (unsigned long)st.st_uid,
		    (unsigned long)uid);
		close(fd);
		return -1;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		problem(line, "queue directory %s has mode %04o; it must be "
		    "0700", path, (unsigned)(st.st_mode & 07777));
		close(fd);
		return -1;
	}
	return fd;
}

static void
check_queue(struct smsubmit_conf *conf, int create)
{
	static const char	*sub[] = { "tmp", "queue", "corrupt" };
	struct passwd		*pw;
	struct stat		 st;
	char			 path[PATH_MAX], parent[PATH_MAX], *slash;
	uid_t			 uid = geteuid();
	gid_t			 gid = getegid();
	size_t			 i;
	int			 fd, sfd, line = conf->line.queue_dir;

	if (uid == 0) {
		if ((pw = check_user(conf->line.queue_user, "queue user",
		    conf->queue_user)) == NULL)
			return;
		uid = pw->pw_uid;
		gid = pw->pw_gid;
	}
	fd = queue_dir(line, AT_FDCWD, conf->queue_dir, conf->queue_dir,
	    uid, gid, create);
	if (fd == -1) {
		if (create || errno != ENOENT)
			return;
		/* -n: missing is fine if start-up can make it */
		(void)strlcpy(parent, conf->queue_dir, sizeof(parent));
		if ((slash = strrchr(parent, '/')) != NULL)
			slash[slash == parent] = '\0';
		if (stat(parent, &st) == -1 || !S_ISDIR(st.st_mode))
			problem(line, "queue directory %s cannot be created: "
			    "%s is not a directory", conf->queue_dir, parent);
		return;
	}
	for (i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
		(void)snprintf(path, sizeof(path), "%s/%s", conf->queue_dir,
		    sub[i]);
		sfd = queue_dir(line, fd, sub[i], path, uid, gid, create);
		if (sfd != -1)
			close(sfd);
	}
	close(fd);
}

/*
 * The Cyrus SASL settings that name files: "key: value" lines, '#'
 * comments.  Only what the check needs is kept.
 */
struct sasl_settings {
	char	pwcheck[SASL_LINE_MAX];
	char	auxprop[SASL_LINE_MAX];
	char	sasldb[SASL_LINE_MAX];
	char	saslauthd[SASL_LINE_MAX];
};

static void
sasl_setting(struct sasl_settings *ss, char *line)
{
	char	*key = line, *value, *end;

	line += strspn(line, " \t");
	if (*line == '#' || (value = strchr(line, ':')) == NULL)
		return;
	key = line;
	*value++ = '\0';
	value += strspn(value, " \t");
	end = value + strlen(value);
	while (end > value && strchr(" \t\r\n", end[-1]) != NULL)
		*--end = '\0';
	if (strcmp(key, "pwcheck_method") == 0)
		(void)strlcpy(ss->pwcheck, value, sizeof(ss->pwcheck));
	else if (strcmp(key, "auxprop_plugin") == 0)
		(void)strlcpy(ss->auxprop, value, sizeof(ss->auxprop));
	else if (strcmp(key, "sasldb_path") == 0)
		(void)strlcpy(ss->sasldb, value, sizeof(ss->sasldb));
	else if (strcmp(key, "saslauthd_path") == 0)
		(void)strlcpy(ss->saslauthd, value, sizeof(ss->saslauthd));
}

/* The auth user's view: run in a child that has become that user. */
static void
check_sasl_as_user(struct smsubmit_conf *conf, const char *user)
{
	struct sasl_settings	 ss;
	char			 path[PATH_MAX], line[SASL_LINE_MAX], *slash;
	FILE			*fp;
	int			 fd, l = conf->line.sasl_config;

	if (access(conf->sasl_config, R_OK | X_OK) == -1) {
		problem(l, "sasl-config %s: %s cannot read it: %s",
		    conf->sasl_config, user, strerror(errno));
		return;
	}
	(void)snprintf(path, sizeof(path), "%s/%s.conf", conf->sasl_config,
	    SMSUBMIT_SASL_APP);
	if ((fp = fopen(path, "re")) == NULL) {
		problem(l, "sasl-config %s: %s cannot read %s: %s (Cyrus SASL "
		    "would use its defaults)", conf->sasl_config, user, path,
		    strerror(errno));
		return;
	}
	memset(&ss, 0, sizeof(ss));
	while (fgets(line, sizeof(line), fp) != NULL)
		sasl_setting(&ss, line);
	fclose(fp);

	/* Cyrus' defaults: auxprop, every plugin, /etc/sasldb2 */
	if ((ss.pwcheck[0] == '\0' || strstr(ss.pwcheck, "auxprop")) &&
	    (ss.auxprop[0] == '\0' || strstr(ss.auxprop, "sasldb"))) {
		if (ss.sasldb[0] == '\0')
			(void)strlcpy(ss.sasldb, "/etc/sasldb2",
			    sizeof(ss.sasldb));
		if ((fd = open(ss.sasldb, O_RDONLY | O_CLOEXEC)) == -1)
			problem(l, "%s names the sasldb %s, which %s cannot "
			    "read: %s", path, ss.sasldb, user,
			    strerror(errno));
		else
			close(fd);
	}
	if (strstr(ss.pwcheck, "saslauthd")) {
		if (ss.saslauthd[0] == '\0')
			(void)strlcpy(ss.saslauthd, "/var/run/saslauthd/mux",
			    sizeof(ss.saslauthd));
		if ((slash = strrchr(ss.saslauthd, '/')) != NULL &&
		    slash != ss.saslauthd) {
			*slash = '\0';
			if (access(ss.saslauthd, X_OK) == -1)
				problem(l, "%s names saslauthd in %s, which "
				    "%s cannot enter: %s", path, ss.saslauthd,
				    user, strerror(errno));
		}
	}
}

static void
check_sasl(struct smsubmit_conf *conf)
{
	struct passwd	*pw;
	pid_t		 pid;
	int		 status;

	if (geteuid() != 0) {
		check_sasl_as_user(conf, "this user");
		return;
	}
	if ((pw = check_user(conf->line.user, "user", conf->user)) == NULL)
		return;
	fflush(stderr);
	if ((pid = fork()) == -1)
		fatal("fork");
	if (pid == 0) {
		if (setgroups(1, &pw->pw_gid) == -1 ||
		    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) == -1 ||
		    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == -1)
			_exit(255);
		check_sasl_as_user(conf, conf->user);
		fflush(stderr);
		_exit(ck.problems > 254 ? 254 : ck.problems);
	}
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			fatal("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) == 255)
		problem(conf->line.user, "cannot check the SASL files as %s",
		    conf->user);
	else
		ck.problems += WEXITSTATUS(status);
}

int
check_config(const char *file, struct smsubmit_conf *conf, int create)
{
	ck.file = file;
	ck.problems = 0;
	if (geteuid() == 0)
		check_empty_dir();
	check_keypairs(conf);
	check_queue(conf, create);
	check_sasl(conf);
	return ck.problems;
}
