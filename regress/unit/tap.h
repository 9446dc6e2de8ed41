/*
 * tap.h: the smallest TAP producer, for the C unit tests.
 *
 *	ok(cond, "name of what must hold");
 *	return tap_done();
 *
 * Each test binary prints one "ok N - name" or "not ok N - name" line per
 * check, then "1..N", and exits non-zero if any check failed.
 */
#ifndef TAP_H
#define TAP_H

#include <stdio.h>
#include <stdlib.h>

static int tap_n, tap_failed;

#define ok(cond, ...) do {						\
	int tap_c = (cond) ? 1 : 0;					\
	tap_n++;							\
	if (!tap_c)							\
		tap_failed++;						\
	printf("%sok %d - ", tap_c ? "" : "not ", tap_n);		\
	printf(__VA_ARGS__);						\
	printf("\n");							\
	if (!tap_c)							\
		printf("#   failed at %s:%d\n", __FILE__, __LINE__);	\
	fflush(stdout);							\
} while (0)

/*
 * A test's own set-up that did not come out as meant: not a check of the
 * code under test, so not counted; the binary stops with an error.
 */
#define fixture(cond) do {						\
	if (!(cond)) {							\
		printf("Bail out! fixture %s at %s:%d\n", #cond,	\
		    __FILE__, __LINE__);				\
		fflush(stdout);						\
		exit(2);						\
	}								\
} while (0)

static inline int
tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
