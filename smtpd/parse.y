/*
 * parse.y: the grammar of smsubmit.conf(5), run by the parent [priv]
 * process at start-up, for -n, and again on SIGHUP.
 *
 * parse_config() fills a struct smsubmit_conf with the defaults, then lets
 * the file override them.  Every error is printed to stderr as
 * "file:line: message" and parsing goes on to the end of the file, so that
 * one run of "smsubmit -n" shows every mistake.
 *
 * Macros are expanded in the lexer: the value of $name is pushed back in
 * front of the input and read again, so a macro may hold a number, a word
 * or several tokens.  Macros given with -D (cmdline_symset()) outlive a
 * parse and win over the file's definitions of the same name.
 *
 * Strings made by the lexer live in a pool that is emptied when the parse
 * ends, whatever happened: the grammar actions copy what they keep, and a
 * token thrown away by error recovery leaks nothing.
 */

%{
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tls.h>
#include <unistd.h>

#include "smsubmit.h"

#define TOKEN_MAX		8192	/* longest word or quoted string */
#define MECH_NAME_MAX		20
#define SIZE_MIN_BYTES		1024
#define DURATION_MAX		(365LL * 24 * 60 * 60)
#define LIMIT_MAX		100000
#define EXPAND_END		(-2)	/* pushback: end of a macro value */

struct sym {
	TAILQ_ENTRY(sym)	 entry;
	char			*name;
	char			*value;
	int			 cmdline;	/* from -D: outlives a parse */
};
TAILQ_HEAD(sym_list, sym);

static struct sym_list	 symbols = TAILQ_HEAD_INITIALIZER(symbols);

/* The state of one parse; reset by parse_config(). */
static struct {
	struct smsubmit_conf	*conf;
	FILE			*fp;
	const char		*name;
	int			 lineno;
	int			 newline;	/* count it at the next token */
	int			 bol;		/* a statement starts */
	int			 prevtok;
	int			 expanding;	/* in a macro value */
	int			 lexfailed;	/* error said: no yyerror */
	int			 errors;
	int			*pushback;
	size_t			 npushback;
	size_t			 pushbacksz;
	char			**pool;
	size_t			 npool;
	char			 near[32];	/* last token, for yyerror */
	/* listen on: options seen so far */
	int			 lport;
	int			 lflags;
	struct proxy_net	 lproxy[PROXY_FROM_MAX];
	int			 nlproxy;
	/* auth mechanisms: the list being built */
	char			 mechs[AUTH_MECHS_MAX];
} in;

static int	 keyword_lookup(const char *);
int		 yylex(void);
int		 yyparse(void);
void		 yyerror(const char *);
static void	 conf_err(const char *, ...)
		    __attribute__((format(printf, 1, 2)));
static char	*pool_add(const char *);
static int	 set_string(char **, const char *);
static int	 get_number(const char *, long long, long long, const char *,
		    long long *);
static int	 get_port(const char *, int *);
static int	 get_size(const char *, size_t *);
static int	 get_duration(const char *, time_t *);
static int	 check_path(const char *, const char *);
static int	 check_hostname(const char *);
static int	 check_user(const char *, const char *);
static int	 mechs_add(const char *);
static int	 listen_add(const char *, int, int);
static int	 proxy_net_add(const char *);
static int	 relay_set(const char *, int);
static int	 keypair_add(const char *, const char *);
static int	 symset(const char *, const char *, int);
static const char *symget(const char *);
static int	 valid_symname(const char *);

typedef struct {
	union {
		char		*string;
		long long	 number;
		size_t		 size;
		time_t		 duration;
	} v;
} YYSTYPE;
#define YYSTYPE_IS_DECLARED 1

%}

%token	AFTER BAN CHECKHEADERFROM DELAY DELAYWARNING FOR SENDERS WITHIN
%token	AUTH CERTIFICATE CIPHERS COMMAND CONNECTIONS DATA HANDSHAKE HOSTNAME
%token	KEY LIFETIME
%token	LIMIT MESSAGES PER
%token	LISTEN MAXFAILURES MECHANISMS MESSAGESIZE ON PORT PROTOCOLS QUEUE
%token	RECIPIENTS RELAY RETRY SASLCONFIG SESSIONS SESSIONSPERADDR
%token	SESSIONSPERNET STARTTLS TIMEOUT
%token	TLS TO USER WORKERS PROXY FROM
%token	ERROR
%token	<v.string>	STRING
%type	<v.string>	string
%type	<v.number>	port relayport
%type	<v.size>	size
%type	<v.duration>	duration

%%

grammar		: /* empty */
		| grammar '\n'
		| grammar statement '\n'
		| grammar error '\n'		{ yyerrok; }
		;

statement	: macro
		| hostname
		| listen
		| tls
		| auth
		| relay
		| senders
		| queue
		| limit
		| timeout
		| user
		;

string		: STRING
		;

macro		: STRING '=' string {
			if (!valid_symname($1)) {
				conf_err("invalid macro name \"%s\"", $1);
				YYERROR;
			}
			if (symset($1, $3, 0) == -1) {
				conf_err("out of memory");
				YYERROR;
			}
		}
		;

hostname	: HOSTNAME string {
			if (check_hostname($2) == -1)
				YYERROR;
			(void)strlcpy(in.conf->hostname, $2,
			    sizeof(in.conf->hostname));
		}
		;

listen		: LISTEN ON string listenopts {
			if (in.lflags == 0) {
				conf_err("listen on needs tls or starttls");
				YYERROR;
			}
			if (in.lport == 0)
				in.lport = in.lflags == LISTEN_TLS ? 465 : 587;
			if (listen_add($3, in.lport, in.lflags) == -1)
				YYERROR;
		}
		;

listenopts	: /* empty */ {
			in.lport = 0;
			in.lflags = 0;
			in.nlproxy = 0;
		}
		| listenopts listenopt
		;

listenopt	: PORT port {
			if (in.lport != 0) {
				conf_err("listen on: port given twice");
				YYERROR;
			}
			in.lport = $2;
		}
		| TLS {
			if (in.lflags != 0) {
				conf_err("listen on takes only one of tls or "
				    "starttls");
				YYERROR;
			}
			in.lflags = LISTEN_TLS;
		}
		| STARTTLS {
			if (in.lflags != 0) {
				conf_err("listen on takes only one of tls or "
				    "starttls");
				YYERROR;
			}
			in.lflags = LISTEN_STARTTLS;
		}
		| PROXY FROM proxynets
		;

proxynets	: proxynet
		| proxynets proxynet
		;

proxynet	: string {
			if (proxy_net_add($1) == -1)
				YYERROR;
		}
		;

port		: string {
			int	p;

			if (get_port($1, &p) == -1)
				YYERROR;
			$$ = p;
		}
		;

tls		: TLS CERTIFICATE string KEY string {
			if (check_path("certificate", $3) == -1 ||
			    check_path("key", $5) == -1 ||
			    keypair_add($3, $5) == -1)
				YYERROR;
		}
		| TLS PROTOCOLS string {
			uint32_t	protos;

			if (tls_config_parse_protocols(&protos, $3) == -1) {
				conf_err("invalid tls protocols \"%s\"", $3);
				YYERROR;
			}
			if (set_string(&in.conf->tls_protocols, $3) == -1)
				YYERROR;
		}
		| TLS CIPHERS string {
			struct tls_config	*tc;
			int			 rv;

			if ((tc = tls_config_new()) == NULL) {
				conf_err("tls_config_new failed");
				YYERROR;
			}
			rv = tls_config_set_ciphers(tc, $3);
			tls_config_free(tc);
			if (rv == -1) {
				conf_err("invalid tls ciphers \"%s\"", $3);
				YYERROR;
			}
			if (set_string(&in.conf->tls_ciphers, $3) == -1)
				YYERROR;
		}
		;

auth		: AUTH MECHANISMS mechlist {
			(void)strlcpy(in.conf->auth_mechs, in.mechs,
			    sizeof(in.conf->auth_mechs));
		}
		| AUTH SASLCONFIG string {
			if (check_path("sasl-config", $3) == -1 ||
			    set_string(&in.conf->sasl_config, $3) == -1)
				YYERROR;
			in.conf->line.sasl_config = in.lineno;
		}
		| AUTH MAXFAILURES string {
			long long	n;

			if (get_number($3, 1, 100, "max-failures", &n) == -1)
				YYERROR;
			in.conf->auth_max_failures = n;
		}
		| AUTH DELAY duration TO duration {
			if ($3 > $5) {
				conf_err("auth delay: %lld is more than %lld",
				    (long long)$3, (long long)$5);
				YYERROR;
			}
			if ($5 > AUTH_DELAY_LIMIT) {
				conf_err("auth delay: %lld is more than %ds",
				    (long long)$5, AUTH_DELAY_LIMIT);
				YYERROR;
			}
			in.conf->auth_delay_min = $3;
			in.conf->auth_delay_max = $5;
		}
		| AUTH WORKERS string {
			long long	n;

			if (get_number($3, 1, AUTH_WORKERS_MAX, "auth workers",
			    &n) == -1)
				YYERROR;
			in.conf->auth_workers = n;
		}
		| AUTH TIMEOUT duration {
			if ($3 < 1 || $3 > 3600) {
				conf_err("auth timeout: %lld is not between "
				    "1s and 1h", (long long)$3);
				YYERROR;
			}
			in.conf->auth_timeout = $3;
		}
		| AUTH BAN AFTER string WITHIN duration FOR duration {
			long long	n;

			if (get_number($4, 1, 100000, "ban after", &n) == -1)
				YYERROR;
			in.conf->ban_failures = n;
			in.conf->ban_window = $6;
			in.conf->ban_time = $8;
		}
		;

senders		: SENDERS string {
			if (check_path("senders", $2) == -1 ||
			    set_string(&in.conf->senders_file, $2) == -1)
				YYERROR;
		}
		| SENDERS CHECKHEADERFROM {
			in.conf->senders_check_from = 1;
		}
		;

mechlist	: string {
			in.mechs[0] = '\0';
			if (mechs_add($1) == -1)
				YYERROR;
		}
		| mechlist string {
			if (mechs_add($2) == -1)
				YYERROR;
		}
		;

relay		: RELAY TO string relayport {
			if (relay_set($3, $4) == -1)
				YYERROR;
		}
		| RELAY TIMEOUT duration {
			in.conf->relay_timeout = $3;
		}
		| RELAY CONNECTIONS string {
			long long	n;

			if (get_number($3, 1, RELAY_CONNECTIONS_MAX,
			    "relay connections", &n) == -1)
				YYERROR;
			in.conf->relay_connections = n;
		}
		;

relayport	: /* empty */		{ $$ = 25; }
		| PORT port		{ $$ = $2; }
		;

queue		: QUEUE string {
			if (check_path("queue", $2) == -1 ||
			    set_string(&in.conf->queue_dir, $2) == -1)
				YYERROR;
			in.conf->line.queue_dir = in.lineno;
		}
		| QUEUE LIFETIME duration {
			in.conf->queue_lifetime = $3;
		}
		| QUEUE DELAYWARNING duration {
			in.conf->delay_warning = $3;
		}
		| QUEUE RETRY duration TO duration {
			if ($3 > $5) {
				conf_err("queue retry: %lld is more than %lld",
				    (long long)$3, (long long)$5);
				YYERROR;
			}
			in.conf->retry_min = $3;
			in.conf->retry_max = $5;
		}
		| QUEUE USER string {
			if (check_user("queue user", $3) == -1 ||
			    set_string(&in.conf->queue_user, $3) == -1)
				YYERROR;
			in.conf->line.queue_user = in.lineno;
		}
		;

limit		: LIMIT MESSAGESIZE size {
			in.conf->max_message_size = $3;
		}
		| LIMIT RECIPIENTS string {
			long long	n;

			if (get_number($3, 1, LIMIT_MAX, "recipients",
			    &n) == -1)
				YYERROR;
			in.conf->max_recipients = n;
		}
		| LIMIT SESSIONS string {
			long long	n;

			if (get_number($3, 1, LIMIT_MAX, "sessions", &n) == -1)
				YYERROR;
			in.conf->max_sessions = n;
		}
		| LIMIT SESSIONSPERADDR string {
			long long	n;

			if (get_number($3, 1, LIMIT_MAX, "sessions-per-address",
			    &n) == -1)
				YYERROR;
			in.conf->max_sessions_per_addr = n;
		}
		| LIMIT SESSIONSPERNET string {
			long long	n;

			if (get_number($3, 1, LIMIT_MAX, "sessions-per-network",
			    &n) == -1)
				YYERROR;
			in.conf->max_sessions_per_net = n;
		}
		| LIMIT USER MESSAGES string PER duration {
			long long	n;

			if (get_number($4, 1, LIMIT_MAX, "user messages",
			    &n) == -1)
				YYERROR;
			in.conf->user_messages = n;
			in.conf->user_messages_window = $6;
		}
		| LIMIT USER RECIPIENTS string PER duration {
			long long	n;

			if (get_number($4, 1, LIMIT_MAX, "user recipients",
			    &n) == -1)
				YYERROR;
			in.conf->user_recipients = n;
			in.conf->user_recipients_window = $6;
		}
		;

size		: string {
			size_t	sz;

			if (get_size($1, &sz) == -1)
				YYERROR;
			$$ = sz;
		}
		;

duration	: string {
			time_t	t;

			if (get_duration($1, &t) == -1)
				YYERROR;
			$$ = t;
		}
		;

timeout		: TIMEOUT HANDSHAKE duration {
			in.conf->timeout_handshake = $3;
		}
		| TIMEOUT COMMAND duration {
			in.conf->timeout_command = $3;
		}
		| TIMEOUT DATA duration {
			in.conf->timeout_data = $3;
		}
		;

user		: USER string {
			if (check_user("user", $2) == -1 ||
			    set_string(&in.conf->user, $2) == -1)
				YYERROR;
			in.conf->line.user = in.lineno;
		}
		;

%%

/* Kept in alphabetical order only for the reader: the search is linear. */
static const struct keyword {
	const char	*word;
	int		 token;
} keywords[] = {
	{ "after",			AFTER },
	{ "auth",			AUTH },
	{ "ban",			BAN },
	{ "certificate",		CERTIFICATE },
	{ "check-header-from",		CHECKHEADERFROM },
	{ "ciphers",			CIPHERS },
	{ "command",			COMMAND },
	{ "connections",		CONNECTIONS },
	{ "data",			DATA },
	{ "delay",			DELAY },
	{ "delay-warning",		DELAYWARNING },
	{ "for",			FOR },
	{ "from",			FROM },
	{ "handshake",			HANDSHAKE },
	{ "hostname",			HOSTNAME },
	{ "key",			KEY },
	{ "lifetime",			LIFETIME },
	{ "limit",			LIMIT },
	{ "listen",			LISTEN },
	{ "max-failures",		MAXFAILURES },
	{ "mechanisms",			MECHANISMS },
	{ "message-size",		MESSAGESIZE },
	{ "messages",			MESSAGES },
	{ "on",				ON },
	{ "per",			PER },
	{ "port",			PORT },
	{ "protocols",			PROTOCOLS },
	{ "proxy",			PROXY },
	{ "queue",			QUEUE },
	{ "recipients",			RECIPIENTS },
	{ "relay",			RELAY },
	{ "retry",			RETRY },
	{ "sasl-config",		SASLCONFIG },
	{ "senders",			SENDERS },
	{ "sessions",			SESSIONS },
	{ "sessions-per-address",	SESSIONSPERADDR },
	{ "sessions-per-network",	SESSIONSPERNET },
	{ "starttls",			STARTTLS },
	{ "timeout",			TIMEOUT },
	{ "tls",			TLS },
	{ "to",				TO },
	{ "user",			USER },
	{ "within",			WITHIN },
	{ "workers",			WORKERS },
	{ NULL,				0 }
};

static int
keyword_lookup(const char *word)
{
	const struct keyword	*k;

	for (k = keywords; k->word != NULL; k++)
		if (strcmp(k->word, word) == 0)
			return k->token;
	return STRING;
}

/* --- errors --- */

static void
conf_err(const char *fmt, ...)
{
	va_list	ap;

	in.errors++;
	fprintf(stderr, "%s:%d: ", in.name, in.lineno);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Called by the parser for syntax errors only. */
void
yyerror(const char *msg)
{
	/* the lexer has already said what is wrong with this line */
	if (in.lexfailed) {
		in.lexfailed = 0;
		return;
	}
	if (strcmp(in.near, "\n") == 0)
		conf_err("%s at end of line", msg);
	else
		conf_err("%s near \"%s\"", msg, in.near);
}

/* --- values --- */

static char *
pool_add(const char *s)
{
	char	**p, *copy;

	if (in.npool % 64 == 0) {
		p = reallocarray(in.pool, in.npool + 64, sizeof(*p));
		if (p == NULL)
			return NULL;
		in.pool = p;
	}
	if ((copy = strdup(s)) == NULL)
		return NULL;
	in.pool[in.npool++] = copy;
	return copy;
}

static void
pool_free(void)
{
	size_t	i;

	for (i = 0; i < in.npool; i++)
		free(in.pool[i]);
	free(in.pool);
	in.pool = NULL;
	in.npool = 0;
}

static int
set_string(char **dst, const char *src)
{
	char	*s;

	if ((s = strdup(src)) == NULL) {
		conf_err("out of memory");
		return -1;
	}
	free(*dst);
	*dst = s;
	return 0;
}

static int
get_number(const char *s, long long min, long long max, const char *what,
    long long *res)
{
	const char	*errstr;
	const char	*p;

	p = s;
	if (*p == '-')
		p++;
	if (*p == '\0' || strspn(p, "0123456789") != strlen(p)) {
		conf_err("invalid %s \"%s\"", what, s);
		return -1;
	}
	*res = strtonum(s, min, max, &errstr);
	if (errstr != NULL) {
		conf_err("%s out of range: %s (must be %lld to %lld)", what, s,
		    min, max);
		return -1;
	}
	return 0;
}

/* A port is a number or, as a convenience, a name from services(5). */
static int
get_port(const char *s, int *port)
{
	struct servent	*se;
	long long	 n;

	if (isdigit((unsigned char)s[0]) || s[0] == '-') {
		if (get_number(s, 1, 65535, "port", &n) == -1)
			return -1;
		*port = n;
		return 0;
	}
	if ((se = getservbyname(s, "tcp")) == NULL) {
		conf_err("unknown port \"%s\"", s);
		return -1;
	}
	*port = ntohs(se->s_port);
	return 0;
}

/* Split "35M" into 35 and 'M'; the suffix is '\0' when there is none. */
static int
split_suffix(const char *s, char *num, size_t numsz, int *suffix)
{
	size_t	len;

	len = strlen(s);
	if (len == 0 || len >= numsz)
		return -1;
	memcpy(num, s, len + 1);
	*suffix = '\0';
	if (!isdigit((unsigned char)num[len - 1])) {
		*suffix = (unsigned char)num[len - 1];
		num[--len] = '\0';
	}
	if (len == 0 || strspn(num, "0123456789") != len)
		return -1;
	return 0;
}

static int
get_size(const char *s, size_t *res)
{
	char		 num[32];
	const char	*errstr;
	long long	 n;
	size_t		 mult;
	int		 suffix;

	if (split_suffix(s, num, sizeof(num), &suffix) == -1)
		goto bad;
	switch (suffix) {
	case '\0':
		mult = 1;
		break;
	case 'K':
	case 'k':
		mult = 1024;
		break;
	case 'M':
	case 'm':
		mult = 1024 * 1024;
		break;
	case 'G':
	case 'g':
		mult = 1024 * 1024 * 1024;
		break;
	default:
		goto bad;
	}
	n = strtonum(num, 0, LLONG_MAX, &errstr);
	if (errstr != NULL || (unsigned long long)n > SIZE_MAX / mult) {
		conf_err("size \"%s\" too large", s);
		return -1;
	}
	if ((size_t)n * mult < SIZE_MIN_BYTES) {
		conf_err("size \"%s\" too small (at least 1K)", s);
		return -1;
	}
	*res = (size_t)n * mult;
	return 0;
 bad:
	conf_err("invalid size \"%s\"", s);
	return -1;
}

static int
get_duration(const char *s, time_t *res)
{
	char		 num[32];
	const char	*errstr;
	long long	 n, mult;
	int		 suffix;

	if (split_suffix(s, num, sizeof(num), &suffix) == -1)
		goto bad;
	switch (suffix) {
	case '\0':
	case 's':
		mult = 1;
		break;
	case 'm':
		mult = 60;
		break;
	case 'h':
		mult = 60 * 60;
		break;
	case 'd':
		mult = 24 * 60 * 60;
		break;
	default:
		goto bad;
	}
	n = strtonum(num, 0, DURATION_MAX, &errstr);
	if (errstr != NULL || n * mult > DURATION_MAX) {
		conf_err("duration \"%s\" too long (at most 365d)", s);
		return -1;
	}
	if (n == 0) {
		conf_err("duration \"%s\" must be more than zero", s);
		return -1;
	}
	*res = n * mult;
	return 0;
 bad:
	conf_err("invalid duration \"%s\"", s);
	return -1;
}

/*
 * The daemon changes directory to / and the processes chroot, so a relative
 * name would mean something else by the time it is used.
 */
static int
check_path(const char *what, const char *path)
{
	if (path[0] != '/') {
		conf_err("%s \"%s\" must be an absolute path", what, path);
		return -1;
	}
	if (strlen(path) >= PATH_MAX) {
		conf_err("%s: path too long", what);
		return -1;
	}
	return 0;
}

/* It goes into the greeting, EHLO and Received: lines: keep it a name. */
static int
check_hostname(const char *s)
{
	size_t	i, len;

	len = strlen(s);
	if (len == 0 || len > HOST_NAME_MAX) {
		conf_err("invalid hostname \"%s\"", s);
		return -1;
	}
	for (i = 0; i < len; i++) {
		if (isalnum((unsigned char)s[i]) || s[i] == '-')
			continue;
		if (s[i] == '.' && i > 0 && s[i - 1] != '.')
			continue;
		conf_err("invalid hostname \"%s\"", s);
		return -1;
	}
	return 0;
}

static int
check_user(const char *what, const char *s)
{
	size_t	i, len;

	len = strlen(s);
	if (len == 0 || len > 32 || s[0] == '-') {
		conf_err("invalid %s \"%s\"", what, s);
		return -1;
	}
	for (i = 0; i < len; i++) {
		if (!isalnum((unsigned char)s[i]) &&
		    strchr("_-.$", s[i]) == NULL) {
			conf_err("invalid %s \"%s\"", what, s);
			return -1;
		}
	}
	return 0;
}

/* SASL mechanism names (RFC 4422 section 3.1), upper-cased. */
static int
mechs_add(const char *s)
{
	char	 mech[MECH_NAME_MAX + 1];
	char	*p;
	size_t	 i, len, wlen;

	len = strlen(s);
	if (len == 0 || len > MECH_NAME_MAX) {
		conf_err("invalid mechanism \"%s\"", s);
		return -1;
	}
	for (i = 0; i < len; i++) {
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' &&
		    s[i] != '_') {
			conf_err("invalid mechanism \"%s\"", s);
			return -1;
		}
		mech[i] = toupper((unsigned char)s[i]);
	}
	mech[len] = '\0';

	for (p = in.mechs; *p != '\0'; p += wlen + (p[wlen] == ' ')) {
		wlen = strcspn(p, " ");
		if (wlen == len && strncmp(p, mech, len) == 0) {
			conf_err("mechanism %s given twice", mech);
			return -1;
		}
	}
	if ((in.mechs[0] != '\0' && strlcat(in.mechs, " ",
	    sizeof(in.mechs)) >= sizeof(in.mechs)) ||
	    strlcat(in.mechs, mech, sizeof(in.mechs)) >= sizeof(in.mechs)) {
		conf_err("too many mechanisms");
		return -1;
	}
	return 0;
}

/* --- addresses --- */

static int
sa_port_name(const struct sockaddr *sa, socklen_t salen, int port, char *buf,
    size_t bufsz)
{
	char	host[NI_MAXHOST];
	int	rv;

	if ((rv = getnameinfo(sa, salen, host, sizeof(host), NULL, 0,
	    NI_NUMERICHOST)) != 0) {
		conf_err("getnameinfo: %s", gai_strerror(rv));
		return -1;
	}
	(void)snprintf(buf, bufsz, "%s port %d", host, port);
	return 0;
}

static int
same_address(const struct sockaddr_storage *a,
    const struct sockaddr_storage *b)
{
	const struct sockaddr_in	*a4, *b4;
	const struct sockaddr_in6	*a6, *b6;

	if (a->ss_family != b->ss_family)
		return 0;
	switch (a->ss_family) {
	case AF_INET:
		a4 = (const struct sockaddr_in *)a;
		b4 = (const struct sockaddr_in *)b;
		return a4->sin_port == b4->sin_port &&
		    a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	case AF_INET6:
		a6 = (const struct sockaddr_in6 *)a;
		b6 = (const struct sockaddr_in6 *)b;
		return a6->sin6_port == b6->sin6_port &&
		    a6->sin6_scope_id == b6->sin6_scope_id &&
		    memcmp(&a6->sin6_addr, &b6->sin6_addr,
		    sizeof(a6->sin6_addr)) == 0;
	}
	return 0;
}

static int
listen_one(const struct sockaddr *sa, socklen_t salen, int port, int flags)
{
	struct listen_conf	*lc, *l;

	if (salen > sizeof(lc->ss)) {
		conf_err("address too long");
		return -1;
	}
	if ((lc = calloc(1, sizeof(*lc))) == NULL) {
		conf_err("out of memory");
		return -1;
	}
	memcpy(&lc->ss, sa, salen);
	lc->sslen = salen;
	lc->flags = flags;
	memcpy(lc->proxy, in.lproxy, sizeof(lc->proxy));
	lc->nproxy = in.nlproxy;
	lc->fd = -1;
	if (lc->ss.ss_family == AF_INET)
		((struct sockaddr_in *)&lc->ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)&lc->ss)->sin6_port = htons(port);
	if (sa_port_name((struct sockaddr *)&lc->ss, lc->sslen, port,
	    lc->name, sizeof(lc->name)) == -1) {
		free(lc);
		return -1;
	}
	TAILQ_FOREACH(l, &in.conf->listeners, entry) {
		if (same_address(&l->ss, &lc->ss)) {
			conf_err("duplicate listener %s", lc->name);
			free(lc);
			return -1;
		}
	}
	TAILQ_INSERT_TAIL(&in.conf->listeners, lc, entry);
	return 0;
}

/*
 * "proxy from ADDRESS[/BITS]": a balancer whose PROXY header is believed.
 * A numeric address only: trust is not given to whatever a name resolves
 * to at the time.
 */
static int
proxy_net_add(const char *s)
{
	struct proxy_net	*pn;
	char			 buf[INET6_ADDRSTRLEN + 8], *slash;
	const char		*errstr;
	int			 max, i;

	if (in.nlproxy == PROXY_FROM_MAX) {
		conf_err("proxy from: more than %d sources", PROXY_FROM_MAX);
		return -1;
	}
	pn = &in.lproxy[in.nlproxy];
	memset(pn, 0, sizeof(*pn));
	if (strlcpy(buf, s, sizeof(buf)) >= sizeof(buf))
		goto bad;
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = '\0';
	if (inet_pton(AF_INET, buf, pn->addr) == 1) {
		pn->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, pn->addr) == 1) {
		pn->family = AF_INET6;
		max = 128;
	} else
		goto bad;
	pn->bits = max;
	if (slash != NULL) {
		pn->bits = strtonum(slash, 0, max, &errstr);
		if (errstr != NULL)
			goto bad;
	}
	/* the bits past the prefix must be zero: no ambiguous intent */
	for (i = pn->bits; i < max; i++)
		if (pn->addr[i / 8] & (0x80 >> (i % 8)))
			goto bad;
	in.nlproxy++;
	return 0;
 bad:
	conf_err("proxy from: invalid address or network \"%s\"", s);
	return -1;
}

/* "*" is both wildcard addresses; a name gives one listener per address. */
static int
listen_add(const char *host, int port, int flags)
{
	struct sockaddr_in	 sin;
	struct sockaddr_in6	 sin6;
	struct addrinfo		 hints, *res, *ai;
	int			 rv, ret = 0;

	if (strcmp(host, "*") == 0) {
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_ANY);
		memset(&sin6, 0, sizeof(sin6));
		sin6.sin6_family = AF_INET6;
		sin6.sin6_addr = in6addr_any;
		if (listen_one((struct sockaddr *)&sin, sizeof(sin), port,
		    flags) == -1)
			ret = -1;
		if (listen_one((struct sockaddr *)&sin6, sizeof(sin6), port,
		    flags) == -1)
			ret = -1;
		return ret;
	}

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = AI_PASSIVE;
	if ((rv = getaddrinfo(host, NULL, &hints, &res)) != 0) {
		conf_err("listen on %s: %s", host, gai_strerror(rv));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		if (listen_one(ai->ai_addr, ai->ai_addrlen, port, flags) == -1)
			ret = -1;
	}
	freeaddrinfo(res);
	return ret;
}

static int
relay_set(const char *host, int port)
{
	struct smsubmit_conf	*conf = in.conf;
	struct addrinfo		 hints, *res;
	char			 serv[8];
	int			 rv;

	(void)snprintf(serv, sizeof(serv), "%d", port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = AI_NUMERICSERV;
	if ((rv = getaddrinfo(host, serv, &hints, &res)) != 0) {
		conf_err("relay to %s: %s", host, gai_strerror(rv));
		return -1;
	}
	if (res->ai_addrlen > sizeof(conf->relay_ss)) {
		freeaddrinfo(res);
		conf_err("relay to %s: address too long", host);
		return -1;
	}
	memset(&conf->relay_ss, 0, sizeof(conf->relay_ss));
	memcpy(&conf->relay_ss, res->ai_addr, res->ai_addrlen);
	conf->relay_sslen = res->ai_addrlen;
	freeaddrinfo(res);
	return sa_port_name((struct sockaddr *)&conf->relay_ss,
	    conf->relay_sslen, port, conf->relay_name,
	    sizeof(conf->relay_name));
}

/* --- macros --- */

static int
valid_symname(const char *s)
{
	const char	*p;

	if (!isalpha((unsigned char)s[0]) && s[0] != '_')
		return 0;
	for (p = s; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && *p != '_')
			return 0;
	return 1;
}

static struct sym *
symfind(const char *name)
{
	struct sym	*sym;

	TAILQ_FOREACH(sym, &symbols, entry)
		if (strcmp(sym->name, name) == 0)
			return sym;
	return NULL;
}

static const char *
symget(const char *name)
{
	struct sym	*sym;

	if ((sym = symfind(name)) == NULL)
		return NULL;
	return sym->value;
}

/* -D wins: the file cannot redefine what the command line set. */
static int
symset(const char *name, const char *value, int cmdline)
{
	struct sym	*sym;
	char		*v;

	if ((sym = symfind(name)) != NULL) {
		if (sym->cmdline && !cmdline)
			return 0;
		if ((v = strdup(value)) == NULL)
			return -1;
		free(sym->value);
		sym->value = v;
		sym->cmdline = cmdline;
		return 0;
	}
	if ((sym = calloc(1, sizeof(*sym))) == NULL)
		return -1;
	if ((sym->name = strdup(name)) == NULL ||
	    (sym->value = strdup(value)) == NULL) {
		free(sym->name);
		free(sym);
		return -1;
	}
	sym->cmdline = cmdline;
	TAILQ_INSERT_TAIL(&symbols, sym, entry);
	return 0;
}

/* A file's macros are forgotten once it is parsed; -D ones stay. */
static void
symclear_file(void)
{
	struct sym	*sym, *next;

	for (sym = TAILQ_FIRST(&symbols); sym != NULL; sym = next) {
		next = TAILQ_NEXT(sym, entry);
		if (sym->cmdline)
			continue;
		TAILQ_REMOVE(&symbols, sym, entry);
		free(sym->name);
		free(sym->value);
		free(sym);
	}
}

int
cmdline_symset(const char *s)
{
	char	*name, *eq;
	int	 rv;

	if ((eq = strchr(s, '=')) == NULL)
		return -1;
	if ((name = strndup(s, eq - s)) == NULL)
		return -1;
	if (!valid_symname(name) || keyword_lookup(name) != STRING) {
		free(name);
		return -1;
	}
	rv = symset(name, eq + 1, 1);
	free(name);
	return rv;
}

/* --- the lexer --- */

static int
lungetc(int c)
{
	int	*p;

	if (c == EOF)
		return 0;
	if (in.npushback == in.pushbacksz) {
		p = reallocarray(in.pushback, in.pushbacksz + 64, sizeof(*p));
		if (p == NULL)
			return -1;
		in.pushback = p;
		in.pushbacksz += 64;
	}
	in.pushback[in.npushback++] = c;
	return 0;
}

/* The next character: pushed back ones first, then the file. */
static int
lgetc(void)
{
	int	c, next;

	for (;;) {
		if (in.npushback > 0) {
			c = in.pushback[--in.npushback];
			if (c == EXPAND_END) {
				in.expanding--;
				continue;
			}
			return c;
		}
		c = getc(in.fp);
		if (c != '\\')
			return c;
		/* a backslash before a newline joins the lines */
		next = getc(in.fp);
		if (next != '\n') {
			if (next != EOF)
				ungetc(next, in.fp);
			return c;
		}
		in.lineno++;
	}
}

/* Skip the rest of a line the lexer gave up on; the parser recovers. */
static int
lex_fail(void)
{
	int	c;

	in.lexfailed = 1;
	while ((c = lgetc()) != '\n' && c != EOF)
		;
	(void)lungetc(c);
	return ERROR;
}

static int
is_wordchar(int c)
{
	if (c == EOF || c == '\0')
		return 0;
	return isalnum(c) || strchr("-_.:/*@%+,!~", c) != NULL;
}

/* $name: the macro's value is read again in place of the reference. */
static int
expand(void)
{
	char		 name[TOKEN_MAX];
	const char	*val;
	size_t		 len = 0;
	int		 c, nested;

	/* asked now: reading the name may pop the end of the value */
	nested = in.expanding > 0;
	while ((c = lgetc()) != EOF && (isalnum(c) || c == '_')) {
		if (len >= sizeof(name) - 1) {
			conf_err("macro name too long");
			return -1;
		}
		name[len++] = c;
	}
	name[len] = '\0';
	(void)lungetc(c);
	if (len == 0) {
		conf_err("macro name expected after '$'");
		return -1;
	}
	if (nested) {
		conf_err("macro \"%s\" used inside a macro value", name);
		return -1;
	}
	if ((val = symget(name)) == NULL) {
		conf_err("undefined macro \"%s\"", name);
		return -1;
	}
	if (lungetc(EXPAND_END) == -1)
		goto nomem;
	for (len = strlen(val); len > 0; len--)
		if (lungetc((unsigned char)val[len - 1]) == -1)
			goto nomem;
	in.expanding++;
	return 0;
 nomem:
	conf_err("out of memory");
	return -1;
}

static int
lex_quoted(char *buf, size_t bufsz)
{
	size_t	len = 0;
	int	c, next;

	for (;;) {
		c = lgetc();
		if (c == EOF || c == '\n') {
			conf_err("unterminated quoted string");
			(void)lungetc(c);
			return -1;
		}
		if (c == '"')
			break;
		if (c == '\\') {
			next = lgetc();
			if (next == '"' || next == '\\')
				c = next;
			else
				(void)lungetc(next);
		} else if (iscntrl(c) && c != '\t') {
			conf_err("invalid character in quoted string");
			return -1;
		}
		if (len >= bufsz - 1) {
			conf_err("string too long");
			return -1;
		}
		buf[len++] = c;
	}
	buf[len] = '\0';
	return 0;
}

static int
lex_word(int c, char *buf, size_t bufsz)
{
	size_t	len = 0;

	do {
		if (len >= bufsz - 1) {
			conf_err("word too long");
			return -1;
		}
		buf[len++] = c;
	} while (is_wordchar(c = lgetc()));
	buf[len] = '\0';
	(void)lungetc(c);
	return 0;
}

/* Does a '=' follow, making the word before it a macro name? */
static int
peek_equal(void)
{
	int	c;

	while ((c = lgetc()) == ' ' || c == '\t' || c == '\r')
		;
	(void)lungetc(c);
	return c == '=';
}

static int
lex_token(void)
{
	char	buf[TOKEN_MAX];
	int	c, token;

	if (in.newline) {
		in.newline = 0;
		in.lineno++;
	}
 again:
	while ((c = lgetc()) == ' ' || c == '\t' || c == '\r')
		;
	if (c == '#')
		while ((c = lgetc()) != '\n' && c != EOF)
			;
	if (c == EOF) {
		if (in.bol)
			return 0;
		/* a last line without its newline still ends a statement */
		(void)strlcpy(in.near, "\n", sizeof(in.near));
		return '\n';
	}
	if (c == '\n') {
		in.newline = 1;
		in.lexfailed = 0;
		(void)strlcpy(in.near, "\n", sizeof(in.near));
		return '\n';
	}
	if (c == '$') {
		if (expand() == -1)
			return lex_fail();
		goto again;
	}
	if (c == '=') {
		(void)strlcpy(in.near, "=", sizeof(in.near));
		return '=';
	}
	if (c == '"') {
		if (lex_quoted(buf, sizeof(buf)) == -1)
			return lex_fail();
		token = STRING;
	} else if (is_wordchar(c)) {
		if (lex_word(c, buf, sizeof(buf)) == -1)
			return lex_fail();
		token = in.prevtok == '=' ? STRING : keyword_lookup(buf);
		if (in.bol && peek_equal()) {
			if (token != STRING) {
				conf_err("keyword \"%s\" cannot be a macro "
				    "name", buf);
				return lex_fail();
			}
		} else if (in.bol && token == STRING) {
			conf_err("unknown keyword \"%s\"", buf);
			return lex_fail();
		}
	} else {
		if (isprint(c))
			conf_err("unexpected character '%c'", c);
		else
			conf_err("unexpected character 0x%02x", c);
		return lex_fail();
	}
	(void)strlcpy(in.near, buf, sizeof(in.near));
	if (token == STRING && (yylval.v.string = pool_add(buf)) == NULL) {
		conf_err("out of memory");
		return lex_fail();
	}
	return token;
}

int
yylex(void)
{
	int	token;

	token = lex_token();
	in.bol = token == '\n';
	in.prevtok = token;
	return token;
}

/* --- the configuration --- */

static int
conf_defaults(struct smsubmit_conf *conf)
{
	memset(conf, 0, sizeof(*conf));
	TAILQ_INIT(&conf->listeners);
	TAILQ_INIT(&conf->keypairs);

	if (gethostname(conf->hostname, sizeof(conf->hostname)) == -1 ||
	    conf->hostname[0] == '\0')
		(void)strlcpy(conf->hostname, "localhost",
		    sizeof(conf->hostname));
	conf->hostname[sizeof(conf->hostname) - 1] = '\0';
	(void)strlcpy(conf->auth_mechs, "PLAIN LOGIN",
	    sizeof(conf->auth_mechs));
	conf->auth_max_failures = 3;
	conf->auth_workers = 4;
	conf->auth_timeout = 15;
	conf->auth_delay_min = 1;
	conf->auth_delay_max = 15;
	conf->ban_failures = 10;
	conf->ban_window = 10 * 60;
	conf->ban_time = 60 * 60;
	conf->queue_lifetime = 5 * 24 * 60 * 60;
	conf->max_message_size = 35 * 1024 * 1024;
	conf->max_recipients = 100;
	conf->max_sessions = 1000;
	conf->max_sessions_per_addr = 20;
	conf->max_sessions_per_net = 0;		/* see parse_fp() */
	conf->timeout_handshake = 30;
	conf->timeout_command = 300;
	conf->timeout_data = 600;
	conf->retry_min = 60;
	conf->retry_max = 60 * 60;
	conf->relay_timeout = 300;
	conf->relay_connections = 4;
	if ((conf->tls_protocols = strdup("secure")) == NULL ||
	    (conf->tls_ciphers = strdup(TLS_CIPHERS_DEFAULT)) == NULL ||
	    (conf->sasl_config = strdup("/etc/smsubmit")) == NULL ||
	    (conf->queue_dir = strdup(SMSUBMIT_QUEUE)) == NULL ||
	    (conf->user = strdup(SMSUBMIT_USER)) == NULL ||
	    (conf->queue_user = strdup(SMSUBMIT_QUEUE_USER)) == NULL) {
		conf_err("out of memory");
		return -1;
	}
	return relay_set("127.0.0.1", 25);
}

static int
parse_fp(FILE *fp, const char *file, struct smsubmit_conf *conf)
{
	memset(&in, 0, sizeof(in));
	in.conf = conf;
	in.name = file;
	in.lineno = 1;
	in.bol = 1;
	in.fp = fp;

	if (conf_defaults(conf) == -1) {
		fclose(fp);
		conf_free(conf);
		return -1;
	}

	(void)yyparse();
	if (ferror(in.fp)) {
		fprintf(stderr, "%s: %s\n", file, strerror(errno));
		in.errors++;
	}
	fclose(in.fp);
	in.fp = NULL;
	free(in.pushback);
	in.pushback = NULL;
	pool_free();
	symclear_file();

	/* a network holds by default as many sessions as five addresses */
	if (conf->max_sessions_per_net == 0)
		conf->max_sessions_per_net = MINIMUM(LIMIT_MAX,
		    5 * conf->max_sessions_per_addr);

	/* what the whole file must have said, checked once it is read */
	if (TAILQ_EMPTY(&conf->listeners)) {
		fprintf(stderr, "%s: no \"listen on\" statement: at least one "
		    "is required\n", file);
		in.errors++;
	}
	if (conf->tls_cert == NULL || conf->tls_key == NULL) {
		fprintf(stderr, "%s: tls certificate and key required "
		    "(\"tls certificate ... key ...\")\n", file);
		in.errors++;
	}

	/* a warning due no sooner than the bounce would never be sent */
	if (conf->delay_warning != 0 &&
	    conf->delay_warning >= conf->queue_lifetime) {
		fprintf(stderr, "%s: queue delay-warning %llds is not less "
		    "than queue lifetime %llds\n", file,
		    (long long)conf->delay_warning,
		    (long long)conf->queue_lifetime);
		in.errors++;
	}

	if (in.errors > 0) {
		conf_free(conf);
		return -1;
	}
	return 0;
}

int
parse_config(const char *file, struct smsubmit_conf *conf)
{
	FILE	*fp;

	if ((fp = fopen(file, "r")) == NULL) {
		fprintf(stderr, "%s: %s\n", file, strerror(errno));
		memset(conf, 0, sizeof(*conf));
		TAILQ_INIT(&conf->listeners);
		TAILQ_INIT(&conf->keypairs);
		return -1;
	}
	return parse_fp(fp, file, conf);
}

int
parse_config_mem(const char *file, const char *text, size_t len,
    struct smsubmit_conf *conf)
{
	FILE	*fp;

	/* an empty buffer is not a stream everywhere; a blank line is */
	if (len == 0) {
		text = "\n";
		len = 1;
	}
	if ((fp = fmemopen((void *)text, len, "r")) == NULL) {
		fprintf(stderr, "%s: %s\n", file, strerror(errno));
		memset(conf, 0, sizeof(*conf));
		TAILQ_INIT(&conf->listeners);
		TAILQ_INIT(&conf->keypairs);
		return -1;
	}
	return parse_fp(fp, file, conf);
}

/*
 * Certificates are repeatable: the first is the default, the others are
 * chosen by libtls when the client's SNI names a host they cover.
 */
static int
keypair_add(const char *cert, const char *key)
{
	struct keypair_conf	*kp;
	int			 n = 0;

	TAILQ_FOREACH(kp, &in.conf->keypairs, entry) {
		if (strcmp(kp->cert, cert) == 0) {
			conf_err("certificate \"%s\" given twice", cert);
			return -1;
		}
		n++;
	}
	if (n == CRYPTO_KEYS_MAX) {
		conf_err("more than %d certificates", CRYPTO_KEYS_MAX);
		return -1;
	}
	if ((kp = calloc(1, sizeof(*kp))) == NULL ||
	    (kp->cert = strdup(cert)) == NULL ||
	    (kp->key = strdup(key)) == NULL) {
		if (kp != NULL)
			free(kp->cert);
		free(kp);
		conf_err("out of memory");
		return -1;
	}
	kp->line = in.lineno;
	TAILQ_INSERT_TAIL(&in.conf->keypairs, kp, entry);
	if (n == 0) {
		in.conf->tls_cert = kp->cert;
		in.conf->tls_key = kp->key;
	}
	return 0;
}

/* Frees what parse_config() allocated; the struct itself is the caller's. */
void
conf_free(struct smsubmit_conf *conf)
{
	struct listen_conf	*lc;
	struct keypair_conf	*kp;

	while ((lc = TAILQ_FIRST(&conf->listeners)) != NULL) {
		TAILQ_REMOVE(&conf->listeners, lc, entry);
		free(lc);
	}
	while ((kp = TAILQ_FIRST(&conf->keypairs)) != NULL) {
		TAILQ_REMOVE(&conf->keypairs, kp, entry);
		free(kp->cert);
		free(kp->key);
		free(kp);
	}
	free(conf->tls_protocols);
	free(conf->tls_ciphers);
	free(conf->sasl_config);
	free(conf->queue_dir);
	free(conf->user);
	free(conf->queue_user);
	free(conf->senders_file);
	conf->senders_file = NULL;
	conf->tls_cert = conf->tls_key = NULL;
	conf->tls_protocols = conf->tls_ciphers = NULL;
	conf->sasl_config = conf->queue_dir = NULL;
	conf->user = conf->queue_user = NULL;
}
