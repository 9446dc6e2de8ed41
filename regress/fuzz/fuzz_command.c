/*
 * fuzz_command.c: the SMTP session as the listener drives it.
 *
 * First the command line as the session splits it, and the MAIL FROM:
 * and RCPT TO: arguments that follow (the listener feeds these functions
 * lines of up to SMTP_LINE_MAX octets straight from the client).  Then
 * the whole dialogue: the input goes to session_input() as the listener
 * would give it, in pieces (line assembly, pipelining) or one line at a
 * time, and this harness plays the auth process and the queue, answering
 * what the session asks of them (their answers chosen by the input too),
 * and the TLS handshake after STARTTLS.  Every reply must be well formed,
 * the state consistent, and, one line at a time, every command line gets
 * exactly one reply (a line inside DATA none, the end of DATA one).
 *
 * The auth process is played by fuzz_listener.c behind the listener's
 * real auth worker channel: AUTH is answered with a challenge, success,
 * each failure, or a failure held back.
 *
 * The first octet of the input chooses: bit 0 the TLS port (TLS at
 * once), bit 1 one line at a time, bits 2-3 the auth answers, bits 4-5
 * the queue's; the second the size of the pieces; the rest is what the
 * client says.
 */
#include <sys/types.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <tls.h>
#include <unistd.h>

#include "log.h"
#include "smsubmit.h"
#include "fuzz.h"
#include "fuzz_listener.h"

#define LINE_CAP	1024
#define MAXSIZE		(35 * 1024 * 1024)

static int
code_ok(int code)
{
	return code == 0 || code == 501 || code == 552 || code == 555;
}

static void
mail_params(const char *params)
{
	const char	*msg, *msg2;
	int		 code, code2, flags, flags2;

	msg = NULL;
	code = session_mail_params(params, MAXSIZE, &flags, &msg);
	CHECK(code_ok(code));
	CHECK((flags & ~(ENV_8BITMIME | ENV_SMTPUTF8)) == 0);
	if (code != 0) {
		/* "%d %s" goes on the wire: an enhanced code of the same class */
		CHECK(msg != NULL);
		CHECK(msg[0] == '0' + code / 100 && msg[1] == '.');
	}

	/* a larger limit accepts whatever a smaller one did, and more */
	msg2 = NULL;
	code2 = session_mail_params(params, SIZE_MAX, &flags2, &msg2);
	CHECK(code_ok(code2) && code2 != 552);
	if (code == 0)
		CHECK(code2 == 0 && flags2 == flags);
	/* up to a SIZE over the smaller limit, both walk the same path */
	if (code != 552)
		CHECK(code2 == code);
}

static void
line_checks(const uint8_t *data, size_t size)
{
	const struct smtp_cmd	*cmd;
	const char		*arg, *name, *params;
	char			*line, addr[ADDR_MAX];
	size_t			 len, n;

	if (size > LINE_CAP)
		size = LINE_CAP;
	if ((line = malloc(size + 1)) == NULL)
		return;
	memcpy(line, data, size);
	line[size] = '\0';
	len = strlen(line);

	arg = NULL;
	cmd = session_cmd_lookup(line, &arg);
	/* arg points inside the line, past the verb and its spaces */
	n = strcspn(line, " ");
	CHECK(arg != NULL && arg >= line + n && arg <= line + len);
	CHECK(*arg != ' ');
	if (cmd == NULL)
		goto done;
	name = session_cmd_name(cmd);
	CHECK(name != NULL && strlen(name) == n &&
	    strncasecmp(name, line, n) == 0);

	if (strcasecmp(name, "MAIL") == 0 &&
	    strncasecmp(arg, "FROM:", 5) == 0) {
		params = NULL;
		if (addr_parse_path(arg + 5, ADDR_NULL_OK | ADDR_UTF8, addr,
		    sizeof(addr), &params) == 0) {
			CHECK(params >= arg + 5 && params <= line + len);
			CHECK(addr_mailbox_valid(addr,
			    ADDR_NULL_OK | ADDR_UTF8));
			mail_params(params);
		}
	} else if (strcasecmp(name, "RCPT") == 0 &&
	    strncasecmp(arg, "TO:", 3) == 0) {
		params = NULL;
		if (addr_parse_path(arg + 3, ADDR_POSTMASTER | ADDR_UTF8,
		    addr, sizeof(addr), &params) == 0) {
			CHECK(params >= arg + 3 && params <= line + len);
			CHECK(addr[0] != '\0');
		}
	}
 done:
	free(line);
}

/* --- the whole session --- */

#define INPUT_MAX	(64 * 1024)	/* as listener.c */
#define OUTPUT_MAX	(256 * 1024)

static const char conf_text[] =
    "hostname \"mx.test\"\n"
    "listen on 127.0.0.1 port 465 tls\n"
    "listen on 127.0.0.1 port 587 starttls\n"
    "tls certificate \"/nonexistent/cert.pem\" key \"/nonexistent/key\"\n"
    "auth mechanisms PLAIN LOGIN\n"
    "auth max-failures 3\n"
    "relay to 127.0.0.1 port 25\n"
    "limit message-size 64K\n"
    "limit recipients 5\n";

static struct smsubmit_conf	 conf;
static struct listener_env	 lenv;
static struct tls		*tlsctx;
static int			 ready;

int	LLVMFuzzerInitialize(int *, char ***);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* the session logs every line: to nowhere, CHECK() writes to fd 2 */
	log_init(1, 0);
	if ((stderr = fopen("/dev/null", "w")) == NULL)
		abort();
	if (parse_config_mem("fuzz.conf", conf_text, sizeof(conf_text) - 1,
	    &conf) == -1)
		return 0;
	lenv.conf = &conf;
	lenv.auth_ready = 1;
	fuzzl_init();
	strlcpy(lenv.mechs, "PLAIN LOGIN", sizeof(lenv.mechs));
	/* a context no handshake was made on: version and cipher NULL */
	if ((tlsctx = tls_server()) == NULL)
		abort();
	ready = 1;
	return 0;
}

static struct ipc *
channel(const char *name)
{
	int	 fd;

	if ((fd = open("/dev/null", O_RDWR | O_CLOEXEC)) == -1)
		abort();
	return ipc_open(fd, name);
}

/* An answer from a peer, as ipc_read would hand it out. */
struct answer {
	uint8_t		 data[256];
	size_t		 len;
	struct ipc_msg	 msg;
};

static void
put_u(struct answer *a, uint32_t u)
{
	memcpy(a->data + a->len, &u, sizeof(u));
	a->len += sizeof(u);
}

static void
put_s(struct answer *a, const char *s)
{
	size_t	 n = strlen(s) + 1;

	memcpy(a->data + a->len, s, n);
	a->len += n;
}

static struct ipc_msg *
done(struct answer *a, uint32_t type, uint32_t id, int fd)
{
	a->msg.type = type;
	a->msg.peerid = id;
	a->msg.fd = fd;
	a->msg.data = a->data;
	a->msg.len = a->len;
	return &a->msg;
}

static struct picker {
	int		 mode;
	unsigned	 k;		/* answers given */
} picker;

/*
 * The fake auth process's answers, in turn from the row the input's bits
 * 2-3 choose: a login at once, LOGIN's two challenges then success,
 * failures held back and a ban, the other failures.
 */
static enum fuzzl_answer
auth_pick(void *arg)
{
	static const enum fuzzl_answer	 rows[4][4] = {
		{ FUZZL_OK, FUZZL_BADCREDS, FUZZL_OK, FUZZL_TEMP },
		{ FUZZL_CONTINUE, FUZZL_CONTINUE, FUZZL_OK, FUZZL_HOLD },
		{ FUZZL_BADCREDS, FUZZL_HOLD, FUZZL_BAN, FUZZL_OK },
		{ FUZZL_CONTINUE, FUZZL_BADB64, FUZZL_BADMECH, FUZZL_TEMP },
	};
	struct picker	*p = arg;

	return rows[(p->mode >> 2) & 3][p->k++ % 4];
}

/* Play the auth process or the queue until the session waits for none. */
static void
answer_pending(struct session *s, int mode, unsigned *turn)
{
	struct answer	 a;
	int		 pick, fd;

	while (s->pending != PENDING_NONE) {
		memset(&a, 0, sizeof(a));
		(*turn)++;
		switch (s->pending) {
		case PENDING_AUTH:
			fuzzl_auth(s, auth_pick, &picker);
			break;
		case PENDING_FILE:
			pick = ((mode >> 4) + *turn) % 4;
			if (pick != 3) {
				if ((fd = open("/dev/null", O_WRONLY |
				    O_CLOEXEC)) == -1)
					abort();
				put_u(&a, QUEUE_OK);
				put_s(&a, "0123456789abcdef");
			} else {
				fd = -1;
				put_u(&a, QUEUE_R_NOSPACE);
				put_s(&a, "");
			}
			session_queue_result(s, done(&a, IMSG_MSG_FILE, s->id,
			    fd));
			break;
		case PENDING_COMMIT:
			put_u(&a, (*turn % 5) == 4 ? QUEUE_R_TEMP : QUEUE_OK);
			put_s(&a, s->msgid);
			session_queue_result(s, done(&a, IMSG_MSG_RESULT, s->id,
			    -1));
			break;
		default:
			abort();
		}
	}
}

/*
 * Check what the session wrote since the last look and take it away;
 * the number of replies in it (a multi-line reply counts as one).
 */
static int
replies(struct session *s)
{
	const char	*p = (const char *)buf_head(&s->out);
	size_t		 left = buf_used(&s->out), n, i;
	int		 count = 0, code = -1;

	/* FUZZ_SHOW=1: the replies on fd 2, to see how far an input goes */
	if (getenv("FUZZ_SHOW") != NULL && left > 0)
		(void)write(2, p, left);
	while (left > 0) {
		const char *eol = memchr(p, '\n', left);

		/* whole lines only, CRLF, at most 512 octets */
		CHECK(eol != NULL && eol > p && eol[-1] == '\r');
		n = eol - p + 1;
		CHECK(n <= SMTP_LINE_MAX);
		CHECK(n >= 6 && p[0] >= '2' && p[0] <= '5' &&
		    p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9');
		CHECK(p[3] == ' ' || p[3] == '-');
		for (i = 4; i < n - 2; i++)
			CHECK(p[i] >= 0x20 && p[i] != 0x7f);
		/* the lines of a reply share its code */
		if (code != -1)
			CHECK(atoi(p) == code);
		code = atoi(p);
		/* an enhanced code is of the reply's class */
		if (p[4] >= '2' && p[4] <= '5' && p[5] == '.' && code >= 200)
			CHECK(p[4] == p[0]);
		if (p[3] == ' ') {
			count++;
			code = -1;
		}
		p += n;
		left -= n;
	}
	/* no reply left half written */
	CHECK(code == -1);
	buf_drain(&s->out, buf_used(&s->out));
	return count;
}

static void
state_checks(struct session *s)
{
	CHECK(s->state >= S_HANDSHAKE && s->state <= S_QUIT);
	/* nothing of AUTH or a transaction without TLS */
	if (!(s->flags & SF_TLS))
		CHECK(!(s->flags & SF_AUTHED) &&
		    (s->state < S_AUTH || s->state == S_QUIT));
	if (s->state == S_MAIL || s->state == S_RCPT || s->state == S_DATA)
		CHECK(s->flags & SF_AUTHED);
	/* authenticated only by [auth]'s word, as the user it named */
	if (s->flags & SF_AUTHED)
		CHECK(fuzzl_given[FUZZL_OK] > 0 && strcmp(s->user, "alice") == 0);
	if (s->state == S_MAIL)
		CHECK(s->nrcpts == 0);
	if (s->state == S_RCPT || s->state == S_DATA)
		CHECK(s->nrcpts >= 1);
	CHECK(s->nrcpts <= conf.max_recipients);
	CHECK(s->pending == PENDING_NONE);
	CHECK(buf_used(&s->in) <= INPUT_MAX);
}

/* After the 220 to STARTTLS, a handshake that works. */
static int
handshake(struct session *s)
{
	if (!(s->flags & SF_STARTTLS))
		return 0;
	/* what the client pipelined behind STARTTLS was dropped */
	CHECK(buf_used(&s->in) == 0);
	s->flags |= SF_TLS;
	s->tls = tlsctx;
	session_start(s);
	return 1;
}

static void
session_checks(const uint8_t *data, size_t size)
{
	struct session	*s;
	const uint8_t	*nl;
	size_t		 off, n, i, piece, lines = 0;
	unsigned	 turn = 0;
	int		 mode, got, total = 0, in_data, crlf = 1;

	if (!ready || size < 2)
		return;
	mode = data[0];
	piece = data[1] + 1;
	picker.mode = mode;
	picker.k = 0;
	data += 2;
	size -= 2;

	lenv.queue = channel("queue");
	if ((s = calloc(1, sizeof(*s))) == NULL)
		abort();
	s->env = &lenv;
	s->conf = &conf;		/* as the listener sets it at accept */
	s->lc = TAILQ_FIRST(&conf.listeners);
	s->fd = -1;
	s->msgfd = -1;
	s->id = 0x1234;
	strlcpy(s->client, "192.0.2.1", sizeof(s->client));
	strlcpy(s->local, "192.0.2.2;587", sizeof(s->local));
	buf_init(&s->in, INPUT_MAX);
	buf_init(&s->out, OUTPUT_MAX);
	if (mode & 1) {
		s->flags |= SF_TLS;
		s->tls = tlsctx;
	}
	fuzzl_begin(s);
	session_start(s);
	CHECK(replies(s) == 1);		/* the greeting */

	for (off = 0; off < size && s->state != S_QUIT; off += n) {
		if (mode & 2) {
			/* one line at a time, and nothing else pending */
			nl = memchr(data + off, '\n', size - off);
			n = nl != NULL ? (size_t)(nl - (data + off)) + 1 :
			    size - off;
		} else
			n = size - off < piece ? size - off : piece;
		/* the listener reads no more while its buffer is full */
		if (buf_used(&s->in) + n > INPUT_MAX)
			break;
		in_data = s->state == S_DATA;
		if (getenv("FUZZ_SHOW") != NULL) {
			(void)write(2, "C: ", 3);
			(void)write(2, data + off, n);
			(void)write(2, "\n", 1);
		}
		if (buf_add(&s->in, data + off, n) == -1)
			abort();
		session_input(s);
		answer_pending(s, mode, &turn);
		fuzzl_poll(s);
		got = replies(s);
		if (handshake(s))
			got += replies(s);
		state_checks(s);
		total += got;
		for (i = 0; i < n; i++)
			lines += data[off + i] == '\n';
		if ((mode & 2) && nl != NULL && s->state != S_QUIT) {
			/* one reply per command line; none inside DATA but
			 * for the line that ends it */
			if (!in_data)
				CHECK(got == 1);
			else if (crlf && n == 3 && memcmp(data + off, ".\r\n",
			    3) == 0)
				CHECK(got == 1);
			else if (s->state == S_DATA)
				CHECK(got == 0);
		}
		if ((mode & 2) && nl != NULL && s->state == S_QUIT)
			CHECK(got <= 1);
		crlf = n >= 2 && data[off + n - 2] == '\r';
	}
	/* never more replies than lines (and a last one cut off) */
	CHECK((size_t)total <= lines + 1);

	session_cleanup(s);
	fuzzl_end(s);
	free(s->senders);
	free(s->helo);
	free(s->user);
	buf_free(&s->in);
	buf_free(&s->out);
	free(s);
	ipc_free(lenv.queue);
	lenv.queue = NULL;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	line_checks(data, size);
	session_checks(data, size);
	return 0;
}
