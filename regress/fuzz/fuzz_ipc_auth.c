/*
 * fuzz_ipc_auth.c: the [auth] process (smtpd/auth.c, compiled in whole)
 * as fuzz_ipc.c drives it, through its own listener_dispatch() and
 * parent_dispatch(), with Cyrus SASL and a sasldb of its own.
 */
#include "../../smtpd/auth.c"

#include "fuzz.h"
#include "fuzz_ipc.h"

void
fuzza_init(struct smsubmit_conf *conf, struct event_base *base,
    const char *mechs_before)
{
	env.conf = conf;
	env.max_sessions = conf->max_sessions;
	SPLAY_INIT(&env.exchanges);
	SPLAY_INIT(&env.failures);
	if (sasl_server_init(global_cb, SMSUBMIT_SASL_APP) != SASL_OK)
		fatalx("sasl_server_init failed");
	find_mechs();
	/* as after a reload that took these away */
	strlcpy(env.mechs_before, mechs_before, sizeof(env.mechs_before));
	env.base = base;
}

const char *
fuzza_mechs(void)
{
	return env.mechs;
}

void
fuzza_channels(struct ipc *listener, struct ipc *parent)
{
	env.listener = listener;
	env.parent = parent;
}

void
fuzza_dispatch(struct ipc *ipc, struct ipc_msg *msg)
{
	listener_dispatch(ipc, msg, NULL);
}

void
fuzza_parent_dispatch(struct ipc *ipc, struct ipc_msg *msg)
{
	parent_dispatch(ipc, msg, NULL);
}

void
fuzza_release(void)
{
	struct exchange	*x, *next;

	for (x = SPLAY_MIN(exchangetree, &env.exchanges); x != NULL;
	    x = next) {
		next = SPLAY_NEXT(exchangetree, &env.exchanges, x);
		if (x->state != X_HELD)
			continue;
		evtimer_del(x->delay);
		delay_cb(-1, EV_TIMEOUT, x);
	}
}

void
fuzza_reset(void)
{
	struct exchange	*x;
	struct failures	*f;

	while ((x = SPLAY_MIN(exchangetree, &env.exchanges)) != NULL)
		exchange_free(x);
	CHECK(env.nexchanges == 0);
	/* bans and delays start again */
	while ((f = SPLAY_MIN(failuretree, &env.failures)) != NULL) {
		SPLAY_REMOVE(failuretree, &env.failures, f);
		free(f);
	}
	env.nfailures = 0;
}

int
fuzza_exchanges(void)
{
	return env.nexchanges;
}
