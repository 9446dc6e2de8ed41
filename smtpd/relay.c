/*
 * relay.c: the SMTP client of the queue process.  It keeps one
 * connection to the relay host (the local MTA), delivers one message at
 * a time over it and reuses it for the next.  Every reply decides the
 * fate of a recipient: 2xx done, 5xx failed for good, 4xx or any trouble
 * with the connection leaves it pending for a later attempt.
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
#define DOWN_MIN	2	/* seconds before a failed relay is retried */
#define DOWN_MAX	300

#define EXT_8BITMIME	0x01
#define EXT_SMTPUTF8	0x02
#define EXT_SIZE	0x04

enum relay_state {
	R_NONE, R_CONNECTING, R_GREETING, R_EHLO, R_IDLE, R_MAIL, R_RCPT,
	R_DATA, R_BODY, R_DOT, R_RSET, R_QUIT
};

static struct {
	struct event_base	*base;
	struct smsubmit_conf	*conf;
	struct bufferevent	*bev;
	struct event		*idle;
	enum relay_state	 state;
	int			 ext;
	struct qmsg		*m;
	int			 rcpt;		/* the RCPT in flight */
	int			*accepted;	/* RCPTs the relay took */
	int			 naccepted;
	int			 fd;		/* the message file */
	int			 bol;
	int			 failures;
	time_t			 retry_at;
	char			 reply[RELAY_LINE_MAX];
} r;

static void	 relay_send(const char *, ...)
		    __attribute__((format(printf, 1, 2)));
static void	 connect_relay(void);

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
relay_ready(void)
{
	return r.m == NULL;
}

time_t
relay_retry_at(void)
{
	return r.state == R_NONE ? r.retry_at : 0;
}

static void
relay_send(const char *fmt, ...)
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
	bufferevent_write(r.bev, line, n + 2);
}

/*
 * Note the relay's reply as the message's error or a recipient's reply,
 * as it came: the envelope keeps any octet, log lines and "smsubmit -q"
 * escape it, the DSN cleans it (bounce.c).
 */
static void
note_reply(char *dst, size_t len)
{
	strlcpy(dst, r.reply, len);
}

/* The relay's current reply, escaped for a log line. */
static const char *
reply_esc(void)
{
	static char	 esc[LOG_LINE_MAX];

	return log_escape(esc, sizeof(esc), r.reply);
}

static void
finish(void)
{
	struct qmsg	*m = r.m;

	if (r.fd != -1) {
		close(r.fd);
		r.fd = -1;
	}
	r.m = NULL;
	r.naccepted = 0;
	free(r.accepted);
	r.accepted = NULL;
	if (m != NULL)
		queue_relay_done(m);
}

static void
go_idle(void)
{
	struct timeval	 tv = { RELAY_IDLE, 0 };

	r.state = R_IDLE;
	evtimer_add(r.idle, &tv);
}

/*
 * The connection is lost or useless: drop it, keep what is pending.  why
 * is ours; with_reply adds the relay's last reply (a 421), which is also
 * kept as the message's error.
 */
static void
lose_conn(const char *why, int with_reply)
{
	int	 early = r.state <= R_EHLO;

	if (with_reply)
		log_info("relay %s: %s: %s", r.conf->relay_name, why,
		    reply_esc());
	else
		log_info("relay %s: %s", r.conf->relay_name, why);
	if (r.bev != NULL) {
		bufferevent_free(r.bev);
		r.bev = NULL;
	}
	evtimer_del(r.idle);
	if (early) {
		r.failures++;
		r.retry_at = time(NULL) + (DOWN_MIN << (r.failures < 8 ?
		    r.failures - 1 : 7));
		if (r.retry_at > time(NULL) + DOWN_MAX)
			r.retry_at = time(NULL) + DOWN_MAX;
	}
	r.state = R_NONE;
	if (r.m != NULL && with_reply)
		note_reply(r.m->error, sizeof(r.m->error));
	else if (r.m != NULL)
		strlcpy(r.m->error, why, sizeof(r.m->error));
	finish();
}

static void
fail_conn(const char *why)
{
	lose_conn(why, 0);
}

static int
next_rcpt(int from)
{
	int	 i;

	for (i = from; i < r.m->nrcpts; i++)
		if (r.m->rcpts[i].state == RCPT_PENDING)
			return i;
	return -1;
}

static void
start_mail(void)
{
	struct stat	 st;
	char		 path[64], size[32] = "";

	evtimer_del(r.idle);
	snprintf(path, sizeof(path), "queue/%s.msg", r.m->id);
	if ((r.fd = open(path, O_RDONLY | O_CLOEXEC)) == -1 ||
	    fstat(r.fd, &st) == -1) {
		log_warn("message %s: cannot open", r.m->id);
		strlcpy(r.m->error, "cannot open message file",
		    sizeof(r.m->error));
		go_idle();
		finish();
		return;
	}
	if ((r.accepted = calloc(r.m->nrcpts, sizeof(int))) == NULL)
		fatal("calloc");
	if (r.ext & EXT_SIZE)
		snprintf(size, sizeof(size), " SIZE=%lld",
		    (long long)st.st_size);
	relay_send("MAIL FROM:<%s>%s%s%s", r.m->from, size,
	    (r.m->flags & ENV_8BITMIME) && (r.ext & EXT_8BITMIME) ?
	    " BODY=8BITMIME" : "",
	    (r.m->flags & ENV_SMTPUTF8) && (r.ext & EXT_SMTPUTF8) ?
	    " SMTPUTF8" : "");
	r.state = R_MAIL;
}

/* The transaction is over; RSET if the relay may hold state. */
static void
end_transaction(int rset)
{
	if (rset) {
		relay_send("RSET");
		r.state = R_RSET;
	} else
		go_idle();
	finish();
}

static void
pending_error(void)
{
	note_reply(r.m->error, sizeof(r.m->error));
}

static void
refuse_accepted(int permanent)
{
	int	 i;

	for (i = 0; i < r.naccepted; i++) {
		if (permanent) {
			r.m->rcpts[r.accepted[i]].state = RCPT_FAILED;
			note_reply(r.m->rcpts[r.accepted[i]].reply,
			    sizeof(r.m->rcpts[0].reply));
		}
	}
}

static void
send_body(void)
{
	struct buf	 out;
	char		 chunk[BODY_CHUNK];
	ssize_t		 n;

	buf_init(&out, 2 * BODY_CHUNK + 8);
	if ((n = read(r.fd, chunk, sizeof(chunk))) == -1) {
		log_warn("message %s: read", r.m->id);
		fail_conn("cannot read message file");
		return;
	}
	if (n > 0) {
		if (body_stuff(&r.bol, chunk, n, &out) == -1)
			fatalx("body_stuff");
		bufferevent_write(r.bev, buf_head(&out), buf_used(&out));
	} else {
		if (!r.bol)
			bufferevent_write(r.bev, "\r\n", 2);
		bufferevent_write(r.bev, ".\r\n", 3);
		r.state = R_DOT;
	}
	buf_free(&out);
}

static void
write_cb(struct bufferevent *bev, void *arg)
{
	if (r.state == R_BODY)
		send_body();
}

static void
ehlo_line(const char *line)
{
	const char	*kw = line + 4;

	if (strlen(line) < 4)
		return;
	if (strcasecmp(kw, "8BITMIME") == 0)
		r.ext |= EXT_8BITMIME;
	else if (strcasecmp(kw, "SMTPUTF8") == 0)
		r.ext |= EXT_SMTPUTF8;
	else if (strncasecmp(kw, "SIZE", 4) == 0 &&
	    (kw[4] == '\0' || kw[4] == ' '))
		r.ext |= EXT_SIZE;
}

/* One complete reply from the relay. */
static void
reply(int code)
{
	struct qmsg	*m = r.m;
	int		 i;

	if (code == 421 && r.state != R_QUIT) {
		/* the relay is closing the connection: retry on a new one */
		lose_conn("closing the connection", 1);
		return;
	}
	switch (r.state) {
	case R_GREETING:
		if (code / 100 != 2) {
			fail_conn("bad greeting");
			return;
		}
		relay_send("EHLO %s", r.conf->hostname);
		r.state = R_EHLO;
		return;
	case R_EHLO:
		if (code / 100 != 2) {
			fail_conn("EHLO refused");
			return;
		}
		if (r.failures > 0)
			queue_relay_back();
		r.failures = 0;
		r.retry_at = 0;
		break;
	case R_MAIL:
		if (code / 100 == 2) {
			r.rcpt = next_rcpt(0);
			relay_send("RCPT TO:<%s>", m->rcpts[r.rcpt].addr);
			r.state = R_RCPT;
			return;
		}
		if (code / 100 == 5)
			for (i = 0; i < m->nrcpts; i++)
				if (m->rcpts[i].state == RCPT_PENDING) {
					m->rcpts[i].state = RCPT_FAILED;
					note_reply(m->rcpts[i].reply,
					    sizeof(m->rcpts[i].reply));
				}
		pending_error();
		end_transaction(1);
		return;
	case R_RCPT:
		if (code / 100 == 2)
			r.accepted[r.naccepted++] = r.rcpt;
		else if (code / 100 == 5) {
			m->rcpts[r.rcpt].state = RCPT_FAILED;
			note_reply(m->rcpts[r.rcpt].reply,
			    sizeof(m->rcpts[0].reply));
		} else
			pending_error();
		if ((r.rcpt = next_rcpt(r.rcpt + 1)) != -1) {
			relay_send("RCPT TO:<%s>", m->rcpts[r.rcpt].addr);
			return;
		}
		if (r.naccepted == 0) {
			end_transaction(1);
			return;
		}
		relay_send("DATA");
		r.state = R_DATA;
		return;
	case R_DATA:
		if (code == 354) {
			r.state = R_BODY;
			r.bol = 1;
			send_body();
			return;
		}
		refuse_accepted(code / 100 == 5);
		pending_error();
		end_transaction(1);
		return;
	case R_DOT:
		if (code / 100 == 2) {
			for (i = 0; i < r.naccepted; i++)
				m->rcpts[r.accepted[i]].state = RCPT_DONE;
			log_info("message %s: relay %s accepted %d "
			    "recipients: %s", m->id, r.conf->relay_name,
			    r.naccepted, reply_esc());
		} else {
			refuse_accepted(code / 100 == 5);
			pending_error();
			log_info("message %s: relay %s refused the data: %s",
			    m->id, r.conf->relay_name, reply_esc());
		}
		end_transaction(0);
		return;
	case R_RSET:
		if (code / 100 != 2) {
			fail_conn("RSET refused");
			return;
		}
		break;
	case R_QUIT:
		bufferevent_free(r.bev);
		r.bev = NULL;
		r.state = R_NONE;
		if (r.m != NULL)
			connect_relay();
		return;
	default:
		fail_conn("unexpected reply");
		return;
	}
	/* the connection is ready for a message */
	go_idle();
	if (r.m != NULL)
		start_mail();
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer	*in = bufferevent_get_input(bev);
	char		*line, esc[LOG_LINE_MAX];
	size_t		 len;
	int		 code, last;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) !=
	    NULL) {
		if (log_getverbose() > 0)
			log_debug("relay < %s", log_escape(esc, sizeof(esc),
			    line));
		if (r.state == R_BODY || r.state == R_NONE ||
		    r.state == R_IDLE || len >= RELAY_LINE_MAX ||
		    (last = relay_reply_line(line, &code)) == -1) {
			free(line);
			fail_conn(r.state == R_IDLE ?
			    "relay spoke out of turn" : "garbage reply");
			return;
		}
		if (r.state == R_EHLO)
			ehlo_line(line);
		strlcpy(r.reply, line, sizeof(r.reply));
		free(line);
		if (last)
			reply(code);
		if (r.bev == NULL || bev != r.bev)
			return;
	}
	if (evbuffer_get_length(in) > RELAY_LINE_MAX)
		fail_conn("reply line too long");
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	int	 on = 1;

	if (what & BEV_EVENT_CONNECTED) {
		/* the final dot must not wait for an ACK (Nagle) */
		if (setsockopt(bufferevent_getfd(bev), IPPROTO_TCP,
		    TCP_NODELAY, &on, sizeof(on)) == -1)
			log_warn("relay TCP_NODELAY");
		r.state = R_GREETING;
		return;
	}
	if (r.state == R_QUIT) {
		bufferevent_free(r.bev);
		r.bev = NULL;
		r.state = R_NONE;
		if (r.m != NULL)
			connect_relay();
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		fail_conn("timeout");
	else if (what & BEV_EVENT_EOF)
		fail_conn("connection closed by relay");
	else
		fail_conn(evutil_socket_error_to_string(
		    evutil_socket_geterror(bufferevent_getfd(bev))));
}

static void
idle_cb(int fd, short ev, void *arg)
{
	if (r.state != R_IDLE || r.m != NULL)
		return;
	relay_send("QUIT");
	r.state = R_QUIT;
}

static void
connect_relay(void)
{
	struct timeval	 tv = { r.conf->relay_timeout, 0 };

	r.ext = 0;
	r.bev = bufferevent_socket_new(r.base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (r.bev == NULL)
		fatalx("bufferevent_socket_new");
	bufferevent_setcb(r.bev, read_cb, write_cb, event_cb, NULL);
	bufferevent_set_timeouts(r.bev, &tv, &tv);
	bufferevent_enable(r.bev, EV_READ | EV_WRITE);
	r.state = R_CONNECTING;
	if (bufferevent_socket_connect(r.bev,
	    (struct sockaddr *)&r.conf->relay_ss, r.conf->relay_sslen) == -1)
		fail_conn("cannot connect");
}

void
relay_deliver(struct qmsg *m)
{
	r.m = m;
	if (r.state == R_IDLE)
		start_mail();
	else if (r.state == R_NONE)
		connect_relay();
	/* otherwise RSET or QUIT is in flight; its reply goes on */
}

void
relay_flush(void)
{
	/* the operator says the relay is worth a try now */
	r.retry_at = 0;
}

void
relay_moved(void)
{
	/* the old host's failures say nothing of the new one */
	r.retry_at = 0;
	r.failures = 0;
	if (r.state == R_IDLE && r.m == NULL) {
		evtimer_del(r.idle);
		relay_send("QUIT");
		r.state = R_QUIT;
	}
}

void
relay_init(struct event_base *base, struct smsubmit_conf *conf)
{
	r.base = base;
	r.conf = conf;
	r.fd = -1;
	r.state = R_NONE;
	if ((r.idle = evtimer_new(base, idle_cb, NULL)) == NULL)
		fatalx("evtimer_new");
}
