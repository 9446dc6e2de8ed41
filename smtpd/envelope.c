/*
 * envelope.c: the envelope file format, written and read back by the
 * "[queue]" process.  An envelope is text, one field a line:
 *
 *	version 2
 *	id 0123456789abcdef
 *	created 1700000000
 *	from alice@example.org
 *	user alice
 *	helo client.example
 *	client 192.0.2.7
 *	flags 0
 *	attempts 1
 *	next 1700000300
 *	error 451%204.3.0%20busy
 *	warned 1700003600			(only once it is so)
 *	rcpt pending bob@example.org
 *	reply 550%205.1.1%20no%20such%20user	(of the rcpt line above)
 *	body 412				(only in an ID.env: see below)
 *
 * In version 2 every value is one token: each octet outside '!'..'~',
 * and '%' itself, is written as %XX (two upper-case hex digits).  So
 * whatever an outside party said (a relay's reply with a TAB, a quoted
 * local part with spaces, 8-bit octets) cannot end or split a line, and
 * the parser reads back exactly what was written.  Version 1, written
 * before, held the values raw; it is still read.
 *
 * "warned" says when the delay warning ("queue delay-warning") went to
 * the sender.  It came after the first version 2 envelopes, so one
 * without it is one nobody was warned about; it is written only once it
 * is so, which keeps every other envelope readable by a queue that
 * predates it.
 *
 * Where it is kept.  A message the listener received is committed as one
 * file, queue/ID.msg: its envelope, an empty line (no field's line is
 * empty), then the message.  One file is one fdatasync() per message,
 * where a separate envelope file cost a second one, and the second was
 * the dearer half of each message's share of a batch (see queue.c).
 * Once the envelope changes (a deferral, a bounce sent), the new one is
 * written whole to queue/ID.env, which from then on is what counts, and
 * says in "body" where the message starts in ID.msg.  The reports the
 * queue writes itself, and every message queued before this layout, keep
 * their envelope in ID.env with the message alone in ID.msg: no "body",
 * the message starts at 0.
 *
 * The writer refuses an envelope larger than ENVELOPE_MAX, the most the
 * reader takes: what the queue wrote, it can always read.
 */
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "smsubmit.h"

#define ENVELOPE_VERSION	2

static const char *rcpt_state_names[] = { "pending", "done", "failed",
    "bounced" };

const char *
envelope_rcpt_state_name(enum rcpt_state st)
{
	if (st < RCPT_PENDING || st > RCPT_BOUNCED)
		return "?";
	return rcpt_state_names[st];
}

void
envelope_clear(struct qmsg *m)
{
	int	 i;

	for (i = 0; i < m->nrcpts; i++)
		free(m->rcpts[i].addr);
	free(m->rcpts);
	m->rcpts = NULL;
	m->nrcpts = 0;
}

int
envelope_rcpt_add(struct qmsg *m, const char *addr, enum rcpt_state state)
{
	struct rcpt	*r;

	if ((r = reallocarray(m->rcpts, m->nrcpts + 1, sizeof(*r))) == NULL)
		return -1;
	m->rcpts = r;
	memset(&r[m->nrcpts], 0, sizeof(*r));
	if ((r[m->nrcpts].addr = strdup(addr)) == NULL)
		return -1;
	r[m->nrcpts++].state = state;
	return 0;
}

int
envelope_id_valid(const char *id)
{
	size_t	 i;

	for (i = 0; id[i] != '\0'; i++)
		if (!((id[i] >= '0' && id[i] <= '9') ||
		    (id[i] >= 'a' && id[i] <= 'f')))
			return 0;
	return i == QUEUE_ID_LEN;
}

/* --- writing --- */

static int
plain(unsigned char c)
{
	return c > ' ' && c < 0x7f && c != '%';
}

/* " value", escaped: runs of plain octets at once, the rest as %XX. */
static int
put_value(struct buf *out, const char *s)
{
	static const char	 hex[] = "0123456789ABCDEF";
	const unsigned char	*p = (const unsigned char *)s;
	char			 e[3];
	size_t			 n;

	if (buf_add(out, " ", 1) == -1)
		return -1;
	while (*p != '\0') {
		for (n = 0; p[n] != '\0' && plain(p[n]); n++)
			;
		if (n > 0 && buf_add(out, p, n) == -1)
			return -1;
		p += n;
		if (*p == '\0')
			break;
		e[0] = '%';
		e[1] = hex[*p >> 4];
		e[2] = hex[*p & 0x0f];
		if (buf_add(out, e, 3) == -1)
			return -1;
		p++;
	}
	return 0;
}

static int
put_field(struct buf *out, const char *key, const char *value)
{
	if (buf_add(out, key, strlen(key)) == -1 ||
	    put_value(out, value) == -1 || buf_add(out, "\n", 1) == -1)
		return -1;
	return 0;
}

static int
put_number(struct buf *out, const char *key, long long n)
{
	return buf_printf(out, "%s %lld\n", key, n);
}

static int
format(struct buf *out, const struct qmsg *m, int head)
{
	int	 i;

	if (buf_printf(out, "version %d\n", ENVELOPE_VERSION) == -1 ||
	    put_field(out, "id", m->id) == -1 ||
	    put_number(out, "created", m->created) == -1 ||
	    put_field(out, "from", m->from) == -1 ||
	    put_field(out, "user", m->user) == -1 ||
	    put_field(out, "helo", m->helo) == -1 ||
	    put_field(out, "client", m->client) == -1 ||
	    put_number(out, "flags", m->flags) == -1 ||
	    put_number(out, "attempts", m->attempts) == -1 ||
	    put_number(out, "next", m->next) == -1 ||
	    put_field(out, "error", m->error) == -1)
		return -1;
	if (m->warned != 0 && put_number(out, "warned", m->warned) == -1)
		return -1;
	for (i = 0; i < m->nrcpts; i++) {
		if (buf_printf(out, "rcpt %s",
		    envelope_rcpt_state_name(m->rcpts[i].state)) == -1 ||
		    put_field(out, "", m->rcpts[i].addr) == -1)
			return -1;
		if (m->rcpts[i].reply[0] != '\0' &&
		    put_field(out, "reply", m->rcpts[i].reply) == -1)
			return -1;
	}
	if (head)
		return buf_add(out, "\n", 1);
	if (m->body != 0 && put_number(out, "body", m->body) == -1)
		return -1;
	return 0;
}

int
envelope_format(struct buf *out, const struct qmsg *m)
{
	return format(out, m, 0);
}

static int
write_out(int fd, const struct qmsg *m, int head)
{
	struct buf	 out;
	ssize_t		 n;

	buf_init(&out, ENVELOPE_MAX);
	if (format(&out, m, head) == -1) {
		buf_free(&out);
		errno = EFBIG;
		return -1;
	}
	while (buf_used(&out) > 0) {
		if ((n = write(fd, buf_head(&out), buf_used(&out))) == -1) {
			if (errno == EINTR)
				continue;
			buf_free(&out);
			return -1;
		}
		buf_drain(&out, n);
	}
	buf_free(&out);
	return 0;
}

int
envelope_write(int fd, const struct qmsg *m)
{
	return write_out(fd, m, 0);
}

int
envelope_write_head(int fd, const struct qmsg *m)
{
	return write_out(fd, m, 1);
}

/* --- reading --- */

static int
unhex(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * Decode a version 2 value into dst: only plain octets and %XX, no %00
 * (a string cannot hold it, so the writer never made one), and it must
 * fit.
 */
static int
get_value(char *dst, size_t len, const char *src)
{
	const unsigned char	*p = (const unsigned char *)src;
	size_t			 n = 0;
	int			 hi, lo;

	for (; *p != '\0'; p++) {
		if (n + 1 >= len)
			return -1;
		if (*p == '%') {
			if ((hi = unhex(p[1])) == -1 ||
			    (lo = unhex(p[2])) == -1 || (hi == 0 && lo == 0))
				return -1;
			dst[n++] = hi << 4 | lo;
			p += 2;
		} else if (plain(*p))
			dst[n++] = *p;
		else
			return -1;
	}
	dst[n] = '\0';
	return 0;
}

/*
 * A version 1 value was written raw: whatever it holds is taken, cut to
 * fit as the version 1 parser did, so that a message queued before the
 * upgrade is delivered, not set aside.
 */
static int
get_raw(char *dst, size_t len, const char *src)
{
	strlcpy(dst, src, len);
	return 0;
}

static int
get_text(int version, char *dst, size_t len, const char *src)
{
	return version == 1 ? get_raw(dst, len, src) :
	    get_value(dst, len, src);
}

/* An address must fit whole, in either version. */
static int
get_addr(int version, char *dst, size_t len, const char *src)
{
	if (version == 1)
		return strlcpy(dst, src, len) < len ? 0 : -1;
	return get_value(dst, len, src);
}

static int
get_number(const char *v, long long min, long long max, long long *out)
{
	const char	*errstr;

	*out = strtonum(v, min, max, &errstr);
	return errstr == NULL ? 0 : -1;
}

static int
get_state(const char *v, size_t n, enum rcpt_state *st)
{
	int	 i;

	for (i = RCPT_PENDING; i <= RCPT_BOUNCED; i++)
		if (strlen(rcpt_state_names[i]) == n &&
		    strncmp(v, rcpt_state_names[i], n) == 0) {
			*st = i;
			return 0;
		}
	return -1;
}

static int
parse_line(struct qmsg *m, int version, const char *key, char *val)
{
	char		 addr[ADDR_MAX];
	enum rcpt_state	 st;
	long long	 n;
	size_t		 len;

	if (strcmp(key, "id") == 0) {
		if (!envelope_id_valid(val))
			return -1;
		strlcpy(m->id, val, sizeof(m->id));
	} else if (strcmp(key, "created") == 0) {
		if (get_number(val, 0, LLONG_MAX, &n) == -1)
			return -1;
		m->created = n;
	} else if (strcmp(key, "from") == 0) {
		if (get_addr(version, m->from, sizeof(m->from), val) == -1 ||
		    !addr_mailbox_valid(m->from, ADDR_NULL_OK | ADDR_UTF8))
			return -1;
	} else if (strcmp(key, "user") == 0) {
		return get_text(version, m->user, sizeof(m->user), val);
	} else if (strcmp(key, "helo") == 0) {
		return get_text(version, m->helo, sizeof(m->helo), val);
	} else if (strcmp(key, "client") == 0) {
		return get_text(version, m->client, sizeof(m->client), val);
	} else if (strcmp(key, "flags") == 0) {
		if (get_number(val, 0, ENV_8BITMIME | ENV_SMTPUTF8, &n) == -1 ||
		    (n & ~(ENV_8BITMIME | ENV_SMTPUTF8)))
			return -1;
		m->flags = n;
	} else if (strcmp(key, "attempts") == 0) {
		if (get_number(val, 0, INT_MAX, &n) == -1)
			return -1;
		m->attempts = n;
	} else if (strcmp(key, "next") == 0) {
		if (get_number(val, 0, LLONG_MAX, &n) == -1)
			return -1;
		m->next = n;
	} else if (strcmp(key, "error") == 0) {
		return get_text(version, m->error, sizeof(m->error), val);
	} else if (strcmp(key, "warned") == 0) {
		/* written only when set, so never 0 */
		if (get_number(val, 1, LLONG_MAX, &n) == -1)
			return -1;
		m->warned = n;
	} else if (strcmp(key, "body") == 0) {
		/* past an envelope of at most ENVELOPE_MAX and its line */
		if (get_number(val, 1, ENVELOPE_MAX + 1, &n) == -1)
			return -1;
		m->body = n;
	} else if (strcmp(key, "rcpt") == 0) {
		/* "STATE ADDRESS" */
		len = strcspn(val, " ");
		if (val[len] != ' ' || get_state(val, len, &st) == -1 ||
		    get_addr(version, addr, sizeof(addr), val + len + 1) ==
		    -1 || !addr_mailbox_valid(addr, ADDR_UTF8 |
		    ADDR_POSTMASTER) || envelope_rcpt_add(m, addr, st) == -1)
			return -1;
	} else if (strcmp(key, "reply") == 0) {
		if (m->nrcpts == 0)
			return -1;
		return get_text(version, m->rcpts[m->nrcpts - 1].reply,
		    sizeof(m->rcpts[0].reply), val);
	} else
		return -1;
	return 0;
}

int
envelope_parse(struct qmsg *m, char *text)
{
	char	*line, *next, *val;
	int	 version = 0;

	memset(m, 0, sizeof(*m));
	for (line = text; *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) == NULL)
			return -1;	/* every line ends */
		*next++ = '\0';
		if ((val = strchr(line, ' ')) == NULL)
			return -1;
		*val++ = '\0';
		if (version == 0) {
			/* the version comes first: it says how to read */
			if (strcmp(line, "version") != 0)
				return -1;
			if (strcmp(val, "1") == 0)
				version = 1;
			else if (strcmp(val, "2") == 0)
				version = 2;
			else
				return -1;
			continue;
		}
		/* one token, or "STATE TOKEN" for a recipient */
		if (version == 2 && strchr(val, ' ') != NULL &&
		    (strcmp(line, "rcpt") != 0 ||
		    strchr(strchr(val, ' ') + 1, ' ') != NULL))
			return -1;
		if (parse_line(m, version, line, val) == -1)
			return -1;
	}
	if (version == 0 || m->id[0] == '\0' || m->nrcpts == 0)
		return -1;
	return 0;
}

/*
 * The envelope at the head of the message file fd, into m, with m->body
 * where the message starts: 0 if so; 1 if the file starts with no
 * envelope (a message kept as before, or a commit of that layout that
 * never finished); -1 if it holds one that cannot be read, or on an
 * error (errno).
 */
int
envelope_read_head(int fd, struct qmsg *m)
{
	static const char	 magic[] = "version ";
	char			*text = NULL, *t, *end;
	size_t			 have = 0, size = 0, from;
	ssize_t			 n;
	int			 r = -1;

	memset(m, 0, sizeof(*m));
	for (;;) {
		if (have == size) {
			if (size > ENVELOPE_MAX)
				goto out;	/* longer than any envelope */
			size = size == 0 ? 4096 : MINIMUM(size * 2,
			    ENVELOPE_MAX + 2);
			if ((t = realloc(text, size + 1)) == NULL)
				goto out;
			text = t;
		}
		if ((n = pread(fd, text + have, size - have, have)) == -1) {
			if (errno == EINTR)
				continue;
			goto out;
		}
		from = have > 0 ? have - 1 : 0;
		have += n;
		if (have < sizeof(magic) - 1 && n > 0)
			continue;
		if (have < sizeof(magic) - 1 ||
		    memcmp(text, magic, sizeof(magic) - 1) != 0) {
			r = 1;
			goto out;
		}
		if ((end = memmem(text + from, have - from, "\n\n", 2)) !=
		    NULL)
			break;
		if (n == 0)
			goto out;	/* it ended inside the envelope */
	}
	end[1] = '\0';
	if (memchr(text, '\0', end + 1 - text) != NULL ||
	    envelope_parse(m, text) == -1)
		goto out;
	m->body = end + 2 - text;
	r = 0;
 out:
	free(text);
	return r;
}
