/*
 * scheduler.c: when each queued message is due.  A binary min-heap of
 * the messages waiting for an attempt, ordered by their next attempt
 * (qmsg.next) and, for the same second, by when they were put in, so
 * that the oldest waiting goes first and a message retried goes behind
 * those that were waiting.  Each message knows its place in the heap
 * (qmsg.sched), so taking one out or moving it is O(log n), and finding
 * the next due is O(1): a backlog of 100,000 deferred messages costs a
 * new message about 17 comparisons, where the list it replaces was read
 * whole at every attempt.
 *
 * A message with the relay is not in the heap; the queue puts it back
 * with its next attempt when the attempt is over, or forgets it.
 *
 * Also here: backoff, the delay before a message's next attempt.
 */
#include <sys/types.h>

#include <stdlib.h>

#include "log.h"
#include "smsubmit.h"

static struct {
	struct qmsg	**heap;
	size_t		  n, cap;
	uint64_t	  serial;
} s;

static int
before(const struct qmsg *a, const struct qmsg *b)
{
	if (a->next != b->next)
		return a->next < b->next;
	return a->serial < b->serial;
}

static void
place(struct qmsg *m, size_t i)
{
	s.heap[i] = m;
	m->sched = i + 1;
}

static void
up(size_t i)
{
	struct qmsg	*m = s.heap[i];

	while (i > 0 && before(m, s.heap[(i - 1) / 2])) {
		place(s.heap[(i - 1) / 2], i);
		i = (i - 1) / 2;
	}
	place(m, i);
}

static void
down(size_t i)
{
	struct qmsg	*m = s.heap[i];
	size_t		 c;

	while ((c = 2 * i + 1) < s.n) {
		if (c + 1 < s.n && before(s.heap[c + 1], s.heap[c]))
			c++;
		if (!before(s.heap[c], m))
			break;
		place(s.heap[c], i);
		i = c;
	}
	place(m, i);
}

void
scheduler_add(struct qmsg *m)
{
	struct qmsg	**h;
	size_t		  cap;

	if (m->sched != 0)
		fatalx("%s: message %s is scheduled already", __func__, m->id);
	if (s.n == s.cap) {
		cap = s.cap ? s.cap * 2 : 64;
		if ((h = reallocarray(s.heap, cap, sizeof(*h))) == NULL)
			fatal("%s", __func__);
		s.heap = h;
		s.cap = cap;
	}
	m->serial = s.serial++;
	place(m, s.n++);
	up(s.n - 1);
}

void
scheduler_remove(struct qmsg *m)
{
	struct qmsg	*last;
	size_t		 i;

	if (m->sched == 0)
		return;
	i = m->sched - 1;
	m->sched = 0;
	if (i == --s.n)
		return;
	/* the last one takes its place, then finds its own */
	last = s.heap[s.n];
	place(last, i);
	up(i);
	down(last->sched - 1);
}

struct qmsg *
scheduler_due(time_t now)
{
	struct qmsg	*m;

	if (s.n == 0 || s.heap[0]->next > now)
		return NULL;
	m = s.heap[0];
	scheduler_remove(m);
	return m;
}

struct qmsg *
scheduler_first(void)
{
	return s.n == 0 ? NULL : s.heap[0];
}

time_t
scheduler_wake(void)
{
	return s.n == 0 ? 0 : s.heap[0]->next;
}

void
scheduler_all_now(void)
{
	size_t	 i;

	/* every one due at once, in the order they were put in */
	for (i = 0; i < s.n; i++)
		s.heap[i]->next = 0;
	for (i = s.n / 2; i-- > 0; )
		down(i);
}

size_t
scheduler_count(void)
{
	return s.n;
}

time_t
scheduler_backoff(const struct smsubmit_conf *conf, int attempts)
{
	time_t	 d = conf->retry_min;

	while (--attempts > 0 && d < conf->retry_max)
		d *= 2;
	if (d > conf->retry_max)
		d = conf->retry_max;
	/* jitter keeps a backlog from returning all at once */
	return d + arc4random_uniform(d / 4 + 1);
}
