/*
 * smsubmit.h: the structures the processes share and each file's entry
 * points, grouped by file.
 */
#ifndef SMSUBMIT_H
#define SMSUBMIT_H

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <limits.h>
#include <netdb.h>
#include <stdint.h>
#include <time.h>

#include "addr.h"

#define SMSUBMIT_CONF		"/etc/smsubmit.conf"
#define SMSUBMIT_USER		"_smsubmit"
#define SMSUBMIT_QUEUE_USER	"_smsubmitq"
#define SMSUBMIT_QUEUE		"/var/spool/smsubmit"
#define SMSUBMIT_SASL_APP	"smsubmit"

#define SMTP_LINE_MAX		512	/* command line, with CRLF */
#define SMTP_MAX_UNKNOWN	10	/* unknown commands before 421 */
#define QUEUE_ID_LEN		16	/* hex digits */
#define AUTH_MECHS_MAX		256
#define AUTH_LINE_MAX		12288	/* a base64 AUTH line from a client */

/* --- parse.y: the configuration --- */

#define LISTEN_TLS		0x01	/* implicit TLS (RFC 8314) */
#define LISTEN_STARTTLS		0x02	/* STARTTLS required (RFC 3207) */

struct listen_conf {
	TAILQ_ENTRY(listen_conf) entry;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	int			 flags;		/* LISTEN_TLS or LISTEN_STARTTLS */
	int			 fd;		/* bound by the parent */
	char			 name[NI_MAXHOST + 16];	/* "addr port N" */
};
TAILQ_HEAD(listen_list, listen_conf);

struct smsubmit_conf {
	char			 hostname[HOST_NAME_MAX + 1];
	struct listen_list	 listeners;
	char			*tls_cert;	/* file names */
	char			*tls_key;
	char			*tls_protocols;	/* libtls syntax */
	char			*tls_ciphers;
	char			 auth_mechs[AUTH_MECHS_MAX]; /* "PLAIN LOGIN" */
	char			*sasl_config;	/* dir of smsubmit.conf */
	int			 auth_max_failures;
	struct sockaddr_storage	 relay_ss;
	socklen_t		 relay_sslen;
	char			 relay_name[NI_MAXHOST + 16];
	char			*queue_dir;
	time_t			 queue_lifetime;	/* seconds */
	size_t			 max_message_size;	/* octets */
	int			 max_recipients;
	int			 max_sessions;
	int			 max_sessions_per_addr;
	time_t			 timeout_command;	/* seconds */
	time_t			 timeout_data;
	char			*user;
	char			*queue_user;
};

/* Defaults are filled in first; a file can override each. */
int	 parse_config(const char *, struct smsubmit_conf *);
int	 cmdline_symset(const char *);
void	 conf_free(struct smsubmit_conf *);

/*
 * --- IPC messages, in one place.  Each says who sends it to whom and its
 * payload in ipc_send()/ipc_unpack() format; peerid is the session id
 * unless said otherwise.
 */
enum msg_type {
	IMSG_NONE,
	/* parent -> listener */
	IMSG_TLS_CERT,		/* "b" certificate chain, PEM */
	IMSG_TLS_KEY,		/* "b" private key, PEM; wiped once used */
	IMSG_TLS_READY,		/* "" cert and key sent: (re)configure TLS */
	/* auth -> listener */
	IMSG_AUTH_MECHS,	/* "s" mechanisms usable, space separated */
	/* listener -> auth */
	IMSG_AUTH_START,	/* "ssuss" mech, initial response (base64),
				   has initial response, client, local addr */
	IMSG_AUTH_STEP,		/* "s" client response, base64 */
	IMSG_AUTH_END,		/* "" forget this session's exchange */
	/* auth -> listener */
	IMSG_AUTH_CONTINUE,	/* "s" server challenge, base64 */
	IMSG_AUTH_OK,		/* "s" canonical user name */
	IMSG_AUTH_FAIL,		/* "u" enum auth_result */
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

/* --- smsubmit.c: the parent --- */

const char	*proc_title(const char *);

/* --- listener.c --- */

void	 listener_main(struct smsubmit_conf *, int parent, int auth, int queue)
	    __attribute__((noreturn));

/* --- auth.c --- */

void	 auth_main(struct smsubmit_conf *, int parent, int listener)
	    __attribute__((noreturn));

/* --- queue.c --- */

void	 queue_main(struct smsubmit_conf *, int parent, int listener)
	    __attribute__((noreturn));

#endif
