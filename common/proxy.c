/*
 * proxy.c: parse a PROXY protocol header (versions 1 and 2).
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdint.h>
#include <string.h>

#include "proxy.h"

static const uint8_t v2sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

/* A decimal port, 0 to 65535, no sign, no leading zero. */
static int
port(const char *s, uint16_t *out)
{
	unsigned long	 n = 0;
	size_t		 i, len = strlen(s);

	if (len == 0 || len > 5 || (len > 1 && s[0] == '0'))
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		n = n * 10 + (s[i] - '0');
	}
	if (n > 65535)
		return -1;
	*out = n;
	return 0;
}

static int
v1_addr(int family, const char *a, const char *p, struct sockaddr_storage *ss,
    socklen_t *len)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	uint16_t		 pt;

	memset(ss, 0, sizeof(*ss));
	if (port(p, &pt) == -1)
		return -1;
	if (family == AF_INET) {
		if (inet_pton(AF_INET, a, &sin->sin_addr) != 1)
			return -1;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(pt);
		*len = sizeof(*sin);
	} else {
		if (inet_pton(AF_INET6, a, &sin6->sin6_addr) != 1)
			return -1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(pt);
		*len = sizeof(*sin6);
	}
	return 0;
}

/* "PROXY TCP4 src dst sport dport\r\n", single spaces, nothing more. */
static int
v1(const char *p, size_t n, struct proxy_hdr *h)
{
	char		 line[PROXY_V1_MAX + 1], *f[6], *s;
	const char	*lf;
	size_t		 len;
	int		 nf = 0, family;

	/* the line ends at the first LF, which must follow a CR */
	if ((lf = memchr(p, '\n', n < PROXY_V1_MAX ? n : PROXY_V1_MAX)) ==
	    NULL)
		return n < PROXY_V1_MAX ? 0 : -1;
	len = lf - p;
	if (len == 0 || p[len - 1] != '\r')
		return -1;
	len--;
	if (memchr(p, '\0', len) != NULL || memchr(p, '\r', len) != NULL)
		return -1;
	memcpy(line, p, len);
	line[len] = '\0';
	h->version = 1;
	if (strcmp(line, "PROXY UNKNOWN") == 0 ||
	    strncmp(line, "PROXY UNKNOWN ", 14) == 0) {
		h->local = 1;
		return len + 2;
	}
	for (s = line; nf < 6; nf++) {
		f[nf] = s;
		if ((s = strchr(s, ' ')) == NULL) {
			nf++;
			break;
		}
		*s++ = '\0';
	}
	if (nf != 6 || s != NULL || strcmp(f[0], "PROXY") != 0)
		return -1;
	if (strcmp(f[1], "TCP4") == 0)
		family = AF_INET;
	else if (strcmp(f[1], "TCP6") == 0)
		family = AF_INET6;
	else
		return -1;
	if (v1_addr(family, f[2], f[4], &h->src, &h->srclen) == -1 ||
	    v1_addr(family, f[3], f[5], &h->dst, &h->dstlen) == -1)
		return -1;
	return len + 2;
}

static int
v2(const uint8_t *p, size_t n, struct proxy_hdr *h)
{
	struct sockaddr_in	*s4 = (struct sockaddr_in *)&h->src;
	struct sockaddr_in	*d4 = (struct sockaddr_in *)&h->dst;
	struct sockaddr_in6	*s6 = (struct sockaddr_in6 *)&h->src;
	struct sockaddr_in6	*d6 = (struct sockaddr_in6 *)&h->dst;
	size_t			 len;
	int			 cmd;

	if (n < 16)
		return 0;
	if ((p[12] >> 4) != 2)
		return -1;
	cmd = p[12] & 0x0f;
	len = (size_t)p[14] << 8 | p[15];
	if (16 + len > PROXY_HDR_MAX)
		return -1;
	if (n < 16 + len)
		return 0;
	h->version = 2;
	if (cmd == 0) {
		/* LOCAL: the balancer itself; whatever follows is ignored */
		h->local = 1;
		return 16 + len;
	}
	if (cmd != 1)
		return -1;
	switch (p[13]) {
	case 0x11:		/* TCP over IPv4 */
		if (len < 12)
			return -1;
		s4->sin_family = d4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, p + 16, 4);
		memcpy(&d4->sin_addr, p + 20, 4);
		memcpy(&s4->sin_port, p + 24, 2);
		memcpy(&d4->sin_port, p + 26, 2);
		h->srclen = h->dstlen = sizeof(*s4);
		break;
	case 0x21:		/* TCP over IPv6 */
		if (len < 36)
			return -1;
		s6->sin6_family = d6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, p + 16, 16);
		memcpy(&d6->sin6_addr, p + 32, 16);
		memcpy(&s6->sin6_port, p + 48, 2);
		memcpy(&d6->sin6_port, p + 50, 2);
		h->srclen = h->dstlen = sizeof(*s6);
		break;
	default:
		/* UDP, UNIX sockets, unspecified: not a submission client */
		return -1;
	}
	return 16 + len;
}

int
proxy_parse(const void *buf, size_t n, struct proxy_hdr *h)
{
	const uint8_t	*p = buf;
	size_t		 m;

	memset(h, 0, sizeof(*h));
	/* as long as what is there could still be either signature, wait */
	m = n < sizeof(v2sig) ? n : sizeof(v2sig);
	if (memcmp(p, v2sig, m) == 0)
		return m < sizeof(v2sig) ? 0 : v2(p, n, h);
	m = n < 6 ? n : 6;
	if (memcmp(p, "PROXY ", m) == 0)
		return m < 6 ? 0 : v1(buf, n, h);
	return -1;
}
