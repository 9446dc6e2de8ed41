/*
 * b64.h: strict base64 (RFC 4648) as SMTP AUTH uses it (RFC 4954).
 *
 * b64_decode() refuses anything that is not canonical base64: bad
 * characters, bad padding, whitespace.  It returns the decoded length or
 * -1; the output is NUL-terminated for convenience.
 */
#ifndef B64_H
#define B64_H

#include <stddef.h>
#include <sys/types.h>

/* bytes needed for the encoding of n bytes, including the NUL */
#define B64_ENCLEN(n)	((((n) + 2) / 3) * 4 + 1)
/* bytes needed for the decoding of a string of n characters plus NUL */
#define B64_DECLEN(n)	(((n) / 4) * 3 + 1)

ssize_t	 b64_encode(const void *, size_t, char *, size_t);
ssize_t	 b64_decode(const char *, size_t, void *, size_t);

#endif
