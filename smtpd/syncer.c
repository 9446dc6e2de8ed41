/*
 * syncer.c: the queue's one helper thread, which waits for the disk.
 *
 * The queue's event loop must not stop in fsync().  While it waits
 * there it reads no request, so a client saying DATA, or ending a
 * message, waits for somebody else's commit as well as its own.  On the
 * bench machine that was 2.4 ms of the 5.8 ms each 10 KB message took
 * with 8 clients, and 10.6 ms of each session with 32.  So the waits of
 * a batch of commits run here, one batch at a time, while the loop goes
 * on and gathers the next batch.
 *
 * The thread shares nothing with the loop but the job it is handed:
 * job(arg) may only make system calls on what arg holds (no logging, no
 * allocation, no other state), and the loop leaves arg alone until
 * done(arg) is called, in the loop, once the job has ended.  A mutex
 * hands the job over and back; a pipe wakes the loop.
 *
 * The thread is started before the sandbox, whose filter is loaded into
 * every thread of the process and then forbids making another; it blocks
 * every signal but SIGSYS, so the loop's signal handling is as before.  Where no
 * thread was started (the fuzz harness drives the queue without one), a
 * job is run at once, in the caller.
 */
#include <sys/types.h>

#include <errno.h>
#include <event.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include "log.h"
#include "smsubmit.h"

enum { S_IDLE, S_QUEUED, S_DONE };

static struct {
	pthread_mutex_t	  lock;
	pthread_cond_t	  cond;
	int		  state;
	void		(*job)(void *);
	void		(*done)(void *);
	void		 *arg;
	int		  started;
	int		  ready;	/* the thread is waiting for jobs */
	int		  wake[2];	/* thread -> loop */
	struct event	 *ev;
} s = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
	.wake = { -1, -1 },
};

static void *
syncer_thread(void *unused)
{
	void	(*job)(void *);
	void	 *arg;
	ssize_t	  n;

	pthread_mutex_lock(&s.lock);
	s.ready = 1;
	pthread_cond_broadcast(&s.cond);
	for (;;) {
		while (s.state != S_QUEUED)
			pthread_cond_wait(&s.cond, &s.lock);
		job = s.job;
		arg = s.arg;
		pthread_mutex_unlock(&s.lock);
		job(arg);
		pthread_mutex_lock(&s.lock);
		s.state = S_DONE;
		pthread_cond_broadcast(&s.cond);	/* syncer_wait() */
		/* one octet per job: the pipe cannot fill */
		do
			n = write(s.wake[1], "", 1);
		while (n == -1 && errno == EINTR);
	}
	return NULL;
}

static void
wake_cb(int fd, short ev, void *unused)
{
	void	(*done)(void *);
	void	 *arg;
	char	  c;

	if (read(fd, &c, 1) == -1 && errno != EAGAIN && errno != EINTR)
		fatal("read from the syncer");
	pthread_mutex_lock(&s.lock);
	if (s.state != S_DONE) {
		pthread_mutex_unlock(&s.lock);
		return;
	}
	done = s.done;
	arg = s.arg;
	s.state = S_IDLE;
	pthread_mutex_unlock(&s.lock);
	done(arg);
}

void
syncer_start(struct event_base *base)
{
	if (pipe2(s.wake, O_CLOEXEC | O_NONBLOCK) == -1)
		fatal("pipe2");
	if ((s.ev = event_new(base, s.wake[0], EV_READ | EV_PERSIST, wake_cb,
	    NULL)) == NULL || event_add(s.ev, NULL) == -1)
		fatalx("syncer event");
	proc_thread(syncer_thread, "syncer");
	/* idle, before the sandbox (proc_thread()) */
	pthread_mutex_lock(&s.lock);
	while (!s.ready)
		pthread_cond_wait(&s.cond, &s.lock);
	pthread_mutex_unlock(&s.lock);
	s.started = 1;
}

int
syncer_busy(void)
{
	int	 busy;

	pthread_mutex_lock(&s.lock);
	busy = s.state != S_IDLE;
	pthread_mutex_unlock(&s.lock);
	return busy;
}

void
syncer_run(void (*job)(void *), void (*done)(void *), void *arg)
{
	if (!s.started) {
		job(arg);
		done(arg);
		return;
	}
	pthread_mutex_lock(&s.lock);
	if (s.state != S_IDLE)
		fatalx("%s: the syncer is busy", __func__);
	s.job = job;
	s.done = done;
	s.arg = arg;
	s.state = S_QUEUED;
	pthread_cond_broadcast(&s.cond);
	pthread_mutex_unlock(&s.lock);
}

/* Wait for the job under way, if any, and call its done() now. */
void
syncer_wait(void)
{
	if (!s.started)
		return;
	pthread_mutex_lock(&s.lock);
	while (s.state == S_QUEUED)
		pthread_cond_wait(&s.cond, &s.lock);
	pthread_mutex_unlock(&s.lock);
	wake_cb(s.wake[0], EV_READ, NULL);
}
