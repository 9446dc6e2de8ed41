/*
 * buf.c: growable byte buffers, used by every process for socket I/O.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

void
buf_init(struct buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

void
buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->off = b->len = b->cap = 0;
}

void
buf_freezero(struct buf *b)
{
	freezero(b->data, b->cap);
	b->data = NULL;
	b->off = b->len = b->cap = 0;
}

void
buf_release(struct buf *b)
{
	if (b->data != NULL && b->off == b->len)
		buf_free(b);
}

char *
buf_reserve(struct buf *b, size_t n)
{
	size_t	 used = b->len - b->off, ncap;
	char	*p;

	if (n > b->max || used > b->max - n)
		return NULL;
	if (b->len + n <= b->cap)
		return b->data + b->len;
	if (b->off > 0) {
		memmove(b->data, b->data + b->off, used);
		b->off = 0;
		b->len = used;
		if (b->len + n <= b->cap)
			return b->data + b->len;
	}
	ncap = b->cap ? b->cap : 256;
	while (ncap < used + n)
		ncap *= 2;
	if ((p = recallocarray(b->data, b->cap, ncap, 1)) == NULL)
		return NULL;
	b->data = p;
	b->cap = ncap;
	return b->data + b->len;
}

void
buf_commit(struct buf *b, size_t n)
{
	b->len += n;
}

int
buf_add(struct buf *b, const void *data, size_t n)
{
	char	*p;

	if (n == 0)
		return 0;
	if ((p = buf_reserve(b, n)) == NULL)
		return -1;
	memcpy(p, data, n);
	b->len += n;
	return 0;
}

int
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list	 ap;
	char	*s;
	int	 n, r;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	r = buf_add(b, s, n);
	free(s);
	return r;
}

size_t
buf_used(const struct buf *b)
{
	return b->len - b->off;
}

char *
buf_head(const struct buf *b)
{
	/* a buffer that never held data has no storage at all */
	return b->data == NULL ? NULL : b->data + b->off;
}

void
buf_drain(struct buf *b, size_t n)
{
	if (n >= b->len - b->off)
		b->off = b->len = 0;
	else
		b->off += n;
}

size_t
buf_line(const struct buf *b)
{
	char	*nl;

	if (b->len == b->off)
		return 0;
	if ((nl = memchr(b->data + b->off, '\n', b->len - b->off)) == NULL)
		return 0;
	return nl - (b->data + b->off) + 1;
}
