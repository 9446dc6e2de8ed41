/*
 * fuzz_body.c: DATA framing (common/body.c).  The first input byte says
 * where to split the rest in two; body_parse() must give the same message
 * whether the client's bytes arrive in one read or two, must never store
 * a bare CR or LF or an overlong line without flagging it, must store
 * what was sent less the transparency dots, and its output dot-stuffed
 * by body_stuff() (as the relay sends it) must parse back to the same
 * bytes.  And it must agree, octet for octet and flag for flag, with the
 * per-octet reference model of regress/unit/body_model.h.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "buf.h"
#include "fuzz.h"
#include "../unit/body_model.h"

struct result {
	struct buf	 out;
	int		 errors;
	int		 done;
	size_t		 consumed;
};

/*
 * buf_head() of a buffer that never held data computes NULL + 0, which
 * UBSan reports; the harness only looks at buffers through this.
 */
static const char *
head(const struct buf *b)
{
	return buf_used(b) > 0 ? buf_head(b) : "";
}

static void
parse(struct result *r, const char *in, size_t n, size_t split, size_t max)
{
	struct body	 b;
	size_t		 c;

	buf_init(&r->out, max);
	body_init(&b, NULL, NULL);
	c = body_parse(&b, in, split, &r->out);
	CHECK(c <= split);
	CHECK(b.done || c == split);
	if (!b.done) {
		c += body_parse(&b, in + split, n - split, &r->out);
		CHECK(c <= n);
	}
	CHECK(b.done || c == n);
	/* what was taken ends with the end of data, nothing past it */
	if (b.done)
		CHECK(c >= 3 && memcmp(in + c - 3, ".\r\n", 3) == 0);
	r->errors = b.errors;
	r->done = b.done;
	r->consumed = c;
}

static int
same(const struct result *a, const struct result *b)
{
	return a->errors == b->errors && a->done == b->done &&
	    a->consumed == b->consumed &&
	    buf_used(&a->out) == buf_used(&b->out) &&
	    (buf_used(&a->out) == 0 ||
	    memcmp(head(&a->out), head(&b->out),
	    buf_used(&a->out)) == 0);
}

/* Clean output: every line ends in CRLF and fits in 998 octets. */
static void
check_lines(const struct buf *o)
{
	const char	*p = head(o);
	size_t		 i, n = buf_used(o), linelen = 0;

	for (i = 0; i < n; i++) {
		if (p[i] == '\r') {
			CHECK(i + 1 < n && p[i + 1] == '\n');
			i++;
			linelen = 0;
			continue;
		}
		CHECK(p[i] != '\n');
		CHECK(++linelen <= BODY_LINE_MAX);
	}
}

/*
 * With nothing to add, the stored message is what the client sent less
 * the transparency dots (and, once done, the end of data): the body is
 * never changed.  Until the end, output may lag behind the input.
 */
static void
check_unchanged(const struct result *r, const char *in)
{
	const char	*o = head(&r->out);
	size_t		 i, j, n, used = buf_used(&r->out);

	n = r->done ? r->consumed - 3 : r->consumed;
	for (i = j = 0; i < n; i++) {
		if (in[i] == '.' && (i == 0 || in[i - 1] == '\n'))
			continue;
		if (j == used)
			break;
		CHECK(o[j] == in[i]);
		j++;
	}
	CHECK(j == used);
	if (r->done)
		CHECK(i == n);
}

/* The reference model, fed in the same two pieces. */
static void
against_model(const struct result *r, const char *in, size_t n, size_t split,
    size_t max)
{
	struct model_body	 m;
	struct buf		 o;
	size_t			 c;

	buf_init(&o, max);
	model_init(&m, NULL, NULL);
	c = model_parse(&m, in, split, &o);
	if (!m.done)
		c += model_parse(&m, in + split, n - split, &o);
	CHECK(m.errors == r->errors && m.done == r->done &&
	    c == r->consumed);
	CHECK(buf_used(&o) == buf_used(&r->out));
	CHECK(buf_used(&o) == 0 ||
	    memcmp(head(&o), head(&r->out), buf_used(&o)) == 0);
	buf_free(&o);
}

static void
roundtrip(const struct result *r)
{
	struct buf	 wire;
	struct result	 again;
	int		 bol = 1;

	buf_init(&wire, 2 * buf_used(&r->out) + 16);
	CHECK(body_stuff(&bol, head(&r->out), buf_used(&r->out),
	    &wire) == 0);
	/* a message that is done ends with CRLF (or is empty) */
	CHECK(bol == 1);
	CHECK(buf_add(&wire, ".\r\n", 3) == 0);
	parse(&again, head(&wire), buf_used(&wire), buf_used(&wire),
	    buf_used(&wire) + 16);
	CHECK(again.errors == 0 && again.done);
	CHECK(again.consumed == buf_used(&wire));
	CHECK(buf_used(&again.out) == buf_used(&r->out));
	CHECK(buf_used(&r->out) == 0 || memcmp(head(&again.out),
	    head(&r->out), buf_used(&r->out)) == 0);
	buf_free(&again.out);
	buf_free(&wire);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct result	 whole, split, small;
	const char	*in;
	size_t		 n, at, max;

	if (size < 1)
		return 0;
	in = (const char *)data + 1;
	n = size - 1;
	at = (size_t)data[0] * n / 255;
	/* with nothing to add, dot removal only shrinks */
	max = n + 16;

	parse(&whole, in, n, n, max);
	parse(&split, in, n, at, max);
	CHECK(same(&whole, &split));
	against_model(&split, in, n, at, max);
	CHECK((whole.errors & BODY_ERR_OUTPUT) == 0);
	if (whole.errors == 0) {
		check_lines(&whole.out);
		check_unchanged(&whole, in);
	}

	/* a full output buffer only cuts the message short, and says so */
	parse(&small, in, n, at, 64);
	if (small.errors & BODY_ERR_OUTPUT) {
		CHECK(buf_used(&small.out) <= 64);
		CHECK(buf_used(&small.out) <= buf_used(&whole.out));
		CHECK(buf_used(&small.out) == 0 ||
		    memcmp(head(&small.out), head(&whole.out),
		    buf_used(&small.out)) == 0);
		/* the framing errors do not depend on the output */
		CHECK((small.errors & ~BODY_ERR_OUTPUT) == whole.errors);
	} else
		CHECK(same(&small, &whole));
	CHECK(small.done == whole.done && small.consumed == whole.consumed);

	if (whole.done && whole.errors == 0)
		roundtrip(&whole);

	buf_free(&whole.out);
	buf_free(&split.out);
	buf_free(&small.out);
	return 0;
}
