/*
 * bounce.c: delivery status notifications (RFC 3464), written by the
 * queue process when the relay refuses recipients for good or a message
 * outlives the queue lifetime.  The report goes to the envelope sender
 * with a null sender, so it can never be bounced in turn.
 */
#include <sys/types.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "smsubmit.h"

#define HEADERS_MAX	(64 * 1024)

/* The enhanced status code of a reply (RFC 3463), or a default. */
static void
status_code(const char *reply, const char *dflt, char *out, size_t len)
{
	const char	*p = reply;
	size_t		 n;

	if (strlen(p) > 4 && isdigit((unsigned char)p[0]))
		p += 4;
	n = strspn(p, "0123456789.");
	if (n >= 5 && n < len && (p[0] == '4' || p[0] == '5') &&
	    p[1] == '.' && strchr(p + 2, '.') != NULL) {
		memcpy(out, p, n);
		out[n] = '\0';
		/* a temporary code on a final failure is reported as final */
		out[0] = '5';
		return;
	}
	strlcpy(out, dflt, len);
}

/*
 * A relay's reply as a line of the report: the envelope keeps whatever
 * octets it was given, a us-ascii report cannot, so a TAB becomes a space
 * and any other control or 8-bit octet a '?'.
 */
static const char *
report_text(char *dst, size_t len, const char *src)
{
	size_t		 i;
	unsigned char	 c;

	for (i = 0; i + 1 < len && src[i] != '\0'; i++) {
		c = src[i];
		dst[i] = c == '\t' ? ' ' : (c < 0x20 || c > 0x7e) ? '?' : c;
	}
	dst[i] = '\0';
	return dst;
}

static void
rfc5322_date(time_t t, char *buf, size_t len)
{
	struct tm	 tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

/* Copy the original header section, at most HEADERS_MAX octets. */
static void
copy_headers(FILE *out, int msgfd)
{
	char	*buf, *end, *p, *nl;
	ssize_t	 n;
	size_t	 have = 0;

	if ((buf = malloc(HEADERS_MAX + 1)) == NULL)
		return;
	while (have < HEADERS_MAX &&
	    (n = read(msgfd, buf + have, HEADERS_MAX - have)) > 0)
		have += n;
	buf[have] = '\0';
	if ((end = strstr(buf, "\r\n\r\n")) != NULL)
		end += 2;
	else {
		/* cut after the last whole line */
		for (end = buf, p = buf; (nl = memchr(p, '\n',
		    buf + have - p)) != NULL; p = nl + 1)
			end = nl + 1;
	}
	fwrite(buf, 1, end - buf, out);
	free(buf);
}

int
bounce_write(int fd, struct smsubmit_conf *conf, struct qmsg *orig,
    const char *id, int msgfd, int expired)
{
	FILE		*out;
	char		 date[64], arrival[64], status[32];
	char		 text[sizeof(orig->rcpts[0].reply)];
	char		 boundary[HOST_NAME_MAX + QUEUE_ID_LEN + 2];
	struct rcpt	*r;
	int		 i, fd2;

	if ((fd2 = dup(fd)) == -1 || (out = fdopen(fd2, "w")) == NULL) {
		if (fd2 != -1)
			close(fd2);
		return -1;
	}
	rfc5322_date(time(NULL), date, sizeof(date));
	rfc5322_date(orig->created, arrival, sizeof(arrival));
	snprintf(boundary, sizeof(boundary), "%s/%s", id, conf->hostname);

	fprintf(out, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n"
	    "To: <%s>\r\n"
	    "Subject: Undelivered Mail Returned to Sender\r\n"
	    "Date: %s\r\n"
	    "Message-ID: <%s.bounce@%s>\r\n"
	    "Auto-Submitted: auto-replied\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	    "\tboundary=\"%s\"\r\n"
	    "\r\n"
	    "This is a MIME-encapsulated message.\r\n"
	    "\r\n"
	    "--%s\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n"
	    "\r\n"
	    "This is the mail submission service at %s.\r\n"
	    "\r\n"
	    "Your message of %s (queue ID %s)\r\n"
	    "could not be delivered to the following recipients%s:\r\n"
	    "\r\n", conf->hostname, orig->from, date, id, conf->hostname,
	    boundary, boundary, conf->hostname, arrival, orig->id,
	    expired ? ", because it could not be relayed in time" : "");
	for (i = 0, r = orig->rcpts; i < orig->nrcpts; i++, r++)
		if (r->state == RCPT_FAILED)
			fprintf(out, "<%s>: %s\r\n", r->addr,
			    report_text(text, sizeof(text), r->reply));

	fprintf(out, "\r\n--%s\r\n"
	    "Content-Type: message/delivery-status\r\n"
	    "\r\n"
	    "Reporting-MTA: dns; %s\r\n"
	    "X-Smsubmit-Queue-ID: %s\r\n"
	    "Arrival-Date: %s\r\n", boundary, conf->hostname, orig->id,
	    arrival);
	for (i = 0, r = orig->rcpts; i < orig->nrcpts; i++, r++) {
		if (r->state != RCPT_FAILED)
			continue;
		/* X.4.7: delivery time expired (RFC 3463) */
		if (expired)
			strlcpy(status, "5.4.7", sizeof(status));
		else
			status_code(r->reply, "5.0.0", status,
			    sizeof(status));
		fprintf(out, "\r\nFinal-Recipient: rfc822; %s\r\n"
		    "Action: failed\r\n"
		    "Status: %s\r\n", r->addr, status);
		if (!expired)
			/* relay_name is "address port N": the host alone */
			fprintf(out, "Remote-MTA: dns; %.*s\r\n"
			    "Diagnostic-Code: smtp; %s\r\n",
			    (int)strcspn(conf->relay_name, " "),
			    conf->relay_name,
			    report_text(text, sizeof(text), r->reply));
		else
			fprintf(out, "Diagnostic-Code: smtp; %s\r\n",
			    report_text(text, sizeof(text), r->reply));
		fprintf(out, "Last-Attempt-Date: %s\r\n", date);
	}
	fprintf(out, "\r\n--%s\r\n"
	    "Content-Type: text/rfc822-headers\r\n"
	    "\r\n", boundary);
	copy_headers(out, msgfd);
	fprintf(out, "\r\n--%s--\r\n", boundary);
	if (fflush(out) != 0 || ferror(out)) {
		fclose(out);
		return -1;
	}
	return fclose(out) == 0 ? 0 : -1;
}
