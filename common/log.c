/*
 * log.c: the one place log lines are formatted.  Used by every process.
 */
#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static int	 log_foreground_flag = 1;
static int	 log_verbose;
static int	 log_journal;	/* stderr is systemd's journal stream */
static const char *log_name = "smsubmit";

/*
 * systemd names the stream it gives as stderr in JOURNAL_STREAM
 * ("device:inode"); a line written there may start with "<priority>",
 * which the journal keeps as the line's priority (sd-daemon(3)).
 */
static int
stderr_is_journal(void)
{
	struct stat		 st;
	unsigned long long	 dev, ino;
	const char		*js;

	if ((js = getenv("JOURNAL_STREAM")) == NULL ||
	    sscanf(js, "%llu:%llu", &dev, &ino) != 2 ||
	    fstat(STDERR_FILENO, &st) == -1)
		return 0;
	return (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

void
log_init(int foreground, int verbose)
{
	log_foreground_flag = foreground;
	log_verbose = verbose;
	log_journal = foreground && stderr_is_journal();
	if (!foreground)
		openlog("smsubmit", LOG_PID | LOG_NDELAY, LOG_MAIL);
	tzset();
}

int
log_foreground(void)
{
	return log_foreground_flag;
}

void
log_procname(const char *name)
{
	log_name = name;
}

void
log_setverbose(int v)
{
	log_verbose = v;
}

int
log_getverbose(void)
{
	return log_verbose;
}

static int
control(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/*
 * The last guard: whatever a caller passed, no control character reaches
 * the log, so no line can be split in two or hold a terminal escape.
 * Strings from outside are escaped by the callers already (log_escape());
 * this catches what slipped through, such as a library's message.
 */
static void
neutralise(char *line, size_t len)
{
	static const char	 hex[] = "0123456789abcdef";
	char			 tmp[LOG_LINE_MAX];
	size_t			 i, o;
	unsigned char		 c;

	for (i = 0; line[i] != '\0' && !control(line[i]); i++)
		;
	if (line[i] == '\0')
		return;		/* the usual case */
	for (i = o = 0; line[i] != '\0' && o + 5 <= sizeof(tmp); i++) {
		c = line[i];
		if (control(c)) {
			tmp[o++] = '\\';
			tmp[o++] = 'x';
			tmp[o++] = hex[c >> 4];
			tmp[o++] = hex[c & 0x0f];
		} else
			tmp[o++] = c;
	}
	tmp[o] = '\0';
	strlcpy(line, tmp, len);
}

void
log_vwrite(int pri, const char *fmt, va_list ap)
{
	char	 line[LOG_LINE_MAX];
	int	 saved = errno;

	vsnprintf(line, sizeof(line), fmt, ap);
	neutralise(line, sizeof(line));
	if (log_foreground_flag && log_journal) {
		fprintf(stderr, "<%d>%s: %s\n", LOG_PRI(pri), log_name, line);
		fflush(stderr);
	} else if (log_foreground_flag) {
		fprintf(stderr, "%s: %s\n", log_name, line);
		fflush(stderr);
	} else
		syslog(pri, "%s: %s", log_name, line);
	errno = saved;
}

static void __attribute__((format(printf, 2, 3)))
log_line(int pri, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(pri, fmt, ap);
	va_end(ap);
}

static void
log_errno(int pri, const char *fmt, va_list ap)
{
	char	 msg[1024];
	int	 saved = errno;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_line(pri, "%s: %s", msg, strerror(saved));
	errno = saved;
}

void
log_warn(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_errno(LOG_WARNING, fmt, ap);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_WARNING, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_INFO, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list	 ap;

	if (log_verbose < 1)
		return;
	va_start(ap, fmt);
	log_vwrite(LOG_DEBUG, fmt, ap);
	va_end(ap);
}

#ifdef FUZZING
/*
 * Fuzz builds only (regress/fuzz/Makefile defines FUZZING; the daemon's
 * build never does, so none of this is in smsubmit): a harness that
 * feeds a process hostile input, where fatal() is the designed answer,
 * sets this to a function that longjmp()s back to it instead of letting
 * the process exit.  It must not return.
 */
void	(*log_fatal_hook)(void);
#endif

static void __attribute__((noreturn))
die(void)
{
#ifdef FUZZING
	if (log_fatal_hook != NULL)
		log_fatal_hook();
#endif
	exit(1);
}

void
fatal(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_errno(LOG_CRIT, fmt, ap);
	va_end(ap);
	die();
}

void
fatalx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_CRIT, fmt, ap);
	va_end(ap);
	die();
}

void
log_sanitise(char *dst, size_t len, const char *src)
{
	size_t	 i;

	if (len == 0)
		return;
	for (i = 0; i + 1 < len && src[i] != '\0'; i++)
		dst[i] = ((unsigned char)src[i] < 0x21 ||
		    (unsigned char)src[i] > 0x7e || src[i] == '(' ||
		    src[i] == ')' || src[i] == '\\') ? '_' : src[i];
	dst[i] = '\0';
}

const char *
log_escape(char *dst, size_t len, const char *src)
{
	static const char	 hex[] = "0123456789abcdef";
	const unsigned char	*p = (const unsigned char *)src;
	size_t			 o = 0;

	if (len == 0)
		return "";
	for (; *p != '\0'; p++) {
		if (*p > ' ' && *p < 0x7f && *p != '\\') {
			if (o + 1 >= len)
				break;
			dst[o++] = *p;
		} else if (*p == '\\') {
			if (o + 2 >= len)
				break;
			dst[o++] = '\\';
			dst[o++] = '\\';
		} else {
			/* whole escapes only: a cut one would read as text */
			if (o + 4 >= len)
				break;
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[*p >> 4];
			dst[o++] = hex[*p & 0x0f];
		}
	}
	dst[o] = '\0';
	return dst;
}
