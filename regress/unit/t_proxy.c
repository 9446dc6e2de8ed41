/*
 * t_proxy.c: unit tests for common/proxy.c, the PROXY protocol header
 * (v1 text, v2 binary) read at the start of connections on a "proxy"
 * listener.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "proxy.h"
#include "tap.h"

static const uint8_t sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

static const char *
addr(const struct sockaddr_storage *ss)
{
	static char	 buf[2][INET6_ADDRSTRLEN + 8];
	static int	 w;
	char		*b = buf[w++ % 2], a[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)ss;

		inet_ntop(AF_INET, &s->sin_addr, a, sizeof(a));
		snprintf(b, sizeof(buf[0]), "%s:%u", a, ntohs(s->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)ss;

		inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof(a));
		snprintf(b, sizeof(buf[0]), "[%s]:%u", a, ntohs(s->sin6_port));
	} else
		snprintf(b, sizeof(buf[0]), "none");
	return b;
}

static void
v1_ok(const char *line, const char *src, const char *dst, const char *what)
{
	struct proxy_hdr	 h;
	char			 buf[256];
	size_t			 n = strlen(line);
	int			 r;

	/* what follows the header is not the parser's */
	snprintf(buf, sizeof(buf), "%s\x16\x03\x01", line);
	r = proxy_parse(buf, strlen(buf), &h);
	ok(r == (int)n && h.version == 1 && !h.local &&
	    strcmp(addr(&h.src), src) == 0 && strcmp(addr(&h.dst), dst) == 0,
	    "v1 %s: %d octets, %s -> %s (got %d, %s -> %s)", what, (int)n,
	    src, dst, r, addr(&h.src), addr(&h.dst));
}

static void
v1_bad(const char *line, const char *what)
{
	struct proxy_hdr	 h;

	ok(proxy_parse(line, strlen(line), &h) == -1, "v1 refused: %s", what);
}

/* Every proper prefix of a valid header asks for more. */
static void
prefixes(const void *p, size_t n, const char *what)
{
	struct proxy_hdr	 h;
	size_t			 i;
	int			 bad = 0;

	for (i = 0; i < n; i++)
		if (proxy_parse(p, i, &h) != 0)
			bad++;
	ok(bad == 0, "%s: each of the %zu prefixes needs more", what, n);
}

static size_t
v2hdr(uint8_t *b, uint8_t vercmd, uint8_t fam, const uint8_t *body,
    uint16_t len)
{
	memcpy(b, sig, 12);
	b[12] = vercmd;
	b[13] = fam;
	b[14] = len >> 8;
	b[15] = len & 0xff;
	memcpy(b + 16, body, len);
	return 16 + len;
}

int
main(void)
{
	struct proxy_hdr	 h;
	uint8_t			 b[1024], body[600];
	const char		*l;
	size_t			 n;
	int			 r;

	v1_ok("PROXY TCP4 192.0.2.7 198.51.100.1 56324 465\r\n",
	    "192.0.2.7:56324", "198.51.100.1:465", "TCP4");
	v1_ok("PROXY TCP6 2001:db8::7 2001:db8::1 65535 587\r\n",
	    "[2001:db8::7]:65535", "[2001:db8::1]:587", "TCP6");
	v1_ok("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
	    "255.255.255.255:65535", "255.255.255.255:65535", "longest TCP4");
	v1_ok("PROXY TCP4 10.0.0.1 10.0.0.2 0 0\r\n", "10.0.0.1:0",
	    "10.0.0.2:0", "port 0");

	l = "PROXY UNKNOWN\r\n";
	r = proxy_parse(l, strlen(l), &h);
	ok(r == (int)strlen(l) && h.local && h.version == 1, "v1 UNKNOWN");
	l = "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
	r = proxy_parse(l, strlen(l), &h);
	ok(r == (int)strlen(l) && h.local, "v1 UNKNOWN with addresses");

	v1_bad("PROXY TCP4 192.0.2.7 198.51.100.1 56324 465\n", "bare LF");
	v1_bad("PROXY TCP4 192.0.2.7  198.51.100.1 56324 465\r\n",
	    "two spaces");
	v1_bad("PROXY TCP4 192.0.2.7 198.51.100.1 56324 465 \r\n",
	    "trailing space");
	v1_bad("PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n", "no port");
	v1_bad("PROXY TCP4 192.0.2.7 198.51.100.1 56324 465 1\r\n",
	    "a field too many");
	v1_bad("PROXY TCP4 192.0.2.7 198.51.100.1 65536 465\r\n",
	    "port 65536");
	v1_bad("PROXY TCP4 192.0.2.7 198.51.100.1 0465 465\r\n",
	    "leading zero");
	v1_bad("PROXY TCP4 192.0.2.7 198.51.100.1 -1 465\r\n", "sign");
	v1_bad("PROXY TCP4 2001:db8::7 2001:db8::1 1 2\r\n",
	    "IPv6 as TCP4");
	v1_bad("PROXY TCP6 192.0.2.7 198.51.100.1 1 2\r\n", "IPv4 as TCP6");
	v1_bad("PROXY TCP4 192.0.2.256 198.51.100.1 1 2\r\n", "octet 256");
	v1_bad("PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n", "UDP4");
	v1_bad("PROXY tcp4 192.0.2.7 198.51.100.1 1 2\r\n", "lower case");
	v1_bad("proxy TCP4 192.0.2.7 198.51.100.1 1 2\r\n", "lower PROXY");
	v1_bad("EHLO client.example\r\n", "SMTP instead");
	v1_bad("\x16\x03\x01\x02\x00", "a TLS ClientHello instead");
	memset(b, 'A', sizeof(b));
	memcpy(b, "PROXY TCP4 ", 11);
	ok(proxy_parse(b, PROXY_V1_MAX, &h) == -1,
	    "v1 refused: no CRLF in %d octets", PROXY_V1_MAX);
	ok(proxy_parse(b, PROXY_V1_MAX - 1, &h) == 0,
	    "v1: no CRLF in %d octets yet: more", PROXY_V1_MAX - 1);
	memcpy(b, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\0\r\n", 34);
	ok(proxy_parse(b, 34, &h) == -1, "v1 refused: NUL in the line");
	l = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 465\r\n";
	prefixes(l, strlen(l), "v1 TCP4");

	/* v2 */
	memcpy(body, "\xc0\x00\x02\x07" "\xc6\x33\x64\x01" "\xdc\x04"
	    "\x01\xd1", 12);
	n = v2hdr(b, 0x21, 0x11, body, 12);
	memcpy(b + n, "\x16\x03\x01", 3);
	r = proxy_parse(b, n + 3, &h);
	ok(r == 28 && h.version == 2 && !h.local &&
	    strcmp(addr(&h.src), "192.0.2.7:56324") == 0 &&
	    strcmp(addr(&h.dst), "198.51.100.1:465") == 0,
	    "v2 TCP4: 28 octets, %s -> %s", addr(&h.src), addr(&h.dst));
	prefixes(b, n, "v2 TCP4");
	memset(body, 0, 36);
	body[15] = 7;
	body[31] = 1;
	body[32] = 0xff;
	body[33] = 0xff;
	body[35] = 25;
	n = v2hdr(b, 0x21, 0x21, body, 36);
	r = proxy_parse(b, n, &h);
	ok(r == 52 && strcmp(addr(&h.src), "[::7]:65535") == 0 &&
	    strcmp(addr(&h.dst), "[::1]:25") == 0, "v2 TCP6: %s -> %s",
	    addr(&h.src), addr(&h.dst));
	/* TLVs after the addresses are skipped */
	memcpy(body, "\x0a\x00\x00\x01\x0a\x00\x00\x02\x00\x01\x00\x02", 12);
	memcpy(body + 12, "\x01\x00\x02h2\x04\x00\x00", 8);
	n = v2hdr(b, 0x21, 0x11, body, 20);
	ok(proxy_parse(b, n, &h) == 36 && strcmp(addr(&h.src),
	    "10.0.0.1:1") == 0, "v2 TCP4 with TLVs: 36 octets");
	n = v2hdr(b, 0x20, 0x00, body, 0);
	r = proxy_parse(b, n, &h);
	ok(r == 16 && h.local, "v2 LOCAL, no addresses");
	n = v2hdr(b, 0x20, 0x11, body, 12);
	ok(proxy_parse(b, n, &h) == 28 && h.local,
	    "v2 LOCAL with an address block: skipped, no client");
	n = v2hdr(b, 0x21, 0x11, body, 11);
	ok(proxy_parse(b, n, &h) == -1, "v2 refused: TCP4 block short");
	n = v2hdr(b, 0x21, 0x21, body, 35);
	ok(proxy_parse(b, n, &h) == -1, "v2 refused: TCP6 block short");
	n = v2hdr(b, 0x21, 0x12, body, 12);
	ok(proxy_parse(b, n, &h) == -1, "v2 refused: UDP");
	n = v2hdr(b, 0x21, 0x31, body, 216);
	ok(proxy_parse(b, n, &h) == -1, "v2 refused: UNIX socket");
	n = v2hdr(b, 0x21, 0x00, body, 0);
	ok(proxy_parse(b, n, &h) == -1, "v2 refused: PROXY of UNSPEC");
	n = v2hdr(b, 0x22, 0x11, body, 12);
	ok(proxy_parse(b, n, &h) == -1, "v2 refused: command 2");
	n = v2hdr(b, 0x11, 0x11, body, 12);
	ok(proxy_parse(b, n, &h) == -1, "v2 refused: version 1 in v2 form");
	memset(body, 0, sizeof(body));
	n = v2hdr(b, 0x21, 0x11, body, PROXY_HDR_MAX - 16);
	ok(proxy_parse(b, n, &h) == PROXY_HDR_MAX, "v2: %d octets in all",
	    PROXY_HDR_MAX);
	b[14] = (PROXY_HDR_MAX - 15) >> 8;
	b[15] = (PROXY_HDR_MAX - 15) & 0xff;
	ok(proxy_parse(b, 20, &h) == -1,
	    "v2 refused: longer than %d, told before it all arrives",
	    PROXY_HDR_MAX);
	memcpy(b, sig, 12);
	b[5] = 0x0e;
	ok(proxy_parse(b, 16, &h) == -1, "v2 refused: a bad signature");
	ok(proxy_parse("", 0, &h) == 0, "nothing yet: more");
	return tap_done();
}
