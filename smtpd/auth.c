/*
 * auth.c: the "[auth]" process, run as "auth workers" instances.  It alone
 * talks to Cyrus SASL and so to the password store.  The listener hands it
 * base64 strings; it answers with a base64 challenge, success and the
 * canonical user name, or a failure reason.  One sasl_conn_t lives per
 * session in an exchange.
 *
 * The listener faces the internet and may be subverted, so this process
 * treats it as OpenSSH's monitor treats its unprivileged child: each
 * session's exchange is in one state, each message says in which states
 * it may come (the table below), and any other message is fatal: the
 * process exits and the parent stops the daemon.  Failures are counted
 * per client address and per user name, shared with the other workers
 * through the parent, so delays and bans do not depend on which worker
 * an exchange went to.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/tree.h>

#include <event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <sasl/sasl.h>

#include "b64.h"
#include "log.h"
#include "smsubmit.h"

/*
 * Where a session's exchange is.  Between two messages from the listener
 * it is waiting for the client's next response, or holding a failure back;
 * X_NONE is a session without a record.
 */
enum xstate {
	X_NONE = 0x01,
	X_STEP = 0x02,		/* a challenge sent, AUTH_STEP next */
	X_HELD = 0x04		/* a failure held back: only AUTH_END */
};

struct exchange {
	SPLAY_ENTRY(exchange)	 entry;
	uint32_t		 id;
	enum xstate		 state;
	sasl_conn_t		*conn;
	char			 mech[32];
	char			 client[NI_MAXHOST];
	char			 user[128];	/* for the log, sanitised */
	int			 steps;
	int			 named;		/* the user name was looked at */
	struct event		*delay;		/* a failure held back */
};

/* Recent failures of one client address or one user name. */
struct failures {
	SPLAY_ENTRY(failures)	 entry;
	char			 key[NI_MAXHOST + 2];	/* "a:addr", "u:user" */
	int			 n;
	time_t			 since;
	time_t			 banned_until;
};

#define FAILURES_MAX	10000	/* records kept; beyond, old ones go */
#define USER_NAME_MAX	255	/* octets of a user name a client may claim */
#define EXCHANGES_SLACK	64	/* beyond "limit sessions": a bad listener */

static int	exchange_cmp(struct exchange *, struct exchange *);
SPLAY_HEAD(exchangetree, exchange);
SPLAY_PROTOTYPE(exchangetree, exchange, entry, exchange_cmp);
SPLAY_GENERATE(exchangetree, exchange, entry, exchange_cmp);

static int	failures_cmp(struct failures *, struct failures *);
SPLAY_HEAD(failuretree, failures);
SPLAY_PROTOTYPE(failuretree, failures, entry, failures_cmp);
SPLAY_GENERATE(failuretree, failures, entry, failures_cmp);

static struct {
	struct smsubmit_conf	*conf;
	struct event_base	*base;
	struct ipc		*listener;
	struct ipc		*parent;
	struct exchangetree	 exchanges;
	int			 nexchanges;
	struct failuretree	 failures;
	int			 nfailures;
	char			 mechs[AUTH_MECHS_MAX];
	char			 mechs_before[AUTH_MECHS_MAX]; /* a reload */
	int			 max_sessions;	/* the most ever allowed */
} env;

static int
failures_cmp(struct failures *a, struct failures *b)
{
	return strcmp(a->key, b->key);
}

static int
exchange_cmp(struct exchange *a, struct exchange *b)
{
	return a->id < b->id ? -1 : a->id > b->id;
}

static int
sasl_log_cb(void *ctx, int level, const char *msg)
{
	if (level <= SASL_LOG_ERR)
		log_warnx("sasl: %s", msg);
	else if (level <= SASL_LOG_NOTE)
		log_info("sasl: %s", msg);
	else
		log_debug("sasl: %s", msg);
	return SASL_OK;
}

static int
sasl_confpath_cb(void *ctx, const char **path)
{
	*path = env.conf->sasl_config;
	return SASL_OK;
}

/* Nobody may act as someone else: the authorization id is the user. */
static int
sasl_proxy_cb(sasl_conn_t *conn, void *ctx, const char *req, unsigned reqlen,
    const char *authid, unsigned authidlen, const char *realm,
    unsigned realmlen, struct propctx *props)
{
	if (reqlen != authidlen || memcmp(req, authid, reqlen) != 0) {
		sasl_seterror(conn, 0, "authorization identity differs from "
		    "authentication identity");
		return SASL_NOAUTHZ;
	}
	return SASL_OK;
}

/* Cyrus takes every callback as int (*)(void); void (*)(void) casts quietly */
#define SASL_CB(f)	((int (*)(void))(void (*)(void))(f))

static sasl_callback_t global_cb[] = {
	{ SASL_CB_LOG, SASL_CB(sasl_log_cb), NULL },
	{ SASL_CB_GETCONFPATH, SASL_CB(sasl_confpath_cb), NULL },
	{ SASL_CB_LIST_END, NULL, NULL }
};

static sasl_callback_t conn_cb[] = {
	{ SASL_CB_PROXY_POLICY, SASL_CB(sasl_proxy_cb), NULL },
	{ SASL_CB_LIST_END, NULL, NULL }
};

static sasl_conn_t *
conn_new(const char *local, const char *client)
{
	sasl_security_properties_t	 secprops;
	sasl_ssf_t			 ssf = 256;
	sasl_conn_t			*conn;
	char				 remote[NI_MAXHOST + 4];

	/*
	 * Cyrus refuses an address it cannot parse, such as "unknown",
	 * and leaks memory when it does: none is better than that.
	 */
	snprintf(remote, sizeof(remote), "%s;0", client);
	if (sasl_server_new("smtp", env.conf->hostname, NULL,
	    *local ? local : NULL, *client && strcmp(client, "unknown") != 0 ?
	    remote : NULL, conn_cb, 0, &conn) != SASL_OK)
		return NULL;
	/* TLS protects the exchange; SASL adds no security layer */
	memset(&secprops, 0, sizeof(secprops));
	secprops.security_flags = SASL_SEC_NOANONYMOUS;
	if (sasl_setprop(conn, SASL_SEC_PROPS, &secprops) != SASL_OK ||
	    sasl_setprop(conn, SASL_SSF_EXTERNAL, &ssf) != SASL_OK) {
		sasl_dispose(&conn);
		return NULL;
	}
	return conn;
}

/* Offer what is both configured and installed, in the configured order. */
static void
find_mechs(void)
{
	sasl_conn_t	*conn;
	const char	*avail, *p;
	char		 want[AUTH_MECHS_MAX], *m, *last;
	unsigned	 len;
	int		 count;
	size_t		 n;

	if ((conn = conn_new("", "")) == NULL)
		fatalx("sasl_server_new failed");
	if (sasl_listmech(conn, NULL, " ", " ", " ", &avail, &len,
	    &count) != SASL_OK)
		avail = "";
	strlcpy(want, env.conf->auth_mechs, sizeof(want));
	for (m = strtok_r(want, " ", &last); m != NULL;
	    m = strtok_r(NULL, " ", &last)) {
		n = strlen(m);
		for (p = strcasestr(avail, m); p != NULL;
		    p = strcasestr(p + 1, m))
			if (p[-1] == ' ' && (p[n] == ' ' || p[n] == '\0'))
				break;
		if (p == NULL) {
			log_warnx("SASL mechanism %s is not available", m);
			continue;
		}
		if (env.mechs[0] != '\0')
			strlcat(env.mechs, " ", sizeof(env.mechs));
		strlcat(env.mechs, m, sizeof(env.mechs));
	}
	sasl_dispose(&conn);
	if (env.mechs[0] == '\0')
		log_warnx("no SASL mechanism available: nobody can log in");
}

/*
 * Where the user name is in a client's message, for the mechanisms
 * whose first message names one: 1 with *user and *n, else 0.
 */
static int
claimed_user(struct exchange *x, const char *in, unsigned len,
    const char **user, size_t *n)
{
	const char	*p, *end;

	/* no initial response: in is NULL, and NULL + 0 is undefined */
	if (len == 0) {
		*user = "";
		*n = 0;
		return strcasecmp(x->mech, "LOGIN") == 0;
	}
	end = in + len;
	if (strcasecmp(x->mech, "PLAIN") == 0) {
		/* authzid NUL authcid NUL password */
		if ((p = memchr(in, '\0', len)) == NULL)
			return 0;
		p++;
		*n = strnlen(p, end - p);
	} else if (strcasecmp(x->mech, "LOGIN") == 0) {
		p = in;
		*n = len;
	} else if (strncasecmp(x->mech, "SCRAM-", 6) == 0) {
		/* gs2-header then "n=user," */
		if ((p = memmem(in, len, ",n=", 3)) == NULL)
			return 0;
		p += 3;
		*n = strcspn(p, ",");
		if (*n > (size_t)(end - p))
			*n = end - p;
	} else
		return 0;
	*user = p;
	return 1;
}

/* The user an exchange claims to be, for the log line of a failure. */
static void
guess_user(struct exchange *x, const char *in, unsigned len)
{
	const char	*p;
	char		 user[128];
	size_t		 n;

	if (x->user[0] != '\0' || len == 0 ||
	    !claimed_user(x, in, len, &p, &n))
		return;
	if (n >= sizeof(user))
		n = sizeof(user) - 1;
	memcpy(user, p, n);
	user[n] = '\0';
	log_sanitise(x->user, sizeof(x->user), user);
}

/*
 * A user name no account has: empty or blank, or longer than any.  Cyrus
 * refuses those only after it copied the password, and then leaks the
 * copy (PLAIN and LOGIN, seen with Cyrus SASL 2.1.28), answered as a
 * temporary failure that no delay or ban counts: a client could fill
 * this process's memory with passwords.  So it is a failed login here,
 * before Cyrus sees it.  Looked at once, in the first message that names
 * the user.
 */
static int
name_refused(struct exchange *x, const char *in, unsigned len)
{
	const char	*user;
	size_t		 n, i;

	if (x->named)
		return 0;
	x->named = 1;
	if (!claimed_user(x, in, len, &user, &n))
		return 0;
	for (i = 0; i < n && (user[i] == ' ' || user[i] == '\t'); i++)
		;
	return i == n || n > USER_NAME_MAX;
}

static void
exchange_free(struct exchange *x)
{
	SPLAY_REMOVE(exchangetree, &env.exchanges, x);
	env.nexchanges--;
	if (x->delay != NULL)
		event_free(x->delay);
	sasl_dispose(&x->conn);
	free(x);
}

/* Forget failures outside the window; if that is not enough, all. */
static void
failures_prune(time_t now)
{
	struct failures	*f, *next;
	int		 pass;

	for (pass = 0; pass < 2 && env.nfailures >= FAILURES_MAX; pass++) {
		for (f = SPLAY_MIN(failuretree, &env.failures); f != NULL;
		    f = next) {
			next = SPLAY_NEXT(failuretree, &env.failures, f);
			if (pass == 0 && (f->banned_until > now ||
			    now - f->since < env.conf->ban_window))
				continue;
			SPLAY_REMOVE(failuretree, &env.failures, f);
			free(f);
			env.nfailures--;
		}
	}
}

/* Count a failure for key; returns the failures in the window. */
static struct failures *
failure_count(const char *prefix, const char *what, time_t now)
{
	struct failures	 key, *f;

	snprintf(key.key, sizeof(key.key), "%s%s", prefix, what);
	if ((f = SPLAY_FIND(failuretree, &env.failures, &key)) == NULL) {
		if (env.nfailures >= FAILURES_MAX)
			failures_prune(now);
		if ((f = calloc(1, sizeof(*f))) == NULL)
			return NULL;
		strlcpy(f->key, key.key, sizeof(f->key));
		f->since = now;
		SPLAY_INSERT(failuretree, &env.failures, f);
		env.nfailures++;
	}
	if (now - f->since >= env.conf->ban_window) {
		f->n = 0;
		f->since = now;
	}
	f->n++;
	return f;
}

/*
 * One failure for this address and user, ours or another worker's: the
 * counts and so the delays and bans are the same in every worker.  An
 * address over the limit is banned here too, so this process refuses it
 * whatever the listener does with the ban.
 */
static int
failure_note(const char *addr, const char *user, time_t now, int *newban)
{
	struct failures	*fa, *fu;
	int		 n = 1;

	*newban = 0;
	fa = failure_count("a:", addr, now);
	fu = failure_count("u:", user, now);
	if (fa != NULL && fa->n > n)
		n = fa->n;
	if (fu != NULL && fu->n > n)
		n = fu->n;
	if (fa != NULL && fa->n >= env.conf->ban_failures &&
	    fa->banned_until <= now) {
		fa->banned_until = now + env.conf->ban_time;
		*newban = 1;
	}
	return n;
}

static int
address_banned(const char *addr, time_t now)
{
	struct failures	 key, *f;

	snprintf(key.key, sizeof(key.key), "a:%s", addr);
	f = SPLAY_FIND(failuretree, &env.failures, &key);
	return f != NULL && f->banned_until > now;
}

static void
delay_cb(int fd, short ev, void *arg)
{
	struct exchange	*x = arg;

	ipc_send(env.listener, IMSG_AUTH_FAIL, x->id, -1, "u",
	    (uint32_t)AUTH_R_BADCREDS);
	exchange_free(x);
}

/*
 * Bad credentials: the answer waits longer the more the address and the
 * user name failed lately, and an address that fails too often is banned.
 * Other sessions go on meanwhile: only this answer is held.
 */
static void
fail_badcreds(struct exchange *x, int r)
{
	struct timeval	 tv;
	time_t		 now = time(NULL), d;
	const char	*user = x->user[0] ? x->user : "unknown";
	int		 n, newban;

	log_info("session %08x auth failed for user=%s mechanism=%s from %s: "
	    "%s", x->id, user, x->mech, x->client, r == SASL_OK ?
	    "address banned" : sasl_errstring(r, NULL, NULL));
	n = failure_note(x->client, user, now, &newban);
	if (env.conf->auth_workers > 1)
		ipc_send(env.parent, IMSG_AUTH_FAILURE, 0, -1, "ss",
		    x->client, user);
	if (newban) {
		log_info("session %08x banned %s for %llds after %d auth "
		    "failures", x->id, x->client,
		    (long long)env.conf->ban_time, env.conf->ban_failures);
		ipc_send(env.listener, IMSG_AUTH_BAN, 0, -1, "su", x->client,
		    (uint32_t)env.conf->ban_time);
	}
	for (d = env.conf->auth_delay_min; --n > 0 &&
	    d < env.conf->auth_delay_max; )
		d *= 2;
	if (d > env.conf->auth_delay_max)
		d = env.conf->auth_delay_max;
	tv.tv_sec = d;
	tv.tv_usec = 0;
	if (d == 0 || (x->delay = evtimer_new(env.base, delay_cb, x)) ==
	    NULL) {
		delay_cb(-1, 0, x);
		return;
	}
	/* the listener's wait for us grows by as much */
	ipc_send(env.listener, IMSG_AUTH_HOLD, x->id, -1, "u", (uint32_t)d);
	x->state = X_HELD;
	evtimer_add(x->delay, &tv);
}

static void
reply_fail(struct exchange *x, enum auth_result why, int r)
{
	if (why == AUTH_R_BADCREDS) {
		fail_badcreds(x, r);
		return;
	}
	log_info("session %08x auth error mechanism=%s from %s: %s", x->id,
	    x->mech, x->client, why == AUTH_R_BADB64 ? "bad base64" :
	    sasl_errdetail(x->conn));
	ipc_send(env.listener, IMSG_AUTH_FAIL, x->id, -1, "u", (uint32_t)why);
	exchange_free(x);
}

/*
 * The envelope senders a user may use, from the senders file: its own
 * name if that is an address, and what its line lists.  "*" if there is
 * no senders file: anything goes.
 */
static void
senders_of(const char *user, char *out, size_t len)
{
	FILE	*fp;
	char	*line = NULL, *word, *last;
	size_t	 cap = 0;
	ssize_t	 n;

	if (env.conf->senders_file == NULL) {
		strlcpy(out, "*", len);
		return;
	}
	out[0] = '\0';
	if (strchr(user, '@') != NULL)
		strlcpy(out, user, len);
	if ((fp = fopen(env.conf->senders_file, "re")) == NULL) {
		log_warn("senders file %s", env.conf->senders_file);
		return;		/* fail closed: only the user's own name */
	}
	while ((n = getline(&line, &cap, fp)) != -1) {
		line[strcspn(line, "#\r\n")] = '\0';
		if ((word = strtok_r(line, " \t", &last)) == NULL ||
		    strcmp(word, user) != 0)
			continue;
		while ((word = strtok_r(NULL, " \t,", &last)) != NULL) {
			if (out[0] != '\0')
				strlcat(out, " ", len);
			if (strlcat(out, word, len) >= len) {
				log_warnx("senders of %s: too many", user);
				break;
			}
		}
	}
	free(line);
	fclose(fp);
}

/* Act on what sasl_server_start() or sasl_server_step() said. */
static void
answer(struct exchange *x, int r, const char *out, unsigned outlen)
{
	const void	*user;
	char		*b64, senders[SENDERS_MAX];
	size_t		 n;

	switch (r) {
	case SASL_OK:
		if (sasl_getprop(x->conn, SASL_USERNAME, &user) != SASL_OK ||
		    user == NULL) {
			reply_fail(x, AUTH_R_TEMP, r);
			return;
		}
		senders_of(user, senders, sizeof(senders));
		ipc_send(env.listener, IMSG_AUTH_OK, x->id, -1, "ss", user,
		    senders);
		exchange_free(x);
		return;
	case SASL_CONTINUE:
		n = B64_ENCLEN(outlen);
		if (++x->steps > 16 || (b64 = malloc(n)) == NULL) {
			reply_fail(x, AUTH_R_TEMP, SASL_FAIL);
			return;
		}
		b64_encode(out, outlen, b64, n);
		ipc_send(env.listener, IMSG_AUTH_CONTINUE, x->id, -1, "s", b64);
		free(b64);
		x->state = X_STEP;
		return;
	case SASL_NOMECH:
	case SASL_TOOWEAK:
	case SASL_ENCRYPT:
		reply_fail(x, AUTH_R_BADMECH, r);
		return;
	case SASL_FAIL:
	case SASL_NOMEM:
	case SASL_BUFOVER:
	case SASL_TRYAGAIN:
	case SASL_UNAVAIL:
		reply_fail(x, AUTH_R_TEMP, r);
		return;
	default:
		reply_fail(x, AUTH_R_BADCREDS, r);
		return;
	}
}

/* Decode a client's base64; NULL (and the exchange ended) if invalid. */
static char *
decode(struct exchange *x, const char *b64, unsigned *len)
{
	size_t	 n = strlen(b64);
	ssize_t	 r;
	char	*p;

	if ((p = malloc(B64_DECLEN(n))) == NULL) {
		reply_fail(x, AUTH_R_TEMP, SASL_NOMEM);
		return NULL;
	}
	if ((r = b64_decode(b64, n, p, B64_DECLEN(n))) == -1) {
		free(p);
		reply_fail(x, AUTH_R_BADB64, SASL_BADPARAM);
		return NULL;
	}
	*len = r;
	return p;
}

/* Is mech one the operator enabled and Cyrus has? */
static int
mech_in(const char *mechs, const char *mech)
{
	const char	*p;
	size_t		 n = strlen(mech);

	if (n == 0)
		return 0;
	for (p = mechs; (p = strcasestr(p, mech)) != NULL; p++)
		if ((p == mechs || p[-1] == ' ') &&
		    (p[n] == ' ' || p[n] == '\0'))
			return 1;
	return 0;
}

/*
 * The client address is the listener's word; all this process can check
 * is that it is a numeric address (or "unknown", what the listener says
 * when it has none), so a ban names something that can connect.
 */
static int
client_valid(const char *client)
{
	struct addrinfo	 hints, *res;

	if (strcmp(client, "unknown") == 0)
		return 1;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_flags = AI_NUMERICHOST;
	if (strlen(client) >= NI_MAXHOST ||
	    getaddrinfo(client, NULL, &hints, &res) != 0)
		return 0;
	freeaddrinfo(res);
	return 1;
}

/*
 * The listener's own address, "ADDR;PORT" as Cyrus takes it, or "" if
 * it has none: anything else is not what the listener makes, and Cyrus
 * would refuse it (and leak, see conn_new()).
 */
static int
local_valid(const char *local)
{
	const char	*semi;
	char		 addr[NI_MAXHOST];
	size_t		 n;

	if (*local == '\0')
		return 1;
	if ((semi = strrchr(local, ';')) == NULL ||
	    (n = semi - local) >= sizeof(addr) ||
	    strspn(semi + 1, "0123456789") != strlen(semi + 1) ||
	    strlen(semi + 1) < 1 || strlen(semi + 1) > 5 ||
	    atoi(semi + 1) > 65535)
		return 0;
	memcpy(addr, local, n);
	addr[n] = '\0';
	return strcmp(addr, "unknown") != 0 && client_valid(addr);
}

static void
auth_start(struct exchange *none, struct ipc_msg *msg)
{
	struct exchange	*x;
	const char	*mech, *ir, *client, *local, *out;
	char		*in = NULL;
	unsigned	 inlen = 0, outlen;
	uint32_t	 has_ir;
	int		 r;

	if (ipc_unpack(msg, "ssuss", &mech, &ir, &has_ir, &client,
	    &local) == -1 || has_ir > 1 || strlen(local) >= NI_MAXHOST + 8)
		fatalx("bad AUTH_START");
	if (!mech_in(env.mechs, mech)) {
		/* offered until a reload the listener has not heard of yet */
		if (!mech_in(env.mechs_before, mech))
			fatalx("AUTH_START for session %08x: mechanism not "
			    "offered", msg->peerid);
		ipc_send(env.listener, IMSG_AUTH_FAIL, msg->peerid, -1, "u",
		    (uint32_t)AUTH_R_BADMECH);
		return;
	}
	if (!client_valid(client))
		fatalx("AUTH_START for session %08x: bad client address",
		    msg->peerid);
	if (!local_valid(local))
		fatalx("AUTH_START for session %08x: bad local address",
		    msg->peerid);
	if (env.nexchanges >= env.max_sessions + EXCHANGES_SLACK)
		fatalx("AUTH_START: more exchanges than sessions");
	if ((x = calloc(1, sizeof(*x))) == NULL) {
		ipc_send(env.listener, IMSG_AUTH_FAIL, msg->peerid, -1, "u",
		    (uint32_t)AUTH_R_TEMP);
		return;
	}
	x->id = msg->peerid;
	strlcpy(x->mech, mech, sizeof(x->mech));
	strlcpy(x->client, client, sizeof(x->client));
	if ((x->conn = conn_new(local, client)) == NULL) {
		free(x);
		ipc_send(env.listener, IMSG_AUTH_FAIL, msg->peerid, -1, "u",
		    (uint32_t)AUTH_R_TEMP);
		return;
	}
	SPLAY_INSERT(exchangetree, &env.exchanges, x);
	env.nexchanges++;
	if (has_ir && (in = decode(x, ir, &inlen)) == NULL)
		return;
	guess_user(x, in, inlen);
	if (address_banned(x->client, time(NULL))) {
		/* whatever the listener did with the ban: no password check */
		if (in != NULL)
			freezero(in, inlen + 1);
		fail_badcreds(x, SASL_OK);
		return;
	}
	if (has_ir && name_refused(x, in, inlen)) {
		freezero(in, inlen + 1);
		fail_badcreds(x, SASL_BADAUTH);
		return;
	}
	r = sasl_server_start(x->conn, x->mech, has_ir ? in : NULL, inlen,
	    &out, &outlen);
	if (in != NULL)
		freezero(in, inlen + 1);
	answer(x, r, out, outlen);
}

static void
auth_step(struct exchange *x, struct ipc_msg *msg)
{
	const char	*resp, *out;
	char		*in;
	unsigned	 inlen, outlen;
	int		 r;

	if (ipc_unpack(msg, "s", &resp) == -1)
		fatalx("bad AUTH_STEP");
	if ((in = decode(x, resp, &inlen)) == NULL)
		return;
	guess_user(x, in, inlen);
	if (name_refused(x, in, inlen)) {
		freezero(in, inlen + 1);
		fail_badcreds(x, SASL_BADAUTH);
		return;
	}
	r = sasl_server_step(x->conn, in, inlen, &out, &outlen);
	freezero(in, inlen + 1);
	answer(x, r, out, outlen);
}

/* The session gave up, or the listener stopped waiting: no answer. */
static void
auth_end(struct exchange *x, struct ipc_msg *msg)
{
	if (ipc_unpack(msg, "") == -1)
		fatalx("bad AUTH_END");
	if (x != NULL)
		exchange_free(x);
	ipc_send(env.listener, IMSG_AUTH_ENDED, msg->peerid, -1, "");
}

/*
 * What the listener may send, and in which states of the session's
 * exchange.  Whatever is not here, or comes in another state, is fatal.
 */
static const struct {
	enum msg_type	  type;
	int		  states;
	void		(*handler)(struct exchange *, struct ipc_msg *);
} requests[] = {
	{ IMSG_AUTH_START,	X_NONE,				auth_start },
	{ IMSG_AUTH_STEP,	X_STEP,				auth_step },
	{ IMSG_AUTH_END,	X_NONE | X_STEP | X_HELD,	auth_end },
};

static const char *
xstate_name(int state)
{
	return state == X_NONE ? "no exchange" : state == X_STEP ?
	    "a challenge out" : "a failure held";
}

static void
listener_dispatch(struct ipc *ipc, struct ipc_msg *msg, void *arg)
{
	struct exchange	*x, key;
	size_t		 i;
	int		 state;

	if (msg == NULL) {
		/* it finished its sessions, or the parent reports its death */
		log_debug("listener gone, exiting");
		exit(0);
	}
	if (msg->fd != -1)
		fatalx("unexpected descriptor from listener");
	for (i = 0; i < sizeof(requests) / sizeof(requests[0]); i++)
		if (requests[i].type == msg->type)
			break;
	if (i == sizeof(requests) / sizeof(requests[0]))
		fatalx("unexpected message %u from listener", msg->type);
	key.id = msg->peerid;
	x = SPLAY_FIND(exchangetree, &env.exchanges, &key);
	state = x == NULL ? X_NONE : x->state;
	if (!(requests[i].states & state))
		fatalx("message %u from listener for session %08x with %s",
		    msg->type, msg->peerid, xstate_name(state));
	requests[i].handler(x, msg);
	/* the strings held credentials */
	explicit_bzero((void *)msg->data, msg->len);
}

/*
 * The parent relays the other workers' failures and, on SIGHUP, the new
 * settings: delays and bans count from the next failure, and the
 * mechanisms offered are found again and told to the listener.
 */
static void
parent_dispatch(struct ipc *ipc, struct ipc_msg *msg, void *arg)
{
	const char	*addr, *user;
	int		 newban;

	if (msg == NULL)
		fatalx("parent went away");
	if (msg->type == IMSG_RECONF && msg->fd == -1) {
		if (proc_reconf(msg, env.conf) == -1)
			return;
		/* sessions from before a lower limit are still there */
		if (env.conf->max_sessions > env.max_sessions)
			env.max_sessions = env.conf->max_sessions;
		strlcpy(env.mechs_before, env.mechs, sizeof(env.mechs_before));
		env.mechs[0] = '\0';
		find_mechs();
		ipc_send(env.listener, IMSG_AUTH_MECHS, 0, -1, "s", env.mechs);
		return;
	}
	if (msg->type != IMSG_AUTH_FAILURE || msg->fd != -1 ||
	    ipc_unpack(msg, "ss", &addr, &user) == -1 ||
	    strlen(addr) >= NI_MAXHOST || strlen(user) >= 128)
		fatalx("unexpected message %u from parent", msg->type);
	failure_note(addr, user, time(NULL), &newban);
}

static void
signal_cb(int sig, short ev, void *arg)
{
	exit(0);
}

void
auth_main(struct smsubmit_conf *conf, struct proc_peers *peers)
{
	struct event	*sterm;

	env.conf = conf;
	env.max_sessions = conf->max_sessions;
	SPLAY_INIT(&env.exchanges);
	SPLAY_INIT(&env.failures);
	if (peers->listener == -1)
		fatalx("auth started without the listener");
	proc_drop(conf->user, NULL);

	if (sasl_server_init(global_cb, SMSUBMIT_SASL_APP) != SASL_OK)
		fatalx("sasl_server_init failed");
	find_mechs();

	if ((env.base = event_base_new()) == NULL)
		fatalx("event_base_new");
	env.parent = peers->parent;
	ipc_attach(peers->parent, env.base, parent_dispatch, NULL);
	env.listener = ipc_new(env.base, peers->listener, "listener",
	    listener_dispatch, NULL);
	ipc_send(env.listener, IMSG_AUTH_MECHS, 0, -1, "s", env.mechs);
	sterm = evsignal_new(env.base, SIGTERM, signal_cb, NULL);
	if (sterm == NULL || evsignal_add(sterm, NULL) == -1)
		fatalx("evsignal");
	sandbox_enter("auth", peers->parent->fd);
	ipc_send(peers->parent, IMSG_READY, 0, -1, "");
	event_base_dispatch(env.base);
	fatalx("event loop ended");
}
