/*
 * session.c: the SMTP dialogue of one client, in the "[smtp]" process.
 *
 * The commands are a table: for each, its handler and the rules of the
 * states it is allowed in, with the reply when it is not (SPEC section 5),
 * checked in order before the handler runs, as OpenSMTPD pairs a check
 * with each command's work.  Input arrives through
 * session_input(); replies are queued with session_reply() and written by
 * the listener once the input buffer is drained (PIPELINING, RFC 2920).
 * Whatever goes to the auth or queue process holds the input until the
 * answer comes back, so replies stay in order.
 *
 * Each thing the client is owed an answer for (the connection's greeting,
 * a command line, a SASL response line, the end of a message) counts one
 * in s->owed, and each final reply line takes one off: session_reply()
 * drops a reply nothing is owed for, and replied() answers one that a
 * handler forgot, so a pipelining client never gets out of step.
 */
#include <sys/types.h>
#include <sys/uio.h>
#ifdef SMSUBMIT_REGRESS
#include <sys/ioctl.h>
#include <sys/mman.h>
#endif

#include <ctype.h>
#include <errno.h>
#include <event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <tls.h>
#include <unistd.h>

#include "log.h"
#include "smsubmit.h"

#define DATA_MIN_RATE	1024	/* octets a second, on average, in DATA */
#define DATA_BUF_MAX	(256 * 1024)
#define DATA_PIECES	64	/* of the message, written in one writev */

/*
 * The state rules, as data: a command's checks are tried in order before
 * its handler runs, and the first that fails gives the reply.  A handler
 * only does the work and checks its argument's syntax.  A session's state
 * here is its enum session_state and whether TLS and AUTH are done.
 */
enum smtp_check {
	CHK_END,
	CHK_TLS,		/* TLS established */
	CHK_NOT_TLS,		/* not yet */
	CHK_AUTH,		/* authenticated */
	CHK_NOT_AUTH,		/* not yet */
	CHK_STATES,		/* in one of the states in .states */
	CHK_NO_ARG		/* no parameter */
};

#define ST(x)		(1 << (x))
#define ST_TRANSACTION	(ST(S_MAIL) | ST(S_RCPT))
#define CHECKS_MAX	5
#define ANY_STATE	{ { CHK_END, 0, NULL } }

/* The replies the checks give (SPEC section 5). */
#define R_NEED_TLS	"530 5.7.0 Must issue a STARTTLS command first"
#define R_NEED_AUTH	"530 5.7.0 Authentication required"
#define R_NEED_EHLO	"503 5.5.1 Send EHLO first"

struct smtp_rule {
	enum smtp_check	 check;
	int		 states;	/* for CHK_STATES: ST() bits */
	const char	*reply;		/* when the check fails */
};

struct smtp_cmd {
	const char	*name;
	void		(*handler)(struct session *, const char *);
	struct smtp_rule rules[CHECKS_MAX];	/* ended by CHK_END */
};

static void	cmd_helo(struct session *, const char *);
static void	cmd_ehlo(struct session *, const char *);
static void	cmd_starttls(struct session *, const char *);
static void	cmd_auth(struct session *, const char *);
static void	cmd_mail(struct session *, const char *);
static void	cmd_rcpt(struct session *, const char *);
static void	cmd_data(struct session *, const char *);
static void	cmd_rset(struct session *, const char *);
static void	cmd_noop(struct session *, const char *);
static void	cmd_quit(struct session *, const char *);
static void	cmd_help(struct session *, const char *);
static void	cmd_vrfy(struct session *, const char *);
static void	cmd_expn(struct session *, const char *);
#ifdef SMSUBMIT_REGRESS
static void	cmd_xsandbox(struct session *, const char *);
#endif

static const struct smtp_cmd commands[] = {
	{ "HELO",	cmd_helo,	ANY_STATE },
	{ "EHLO",	cmd_ehlo,	ANY_STATE },
	{ "STARTTLS",	cmd_starttls, {
	    { CHK_NO_ARG, 0, "501 5.5.4 STARTTLS takes no parameter" },
	    { CHK_NOT_TLS, 0, "503 5.5.1 TLS already active" } } },
	{ "AUTH",	cmd_auth, {
	    { CHK_TLS, 0, R_NEED_TLS },
	    { CHK_STATES, ~ST(S_CONNECTED), R_NEED_EHLO },
	    { CHK_NOT_AUTH, 0, "503 5.5.1 Already authenticated" },
	    { CHK_STATES, ST(S_HELO),
		"503 5.5.1 Not inside a mail transaction" } } },
	{ "MAIL",	cmd_mail, {
	    { CHK_TLS, 0, R_NEED_TLS },
	    { CHK_AUTH, 0, R_NEED_AUTH },
	    { CHK_STATES, ~ST_TRANSACTION, "503 5.5.1 Nested MAIL command" },
	    { CHK_STATES, ST(S_HELO), R_NEED_EHLO } } },
	{ "RCPT",	cmd_rcpt, {
	    { CHK_TLS, 0, R_NEED_TLS },
	    { CHK_AUTH, 0, R_NEED_AUTH },
	    { CHK_STATES, ST_TRANSACTION,
		"503 5.5.1 Need MAIL before RCPT" } } },
	{ "DATA",	cmd_data, {
	    { CHK_TLS, 0, R_NEED_TLS },
	    { CHK_AUTH, 0, R_NEED_AUTH },
	    { CHK_STATES, ~ST(S_MAIL), "503 5.5.1 Need RCPT before DATA" },
	    { CHK_STATES, ST(S_RCPT), "503 5.5.1 Need MAIL before DATA" },
	    { CHK_NO_ARG, 0, "501 5.5.4 DATA takes no parameter" } } },
	{ "RSET",	cmd_rset,	ANY_STATE },
	{ "NOOP",	cmd_noop,	ANY_STATE },
	{ "QUIT",	cmd_quit,	ANY_STATE },
	{ "HELP",	cmd_help,	ANY_STATE },
	{ "VRFY",	cmd_vrfy,	ANY_STATE },
	{ "EXPN",	cmd_expn,	ANY_STATE },
#ifdef SMSUBMIT_REGRESS
	{ "XSANDBOX",	cmd_xsandbox,	ANY_STATE },
#endif
};

static const char *http_methods[] = {
	"GET ", "POST ", "HEAD ", "PUT ", "OPTIONS ", "CONNECT ", "DELETE "
};

static void	data_input(struct session *);

void
session_reply(struct session *s, const char *fmt, ...)
{
	va_list	 ap;
	char	 line[SMTP_LINE_MAX];
	int	 n, last;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line) - 2)
		n = sizeof(line) - 3;
	last = n < 4 || line[3] != '-';
	if (s->owed == 0 && strncmp(line, "421", 3) != 0) {
		/* a second reply to one command: the client would desync */
		log_warnx("session %08x: reply nothing asked for, dropped: "
		    "%.3s", s->id, line);
		s->env->reply_faults++;
		return;
	}
	if (last && s->owed > 0)
		s->owed--;
	if (last && (line[0] == '4' || line[0] == '5') &&
	    line[1] >= '0' && line[1] <= '9' && line[2] >= '0' &&
	    line[2] <= '9')
		s->env->stats.codes[(line[0] - '0') * 100 +
		    (line[1] - '0') * 10 + line[2] - '0' - STATS_CODE_MIN]++;
	log_debug("session %08x > %.*s", s->id, n, line);
	line[n++] = '\r';
	line[n++] = '\n';
	if (buf_add(&s->out, line, n) == -1) {
		/* a client that never reads its replies */
		log_info("session %08x output overflow", s->id);
		s->state = S_QUIT;
	}
}

void
session_close(struct session *s, const char *why)
{
	log_info("session %08x closing: %s", s->id, why);
	s->state = S_QUIT;
	/* a client that does not read its last reply is not waited for */
	s->deadline = time(NULL) + CLOSE_GRACE;
}

/*
 * After a command, or the answer to it from another process: it must have
 * been answered, or be waiting for that answer, or the session is ending.
 */
static void
replied(struct session *s)
{
	if (s->owed == 0 || s->pending != PENDING_NONE || s->state == S_QUIT)
		return;
	log_warnx("session %08x: %d command%s left without a reply", s->id,
	    s->owed, s->owed > 1 ? "s" : "");
	s->env->reply_faults++;
	while (s->owed > 0)
		session_reply(s, "451 4.3.0 Internal error");
}

static void
transaction_reset(struct session *s)
{
	int	 i;

	if (s->msgfd != -1) {
		close(s->msgfd);
		s->msgfd = -1;
	}
	if (s->msgid[0] != '\0') {
		ipc_send(s->env->queue, IMSG_MSG_ABORT, s->id, -1, "s",
		    s->msgid);
		s->msgid[0] = '\0';
	}
	for (i = 0; i < s->nrcpts; i++)
		free(s->rcpts[i]);
	free(s->rcpts);
	s->rcpts = NULL;
	s->nrcpts = 0;
	free(s->rcpt_held);
	s->rcpt_held = NULL;
	free(s->from);
	s->from = NULL;
	s->flags &= ~(SF_8BITMIME | SF_SMTPUTF8 | SF_DATAFULL);
	free(s->data);
	s->data = NULL;
	buf_free(&s->dbuf);
	s->msgsize = 0;
	s->data_errno = 0;
	if (s->state == S_MAIL || s->state == S_RCPT || s->state == S_DATA)
		s->state = S_HELO;
}

void
session_cleanup(struct session *s)
{
	if (s->pending == PENDING_AUTH || s->state == S_AUTH)
		listener_auth_end(s);
	/* a commit in flight is the queue's now; the client saw no 250 */
	if (s->pending == PENDING_COMMIT)
		s->msgid[0] = '\0';
	transaction_reset(s);
}

void
session_start(struct session *s)
{
	struct listener_env	*env = s->env;

	if (s->flags & SF_STARTTLS) {
		/* RFC 3207: forget everything learnt before TLS */
		s->flags &= ~(SF_STARTTLS | SF_EHLO);
		free(s->helo);
		s->helo = NULL;
		s->state = S_CONNECTED;
		return;
	}
	if (env->stopping) {
		s->owed = 1;
		session_reply(s, "421 4.3.2 %s Service shutting down",
		    s->conf->hostname);
		session_close(s, "shutting down");
		return;
	}
	s->state = S_CONNECTED;
	s->owed = 1;
	session_reply(s, "220 %s ESMTP smsubmit", s->conf->hostname);
}

const struct smtp_cmd *
session_cmd_lookup(const char *line, const char **arg)
{
	size_t	 i, n;

	n = strcspn(line, " ");
	*arg = line + n;
	while (**arg == ' ')
		(*arg)++;
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strlen(commands[i].name) == n &&
		    strncasecmp(commands[i].name, line, n) == 0)
			return &commands[i];
	return NULL;
}

const char *
session_cmd_name(const struct smtp_cmd *cmd)
{
	return cmd->name;
}

static int
is_http(const char *line)
{
	size_t	 i;

	for (i = 0; i < sizeof(http_methods) / sizeof(http_methods[0]); i++)
		if (strncmp(line, http_methods[i], strlen(http_methods[i])) ==
		    0 && strstr(line, " HTTP/") != NULL)
			return 1;
	return 0;
}

/* The first of the command's rules the session does not pass, or NULL. */
static const struct smtp_rule *
refused(struct session *s, const struct smtp_cmd *cmd, const char *arg)
{
	const struct smtp_rule	*r;
	int			 ok;

	for (r = cmd->rules; r < cmd->rules + CHECKS_MAX &&
	    r->check != CHK_END; r++) {
		switch (r->check) {
		case CHK_TLS:
			ok = (s->flags & SF_TLS) != 0;
			break;
		case CHK_NOT_TLS:
			ok = (s->flags & SF_TLS) == 0;
			break;
		case CHK_AUTH:
			ok = (s->flags & SF_AUTHED) != 0;
			break;
		case CHK_NOT_AUTH:
			ok = (s->flags & SF_AUTHED) == 0;
			break;
		case CHK_STATES:
			ok = (r->states & ST(s->state)) != 0;
			break;
		case CHK_NO_ARG:
			ok = *arg == '\0';
			break;
		default:
			ok = 0;
			break;
		}
		if (!ok)
			return r;
	}
	return NULL;
}

static void
command(struct session *s, char *line)
{
	const struct smtp_cmd	*cmd;
	const struct smtp_rule	*rule;
	const char		*arg;

	if (log_getverbose() > 0) {
		char	 verb[16], everb[LOG_ESCAPE_MAX(sizeof(verb))];
		char	 shown[LOG_ESCAPE_MAX(SMTP_LINE_MAX)];
		size_t	 n;

		/*
		 * The verb, then the client's argument escaped like every
		 * string from outside: it cannot forge a field or a line.
		 */
		n = strcspn(line, " ");
		if (n >= sizeof(verb))
			n = 0;
		memcpy(verb, line, n);
		verb[n] = '\0';
		if (strncasecmp(line, "AUTH ", 5) == 0)
			strlcpy(shown, "...", sizeof(shown));
		else
			log_escape(shown, sizeof(shown), line + n +
			    (line[n] == ' '));
		log_debug("session %08x < %s%s%s", s->id,
		    log_escape(everb, sizeof(everb), verb),
		    n > 0 && line[n] == ' ' ? " " : "", shown);
	}
	if (is_http(line)) {
		session_close(s, "HTTP request");
		return;
	}
	if ((cmd = session_cmd_lookup(line, &arg)) == NULL) {
		if (++s->nunknown > SMTP_MAX_UNKNOWN) {
			session_reply(s, "421 4.7.0 %s Too many unknown "
			    "commands", s->conf->hostname);
			session_close(s, "too many unknown commands");
			return;
		}
		session_reply(s, "500 5.5.1 Command unrecognized");
		return;
	}
	if ((rule = refused(s, cmd, arg)) != NULL) {
		session_reply(s, "%s", rule->reply);
		return;
	}
	cmd->handler(s, arg);
}

/* The client's SASL exchange is over without a result from [auth]. */
static void
auth_end(struct session *s)
{
	listener_auth_end(s);
	s->state = S_HELO;
}

/*
 * A line over the limit gets one reply.  A SASL response line that long
 * ends the exchange (RFC 4954: 500 5.5.6), so that what follows is read
 * as commands again, not as responses counted as failed logins.
 */
static void
line_too_long(struct session *s)
{
	s->owed++;
	if (s->state == S_AUTH) {
		auth_end(s);
		session_reply(s, "500 5.5.6 Authentication exchange line is "
		    "too long");
	} else
		session_reply(s, "500 5.5.2 Line too long");
}

/* One line of a SASL exchange, in S_AUTH. */
static void
auth_line(struct session *s, const char *line)
{
	if (strcmp(line, "*") == 0) {
		auth_end(s);
		session_reply(s, "501 5.0.0 Authentication cancelled");
		return;
	}
	listener_auth_step(s, line);
	s->pending = PENDING_AUTH;
}

/*
 * Process buffered input until it runs out, a command needs an answer
 * from another process, or the session ends.
 */
void
session_input(struct session *s)
{
	char	*line;
	size_t	 n, len, max;

	while (s->pending == PENDING_NONE && s->state != S_QUIT &&
	    !(s->flags & SF_STARTTLS) && buf_used(&s->in) > 0) {
		if (s->state == S_DATA) {
			data_input(s);
			replied(s);
			continue;
		}
		if (!(s->flags & SF_TLS) && buf_used(&s->in) >= 2 &&
		    buf_head(&s->in)[0] == 0x16 && buf_head(&s->in)[1] == 0x03) {
			/* a TLS ClientHello where SMTP was expected */
			session_close(s, "TLS handshake on a plaintext stage");
			return;
		}
		max = s->state == S_AUTH ? AUTH_LINE_MAX : SMTP_LINE_MAX;
		if ((n = buf_line(&s->in)) == 0) {
			if (buf_used(&s->in) <= max)
				return;
			/* no end in sight: answer now, skip to the LF */
			buf_drain(&s->in, buf_used(&s->in));
			if (!(s->flags & SF_SKIPLINE))
				line_too_long(s);
			s->flags |= SF_SKIPLINE;
			return;
		}
		line = buf_head(&s->in);
		if (s->flags & SF_SKIPLINE) {
			/* the end of a line answered already */
			s->flags &= ~SF_SKIPLINE;
			explicit_bzero(line, n);
			buf_drain(&s->in, n);
			continue;
		}
		if (n > max) {
			explicit_bzero(line, n);
			buf_drain(&s->in, n);
			line_too_long(s);
			continue;
		}
		len = n - 1;
		if (len > 0 && line[len - 1] == '\r')
			len--;
		s->owed++;
		if (memchr(line, '\0', len) != NULL) {
			explicit_bzero(line, n);
			buf_drain(&s->in, n);
			if (s->state == S_AUTH) {
				/* not base64 (RFC 4954): the exchange ends */
				auth_end(s);
				session_reply(s, "501 5.5.2 Cannot decode "
				    "response");
			} else
				session_reply(s, "500 5.5.2 NUL in command");
			continue;
		}
		line[len] = '\0';
		/* the next command's time starts now; handlers may change it */
		s->deadline = time(NULL) + s->conf->timeout_command;
		if (s->state == S_AUTH)
			auth_line(s, line);
		else
			command(s, line);
		explicit_bzero(line, n);
		buf_drain(&s->in, n);
		replied(s);
	}
}

/* --- commands --- */

static int
helo_valid(const char *arg)
{
	size_t	 n = strlen(arg);

	if (n == 0 || n >= 256)
		return 0;
	for (; *arg != '\0'; arg++)
		if ((unsigned char)*arg <= 0x20 || (unsigned char)*arg >= 0x7f)
			return 0;
	return 1;
}

/*
 * A sanitised copy of a client's string (at most max - 1 bytes of it),
 * allocated to its size: a session keeps its HELO name and user name for
 * its whole life, mostly far shorter than they may be.
 */
static char *
sanitised_copy(const char *raw, size_t max)
{
	char	 buf[SANITISED_MAX];

	log_sanitise(buf, MINIMUM(max, sizeof(buf)), raw);
	return strdup(buf);
}

/* HELO and EHLO: 0 once the session is greeted, -1 if refused (501). */
static int
greet(struct session *s, const char *arg, int ehlo)
{
	char	*helo;

	if (!helo_valid(arg)) {
		/* one reply: a good HELO before stays in force, unanswered */
		session_reply(s, "501 5.5.4 %s requires a valid domain",
		    ehlo ? "EHLO" : "HELO");
		return -1;
	}
	if ((helo = sanitised_copy(arg, HELO_MAX)) == NULL) {
		session_reply(s, "451 4.3.0 Out of memory");
		return -1;
	}
	transaction_reset(s);
	free(s->helo);
	s->helo = helo;
	s->state = S_HELO;
	s->flags = ehlo ? (s->flags | SF_EHLO) : (s->flags & ~SF_EHLO);
	return 0;
}

static void
cmd_helo(struct session *s, const char *arg)
{
	if (greet(s, arg, 0) == 0)
		session_reply(s, "250 %s", s->conf->hostname);
}

static void
cmd_ehlo(struct session *s, const char *arg)
{
	struct smsubmit_conf	*conf = s->conf;

	if (greet(s, arg, 1) == -1)
		return;
	session_reply(s, "250-%s Hello %s [%s]", conf->hostname, s->helo,
	    s->client);
	session_reply(s, "250-PIPELINING");
	if (!(s->flags & SF_TLS)) {
		session_reply(s, "250-ENHANCEDSTATUSCODES");
		session_reply(s, "250 STARTTLS");
		return;
	}
	session_reply(s, "250-SIZE %zu", conf->max_message_size);
	session_reply(s, "250-8BITMIME");
	session_reply(s, "250-SMTPUTF8");
	/* RFC 4954: AUTH is not offered, nor allowed, once it succeeded */
	if (s->env->auth_ready && s->env->mechs[0] != '\0' &&
	    !(s->flags & SF_AUTHED)) {
		session_reply(s, "250-ENHANCEDSTATUSCODES");
		session_reply(s, "250 AUTH %s", s->env->mechs);
	} else
		session_reply(s, "250 ENHANCEDSTATUSCODES");
}

static void
cmd_starttls(struct session *s, const char *arg)
{
	session_reply(s, "220 2.0.0 Ready to start TLS");
	/* the handshake and the first command in TLS, as on a tls listener */
	s->deadline = time(NULL) + MINIMUM(s->conf->timeout_handshake,
	    s->conf->timeout_command);
	listener_starttls(s);
}

static int
mech_offered(struct session *s, const char *mech)
{
	const char	*p = s->env->mechs;
	size_t		 n = strlen(mech);

	while (*p != '\0') {
		if (strncasecmp(p, mech, n) == 0 && (p[n] == ' ' ||
		    p[n] == '\0'))
			return 1;
		p += strcspn(p, " ");
		p += strspn(p, " ");
	}
	return 0;
}

static void
cmd_auth(struct session *s, const char *arg)
{
	char		 mech[sizeof(s->mech)];
	const char	*ir;
	size_t		 n;
	int		 has_ir;

	n = strcspn(arg, " ");
	if (n == 0) {
		session_reply(s, "501 5.5.4 Syntax: AUTH mechanism "
		    "[initial-response]");
		return;
	}
	if (n >= sizeof(mech) || (memcpy(mech, arg, n), mech[n] = '\0',
	    !mech_offered(s, mech))) {
		session_reply(s, "504 5.5.4 Mechanism not available");
		return;
	}
	if (!s->env->auth_ready) {
		session_reply(s, "454 4.7.0 Temporary authentication failure");
		return;
	}
	ir = arg + n;
	while (*ir == ' ')
		ir++;
	has_ir = *ir != '\0';
	if (strcmp(ir, "=") == 0)
		ir = "";
	strlcpy(s->mech, mech, sizeof(s->mech));
	if (listener_auth_start(s, mech, ir, has_ir) == -1) {
		session_reply(s, "454 4.7.0 Temporary authentication failure");
		return;
	}
	s->state = S_AUTH;
	s->pending = PENDING_AUTH;
}

void
session_auth_result(struct session *s, struct ipc_msg *msg)
{
	struct smsubmit_conf	*conf = s->conf;
	const char		*str, *senders;
	uint32_t		 reason;

	s->pending = PENDING_NONE;
	s->deadline = time(NULL) + conf->timeout_command;
	switch (msg->type) {
	case IMSG_AUTH_CONTINUE:
		if (ipc_unpack(msg, "s", &str) == -1)
			fatalx("bad AUTH_CONTINUE");
		session_reply(s, "334 %s", str);
		break;
	case IMSG_AUTH_OK:
		if (ipc_unpack(msg, "ss", &str, &senders) == -1)
			fatalx("bad AUTH_OK");
		if ((s->senders = strdup(senders)) == NULL ||
		    (s->user = sanitised_copy(str, USER_MAX)) == NULL) {
			free(s->senders);
			s->senders = NULL;
			session_reply(s, "454 4.7.0 Temporary authentication "
			    "failure");
			s->state = S_HELO;
			break;
		}
		s->flags |= SF_AUTHED;
		s->env->stats.auth_ok++;
		s->state = S_HELO;
		log_info("session %08x authenticated user=%s mechanism=%s "
		    "from %s", s->id, s->user, s->mech, s->client);
		session_reply(s, "235 2.7.0 Authentication successful");
		break;
	case IMSG_AUTH_FAIL:
		if (ipc_unpack(msg, "u", &reason) == -1)
			fatalx("bad AUTH_FAIL");
		s->state = S_HELO;
		switch (reason) {
		case AUTH_R_BADCREDS:
			s->env->stats.auth_failed++;
			if (++s->nauthfail >= conf->auth_max_failures) {
				session_reply(s, "421 4.7.0 %s Too many "
				    "authentication failures", conf->hostname);
				session_close(s, "too many auth failures");
			} else
				session_reply(s, "535 5.7.8 Authentication "
				    "credentials invalid");
			break;
		case AUTH_R_BADMECH:
			session_reply(s, "504 5.5.4 Mechanism not available");
			break;
		case AUTH_R_BADB64:
			session_reply(s, "501 5.5.2 Cannot decode response");
			break;
		case AUTH_R_TEMP:
			session_reply(s, "454 4.7.0 Temporary authentication "
			    "failure");
			break;
		default:
			fatalx("bad AUTH_FAIL reason %u", reason);
		}
		break;
	}
	replied(s);
	session_input(s);
}

void
session_auth_timeout(struct session *s)
{
	log_info("session %08x auth process did not answer in time", s->id);
	s->pending = PENDING_NONE;
	s->state = S_HELO;
	s->deadline = time(NULL) + s->conf->timeout_command;
	session_reply(s, "454 4.7.0 Temporary authentication failure");
	session_input(s);
}

int
session_mail_params(const char *p, size_t maxsize, int *flags,
    const char **msg)
{
	char		 param[SMTP_LINE_MAX], *val;
	const char	*errstr;
	long long	 size;
	size_t		 n;
	int		 seen = 0;

	*flags = 0;
	while (*p != '\0') {
		n = strcspn(p, " ");
		if (n >= sizeof(param)) {
			*msg = "5.5.4 Parameter too long";
			return 501;
		}
		memcpy(param, p, n);
		param[n] = '\0';
		p += n;
		p += strspn(p, " ");
		if ((val = strchr(param, '=')) != NULL)
			*val++ = '\0';
		if (strcasecmp(param, "SIZE") == 0 && val != NULL &&
		    !(seen & 1)) {
			seen |= 1;
			size = strtonum(val, 0, LLONG_MAX, &errstr);
			if (errstr != NULL) {
				*msg = "5.5.4 Bad SIZE parameter";
				return 501;
			}
			if ((unsigned long long)size > maxsize) {
				*msg = "5.3.4 Message size exceeds limit";
				return 552;
			}
		} else if (strcasecmp(param, "BODY") == 0 && val != NULL &&
		    !(seen & 2)) {
			seen |= 2;
			if (strcasecmp(val, "8BITMIME") == 0)
				*flags |= ENV_8BITMIME;
			else if (strcasecmp(val, "7BIT") != 0) {
				*msg = "5.5.4 Bad BODY parameter";
				return 501;
			}
		} else if (strcasecmp(param, "SMTPUTF8") == 0 && val == NULL &&
		    !(seen & 4)) {
			seen |= 4;
			*flags |= ENV_SMTPUTF8;
		} else if (strcasecmp(param, "AUTH") == 0 && val != NULL &&
		    !(seen & 8)) {
			/* RFC 4954: we know who submits; the value is noted */
			seen |= 8;
		} else {
			*msg = "5.5.4 Unsupported parameter";
			return 555;
		}
	}
	return 0;
}

static int
has_8bit(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return 1;
	return 0;
}

/*
 * May the authenticated user send as addr?  Its list holds addresses and
 * "@domain" entries; case does not matter.
 */
static int
sender_allowed(struct session *s, const char *addr)
{
	const char	*p = s->senders, *dom = addr_domain(addr);
	size_t		 n;

	if (p == NULL)
		return 0;
	if (strcmp(p, "*") == 0)
		return 1;
	while (*p != '\0') {
		n = strcspn(p, " ");
		if ((p[0] == '@' && n - 1 == strlen(dom) &&
		    strncasecmp(p + 1, dom, n - 1) == 0) ||
		    (n == strlen(addr) && strncasecmp(p, addr, n) == 0))
			return 1;
		p += n;
		p += strspn(p, " ");
	}
	return 0;
}

static void
cmd_mail(struct session *s, const char *arg)
{
	const char	*params, *msg;
	char		 addr[ADDR_MAX], eaddr[LOG_ESCAPE_MAX(ADDR_MAX)];
	char		 euser[LOG_ESCAPE_MAX(USER_MAX)];
	int		 code, flags;

	if (strncasecmp(arg, "FROM:", 5) != 0) {
		session_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if (addr_parse_path(arg + 5, ADDR_NULL_OK | ADDR_UTF8, addr,
	    sizeof(addr), &params) == -1) {
		session_reply(s, "501 5.1.7 Bad sender address syntax");
		return;
	}
	if ((code = session_mail_params(params,
	    s->conf->max_message_size, &flags, &msg)) != 0) {
		session_reply(s, "%d %s", code, msg);
		return;
	}
	if (has_8bit(addr) && !(flags & ENV_SMTPUTF8)) {
		session_reply(s, "501 5.1.7 Non-ASCII address needs SMTPUTF8");
		return;
	}
	if (addr[0] != '\0' && !sender_allowed(s, addr)) {
		log_info("session %08x user=%s may not send as <%s>", s->id,
		    log_escape(euser, sizeof(euser), s->user),
		    log_escape(eaddr, sizeof(eaddr), addr));
		session_reply(s, "553 5.7.1 Sender address not allowed for "
		    "this user");
		return;
	}
	free(s->from);
	if ((s->from = strdup(addr)) == NULL) {
		session_reply(s, "451 4.3.0 Out of memory");
		return;
	}
	if (flags & ENV_8BITMIME)
		s->flags |= SF_8BITMIME;
	if (flags & ENV_SMTPUTF8)
		s->flags |= SF_SMTPUTF8;
	if (s->env->conf->user_messages > 0) {
		/* the queue counts for every listener: ask it, then 250 */
		ipc_send(s->env->queue, IMSG_LIMIT_MAIL, s->id, -1, "s",
		    s->user);
		s->pending = PENDING_LIMIT;
		return;
	}
	s->state = S_MAIL;
	session_reply(s, "250 2.1.0 Ok");
}

static void
cmd_rcpt(struct session *s, const char *arg)
{
	const char	*params;
	char		 addr[ADDR_MAX], **r;
	int		 flags = ADDR_POSTMASTER;

	if (strncasecmp(arg, "TO:", 3) != 0) {
		session_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (s->flags & SF_SMTPUTF8)
		flags |= ADDR_UTF8;
	if (addr_parse_path(arg + 3, flags, addr, sizeof(addr),
	    &params) == -1) {
		session_reply(s, "501 5.1.3 Bad recipient address syntax");
		return;
	}
	if (*params != '\0') {
		session_reply(s, "555 5.5.4 Unsupported parameter");
		return;
	}
	if (s->nrcpts >= s->conf->max_recipients) {
		session_reply(s, "452 4.5.3 Too many recipients");
		return;
	}
	if ((r = reallocarray(s->rcpts, s->nrcpts + 1, sizeof(*r))) == NULL ||
	    (s->rcpts = r, r[s->nrcpts] = strdup(addr)) == NULL) {
		session_reply(s, "421 4.3.0 %s Out of memory",
		    s->conf->hostname);
		session_close(s, "out of memory");
		return;
	}
	if (s->env->conf->user_recipients > 0) {
		/* held until the queue says whether the user may */
		s->rcpt_held = r[s->nrcpts];
		ipc_send(s->env->queue, IMSG_LIMIT_RCPT, s->id, -1, "s",
		    s->user);
		s->pending = PENDING_LIMIT;
		return;
	}
	s->nrcpts++;
	s->state = S_RCPT;
	session_reply(s, "250 2.1.5 Ok");
}

void
session_limit_result(struct session *s, struct ipc_msg *msg)
{
	struct smsubmit_conf	*conf = s->env->conf;
	uint32_t		 over;
	int			 rcpt = s->rcpt_held != NULL;

	if (ipc_unpack(msg, "u", &over) == -1 || over > 1)
		fatalx("bad LIMIT_RESULT from queue");
	s->pending = PENDING_NONE;
	s->deadline = time(NULL) + conf->timeout_command;
	if (over) {
		s->env->stats.user_limited[rcpt ? USERLIMIT_RECIPIENTS :
		    USERLIMIT_MESSAGES]++;
		/* a fail2ban jail of its own matches this line */
		log_info("session %08x user=%s from %s over the sending limit: "
		    "%d %s per %llds", s->id, s->user, s->client,
		    rcpt ? conf->user_recipients : conf->user_messages,
		    rcpt ? "recipients" : "messages", (long long)(rcpt ?
		    conf->user_recipients_window : conf->user_messages_window));
		if (rcpt) {
			free(s->rcpt_held);
			s->rcpt_held = NULL;
		} else {
			free(s->from);
			s->from = NULL;
			s->flags &= ~(SF_8BITMIME | SF_SMTPUTF8);
		}
		session_reply(s, "450 4.7.1 Sending limit reached for this "
		    "user, try later");
	} else if (rcpt) {
		s->rcpts[s->nrcpts++] = s->rcpt_held;
		s->rcpt_held = NULL;
		s->state = S_RCPT;
		session_reply(s, "250 2.1.5 Ok");
	} else {
		s->state = S_MAIL;
		session_reply(s, "250 2.1.0 Ok");
	}
	if (s->env->stopping && s->state != S_QUIT) {
		session_reply(s, "421 4.3.2 %s Service shutting down",
		    conf->hostname);
		session_close(s, "shutting down");
		return;
	}
	replied(s);
	session_input(s);
}

static void
cmd_data(struct session *s, const char *arg)
{
	ipc_send(s->env->queue, IMSG_MSG_CREATE, s->id, -1, "");
	s->pending = PENDING_FILE;
}

static void
cmd_rset(struct session *s, const char *arg)
{
	transaction_reset(s);
	session_reply(s, "250 2.0.0 Ok");
}

static void
cmd_noop(struct session *s, const char *arg)
{
	session_reply(s, "250 2.0.0 Ok");
}

static void
cmd_quit(struct session *s, const char *arg)
{
	session_reply(s, "221 2.0.0 %s Bye", s->conf->hostname);
	session_close(s, "quit");
}

static void
cmd_help(struct session *s, const char *arg)
{
	session_reply(s, "214-smsubmit: a mail submission server");
	session_reply(s, "214-Commands: HELO EHLO STARTTLS AUTH MAIL RCPT "
	    "DATA RSET NOOP QUIT HELP VRFY EXPN");
	session_reply(s, "214 2.0.0 End of HELP");
}

static void
cmd_vrfy(struct session *s, const char *arg)
{
	session_reply(s, "252 2.5.0 Cannot VRFY user, but will accept "
	    "message");
}

static void
cmd_expn(struct session *s, const char *arg)
{
	session_reply(s, "502 5.5.1 EXPN not available");
}

#ifdef SMSUBMIT_REGRESS
/*
 * Only in the binary built for the tests: make a call the listener's
 * sandbox forbids, to prove that it is enforced.  The argument says
 * which: open(2) by default, EXEC an executable mapping, IOCTL a terminal
 * ioctl, KILL tgkill(2), ARCH a call through the i386 ABI.
 */
static void
cmd_xsandbox(struct session *s, const char *arg)
{
	void	*p;
	int	 fd;

	if (strcasecmp(arg, "EXEC") == 0) {
		p = mmap(NULL, 4096, PROT_READ | PROT_EXEC,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p != MAP_FAILED)
			munmap(p, 4096);
	} else if (strcasecmp(arg, "IOCTL") == 0) {
		struct winsize ws;

		(void)ioctl(s->fd, TIOCGWINSZ, &ws);
	} else if (strcasecmp(arg, "KILL") == 0)
		(void)raise(SIGURG);
#if defined(__x86_64__)
	else if (strcasecmp(arg, "ARCH") == 0) {
		long	 r;

		/* getpid is 20 in the i386 table */
		__asm__ volatile ("int $0x80" : "=a"(r) : "a"(20L) : "memory");
	}
#endif
	else if ((fd = open("/etc/hostname", O_RDONLY | O_CLOEXEC)) != -1)
		close(fd);
	session_reply(s, "250 2.0.0 The sandbox let it through");
}
#endif

/* --- DATA --- */

static void
data_begin(struct session *s)
{
	struct smsubmit_conf	*conf = s->conf;
	char			 date[64];
	struct tm		 tm;
	time_t			 now = time(NULL);
	uint32_t		 rnd = arc4random();

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	if ((s->data = malloc(sizeof(*s->data))) == NULL) {
		session_reply(s, "451 4.3.0 Out of memory");
		transaction_reset(s);
		return;
	}
	snprintf(s->data->add_msgid, sizeof(s->data->add_msgid),
	    "Message-ID: <%s.%08x@%s>\r\n", s->msgid, rnd, conf->hostname);
	snprintf(s->data->add_date, sizeof(s->data->add_date),
	    "Date: %s\r\n", date);
	body_init(&s->data->body, s->data->add_msgid, s->data->add_date);
	buf_init(&s->dbuf, DATA_BUF_MAX);
	/* RFC 5321 4.4 (an IPv6 address literal says so), RFC 3848 */
	if (buf_printf(&s->dbuf,
	    "Received: from %s ([%s%s])\r\n"
	    "\tby %s (smsubmit) with %s id %s\r\n"
	    "\t(version=%s cipher=%s);\r\n"
	    "\t%s\r\n", s->helo, strchr(s->client, ':') != NULL ? "IPv6:" : "",
	    s->client, conf->hostname,
	    s->flags & SF_EHLO ? "ESMTPSA" : "SMTPSA", s->msgid,
	    tls_conn_version(s->tls), tls_conn_cipher(s->tls), date) == -1) {
		session_reply(s, "451 4.3.0 Out of memory");
		transaction_reset(s);
		return;
	}
	s->state = S_DATA;
	s->data_start = time(NULL);
	s->data_read = 0;
	s->deadline = s->data_start + conf->timeout_data;
	session_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

/*
 * What one data_input() has of the message for the file, in order: runs
 * of the client's input (s->in, still unconsumed), and octets that
 * body_scan() made (the Received: line, added headers, a field name
 * held back), copied to s->dbuf and kept as offsets there, since dbuf may
 * move as it grows.  All of it is written before data_input() returns,
 * so each octet of the body is copied once, by the kernel, from the
 * buffer tls_read() filled.
 */
struct data_out {
	struct session	*s;
	int		 n;
	struct {
		const char	*p;	/* NULL: at off in s->dbuf */
		size_t		 off;
		size_t		 len;
	}		 piece[DATA_PIECES];
};

static void
data_write(struct data_out *d)
{
	struct session	*s = d->s;
	struct iovec	 iov[DATA_PIECES];
	ssize_t		 n;
	int		 i, first = 0;

	for (i = 0; i < d->n; i++) {
		iov[i].iov_base = d->piece[i].p != NULL ?
		    (void *)d->piece[i].p : buf_head(&s->dbuf) + d->piece[i].off;
		iov[i].iov_len = d->piece[i].len;
	}
	while (first < d->n && s->data_errno == 0) {
		if ((n = writev(s->msgfd, iov + first, d->n - first)) == -1) {
			if (errno == EINTR)
				continue;
			s->data_errno = errno;
			log_warn("session %08x message %s write", s->id,
			    s->msgid);
			break;
		}
		/* a short write: go on where it stopped */
		while (first < d->n && (size_t)n >= iov[first].iov_len)
			n -= iov[first++].iov_len;
		if (first < d->n) {
			iov[first].iov_base = (char *)iov[first].iov_base + n;
			iov[first].iov_len -= n;
		}
	}
	d->n = 0;
	buf_drain(&s->dbuf, buf_used(&s->dbuf));
}

/* There is room: data_out() made it before it could touch dbuf. */
static void
data_piece(struct data_out *d, const char *p, size_t off, size_t len)
{
	d->piece[d->n].p = p;
	d->piece[d->n].off = off;
	d->piece[d->n].len = len;
	d->n++;
}

/* body_scan()'s output: counted, and kept for data_write(). */
static int
data_out(void *arg, const char *p, size_t n, int in_input)
{
	struct data_out	*d = arg;
	struct session	*s = d->s;
	size_t		 off;

	s->msgsize += n;
	if (s->msgsize > s->conf->max_message_size)
		s->flags |= SF_DATAFULL;
	if (s->flags & SF_DATAFULL) {
		/* the message is refused: nothing more is stored */
		d->n = 0;
		buf_drain(&s->dbuf, buf_used(&s->dbuf));
		return 0;
	}
	if (d->n == DATA_PIECES)
		data_write(d);
	if (in_input) {
		data_piece(d, p, 0, n);
		return 0;
	}
	off = buf_used(&s->dbuf);
	if (buf_add(&s->dbuf, p, n) == -1)
		return -1;
	data_piece(d, NULL, off, n);
	return 0;
}

static int
header_addr_allowed(const char *addr, void *arg)
{
	return sender_allowed(arg, addr) ? 0 : -1;
}

/*
 * With "senders check-header-from", the message must have exactly one
 * From: field, and at most one Sender: with one address, and every
 * address in them must be one the user may use.  Each field is checked
 * whole: one too long to keep, or that the parser does not understand,
 * is refused, never checked in part.  NULL if allowed, else why not.
 */
static const char *
header_from_refused(struct session *s, const struct header *h)
{
	if (s->senders != NULL && strcmp(s->senders, "*") == 0)
		return NULL;
	if (h->from_long || h->sender_long)
		return "too long to check";
	/*
	 * A line that is no header field ended the header section for us,
	 * but a reader that looks for the blank line would take what
	 * follows as more fields, a From: among them: unchecked.
	 */
	if (h->no_separator)
		return "after a line that is no header field";
	if (h->nfrom != 1)
		return h->nfrom == 0 ? "missing" : "more than one";
	if (h->nsender > 1)
		return "more than one Sender:";
	if (addr_header_mailboxes(h->from, ADDR_UTF8, header_addr_allowed,
	    s) < 1)
		return "not allowed";
	if (h->nsender == 1 && addr_header_mailboxes(h->sender, ADDR_UTF8,
	    header_addr_allowed, s) != 1)
		return "Sender: not allowed";
	return NULL;
}

static void
data_end(struct session *s)
{
	struct smsubmit_conf	*conf = s->conf;
	struct body		*b = &s->data->body;
	const char		*why;
	char			 euser[LOG_ESCAPE_MAX(USER_MAX)];
	int			 i, flags = 0;

	s->state = S_RCPT;
	if (b->errors & (BODY_ERR_BARECR | BODY_ERR_BARELF | BODY_ERR_LONG)) {
		session_reply(s, "554 5.6.0 Message refused: %s",
		    b->errors & BODY_ERR_LONG ? "line over 998 octets" :
		    "bare CR or LF in message");
		log_info("session %08x message %s refused: %s", s->id,
		    s->msgid, b->errors & BODY_ERR_LONG ? "long line" :
		    "bare CR or LF");
		transaction_reset(s);
		return;
	}
	if (s->flags & SF_DATAFULL) {
		session_reply(s, "552 5.3.4 Message size exceeds limit of "
		    "%zu octets", conf->max_message_size);
		log_info("session %08x message %s refused: too big", s->id,
		    s->msgid);
		transaction_reset(s);
		return;
	}
	if (conf->senders_check_from &&
	    (why = header_from_refused(s, &b->hdr)) != NULL) {
		log_info("session %08x message %s refused: From: header %s "
		    "for user=%s", s->id, s->msgid, why,
		    log_escape(euser, sizeof(euser), s->user));
		if (b->hdr.from_long || b->hdr.sender_long)
			session_reply(s, "550 5.7.1 From: or Sender: header "
			    "too long to check");
		else if (b->hdr.no_separator)
			session_reply(s, "550 5.7.1 Header section not ended "
			    "by a blank line: From: cannot be checked");
		else
			session_reply(s, "550 5.7.1 From: header address not "
			    "allowed for this user");
		transaction_reset(s);
		return;
	}
	if (s->data_errno != 0 || (b->errors & BODY_ERR_OUTPUT)) {
		if (s->data_errno == ENOSPC || s->data_errno == EDQUOT)
			session_reply(s, "452 4.3.1 Insufficient system "
			    "storage");
		else
			session_reply(s, "451 4.3.0 Error writing message");
		transaction_reset(s);
		return;
	}
	close(s->msgfd);
	s->msgfd = -1;
	if (s->flags & SF_8BITMIME)
		flags |= ENV_8BITMIME;
	if (s->flags & SF_SMTPUTF8)
		flags |= ENV_SMTPUTF8;
	ipc_send(s->env->queue, IMSG_MSG_ENVELOPE, s->id, -1, "sssssu",
	    s->msgid, s->from, s->user, s->helo, s->client, (uint32_t)flags);
	for (i = 0; i < s->nrcpts; i++)
		ipc_send(s->env->queue, IMSG_MSG_RCPT, s->id, -1, "ss",
		    s->msgid, s->rcpts[i]);
	ipc_send(s->env->queue, IMSG_MSG_COMMIT, s->id, -1, "s", s->msgid);
	s->pending = PENDING_COMMIT;
}

static void
data_input(struct session *s)
{
	struct smsubmit_conf	*conf = s->conf;
	struct data_out		 d;
	size_t			 n;

	d.s = s;
	d.n = 0;
	/* the Received: line that data_begin() put there */
	if (buf_used(&s->dbuf) > 0 && !(s->flags & SF_DATAFULL))
		data_piece(&d, NULL, 0, buf_used(&s->dbuf));
	n = body_scan(&s->data->body, buf_head(&s->in), buf_used(&s->in),
	    data_out, &d);
	/* before the input it points into is drained */
	data_write(&d);
	buf_drain(&s->in, n);
	/*
	 * "timeout data" is idle time: each read of the message restarts
	 * it.  So that trickling cannot hold a session for ever, the message
	 * must also come at DATA_MIN_RATE on average once that time is up:
	 * a slow uplink is not cut off (35M may take ten hours).
	 */
	s->data_read += n;
	s->deadline = MINIMUM(time(NULL) + conf->timeout_data,
	    s->data_start + conf->timeout_data +
	    (time_t)(s->data_read / DATA_MIN_RATE));
	if (s->data->body.done) {
		s->deadline = time(NULL) + conf->timeout_command;
		s->owed++;	/* the final dot is answered */
		data_end(s);
	}
}

static void
log_accepted(struct session *s)
{
	char	 rcpts[1024], e[LOG_ESCAPE_MAX(ADDR_MAX)];
	char	 euser[LOG_ESCAPE_MAX(USER_MAX)];
	int	 i;

	rcpts[0] = '\0';
	for (i = 0; i < s->nrcpts; i++) {
		if (i > 0)
			strlcat(rcpts, ",", sizeof(rcpts));
		strlcat(rcpts, "<", sizeof(rcpts));
		strlcat(rcpts, log_escape(e, sizeof(e), s->rcpts[i]),
		    sizeof(rcpts));
		if (strlcat(rcpts, ">", sizeof(rcpts)) >= sizeof(rcpts))
			break;
	}
	log_info("session %08x message %s accepted: from=<%s> to=%s "
	    "size=%zu user=%s", s->id, s->msgid, log_escape(e, sizeof(e),
	    s->from), rcpts, s->msgsize, log_escape(euser, sizeof(euser),
	    s->user));
}

void
session_queue_result(struct session *s, struct ipc_msg *msg)
{
	const char	*msgid;
	uint32_t	 result;

	if (ipc_unpack(msg, "us", &result, &msgid) == -1 ||
	    result > QUEUE_R_NOSPACE || strlen(msgid) > QUEUE_ID_LEN ||
	    (msg->type == IMSG_MSG_FILE && (result == QUEUE_OK) !=
	    (msg->fd != -1)) || (msg->type == IMSG_MSG_RESULT &&
	    msg->fd != -1))
		fatalx("bad answer from queue");
	s->pending = PENDING_NONE;
	s->deadline = time(NULL) + s->conf->timeout_command;
	if (msg->type == IMSG_MSG_FILE) {
		if (result == QUEUE_OK) {
			strlcpy(s->msgid, msgid, sizeof(s->msgid));
			s->msgfd = msg->fd;
			data_begin(s);
		} else if (result == QUEUE_R_NOSPACE)
			session_reply(s, "452 4.3.1 Insufficient system "
			    "storage");
		else
			session_reply(s, "451 4.3.0 Temporary queue failure");
	} else {
		if (strcmp(msgid, s->msgid) != 0)
			fatalx("queue answered for another message");
		if (result == QUEUE_OK) {
			log_accepted(s);
			s->env->stats.messages++;
			s->env->stats.bytes += s->msgsize;
			session_reply(s, "250 2.0.0 Ok: queued as %s",
			    s->msgid);
			s->msgid[0] = '\0';	/* the queue's now */
		} else if (result == QUEUE_R_NOSPACE)
			session_reply(s, "452 4.3.1 Insufficient system "
			    "storage");
		else
			session_reply(s, "451 4.3.0 Queue write failed");
		/* a failed commit was removed by the queue */
		s->msgid[0] = '\0';
		transaction_reset(s);
	}
	if (s->env->stopping && s->state != S_QUIT &&
	    s->pending == PENDING_NONE) {
		session_reply(s, "421 4.3.2 %s Service shutting down",
		    s->conf->hostname);
		session_close(s, "shutting down");
		return;
	}
	replied(s);
	session_input(s);
}
