/*
 * t_b64.c: unit tests for common/b64.c, the strict base64 used by AUTH.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "tap.h"

static uint32_t	 rnd_state = 0x6b3a9e41;

/* xorshift32: deterministic, so a failure can be reproduced */
static uint32_t
rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 17;
	rnd_state ^= rnd_state << 5;
	return rnd_state;
}

/* A printable form of s for test names; rotates over a few buffers. */
static const char *
esc(const char *s, size_t n)
{
	static char	 bufs[4][256];
	static int	 which;
	char		*b = bufs[which++ % 4];
	size_t		 i, o = 0;

	for (i = 0; i < n && o < sizeof(bufs[0]) - 5; i++) {
		unsigned char c = s[i];

		if (c == '\r')
			o += snprintf(b + o, 5, "\\r");
		else if (c == '\n')
			o += snprintf(b + o, 5, "\\n");
		else if (c == '\t')
			o += snprintf(b + o, 5, "\\t");
		else if (c < 0x20 || c >= 0x7f)
			o += snprintf(b + o, 5, "\\x%02x", c);
		else
			b[o++] = c;
	}
	b[o] = '\0';
	return b;
}

static const struct {
	const char	*plain;
	const char	*enc;
} vectors[] = {		/* RFC 4648 section 10 */
	{ "", "" },
	{ "f", "Zg==" },
	{ "fo", "Zm8=" },
	{ "foo", "Zm9v" },
	{ "foob", "Zm9vYg==" },
	{ "fooba", "Zm9vYmE=" },
	{ "foobar", "Zm9vYmFy" },
};

/* Decode s into a buffer of exactly the advertised size. */
static ssize_t
dec(const char *s, size_t n, uint8_t **out)
{
	size_t	 len = B64_DECLEN(n);
	ssize_t	 r;

	if ((*out = malloc(len)) == NULL)
		abort();
	r = b64_decode(s, n, *out, len);
	return r;
}

static int
refused(const char *s, size_t n)
{
	uint8_t	*out;
	ssize_t	 r;

	r = dec(s, n, &out);
	free(out);
	return r == -1;
}

static void
test_vectors(void)
{
	char	 enc[64];
	uint8_t	*out;
	size_t	 i, pl, el;
	ssize_t	 r;

	for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		pl = strlen(vectors[i].plain);
		el = strlen(vectors[i].enc);
		memset(enc, 'X', sizeof(enc));
		r = b64_encode(vectors[i].plain, pl, enc, sizeof(enc));
		ok(r == (ssize_t)el && strcmp(enc, vectors[i].enc) == 0,
		    "encode \"%s\" -> \"%s\"", vectors[i].plain,
		    vectors[i].enc);
		r = dec(vectors[i].enc, el, &out);
		ok(r == (ssize_t)pl && memcmp(out, vectors[i].plain, pl) == 0
		    && out[pl] == '\0',
		    "decode \"%s\" -> \"%s\", NUL-terminated", vectors[i].enc,
		    vectors[i].plain);
		free(out);
	}
}

static void
test_roundtrip(void)
{
	uint8_t	 src[301], *out;
	char	*enc;
	size_t	 n, i, k, bad_enc = 0, bad_len = 0, bad_dec = 0, bad_alpha = 0;
	ssize_t	 r;

	for (n = 0; n <= 300; n++) {
		for (k = 0; k < 4; k++) {
			for (i = 0; i < n; i++)
				src[i] = k == 1 ? 0 : k == 2 ? 0xff : rnd();
			/* exactly the size the header asks for */
			if ((enc = malloc(B64_ENCLEN(n))) == NULL)
				abort();
			r = b64_encode(src, n, enc, B64_ENCLEN(n));
			if (r < 0) {
				bad_enc++;
				free(enc);
				continue;
			}
			if ((size_t)r != (n + 2) / 3 * 4 ||
			    strlen(enc) != (size_t)r)
				bad_len++;
			/* only the alphabet, and '=' only at the end */
			for (i = 0; i < (size_t)r; i++) {
				if (enc[i] == '=' && i >= (size_t)r - 2 &&
				    (i == (size_t)r - 1 || enc[i + 1] == '='))
					continue;
				if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				    "abcdefghijklmnopqrstuvwxyz0123456789+/",
				    enc[i]) == NULL || enc[i] == '\0')
					bad_alpha++;
			}
			r = dec(enc, r, &out);
			if (r != (ssize_t)n || memcmp(out, src, n) != 0 ||
			    out[n] != '\0')
				bad_dec++;
			free(out);
			free(enc);
		}
	}
	ok(bad_enc == 0, "encode accepts every length 0..300 (%zu refused)",
	    bad_enc);
	ok(bad_len == 0, "encoded length is 4*ceil(n/3) (%zu wrong)", bad_len);
	ok(bad_alpha == 0, "encoding uses the alphabet, '=' only as padding "
	    "(%zu bad)", bad_alpha);
	ok(bad_dec == 0, "decode(encode(x)) == x for random, zero and 0xff "
	    "bytes of lengths 0..300 (%zu wrong)", bad_dec);
}

static void
test_refusals(void)
{
	uint8_t	*out;
	static const char *bad[] = {
		/* padding */
		"Zg=", "Zg===", "Z===", "=Zg=", "====", "Zg==Zg==", "Z=g=",
		"Zm=v", "Zm9v=", "Zm9v====", "Zg=A",
		/* non-canonical: padding drops nonzero bits */
		"Zh==", "Zv==", "Zm9=", "Zm9vYh==", "Zm9vYmF=",
		/* characters outside the alphabet */
		"Zm9v!A==", "Zm9-", "Zm9_", "Zm.v", "Zm\xc3\xa9",
		"Zm9v\x80\x41==",
		/* whitespace anywhere */
		"Zm 9v", "Zm9v\n", "Zm9v\r\n", " Zm9v", "\tZm9v", "Zm9v ",
		"Zm9v\r\nYmFy",
		/* wrong length */
		"Z", "Zm", "Zm9", "Zm9vY", "Zm9vYm", "Zm9vYmF",
	};
	size_t	 i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ok(refused(bad[i], strlen(bad[i])), "refuse \"%s\"",
		    esc(bad[i], strlen(bad[i])));
	ok(refused("Zm\0v", 4), "refuse a NUL inside the input");
	ok(!refused("Zm8=", 4) && !refused("Zm9vYmE=", 8),
	    "canonical single padding is accepted");
	ok(dec("Zm9vY!!!", 4, &out) == 3 && memcmp(out, "foo", 4) == 0,
	    "only n characters are decoded, bytes past n are not looked at");
	free(out);
}

static void
test_small_buffers(void)
{
	char	 enc[16];
	uint8_t	 out[16];

	memset(enc, 'X', sizeof(enc));
	ok(b64_encode("foob", 4, enc, B64_ENCLEN(4) - 1) == -1,
	    "encode refuses an output buffer one byte short");
	ok(enc[0] == 'X', "a refused encode writes nothing");
	ok(b64_encode("foob", 4, enc, B64_ENCLEN(4)) == 8,
	    "encode accepts an output buffer of exactly B64_ENCLEN");
	ok(b64_encode("", 0, enc, 0) == -1,
	    "encode refuses a zero-size output buffer (no room for NUL)");
	ok(b64_decode("Zm9vYmFy", 8, out, B64_DECLEN(8) - 1) == -1,
	    "decode refuses an output buffer one byte short");
	ok(b64_decode("Zm9vYmFy", 8, out, B64_DECLEN(8)) == 6,
	    "decode accepts an output buffer of exactly B64_DECLEN");
	ok(b64_decode("", 0, out, 0) == -1,
	    "decode refuses a zero-size output buffer (no room for NUL)");
	ok(b64_decode("", 0, out, 1) == 0 && out[0] == '\0',
	    "decode of the empty string is empty and NUL-terminated");
}

/*
 * Random strings over the alphabet plus a few troublemakers: whatever the
 * decoder accepts must be the canonical encoding of what it returns.
 */
static void
test_fuzz(void)
{
	static const char chars[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	    "=====-_ \n\r.\x80\xff";
	char	 s[64], enc[64];
	uint8_t	*out;
	size_t	 i, n, iter, accepted = 0, noncanon = 0;
	ssize_t	 r;

	for (iter = 0; iter < 200000; iter++) {
		n = rnd() % 13;
		for (i = 0; i < n; i++) {
			/* bias towards valid strings so some get through */
			if (rnd() % 8)
				s[i] = chars[rnd() % 64];
			else
				s[i] = chars[rnd() % (sizeof(chars) - 1)];
		}
		s[n] = '\0';
		r = dec(s, n, &out);
		if (r >= 0) {
			accepted++;
			if (b64_encode(out, r, enc, sizeof(enc)) != (ssize_t)n
			    || memcmp(enc, s, n) != 0)
				noncanon++;
		}
		free(out);
	}
	ok(accepted > 1000, "fuzz: some random strings are valid (%zu)",
	    accepted);
	ok(noncanon == 0, "fuzz: every accepted string re-encodes to itself "
	    "(%zu did not)", noncanon);
}

int
main(void)
{
	test_vectors();
	test_roundtrip();
	test_refusals();
	test_small_buffers();
	test_fuzz();
	return tap_done();
}
