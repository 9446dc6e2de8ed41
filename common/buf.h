/*
 * buf.h: a growable byte buffer with a read offset.
 *
 * Data is appended at the end and consumed from the front; consumed space
 * is reclaimed lazily.  A buffer never grows past the limit given to
 * buf_init(), so a peer cannot make us allocate without bound.
 * Storage is allocated by the first write (buf_add, buf_reserve) and can
 * be given back whenever the buffer is empty (buf_release), so a buffer
 * that holds nothing costs nothing but the struct.
 */
#ifndef BUF_H
#define BUF_H

#include <stddef.h>

struct buf {
	char	*data;
	size_t	 off;		/* first unread byte */
	size_t	 len;		/* end of data */
	size_t	 cap;
	size_t	 max;		/* hard limit on len - off */
};

void	 buf_init(struct buf *, size_t max);
void	 buf_free(struct buf *);
void	 buf_freezero(struct buf *);
/*
 * Free the storage of a buffer that holds no unread data (a no-op if it
 * holds some): it is allocated again by the next write.  Pointers from
 * buf_head() or buf_reserve() are invalid after it.
 */
void	 buf_release(struct buf *);
int	 buf_add(struct buf *, const void *, size_t);
int	 buf_printf(struct buf *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
/* room for at least n more bytes; returns the write pointer or NULL */
char	*buf_reserve(struct buf *, size_t n);
void	 buf_commit(struct buf *, size_t n);
size_t	 buf_used(const struct buf *);
char	*buf_head(const struct buf *);
void	 buf_drain(struct buf *, size_t);
/*
 * Find a line ending in LF in the buffer.  Returns its length including
 * the LF, 0 if there is no complete line yet.
 */
size_t	 buf_line(const struct buf *);

#endif
