/*
 * handshaker.c: the listener's TLS handshakes, run off its event loop.
 *
 * A server handshake signs with the private key, which only [crypto]
 * holds, and OpenSSL cannot suspend a handshake in the middle of a
 * signature: signer.c sends the request and waits for the answer.  Run
 * in the event loop, that wait stopped every session of the listener.
 * Measured on the bench machine (2 cores) with 32 clients opening one
 * TLS session each: the loop was waiting for [crypto] 24% of the time,
 * 0.57 ms a signature on average and up to 8 ms, and was idle only 5%;
 * a plain round trip such as EHLO took 4 ms.  So each call of
 * tls_handshake() is handed to one of a few threads here, and the loop
 * goes on with the other sessions; the handshake's own computation (the
 * key exchange, the transcript, the records) runs there too, on the
 * other core.
 *
 * A thread gets only the connection it is handed and calls nothing but
 * tls_handshake() on it: no logging, no session state.  The loop leaves
 * that connection alone (no events armed, nothing read or written) until
 * done(arg, result) is called, in the loop.  The signatures of the
 * threads go to [crypto] one at a time, over the one channel
 * (signer.c).  Once a handshake has had its signature, the rest of it
 * (the client's Finished, the session tickets) signs nothing and is
 * quick: the listener does it itself (done() is told whether a job
 * signed), which spares that step the wait behind other handshakes'
 * first ones, 13 ms of each session with 32 clients.
 *
 * The threads are started before the sandbox, whose filter is loaded
 * into every thread of the process and then forbids making another; they
 * block every signal but SIGSYS.  Where none was started (the fuzz
 * harness), handshaker_run() says so and the caller handshakes itself.
 */
#include <sys/queue.h>
#include <sys/types.h>

#include <errno.h>
#include <event.h>
#include <fcntl.h>
#ifdef __linux__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdlib.h>
#include <tls.h>
#include <unistd.h>

#include "log.h"
#include "smsubmit.h"

#define HANDSHAKERS	2	/* one waits for [crypto], one computes */

struct job {
	TAILQ_ENTRY(job)	 entry;
	struct tls		*ctx;
	void			*arg;
	int			 result;
	int			 signed_;	/* it asked [crypto] to sign */
};
TAILQ_HEAD(jobs, job);

static struct {
	pthread_mutex_t	  lock;
	pthread_cond_t	  cond;
	struct jobs	  queued;	/* for a thread */
	struct jobs	  done;
	int		  nready;	/* threads waiting for jobs */
	int		  started;
	int		  wake[2];	/* threads -> loop */
	int		  woken;	/* an octet in the pipe, not read yet */
	struct event	 *ev;
	void		(*done_cb)(void *, int, int);
} h = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
	.queued = TAILQ_HEAD_INITIALIZER(h.queued),
	.done = TAILQ_HEAD_INITIALIZER(h.done),
	.wake = { -1, -1 },
};

static void *
handshaker_thread(void *unused)
{
	struct job	*j;
	ssize_t		 n;
	unsigned long	 before;
	int		 wake;

	pthread_mutex_lock(&h.lock);
	h.nready++;
	pthread_cond_broadcast(&h.cond);
	for (;;) {
		while ((j = TAILQ_FIRST(&h.queued)) == NULL)
			pthread_cond_wait(&h.cond, &h.lock);
		TAILQ_REMOVE(&h.queued, j, entry);
		pthread_mutex_unlock(&h.lock);
		before = signer_count();
		j->result = tls_handshake(j->ctx);
		j->signed_ = signer_count() != before;
		pthread_mutex_lock(&h.lock);
		TAILQ_INSERT_TAIL(&h.done, j, entry);
		/* one octet until the loop reads: the pipe cannot fill */
		wake = !h.woken;
		h.woken = 1;
		if (wake)
			do
				n = write(h.wake[1], "", 1);
			while (n == -1 && errno == EINTR);
	}
	return NULL;
}

static void
wake_cb(int fd, short ev, void *unused)
{
	struct jobs	 done = TAILQ_HEAD_INITIALIZER(done);
	struct job	*j;
	char		 c;

	pthread_mutex_lock(&h.lock);
	if (read(fd, &c, 1) == -1 && errno != EAGAIN && errno != EINTR)
		fatal("read from the handshakers");
	h.woken = 0;
	TAILQ_CONCAT(&done, &h.done, entry);
	pthread_mutex_unlock(&h.lock);
	while ((j = TAILQ_FIRST(&done)) != NULL) {
		TAILQ_REMOVE(&done, j, entry);
		h.done_cb(j->arg, j->result, j->signed_);
		free(j);
	}
}

void
handshaker_start(struct event_base *base, void (*done)(void *, int, int))
{
	int	 i;

	h.done_cb = done;
	if (pipe2(h.wake, O_CLOEXEC | O_NONBLOCK) == -1)
		fatal("pipe2");
	if ((h.ev = event_new(base, h.wake[0], EV_READ | EV_PERSIST, wake_cb,
	    NULL)) == NULL || event_add(h.ev, NULL) == -1)
		fatalx("handshaker event");
#ifdef M_ARENA_MAX
	/*
	 * One malloc arena for all threads: what a handshake allocates
	 * stays with the session after it, and a second arena would keep
	 * its own free memory (the idle-session measure in t_memory).
	 */
	mallopt(M_ARENA_MAX, 1);
#endif
	for (i = 0; i < HANDSHAKERS; i++)
		proc_thread(handshaker_thread, "handshaker");
	/* idle, before the sandbox (proc_thread()) */
	pthread_mutex_lock(&h.lock);
	while (h.nready < HANDSHAKERS)
		pthread_cond_wait(&h.cond, &h.lock);
	pthread_mutex_unlock(&h.lock);
	h.started = 1;
}

/*
 * Call tls_handshake(ctx) in a thread, then done(arg, its result) in the
 * loop; ctx is the thread's until then.  0 if so, -1 if there is no
 * thread (the caller calls tls_handshake() itself).
 */
int
handshaker_run(struct tls *ctx, void *arg)
{
	struct job	*j;

	if (!h.started)
		return -1;
	if ((j = calloc(1, sizeof(*j))) == NULL)
		fatal("calloc");
	j->ctx = ctx;
	j->arg = arg;
	pthread_mutex_lock(&h.lock);
	TAILQ_INSERT_TAIL(&h.queued, j, entry);
	pthread_cond_signal(&h.cond);
	pthread_mutex_unlock(&h.lock);
	return 0;
}
