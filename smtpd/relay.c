/*
 * relay.c: the SMTP client of the queue process and its pool of
 * connections to the relay host (the local MTA).
 *
 * Up to "relay connections" connections are open at a time.  Each
 * carries one message at a time and is reused for the next; one that
 * is not used for RELAY_IDLE seconds says QUIT.  A large message keeps
 * one connection busy and no other: small ones go on the rest.  A
 * connection is opened only when a message needs one, and a reload that
 * lowers the number closes the extra idle ones.
 *
 * Where the relay host's EHLO advertises PIPELINING (RFC 2920), MAIL,
 * every RCPT and DATA go in one write and the replies are read in
 * order; otherwise each command waits for the reply to the one before.
 * Either way every reply decides the fate of a recipient: 2xx done, 5xx
 * failed for good, 4xx or any trouble with the connection leaves it
 * pending for a later attempt.
 *
 * The queue hears of results as events, not as calls from in here: a
 * finished message joins the list "finished", which an event of its own
 * drains, so the queue's handlers never run inside relay_deliver() or
 * inside this file's I/O callbacks, and may hand over the next message
 * at once.
 *
 * A relay host that cannot be reached (or refuses the greeting or EHLO)
 * is down: no message is taken until retry_at, then one connection
 * probes it, and once one says EHLO again the queue hears it is back.
 */
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <ctype.h>
#include <errno.h>
#include <event.h>
#include <event2/bufferevent.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"
#include "smsubmit.h"

#define RELAY_IDLE	10	/* seconds an unused connection stays */
#define RELAY_LINE_MAX	4096
#define BODY_CHUNK	65536
#define BODY_QUEUED	(4 * BODY_CHUNK) /* queued for the socket at most */
#define BODY_ROUNDS	4	/* of BODY_QUEUED written at once, at most */
#define DOWN_MIN	2	/* seconds before a failed relay is retried */
#define DOWN_MAX	300

#define EXT_8BITMIME	0x01
#define EXT_SMTPUTF8	0x02
#define EXT_SIZE	0x04
#define EXT_PIPELINING	0x08

enum relay_state {
	R_CONNECTING, R_GREETING, R_EHLO, R_IDLE, R_MAIL, R_RCPT,
	R_DATA, R_BODY, R_DOT, R_RSET, R_QUIT
};

struct relay_conn {
	TAILQ_ENTRY(relay_conn)	 entry;
	struct bufferevent	*bev;
	struct event		*idle;
	enum relay_state	 state;
	int			 ext;
	unsigned int		 epoch;		/* pool.epoch when it connected */
	unsigned int		 gen;		/* pool.gen: which host */
	int			 in_connect;	/* inside ..._socket_connect() */
	int			 connect_failed;
	struct qmsg		*m;		/* the message it carries */
	int			*rcpt;		/* the recipients sent, in order */
	int			 nrcpt;
	int			 next;		/* whose RCPT reply comes next */
	int			 mail_code;	/* the reply to MAIL */
	int			*accepted;	/* RCPTs the relay took */
	int			 naccepted;
	int			 fd;		/* the message file */
	int			 bol;
	char			 reply[RELAY_LINE_MAX];
};

TAILQ_HEAD(relay_conns, relay_conn);

static struct {
	struct event_base	*base;
	struct smsubmit_conf	*conf;
	relay_report_cb		 done;
	void			(*back)(void);
	struct relay_conns	 conns;
	int			 nconns;
	int			 nbusy;		/* connections with a message */
	unsigned int		 gen;		/* counts moves of the host */
	unsigned int		 epoch;		/* counts failures */
	int			 failures;
	time_t			 retry_at;
	struct event		*report;	/* drains finished */
	struct qmsg		**finished;	/* to report, oldest first */
	size_t			 nfinished;
	size_t			 finishedcap;
	int			 came_back;	/* to report too */
} pool;

static void	 relay_send(struct relay_conn *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
static int	 conn_connect(struct relay_conn *);
static int	 conn_ready(struct relay_conn *);

int
relay_reply_line(const char *line, int *code)
{
	if (strlen(line) < 3 || line[0] < '2' || line[0] > '5' ||
	    !isdigit((unsigned char)line[1]) ||
	    !isdigit((unsigned char)line[2]))
		return -1;
	if (line[3] != '\0' && line[3] != ' ' && line[3] != '-')
		return -1;
	*code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + line[2] - '0';
	return line[3] == '-' ? 0 : 1;
}

int
relay_free_slots(void)
{
	int	 n;

	/* a down relay: nothing until retry_at, then a single probe */
	if (pool.failures > 0)
		return time(NULL) >= pool.retry_at && pool.nbusy == 0;
	n = pool.conf->relay_connections - pool.nbusy;
	return n > 0 ? n : 0;
}

time_t
relay_retry_at(void)
{
	return pool.failures > 0 ? pool.retry_at : 0;
}

static void
relay_send(struct relay_conn *c, const char *fmt, ...)
{
	va_list	 ap;
	char	 line[RELAY_LINE_MAX], esc[LOG_LINE_MAX];
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		fatalx("%s: line too long", __func__);
	/* our words, but with the addresses the client gave */
	log_debug("relay > %s", log_escape(esc, sizeof(esc), line));
	memcpy(line + n, "\r\n", 2);
	bufferevent_write(c->bev, line, n + 2);
}

/*
 * Write what is queued now rather than when the event loop next comes
 * round: a turn of the queue's loop can be long (commits wait for the
 * disk), and a message waits several turns on its connection.  What
 * the socket does not take now libevent writes when it can, and its
 * errors come as events.
 */
static void
conn_flush(struct relay_conn *c)
{
	struct evbuffer	*out = bufferevent_get_output(c->bev);

	if (evbuffer_get_length(out) > 0)
		(void)evbuffer_write(out, bufferevent_getfd(c->bev));
}

/*
 * Note the relay's reply as the message's error or a recipient's reply,
 * as it came: the envelope keeps any octet, log lines and "smsubmit -q"
 * escape it, the DSN cleans it (bounce.c).
 */
static void
note_reply(struct relay_conn *c, char *dst, size_t len)
{
	strlcpy(dst, c->reply, len);
}

/* The connection's current reply, escaped for a log line. */
static const char *
reply_esc(struct relay_conn *c)
{
	static char	 esc[LOG_LINE_MAX];

	return log_escape(esc, sizeof(esc), c->reply);
}

/* --- the queue's events --- */

static void
report_cb(int fd, short ev, void *arg)
{
	struct qmsg	*m;
	size_t		 n;

	if (pool.came_back) {
		pool.came_back = 0;
		pool.back();
	}
	/*
	 * Only those finished before this event ran: a handler that hands
	 * over a message which ends at once adds to the list, for the next
	 * run of the event.
	 */
	for (n = pool.nfinished; n > 0 && pool.nfinished > 0; n--) {
		m = pool.finished[0];
		memmove(pool.finished, pool.finished + 1,
		    --pool.nfinished * sizeof(*pool.finished));
		pool.done(m);
	}
	if (pool.nfinished > 0)
		event_active(pool.report, EV_TIMEOUT, 1);
}

static void
report(struct qmsg *m)
{
	struct qmsg	**p;
	size_t		  cap;

	if (pool.nfinished == pool.finishedcap) {
		cap = pool.finishedcap ? 2 * pool.finishedcap : 16;
		if ((p = reallocarray(pool.finished, cap,
		    sizeof(*p))) == NULL)
			fatal("reallocarray");
		pool.finished = p;
		pool.finishedcap = cap;
	}
	pool.finished[pool.nfinished++] = m;
	event_active(pool.report, EV_TIMEOUT, 1);
}

/* --- connections --- */

static void
attach(struct relay_conn *c, struct qmsg *m)
{
	c->m = m;
	pool.nbusy++;
}

/* The attempt at the connection's message is over: the queue hears. */
static void
finish(struct relay_conn *c)
{
	struct qmsg	*m = c->m;

	if (c->fd != -1) {
		close(c->fd);
		c->fd = -1;
	}
	free(c->rcpt);
	c->rcpt = NULL;
	c->nrcpt = 0;
	free(c->accepted);
	c->accepted = NULL;
	c->naccepted = 0;
	if (m == NULL)
		return;
	c->m = NULL;
	pool.nbusy--;
	report(m);
}

static void conn_read(struct bufferevent *, void *);
static void conn_write(struct bufferevent *, void *);
static void conn_event(struct bufferevent *, short, void *);
static void conn_idle(int, short, void *);

static struct relay_conn *
conn_new(void)
{
	struct relay_conn	*c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		fatal("calloc");
	if ((c->idle = evtimer_new(pool.base, conn_idle, c)) == NULL)
		fatalx("evtimer_new");
	c->fd = -1;
	TAILQ_INSERT_TAIL(&pool.conns, c, entry);
	pool.nconns++;
	return c;
}

static void
conn_free(struct relay_conn *c)
{
	finish(c);
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	event_free(c->idle);
	TAILQ_REMOVE(&pool.conns, c, entry);
	pool.nconns--;
	free(c);
}

/* Connections not on their way out. */
static int
conns_open(void)
{
	struct relay_conn	*c;
	int			 n = 0;

	TAILQ_FOREACH(c, &pool.conns, entry)
		if (c->state != R_QUIT || c->m != NULL)
			n++;
	return n;
}

/*
 * The connection is lost or useless: drop it, keep what is pending.  why
 * is ours; with_reply adds the relay's last reply (a 421), which is also
 * kept as the message's error.  c is gone after: -1.
 */
static int
lose_conn(struct relay_conn *c, const char *why, int with_reply)
{
	time_t	 now = time(NULL);
	int	 early = c->state <= R_EHLO;

	if (with_reply)
		log_info("relay %s: %s: %s", pool.conf->relay_name, why,
		    reply_esc(c));
	else
		log_info("relay %s: %s", pool.conf->relay_name, why);
	/* the connections that failed together count once */
	if (early && c->epoch == pool.epoch && c->gen == pool.gen) {
		pool.epoch++;
		pool.failures++;
		pool.retry_at = now + (DOWN_MIN << (pool.failures < 8 ?
		    pool.failures - 1 : 7));
		if (pool.retry_at > now + DOWN_MAX)
			pool.retry_at = now + DOWN_MAX;
	}
	if (c->m != NULL && with_reply)
		note_reply(c, c->m->error, sizeof(c->m->error));
	else if (c->m != NULL)
		strlcpy(c->m->error, why, sizeof(c->m->error));
	conn_free(c);
	return -1;
}

static int
fail_conn(struct relay_conn *c, const char *why)
{
	return lose_conn(c, why, 0);
}

static void
quit(struct relay_conn *c)
{
	evtimer_del(c->idle);
	relay_send(c, "QUIT");
	c->state = R_QUIT;
	conn_flush(c);
}

/*
 * The connection is closed after QUIT.  A message that came meanwhile
 * goes on a new one; otherwise it is gone (-1).
 */
static int
conn_closed(struct relay_conn *c)
{
	bufferevent_free(c->bev);
	c->bev = NULL;
	if (c->m != NULL)
		return conn_connect(c);
	conn_free(c);
	return -1;
}

static int
start_mail(struct relay_conn *c)
{
	struct qmsg	*m = c->m;
	struct stat	 st;
	char		 path[64], size[32] = "";
	int		 i;

	evtimer_del(c->idle);
	snprintf(path, sizeof(path), "queue/%s.msg", m->id);
	if ((c->fd = open(path, O_RDONLY | O_CLOEXEC)) == -1 ||
	    fstat(c->fd, &st) == -1 || st.st_size < m->body ||
	    lseek(c->fd, m->body, SEEK_SET) == -1) {
		log_warn("message %s: cannot open", m->id);
		strlcpy(m->error, "cannot open message file",
		    sizeof(m->error));
		finish(c);
		return conn_ready(c);
	}
	if ((c->rcpt = calloc(m->nrcpts, sizeof(int))) == NULL ||
	    (c->accepted = calloc(m->nrcpts, sizeof(int))) == NULL)
		fatal("calloc");
	for (i = 0; i < m->nrcpts; i++)
		if (m->rcpts[i].state == RCPT_PENDING)
			c->rcpt[c->nrcpt++] = i;
	if (c->nrcpt == 0) {
		/* the queue hands over only messages with some pending */
		finish(c);
		return conn_ready(c);
	}
	c->next = 0;
	c->mail_code = 0;
	if (c->ext & EXT_SIZE)
		snprintf(size, sizeof(size), " SIZE=%lld",
		    (long long)(st.st_size - m->body));
	relay_send(c, "MAIL FROM:<%s>%s%s%s", m->from, size,
	    (m->flags & ENV_8BITMIME) && (c->ext & EXT_8BITMIME) ?
	    " BODY=8BITMIME" : "",
	    (m->flags & ENV_SMTPUTF8) && (c->ext & EXT_SMTPUTF8) ?
	    " SMTPUTF8" : "");
	if (c->ext & EXT_PIPELINING) {
		/* DATA last: the body waits for its 354 (RFC 2920) */
		for (i = 0; i < c->nrcpt; i++)
			relay_send(c, "RCPT TO:<%s>",
			    m->rcpts[c->rcpt[i]].addr);
		relay_send(c, "DATA");
	}
	c->state = R_MAIL;
	conn_flush(c);
	return 0;
}

/*
 * The connection can take a message: the one waiting for it, or it
 * waits (idle) for one, or says QUIT when there are more than
 * "relay connections" or the relay host moved.
 */
static int
conn_ready(struct relay_conn *c)
{
	struct timeval	 tv = { RELAY_IDLE, 0 };

	if (c->gen != pool.gen ||
	    (c->m == NULL && conns_open() > pool.conf->relay_connections)) {
		/* a message on it goes on a new connection to the new host */
		quit(c);
		return 0;
	}
	if (c->m != NULL)
		return start_mail(c);
	c->state = R_IDLE;
	evtimer_add(c->idle, &tv);
	return 0;
}

/* The transaction is over; RSET if the relay may hold state. */
static int
end_transaction(struct relay_conn *c, int rset)
{
	finish(c);
	if (rset) {
		relay_send(c, "RSET");
		c->state = R_RSET;
		return 0;
	}
	return conn_ready(c);
}

static void
pending_error(struct relay_conn *c)
{
	note_reply(c, c->m->error, sizeof(c->m->error));
}

static void
refuse_accepted(struct relay_conn *c, int permanent)
{
	struct qmsg	*m = c->m;
	int		 i;

	if (!permanent)
		return;
	for (i = 0; i < c->naccepted; i++) {
		m->rcpts[c->accepted[i]].state = RCPT_FAILED;
		note_reply(c, m->rcpts[c->accepted[i]].reply,
		    sizeof(m->rcpts[0].reply));
	}
}

/*
 * Queue the body for the socket, up to BODY_QUEUED octets at a time,
 * and the final dot after it; write it at once while the socket takes
 * it all, up to BODY_ROUNDS times, so that a small message goes in one
 * turn of the loop and a large one does not hold the loop.  What is
 * left queued is written by libevent, and conn_write() comes back for
 * more once it has gone.
 */
static int
to_evbuffer(void *arg, const char *p, size_t n, int in_input)
{
	(void)in_input;
	return evbuffer_add(arg, p, n);
}

static int
send_body(struct relay_conn *c)
{
	struct evbuffer	*queued = bufferevent_get_output(c->bev);
	char		 chunk[BODY_CHUNK];
	ssize_t		 n;
	int		 rounds;

	for (rounds = 0; ; rounds++) {
		while (c->state == R_BODY &&
		    evbuffer_get_length(queued) < BODY_QUEUED) {
			if ((n = read(c->fd, chunk, sizeof(chunk))) == -1) {
				log_warn("message %s: read", c->m->id);
				return fail_conn(c, "cannot read message file");
			}
			if (n == 0) {
				if (!c->bol)
					bufferevent_write(c->bev, "\r\n", 2);
				bufferevent_write(c->bev, ".\r\n", 3);
				c->state = R_DOT;
				break;
			}
			/* straight into the connection's output: one copy */
			if (body_stuff_to(&c->bol, chunk, n, to_evbuffer,
			    queued) == -1)
				fatalx("body_stuff");
		}
		if (c->state == R_BODY && rounds == BODY_ROUNDS)
			return 0;
		conn_flush(c);
		if (c->state != R_BODY || evbuffer_get_length(queued) > 0)
			return 0;
	}
}

static void
ehlo_line(struct relay_conn *c, const char *line)
{
	const char	*kw = line + 4;

	if (strlen(line) < 4)
		return;
	if (strcasecmp(kw, "8BITMIME") == 0)
		c->ext |= EXT_8BITMIME;
	else if (strcasecmp(kw, "SMTPUTF8") == 0)
		c->ext |= EXT_SMTPUTF8;
	else if (strcasecmp(kw, "PIPELINING") == 0)
		c->ext |= EXT_PIPELINING;
	else if (strncasecmp(kw, "SIZE", 4) == 0 &&
	    (kw[4] == '\0' || kw[4] == ' '))
		c->ext |= EXT_SIZE;
}

/* The reply to one RCPT, that of the recipient c->rcpt[c->next]. */
static void
rcpt_reply(struct relay_conn *c, int code)
{
	struct qmsg	*m = c->m;
	int		 i = c->rcpt[c->next];

	if (code / 100 == 2)
		c->accepted[c->naccepted++] = i;
	else if (code / 100 == 5) {
		m->rcpts[i].state = RCPT_FAILED;
		note_reply(c, m->rcpts[i].reply, sizeof(m->rcpts[0].reply));
	} else
		pending_error(c);
}

/* One complete reply from the relay; -1 if c is gone. */
static int
reply(struct relay_conn *c, int code)
{
	struct qmsg	*m = c->m;
	int		 i, pipelined = c->ext & EXT_PIPELINING;

	if (code == 421 && c->state != R_QUIT)
		/* the relay is closing the connection: retry on a new one */
		return lose_conn(c, "closing the connection", 1);
	switch (c->state) {
	case R_GREETING:
		if (code / 100 != 2)
			return fail_conn(c, "bad greeting");
		relay_send(c, "EHLO %s", pool.conf->hostname);
		c->state = R_EHLO;
		return 0;
	case R_EHLO:
		if (code / 100 != 2)
			return fail_conn(c, "EHLO refused");
		if (pool.failures > 0 && c->gen == pool.gen) {
			pool.came_back = 1;
			event_active(pool.report, EV_TIMEOUT, 1);
		}
		pool.failures = 0;
		pool.retry_at = 0;
		return conn_ready(c);
	case R_MAIL:
		c->mail_code = code;
		if (code / 100 != 2) {
			if (code / 100 == 5)
				for (i = 0; i < c->nrcpt; i++) {
					m->rcpts[c->rcpt[i]].state =
					    RCPT_FAILED;
					note_reply(c, m->rcpts[c->rcpt[i]].reply,
					    sizeof(m->rcpts[0].reply));
				}
			pending_error(c);
			if (!pipelined)
				return end_transaction(c, 1);
			/* the replies to RCPT and DATA say nothing more */
			c->state = R_RCPT;
			return 0;
		}
		if (!pipelined)
			relay_send(c, "RCPT TO:<%s>",
			    m->rcpts[c->rcpt[0]].addr);
		c->state = R_RCPT;
		return 0;
	case R_RCPT:
		if (c->mail_code / 100 == 2)
			rcpt_reply(c, code);
		if (++c->next < c->nrcpt) {
			if (!pipelined)
				relay_send(c, "RCPT TO:<%s>",
				    m->rcpts[c->rcpt[c->next]].addr);
			return 0;
		}
		if (pipelined) {
			c->state = R_DATA;
			return 0;
		}
		if (c->naccepted == 0)
			return end_transaction(c, 1);
		relay_send(c, "DATA");
		c->state = R_DATA;
		return 0;
	case R_DATA:
		if (c->mail_code / 100 != 2 || c->naccepted == 0) {
			/* a pipelined DATA after no MAIL or RCPT was taken */
			if (code != 354)
				return end_transaction(c, 1);
			/* no body is meant: the connection is useless */
			finish(c);
			return fail_conn(c, "354 to DATA without recipients");
		}
		if (code == 354) {
			c->state = R_BODY;
			c->bol = 1;
			return send_body(c);
		}
		refuse_accepted(c, code / 100 == 5);
		pending_error(c);
		return end_transaction(c, 1);
	case R_DOT:
		if (code / 100 == 2) {
			for (i = 0; i < c->naccepted; i++)
				m->rcpts[c->accepted[i]].state = RCPT_DONE;
			log_info("message %s: relay %s accepted %d "
			    "recipients: %s", m->id, pool.conf->relay_name,
			    c->naccepted, reply_esc(c));
		} else {
			refuse_accepted(c, code / 100 == 5);
			pending_error(c);
			log_info("message %s: relay %s refused the data: %s",
			    m->id, pool.conf->relay_name, reply_esc(c));
		}
		return end_transaction(c, 0);
	case R_RSET:
		if (code / 100 != 2)
			return fail_conn(c, "RSET refused");
		return conn_ready(c);
	case R_QUIT:
		return conn_closed(c);
	default:
		return fail_conn(c, "unexpected reply");
	}
}

static void
conn_read(struct bufferevent *bev, void *arg)
{
	struct relay_conn	*c = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	char			*line, esc[LOG_LINE_MAX];
	size_t			 len;
	int			 code, last;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) !=
	    NULL) {
		if (log_getverbose() > 0)
			log_debug("relay < %s", log_escape(esc, sizeof(esc),
			    line));
		if (c->state == R_BODY || c->state == R_CONNECTING ||
		    c->state == R_IDLE || len >= RELAY_LINE_MAX ||
		    (last = relay_reply_line(line, &code)) == -1) {
			free(line);
			fail_conn(c, c->state == R_IDLE ?
			    "relay spoke out of turn" : "garbage reply");
			return;
		}
		if (c->state == R_EHLO)
			ehlo_line(c, line);
		strlcpy(c->reply, line, sizeof(c->reply));
		free(line);
		/* a new bufferevent: the connection after QUIT */
		if (last && (reply(c, code) == -1 || c->bev != bev))
			return;
	}
	if (evbuffer_get_length(in) > RELAY_LINE_MAX) {
		fail_conn(c, "reply line too long");
		return;
	}
	conn_flush(c);
}

static void
conn_write(struct bufferevent *bev, void *arg)
{
	struct relay_conn	*c = arg;

	if (c->state == R_BODY)
		send_body(c);
}

static void
conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct relay_conn	*c = arg;
	int			 on = 1;

	if (c->in_connect) {
		/* the connect failed at once: its caller sees to it */
		c->connect_failed = 1;
		return;
	}
	if (what & BEV_EVENT_CONNECTED) {
		/* the final dot must not wait for an ACK (Nagle) */
		if (setsockopt(bufferevent_getfd(bev), IPPROTO_TCP,
		    TCP_NODELAY, &on, sizeof(on)) == -1)
			log_warn("relay TCP_NODELAY");
		c->state = R_GREETING;
		return;
	}
	if (c->state == R_QUIT) {
		conn_closed(c);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		fail_conn(c, "timeout");
	else if (what & BEV_EVENT_EOF)
		fail_conn(c, "connection closed by relay");
	else
		fail_conn(c, evutil_socket_error_to_string(
		    evutil_socket_geterror(bufferevent_getfd(bev))));
}

static void
conn_idle(int fd, short ev, void *arg)
{
	struct relay_conn	*c = arg;

	if (c->state == R_IDLE && c->m == NULL)
		quit(c);
}

/* A new connection for c's message; -1 if it failed and c is gone. */
static int
conn_connect(struct relay_conn *c)
{
	struct timeval	 tv = { pool.conf->relay_timeout, 0 };
	int		 rv;

	c->ext = 0;
	c->epoch = pool.epoch;
	c->gen = pool.gen;
	c->bev = bufferevent_socket_new(pool.base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		fatalx("bufferevent_socket_new");
	bufferevent_setcb(c->bev, conn_read, conn_write, conn_event, c);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->state = R_CONNECTING;
	c->in_connect = 1;
	c->connect_failed = 0;
	rv = bufferevent_socket_connect(c->bev,
	    (struct sockaddr *)&pool.conf->relay_ss, pool.conf->relay_sslen);
	c->in_connect = 0;
	if (rv == -1 || c->connect_failed)
		return fail_conn(c, "cannot connect");
	return 0;
}

/*
 * Take m (the queue saw relay_free_slots() > 0): on an idle connection,
 * one finishing a RSET, a new one, or one closing (it reconnects).
 */
void
relay_deliver(struct qmsg *m)
{
	struct relay_conn	*c;

	TAILQ_FOREACH(c, &pool.conns, entry)
		if (c->state == R_IDLE && c->m == NULL &&
		    c->gen == pool.gen) {
			attach(c, m);
			start_mail(c);
			return;
		}
	TAILQ_FOREACH(c, &pool.conns, entry)
		if (c->state == R_RSET && c->m == NULL &&
		    c->gen == pool.gen) {
			attach(c, m);	/* its reply starts the message */
			return;
		}
	/* one still closing counts: the relay host may not know yet */
	if (pool.nconns >= pool.conf->relay_connections)
		TAILQ_FOREACH(c, &pool.conns, entry)
			if (c->state == R_QUIT && c->m == NULL) {
				attach(c, m);
				return;
			}
	c = conn_new();
	attach(c, m);
	conn_connect(c);
}

void
relay_flush(void)
{
	/* the operator says the relay is worth a try now */
	pool.retry_at = 0;
}

void
relay_moved(void)
{
	struct relay_conn	*c, *next;

	/* the old host's failures say nothing of the new one */
	pool.retry_at = 0;
	pool.failures = 0;
	pool.gen++;
	TAILQ_FOREACH_SAFE(c, &pool.conns, entry, next)
		if (c->state == R_IDLE && c->m == NULL)
			quit(c);
	/* the others say QUIT when their message is done */
}

void
relay_reconf(void)
{
	struct relay_conn	*c;

	/* fewer connections: the idle ones above the number go now */
	TAILQ_FOREACH(c, &pool.conns, entry) {
		if (conns_open() <= pool.conf->relay_connections)
			break;
		if (c->state == R_IDLE && c->m == NULL)
			quit(c);
	}
}

void
relay_init(struct event_base *base, struct smsubmit_conf *conf,
    relay_report_cb done, void (*back)(void))
{
	pool.base = base;
	pool.conf = conf;
	pool.done = done;
	pool.back = back;
	TAILQ_INIT(&pool.conns);
	if ((pool.report = event_new(base, -1, 0, report_cb, NULL)) == NULL)
		fatalx("event_new");
}
