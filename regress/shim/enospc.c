/*
 * enospc.c: a full disk where mount(8) is not allowed, for the tests.
 * Preloaded into the daemon (LD_PRELOAD=regress/shim/enospc.so), it
 * makes write(2) and writev(2) to a regular file fail with ENOSPC once
 * the file would grow past SMSUBMIT_ENOSPC_AT octets.  Standard input,
 * output and error (the log under -d) are left alone.  It makes no
 * system call but fstat(2), which every sandboxed process may make.
 *
 * A failing disk, for one file: with SMSUBMIT_EIO_SIZE set, fsync(2)
 * and fdatasync(2) of a regular file of that many octets fail with EIO,
 * so a test can make one message of a batch fail to commit.  "That many"
 * is up to HEAD_MAX more: a committed message's file holds its envelope
 * before the message, and a test knows only the message's size.
 *
 * A slow disk, for one file: with SMSUBMIT_SLOW_SIZE set, fsync(2) and
 * fdatasync(2) of a regular file of that many octets (likewise) first
 * sleep for SMSUBMIT_SLOW_MS milliseconds (1500 if unset).
 */
#define _GNU_SOURCE
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static ssize_t	(*real_write)(int, const void *, size_t);
static ssize_t	(*real_writev)(int, const struct iovec *, int);
static int	(*real_fsync)(int);
static int	(*real_fdatasync)(int);
static long long limit = -1;
static long long eio_size = -1;
static long long slow_size = -1;
static long long slow_ms = 1500;

#define HEAD_MAX	2048	/* octets of envelope before a message */

__attribute__((constructor)) static void
shim_init(void)
{
	const char	*s;

	real_write = (ssize_t (*)(int, const void *, size_t))
	    dlsym(RTLD_NEXT, "write");
	real_writev = (ssize_t (*)(int, const struct iovec *, int))
	    dlsym(RTLD_NEXT, "writev");
	real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	if ((s = getenv("SMSUBMIT_ENOSPC_AT")) != NULL)
		limit = atoll(s);
	if ((s = getenv("SMSUBMIT_EIO_SIZE")) != NULL)
		eio_size = atoll(s);
	if ((s = getenv("SMSUBMIT_SLOW_SIZE")) != NULL)
		slow_size = atoll(s);
	if ((s = getenv("SMSUBMIT_SLOW_MS")) != NULL)
		slow_ms = atoll(s);
}

static int
full(int fd, size_t n)
{
	struct stat	 st;

	if (limit < 0 || fd <= 2 || fstat(fd, &st) == -1 ||
	    !S_ISREG(st.st_mode))
		return 0;
	return (long long)st.st_size + (long long)n > limit;
}

ssize_t
write(int fd, const void *buf, size_t n)
{
	if (full(fd, n)) {
		errno = ENOSPC;
		return -1;
	}
	return real_write(fd, buf, n);
}

ssize_t
writev(int fd, const struct iovec *iov, int cnt)
{
	size_t	 n = 0;
	int	 i;

	for (i = 0; i < cnt; i++)
		n += iov[i].iov_len;
	if (full(fd, n)) {
		errno = ENOSPC;
		return -1;
	}
	return real_writev(fd, iov, cnt);
}

static int
sized(int fd, long long size)
{
	struct stat	 st;

	return size >= 0 && fd > 2 && fstat(fd, &st) == 0 &&
	    S_ISREG(st.st_mode) && (long long)st.st_size >= size &&
	    (long long)st.st_size < size + HEAD_MAX;
}

/* fsync(2) or fdatasync(2) of fd is to fail (EIO), after a nap if slow */
static int
failing(int fd)
{
	struct timespec	 ts;

	if (sized(fd, slow_size)) {
		ts.tv_sec = slow_ms / 1000;
		ts.tv_nsec = (slow_ms % 1000) * 1000000;
		while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
			;
	}
	return sized(fd, eio_size);
}

int
fsync(int fd)
{
	if (failing(fd)) {
		errno = EIO;
		return -1;
	}
	return real_fsync(fd);
}

int
fdatasync(int fd)
{
	if (failing(fd)) {
		errno = EIO;
		return -1;
	}
	return real_fdatasync(fd);
}
