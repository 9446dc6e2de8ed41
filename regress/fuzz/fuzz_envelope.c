/*
 * fuzz_envelope.c: envelope files as the queue process reads them back
 * from its directory at start-up (queue_envelope_parse() in
 * smtpd/queue.c).  A damaged file must be refused, never trusted.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smsubmit.h"
#include "fuzz.h"

static int
printable(const char *s, size_t max)
{
	const char	*end;

	if ((end = memchr(s, '\0', max)) == NULL)
		return 0;
	for (; s < end; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

static void
check_msg(const struct qmsg *m)
{
	int	 i;

	CHECK(strlen(m->id) == QUEUE_ID_LEN);
	CHECK(strspn(m->id, "0123456789abcdef") == QUEUE_ID_LEN);
	CHECK(m->nrcpts > 0 && m->rcpts != NULL);
	CHECK(memchr(m->from, '\0', sizeof(m->from)) != NULL);
	CHECK(addr_mailbox_valid(m->from, ADDR_NULL_OK | ADDR_UTF8));
	/* each of these goes into a header, a log line or the file again */
	CHECK(printable(m->user, sizeof(m->user)));
	CHECK(printable(m->helo, sizeof(m->helo)));
	CHECK(printable(m->client, sizeof(m->client)));
	CHECK(printable(m->error, sizeof(m->error)));
	CHECK((m->flags & ~(ENV_8BITMIME | ENV_SMTPUTF8)) == 0);
	CHECK(m->created >= 0 && m->next >= 0 && m->attempts >= 0);
	for (i = 0; i < m->nrcpts; i++) {
		CHECK(m->rcpts[i].addr != NULL);
		CHECK(addr_mailbox_valid(m->rcpts[i].addr,
		    ADDR_UTF8 | ADDR_POSTMASTER));
		/* the queue writes the state back by name, from a table */
		CHECK(m->rcpts[i].state >= RCPT_PENDING &&
		    m->rcpts[i].state <= RCPT_BOUNCED);
		CHECK(printable(m->rcpts[i].reply, sizeof(m->rcpts[i].reply)));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qmsg	 m;
	char		*text;
	int		 i, r;

	if (size > 65536)
		return 0;
	if ((text = malloc(size + 1)) == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	r = queue_envelope_parse(&m, text);
	CHECK(r == 0 || r == -1);
	if (r == 0)
		check_msg(&m);
	/* a refused file may have left recipients behind: ours to free */
	for (i = 0; i < m.nrcpts; i++)
		free(m.rcpts[i].addr);
	free(m.rcpts);
	free(text);
	return 0;
}
