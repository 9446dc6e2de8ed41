/*
 * fuzz_command.c: the SMTP command line as the session splits it, and the
 * MAIL FROM: and RCPT TO: arguments that follow.  The listener feeds these
 * functions lines of up to SMTP_LINE_MAX octets straight from the client.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smsubmit.h"
#include "fuzz.h"

#define LINE_CAP	1024
#define MAXSIZE		(35 * 1024 * 1024)

static int
code_ok(int code)
{
	return code == 0 || code == 501 || code == 552 || code == 555;
}

static void
mail_params(const char *params)
{
	const char	*msg, *msg2;
	int		 code, code2, flags, flags2;

	msg = NULL;
	code = session_mail_params(params, MAXSIZE, &flags, &msg);
	CHECK(code_ok(code));
	CHECK((flags & ~(ENV_8BITMIME | ENV_SMTPUTF8)) == 0);
	if (code != 0) {
		/* "%d %s" goes on the wire: an enhanced code of the same class */
		CHECK(msg != NULL);
		CHECK(msg[0] == '0' + code / 100 && msg[1] == '.');
	}

	/* a larger limit accepts whatever a smaller one did, and more */
	msg2 = NULL;
	code2 = session_mail_params(params, SIZE_MAX, &flags2, &msg2);
	CHECK(code_ok(code2) && code2 != 552);
	if (code == 0)
		CHECK(code2 == 0 && flags2 == flags);
	/* up to a SIZE over the smaller limit, both walk the same path */
	if (code != 552)
		CHECK(code2 == code);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct smtp_cmd	*cmd;
	const char		*arg, *name, *params;
	char			*line, addr[ADDR_MAX];
	size_t			 len, n;

	if (size > LINE_CAP)
		size = LINE_CAP;
	if ((line = malloc(size + 1)) == NULL)
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';
	len = strlen(line);

	arg = NULL;
	cmd = session_cmd_lookup(line, &arg);
	/* arg points inside the line, past the verb and its spaces */
	n = strcspn(line, " ");
	CHECK(arg != NULL && arg >= line + n && arg <= line + len);
	CHECK(*arg != ' ');
	if (cmd == NULL)
		goto done;
	name = session_cmd_name(cmd);
	CHECK(name != NULL && strlen(name) == n &&
	    strncasecmp(name, line, n) == 0);

	if (strcasecmp(name, "MAIL") == 0 &&
	    strncasecmp(arg, "FROM:", 5) == 0) {
		params = NULL;
		if (addr_parse_path(arg + 5, ADDR_NULL_OK | ADDR_UTF8, addr,
		    sizeof(addr), &params) == 0) {
			CHECK(params >= arg + 5 && params <= line + len);
			CHECK(addr_mailbox_valid(addr,
			    ADDR_NULL_OK | ADDR_UTF8));
			mail_params(params);
		}
	} else if (strcasecmp(name, "RCPT") == 0 &&
	    strncasecmp(arg, "TO:", 3) == 0) {
		params = NULL;
		if (addr_parse_path(arg + 3, ADDR_POSTMASTER | ADDR_UTF8,
		    addr, sizeof(addr), &params) == 0) {
			CHECK(params >= arg + 3 && params <= line + len);
			CHECK(addr[0] != '\0');
		}
	}
 done:
	free(line);
	return 0;
}
