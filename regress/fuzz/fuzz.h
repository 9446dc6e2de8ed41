/*
 * fuzz.h: what the harnesses share.  An invariant that does not hold is
 * reported like a crash: libFuzzer saves the input and the run fails.
 */
#ifndef FUZZ_H
#define FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond) do {						\
	if (!(cond)) {							\
		dprintf(2, "%s:%d: invariant failed: %s\n",		\
		    __FILE__, __LINE__, #cond);				\
		abort();						\
	}								\
} while (0)

#endif
