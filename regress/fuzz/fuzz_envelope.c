/*
 * fuzz_envelope.c: the envelope format of smtpd/envelope.c, both ways.
 *
 * 1. The input as an envelope file, as the queue reads it back at
 *    start-up: refused, or a valid message; and what was accepted,
 *    written again, parses to the same message.
 * 2. The input as field values (split at NUL octets: user, HELO name,
 *    client, last error, then recipient replies and addresses), the way
 *    outside parties fill them in: written, then parsed, every field
 *    comes back as it was.  A record the queue wrote is never refused.
 *    Written as a message file's head with the input after it as the
 *    message, it reads back the same, the message starting right after.
 * 3. The input as a message file (envelope_read_head): refused, no
 *    head, or a valid message whose text starts just past an empty line
 *    inside the input.
 */
#include <sys/mman.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smsubmit.h"
#include "fuzz.h"

static void
check_msg(const struct qmsg *m)
{
	int	 i;

	CHECK(strlen(m->id) == QUEUE_ID_LEN);
	CHECK(strspn(m->id, "0123456789abcdef") == QUEUE_ID_LEN);
	CHECK(m->nrcpts > 0 && m->rcpts != NULL);
	CHECK(memchr(m->from, '\0', sizeof(m->from)) != NULL);
	CHECK(addr_mailbox_valid(m->from, ADDR_NULL_OK | ADDR_UTF8));
	/* any octets but NUL: whoever shows them escapes them */
	CHECK(memchr(m->user, '\0', sizeof(m->user)) != NULL);
	CHECK(memchr(m->helo, '\0', sizeof(m->helo)) != NULL);
	CHECK(memchr(m->client, '\0', sizeof(m->client)) != NULL);
	CHECK(memchr(m->error, '\0', sizeof(m->error)) != NULL);
	CHECK((m->flags & ~(ENV_8BITMIME | ENV_SMTPUTF8)) == 0);
	CHECK(m->created >= 0 && m->next >= 0 && m->attempts >= 0);
	CHECK(m->warned >= 0);
	for (i = 0; i < m->nrcpts; i++) {
		CHECK(m->rcpts[i].addr != NULL);
		CHECK(addr_mailbox_valid(m->rcpts[i].addr,
		    ADDR_UTF8 | ADDR_POSTMASTER));
		/* the queue writes the state back by name, from a table */
		CHECK(m->rcpts[i].state >= RCPT_PENDING &&
		    m->rcpts[i].state <= RCPT_BOUNCED);
		CHECK(memchr(m->rcpts[i].reply, '\0',
		    sizeof(m->rcpts[i].reply)) != NULL);
	}
}

static void
check_same(const struct qmsg *a, const struct qmsg *b)
{
	int	 i;

	CHECK(strcmp(a->id, b->id) == 0);
	CHECK(a->created == b->created && a->next == b->next);
	CHECK(a->warned == b->warned && a->body == b->body);
	CHECK(a->attempts == b->attempts && a->flags == b->flags);
	CHECK(strcmp(a->from, b->from) == 0);
	CHECK(strcmp(a->user, b->user) == 0);
	CHECK(strcmp(a->helo, b->helo) == 0);
	CHECK(strcmp(a->client, b->client) == 0);
	CHECK(strcmp(a->error, b->error) == 0);
	CHECK(a->nrcpts == b->nrcpts);
	for (i = 0; i < a->nrcpts; i++) {
		CHECK(strcmp(a->rcpts[i].addr, b->rcpts[i].addr) == 0);
		CHECK(a->rcpts[i].state == b->rcpts[i].state);
		CHECK(strcmp(a->rcpts[i].reply, b->rcpts[i].reply) == 0);
	}
}

/* Write m, parse it back: it must be accepted, and the same. */
static void
round_trip(const struct qmsg *m)
{
	struct qmsg	 back;
	struct buf	 b;
	char		*text;

	buf_init(&b, ENVELOPE_MAX);
	if (envelope_format(&b, m) == -1) {
		/* too big to write is allowed: the commit fails, 4xx */
		buf_free(&b);
		return;
	}
	CHECK(buf_add(&b, "", 1) == 0);
	text = buf_head(&b);
	CHECK(envelope_parse(&back, text) == 0);
	check_msg(&back);
	check_same(m, &back);
	envelope_clear(&back);
	buf_free(&b);
}

/* A file holding data, for envelope_read_head(); -1 if none to be had. */
static int
file_of(const void *data, size_t size)
{
	int	 fd;

	if ((fd = memfd_create("fuzz", MFD_CLOEXEC)) == -1)
		return -1;
	if (size > 0 && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return -1;
	}
	return fd;
}

/* m's head, then text: the same envelope back, the text where it starts */
static void
head_trip(const struct qmsg *m, const uint8_t *text, size_t size)
{
	struct qmsg	 back;
	off_t		 end;
	int		 fd;

	if ((fd = memfd_create("fuzz", MFD_CLOEXEC)) == -1)
		return;
	if (envelope_write_head(fd, m) == -1) {
		close(fd);	/* too big to write: the commit fails, 4xx */
		return;
	}
	CHECK((end = lseek(fd, 0, SEEK_CUR)) > 0);
	CHECK(size == 0 || write(fd, text, size) == (ssize_t)size);
	CHECK(envelope_read_head(fd, &back) == 0);
	CHECK(back.body == end);
	back.body = m->body;
	check_msg(&back);
	check_same(m, &back);
	envelope_clear(&back);
	close(fd);
}

static void
as_head(const uint8_t *data, size_t size)
{
	struct qmsg	 m;
	int		 fd, r;

	if ((fd = file_of(data, size)) == -1)
		return;
	r = envelope_read_head(fd, &m);
	CHECK(r == 0 || r == 1 || r == -1);
	if (r == 0) {
		check_msg(&m);
		CHECK(m.body >= 2 && (size_t)m.body <= size);
		CHECK(data[m.body - 1] == '\n' && data[m.body - 2] == '\n');
		CHECK(memchr(data, '\0', m.body) == NULL);
	}
	if (r == 1)
		CHECK(size < 8 || memcmp(data, "version ", 8) != 0);
	envelope_clear(&m);
	close(fd);
}

static void
as_file(const uint8_t *data, size_t size)
{
	struct qmsg	 m;
	char		*text;

	if ((text = malloc(size + 1)) == NULL)
		return;
	memcpy(text, data, size);
	text[size] = '\0';
	if (envelope_parse(&m, text) == 0) {
		check_msg(&m);
		round_trip(&m);
	}
	/* a refused file may have left recipients behind: ours to free */
	envelope_clear(&m);
	free(text);
}

/* The next NUL-terminated piece of the input, cut to fit len. */
static const char *
piece(const uint8_t **p, const uint8_t *end, char *dst, size_t len)
{
	size_t	 n = 0;

	if (*p >= end)
		return NULL;
	while (*p < end && **p != '\0') {
		if (n + 1 < len)
			dst[n++] = **p;
		(*p)++;
	}
	if (*p < end)
		(*p)++;		/* the NUL */
	dst[n] = '\0';
	return dst;
}

static void
as_fields(const uint8_t *data, size_t size)
{
	const uint8_t	*p = data, *end = data + size;
	struct qmsg	 m;
	char		 reply[sizeof(m.rcpts[0].reply)], addr[ADDR_MAX];
	int		 i;

	memset(&m, 0, sizeof(m));
	strlcpy(m.id, "0123456789abcdef", sizeof(m.id));
	if (size > 0) {
		m.flags = data[0] & (ENV_8BITMIME | ENV_SMTPUTF8);
		m.attempts = data[0];
		m.created = (long long)data[0] << 40;
	}
	strlcpy(m.from, "alice@example.org", sizeof(m.from));
	piece(&p, end, m.user, sizeof(m.user));
	piece(&p, end, m.helo, sizeof(m.helo));
	piece(&p, end, m.client, sizeof(m.client));
	piece(&p, end, m.error, sizeof(m.error));
	for (i = 0; i < 64 && piece(&p, end, reply, sizeof(reply)) != NULL;
	    i++) {
		/* an address the wire takes, or a plain one */
		if (piece(&p, end, addr, sizeof(addr)) == NULL ||
		    !addr_mailbox_valid(addr, ADDR_UTF8 | ADDR_POSTMASTER))
			strlcpy(addr, "bob@example.org", sizeof(addr));
		else if (i == 0 && addr_mailbox_valid(addr, ADDR_UTF8))
			strlcpy(m.from, addr, sizeof(m.from));
		CHECK(envelope_rcpt_add(&m, addr, i % 4) == 0);
		strlcpy(m.rcpts[i].reply, reply, sizeof(m.rcpts[i].reply));
	}
	if (m.nrcpts == 0)
		CHECK(envelope_rcpt_add(&m, "bob@example.org",
		    RCPT_PENDING) == 0);
	round_trip(&m);
	head_trip(&m, data, size);
	envelope_clear(&m);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	as_file(data, size);
	as_fields(data, size);
	as_head(data, size);
	return 0;
}
