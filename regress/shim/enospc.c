/*
 * enospc.c: a full disk where mount(8) is not allowed, for the tests.
 * Preloaded into the daemon (LD_PRELOAD=regress/shim/enospc.so), it
 * makes write(2) and writev(2) to a regular file fail with ENOSPC once
 * the file would grow past SMSUBMIT_ENOSPC_AT octets.  Standard input,
 * output and error (the log under -d) are left alone.  It makes no
 * system call but fstat(2), which every sandboxed process may make.
 */
#define _GNU_SOURCE
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static ssize_t	(*real_write)(int, const void *, size_t);
static ssize_t	(*real_writev)(int, const struct iovec *, int);
static long long limit = -1;

__attribute__((constructor)) static void
shim_init(void)
{
	const char	*s;

	real_write = (ssize_t (*)(int, const void *, size_t))
	    dlsym(RTLD_NEXT, "write");
	real_writev = (ssize_t (*)(int, const struct iovec *, int))
	    dlsym(RTLD_NEXT, "writev");
	if ((s = getenv("SMSUBMIT_ENOSPC_AT")) != NULL)
		limit = atoll(s);
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
