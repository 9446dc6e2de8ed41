/*
 * fuzz_ipc.c: what the listener, which faces the internet and may be
 * subverted, can make [queue] and [auth] do over their channels.
 *
 * First the framing alone: the input as a stream of frames, through
 * ipc_decode() and every ipc_unpack() format the processes use, each
 * payload in a buffer of its exact size so that AddressSanitizer sees
 * any read past it.
 *
 * Then the processes themselves: smtpd/queue.c and smtpd/auth.c are
 * compiled into this harness (fuzz_ipc_queue.c, fuzz_ipc_auth.c), set up
 * as their main() would in a directory of their own (tmp/, queue/,
 * corrupt/; a sasldb made with saslpasswd2), less the privilege drop and
 * sandbox.  The input is decoded as a sequence of messages from the
 * listener, written as frames to a socketpair, descriptors passed for
 * real, and read back by the process's own code (ipc_read_sync(): the
 * recvmsg(), the frame decoding, the descriptor bookkeeping) into its
 * listener_dispatch(): the request table, the session state, the
 * payload checks.  fatal() there is the designed answer to a hostile
 * message (the process exits, the parent stops the daemon): the harness
 * builds with FUZZING, whose log_fatal_hook (common/log.c) longjmp()s
 * back here; the process is then dead for the rest of the input, and
 * its state is reset for the next.
 *
 * This harness keeps its own model of each session, written from the
 * request tables' contracts, not read from the process: a request that
 * a session's state does not allow, a descriptor, an unknown type, must
 * be fatal; every request that is answered gets exactly one answer of
 * the right kind; a commit answered "ok" is on disk, its message what
 * the listener wrote, its envelope what it said; an AUTH_OK is only for
 * the right password; nothing is left in tmp/ or queue/ once every
 * session is over.
 *
 * The input: octet 0, bit 0: queue (0) or auth (1).  Then records:
 *	op	bits 0-3 the kind (below), bit 4 a descriptor goes with it
 *		(IPC_F_FD set), bit 5 the header lies: 8 more octets are
 *		its length and flags, bits 6-7 the session: 1, 2, 3, or
 *		(3) a peer id in the 4 octets that follow
 *	len	2 octets, little-endian: the payload's, then the payload.
 * In a queue payload "%i" is replaced by the session's message ID and
 * "%o" by the ID last handed to any session.  An empty payload (with an
 * honest header) stands for a well-formed one where the kind takes one:
 * the envelope of alice@example.org, the recipient bob@example.com, the
 * session's message ID; AUTH_START of LOGIN, then AUTH_STEPs of her
 * name and password; see queue_canned and auth_canned.
 * Queue kinds: 0 CREATE, 1 ENVELOPE, 2 RCPT, 3 COMMIT, 4 ABORT, 5 STATS,
 * 6 LIMIT_MAIL, 7 LIMIT_RCPT, 8 no message: the listener writes to the
 * session's file (payload octet 0 + 1 times the rest), 15 no message:
 * the frames that follow are held until the next 15 (or the end) and
 * then read together, so that commits share a batch; 9-14 types the
 * listener never sends.
 * Auth kinds: 0 START, 1 STEP, 2 END, 3 no message: the failures held
 * back are let go (their timers fire), 4 AUTH_FAILURE from the parent,
 * 5-15 types the listener never sends.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event.h>

#include "ipc.h"
#include "file.h"
#include "log.h"
#include "smsubmit.h"
#include "fuzz.h"
#include "fuzz_ipc.h"

static int
inside(const void *p, size_t n, const struct ipc_msg *m)
{
	const uint8_t	*b = p;

	return b >= m->data && n <= m->len &&
	    (size_t)(b - m->data) <= m->len - n;
}

static int
str_inside(const char *s, const struct ipc_msg *m)
{
	return inside(s, 1, m) &&
	    memchr(s, '\0', m->len - ((const uint8_t *)s - m->data)) != NULL;
}

static void
unpack_all(const struct ipc_msg *m)
{
	const char	*s[5];
	const uint8_t	*b;
	size_t		 blen;
	uint32_t	 u, u2;
	int		 i;

	if (ipc_unpack(m, "u", &u) == 0)
		CHECK(m->len == sizeof(u) && memcmp(&u, m->data, 4) == 0);
	if (ipc_unpack(m, "s", &s[0]) == 0) {
		CHECK(s[0] == (const char *)m->data);
		CHECK(strlen(s[0]) + 1 == m->len);
	}
	if (ipc_unpack(m, "b", &b, &blen) == 0) {
		CHECK(b == m->data + 4 && blen + 4 == m->len);
		CHECK(inside(b, blen, m));
	}
	if (ipc_unpack(m, "ssuss", &s[0], &s[1], &u, &s[2], &s[3]) == 0)
		for (i = 0; i < 4; i++)
			CHECK(str_inside(s[i], m));
	if (ipc_unpack(m, "sssssu", &s[0], &s[1], &s[2], &s[3], &s[4],
	    &u) == 0) {
		for (i = 0; i < 5; i++)
			CHECK(str_inside(s[i], m));
		/* the number closes the payload */
		CHECK(memcmp(&u, m->data + m->len - 4, 4) == 0);
	}
	if (ipc_unpack(m, "us", &u, &s[0]) == 0) {
		CHECK(s[0] == (const char *)m->data + 4);
		CHECK(str_inside(s[0], m));
	}
	if (ipc_unpack(m, "", NULL) == 0)
		CHECK(m->len == 0);
	else
		CHECK(m->len != 0);
	/* a byte string with a number after it, to walk past 'b' */
	if (ipc_unpack(m, "bu", &b, &blen, &u2) == 0)
		CHECK(inside(b, blen, m) && blen + 8 == m->len);
}

static void
framing(const uint8_t *data, size_t size)
{
	struct ipc_hdr	 hdr;
	struct ipc_msg	 m;
	uint8_t		*payload;
	size_t		 off = 0;
	int		 r;

	for (;;) {
		r = ipc_decode(data + off, size - off, &hdr);
		CHECK(r == -1 || r == 0 || r == 1);
		if (r == -1) {
			CHECK(size - off >= IPC_HDR_LEN);
			break;
		}
		if (r == 0)
			break;
		CHECK(hdr.len <= IPC_MAX_PAYLOAD);
		CHECK((hdr.flags & ~IPC_F_FD) == 0);
		CHECK(size - off - IPC_HDR_LEN >= hdr.len);

		/* exact size, even 0: ASan then sees any read past it */
		if ((payload = malloc(hdr.len)) == NULL)
			return;
		memcpy(payload, data + off + IPC_HDR_LEN, hdr.len);
		memset(&m, 0, sizeof(m));
		m.type = hdr.type;
		m.peerid = hdr.peerid;
		m.fd = -1;
		m.data = payload;
		m.len = hdr.len;
		unpack_all(&m);
		free(payload);
		off += IPC_HDR_LEN + hdr.len;
	}
}

/* --- the processes --- */

#define NSESS		8	/* sessions the model follows */
#define REPLIES_MAX	64
#define CONTENT_MAX	(2 * 1024 * 1024)
#define INPUT_CAP	(64 * 1024)
#define SUB_MAX		(8 * 65536)	/* a payload, each "%i" 16 octets */

/* the process's view of a session, as this harness expects it */
enum {
	Q_NONE = 0x01, Q_OPEN = 0x02, Q_ENVELOPE = 0x04, Q_RCPT = 0x08,
	Q_COMMIT = 0x10		/* committed, the answer after the read */
};
enum {
	A_NONE = 0x01, A_STEP = 0x02, A_HELD = 0x04
};

struct sess {
	int		 used;
	uint32_t	 peerid;
	int		 state;
	char		 id[QUEUE_ID_LEN + 1];
	int		 wfd;		/* the listener's, to the file */
	uint8_t		*content;	/* what it wrote there */
	size_t		 clen;
	int		 ctrunc;	/* more than CONTENT_MAX */
	char		 from[ADDR_MAX];
	int		 nrcpts;
	int		 steps;		/* AUTH_STEPs since the start */
};

struct reply {
	uint32_t	 type;
	uint32_t	 peerid;
	int		 fd;
	uint8_t		 data[512];
	struct ipc_msg	 msg;
};

static const char conf_text[] =
    "hostname \"mx.test\"\n"
    "listen on 127.0.0.1 port 465 tls\n"
    "tls certificate \"/nonexistent/c.pem\" key \"/nonexistent/k.pem\"\n"
    "auth mechanisms PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256\n"
    "auth workers 2\n"
    "auth delay 1s to 4s\n"
    "limit message-size 4K\n"
    "limit recipients 2\n"
    "limit sessions 4\n"
    "limit user messages 100000 per 1h\n"
    "limit user recipients 100000 per 1h\n";

static struct {
	int			 ready;
	char			 dir[PATH_MAX];
	int			 dirfd, cwdfd;
	struct smsubmit_conf	 conf;
	struct event_base	*base;
	int			 devnull;
	/* one input */
	int			 target;	/* 0 queue, 1 auth */
	struct ipc		*proc, *peer;	/* the process's end, ours */
	struct ipc		*pproc, *ppeer;	/* auth's parent channel */
	struct sess		 s[NSESS];
	char			 lastid[QUEUE_ID_LEN + 1];
	struct reply		 r[REPLIES_MAX];
	int			 nr;
	int			 dispatching;
	int			 hold;		/* frames written, not read */
} fz;

static jmp_buf	 fatal_jmp;

static void __attribute__((noreturn))
on_fatal(void)
{
	/* fatal() outside a dispatch is the harness's own failure */
	if (!fz.dispatching)
		abort();
	fz.dispatching = 0;
	longjmp(fatal_jmp, 1);
}

static int
rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	remove(path);
	return 0;
}

static void
cleanup(void)
{
	if (fz.dir[0] != '\0')
		nftw(fz.dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * A crash leaves its directory behind (no atexit() then), in memory if
 * under /dev/shm, and -minimize_crash makes many: those of processes
 * gone go at the next start.
 */
static void
sweep(const char *tmp)
{
	DIR		*d;
	struct dirent	*de;
	char		 path[PATH_MAX];
	long		 pid;

	if ((d = opendir(tmp)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (sscanf(de->d_name, "fuzz_ipc.%ld.", &pid) != 1 ||
		    pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(path, sizeof(path), "%s/%s", tmp, de->d_name);
		nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	}
	closedir(d);
}

static void
write_file(const char *path, const char *text)
{
	FILE	*fp;

	if ((fp = fopen(path, "w")) == NULL || fputs(text, fp) == EOF ||
	    fclose(fp) == EOF)
		abort();
}

static void
setup(void)
{
	char		 path[PATH_MAX + 64], cmd[2 * PATH_MAX];
	const char	*tmp;
	FILE		*fp;

	if (fz.ready)
		return;
	fz.ready = 1;
	/* syslog: quiet, and cheap if absent; FUZZ_SHOW=1: on fd 2 */
	log_init(getenv("FUZZ_SHOW") != NULL, getenv("FUZZ_SHOW") != NULL);
	log_fatal_hook = on_fatal;
	/* a file system in memory if there is one: commits fsync() */
	if ((tmp = getenv("TMPDIR")) == NULL)
		tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	sweep(tmp);
	snprintf(fz.dir, sizeof(fz.dir), "%s/fuzz_ipc.%ld.XXXXXX", tmp,
	    (long)getpid());
	if (mkdtemp(fz.dir) == NULL)
		abort();
	atexit(cleanup);
	snprintf(path, sizeof(path), "%s/tmp", fz.dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/queue", fz.dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/corrupt", fz.dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/sasl", fz.dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/sasl/smsubmit.conf", fz.dir);
	snprintf(cmd, sizeof(cmd), "pwcheck_method: auxprop\n"
	    "auxprop_plugin: sasldb\n"
	    "sasldb_path: %s/sasldb\n"
	    "mech_list: PLAIN LOGIN SCRAM-SHA-256 CRAM-MD5 DIGEST-MD5\n",
	    fz.dir);
	write_file(path, cmd);
	/* as regress/lib/harness.py makes it: one user, alice, "secret" */
	snprintf(cmd, sizeof(cmd), "saslpasswd2 -f %s/sasldb -u mx.test -c "
	    "-p alice", fz.dir);
	if ((fp = popen(cmd, "w")) == NULL || fputs("secret", fp) == EOF ||
	    pclose(fp) != 0) {
		dprintf(2, "fuzz_ipc: saslpasswd2 (sasl2-bin) failed\n");
		abort();
	}

	if (parse_config_mem("fuzz.conf", conf_text, sizeof(conf_text) - 1,
	    &fz.conf) == -1)
		abort();
	snprintf(path, sizeof(path), "%s/sasl", fz.dir);
	free(fz.conf.sasl_config);
	if ((fz.conf.sasl_config = strdup(path)) == NULL)
		abort();
	fz.conf.ban_failures = 3;
	if ((fz.base = event_base_new()) == NULL ||
	    (fz.devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) == -1 ||
	    (fz.cwdfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	    -1 ||
	    (fz.dirfd = open(fz.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	    -1 || fchdir(fz.dirfd) == -1)
		abort();
	fz.dispatching = 1;
	if (setjmp(fatal_jmp) != 0)
		abort();	/* set-up failed: said in the log */
	fuzzq_init(&fz.conf, fz.base);
	/* DIGEST-MD5 offered before a reload took it away */
	fuzza_init(&fz.conf, fz.base, "PLAIN LOGIN DIGEST-MD5");
	fz.dispatching = 0;
	/* the mechanisms configured and installed */
	CHECK(strcmp(fuzza_mechs(), "PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256") ==
	    0);
	if (fchdir(fz.cwdfd) == -1)
		abort();
}

static struct sess *
sess_get(uint32_t peerid)
{
	int	 i, free_slot = -1;

	for (i = 0; i < NSESS; i++) {
		if (fz.s[i].used && fz.s[i].peerid == peerid)
			return &fz.s[i];
		if (!fz.s[i].used && free_slot == -1)
			free_slot = i;
	}
	if (free_slot == -1)
		return NULL;	/* not followed: no expectations */
	memset(&fz.s[free_slot], 0, sizeof(fz.s[free_slot]));
	fz.s[free_slot].used = 1;
	fz.s[free_slot].peerid = peerid;
	fz.s[free_slot].state = fz.target ? A_NONE : Q_NONE;
	fz.s[free_slot].wfd = -1;
	return &fz.s[free_slot];
}

static void
sess_clear(struct sess *s)
{
	if (s->wfd != -1)
		close(s->wfd);
	s->wfd = -1;
	free(s->content);
	s->content = NULL;
	s->clen = 0;
	s->ctrunc = 0;
	s->id[0] = '\0';
	s->from[0] = '\0';
	s->nrcpts = 0;
}

/* What the process sent, read by our end of the channel. */
static void
collect(void)
{
	struct ipc_msg	 m;
	struct reply	*r;

	ipc_flush(fz.proc);
	fz.nr = 0;
	while (ipc_read_sync(fz.peer, &m, 0) == 1) {
		CHECK(fz.nr < REPLIES_MAX);
		CHECK(m.len <= sizeof(r->data));
		r = &fz.r[fz.nr++];
		r->type = m.type;
		r->peerid = m.peerid;
		r->fd = m.fd;
		memcpy(r->data, m.data, m.len);
		r->msg = m;
		r->msg.data = r->data;
	}
	if (fz.pproc != NULL) {
		/* to the parent: failures for the other workers */
		ipc_flush(fz.pproc);
		while (ipc_read_sync(fz.ppeer, &m, 0) == 1) {
			const char	*a, *u;

			CHECK(m.type == IMSG_AUTH_FAILURE && m.fd == -1);
			CHECK(ipc_unpack(&m, "ss", &a, &u) == 0);
		}
	}
}

/* The one answer to peerid, of one of the types given (0 ends). */
static struct reply *
one_answer(uint32_t peerid, const uint32_t *types)
{
	struct reply	*found = NULL;
	int		 i, j, ok;

	for (i = 0; i < fz.nr; i++) {
		if (fz.r[i].type == IMSG_AUTH_BAN) {
			CHECK(fz.r[i].peerid == 0);
			continue;
		}
		CHECK(fz.r[i].peerid == peerid);
		for (ok = j = 0; types[j] != 0; j++)
			ok |= fz.r[i].type == types[j];
		CHECK(ok);
		CHECK(found == NULL);
		found = &fz.r[i];
	}
	CHECK(found != NULL);
	return found;
}

static void
no_answer(void)
{
	CHECK(fz.nr == 0);
}

/* A file whole, NUL octets and all (file_read() takes text only). */
static uint8_t *
slurp(const char *path, size_t *len)
{
	struct stat	 st;
	uint8_t		*data;
	int		 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return NULL;
	if (fstat(fd, &st) == -1 || (data = malloc(st.st_size + 1)) == NULL)
		abort();
	if (read(fd, data, st.st_size) != st.st_size)
		abort();
	close(fd);
	*len = st.st_size;
	return data;
}

/*
 * A committed message, read back from queue/: one file, the envelope at
 * its head (smtpd/envelope.c), then the message.
 */
static void
check_committed(struct sess *s)
{
	struct qmsg	 m;
	char		 path[64];
	size_t		 n;
	uint8_t		*data;
	int		 fd;

	snprintf(path, sizeof(path), "queue/%s.msg", s->id);
	/* the envelope the listener gave, as the queue will read it */
	CHECK((fd = open(path, O_RDONLY)) != -1);
	CHECK(envelope_read_head(fd, &m) == 0);
	close(fd);
	CHECK(strcmp(m.id, s->id) == 0);
	CHECK(strcmp(m.from, s->from) == 0);
	CHECK(m.nrcpts == s->nrcpts && m.nrcpts >= 1);
	/* after it, the octets the listener wrote, no more, no fewer */
	CHECK((data = slurp(path, &n)) != NULL);
	CHECK(m.body > 0 && (size_t)m.body <= n);
	if (!s->ctrunc)
		CHECK(n - m.body == s->clen && (s->clen == 0 ||
		    memcmp(data + m.body, s->content, s->clen) == 0));
	free(data);
	envelope_clear(&m);
}

static void
queue_after(const struct ipc_msg *msg, struct sess *s, int before)
{
	static const uint32_t	 file[] = { IMSG_MSG_FILE, 0 };
	static const uint32_t	 result[] = { IMSG_MSG_RESULT, 0 };
	static const uint32_t	 limit[] = { IMSG_LIMIT_RESULT, 0 };
	static const struct {
		uint32_t	 type;
		int		 states;
	} allowed[] = {
		{ IMSG_MSG_CREATE,	Q_NONE },
		{ IMSG_MSG_ENVELOPE,	Q_OPEN },
		{ IMSG_MSG_RCPT,	Q_ENVELOPE | Q_RCPT },
		{ IMSG_MSG_COMMIT,	Q_RCPT },
		{ IMSG_MSG_ABORT,	Q_OPEN | Q_ENVELOPE | Q_RCPT },
	};
	struct reply	*r;
	const char	*id, *str;
	uint32_t	 u;
	size_t		 i;

	/* survived: it must have been a request it takes */
	CHECK(msg->fd == -1);
	if (msg->type == IMSG_STATS) {
		no_answer();
		return;
	}
	if (msg->type == IMSG_LIMIT_MAIL || msg->type == IMSG_LIMIT_RCPT) {
		r = one_answer(msg->peerid, limit);
		CHECK(ipc_unpack(&r->msg, "u", &u) == 0 && u <= 1);
		return;
	}
	for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		if (allowed[i].type == msg->type)
			break;
	CHECK(i < sizeof(allowed) / sizeof(allowed[0]));
	if (s == NULL)
		return;		/* a session the model does not follow */
	CHECK(allowed[i].states & before);

	switch (msg->type) {
	case IMSG_MSG_CREATE:
		r = one_answer(msg->peerid, file);
		CHECK(ipc_unpack(&r->msg, "us", &u, &id) == 0);
		if (u == QUEUE_OK) {
			CHECK(r->fd != -1 && envelope_id_valid(id));
			sess_clear(s);
			s->wfd = r->fd;
			strlcpy(s->id, id, sizeof(s->id));
			strlcpy(fz.lastid, id, sizeof(fz.lastid));
			s->state = Q_OPEN;
		} else
			CHECK(r->fd == -1 && *id == '\0');
		break;
	case IMSG_MSG_ENVELOPE:
		no_answer();
		CHECK(ipc_unpack(msg, "sssssu", &id, &str, &id, &id, &id,
		    &u) == 0);
		strlcpy(s->from, str, sizeof(s->from));
		s->state = Q_ENVELOPE;
		break;
	case IMSG_MSG_RCPT:
		no_answer();
		s->nrcpts++;
		CHECK(s->nrcpts <= fz.conf.max_recipients);
		s->state = Q_RCPT;
		break;
	case IMSG_MSG_COMMIT:
		if (fz.nr == 0) {
			/* in the batch: answered once the read is done */
			s->state = Q_COMMIT;
			break;
		}
		/* failed at once (the copy or the envelope): never ok */
		r = one_answer(msg->peerid, result);
		CHECK(ipc_unpack(&r->msg, "us", &u, &id) == 0);
		CHECK(strcmp(id, s->id) == 0 && u != QUEUE_OK);
		sess_clear(s);
		s->state = Q_NONE;
		break;
	case IMSG_MSG_ABORT:
		no_answer();
		sess_clear(s);
		s->state = Q_NONE;
		break;
	}
}

static void
auth_after(const struct ipc_msg *msg, struct sess *s, int before)
{
	static const uint32_t	 answers[] = { IMSG_AUTH_CONTINUE,
	    IMSG_AUTH_OK, IMSG_AUTH_FAIL, IMSG_AUTH_HOLD, 0 };
	static const uint32_t	 ended[] = { IMSG_AUTH_ENDED, 0 };
	struct reply	*r;
	const char	*user, *senders, *chal;
	uint32_t	 u;

	CHECK(msg->fd == -1);
	CHECK(msg->type == IMSG_AUTH_START || msg->type == IMSG_AUTH_STEP ||
	    msg->type == IMSG_AUTH_END);
	if (s == NULL)
		return;
	if (msg->type == IMSG_AUTH_END) {
		r = one_answer(msg->peerid, ended);
		CHECK(ipc_unpack(&r->msg, "") == 0);
		s->state = A_NONE;
		return;
	}
	CHECK(before == (msg->type == IMSG_AUTH_START ? A_NONE : A_STEP));
	r = one_answer(msg->peerid, answers);
	switch (r->type) {
	case IMSG_AUTH_CONTINUE:
		CHECK(ipc_unpack(&r->msg, "s", &chal) == 0);
		s->state = A_STEP;
		if (msg->type == IMSG_AUTH_START)
			s->steps = 0;
		else
			s->steps++;
		break;
	case IMSG_AUTH_OK:
		CHECK(ipc_unpack(&r->msg, "ss", &user, &senders) == 0);
		/* the one user there is, with her password */
		CHECK(strcmp(user, "alice") == 0 ||
		    strcmp(user, "alice@mx.test") == 0);
		CHECK(strcmp(senders, "*") == 0);
		s->state = A_NONE;
		break;
	case IMSG_AUTH_FAIL:
		CHECK(ipc_unpack(&r->msg, "u", &u) == 0);
		CHECK(u >= AUTH_R_BADCREDS && u <= AUTH_R_TEMP);
		s->state = A_NONE;
		break;
	case IMSG_AUTH_HOLD:
		CHECK(ipc_unpack(&r->msg, "u", &u) == 0);
		CHECK(u >= (uint32_t)fz.conf.auth_delay_min &&
		    u <= (uint32_t)fz.conf.auth_delay_max);
		s->state = A_HELD;
		break;
	}
}

/* The held failures are let go: each held session hears it failed. */
static void
auth_release(void)
{
	int	 i, j, n;

	fz.dispatching = 1;
	fuzza_release();
	fz.dispatching = 0;
	collect();
	for (i = 0; i < NSESS; i++) {
		if (!fz.s[i].used || fz.s[i].state != A_HELD)
			continue;
		for (n = j = 0; j < fz.nr; j++)
			if (fz.r[j].peerid == fz.s[i].peerid) {
				CHECK(fz.r[j].type == IMSG_AUTH_FAIL);
				n++;
			}
		CHECK(n == 1);
		fz.s[i].state = A_NONE;
	}
	CHECK(fz.nr <= NSESS);
}

/*
 * After a read the queue syncs the commits it brought, together, and
 * answers each: exactly one result for every session whose commit was
 * in the batch; an ok one is on disk as the listener gave it.
 */
static void
queue_batch(void)
{
	struct reply	*r;
	const char	*id;
	uint32_t	 u;
	int		 i, j, n, waiting = 0;

	fz.dispatching = 1;
	n = fuzzq_batch();
	fz.dispatching = 0;
	collect();
	for (i = 0; i < NSESS; i++) {
		if (!fz.s[i].used || fz.s[i].state != Q_COMMIT)
			continue;
		waiting++;
		for (r = NULL, j = 0; j < fz.nr; j++)
			if (fz.r[j].peerid == fz.s[i].peerid) {
				CHECK(r == NULL);
				r = &fz.r[j];
			}
		CHECK(r != NULL && r->type == IMSG_MSG_RESULT);
		CHECK(ipc_unpack(&r->msg, "us", &u, &id) == 0);
		CHECK(strcmp(id, fz.s[i].id) == 0);
		if (u == QUEUE_OK)
			check_committed(&fz.s[i]);
		sess_clear(&fz.s[i]);
		fz.s[i].state = Q_NONE;
	}
	/* sessions the model does not follow have answers too */
	CHECK(fz.nr == n && waiting <= n);
}

/*
 * Every whole frame the process can read now, through its own code,
 * into its dispatch; then what it answered.
 */
static void
deliver(struct ipc *proc, int parent)
{
	struct ipc_msg	 msg;
	struct sess	*s;
	int		 before;

	for (;;) {
		fz.dispatching = 1;
		if (ipc_read_sync(proc, &msg, 0) != 1) {
			fz.dispatching = 0;
			if (fz.target == 0)
				queue_batch();
			return;
		}
		s = parent ? NULL : sess_get(msg.peerid);
		before = s != NULL ? s->state : 0;
		if (parent)
			fuzza_parent_dispatch(proc, &msg);
		else if (fz.target == 0)
			fuzzq_dispatch(proc, &msg);
		else
			fuzza_dispatch(proc, &msg);
		fz.dispatching = 0;
		collect();
		if (parent) {
			/* only a failure to count, and no answer */
			CHECK(msg.type == IMSG_AUTH_FAILURE && msg.fd == -1);
			no_answer();
		} else if (fz.target == 0)
			queue_after(&msg, s, before);
		else
			auth_after(&msg, s, before);
	}
}

/* Write a frame as the listener (or the parent) would, or lie. */
static void
send_frame(int fd, struct ipc_hdr *hdr, const uint8_t *p, size_t n,
    int withfd, struct ipc *proc, int parent)
{
	struct msghdr	 mh;
	struct iovec	 iov[2];
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cmsgbuf;
	struct cmsghdr	*cmsg;
	/* static: a fatal() in deliver() longjmp()s past any free() */
	static uint8_t	 frame[IPC_HDR_LEN + SUB_MAX];
	size_t		 off = 0, total = IPC_HDR_LEN + n;
	ssize_t		 w;

	CHECK(n <= SUB_MAX);
	memcpy(frame, hdr, IPC_HDR_LEN);
	memcpy(frame + IPC_HDR_LEN, p, n);
	while (off < total) {
		memset(&mh, 0, sizeof(mh));
		iov[0].iov_base = frame + off;
		iov[0].iov_len = total - off;
		mh.msg_iov = iov;
		mh.msg_iovlen = 1;
		if (withfd && off == 0) {
			memset(&cmsgbuf, 0, sizeof(cmsgbuf));
			mh.msg_control = cmsgbuf.buf;
			mh.msg_controllen = sizeof(cmsgbuf.buf);
			cmsg = CMSG_FIRSTHDR(&mh);
			cmsg->cmsg_len = CMSG_LEN(sizeof(int));
			cmsg->cmsg_level = SOL_SOCKET;
			cmsg->cmsg_type = SCM_RIGHTS;
			memcpy(CMSG_DATA(cmsg), &fz.devnull, sizeof(int));
		}
		if ((w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT)) ==
		    -1) {
			if (errno != EAGAIN)
				abort();
			/* full: the process reads, or it never will */
			deliver(proc, parent);
			if ((w = sendmsg(fd, &mh, MSG_NOSIGNAL)) == -1)
				abort();
		}
		off += w;
	}
}

/* The payload with "%i" and "%o" made message IDs. */
static size_t
substitute(const uint8_t *p, size_t n, struct sess *s, uint8_t *out)
{
	size_t	 i, o = 0, l;

	for (i = 0; i < n; i++) {
		if (fz.target == 0 && p[i] == '%' && i + 1 < n &&
		    (p[i + 1] == 'i' || p[i + 1] == 'o')) {
			const char *id = p[i + 1] == 'o' ? fz.lastid :
			    s != NULL ? s->id : "";

			l = strlen(id);
			memcpy(out + o, id, l);
			o += l;
			i++;
		} else
			out[o++] = p[i];
	}
	return o;
}

static void
listener_writes(struct sess *s, const uint8_t *p, size_t n)
{
	unsigned	 times, t;
	size_t		 add;

	if (s == NULL || s->wfd == -1 || n == 0)
		return;
	times = p[0] + 1;
	p++;
	n--;
	for (t = 0; t < times && n > 0; t++) {
		if (write(s->wfd, p, n) != (ssize_t)n)
			abort();
		add = n;
		if (s->clen + add > CONTENT_MAX) {
			s->ctrunc = 1;
			continue;
		}
		if ((s->content = realloc(s->content, s->clen + add)) == NULL)
			abort();
		memcpy(s->content + s->clen, p, add);
		s->clen += add;
	}
}

static const uint32_t queue_types[16] = {
	IMSG_MSG_CREATE, IMSG_MSG_ENVELOPE, IMSG_MSG_RCPT, IMSG_MSG_COMMIT,
	IMSG_MSG_ABORT, IMSG_STATS, IMSG_LIMIT_MAIL, IMSG_LIMIT_RCPT,
	0, IMSG_MSG_FILE, IMSG_MSG_RESULT, IMSG_AUTH_START, IMSG_NONE,
	IMSG_MAX, 0xffffffff, 0
};
static const uint32_t auth_types[16] = {
	IMSG_AUTH_START, IMSG_AUTH_STEP, IMSG_AUTH_END, 0, IMSG_AUTH_FAILURE,
	IMSG_AUTH_OK, IMSG_AUTH_CONTINUE, IMSG_AUTH_FAIL, IMSG_AUTH_ENDED,
	IMSG_AUTH_MECHS, IMSG_MSG_CREATE, IMSG_NONE, IMSG_MAX, 0xffffffff,
	IMSG_AUTH_HOLD, IMSG_RECONF
};

#define CANNED(x)	{ x, sizeof(x) - 1 }
struct canned {
	const char	*p;
	size_t		 len;
};

/*
 * What an empty payload stands for, a well-formed request of its kind,
 * so that any order of requests is a few octets away: the state tables
 * are what is fuzzed then.  (A lying header sends it empty.)
 */
static const struct canned queue_canned[16] = {
	[1] = CANNED("%i\0alice@example.org\0alice\0client.example\0"
	    "192.0.2.1\0\0\0\0\0"),
	[2] = CANNED("%i\0bob@example.com\0"),
	[3] = CANNED("%i\0"),
	[4] = CANNED("%i\0"),
	[6] = CANNED("alice\0"),
	[7] = CANNED("alice\0"),
};
static const struct canned auth_canned[16] = {
	/* LOGIN: a challenge; the steps then give her name, her password */
	[0] = CANNED("LOGIN\0\0\0\0\0\0" "192.0.2.1\0" "192.0.2.2;587\0"),
	[1] = CANNED("YWxpY2U=\0"),
	[4] = CANNED("192.0.2.1\0alice\0"),
};

static void
run(const uint8_t *data, size_t size)
{
	static uint8_t		 sub[SUB_MAX];
	const struct canned	*c;
	struct ipc_hdr		 hdr;
	struct sess	*s;
	const uint8_t	*end = data + size;
	size_t		 n, len;
	uint32_t	 peerid, lie[2];
	int		 op, kind, withfd, liar, idx, parent;

	while (end - data >= 3) {
		op = *data++;
		kind = op & 0x0f;
		withfd = (op & 0x10) != 0;
		liar = (op & 0x20) != 0;
		idx = op >> 6;
		if (liar) {
			if (end - data < 8)
				return;
			memcpy(lie, data, 8);
			data += 8;
		}
		if (idx < 3)
			peerid = idx + 1;
		else {
			if (end - data < 4)
				return;
			memcpy(&peerid, data, 4);
			data += 4;
		}
		if (end - data < 2)
			return;
		len = data[0] | data[1] << 8;
		data += 2;
		if (len > (size_t)(end - data))
			len = end - data;
		s = sess_get(peerid);

		if (fz.target == 0 && kind == 8) {
			listener_writes(s, data, len);
			data += len;
			continue;
		}
		if (fz.target == 0 && kind == 15) {
			/* hold the frames, and let them be read together */
			data += len;
			if ((fz.hold = !fz.hold) == 0)
				deliver(fz.proc, 0);
			continue;
		}
		if (fz.target == 1 && kind == 3) {
			data += len;
			auth_release();
			continue;
		}
		c = fz.target == 0 ? &queue_canned[kind] : &auth_canned[kind];
		if (len == 0 && !liar && c->p != NULL) {
			if (fz.target == 1 && kind == 1 && s != NULL &&
			    s->steps > 0)
				n = substitute((const uint8_t *)"c2VjcmV0", 9, s,
				    sub);
			else
				n = substitute((const uint8_t *)c->p, c->len, s,
				    sub);
		} else
			n = substitute(data, len, s, sub);
		data += len;
		parent = fz.target == 1 && kind == 4;
		memset(&hdr, 0, sizeof(hdr));
		hdr.type = fz.target == 0 ? queue_types[kind] :
		    auth_types[kind];
		hdr.len = n;
		hdr.peerid = parent ? 0 : peerid;
		hdr.flags = withfd ? IPC_F_FD : 0;
		if (liar) {
			hdr.len = lie[0];
			hdr.flags = lie[1];
		}
		send_frame(parent ? fz.ppeer->fd : fz.peer->fd, &hdr, sub, n,
		    withfd, parent ? fz.pproc : fz.proc, parent);
		if (!fz.hold)
			deliver(parent ? fz.pproc : fz.proc, parent);
	}
}

static void
channel(struct ipc **proc, struct ipc **peer, const char *pname,
    const char *name)
{
	int	 sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		abort();
	*proc = ipc_open(sv[0], pname);
	*peer = ipc_open(sv[1], name);
}

static void
processes(const uint8_t *data, size_t size)
{
	volatile int	 died = 0;
	int		 i;

	if (size < 1)
		return;
	if (size > INPUT_CAP)
		size = INPUT_CAP;
	fz.target = data[0] & 1;
	memset(fz.s, 0, sizeof(fz.s));
	fz.lastid[0] = '\0';
	if (fchdir(fz.dirfd) == -1)
		abort();
	channel(&fz.proc, &fz.peer, "listener", fz.target ? "auth" : "queue");
	if (fz.target == 0)
		fuzzq_listener(fz.proc);
	else {
		channel(&fz.pproc, &fz.ppeer, "parent", "auth");
		fuzza_channels(fz.proc, fz.pproc);
	}

	fz.hold = 0;
	if (setjmp(fatal_jmp) == 0) {
		run(data + 1, size - 1);
		/* what was held is read now */
		if (fz.target == 0)
			deliver(fz.proc, 0);
	} else
		died = 1;	/* the designed answer: the process is gone */

	for (i = 0; i < NSESS; i++)
		sess_clear(&fz.s[i]);
	if (fz.target == 0) {
		fuzzq_reset(!died);
		CHECK(fuzzq_open() == 0 && fuzzq_committed() == 0);
	} else {
		fuzza_reset();
		ipc_free(fz.pproc);
		ipc_free(fz.ppeer);
		fz.pproc = fz.ppeer = NULL;
	}
	ipc_free(fz.proc);
	ipc_free(fz.peer);
	fz.proc = fz.peer = NULL;
	if (fchdir(fz.cwdfd) == -1)
		abort();
}

/*
 * The processes run in fz.dir, so a crash is reported from there: a
 * relative corpus, artifact prefix or input path is made absolute first
 * (libFuzzer reads its flags after this).
 */
int	LLVMFuzzerInitialize(int *, char ***);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char	*flags[] = { "-artifact_prefix=",
	    "-exact_artifact_path=", "-dict=", NULL };
	char			**nargv, cwd[PATH_MAX], *arg;
	const char		*val;
	size_t			 n;
	int			 i, j;

	if (getcwd(cwd, sizeof(cwd)) == NULL ||
	    (nargv = calloc(*argc + 1, sizeof(*nargv))) == NULL)
		abort();
	for (i = 0; i < *argc; i++) {
		arg = (*argv)[i];
		val = arg;
		n = 0;
		for (j = 0; flags[j] != NULL; j++)
			if (strncmp(arg, flags[j], strlen(flags[j])) == 0)
				n = strlen(flags[j]);
		val = arg + n;
		if (i > 0 && (n > 0 || arg[0] != '-') && val[0] != '/' &&
		    val[0] != '\0') {
			if (asprintf(&nargv[i], "%.*s%s/%s", (int)n, arg, cwd,
			    val) == -1)
				abort();
		} else
			nargv[i] = arg;
	}
	*argv = nargv;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	framing(data, size);
	processes(data, size);
	return 0;
}
