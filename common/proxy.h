/*
 * proxy.h: the PROXY protocol header a TCP load balancer (HAProxy,
 * versions 1 and 2 of its specification) puts in front of a connection
 * to say who the client really is.
 *
 * proxy_parse() reads a header from the first bytes of a connection and
 * says how many octets it takes, so that the caller can consume exactly
 * that much and leave what follows (a TLS ClientHello, SMTP) untouched.
 * It is strict: a v1 line must be well formed in every field, a v2 header
 * must carry a known command and family with the address block the
 * family needs, and both must fit in PROXY_HDR_MAX octets.  A LOCAL (v2)
 * or UNKNOWN (v1) header is valid but names no client: the balancer's own
 * health check, say.
 */
#ifndef PROXY_H
#define PROXY_H

#include <sys/types.h>
#include <sys/socket.h>

#include <stddef.h>

#define PROXY_V1_MAX	107	/* the whole line, with CRLF */
#define PROXY_HDR_MAX	536	/* v2: 16 + a bounded address/TLV block */

struct proxy_hdr {
	int			 version;	/* 1 or 2 */
	int			 local;		/* LOCAL/UNKNOWN: no address */
	struct sockaddr_storage	 src;		/* the client */
	socklen_t		 srclen;
	struct sockaddr_storage	 dst;		/* where it connected */
	socklen_t		 dstlen;
};

/*
 * Parse the header at the start of the n octets at p.  Returns its length
 * (> 0) and fills *h, 0 if more octets are needed to tell, -1 if this is
 * no valid header.
 */
int	 proxy_parse(const void *p, size_t n, struct proxy_hdr *h);

#endif
