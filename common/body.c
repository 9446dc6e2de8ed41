/*
 * body.c: DATA framing in both directions.  The listener uses
 * body_parse() or body_scan() on client input; the queue uses
 * body_stuff() when it relays.
 *
 * Ordinary octets are never looked at one by one: memchr() finds the
 * next LF, and the next CR before it; what lies between is content, and
 * only the octets at line boundaries (a CR, an LF, a dot at the start of
 * a line) go through the state machine.  Whatever is passed on from the
 * input is passed as runs, merged while they are adjacent, so the body
 * of a message is one piece per call unless it has dot lines.
 */
#include <stdint.h>
#include <string.h>

#include "body.h"

enum {
	S_BOL,		/* at the start of a line */
	S_DOT,		/* a '.' at the start of a line */
	S_DOTCR,	/* ".\r" at the start of a line */
	S_MID,		/* inside a line */
	S_CR		/* a '\r' inside a line */
};

/* Where body_scan() puts the stored form. */
struct sink {
	struct body	*b;
	body_out_fn	*fn;
	void		*arg;
	const char	*in;		/* the input of this call */
	const char	*end;
	const char	*p;		/* a run of it not passed on yet */
	size_t		 n;
};

void
body_init(struct body *b, const char *add_msgid, const char *add_date)
{
	memset(b, 0, sizeof(*b));
	b->state = S_BOL;
	header_init(&b->hdr, add_msgid, add_date);
}

static void
flush(struct sink *k)
{
	if (k->n > 0 && k->fn(k->arg, k->p, k->n, 1) == -1)
		k->b->errors |= BODY_ERR_OUTPUT;
	k->n = 0;
}

/* Output a run of the input; once an error is flagged, nothing. */
static inline void
put(struct sink *k, const char *p, size_t n)
{
	if (n == 0 || k->b->errors)
		return;
	if (k->n > 0 && k->p + k->n == p) {
		k->n += n;
		return;
	}
	flush(k);
	if (k->b->errors)
		return;
	k->p = p;
	k->n = n;
}

/* Output octets that are not in the input. */
static void
copy(struct sink *k, const char *p, size_t n)
{
	if (n == 0 || k->b->errors)
		return;
	flush(k);
	if (k->b->errors)
		return;
	if (k->fn(k->arg, p, n, 0) == -1)
		k->b->errors |= BODY_ERR_OUTPUT;
}

/* The header scanner's output: its input passed on, or its own octets. */
static void
header_out(void *arg, const char *p, size_t n)
{
	struct sink	*k = arg;

	if ((uintptr_t)p >= (uintptr_t)k->in &&
	    (uintptr_t)p < (uintptr_t)k->end)
		put(k, p, n);
	else
		copy(k, p, n);
}

static inline void
pass(struct body *b, struct sink *k, const char *p, size_t n)
{
	if (b->hdr.ended)
		put(k, p, n);
	else
		header_content(&b->hdr, p, n, header_out, k);
}

/* n octets of a line's content: no CR, no LF. */
static inline void
content(struct body *b, struct sink *k, const char *p, size_t n)
{
	size_t	 room;

	if (n == 0)
		return;
	room = b->linelen < BODY_LINE_MAX ? BODY_LINE_MAX - b->linelen : 0;
	b->linelen += n;
	if (n <= room) {
		pass(b, k, p, n);
		return;
	}
	/* the octets up to the limit are stored, the rest is not */
	pass(b, k, p, room);
	b->errors |= BODY_ERR_LONG;
	pass(b, k, p + room, n - room);
}

/* A line ended in CRLF; cr is where the pair is, or NULL if not here. */
static inline void
eol(struct body *b, struct sink *k, const char *cr)
{
	if (!b->hdr.ended)
		header_eol(&b->hdr, header_out, k);
	b->linelen = 0;
	b->lf_only = 0;
	b->state = S_BOL;
	if (cr != NULL)
		put(k, cr, 2);
	else
		copy(k, "\r\n", 2);
}

/*
 * Inside a line: take the content up to the next CR or LF, and that CR or
 * LF.  *lf caches the next LF (end: none up to the end), so that input
 * full of bare CRs is not searched again for each.  Returns where to go on.
 */
static inline const char *
line(struct body *b, struct sink *k, const char *p, const char *end,
    const char **lf)
{
	const char	*cr, *lim;

	if (*lf == NULL || *lf < p) {
		if ((*lf = memchr(p, '\n', end - p)) == NULL)
			*lf = end;
	}
	lim = *lf;
	if ((cr = memchr(p, '\r', lim - p)) == NULL) {
		content(b, k, p, lim - p);
		if (lim == end)
			return end;
		/* a bare LF */
		b->errors |= BODY_ERR_BARELF;
		b->lf_only = 1;
		b->linelen = 0;
		b->state = S_BOL;
		return lim + 1;
	}
	content(b, k, p, cr - p);
	if (cr + 1 == lim && lim != end) {
		eol(b, k, cr);
		return lim + 1;
	}
	if (cr + 1 == end) {
		b->state = S_CR;
		return end;
	}
	/* a bare CR is dropped, and what follows it is content again */
	b->errors |= BODY_ERR_BARECR;
	return cr + 1;
}

size_t
body_scan(struct body *b, const char *in, size_t n, body_out_fn *fn,
    void *arg)
{
	struct sink	 k;
	const char	*p = in, *end = in + n, *lf = NULL;

	if (n == 0)
		return 0;
	k.b = b;
	k.fn = fn;
	k.arg = arg;
	k.in = in;
	k.end = end;
	k.p = NULL;
	k.n = 0;
	while (p < end && !b->done) {
		switch (b->state) {
		case S_BOL:
			if (*p == '.') {
				b->state = S_DOT;
				p++;
				break;
			}
			b->state = S_MID;
			/* FALLTHROUGH */
		case S_MID:
			p = line(b, &k, p, end, &lf);
			break;
		case S_DOT:
			if (*p == '\r') {
				b->state = S_DOTCR;
				p++;
				break;
			}
			/* the dot was transparency: drop it */
			b->state = S_MID;
			break;
		case S_DOTCR:
			if (*p == '\n' && !b->lf_only) {
				header_end(&b->hdr, header_out, &k);
				b->done = 1;
				p++;
				break;
			}
			if (*p == '\n') {
				/* ".\r\n" after a bare LF is not the end */
				eol(b, &k, p > in ? p - 1 : NULL);
				p++;
				break;
			}
			b->errors |= BODY_ERR_BARECR;
			b->state = S_MID;
			break;
		case S_CR:
			if (*p == '\n') {
				eol(b, &k, p > in ? p - 1 : NULL);
				p++;
				break;
			}
			b->errors |= BODY_ERR_BARECR;
			b->state = S_MID;
			break;
		}
	}
	flush(&k);
	return p - in;
}

/*
 * The output of body_parse(): as much as fits, so that what is stored of
 * a message that does not fit does not depend on how it was cut.
 */
static int
buf_out(void *arg, const char *p, size_t n, int in_input)
{
	struct buf	*o = arg;
	size_t		 room = o->max - buf_used(o);

	if (n <= room)
		return buf_add(o, p, n);
	(void)buf_add(o, p, room);
	return -1;
}

size_t
body_parse(struct body *b, const char *in, size_t n, struct buf *o)
{
	return body_scan(b, in, n, buf_out, o);
}

int
body_stuff_to(int *bol, const char *in, size_t n, body_out_fn *out, void *arg)
{
	const char	*p, *run, *end = in + n, *nl;

	if (n == 0)
		return 0;
	if (*bol && *in == '.' && out(arg, ".", 1, 0) == -1)
		return -1;
	/* one piece for each run of lines that need no dot */
	for (run = p = in; (nl = memchr(p, '\n', end - p)) != NULL; ) {
		p = nl + 1;
		if (p < end && *p == '.') {
			if (out(arg, run, p - run, 1) == -1 ||
			    out(arg, ".", 1, 0) == -1)
				return -1;
			run = p;
		}
	}
	if (out(arg, run, end - run, 1) == -1)
		return -1;
	*bol = end[-1] == '\n';
	return 0;
}

static int
stuff_buf(void *arg, const char *p, size_t n, int in_input)
{
	(void)in_input;
	return buf_add(arg, p, n);
}

int
body_stuff(int *bol, const char *in, size_t n, struct buf *o)
{
	return body_stuff_to(bol, in, n, stuff_buf, o);
}
