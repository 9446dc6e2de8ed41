/*
 * t_buf.c: unit tests for common/buf.c, the bounded growable buffer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "tap.h"

static uint32_t	 rnd_state = 0x1d872b41;

static uint32_t
rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 17;
	rnd_state ^= rnd_state << 5;
	return rnd_state;
}

static int
holds(const struct buf *b, const char *s, size_t n)
{
	return buf_used(b) == n && (n == 0 || memcmp(buf_head(b), s, n) == 0);
}

static void
test_basic(void)
{
	struct buf	 b;

	buf_init(&b, 1024);
	ok(buf_used(&b) == 0 && buf_line(&b) == 0, "a new buffer is empty");
	ok(buf_add(&b, "x", 0) == 0 && buf_used(&b) == 0,
	    "adding nothing succeeds and adds nothing");
	ok(buf_add(&b, "hello", 5) == 0 && holds(&b, "hello", 5),
	    "add \"hello\"");
	ok(buf_line(&b) == 0, "no line without LF");
	ok(buf_add(&b, "\r\nworld\n", 8) == 0 &&
	    holds(&b, "hello\r\nworld\n", 13), "add \"\\r\\nworld\\n\"");
	ok(buf_line(&b) == 7, "first line is 7 octets with CRLF (got %zu)",
	    buf_line(&b));
	buf_drain(&b, 7);
	ok(holds(&b, "world\n", 6), "drain 7 leaves \"world\\n\"");
	ok(buf_line(&b) == 6, "next line is 6 octets (got %zu)", buf_line(&b));
	buf_drain(&b, 2);
	ok(holds(&b, "rld\n", 4) && buf_line(&b) == 4,
	    "a partial drain moves the head");
	buf_drain(&b, 4);
	ok(buf_used(&b) == 0 && buf_line(&b) == 0, "drain all empties");
	ok(buf_add(&b, "ab", 2) == 0 && holds(&b, "ab", 2),
	    "add after draining all");
	buf_drain(&b, 100);
	ok(buf_used(&b) == 0, "draining more than held empties");
	ok(buf_add(&b, "\n", 1) == 0 && buf_line(&b) == 1,
	    "a lone LF is a line of 1");
	buf_drain(&b, 1);
	ok(buf_add(&b, "a\0b\nc", 5) == 0 && buf_line(&b) == 4,
	    "a NUL does not end the line search");
	buf_free(&b);
	ok(b.data == NULL && buf_used(&b) == 0, "buf_free empties");
	buf_freezero(&b);
	ok(b.data == NULL && buf_used(&b) == 0, "buf_freezero empties");
}

static void
test_reserve(void)
{
	struct buf	 b;
	char		*p;

	buf_init(&b, 1000);
	p = buf_reserve(&b, 100);
	ok(p != NULL, "reserve 100");
	ok(buf_used(&b) == 0, "reserving adds nothing");
	memcpy(p, "0123456789", 10);
	buf_commit(&b, 10);
	ok(holds(&b, "0123456789", 10), "commit 10 of them");
	p = buf_reserve(&b, 990);
	ok(p != NULL && p == buf_head(&b) + 10,
	    "reserve up to the limit, after the data");
	ok(holds(&b, "0123456789", 10), "reserving keeps the data");
	memset(p, 'z', 990);
	buf_commit(&b, 990);
	ok(buf_used(&b) == 1000 && buf_head(&b)[999] == 'z',
	    "commit up to the limit");
	ok(buf_reserve(&b, 1) == NULL, "reserve past the limit refused");
	buf_drain(&b, 10);
	p = buf_reserve(&b, 10);
	ok(p != NULL, "drained space can be reserved again");
	memcpy(p, "abcdefghij", 10);
	buf_commit(&b, 10);
	ok(buf_used(&b) == 1000 && buf_head(&b)[0] == 'z' &&
	    memcmp(buf_head(&b) + 990, "abcdefghij", 10) == 0,
	    "the data survives compaction");
	ok(buf_reserve(&b, 0) != NULL, "reserving 0 at the limit is allowed");
	ok(buf_reserve(&b, (size_t)-1) == NULL, "reserve SIZE_MAX refused");
	buf_free(&b);
}

static void
test_limit(void)
{
	struct buf	 b;
	char		 big[300];
	size_t		 cap;

	memset(big, 'a', sizeof(big));
	buf_init(&b, 256);
	ok(buf_add(&b, big, 257) == -1 && buf_used(&b) == 0,
	    "add over the limit refused, nothing added");
	ok(buf_add(&b, big, 256) == 0 && buf_used(&b) == 256,
	    "add exactly the limit");
	ok(buf_add(&b, "b", 1) == -1 && buf_used(&b) == 256,
	    "one more octet refused");
	ok(buf_printf(&b, "%d", 1) == -1 && buf_used(&b) == 256,
	    "buf_printf refused at the limit");
	ok(buf_reserve(&b, 1) == NULL, "buf_reserve refused at the limit");
	cap = b.cap;
	buf_drain(&b, 100);
	ok(buf_add(&b, "0123456789", 10) == 0 && buf_used(&b) == 166,
	    "drained space counts towards the limit again");
	memset(big, 'c', 90);
	ok(buf_add(&b, big, 90) == 0 && buf_used(&b) == 256,
	    "fill to the limit again");
	ok(b.cap == cap, "reusing drained space does not grow (cap %zu, was "
	    "%zu)", b.cap, cap);
	ok(buf_head(&b)[0] == 'a' && buf_head(&b)[155] == 'a' &&
	    memcmp(buf_head(&b) + 156, "0123456789", 10) == 0 &&
	    buf_head(&b)[166] == 'c' && buf_head(&b)[255] == 'c',
	    "contents intact after reuse");
	buf_free(&b);

	buf_init(&b, 0);
	ok(buf_add(&b, "a", 1) == -1 && buf_used(&b) == 0,
	    "a buffer with limit 0 takes nothing");
	ok(buf_add(&b, "a", 0) == 0, "but adding nothing is fine");
	buf_free(&b);
}

static void
test_printf(void)
{
	struct buf	 b;
	char		 s[200];

	buf_init(&b, 64);
	ok(buf_printf(&b, "%s %d%c", "250", 2, '\n') == 0 &&
	    holds(&b, "250 2\n", 6), "buf_printf formats");
	ok(buf_printf(&b, "%s", "") == 0 && holds(&b, "250 2\n", 6),
	    "buf_printf of nothing adds nothing");
	ok(buf_printf(&b, "x=%05u", 42u) == 0 &&
	    holds(&b, "250 2\nx=00042", 13), "buf_printf appends");
	memset(s, 'q', sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	ok(buf_printf(&b, "%s", s) == -1 && holds(&b, "250 2\nx=00042", 13),
	    "buf_printf over the limit refused, nothing added");
	ok(buf_printf(&b, "%.51s", s) == 0 && buf_used(&b) == 64,
	    "buf_printf up to the limit");
	buf_free(&b);
}

/* Random operations against a plain array: the buffer must agree. */
static void
test_model(void)
{
	struct buf	 b;
	char		 model[4096], chunk[512], *p;
	size_t		 mlen = 0, n, iter, wrong = 0, over = 0, badline = 0;
	size_t		 i, want;
	const size_t	 max = 2000;
	int		 r;

	buf_init(&b, max);
	for (iter = 0; iter < 100000; iter++) {
		n = rnd() % 300;
		for (i = 0; i < n; i++)
			chunk[i] = rnd() % 8 ? 'a' + rnd() % 26 : '\n';
		switch (rnd() % 4) {
		case 0:
			r = buf_add(&b, chunk, n);
			if ((r == 0) != (mlen + n <= max))
				wrong++;
			if (r == 0) {
				memcpy(model + mlen, chunk, n);
				mlen += n;
			}
			break;
		case 1:
			p = buf_reserve(&b, n);
			if ((p != NULL) != (mlen + n <= max))
				wrong++;
			if (p != NULL) {
				memcpy(p, chunk, n);
				n = n ? rnd() % (n + 1) : 0;
				buf_commit(&b, n);
				memcpy(model + mlen, chunk, n);
				mlen += n;
			}
			break;
		default:
			n = rnd() % (mlen + 2);
			buf_drain(&b, n);
			if (n > mlen)
				n = mlen;
			memmove(model, model + n, mlen - n);
			mlen -= n;
			break;
		}
		if (!holds(&b, model, mlen))
			wrong++;
		if (buf_used(&b) > max)
			over++;
		p = memchr(model, '\n', mlen);
		want = p ? (size_t)(p - model) + 1 : 0;
		if (buf_line(&b) != want)
			badline++;
	}
	ok(wrong == 0, "random add/reserve/commit/drain agree with a model "
	    "(%zu wrong)", wrong);
	ok(over == 0, "the limit is never passed");
	ok(badline == 0, "buf_line agrees with the model (%zu wrong)",
	    badline);
	ok(b.cap <= 2 * 2048, "capacity stays bounded (%zu)", b.cap);
	buf_free(&b);
}

static void
test_release(void)
{
	struct buf	 b;
	char		*p;

	buf_init(&b, 1024);
	buf_release(&b);
	ok(b.data == NULL && buf_used(&b) == 0,
	    "releasing a buffer that never held data is a no-op");
	ok(buf_add(&b, "abc\n", 4) == 0, "add a line");
	buf_release(&b);
	ok(b.data != NULL && holds(&b, "abc\n", 4),
	    "a buffer with unread data keeps it");
	buf_drain(&b, 2);
	buf_release(&b);
	ok(b.data != NULL && holds(&b, "c\n", 2),
	    "a partly drained buffer keeps the rest");
	buf_drain(&b, 2);
	buf_release(&b);
	ok(b.data == NULL && b.cap == 0 && buf_used(&b) == 0 &&
	    buf_head(&b) == NULL, "an empty buffer gives its storage back");
	ok(b.max == 1024, "and keeps its limit");
	/* a read that reserved room and found nothing */
	ok((p = buf_reserve(&b, 512)) != NULL && b.data != NULL,
	    "reserve allocates again");
	buf_release(&b);
	ok(b.data == NULL, "reserved but uncommitted room is given back");
	ok(buf_add(&b, "again", 5) == 0 && holds(&b, "again", 5),
	    "a released buffer takes data again");
	ok(buf_reserve(&b, 1024) == NULL, "the limit still holds");
	buf_free(&b);
}

int
main(void)
{
	test_basic();
	test_reserve();
	test_limit();
	test_printf();
	test_model();
	test_release();
	return tap_done();
}
