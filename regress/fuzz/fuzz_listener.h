/*
 * fuzz_listener.h: the listener's side of [auth] for the session
 * harnesses (fuzz_command, fuzz_session): smtpd/listener.c compiled in
 * (fuzz_listener.c) with one auth worker whose other end is a fake
 * [auth] played here, answering as the real one would.
 */
#ifndef FUZZ_LISTENER_H
#define FUZZ_LISTENER_H

#include "smsubmit.h"

/* What the fake [auth] answers to an AUTH_START or AUTH_STEP. */
enum fuzzl_answer {
	FUZZL_CONTINUE,		/* a challenge */
	FUZZL_OK,		/* "alice", senders "*" */
	FUZZL_BADCREDS,		/* AUTH_FAIL, each reason */
	FUZZL_BADMECH,
	FUZZL_BADB64,
	FUZZL_TEMP,
	FUZZL_HOLD,		/* AUTH_HOLD, then AUTH_FAIL bad credentials */
	FUZZL_BAN,		/* AUTH_BAN of the client, then as FUZZL_HOLD */
	FUZZL_NANSWERS
};

/* Once: the listener gets its worker. */
void	fuzzl_init(void);
/* A session the listener knows (as accept would make it), and forgets. */
void	fuzzl_begin(struct session *);
void	fuzzl_end(struct session *);
/*
 * Play [auth]: read what the listener sent its worker, check it, answer
 * (pick() chooses how), and hand the answers to the listener's own
 * auth_answer(), until the session waits for [auth] no more.
 */
void	fuzzl_auth(struct session *, enum fuzzl_answer (*pick)(void *),
	    void *);
/* What [auth] says unasked: AUTH_ENDED to an AUTH_END. */
void	fuzzl_poll(struct session *);
/* Answers given by the fake [auth] since fuzzl_begin(), by kind. */
extern int	fuzzl_given[FUZZL_NANSWERS];

#endif
