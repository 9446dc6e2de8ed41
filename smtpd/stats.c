/*
 * stats.c: the text of `smsubmit -s`, from the counters of the listener
 * and of the queue, as lines for a person or (with -o openmetrics) in the
 * OpenMetrics text format for Prometheus, e.g. through node_exporter's
 * textfile collector.  Run by the queue process, which answers the
 * control socket.  One table lists every metric; both formats come from
 * it, so they cannot disagree.
 */
#include <sys/types.h>

#include <stdio.h>
#include <string.h>

#include "smsubmit.h"

enum mtype { M_GAUGE, M_COUNTER, M_SUMMARY };

struct metric {
	const char	*name;		/* after "smsubmit_", no _total */
	enum mtype	 type;
	const char	*unit;		/* or NULL */
	const char	*help;
};

static const char *tls_names[STATS_TLS_MAX] = {
	"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3", "other"
};

enum stats_tls
stats_tls_version(const char *v)
{
	int	 i;

	for (i = 0; i < STATS_TLS_OTHER; i++)
		if (v != NULL && strcmp(v, tls_names[i]) == 0)
			return i;
	return STATS_TLS_OTHER;
}

static void
head(struct buf *out, int om, const struct metric *m)
{
	static const char	*types[] = { "gauge", "counter", "summary" };

	if (!om)
		return;
	buf_printf(out, "# TYPE smsubmit_%s %s\n", m->name, types[m->type]);
	if (m->unit != NULL)
		buf_printf(out, "# UNIT smsubmit_%s %s\n", m->name, m->unit);
	buf_printf(out, "# HELP smsubmit_%s %s.\n", m->name, m->help);
}

/* One sample; label is "name=value" or NULL. */
static void
sample(struct buf *out, int om, const struct metric *m, const char *label,
    const char *value, unsigned long long n)
{
	char	 left[128];

	if (om) {
		buf_printf(out, "smsubmit_%s%s", m->name,
		    m->type == M_COUNTER ? "_total" : "");
		if (label != NULL)
			buf_printf(out, "{%s=\"%s\"}", label, value);
		buf_printf(out, " %llu\n", n);
		return;
	}
	if (label != NULL)
		snprintf(left, sizeof(left), "%s, %s %s", m->help, label,
		    value);
	else
		strlcpy(left, m->help, sizeof(left));
	buf_printf(out, "%-56s %llu\n", left, n);
}

static void
one(struct buf *out, int om, const struct metric *m, unsigned long long n)
{
	head(out, om, m);
	sample(out, om, m, NULL, NULL, n);
}

static const struct metric
    m_open = { "sessions_open", M_GAUGE, NULL, "SMTP sessions open now" },
    m_sessions = { "sessions", M_COUNTER, NULL, "SMTP sessions accepted" },
    m_refused = { "connections_refused", M_COUNTER, NULL,
	"Connections refused at accept, over a limit or banned" },
    m_tls = { "tls_handshakes", M_COUNTER, NULL,
	"TLS handshakes completed" },
    m_tlsfail = { "tls_handshake_failures", M_COUNTER, NULL,
	"TLS handshakes failed" },
    m_authok = { "auth_successes", M_COUNTER, NULL,
	"AUTH exchanges that logged a user in" },
    m_authfail = { "auth_failures", M_COUNTER, NULL,
	"AUTH exchanges with bad credentials" },
    m_auththr = { "auth_throttled", M_COUNTER, NULL,
	"AUTH failures answered late (auth delay)" },
    m_authban = { "auth_banned", M_COUNTER, NULL,
	"Connections refused from an address banned (auth ban)" },
    m_msgs = { "messages_accepted", M_COUNTER, NULL,
	"Messages accepted (250 after DATA)" },
    m_bytes = { "accepted_bytes", M_COUNTER, "bytes",
	"Octets of the messages accepted" },
    m_codes = { "refusals", M_COUNTER, NULL,
	"Replies 4xx and 5xx, by reply code" },
    m_ulimit = { "user_limit_refusals", M_COUNTER, NULL,
	"MAIL or RCPT refused over a per-user limit" },
    m_depth = { "queue_messages", M_GAUGE, NULL,
	"Messages in the queue" },
    m_oldest = { "queue_oldest_age_seconds", M_GAUGE, "seconds",
	"Age of the oldest message in the queue" },
    m_attempts = { "relay_attempts", M_COUNTER, NULL,
	"Delivery attempts to the relay host" },
    m_rfail = { "relay_failures", M_COUNTER, NULL,
	"Delivery attempts that left recipients to retry" },
    m_latency = { "relay_latency_seconds", M_SUMMARY, "seconds",
	"Time taken by delivery attempts" },
    m_bounces = { "bounces", M_COUNTER, NULL,
	"Delivery status notifications sent" };

void
stats_format(struct buf *out, const struct smtp_stats *s,
    const struct queue_stats *q, int om)
{
	char	 code[8];
	int	 i;

	one(out, om, &m_open, s->sessions_open);
	one(out, om, &m_sessions, s->sessions);
	one(out, om, &m_refused, s->refused);
	head(out, om, &m_tls);
	for (i = 0; i < STATS_TLS_MAX; i++)
		sample(out, om, &m_tls, "version", tls_names[i], s->tls[i]);
	one(out, om, &m_tlsfail, s->tls_failed);
	one(out, om, &m_authok, s->auth_ok);
	one(out, om, &m_authfail, s->auth_failed);
	one(out, om, &m_auththr, s->auth_throttled);
	one(out, om, &m_authban, s->auth_banned);
	one(out, om, &m_msgs, s->messages);
	one(out, om, &m_bytes, s->bytes);
	head(out, om, &m_codes);
	for (i = 0; i < STATS_CODES; i++) {
		if (s->codes[i] == 0)
			continue;
		snprintf(code, sizeof(code), "%d", STATS_CODE_MIN + i);
		sample(out, om, &m_codes, "code", code, s->codes[i]);
	}
	head(out, om, &m_ulimit);
	sample(out, om, &m_ulimit, "limit", "messages",
	    s->user_limited[USERLIMIT_MESSAGES]);
	sample(out, om, &m_ulimit, "limit", "recipients",
	    s->user_limited[USERLIMIT_RECIPIENTS]);
	one(out, om, &m_depth, q->depth);
	one(out, om, &m_oldest, q->oldest);
	one(out, om, &m_attempts, q->relay_attempts);
	one(out, om, &m_rfail, q->relay_failures);
	head(out, om, &m_latency);
	if (om) {
		buf_printf(out, "smsubmit_%s_count %llu\n", m_latency.name,
		    (unsigned long long)q->relay_attempts);
		buf_printf(out, "smsubmit_%s_sum %llu.%06llu\n",
		    m_latency.name,
		    (unsigned long long)(q->relay_usec / 1000000),
		    (unsigned long long)(q->relay_usec % 1000000));
	} else
		buf_printf(out, "%-56s %llu.%03llu\n",
		    "Time taken by delivery attempts, seconds",
		    (unsigned long long)(q->relay_usec / 1000000),
		    (unsigned long long)(q->relay_usec % 1000000 / 1000));
	one(out, om, &m_bounces, q->bounces);
	if (om)
		buf_printf(out, "# EOF\n");
}
