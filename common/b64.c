/*
 * b64.c: base64 encoding and strict decoding, for SASL exchanges.
 */
#include <stdint.h>
#include <string.h>

#include "b64.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

ssize_t
b64_encode(const void *src, size_t n, char *dst, size_t dstlen)
{
	const uint8_t	*s = src;
	size_t		 i, o = 0;
	uint32_t	 v;

	if (dstlen < B64_ENCLEN(n))
		return -1;
	for (i = 0; i + 2 < n; i += 3) {
		v = s[i] << 16 | s[i + 1] << 8 | s[i + 2];
		dst[o++] = b64_alphabet[v >> 18];
		dst[o++] = b64_alphabet[(v >> 12) & 63];
		dst[o++] = b64_alphabet[(v >> 6) & 63];
		dst[o++] = b64_alphabet[v & 63];
	}
	if (i < n) {
		v = s[i] << 16 | (i + 1 < n ? s[i + 1] << 8 : 0);
		dst[o++] = b64_alphabet[v >> 18];
		dst[o++] = b64_alphabet[(v >> 12) & 63];
		dst[o++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
		dst[o++] = '=';
	}
	dst[o] = '\0';
	return o;
}

static int
b64_value(char c)
{
	const char	*p;

	if (c == '\0' || (p = strchr(b64_alphabet, c)) == NULL)
		return -1;
	return p - b64_alphabet;
}

ssize_t
b64_decode(const char *src, size_t n, void *dst, size_t dstlen)
{
	uint8_t		*d = dst;
	size_t		 i, o = 0;
	int		 v[4], k, pad;

	if (n % 4 != 0 || dstlen < B64_DECLEN(n))
		return -1;
	for (i = 0; i < n; i += 4) {
		pad = 0;
		for (k = 0; k < 4; k++) {
			if (src[i + k] == '=' && i + 4 == n && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			if (pad || (v[k] = b64_value(src[i + k])) < 0)
				return -1;
		}
		/* the bits dropped by padding must be zero (canonical form) */
		if ((pad == 1 && (v[2] & 3)) || (pad == 2 && (v[1] & 15)))
			return -1;
		d[o++] = v[0] << 2 | v[1] >> 4;
		if (pad < 2)
			d[o++] = (v[1] & 15) << 4 | v[2] >> 2;
		if (pad < 1)
			d[o++] = (v[2] & 3) << 6 | v[3];
	}
	d[o] = '\0';
	return o;
}
