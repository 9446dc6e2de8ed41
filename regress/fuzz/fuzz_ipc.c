/*
 * fuzz_ipc.c: IPC framing and payload unpacking (common/ipc.c).  Each
 * process runs ipc_decode() over what it reads from a socketpair and
 * ipc_unpack() on every payload; both must stay inside the bytes they are
 * given.  Each payload is copied to a buffer of its exact size so that
 * AddressSanitizer sees any read past it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ipc.h"
#include "fuzz.h"

static int
inside(const void *p, size_t n, const struct ipc_msg *m)
{
	const uint8_t	*b = p;

	return b >= m->data && n <= m->len &&
	    (size_t)(b - m->data) <= m->len - n;
}

static int
str_inside(const char *s, const struct ipc_msg *m)
{
	return inside(s, 1, m) &&
	    memchr(s, '\0', m->len - ((const uint8_t *)s - m->data)) != NULL;
}

static void
unpack_all(const struct ipc_msg *m)
{
	const char	*s[5];
	const uint8_t	*b;
	size_t		 blen;
	uint32_t	 u, u2;
	int		 i;

	if (ipc_unpack(m, "u", &u) == 0)
		CHECK(m->len == sizeof(u) && memcmp(&u, m->data, 4) == 0);
	if (ipc_unpack(m, "s", &s[0]) == 0) {
		CHECK(s[0] == (const char *)m->data);
		CHECK(strlen(s[0]) + 1 == m->len);
	}
	if (ipc_unpack(m, "b", &b, &blen) == 0) {
		CHECK(b == m->data + 4 && blen + 4 == m->len);
		CHECK(inside(b, blen, m));
	}
	if (ipc_unpack(m, "ssuss", &s[0], &s[1], &u, &s[2], &s[3]) == 0)
		for (i = 0; i < 4; i++)
			CHECK(str_inside(s[i], m));
	if (ipc_unpack(m, "sssssu", &s[0], &s[1], &s[2], &s[3], &s[4],
	    &u) == 0) {
		for (i = 0; i < 5; i++)
			CHECK(str_inside(s[i], m));
		/* the number closes the payload */
		CHECK(memcmp(&u, m->data + m->len - 4, 4) == 0);
	}
	if (ipc_unpack(m, "us", &u, &s[0]) == 0) {
		CHECK(s[0] == (const char *)m->data + 4);
		CHECK(str_inside(s[0], m));
	}
	if (ipc_unpack(m, "", NULL) == 0)
		CHECK(m->len == 0);
	else
		CHECK(m->len != 0);
	/* a byte string with a number after it, to walk past 'b' */
	if (ipc_unpack(m, "bu", &b, &blen, &u2) == 0)
		CHECK(inside(b, blen, m) && blen + 8 == m->len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ipc_hdr	 hdr;
	struct ipc_msg	 m;
	uint8_t		*payload;
	size_t		 off = 0;
	int		 r;

	for (;;) {
		r = ipc_decode(data + off, size - off, &hdr);
		CHECK(r == -1 || r == 0 || r == 1);
		if (r == -1) {
			CHECK(size - off >= IPC_HDR_LEN);
			break;
		}
		if (r == 0)
			break;
		CHECK(hdr.len <= IPC_MAX_PAYLOAD);
		CHECK((hdr.flags & ~IPC_F_FD) == 0);
		CHECK(size - off - IPC_HDR_LEN >= hdr.len);

		/* exact size, even 0: ASan then sees any read past it */
		if ((payload = malloc(hdr.len)) == NULL)
			return 0;
		memcpy(payload, data + off + IPC_HDR_LEN, hdr.len);
		memset(&m, 0, sizeof(m));
		m.type = hdr.type;
		m.peerid = hdr.peerid;
		m.fd = -1;
		m.data = payload;
		m.len = hdr.len;
		unpack_all(&m);
		free(payload);
		off += IPC_HDR_LEN + hdr.len;
	}
	return 0;
}
