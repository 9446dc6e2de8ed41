/*
 * log.h: logging to syslog (facility mail) or, in the foreground, stderr.
 *
 * Every process calls log_init() once and log_procname() after fork so
 * each line says which process wrote it.  fatal() and fatalx() log and
 * exit(1); the x variants never append strerror(errno).
 */
#ifndef LOG_H
#define LOG_H

#include <stdarg.h>
#include <stddef.h>

#define LOG_LINE_MAX	4096

void	log_init(int foreground, int verbose);
void	log_procname(const char *);
int	log_foreground(void);	/* to stderr, not syslog */
void	log_setverbose(int);
int	log_getverbose(void);
void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_vwrite(int, const char *, va_list)
	    __attribute__((format(printf, 2, 0)));
/*
 * Copy a string from the wire for a header (the HELO name and user name
 * the listener keeps): control characters, spaces, 8-bit octets,
 * parentheses and backslashes become '_'.
 */
void	log_sanitise(char *, size_t, const char *);
/*
 * Every string from outside (addresses, user names, HELO names, the
 * relay's replies) goes into a log line through this: each octet outside
 * '!'..'~' becomes \xHH and a backslash \\, so the value is one field
 * that holds no space, line break or terminal escape, and cannot forge
 * another field or line.  Cut to fit len at an escape's boundary; returns
 * dst, for use as a printf argument.
 */
#define LOG_ESCAPE_MAX(n)	(4 * (n) + 1)	/* room for n octets */
const char *log_escape(char *dst, size_t len, const char *src);
void	fatal(const char *, ...) __attribute__((format(printf, 1, 2)))
	    __attribute__((noreturn));
void	fatalx(const char *, ...) __attribute__((format(printf, 1, 2)))
	    __attribute__((noreturn));
#ifdef FUZZING
/* fuzz builds only: called by fatal() and fatalx(), must not return */
extern void	(*log_fatal_hook)(void);
#endif

#endif
