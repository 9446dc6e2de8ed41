/*
 * fuzz_config.c: the configuration grammar (smtpd/parse.y), as the parent
 * runs it at start-up and on SIGHUP.  The input is written to one
 * unlinked temporary file, rewritten for each run and read by
 * parse_config() through /dev/fd.  Macros defined in the file are
 * forgotten by parse_config() itself; nothing is defined with -D here.
 */
#include <sys/types.h>

#include <sched.h>

#include <err.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smsubmit.h"
#include "fuzz.h"

static char	 path[PATH_MAX];
static int	 fd = -1;

int	LLVMFuzzerInitialize(int *, char ***);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char	*tmp;
	FILE		*null;
	int		 n;

	/* rewritten for every run: memory is much faster than a disk */
	if ((tmp = getenv("TMPDIR")) == NULL || *tmp == '\0')
		tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	n = snprintf(path, sizeof(path), "%s/fuzz_config.XXXXXX", tmp);
	if (n < 0 || (size_t)n >= sizeof(path))
		errx(1, "TMPDIR too long");
	/*
	 * "listen on" and "relay to" resolve names.  A lookup that waits on
	 * a resolver turns one run into seconds (here, one that never
	 * answers AAAA queries: 5 s each) and sends the fuzzer's garbage
	 * to it.  In a network namespace of our own there is no route, so
	 * a lookup fails at once; numeric addresses and /etc/hosts work as
	 * before.  Without the privilege for that, fail lookups quickly.
	 */
	if (unshare(CLONE_NEWNET) == -1 &&
	    unshare(CLONE_NEWUSER | CLONE_NEWNET) == -1) {
		warn("unshare: name lookups may be slow");
		setenv("RES_OPTIONS", "timeout:1 attempts:1", 1);
	}

	if ((fd = mkstemp(path)) == -1)
		err(1, "mkstemp %s", path);
	/* nothing left behind when a crash ends the process: use the fd */
	if (unlink(path) == -1)
		err(1, "unlink %s", path);
	(void)snprintf(path, sizeof(path), "/dev/fd/%d", fd);
	/*
	 * parse_config() reports every error on stderr.  Point the stdio
	 * stream at /dev/null rather than fd 2: libFuzzer keeps its own copy
	 * of the original stream for its statistics, and the sanitizers write
	 * their reports to fd 2, so neither is lost.
	 */
	if ((null = fopen("/dev/null", "w")) == NULL)
		err(1, "/dev/null");
	stderr = null;
	return 0;
}

static void
check_conf(const struct smsubmit_conf *conf)
{
	const struct listen_conf	*lc;

	CHECK(!TAILQ_EMPTY(&conf->listeners));
	TAILQ_FOREACH(lc, &conf->listeners, entry) {
		CHECK(lc->flags == LISTEN_TLS || lc->flags == LISTEN_STARTTLS);
		CHECK(lc->sslen > 0 && lc->sslen <= sizeof(lc->ss));
		CHECK(memchr(lc->name, '\0', sizeof(lc->name)) != NULL);
	}
	CHECK(conf->tls_cert != NULL && conf->tls_key != NULL);
	CHECK(conf->tls_protocols != NULL && conf->tls_ciphers != NULL);
	CHECK(conf->sasl_config != NULL && conf->queue_dir != NULL);
	CHECK(conf->user != NULL && conf->queue_user != NULL);
	CHECK(memchr(conf->hostname, '\0', sizeof(conf->hostname)) != NULL);
	CHECK(conf->hostname[0] != '\0');
	CHECK(memchr(conf->auth_mechs, '\0', sizeof(conf->auth_mechs)) != NULL);
	CHECK(conf->relay_sslen > 0 &&
	    conf->relay_sslen <= sizeof(conf->relay_ss));
	CHECK(conf->auth_max_failures > 0);
	CHECK(conf->max_message_size > 0);
	CHECK(conf->max_recipients > 0 && conf->max_sessions > 0 &&
	    conf->max_sessions_per_addr > 0);
	CHECK(conf->timeout_command > 0 && conf->timeout_data > 0 &&
	    conf->queue_lifetime > 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smsubmit_conf	 conf;
	size_t			 off;
	ssize_t			 n;
	int			 r;

	if (size > 65536)
		return 0;
	if (ftruncate(fd, 0) == -1)
		err(1, "ftruncate");
	for (off = 0; off < size; off += n)
		if ((n = pwrite(fd, data + off, size - off, off)) <= 0)
			err(1, "pwrite");

	memset(&conf, 0, sizeof(conf));
	r = parse_config(path, &conf);
	CHECK(r == 0 || r == -1);
	if (r == 0)
		check_conf(&conf);
	conf_free(&conf);
	return 0;
}
