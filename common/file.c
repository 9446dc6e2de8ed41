/*
 * file.c: whole-file reads, for the parent (certificate and key) and the
 * queue (envelopes).
 */
#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "file.h"

char *
file_read(const char *path, size_t max, size_t *len)
{
	struct stat	 st;
	char		*data;
	ssize_t		 n;
	int		 fd, saved;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return NULL;
	if (fstat(fd, &st) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return NULL;
	}
	if (st.st_size < 0 || (size_t)st.st_size > max) {
		close(fd);
		errno = EFBIG;
		return NULL;
	}
	if ((data = malloc(st.st_size + 1)) == NULL) {
		close(fd);
		errno = ENOMEM;
		return NULL;
	}
	n = read(fd, data, st.st_size);
	close(fd);
	if (n != st.st_size || memchr(data, '\0', n) != NULL) {
		freezero(data, st.st_size + 1);
		errno = EIO;
		return NULL;
	}
	data[n] = '\0';
	*len = n;
	return data;
}
