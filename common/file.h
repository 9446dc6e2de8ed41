/*
 * file.h: read a whole small file into memory.
 *
 * file_read() returns a NUL-terminated copy of the file, refusing files
 * larger than max octets or holding a NUL (so the result is one string),
 * and sets *len.  NULL with errno on failure; free with freezero() when
 * the file held a secret.
 */
#ifndef FILE_H
#define FILE_H

#include <stddef.h>

char	*file_read(const char *, size_t max, size_t *len);

#endif
