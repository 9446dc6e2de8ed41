/*
 * fuzz_ipc.h: what fuzz_ipc.c asks of the [queue] and [auth] processes,
 * whose files fuzz_ipc_queue.c and fuzz_ipc_auth.c compile in so that
 * their static state can be set up and reset between inputs.
 */
#ifndef FUZZ_IPC_H
#define FUZZ_IPC_H

#include "ipc.h"
#include "smsubmit.h"

/* Set up as queue_main() would, in the current directory, less the
 * privilege drop and sandbox; base is never run. */
void	fuzzq_init(struct smsubmit_conf *, struct event_base *);
/* The listener's channel for the next input. */
void	fuzzq_listener(struct ipc *);
/* The queue's listener_dispatch(). */
void	fuzzq_dispatch(struct ipc *, struct ipc_msg *);
/* The commits of the last read, synced and answered as after the read;
 * how many there were. */
int	fuzzq_batch(void);
/* Forget what the last input left; nothing may then be in tmp/ or queue/
 * but what a fatal() cut short (clean says whether one did). */
void	fuzzq_reset(int clean);
/* Committed messages held, open ones. */
int	fuzzq_committed(void);
int	fuzzq_open(void);

/* As auth_main() would, less the privilege drop and sandbox. */
void	fuzza_init(struct smsubmit_conf *, struct event_base *,
	    const char *mechs_before);
const char *fuzza_mechs(void);
void	fuzza_channels(struct ipc *listener, struct ipc *parent);
void	fuzza_dispatch(struct ipc *, struct ipc_msg *);
void	fuzza_parent_dispatch(struct ipc *, struct ipc_msg *);
/* The failures held back are let go now, as their timers would. */
void	fuzza_release(void);
void	fuzza_reset(void);
int	fuzza_exchanges(void);

#endif
