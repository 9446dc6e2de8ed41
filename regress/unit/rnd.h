/*
 * rnd.h: the unit tests' random numbers.  xorshift64*, so that a seed
 * gives the same sequence on every platform; rnd_seed() takes the test's
 * fixed seed, or REGRESS_SEED from the environment, and prints it.
 */
#ifndef RND_H
#define RND_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t	 rng_state;

static uint64_t
rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

/* A number below n; 0 for n == 0. */
static size_t
below(size_t n)
{
	return n == 0 ? 0 : rnd() % n;
}

static void
rnd_seed(uint64_t fixed)
{
	const char	*s;
	uint64_t	 seed = fixed;

	if ((s = getenv("REGRESS_SEED")) != NULL)
		seed = strtoull(s, NULL, 10);
	printf("# seed %llu (REGRESS_SEED=N for another)\n",
	    (unsigned long long)seed);
	rng_state = seed ? seed : 1;
}

#endif
