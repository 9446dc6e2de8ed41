/*
 * fuzz_proxy.c: the PROXY protocol header (common/proxy.c), the first
 * bytes a "proxy" listener reads, before any TLS.
 *
 * Besides not crashing: a header's length is within the input and the
 * version's bound; the same header is found whatever follows it; every
 * shorter prefix of it asks for more; and a verdict of "invalid" stays
 * invalid however much more input arrives.
 */
#include <stdint.h>
#include <string.h>

#include "proxy.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_hdr	 h, h2;
	size_t			 i;
	int			 r, r2;

	if (size > 2 * PROXY_HDR_MAX)
		return 0;
	r = proxy_parse(data, size, &h);
	CHECK(r >= -1 && r <= (int)size);
	if (r > 0) {
		CHECK(r <= (h.version == 1 ? PROXY_V1_MAX : PROXY_HDR_MAX));
		CHECK(h.version == 1 || h.version == 2);
		CHECK(h.local || h.src.ss_family == AF_INET ||
		    h.src.ss_family == AF_INET6);
		r2 = proxy_parse(data, r, &h2);
		CHECK(r2 == r && memcmp(&h, &h2, sizeof(h)) == 0);
		for (i = 0; i < (size_t)r; i++)
			CHECK(proxy_parse(data, i, &h2) == 0);
	} else if (r == -1) {
		for (i = size; i <= size + 8 && i <= 2 * PROXY_HDR_MAX; i++) {
			uint8_t	 more[2 * PROXY_HDR_MAX + 8];

			memcpy(more, data, size);
			memset(more + size, '\n', i - size);
			CHECK(proxy_parse(more, i, &h2) == -1);
		}
	}
	return 0;
}
