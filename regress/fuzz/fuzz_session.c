/*
 * fuzz_session.c: the SMTP dialogue as the listener drives it.  The input
 * is a client's byte stream, fed to session_input() a line at a time in
 * pieces of random size, with the answers of [auth] and [queue] (and the
 * end of a STARTTLS handshake) chosen by a seed at its start.
 *
 * The property, SPEC section 5: every complete line the client sends
 * outside DATA, and the final dot of a message, gets exactly one reply (a
 * multi-line reply counts as one), and the server says nothing else but a
 * 421 before it closes.  Replies are counted in the session's output
 * buffer, independently of the session's own accounting (s->owed), which
 * must never have had to drop or make up a reply (env.reply_faults).
 *
 * [auth] is played by fuzz_listener.c behind the listener's real auth
 * worker channel, its answers (a challenge, success, each failure, a
 * failure held back) chosen by the seed too.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <tls.h>
#include <unistd.h>

#include "log.h"
#include "smsubmit.h"
#include "fuzz.h"
#include "fuzz_listener.h"

#define STREAM_CAP	(96 * 1024)

static struct smsubmit_conf	 conf;
static uint32_t			 rnd;

static const char conf_text[] =
    "listen on 127.0.0.1 port 465 tls\n"
    "tls certificate \"/nonexistent/c.pem\" key \"/nonexistent/k.pem\"\n"
    "limit message-size 4K\n"
    "limit recipients 3\n"
    "limit user messages 100 per 1h\n"
    "limit user recipients 100 per 1h\n";

static uint32_t
next(void)
{
	/* xorshift32: the input decides, the run is repeatable */
	rnd ^= rnd << 13;
	rnd ^= rnd >> 17;
	rnd ^= rnd << 5;
	return rnd;
}

/* Final reply lines ("NNN " or "NNN") in the output since mark. */
static int
replies(struct session *s, size_t mark, int *closing)
{
	const char	*p = buf_head(&s->out) + mark, *end, *eol;
	int		 n = 0;

	end = buf_head(&s->out) + buf_used(&s->out);
	for (; p < end; p = eol + 1) {
		eol = memchr(p, '\n', end - p);
		CHECK(eol != NULL && eol - p >= 4 && eol[-1] == '\r');
		CHECK(p[0] >= '2' && p[0] <= '5');
		if (p[3] == ' ' || eol - p == 4) {
			n++;
			*closing = strncmp(p, "421", 3) == 0;
		} else
			CHECK(p[3] == '-');
	}
	return n;
}

static void
answer(struct session *s, uint32_t type, int fd, const void *payload,
    size_t len)
{
	struct ipc_msg	 msg;

	msg.type = type;
	msg.peerid = s->id;
	msg.fd = fd;
	msg.data = payload;
	msg.len = len;
	if (type == IMSG_LIMIT_RESULT)
		session_limit_result(s, &msg);
	else
		session_queue_result(s, &msg);
}

static void
answer_us(struct session *s, uint32_t type, int fd, uint32_t result,
    const char *str)
{
	uint8_t	 p[64];
	size_t	 n = strlen(str) + 1;

	memcpy(p, &result, 4);
	memcpy(p + 4, str, n);
	answer(s, type, fd, p, 4 + n);
}

static enum fuzzl_answer
auth_pick(void *arg)
{
	return next() % FUZZL_NANSWERS;
}

/* What another process says to the session waiting for it. */
static void
resolve(struct session *s)
{
	uint32_t		 u;
	int			 fd;

	switch (s->pending) {
	case PENDING_NONE:
		break;
	case PENDING_AUTH:
		fuzzl_auth(s, auth_pick, NULL);
		break;
	case PENDING_FILE:
		if (next() % 4 != 0 &&
		    (fd = open("/dev/null", O_WRONLY | O_CLOEXEC)) != -1)
			answer_us(s, IMSG_MSG_FILE, fd, QUEUE_OK,
			    "0123456789abcdef");
		else
			answer_us(s, IMSG_MSG_FILE, -1, QUEUE_R_TEMP, "");
		break;
	case PENDING_COMMIT:
		answer_us(s, IMSG_MSG_RESULT, -1, next() % 4 == 0 ?
		    QUEUE_R_NOSPACE : QUEUE_OK, s->msgid);
		break;
	case PENDING_LIMIT:
		u = next() % 4 == 0;	/* over a per-user limit */
		answer(s, IMSG_LIMIT_RESULT, -1, &u, sizeof(u));
		break;
	}
}

static void
setup(void)
{
	static int	 done;

	if (done)
		return;
	done = 1;
	log_init(0, 0);		/* syslog: quiet, and cheap if absent */
	if (tls_init() == -1)
		abort();
	if (parse_config_mem("fuzz.conf", conf_text, sizeof(conf_text) - 1,
	    &conf) == -1)
		abort();
	fuzzl_init();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct listener_env	 env;
	struct session		 s;
	const uint8_t		*p, *end, *eol;
	size_t			 mark, piece, len;
	int			 owed, got, closing = 0, commands;

	setup();
	if (size < 5)
		return 0;
	if (size > STREAM_CAP)
		size = STREAM_CAP;
	memcpy(&rnd, data + 1, 4);
	rnd |= 1;

	memset(&env, 0, sizeof(env));
	env.conf = &conf;
	env.queue = ipc_open(-1, "queue");
	env.auth_ready = 1;
	strlcpy(env.mechs, "PLAIN LOGIN", sizeof(env.mechs));
	memset(&s, 0, sizeof(s));
	s.env = &env;
	s.conf = &conf;
	s.id = 1;
	s.fd = -1;
	s.msgfd = -1;
	strlcpy(s.client, "192.0.2.1", sizeof(s.client));
	strlcpy(s.local, "192.0.2.2;465", sizeof(s.local));
	buf_init(&s.in, 64 * 1024);
	buf_init(&s.out, 1024 * 1024);
	/* a context that never connects: the Received: line's TLS fields */
	s.tls = tls_server();
	if (data[0] & 1)
		s.flags |= SF_TLS;	/* port 465, or 587 before STARTTLS */

	fuzzl_begin(&s);
	session_start(&s);
	CHECK(replies(&s, 0, &closing) == 1);
	CHECK(strncmp(buf_head(&s.out), "220 ", 4) == 0);

	p = data + 5;
	end = data + size;
	while (p < end && s.state != S_QUIT) {
		eol = memchr(p, '\n', end - p);
		len = eol != NULL ? (size_t)(eol - p) + 1 : (size_t)(end - p);
		commands = s.state != S_DATA;
		mark = buf_used(&s.out);
		/* the line in pieces, as TCP may deliver it */
		while (len > 0 && s.state != S_QUIT) {
			/* no more than the listener reads at once */
			piece = 1 + next() % MINIMUM(len, 16384);
			if (buf_add(&s.in, p, piece) == -1)
				break;	/* the listener would not read more */
			p += piece;
			len -= piece;
			session_input(&s);
			while (s.pending != PENDING_NONE)
				resolve(&s);
			fuzzl_poll(&s);
			if (s.flags & SF_STARTTLS) {
				/* the handshake succeeds */
				s.flags |= SF_TLS;
				session_start(&s);
			}
		}
		p += len;
		got = replies(&s, mark, &closing);
		if (eol == NULL) {
			/* an unfinished line: at most the early 500 */
			CHECK(got <= 1);
			owed = got;
		}
		else if (commands)
			owed = 1;		/* a command or SASL line */
		else
			owed = s.state != S_DATA;	/* the final dot */
		if (s.state == S_QUIT)
			/* closing: a last reply (221, 421, 500) or none */
			CHECK(got <= 1);
		else
			CHECK(got == owed);
		CHECK(s.owed == 0 || s.state == S_QUIT);
		/* authenticated only by [auth]'s word, as the user it named */
		if (s.flags & SF_AUTHED)
			CHECK(fuzzl_given[FUZZL_OK] > 0 &&
			    strcmp(s.user, "alice") == 0);
		if (s.state == S_MAIL || s.state == S_RCPT ||
		    s.state == S_DATA)
			CHECK(s.flags & SF_AUTHED);
	}
	(void)closing;
	CHECK(env.reply_faults == 0);
	/* FUZZ_SHOW=1: the replies on fd 2, to see how far an input goes */
	if (getenv("FUZZ_SHOW") != NULL)
		(void)!write(2, buf_head(&s.out), buf_used(&s.out));

	session_cleanup(&s);
	fuzzl_end(&s);
	free(s.senders);
	free(s.helo);
	free(s.user);
	tls_free(s.tls);
	buf_free(&s.in);
	buf_free(&s.out);
	ipc_free(env.queue);
	return 0;
}
