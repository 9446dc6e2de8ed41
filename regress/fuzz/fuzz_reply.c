/*
 * fuzz_reply.c: the relay host's reply lines (relay_reply_line() in
 * smtpd/relay.c), which the queue process reads from the local MTA.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smsubmit.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*line;
	int	 r, code;

	if (size > 4096)
		return 0;
	if ((line = malloc(size + 1)) == NULL)
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';

	code = -12345;
	r = relay_reply_line(line, &code);
	CHECK(r == -1 || r == 0 || r == 1);
	if (r != -1) {
		CHECK(code >= 200 && code <= 599);
		/* the code is the first three octets, all digits */
		CHECK(isdigit((unsigned char)line[0]) &&
		    isdigit((unsigned char)line[1]) &&
		    isdigit((unsigned char)line[2]));
		CHECK(code == (line[0] - '0') * 100 + (line[1] - '0') * 10 +
		    (line[2] - '0'));
		/* "250-" continues, "250 " or "250" ends the reply */
		CHECK(r == (line[3] == '-' ? 0 : 1));
		CHECK(line[3] == '\0' || line[3] == ' ' || line[3] == '-');
	} else
		CHECK(code == -12345);
	free(line);
	return 0;
}
