/*
 * t_scheduler.c: smtpd/scheduler.c against a model, a plain array kept
 * in the order the scheduler promises (next attempt, then the order put
 * in).  Random adds, removals, takes of the due ones and "all now", every
 * answer compared; then a backlog of 100,000 and the backoff's growth.
 * The seed is printed; REGRESS_SEED repeats a run.
 */
#include <sys/types.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smsubmit.h"
#include "tap.h"

#define N	2000

static struct qmsg	 msgs[N];
static struct qmsg	*model[N];	/* waiting ones, in no order */
static uint64_t		 order[N];	/* their order put in */
static int		 nmodel;
static uint64_t		 put;

static int
model_before(int a, int b)
{
	if (model[a]->next != model[b]->next)
		return model[a]->next < model[b]->next;
	return order[a] < order[b];
}

static int
model_first(void)
{
	int	 i, best = -1;

	for (i = 0; i < nmodel; i++)
		if (best == -1 || model_before(i, best))
			best = i;
	return best;
}

static void
model_drop(int i)
{
	model[i] = model[nmodel - 1];
	order[i] = order[nmodel - 1];
	nmodel--;
}

static int
model_find(struct qmsg *m)
{
	int	 i;

	for (i = 0; i < nmodel; i++)
		if (model[i] == m)
			return i;
	return -1;
}

static void
model_all_now(void)
{
	int	 i;

	for (i = 0; i < nmodel; i++)
		model[i]->next = 0;
}

int
main(void)
{
	struct smsubmit_conf	 conf;
	struct qmsg		*m, *big;
	const char		*env = getenv("REGRESS_SEED");
	unsigned int		 seed = env ? strtoul(env, NULL, 10) :
				    arc4random();
	time_t			 now = 1000, d, prev;
	int			 i, op, k, bad = 0, steps = 0, first;
	size_t			 n;

	printf("# seed %u (REGRESS_SEED=%u repeats it)\n", seed, seed);
	srandom(seed);
	for (i = 0; i < N; i++)
		snprintf(msgs[i].id, sizeof(msgs[i].id), "%016x", i);

	for (steps = 0; steps < 200000 && !bad; steps++) {
		op = random() % 10;
		k = random() % N;
		m = &msgs[k];
		if (op < 4 && m->sched == 0) {
			/* a message in, due soon, now, or long ago */
			m->next = now + (random() % 60) - 20;
			scheduler_add(m);
			model[nmodel] = m;
			order[nmodel++] = put++;
		} else if (op < 5) {
			/* a message gone (removed, or taken to change) */
			scheduler_remove(m);
			if ((i = model_find(m)) != -1)
				model_drop(i);
		} else if (op < 9) {
			m = scheduler_due(now);
			first = model_first();
			if (first != -1 && model[first]->next > now)
				first = -1;
			if ((first == -1) != (m == NULL) ||
			    (m != NULL && m != model[first]) ||
			    (m != NULL && m->sched != 0)) {
				printf("# step %d: due %s, model %s\n", steps,
				    m ? m->id : "none",
				    first == -1 ? "none" : model[first]->id);
				bad = 1;
			} else if (first != -1)
				model_drop(first);
			if (random() % 4 == 0)
				now++;
		} else if (random() % 20 == 0) {
			scheduler_all_now();
			model_all_now();
		}
		first = model_first();
		if (scheduler_count() != (size_t)nmodel ||
		    scheduler_wake() != (first == -1 ? 0 :
		    model[first]->next)) {
			printf("# step %d: %zu waiting, wake %lld; model %d, "
			    "%lld\n", steps, scheduler_count(),
			    (long long)scheduler_wake(), nmodel, first == -1 ?
			    0LL : (long long)model[first]->next);
			bad = 1;
		}
	}
	ok(!bad, "200000 random steps: every due message, wake time and "
	    "count as the model's (%d steps)", steps);

	/* drain what is left: in the model's order, each once */
	for (bad = 0; nmodel > 0; ) {
		scheduler_all_now();
		model_all_now();
		first = model_first();
		m = scheduler_due(now);
		if (m != model[first]) {
			bad = 1;
			break;
		}
		model_drop(first);
	}
	ok(!bad && scheduler_count() == 0 && scheduler_due(now) == NULL,
	    "after all now: in the order put in, then empty");

	/* a backlog of 100,000 deferred: a new message is the next due */
	n = 100000;
	if ((big = calloc(n, sizeof(*big))) == NULL)
		fixture(0);
	for (i = 0; i < (int)n; i++) {
		big[i].next = now + 3600 + random() % 86400;
		scheduler_add(&big[i]);
	}
	m = &msgs[0];
	m->next = now;
	scheduler_add(m);
	ok(scheduler_due(now) == m, "with 100000 deferred, a new message "
	    "is due first");
	ok(scheduler_due(now) == NULL && scheduler_count() == n,
	    "and none of the backlog is due");
	prev = 0;
	for (bad = 0, i = 0; i < (int)n; i++) {
		if ((m = scheduler_due(now + 3600 + 86400)) == NULL ||
		    m->next < prev) {
			bad = 1;
			break;
		}
		prev = m->next;
	}
	ok(!bad && scheduler_count() == 0, "the backlog comes out in time "
	    "order");
	free(big);

	/* backoff: doubles from the minimum up to the maximum, jitter < 1/4 */
	memset(&conf, 0, sizeof(conf));
	conf.retry_min = 60;
	conf.retry_max = 3600;
	for (bad = 0, i = 1; i <= 10; i++) {
		time_t	 base = 60;

		for (k = 1; k < i && base < 3600; k++)
			base *= 2;
		if (base > 3600)
			base = 3600;
		d = scheduler_backoff(&conf, i);
		if (d < base || d > base + base / 4)
			bad = 1;
	}
	ok(!bad, "backoff 60, 120, 240, ... 3600 with up to 1/4 jitter");
	return tap_done();
}
