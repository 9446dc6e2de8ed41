/*
 * t_config.c: smtpd/parse.y, the smsubmit.conf(5) grammar.
 *
 * Each case writes a configuration into a temporary directory and parses
 * it with stderr captured, then checks the resulting struct, or for a bad
 * file that parse_config() fails and names the file and the right line.
 */

#include <sys/types.h>
#include <sys/stat.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smsubmit.h"
#include "tap.h"

#define CERT	"tls certificate \"/etc/ssl/c.pem\" key \"/etc/ssl/k.key\"\n"
#define LISTEN	"listen on 127.0.0.1 port 10465 tls\n"

static char	tmpdir[] = "/tmp/t_config.XXXXXX";
static char	path[PATH_MAX];		/* of the last file parsed */
static char	errout[16384];		/* what it printed on stderr */

static void
write_file(const char *name, const char *text)
{
	FILE	*fp;

	(void)snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	if ((fp = fopen(path, "w")) == NULL) {
		perror(path);
		exit(1);
	}
	fputs(text, fp);
	if (fclose(fp) == EOF) {
		perror(path);
		exit(1);
	}
}

/* parse_config() on the file at path, with stderr kept in errout */
static int
parse_path(struct smsubmit_conf *conf)
{
	char	 errfile[PATH_MAX];
	ssize_t	 n;
	int	 fd, saved, rv;

	(void)snprintf(errfile, sizeof(errfile), "%s/stderr", tmpdir);
	if ((fd = open(errfile, O_RDWR | O_CREAT | O_TRUNC, 0600)) == -1 ||
	    (saved = dup(STDERR_FILENO)) == -1) {
		perror(errfile);
		exit(1);
	}
	fflush(stderr);
	dup2(fd, STDERR_FILENO);
	rv = parse_config(path, conf);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);

	n = pread(fd, errout, sizeof(errout) - 1, 0);
	errout[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(errfile);
	return rv;
}

static int
parse_text(const char *name, const char *text, struct smsubmit_conf *conf)
{
	write_file(name, text);
	return parse_path(conf);
}

/* Did the last parse print "path:line: message..."? */
static int
said(int line, const char *msg)
{
	char	want[PATH_MAX + 256];

	if (line > 0)
		(void)snprintf(want, sizeof(want), "%s:%d: %s", path, line,
		    msg);
	else
		(void)snprintf(want, sizeof(want), "%s: %s", path, msg);
	if (strstr(errout, want) != NULL)
		return 1;
	printf("# wanted \"%s\" in:\n# %s", want, errout);
	return 0;
}

/* A bad file: parse_config() fails and says msg about line. */
static int
fails(const char *name, const char *text, int line, const char *msg)
{
	struct smsubmit_conf	conf;
	int			rv;

	rv = parse_text(name, text, &conf);
	conf_free(&conf);
	return rv == -1 && said(line, msg);
}

static int
port_of(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return -1;
}

static int
count_listeners(struct smsubmit_conf *conf)
{
	struct listen_conf	*lc;
	int			 n = 0;

	TAILQ_FOREACH(lc, &conf->listeners, entry)
		n++;
	return n;
}

static struct listen_conf *
nth_listener(struct smsubmit_conf *conf, int n)
{
	struct listen_conf	*lc;

	TAILQ_FOREACH(lc, &conf->listeners, entry)
		if (n-- == 0)
			return lc;
	return NULL;
}

static int
streq(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static void
t_minimal_defaults(void)
{
	struct smsubmit_conf	 conf;
	struct listen_conf	*lc;
	char			 host[HOST_NAME_MAX + 1];
	int			 rv;

	rv = parse_text("minimal.conf", LISTEN CERT, &conf);
	ok(rv == 0 && errout[0] == '\0', "minimal config parses silently");
	ok(count_listeners(&conf) == 1, "minimal: one listener");
	lc = TAILQ_FIRST(&conf.listeners);
	ok(lc != NULL && streq(lc->name, "127.0.0.1 port 10465") &&
	    lc->flags == LISTEN_TLS && lc->fd == -1 &&
	    lc->ss.ss_family == AF_INET &&
	    lc->sslen == sizeof(struct sockaddr_in) &&
	    port_of(&lc->ss) == 10465, "minimal: listener 127.0.0.1:10465 tls");
	ok(streq(conf.tls_cert, "/etc/ssl/c.pem") &&
	    streq(conf.tls_key, "/etc/ssl/k.key"), "minimal: cert and key");

	memset(host, 0, sizeof(host));
	(void)gethostname(host, sizeof(host) - 1);
	ok(streq(conf.hostname, host), "default hostname is gethostname()");
	ok(streq(conf.tls_protocols, "secure") &&
	    streq(conf.tls_ciphers, TLS_CIPHERS_DEFAULT) &&
	    strstr(conf.tls_ciphers, "CBC") == NULL &&
	    strstr(conf.tls_ciphers, "SHA:") == NULL,
	    "default tls: protocols secure, ciphers AEAD only");
	ok(streq(conf.auth_mechs, "PLAIN LOGIN") &&
	    streq(conf.sasl_config, "/etc/smsubmit") &&
	    conf.auth_max_failures == 3, "default auth settings");
	ok(streq(conf.relay_name, "127.0.0.1 port 25") &&
	    conf.relay_ss.ss_family == AF_INET &&
	    conf.relay_sslen == sizeof(struct sockaddr_in) &&
	    port_of(&conf.relay_ss) == 25, "default relay 127.0.0.1 port 25");
	ok(conf.relay_connections == 4, "default relay connections 4");
	ok(streq(conf.queue_dir, "/var/spool/smsubmit") &&
	    conf.queue_lifetime == 5 * 86400, "default queue and lifetime");
	ok(conf.max_message_size == 35 * 1024 * 1024 &&
	    conf.max_recipients == 100 && conf.max_sessions == 1000 &&
	    conf.max_sessions_per_addr == 20, "default limits");
	ok(conf.timeout_command == 300 && conf.timeout_data == 600,
	    "default timeouts");
	ok(conf.timeout_handshake == 30, "default timeout handshake 30s");
	ok(conf.max_sessions_per_net == 100,
	    "default sessions-per-network: five addresses' worth");
	ok(streq(conf.user, "_smsubmit") && streq(conf.queue_user,
	    "_smsubmitq"), "default users");
	conf_free(&conf);
	ok(TAILQ_EMPTY(&conf.listeners) && conf.tls_cert == NULL &&
	    conf.user == NULL, "conf_free empties the struct");
}

static const char spec_example[] =
    "hostname \"mail.example.org\"              # default: the system's name\n"
    "listen on 0.0.0.0 port 465 tls           # implicit TLS (RFC 8314)\n"
    "listen on :: port 465 tls\n"
    "listen on 0.0.0.0 port 587 starttls      # STARTTLS first\n"
    "tls certificate \"/etc/ssl/mail.pem\" key \"/etc/ssl/private/mail.key\"\n"
    "tls protocols \"tlsv1.2,tlsv1.3\"          # libtls syntax\n"
    "tls ciphers \"secure\"                     # libtls syntax\n"
    "auth mechanisms PLAIN LOGIN              # default PLAIN LOGIN\n"
    "auth sasl-config \"/etc/smsubmit\"\n"
    "auth max-failures 3\n"
    "relay to 127.0.0.1 port 25               # the local MTA\n"
    "queue \"/var/spool/smsubmit\"\n"
    "queue lifetime 5d                        # then bounce\n"
    "limit message-size 35M\n"
    "limit recipients 100\n"
    "limit sessions 1000\n"
    "limit sessions-per-address 20\n"
    "timeout command 5m\n"
    "timeout data 10m\n"
    "user \"_smsubmit\"\n"
    "queue user \"_smsubmitq\"\n";

static void
t_spec_example(void)
{
	struct smsubmit_conf	 conf;
	struct listen_conf	*a, *b, *c;
	int			 rv;

	rv = parse_text("spec.conf", spec_example, &conf);
	ok(rv == 0 && errout[0] == '\0', "SPEC section 4 example parses");
	a = nth_listener(&conf, 0);
	b = nth_listener(&conf, 1);
	c = nth_listener(&conf, 2);
	ok(count_listeners(&conf) == 3 && a != NULL && b != NULL &&
	    c != NULL && streq(a->name, "0.0.0.0 port 465") &&
	    a->flags == LISTEN_TLS && streq(b->name, ":: port 465") &&
	    b->flags == LISTEN_TLS && b->ss.ss_family == AF_INET6 &&
	    streq(c->name, "0.0.0.0 port 587") &&
	    c->flags == LISTEN_STARTTLS, "SPEC example: three listeners");
	ok(streq(conf.hostname, "mail.example.org") &&
	    streq(conf.tls_cert, "/etc/ssl/mail.pem") &&
	    streq(conf.tls_key, "/etc/ssl/private/mail.key") &&
	    streq(conf.tls_protocols, "tlsv1.2,tlsv1.3") &&
	    conf.timeout_command == 300 && conf.timeout_data == 600,
	    "SPEC example: hostname, tls, timeouts");
	conf_free(&conf);
}

static void
t_every_statement(void)
{
	struct smsubmit_conf	conf;
	int			rv;

	rv = parse_text("every.conf",
	    "hostname mx1.example.net\n"
	    "listen on 127.0.0.1 port 2465 tls\n"
	    "tls certificate \"/a/c.pem\" key \"/a/k.pem\"\n"
	    "tls protocols tlsv1.3\n"
	    "tls ciphers \"compat\"\n"
	    "auth mechanisms plain SCRAM-SHA-256 LOGIN\n"
	    "auth sasl-config \"/etc/sasl-x\"\n"
	    "auth max-failures 7\n"
	    "relay to ::1 port 2525\n"
	    "relay connections 64\n"
	    "queue \"/var/q\"\n"
	    "queue lifetime 36h\n"
	    "limit message-size 10M\n"
	    "limit recipients 42\n"
	    "limit sessions 77\n"
	    "limit sessions-per-address 5\n"
	    "limit sessions-per-network 12\n"
	    "timeout handshake 7s\n"
	    "timeout command 90s\n"
	    "timeout data 2m\n"
	    "user nobody1\n"
	    "queue user \"nobody2\"\n", &conf);
	ok(rv == 0 && errout[0] == '\0', "every statement with new values");
	ok(streq(conf.hostname, "mx1.example.net") &&
	    streq(conf.tls_protocols, "tlsv1.3") &&
	    streq(conf.tls_ciphers, "compat"), "hostname, protocols, ciphers");
	ok(streq(conf.auth_mechs, "PLAIN SCRAM-SHA-256 LOGIN") &&
	    streq(conf.sasl_config, "/etc/sasl-x") &&
	    conf.auth_max_failures == 7,
	    "auth statements (mechanisms upper-cased)");
	ok(streq(conf.relay_name, "::1 port 2525") &&
	    conf.relay_ss.ss_family == AF_INET6 &&
	    conf.relay_sslen == sizeof(struct sockaddr_in6) &&
	    port_of(&conf.relay_ss) == 2525, "relay to ::1 port 2525");
	ok(conf.relay_connections == 64, "relay connections 64");
	ok(streq(conf.queue_dir, "/var/q") && conf.queue_lifetime == 36 * 3600,
	    "queue and queue lifetime");
	ok(conf.max_message_size == 10 * 1024 * 1024 &&
	    conf.max_recipients == 42 && conf.max_sessions == 77 &&
	    conf.max_sessions_per_addr == 5 && conf.max_sessions_per_net == 12,
	    "limits");
	ok(conf.timeout_command == 90 && conf.timeout_data == 120 &&
	    conf.timeout_handshake == 7 &&
	    streq(conf.user, "nobody1") && streq(conf.queue_user, "nobody2"),
	    "timeouts and users");
	conf_free(&conf);
}

static void
t_macros(void)
{
	struct smsubmit_conf	 conf;
	struct listen_conf	*lc;
	int			 rv;

	rv = parse_text("macros.conf",
	    "addr = \"127.0.0.1\"\n"
	    "sport=10587\n"
	    "mode = starttls\n"
	    "mechs = \"LOGIN PLAIN\"\n"
	    "cert = \"/etc/ssl/m.pem\"\n"
	    "listen on $addr port $sport $mode\n"
	    "tls certificate $cert key \"/etc/ssl/m.key\"\n"
	    "auth mechanisms $mechs\n"
	    "relay to $addr port 2525\n", &conf);
	lc = TAILQ_FIRST(&conf.listeners);
	ok(rv == 0 && lc != NULL && streq(lc->name, "127.0.0.1 port 10587") &&
	    lc->flags == LISTEN_STARTTLS, "macros in listen on");
	ok(rv == 0 && streq(conf.auth_mechs, "LOGIN PLAIN") &&
	    streq(conf.tls_cert, "/etc/ssl/m.pem") &&
	    streq(conf.relay_name, "127.0.0.1 port 2525"),
	    "a macro may hold several tokens");
	conf_free(&conf);

	/* a file's macros are forgotten when the next file is parsed */
	ok(fails("macros2.conf", "\n" CERT "listen on $addr port 1 tls\n", 3,
	    "undefined macro \"addr\""), "file macros do not outlive a parse");
}

static void
t_cmdline_symset(void)
{
	struct smsubmit_conf	 conf;
	struct listen_conf	*lc;
	int			 rv;

	ok(cmdline_symset("dport=2525") == 0, "cmdline_symset name=value");
	ok(cmdline_symset("noequals") == -1 &&
	    cmdline_symset("1x=2") == -1 && cmdline_symset("=2") == -1 &&
	    cmdline_symset("a-b=2") == -1 && cmdline_symset("tls=2") == -1,
	    "cmdline_symset refuses bad definitions");
	rv = parse_text("override.conf",
	    "dport = 10587\n"
	    "listen on 127.0.0.1 port $dport starttls\n" CERT, &conf);
	lc = TAILQ_FIRST(&conf.listeners);
	ok(rv == 0 && lc != NULL && port_of(&lc->ss) == 2525 &&
	    streq(lc->name, "127.0.0.1 port 2525"),
	    "-D macro wins over the file's");
	conf_free(&conf);

	rv = parse_text("override2.conf",
	    "listen on 127.0.0.1 port $dport starttls\n" CERT, &conf);
	ok(rv == 0 && port_of(&TAILQ_FIRST(&conf.listeners)->ss) == 2525,
	    "-D macro outlives a parse");
	conf_free(&conf);
}

static void
t_addresses(void)
{
	struct smsubmit_conf	 conf;
	struct listen_conf	*a, *b;
	int			 rv;

	rv = parse_text("ipv6.conf", "listen on ::1 port 10465 tls\n" CERT,
	    &conf);
	a = TAILQ_FIRST(&conf.listeners);
	ok(rv == 0 && a != NULL && a->ss.ss_family == AF_INET6 &&
	    a->sslen == sizeof(struct sockaddr_in6) &&
	    streq(a->name, "::1 port 10465") && port_of(&a->ss) == 10465,
	    "listen on ::1");
	conf_free(&conf);

	rv = parse_text("star.conf", "listen on * port 587 starttls\n" CERT,
	    &conf);
	a = nth_listener(&conf, 0);
	b = nth_listener(&conf, 1);
	ok(rv == 0 && count_listeners(&conf) == 2 && a != NULL && b != NULL &&
	    streq(a->name, "0.0.0.0 port 587") && a->ss.ss_family == AF_INET &&
	    streq(b->name, ":: port 587") && b->ss.ss_family == AF_INET6 &&
	    a->flags == LISTEN_STARTTLS && b->flags == LISTEN_STARTTLS,
	    "listen on * is 0.0.0.0 and ::");
	conf_free(&conf);

	rv = parse_text("ports.conf",
	    "listen on 127.0.0.1 tls\nlisten on 127.0.0.1 starttls\n" CERT,
	    &conf);
	a = nth_listener(&conf, 0);
	b = nth_listener(&conf, 1);
	ok(rv == 0 && a != NULL && b != NULL && port_of(&a->ss) == 465 &&
	    port_of(&b->ss) == 587, "port defaults to 465 tls, 587 starttls");
	conf_free(&conf);

	rv = parse_text("localhost.conf",
	    "listen on localhost port 10465 tls\n"
	    "relay to localhost\n" CERT, &conf);
	a = TAILQ_FIRST(&conf.listeners);
	ok(rv == 0 && a != NULL && a->flags == LISTEN_TLS &&
	    port_of(&a->ss) == 10465 && port_of(&conf.relay_ss) == 25 &&
	    strstr(conf.relay_name, " port 25") != NULL,
	    "host names are resolved");
	conf_free(&conf);
}

static void
t_sizes(void)
{
	static const struct {
		const char	*text;
		size_t		 size;
	} t[] = {
		{ "2048",	2048 },
		{ "1K",		1024 },
		{ "64k",	64 * 1024 },
		{ "35M",	35 * 1024 * 1024 },
		{ "2G",		2ULL * 1024 * 1024 * 1024 },
	};
	struct smsubmit_conf	conf;
	char			text[512];
	size_t			i;
	int			rv;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		(void)snprintf(text, sizeof(text), LISTEN CERT
		    "limit message-size %s\n", t[i].text);
		rv = parse_text("size.conf", text, &conf);
		ok(rv == 0 && conf.max_message_size == t[i].size,
		    "size %s is %zu", t[i].text, t[i].size);
		conf_free(&conf);
	}
}

static void
t_durations(void)
{
	static const struct {
		const char	*text;
		time_t		 secs;
	} t[] = {
		{ "45",		45 },
		{ "30s",	30 },
		{ "5m",		300 },
		{ "2h",		7200 },
		{ "3d",		3 * 86400 },
	};
	struct smsubmit_conf	conf;
	char			text[512];
	size_t			i;
	int			rv;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		(void)snprintf(text, sizeof(text), LISTEN CERT
		    "timeout data %s\nqueue lifetime %s\n", t[i].text,
		    t[i].text);
		rv = parse_text("duration.conf", text, &conf);
		ok(rv == 0 && conf.timeout_data == t[i].secs &&
		    conf.queue_lifetime == t[i].secs, "duration %s is %lld s",
		    t[i].text, (long long)t[i].secs);
		conf_free(&conf);
	}
}

static void
t_lexical(void)
{
	struct smsubmit_conf	conf;
	int			rv;

	/* comments, continuation, escapes, CRLF, no final newline */
	rv = parse_text("lexical.conf",
	    "# a comment\n"
	    "\n"
	    "   \t# an indented comment\n"
	    "listen on 127.0.0.1 \\\n"
	    "    port 10465 tls\r\n"
	    "tls certificate \"/etc/a \\\"b\\\\.pem\" key \"/k\"   # trailing\n"
	    "user \"us\\\n"
	    "er\"\n"
	    "limit recipients 9", &conf);
	ok(rv == 0 && streq(conf.tls_cert, "/etc/a \"b\\.pem") &&
	    streq(conf.user, "user") && conf.max_recipients == 9 &&
	    count_listeners(&conf) == 1,
	    "comments, continuations, escapes, no final newline");
	conf_free(&conf);

	ok(fails("lines.conf", "# one\n\\\n\nlisten on 127.0.0.1 port 1 tls\n"
	    CERT "bogus\n", 6, "unknown keyword \"bogus\""),
	    "line numbers count continuations and comments");
}

static void
t_example_file(void)
{
	struct smsubmit_conf	conf;
	int			rv;

	(void)strlcpy(path, "etc/smsubmit.conf", sizeof(path));
	rv = parse_path(&conf);
	ok(rv == 0 && errout[0] == '\0' && count_listeners(&conf) == 4 &&
	    streq(conf.tls_cert, "/etc/ssl/smsubmit.pem") &&
	    streq(conf.tls_key, "/etc/ssl/private/smsubmit.key") &&
	    streq(conf.relay_name, "127.0.0.1 port 25"),
	    "etc/smsubmit.conf parses");
	conf_free(&conf);
}

static void
t_user_limits(void)
{
	struct smsubmit_conf	conf;
	int			rv;

	rv = parse_text("ulimits.conf", LISTEN CERT
	    "limit user messages 200 per 1h\n"
	    "limit user recipients 1000 per 1d\n", &conf);
	ok(rv == 0 && errout[0] == '\0' && conf.user_messages == 200 &&
	    conf.user_messages_window == 3600 &&
	    conf.user_recipients == 1000 &&
	    conf.user_recipients_window == 86400,
	    "limit user messages/recipients N per D");
	conf_free(&conf);
	rv = parse_text("noulimits.conf", LISTEN CERT, &conf);
	ok(rv == 0 && conf.user_messages == 0 && conf.user_recipients == 0,
	    "no per-user limit by default");
	conf_free(&conf);
	ok(fails("ulimit0.conf", LISTEN CERT "limit user messages 0 per 1h\n",
	    3, "user messages"), "limit user messages 0 refused");
	ok(fails("ulimitd.conf", LISTEN CERT
	    "limit user recipients 5 per 0s\n", 3,
	    "duration \"0s\" must be more than zero"),
	    "limit user recipients per 0s refused");
	ok(fails("ulimitp.conf", LISTEN CERT "limit user messages 5 1h\n", 3,
	    "syntax error"), "limit user messages without per refused");
}

static void
t_errors(void)
{
	struct smsubmit_conf	conf;
	int			rv;

	ok(fails("unknown.conf", LISTEN CERT "frobnicate yes\n", 3,
	    "unknown keyword \"frobnicate\""), "unknown keyword");
	ok(fails("notls.conf", CERT "\nlisten on 127.0.0.1 port 587\n", 3,
	    "listen on needs tls or starttls"), "listen without tls");
	ok(fails("both.conf", CERT "listen on 127.0.0.1 port 5 tls starttls\n",
	    2, "listen on takes only one of tls or starttls"),
	    "listen with tls and starttls");
	ok(fails("port.conf", CERT LISTEN "listen on ::1 port 70000 tls\n", 3,
	    "port out of range"), "port 70000");
	ok(fails("port0.conf", CERT "listen on ::1 port 0 tls\n", 2,
	    "port out of range"), "port 0");
	ok(fails("portname.conf", CERT "listen on ::1 port nosuch tls\n", 2,
	    "unknown port \"nosuch\""), "unknown port name");
	ok(fails("size.conf", LISTEN CERT "limit message-size 35X\n", 3,
	    "invalid size \"35X\""), "bad size suffix");
	ok(fails("small.conf", LISTEN CERT "limit message-size 1000\n", 3,
	    "size \"1000\" too small"), "size under 1K");
	ok(fails("huge.conf", LISTEN CERT
	    "limit message-size 99999999999999999999G\n", 3,
	    "size \"99999999999999999999G\" too large"), "size too large");
	ok(fails("dur.conf", LISTEN CERT "timeout command 5w\n", 3,
	    "invalid duration \"5w\""), "bad duration suffix");
	ok(fails("dur0.conf", LISTEN CERT "timeout data 0m\n", 3,
	    "duration \"0m\" must be more than zero"), "zero duration");
	ok(fails("failures.conf", LISTEN CERT "auth max-failures 101\n", 3,
	    "max-failures out of range"), "max-failures 101");
	ok(fails("delay.conf", LISTEN CERT "auth delay 1s to 2h\n", 3,
	    "auth delay: 7200 is more than 3600s"), "auth delay over 1h");
	ok(fails("limit.conf", LISTEN CERT "limit recipients 0\n", 3,
	    "recipients out of range"), "limit recipients 0");
	ok(fails("conns.conf", LISTEN CERT "relay connections 0\n", 3,
	    "relay connections out of range"), "relay connections 0");
	ok(fails("conns65.conf", LISTEN CERT "relay connections 65\n", 3,
	    "relay connections out of range"), "relay connections 65");
	ok(fails("macro.conf", LISTEN "\ntls certificate $nope key \"/k\"\n",
	    3, "undefined macro \"nope\""), "undefined macro");
	ok(fails("loop.conf", LISTEN CERT "a = \"$a\"\nhostname $a\n", 4,
	    "macro \"a\" used inside a macro value"), "recursive macro");
	ok(fails("keymacro.conf", LISTEN CERT "tls = \"x\"\n", 3,
	    "keyword \"tls\" cannot be a macro name"), "keyword as macro");
	ok(fails("nocert.conf", LISTEN, 0, "tls certificate and key required"),
	    "missing certificate");
	ok(fails("nolisten.conf", CERT, 0, "no \"listen on\""),
	    "no listen on");
	ok(fails("relq.conf", LISTEN CERT "queue \"spool/smsubmit\"\n", 3,
	    "queue \"spool/smsubmit\" must be an absolute path"),
	    "relative queue path");
	ok(fails("unterm.conf", LISTEN "hostname \"mail.example.org\n" CERT, 2,
	    "unterminated quoted string"), "unterminated string");
	ok(fails("unterm2.conf", LISTEN CERT "user \"abc", 3,
	    "unterminated quoted string"), "unterminated string at EOF");
	ok(fails("dup.conf", LISTEN CERT "listen on * port 10465 starttls\n"
	    LISTEN, 4, "duplicate listener 127.0.0.1 port 10465"),
	    "duplicate listener");
	ok(fails("proto.conf", LISTEN CERT "tls protocols \"tlsv9\"\n", 3,
	    "invalid tls protocols \"tlsv9\""), "bad tls protocols");
	ok(fails("ciphers.conf", LISTEN CERT "tls ciphers \"NO-SUCH-CIPHER\"\n",
	    3, "invalid tls ciphers"), "bad tls ciphers");
	ok(fails("mech.conf", LISTEN CERT "auth mechanisms PLAIN PL@IN\n", 3,
	    "invalid mechanism \"PL@IN\""), "bad mechanism name");
	ok(fails("mech2.conf", LISTEN CERT "auth mechanisms PLAIN plain\n", 3,
	    "mechanism PLAIN given twice"), "mechanism twice");
	ok(fails("host.conf", LISTEN CERT "hostname \"a b\"\n", 3,
	    "invalid hostname \"a b\""), "bad hostname");
	ok(fails("syntax.conf", CERT LISTEN "listen on\n", 3,
	    "syntax error at end of line"), "syntax error names its line");
	ok(fails("syntax2.conf", CERT LISTEN "limit frobs 3\n", 3,
	    "syntax error near \"frobs\""), "syntax error names its token");
	ok(fails("char.conf", CERT LISTEN "user {x}\n", 3,
	    "unexpected character '{'"), "unexpected character");

	/* errors do not stop the parse: each one is reported */
	rv = parse_text("several.conf",
	    "listen on 127.0.0.1 port 99999 tls\n"
	    CERT
	    "limit sessions lots\n"
	    "bogus\n"
	    "queue lifetime 1y\n"
	    LISTEN, &conf);
	ok(rv == -1 && said(1, "port out of range") &&
	    said(3, "invalid sessions \"lots\"") &&
	    said(4, "unknown keyword \"bogus\"") &&
	    said(5, "invalid duration \"1y\""),
	    "several errors, each reported");
	ok(TAILQ_EMPTY(&conf.listeners) && conf.tls_cert == NULL,
	    "a failed parse leaves nothing allocated");

	(void)snprintf(path, sizeof(path), "%s/does-not-exist.conf", tmpdir);
	rv = parse_path(&conf);
	ok(rv == -1 && said(0, "No such file"), "missing file");
}

static void
cleanup(void)
{
	DIR		*dir;
	struct dirent	*de;
	char		 name[PATH_MAX];

	if ((dir = opendir(tmpdir)) == NULL)
		return;
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		(void)snprintf(name, sizeof(name), "%s/%s", tmpdir,
		    de->d_name);
		(void)unlink(name);
	}
	closedir(dir);
	(void)rmdir(tmpdir);
}

int
main(void)
{
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	t_minimal_defaults();
	t_spec_example();
	t_every_statement();
	t_macros();
	t_cmdline_symset();
	t_addresses();
	t_sizes();
	t_durations();
	t_lexical();
	t_example_file();
	t_user_limits();
	t_errors();

	cleanup();
	return tap_done();
}
