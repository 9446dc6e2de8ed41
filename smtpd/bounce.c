/*
 * bounce.c: delivery status notifications (RFC 3464), written by the
 * queue process when the relay refuses recipients for good or a message
 * outlives the queue lifetime ("Action: failed"), and, with "queue
 * delay-warning", once when a message has waited that long with
 * recipients still deferred ("Action: delayed": the message stays queued).
 * The report goes to the envelope sender with a null sender, so it can
 * never be bounced, or warned about, in turn.
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

/*
 * The enhanced status code of a reply (RFC 3463) in the class given ('4'
 * or '5'), or a default: a temporary code on a final failure is reported
 * as final, and the reverse.
 */
static void
status_code(const char *reply, const char *dflt, char class, char *out,
    size_t len)
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
		out[0] = class;
		return;
	}
	strlcpy(out, dflt, len);
}

/*
 * Whether a temporary error is a relay's reply ("451 ..."), not our own
 * words about the connection ("timeout"): only a reply is an SMTP
 * Diagnostic-Code.
 */
static int
smtp_reply(const char *s)
{
	return isdigit((unsigned char)s[0]) && isdigit((unsigned char)s[1]) &&
	    isdigit((unsigned char)s[2]) && (s[3] == ' ' || s[3] == '\0');
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

/* What each kind of report says, and about which recipients. */
static const struct {
	const char	*subject;
	const char	*what;
	const char	*action;
	enum rcpt_state	 state;
} kinds[] = {
	[DSN_FAILED] = { "Undelivered Mail Returned to Sender",
	    "could not be delivered to the following recipients",
	    "failed", RCPT_FAILED },
	[DSN_EXPIRED] = { "Undelivered Mail Returned to Sender",
	    "could not be delivered to the following recipients, because "
	    "it could not be relayed in time", "failed", RCPT_FAILED },
	[DSN_DELAYED] = { "Delayed Mail (still being retried)",
	    "has not yet been delivered to the following recipients",
	    "delayed", RCPT_PENDING },
};

int
bounce_write(int fd, struct smsubmit_conf *conf, struct qmsg *orig,
    const char *id, int msgfd, enum dsn_kind kind)
{
	FILE		*out;
	char		 date[64], arrival[64], until[64], status[32];
	char		 text[sizeof(orig->rcpts[0].reply)];
	char		 boundary[HOST_NAME_MAX + QUEUE_ID_LEN + 2];
	const char	*reply;
	struct rcpt	*r;
	int		 i, fd2;

	if ((fd2 = dup(fd)) == -1 || (out = fdopen(fd2, "w")) == NULL) {
		if (fd2 != -1)
			close(fd2);
		return -1;
	}
	rfc5322_date(time(NULL), date, sizeof(date));
	rfc5322_date(orig->created, arrival, sizeof(arrival));
	/* when the queue gives up: then a failure report would follow */
	rfc5322_date(orig->created + conf->queue_lifetime, until,
	    sizeof(until));
	snprintf(boundary, sizeof(boundary), "%s/%s", id, conf->hostname);

	fprintf(out, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n"
	    "To: <%s>\r\n"
	    "Subject: %s\r\n"
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
	    "%s:\r\n"
	    "\r\n", conf->hostname, orig->from, kinds[kind].subject, date, id,
	    conf->hostname, boundary, boundary, conf->hostname, arrival,
	    orig->id, kinds[kind].what);
	for (i = 0, r = orig->rcpts; i < orig->nrcpts; i++, r++) {
		if (r->state != kinds[kind].state)
			continue;
		reply = kind == DSN_DELAYED ? orig->error : r->reply;
		fprintf(out, "<%s>%s%s\r\n", r->addr, reply[0] ? ": " : "",
		    report_text(text, sizeof(text), reply));
	}
	if (kind == DSN_DELAYED)
		fprintf(out, "\r\nThe message stays queued and delivery is "
		    "retried until\r\n%s. You will be told if it fails "
		    "for good;\r\nthere is no need to send it again.\r\n",
		    until);

	fprintf(out, "\r\n--%s\r\n"
	    "Content-Type: message/delivery-status\r\n"
	    "\r\n"
	    "Reporting-MTA: dns; %s\r\n"
	    "X-Smsubmit-Queue-ID: %s\r\n"
	    "Arrival-Date: %s\r\n", boundary, conf->hostname, orig->id,
	    arrival);
	for (i = 0, r = orig->rcpts; i < orig->nrcpts; i++, r++) {
		if (r->state != kinds[kind].state)
			continue;
		/* a deferred recipient's last word is the message's error */
		reply = kind == DSN_DELAYED ? orig->error : r->reply;
		/* X.4.7: delivery time expired (RFC 3463) */
		if (kind == DSN_EXPIRED)
			strlcpy(status, "5.4.7", sizeof(status));
		else if (kind == DSN_DELAYED)
			status_code(reply, "4.0.0", '4', status,
			    sizeof(status));
		else
			status_code(reply, "5.0.0", '5', status,
			    sizeof(status));
		fprintf(out, "\r\nFinal-Recipient: rfc822; %s\r\n"
		    "Action: %s\r\n"
		    "Status: %s\r\n", r->addr, kinds[kind].action, status);
		if (kind == DSN_EXPIRED)
			fprintf(out, "Diagnostic-Code: smtp; %s\r\n",
			    report_text(text, sizeof(text), reply));
		else if (kind == DSN_FAILED || smtp_reply(reply))
			/* relay_name is "address port N": the host alone */
			fprintf(out, "Remote-MTA: dns; %.*s\r\n"
			    "Diagnostic-Code: smtp; %s\r\n",
			    (int)strcspn(conf->relay_name, " "),
			    conf->relay_name,
			    report_text(text, sizeof(text), reply));
		fprintf(out, "Last-Attempt-Date: %s\r\n", date);
		if (kind == DSN_DELAYED)
			fprintf(out, "Will-Retry-Until: %s\r\n", until);
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
