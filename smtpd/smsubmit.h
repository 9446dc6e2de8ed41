/*
 * smsubmit.h: the structures the processes share and each file's entry
 * points, grouped by file.
 */
#ifndef SMSUBMIT_H
#define SMSUBMIT_H

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/tree.h>
#include <sys/socket.h>
#include <net/if.h>
#include <netinet/in.h>

#include <limits.h>
#include <netdb.h>
#include <stdint.h>
#include <time.h>

#include "addr.h"
#include "body.h"
#include "buf.h"
#include "ipc.h"

struct event;
struct event_base;
struct auth_worker;

#ifndef MINIMUM
#define MINIMUM(a, b)	((a) < (b) ? (a) : (b))
#endif

#define SMSUBMIT_VERSION	"1.0"
#define SMSUBMIT_CONF		"/etc/smsubmit.conf"
#define SMSUBMIT_USER		"_smsubmit"
#define SMSUBMIT_QUEUE_USER	"_smsubmitq"
#define SMSUBMIT_QUEUE		"/var/spool/smsubmit"
#define SMSUBMIT_EMPTY		"/var/empty"	/* chroot of [smtp], [crypto] */
#define SMSUBMIT_SASL_APP	"smsubmit"

#define SMTP_LINE_MAX		512	/* command line, with CRLF */
#define SMTP_MAX_UNKNOWN	10	/* unknown commands before 421 */
#define CLOSE_GRACE		10	/* seconds to write a last reply */
/* a numeric address as getnameinfo() writes it: IPv6, "%", a scope */
#define HOSTADDR_MAX		(INET6_ADDRSTRLEN + 1 + IF_NAMESIZE)
#define HELO_MAX		256	/* a HELO name, sanitised, with NUL */
#define USER_MAX		256	/* a user name, sanitised, with NUL */
#define SANITISED_MAX		256	/* the longer of the two */
#define QUEUE_ID_LEN		16	/* hex digits */
#define AUTH_MECHS_MAX		256
#define AUTH_LINE_MAX		12288	/* a base64 AUTH line from a client */
#define SENDERS_MAX		4096	/* a user's allowed senders, as text */
#define AUTH_DELAY_LIMIT	3600	/* "auth delay" at most, seconds */

/* --- parse.y: the configuration --- */

/*
 * The default "tls ciphers": for TLS 1.2, forward-secret AEAD suites only,
 * as Mozilla's "intermediate" profile (no CBC, no RSA key exchange); TLS
 * 1.3 suites are all AEAD and not chosen by this list.
 */
#define TLS_CIPHERS_DEFAULT	"ECDHE-ECDSA-AES128-GCM-SHA256:" \
				"ECDHE-RSA-AES128-GCM-SHA256:" \
				"ECDHE-ECDSA-AES256-GCM-SHA384:" \
				"ECDHE-RSA-AES256-GCM-SHA384:" \
				"ECDHE-ECDSA-CHACHA20-POLY1305:" \
				"ECDHE-RSA-CHACHA20-POLY1305"

#define LISTEN_TLS		0x01	/* implicit TLS (RFC 8314) */
#define LISTEN_STARTTLS		0x02	/* STARTTLS required (RFC 3207) */

/* A network a PROXY header may come from ("listen on ... proxy from"). */
#define PROXY_FROM_MAX		16
struct proxy_net {
	int			 family;	/* AF_INET or AF_INET6 */
	uint8_t			 addr[16];
	int			 bits;		/* prefix length */
};

struct listen_conf {
	TAILQ_ENTRY(listen_conf) entry;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	int			 flags;		/* LISTEN_TLS or LISTEN_STARTTLS */
	/* behind a load balancer: every connection starts with a PROXY
	   header, and only from these */
	struct proxy_net	 proxy[PROXY_FROM_MAX];
	int			 nproxy;
	int			 fd;		/* bound by the parent */
	char			 name[NI_MAXHOST + 16];	/* "addr port N" */
	struct event		*ev;		/* the listener's, on fd */
	int			 refs;		/* listener: its sessions */
};
TAILQ_HEAD(listen_list, listen_conf);

struct keypair_conf {
	TAILQ_ENTRY(keypair_conf) entry;
	char			*cert;		/* file names */
	char			*key;
	int			 line;		/* in the file */
};
TAILQ_HEAD(keypair_list, keypair_conf);

/* Where a statement set a value, for check.c's messages; 0: a default. */
struct conf_lines {
	int			 user;
	int			 queue_user;
	int			 queue_dir;
	int			 sasl_config;
};

struct smsubmit_conf {
	char			 hostname[HOST_NAME_MAX + 1];
	struct listen_list	 listeners;
	struct keypair_list	 keypairs;	/* the first is the default */
	char			*tls_cert;	/* the first's file names */
	char			*tls_key;
	char			*tls_protocols;	/* libtls syntax */
	char			*tls_ciphers;
	char			 auth_mechs[AUTH_MECHS_MAX]; /* "PLAIN LOGIN" */
	int			 auth_workers;	/* [auth] processes */
	time_t			 auth_timeout;	/* for an [auth] answer */
	char			*sasl_config;	/* dir of smsubmit.conf */
	int			 auth_max_failures;
	time_t			 auth_delay_min;	/* before a failure */
	time_t			 auth_delay_max;
	int			 ban_failures;		/* from one address */
	time_t			 ban_window;
	time_t			 ban_time;
	char			*senders_file;		/* or NULL */
	int			 senders_check_from;
	struct sockaddr_storage	 relay_ss;
	socklen_t		 relay_sslen;
	char			 relay_name[NI_MAXHOST + 16];
	char			*queue_dir;
	time_t			 queue_lifetime;	/* seconds */
	time_t			 delay_warning;		/* 0: none sent */
	time_t			 retry_min;		/* backoff bounds */
	time_t			 retry_max;
	time_t			 relay_timeout;	/* for each reply */
	int			 relay_connections;	/* at most open */
	size_t			 max_message_size;	/* octets */
	int			 max_recipients;
	int			 max_sessions;
	int			 max_sessions_per_addr;
	int			 max_sessions_per_net;	/* a /24 or /64 */
	int			 user_messages;		/* per user; 0: none */
	time_t			 user_messages_window;
	int			 user_recipients;
	time_t			 user_recipients_window;
	time_t			 timeout_handshake;	/* seconds */
	time_t			 timeout_command;
	time_t			 timeout_data;		/* idle, in DATA */
	char			*user;
	char			*queue_user;
	struct conf_lines	 line;
	int			 refs;	/* listener: sessions, and env */
};

/* Defaults are filled in first; a file can override each. */
int	 parse_config(const char *, struct smsubmit_conf *);
/* The same from the file's text, read earlier (by the parent). */
int	 parse_config_mem(const char *file, const char *text, size_t len,
	    struct smsubmit_conf *);
int	 cmdline_symset(const char *);
void	 conf_free(struct smsubmit_conf *);

/*
 * --- IPC messages, in one place.  Each says who sends it to whom and its
 * payload in ipc_send()/ipc_unpack() format; peerid is the session id
 * unless said otherwise.
 */
enum msg_type {
	IMSG_NONE,
	/* parent -> every child, at start-up, in this order (proc.c) */
	IMSG_CONF,		/* "sb" configuration file name, its text */
	IMSG_PEER,		/* "uu" enum proc_type, instance; fd: channel */
	IMSG_LISTEN,		/* "u" index of a "listen on"; fd: its socket */
	IMSG_START,		/* "" all sent: set up and serve */
	/* any child -> parent */
	IMSG_READY,		/* "" set up and serving */
	/* parent -> crypto */
	IMSG_CRYPTO_KEY,	/* "bb" certificate chain, private key, PEM;
				   wiped once used */
	IMSG_CRYPTO_KEYS_END,	/* "u" that many keys sent replace those
				   held (a count that differs: refuse) */
	/* crypto -> parent */
	IMSG_CRYPTO_LOADED,	/* "u" keys now held */
	/* listener -> crypto, answered at once (signer.c, crypto.c) */
	IMSG_CRYPTO_RSA_SIGN,	/* "bbu" key id, input, padding */
	IMSG_CRYPTO_EC_SIGN,	/* "bb" key id, digest */
	/* crypto -> listener */
	IMSG_CRYPTO_SIG,	/* "b" the signature; empty if refused */
	/* parent -> listener */
	IMSG_TLS_CERT,		/* "b" certificate chain, PEM; repeated, the
				   first is the default */
	IMSG_TLS_READY,		/* "" certificates sent: (re)configure TLS */
	/* auth -> listener */
	IMSG_AUTH_MECHS,	/* "s" mechanisms usable, space separated */
	/* listener -> auth */
	IMSG_AUTH_START,	/* "ssuss" mech, initial response (base64),
				   has initial response, client, local addr */
	IMSG_AUTH_STEP,		/* "s" client response, base64 */
	IMSG_AUTH_END,		/* "" forget this session's exchange */
	/* auth -> listener */
	IMSG_AUTH_CONTINUE,	/* "s" server challenge, base64 */
	IMSG_AUTH_OK,		/* "ss" canonical user name, the senders it
				   may use ("*": any) */
	IMSG_AUTH_FAIL,		/* "u" enum auth_result */
	IMSG_AUTH_BAN,		/* "su" client address, seconds; peerid 0 */
	IMSG_AUTH_HOLD,		/* "u" a failure is held back that many
				   seconds: wait that much longer */
	IMSG_AUTH_ENDED,	/* "" answers AUTH_END: nothing more will come
				   for the exchange it ended */
	/* auth -> parent -> every other auth worker, peerid 0 */
	IMSG_AUTH_FAILURE,	/* "ss" client address, user: a failure to
				   count, so that bans and delays are global */
	/* listener -> queue */
	IMSG_MSG_CREATE,	/* "" a new message file for this session */
	IMSG_MSG_ENVELOPE,	/* "sssssu" msgid, sender, user, helo, client,
				   flags (ENV_*) */
	IMSG_MSG_RCPT,		/* "ss" msgid, recipient */
	IMSG_MSG_COMMIT,	/* "s" msgid: the file is complete */
	IMSG_MSG_ABORT,		/* "s" msgid: drop it */
	/* queue -> listener */
	IMSG_MSG_FILE,		/* "us" enum queue_result, msgid; fd if ok */
	IMSG_MSG_RESULT,	/* "us" enum queue_result, msgid */
	/* listener -> queue, only for a limit that is set (userlimit.c) */
	IMSG_LIMIT_MAIL,	/* "s" user: may it send one more message?
				   counted if so */
	IMSG_LIMIT_RCPT,	/* "s" user: one more recipient? */
	/* queue -> listener */
	IMSG_LIMIT_RESULT,	/* "u" 0: go on, 1: over the limit */
	/* queue -> listener, peerid: a control request, not a session */
	IMSG_STATS_REQUEST,	/* "" the listener's counters, please */
	/* listener -> queue, peerid: that of the request */
	IMSG_STATS,		/* "b" struct smtp_stats */
	/* any child -> parent, from its SIGSYS handler */
	IMSG_SANDBOX_VIOLATION,	/* "u" the forbidden system call's number */
	/* parent -> every child but crypto, on SIGHUP (proc_reconf) */
	IMSG_RECONF,		/* "bsss" struct smsubmit_conf without its
				   pointers, tls protocols, tls ciphers,
				   senders file ("": none) */
	/* parent -> listener, on SIGHUP, after IMSG_RECONF */
	IMSG_LISTEN_ADD,	/* "usb" LISTEN_* flags, name, its "proxy from"
				   (struct proxy_net[]); fd: its socket */
	IMSG_LISTEN_CLOSE,	/* "s" name: accept no more on it */
	IMSG_MAX
};

enum auth_result {
	AUTH_R_BADCREDS = 1,	/* 535 5.7.8 */
	AUTH_R_BADMECH,		/* 504 5.5.4 */
	AUTH_R_BADB64,		/* 501 5.5.2 */
	AUTH_R_TEMP		/* 454 4.7.0 */
};

enum queue_result {
	QUEUE_OK = 0,
	QUEUE_R_TEMP,		/* 451 4.3.0 */
	QUEUE_R_NOSPACE		/* 452 4.3.1 */
};

#define ENV_8BITMIME		0x01
#define ENV_SMTPUTF8		0x02

/* --- proc.c: starting a child, and what every child does first --- */

enum proc_type {
	PROC_PARENT,
	PROC_SMTP,		/* [smtp], the listener */
	PROC_AUTH,		/* [auth], Cyrus SASL */
	PROC_QUEUE,		/* [queue] */
	PROC_CRYPTO,		/* [crypto], the only holder of private keys */
	PROC_MAX
};

#define PROC_FD			3	/* a child's channel to the parent */
#define AUTH_WORKERS_MAX	16

/* What a child is handed by the parent before it starts; -1: none. */
struct proc_peers {
	struct ipc		*parent;	/* open, not in an event loop */
	int			 instance;
	int			 listener;	/* auth, queue, crypto */
	int			 queue;		/* listener */
	int			 crypto;	/* listener */
	int			 auth[AUTH_WORKERS_MAX];	/* listener */
	int			 nauth;
};

const char *proc_name(enum proc_type);
enum proc_type proc_type(const char *);
/* Parent: fork and re-execute self as a child; returns its pid. */
pid_t	 proc_spawn(enum proc_type, int instance, char *const extra_argv[],
	    int *channel);
/* Child, after exec: receive the configuration and channels. */
void	 proc_child(enum proc_type, int instance, struct smsubmit_conf *,
	    struct proc_peers *);
/* As root: chroot to root (unless NULL) and become user for good. */
void	 proc_drop(const char *user, const char *root);
/* A detached thread running fn(NULL), signals blocked but SIGSYS; what
   names it in the error, should it fail. */
void	 proc_thread(void *(*)(void *), const char *what);
/*
 * SIGHUP: the parent sends a child the settings a running process can
 * take (the parent validated them and refused what needs a restart);
 * the child takes them into conf, in place, or returns -1 with conf as
 * it was (out of memory).
 */
void	 proc_reconf_send(struct ipc *, const struct smsubmit_conf *);
int	 proc_reconf(struct ipc_msg *, struct smsubmit_conf *);
/* A copy of conf without its listeners and certificates, or NULL. */
struct smsubmit_conf *proc_conf_copy(const struct smsubmit_conf *);

/* --- crypto.c: the key process --- */

#define CRYPTO_KEYS_MAX		16	/* certificates held at once */
#define KEYPAIR_MAX	(IPC_MAX_PAYLOAD / 2 - 16)	/* each of cert, key */
#define CRYPTO_KEYID_LEN	32	/* SHA-256 of the public key (SPKI) */

void	 crypto_main(struct smsubmit_conf *, struct proc_peers *)
	    __attribute__((noreturn));

/* --- signer.c: the listener's side of the key process --- */

/* Route every private-key operation of this process to fd. */
void	 signer_init(int fd);
/* signatures made in this thread so far */
unsigned long signer_count(void);
/* why the key process can no longer sign, or NULL: the caller exits */
const char *signer_failed(void);

/* --- handshaker.c: the listener's TLS handshakes, in threads --- */

struct tls;
/* done(arg, tls_handshake()'s result, whether it signed) */
void	 handshaker_start(struct event_base *, void (*)(void *, int, int));
int	 handshaker_run(struct tls *, void *);

/* --- sandbox.c --- */

/* Allow only what the named process needs from now on. */
void	 sandbox_prepare(void);
void	 sandbox_enter(const char *proc, int parentfd);
const char *sandbox_syscall_name(uint32_t);

/* --- stats.c: the counters `smsubmit -s` prints --- */

enum stats_tls { STATS_TLS10, STATS_TLS11, STATS_TLS12, STATS_TLS13,
	STATS_TLS_OTHER, STATS_TLS_MAX };
#define STATS_CODE_MIN		400	/* refusals counted by reply code */
#define STATS_CODES		200	/* 400 to 599 */

/* The listener's, sent whole in IMSG_STATS (the same binary both ends). */
struct smtp_stats {
	uint64_t	 sessions_open;	/* filled in when asked */
	uint64_t	 sessions;
	uint64_t	 refused;	/* connections, at accept */
	uint64_t	 tls[STATS_TLS_MAX];
	uint64_t	 tls_failed;
	uint64_t	 auth_ok;
	uint64_t	 auth_failed;	/* bad credentials */
	uint64_t	 auth_throttled; /* failures held back (auth delay) */
	uint64_t	 auth_banned;	/* connections from a banned address */
	uint64_t	 messages;	/* accepted, 250 after DATA */
	uint64_t	 bytes;
	uint64_t	 user_limited[2]; /* by enum userlimit_kind */
	uint64_t	 codes[STATS_CODES]; /* 4xx and 5xx replies */
};

/* The queue's, read when asked. */
struct queue_stats {
	uint64_t	 depth;		/* messages in the queue */
	uint64_t	 oldest;	/* age of the oldest, seconds */
	uint64_t	 relay_attempts;
	uint64_t	 relay_failures; /* attempts that left a retry */
	uint64_t	 relay_usec;	/* time spent in attempts */
	uint64_t	 bounces;
};

enum stats_tls	 stats_tls_version(const char *);	/* "TLSv1.3" */
/* The text of `smsubmit -s`, or with openmetrics that of -o openmetrics. */
void	 stats_format(struct buf *, const struct smtp_stats *,
	    const struct queue_stats *, int openmetrics);

/* --- listener.c --- */

struct listener_env {
	struct smsubmit_conf	*conf;
	struct event_base	*base;
	struct ipc		*parent;
	struct ipc		*queue;
	struct listen_list	 listeners;	/* accepting on these */
	char			 mechs[AUTH_MECHS_MAX];	/* from auth */
	int			 auth_ready;
	int			 nsessions;
	int			 stopping;
	unsigned long		 reply_faults;	/* replies dropped or added */
	struct smtp_stats	 stats;
	uint32_t		 nextid;
	char			*cert[CRYPTO_KEYS_MAX];	/* PEM from the parent */
	size_t			 certlen[CRYPTO_KEYS_MAX];
	int			 ncerts;
};

enum session_state {
	S_HANDSHAKE,		/* implicit TLS handshake before the greeting */
	S_CONNECTED,		/* greeted, no EHLO yet */
	S_HELO,			/* idle */
	S_AUTH,			/* in a SASL exchange */
	S_MAIL,			/* after MAIL */
	S_RCPT,			/* after at least one RCPT */
	S_DATA,			/* receiving the message */
	S_QUIT			/* closing once the output is written */
};

#define SF_TLS		0x0001	/* TLS established */
#define SF_STARTTLS	0x0002	/* 220 sent for STARTTLS, handshake next */
#define SF_AUTHED	0x0004
#define SF_EHLO		0x0008	/* EHLO, not HELO */
#define SF_8BITMIME	0x0040	/* transaction flags */
#define SF_SMTPUTF8	0x0080
#define SF_SKIPLINE	0x0100	/* discarding an overlong line */
#define SF_DATAFULL	0x0200	/* message over the size limit */
#define SF_PROXYHDR	0x0400	/* reading the PROXY header */
#define SF_COUNTED	0x0800	/* in the per-address and network counts */
#define SF_SHAKING	0x1000	/* tls_handshake() in a handshaker thread */
#define SF_SIGNED	0x2000	/* the handshake's signature is made */

struct server_tls;

struct session {
	SPLAY_ENTRY(session)	 entry;
	uint32_t		 id;
	struct listener_env	*env;
	struct smsubmit_conf	*conf;		/* as when it connected */
	struct listen_conf	*lc;
	int			 fd;
	struct tls		*tls;
	struct server_tls	*server;	/* listener.c: tls came from */
	struct event		*ev;
	struct buf		 in;
	struct buf		 out;
	enum session_state	 state;
	int			 flags;
	enum {
		PENDING_NONE,		/* input is processed */
		PENDING_AUTH,		/* waiting for auth: input held */
		PENDING_FILE,		/* waiting for the queue's file */
		PENDING_COMMIT,		/* waiting for the queue's commit */
		PENDING_LIMIT		/* waiting for the queue's word on a
					   per-user limit (MAIL or RCPT) */
	}			 pending;
	time_t			 deadline;	/* for the command or DATA */
	short			 rwant;		/* what a read waits for */
	short			 wwant;		/* what a write waits for */
	/* numeric (NI_NUMERICHOST): never a name, so not NI_MAXHOST */
	char			 client[HOSTADDR_MAX];
	char			 net[INET6_ADDRSTRLEN + 8];	/* "net:P/L" */
	char			 local[HOSTADDR_MAX + 8];	/* "addr;port" */
	int			 owed;		/* replies: commands read, not
						   answered yet (session.c) */
	int			 nunknown;
	int			 nauthfail;
	uint8_t			*proxybuf;	/* the PROXY header so far */
	size_t			 proxylen;
	char			*helo;		/* sanitised, once greeted */
	char			*user;		/* sanitised, once authed */
	char			*senders;	/* it may use, "*": any */
	char			 mech[32];
	struct auth_worker	*authw;		/* its exchange's worker */
	struct event		*auth_timer;	/* bounds the wait for it */
	int			 auth_held;	/* a failure is held back */
	/* the transaction */
	char			*from;		/* from MAIL on */
	char			**rcpts;
	int			 nrcpts;
	char			*rcpt_held;	/* its RCPT waits for the limit */
	/* DATA */
	char			 msgid[QUEUE_ID_LEN + 1];
	int			 msgfd;
	struct data		*data;		/* DATA on: the body's state */
	struct buf		 dbuf;
	size_t			 msgsize;
	time_t			 data_start;	/* the 354 */
	size_t			 data_read;	/* octets read since */
	int			 data_errno;
};

/*
 * What only a message being received needs, allocated at the 354: an
 * idle session does not carry it (every idle session's octets count).
 */
struct data {
	struct body		 body;
	char			 add_msgid[128];	/* fields to add if */
	char			 add_date[96];		/* the message has none */
};

void	 listener_main(struct smsubmit_conf *, struct proc_peers *)
	    __attribute__((noreturn));
/* Called by the session once its STARTTLS reply is queued. */
void	 listener_starttls(struct session *);
/*
 * A session's SASL exchange, sent to one of the auth workers and waited
 * for at most "auth timeout".  Start returns -1 if no worker can take it.
 */
int	 listener_auth_start(struct session *, const char *mech,
	    const char *ir, int has_ir);
void	 listener_auth_step(struct session *, const char *resp);
void	 listener_auth_end(struct session *);

/* --- session.c: the SMTP dialogue --- */

struct smtp_cmd;

void	 session_start(struct session *);	/* after connect or TLS */
void	 session_input(struct session *);	/* process buffered input */
/*
 * Queue a reply line.  A command gets exactly one reply (a multi-line one
 * counts as one): a reply nothing asked for is dropped, unless it is a
 * 421 that the session closes after.
 */
void	 session_reply(struct session *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
void	 session_close(struct session *, const char *);
void	 session_auth_result(struct session *, struct ipc_msg *);
/* The auth worker did not answer in time: the exchange is over. */
void	 session_auth_timeout(struct session *);
void	 session_queue_result(struct session *, struct ipc_msg *);
/* The queue's answer to a per-user limit asked at MAIL or RCPT. */
void	 session_limit_result(struct session *, struct ipc_msg *);
void	 session_cleanup(struct session *);
/* Split a command line; returns the command or NULL if unknown. */
const struct smtp_cmd *session_cmd_lookup(const char *, const char **arg);
const char *session_cmd_name(const struct smtp_cmd *);
/* Parse MAIL parameters: 0 or the reply code to give, with *msg. */
int	 session_mail_params(const char *, size_t maxsize, int *flags,
	    const char **msg);

/* --- auth.c --- */

void	 auth_main(struct smsubmit_conf *, struct proc_peers *)
	    __attribute__((noreturn));

/* --- queue.c --- */

enum rcpt_state {
	RCPT_PENDING,		/* to be relayed */
	RCPT_DONE,		/* the relay took it */
	RCPT_FAILED,		/* refused for good, the sender not told yet */
	RCPT_BOUNCED		/* refused for good, the sender told */
};

struct rcpt {
	char			*addr;
	enum rcpt_state		 state;
	char			 reply[256];	/* the relay's last word */
};

/* A committed message, as the queue process knows it. */
struct qmsg {
	TAILQ_ENTRY(qmsg)	 entry;
	char			 id[QUEUE_ID_LEN + 1];
	char			 from[ADDR_MAX];
	char			 user[256];
	char			 helo[256];
	char			 client[NI_MAXHOST];
	int			 flags;		/* ENV_* */
	time_t			 created;
	time_t			 next;		/* next attempt */
	int			 attempts;
	char			 error[256];	/* last temporary error */
	time_t			 warned;	/* delay warning sent; 0: not */
	off_t			 body;		/* where ID.msg's message starts */
	int			 envfile;	/* the envelope is in ID.env */
	struct rcpt		*rcpts;
	int			 nrcpts;
	size_t			 sched;		/* scheduler.c: place + 1, or 0 */
	uint64_t		 serial;	/* scheduler.c: order put in */
	int			 inflight;	/* with the relay */
	struct timespec		 relay_start;	/* when it went there */
};

void	 queue_main(struct smsubmit_conf *, struct proc_peers *)
	    __attribute__((noreturn));
/* For the control socket: the queue, read only, in the order it came. */
const struct qmsg *queue_first(void);
const struct qmsg *queue_next(const struct qmsg *);
/* Every waiting message due now: how many. */
int	 queue_flush(void);
void	 queue_stats(struct queue_stats *);

/* --- userlimit.c: per-user sending limits, in the queue process --- */

#define USERLIMIT_FILE		"limits"	/* in the queue directory */

enum userlimit_kind {
	USERLIMIT_MESSAGES,
	USERLIMIT_RECIPIENTS
};

/* Load the counts kept in the queue directory (the current directory). */
void	 userlimit_init(struct event_base *, struct smsubmit_conf *);
/* 0 and one more counted for user, or 1 if that would be over the limit. */
int	 userlimit_take(const char *user, enum userlimit_kind);
/* Write the counts now if they changed (before exit). */
void	 userlimit_save(void);

/* --- keypair.c --- */

struct evp_pkey_st;
/*
 * Why a PEM certificate and private key cannot serve, or NULL; then the
 * key is stored in *pkey if pkey is not NULL.
 */
const char *keypair_parse(const uint8_t *cert, size_t, const uint8_t *key,
	    size_t, struct evp_pkey_st **pkey);

/* --- check.c: smsubmit -n, and every start --- */

/*
 * Check what the configuration names: users, certificates and keys, the
 * chroot and queue directories (created with create), the SASL files as
 * the auth user reads them.  Each problem is printed as "file:line: ...";
 * the number of problems.
 */
int	 check_config(const char *file, struct smsubmit_conf *, int create);

/* --- envelope.c: the envelope file format, round-trip safe --- */

#define ENVELOPE_MAX		(1024 * 1024)	/* octets, written or read */

void	 envelope_clear(struct qmsg *);		/* frees the recipients */
int	 envelope_rcpt_add(struct qmsg *, const char *, enum rcpt_state);
int	 envelope_id_valid(const char *);
const char *envelope_rcpt_state_name(enum rcpt_state);
/* The file's text into out (a buffer limited to ENVELOPE_MAX); -1 if
   it does not fit. */
int	 envelope_format(struct buf *out, const struct qmsg *);
int	 envelope_write(int fd, const struct qmsg *);
/* The head of a message file: the envelope and the empty line after it. */
int	 envelope_write_head(int fd, const struct qmsg *);
int	 envelope_read_head(int fd, struct qmsg *);
/* Parse an envelope file's text (changed in place); 0 if valid.  On
   failure the recipients read so far are still to be freed. */
int	 envelope_parse(struct qmsg *, char *);

/* --- scheduler.c --- */

/* m waits for its next attempt, at m->next: not with the relay */
void	 scheduler_add(struct qmsg *);
/* m no longer waits (removed, or m->next is to change); no-op if not */
void	 scheduler_remove(struct qmsg *);
/* The earliest message due by now, taken out; NULL if none is. */
struct qmsg *scheduler_due(time_t now);
/* The earliest waiting message, left in; NULL if none waits. */
struct qmsg *scheduler_first(void);
/* When the earliest waiting message is due; 0 if none waits. */
time_t	 scheduler_wake(void);
/* Every waiting message due now, in the order they were put in. */
void	 scheduler_all_now(void);
size_t	 scheduler_count(void);
/* The delay before attempt number attempts + 1, with jitter. */
time_t	 scheduler_backoff(const struct smsubmit_conf *, int attempts);

/* --- spare.c --- */

enum spare_kind {
	SPARE_MSG,		/* a message file, queue/ID.msg */
	SPARE_ENV		/* an envelope, queue/ID.env */
};

/* path (in tmp/, not there yet) opened write only: a spare renamed
   there, else a new file; its old contents are to be written over */
int	 spare_open(enum spare_kind, const char *path);
/* path is no longer needed: kept as a spare (or removed) */
void	 spare_keep(enum spare_kind, const char *path);
/* where the removals made so far end, for spare_settled() */
unsigned int spare_mark(void);
/* queue/ was fsync()ed after mark: spares kept before it may be reused */
void	 spare_settled(unsigned int mark);
/* spares whose removal no sync of queue/ has yet settled */
int	 spare_unsettled(void);

/* --- syncer.c --- */

/* the thread that will run jobs, before the sandbox */
void	 syncer_start(struct event_base *);
/* a job is under way: done() has not been called yet */
int	 syncer_busy(void);
/* job(arg) in the thread (system calls only), then done(arg) here */
void	 syncer_run(void (*)(void *), void (*)(void *), void *);
/* the job under way, if any, ended and its done() called */
void	 syncer_wait(void);

/* --- bounce.c --- */

enum dsn_kind {
	DSN_FAILED,		/* the relay refused: RCPT_FAILED recipients */
	DSN_EXPIRED,		/* "queue lifetime" over: RCPT_FAILED ones */
	DSN_DELAYED		/* "queue delay-warning": RCPT_PENDING ones */
};

/* Write a DSN of that kind about a message to fd, as message id. */
int	 bounce_write(int fd, struct smsubmit_conf *, struct qmsg *,
	    const char *id, int msgfd, enum dsn_kind);

/* --- control.c: smsubmit -q, -Q, -s, and their server in [queue] --- */

#define CONTROL_SOCKET	"control"	/* in the queue directory */

/* listener: the channel to ask for the listener's counters */
void	 control_listen(struct event_base *, struct ipc *listener);
int	 control_client(struct smsubmit_conf *, const char *command);
/* The listener's IMSG_STATS, for the request peerid names. */
void	 control_stats(struct ipc_msg *);

/* --- relay.c: the SMTP client and its connections to the relay host --- */

#define RELAY_CONNECTIONS_MAX	64

/* An attempt at m ended: its recipients' states and replies say how. */
typedef void (*relay_report_cb)(struct qmsg *m);
/*
 * done, and back (a relay that failed works again), run from an event
 * of their own, never inside a relay_*() call or the relay's I/O, so
 * they may hand over the next message at once.
 */
void	 relay_init(struct event_base *, struct smsubmit_conf *,
	    relay_report_cb done, void (*back)(void));
/* How many messages it can take now: 0 when all "relay connections"
   are busy or the relay is down, waiting for relay_retry_at(). */
int	 relay_free_slots(void);
time_t	 relay_retry_at(void);		/* when a down relay is tried */
void	 relay_deliver(struct qmsg *);	/* only with a free slot */
void	 relay_flush(void);		/* forget a down relay's backoff */
/* A reload changed the relay host: the next message goes to the new one. */
void	 relay_moved(void);
/* A reload: "relay connections" may have changed. */
void	 relay_reconf(void);
/*
 * Parse one reply line: 1 and the code for the last line of a reply, 0 for
 * a continuation line, -1 for garbage.
 */
int	 relay_reply_line(const char *, int *code);

#endif
