/*
 * fuzz_listener.c: smtpd/listener.c compiled in whole, with one [auth]
 * worker as listener_main() would set it up, and a fake [auth] process
 * at the other end of its channel.  The listener's own code sends
 * (listener_auth_start(), _step(), _end()) and takes the answers
 * (auth_answer(): the stale exchanges, the held failures, the busy
 * counts, then session_auth_result()); only the session's socket I/O
 * (pump()) is left to the harness.
 *
 * The fake [auth] checks what it is sent as the real one's request table
 * would (a CHECK() that fails is a listener bug): AUTH_START only with
 * no exchange open, AUTH_STEP only after a challenge, each well formed,
 * for the session that asked, with its addresses and a mechanism it
 * was offered; AUTH_END at any time, answered AUTH_ENDED, and a failure
 * held back then never sent.
 */
#include "../../smtpd/listener.c"

#include "fuzz.h"
#include "fuzz_listener.h"

int	fuzzl_given[FUZZL_NANSWERS];

static struct {
	struct ipc	*peer;		/* [auth]'s end */
	enum { X_NONE, X_STEP, X_HELD } state;
} fake;

void
fuzzl_init(void)
{
	struct auth_worker	*w;
	int			 sv[2];

	if (nworkers > 0)
		return;
	if ((env.base = event_base_new()) == NULL ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		abort();
	w = &workers[nworkers++];
	SPLAY_INIT(&w->stale);
	strlcpy(w->name, "auth", sizeof(w->name));
	w->ipc = ipc_open(sv[0], w->name);
	w->ready = 1;
	fake.peer = ipc_open(sv[1], "listener");
}

void
fuzzl_begin(struct session *s)
{
	CHECK(session_find(s->id) == NULL);
	SPLAY_INSERT(sessiontree, &sessions, s);
	fake.state = X_NONE;
	memset(fuzzl_given, 0, sizeof(fuzzl_given));
}

/* What the listener sent [auth], answered as [auth] would. */
static void
serve(struct session *s, enum fuzzl_answer (*pick)(void *), void *arg)
{
	struct ipc_msg		 m;
	const char		*mech, *ir, *client, *local, *resp;
	uint32_t		 has_ir;
	enum fuzzl_answer	 a;

	ipc_flush(workers[0].ipc);
	if (fake.state == X_HELD) {
		/* the hold is over: the failure it held */
		ipc_send(fake.peer, IMSG_AUTH_FAIL, s->id, -1, "u",
		    (uint32_t)AUTH_R_BADCREDS);
		fake.state = X_NONE;
	}
	while (ipc_read_sync(fake.peer, &m, 0) == 1) {
		CHECK(m.peerid == s->id && m.fd == -1);
		switch (m.type) {
		case IMSG_AUTH_START:
			CHECK(fake.state == X_NONE);
			CHECK(ipc_unpack(&m, "ssuss", &mech, &ir, &has_ir,
			    &client, &local) == 0);
			CHECK(has_ir <= 1 && (has_ir || *ir == '\0'));
			CHECK(strcmp(client, s->client) == 0);
			CHECK(strcmp(local, s->local) == 0);
			CHECK(strcmp(mech, s->mech) == 0);
			CHECK(strcasestr(s->env->mechs, mech) != NULL);
			break;
		case IMSG_AUTH_STEP:
			CHECK(fake.state == X_STEP);
			CHECK(ipc_unpack(&m, "s", &resp) == 0);
			CHECK(strlen(resp) < AUTH_LINE_MAX);
			break;
		case IMSG_AUTH_END:
			CHECK(ipc_unpack(&m, "") == 0);
			/* a held failure is forgotten, never sent */
			fake.state = X_NONE;
			ipc_send(fake.peer, IMSG_AUTH_ENDED, s->id, -1, "");
			continue;
		default:
			CHECK(!"a message [auth] does not take");
		}
		a = pick(arg) % FUZZL_NANSWERS;
		fuzzl_given[a]++;
		switch (a) {
		case FUZZL_CONTINUE:
			/* "Username:", as LOGIN asks */
			ipc_send(fake.peer, IMSG_AUTH_CONTINUE, s->id, -1, "s",
			    "VXNlcm5hbWU6");
			fake.state = X_STEP;
			break;
		case FUZZL_OK:
			ipc_send(fake.peer, IMSG_AUTH_OK, s->id, -1, "ss",
			    "alice", "*");
			fake.state = X_NONE;
			break;
		case FUZZL_BADCREDS:
		case FUZZL_BADMECH:
		case FUZZL_BADB64:
		case FUZZL_TEMP:
			ipc_send(fake.peer, IMSG_AUTH_FAIL, s->id, -1, "u",
			    (uint32_t)(AUTH_R_BADCREDS + a - FUZZL_BADCREDS));
			fake.state = X_NONE;
			break;
		case FUZZL_BAN:
			ipc_send(fake.peer, IMSG_AUTH_BAN, 0, -1, "su",
			    s->client, (uint32_t)60);
			/* FALLTHROUGH */
		case FUZZL_HOLD:
			ipc_send(fake.peer, IMSG_AUTH_HOLD, s->id, -1, "u",
			    (uint32_t)1);
			fake.state = X_HELD;
			break;
		case FUZZL_NANSWERS:
			abort();
		}
	}
	ipc_flush(fake.peer);
	/* the answers, through the listener's own code */
	while (ipc_read_sync(workers[0].ipc, &m, 0) == 1)
		(void)auth_answer(&workers[0], &m);
}

void
fuzzl_auth(struct session *s, enum fuzzl_answer (*pick)(void *), void *arg)
{
	/* again after a hold, or for an AUTH pipelined behind the last */
	do
		serve(s, pick, arg);
	while (s->pending == PENDING_AUTH);
}

static enum fuzzl_answer
no_pick(void *arg)
{
	CHECK(!"a request after the session ended");
	return FUZZL_TEMP;
}

void
fuzzl_poll(struct session *s)
{
	/* between two client lines [auth] answers what needs no choice */
	CHECK(s->pending != PENDING_AUTH);
	serve(s, no_pick, NULL);
}

void
fuzzl_end(struct session *s)
{
	struct addrcount	*a;

	/* session_free(), less the socket */
	SPLAY_REMOVE(sessiontree, &sessions, s);
	if (s->auth_timer != NULL) {
		event_free(s->auth_timer);
		s->auth_timer = NULL;
	}
	/* an AUTH_END still to answer, its AUTH_ENDED to take */
	serve(s, no_pick, NULL);
	/* the listener owes the worker nothing, remembers nothing */
	CHECK(workers[0].busy == 0 && workers[0].nstale == 0);
	CHECK(SPLAY_EMPTY(&workers[0].stale));
	/* bans by the fake [auth] go with the input that made them */
	while ((a = SPLAY_MIN(addrtree, &addrs)) != NULL) {
		SPLAY_REMOVE(addrtree, &addrs, a);
		free(a);
	}
}
