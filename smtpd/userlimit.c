/*
 * userlimit.c: "limit user messages N per D" and "limit user recipients N
 * per D", run by the queue process so that the counts are global however
 * many listeners ask.  The listener asks at each MAIL and RCPT; a yes is
 * counted at once, so two sessions of one user cannot both take the last
 * place.
 *
 * Each user has, for each kind, a sliding window cut into at most
 * WINDOW_STEPS steps of whole seconds: what was counted stays counted for
 * at least D and at most D plus two steps, so a limit is never lifted
 * early.  The counts are written to USERLIMIT_FILE in the queue directory
 * (tmp/ first, fsync, rename, fsync of the directory) at most once a
 * second while they change, and at exit, so that a restart does not give
 * a stolen password a fresh allowance.  The file stores start times, not
 * steps, so a changed D still reads back right.
 */
#include <sys/types.h>
#include <sys/tree.h>

#include <errno.h>
#include <event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "file.h"
#include "log.h"
#include "smsubmit.h"

#define WINDOW_STEPS	20
#define USERS_MAX	100000		/* users with a count at once */
#define LIMITS_FILE_MAX	(64 * 1024 * 1024)
#define LIMITS_TMP	"tmp/" USERLIMIT_FILE
#define LIMITS_MAGIC	"smsubmit-limits 1\n"

struct window {
	time_t		 step[WINDOW_STEPS + 1];	/* step number */
	uint32_t	 n[WINDOW_STEPS + 1];		/* counted in it */
};

struct user {
	SPLAY_ENTRY(user)	 entry;
	char		 name[256];
	struct window	 w[2];			/* by enum userlimit_kind */
};

SPLAY_HEAD(usertree, user);

static int	user_cmp(struct user *, struct user *);
SPLAY_PROTOTYPE(usertree, user, entry, user_cmp);
SPLAY_GENERATE(usertree, user, entry, user_cmp);

static struct {
	struct smsubmit_conf	*conf;
	struct usertree		 users;
	int			 nusers;
	int			 dirty;
	struct event		*timer;
} ul = { .users = SPLAY_INITIALIZER(&ul.users) };

static int
user_cmp(struct user *a, struct user *b)
{
	return strcmp(a->name, b->name);
}

static int
limit_of(enum userlimit_kind k, time_t *window)
{
	if (k == USERLIMIT_MESSAGES) {
		*window = ul.conf->user_messages_window;
		return ul.conf->user_messages;
	}
	*window = ul.conf->user_recipients_window;
	return ul.conf->user_recipients;
}

/* The length of a step and how many steps make the window. */
static time_t
step_len(time_t window, int *nsteps)
{
	time_t	 g = (window + WINDOW_STEPS - 1) / WINDOW_STEPS;

	if (g < 1)
		g = 1;
	*nsteps = (window + g - 1) / g;
	return g;
}

static uint64_t
window_count(struct window *w, time_t window, time_t now)
{
	time_t		 g, cur;
	uint64_t	 sum = 0;
	int		 i, nsteps;

	g = step_len(window, &nsteps);
	cur = now / g;
	for (i = 0; i <= WINDOW_STEPS; i++)
		if (w->n[i] > 0 && w->step[i] >= cur - nsteps &&
		    w->step[i] <= cur)
			sum += w->n[i];
	return sum;
}

/* Count n at time t; 0, or -1 if t is no longer in the window. */
static int
window_add(struct window *w, time_t window, time_t now, time_t t,
    uint32_t n)
{
	time_t	 g, cur, step;
	int	 i, nsteps;

	g = step_len(window, &nsteps);
	cur = now / g;
	step = t / g;
	if (step > cur)
		step = cur;	/* the clock went back */
	if (step < cur - nsteps)
		return -1;
	i = step % (WINDOW_STEPS + 1);
	if (w->step[i] != step) {
		w->step[i] = step;
		w->n[i] = 0;
	}
	if (w->n[i] > UINT32_MAX - n)
		w->n[i] = UINT32_MAX;
	else
		w->n[i] += n;
	return 0;
}

static int
user_idle(struct user *u, time_t now)
{
	time_t	 window;
	int	 k;

	for (k = USERLIMIT_MESSAGES; k <= USERLIMIT_RECIPIENTS; k++)
		if (limit_of(k, &window) > 0 &&
		    window_count(&u->w[k], window, now) > 0)
			return 0;
	return 1;
}

/* Forget the users whose every count has expired. */
static void
prune(time_t now)
{
	struct user	*u, *next;

	for (u = SPLAY_MIN(usertree, &ul.users); u != NULL; u = next) {
		next = SPLAY_NEXT(usertree, &ul.users, u);
		if (user_idle(u, now)) {
			SPLAY_REMOVE(usertree, &ul.users, u);
			free(u);
			ul.nusers--;
		}
	}
}

static struct user *
user_get(const char *name, time_t now)
{
	struct user	 key, *u;

	if (strlcpy(key.name, name, sizeof(key.name)) >= sizeof(key.name))
		return NULL;
	if ((u = SPLAY_FIND(usertree, &ul.users, &key)) != NULL)
		return u;
	if (ul.nusers >= USERS_MAX)
		prune(now);
	if (ul.nusers >= USERS_MAX) {
		log_warnx("%d users with sending counts: no room for more",
		    ul.nusers);
		return NULL;
	}
	if ((u = calloc(1, sizeof(*u))) == NULL)
		return NULL;
	strlcpy(u->name, name, sizeof(u->name));
	SPLAY_INSERT(usertree, &ul.users, u);
	ul.nusers++;
	return u;
}

static void
timer_cb(int fd, short ev, void *arg)
{
	userlimit_save();
}

int
userlimit_take(const char *name, enum userlimit_kind k)
{
	struct user	*u;
	struct timeval	 tv = { 1, 0 };
	time_t		 now = time(NULL), window;
	int		 max;

	if ((max = limit_of(k, &window)) <= 0)
		return 0;
	/* no room to count it: refused, the limit must hold */
	if ((u = user_get(name, now)) == NULL)
		return 1;
	if (window_count(&u->w[k], window, now) >= (uint64_t)max)
		return 1;
	window_add(&u->w[k], window, now, now, 1);
	if (!ul.dirty) {
		ul.dirty = 1;
		evtimer_add(ul.timer, &tv);
	}
	return 0;
}

void
userlimit_save(void)
{
	struct user	*u;
	struct buf	 out;
	struct timeval	 tv = { 1, 0 };
	time_t		 now = time(NULL), window, g;
	int		 fd, dfd, k, i, nsteps;
	size_t		 off;
	ssize_t		 w;

	if (!ul.dirty)
		return;
	ul.dirty = 0;
	prune(now);
	buf_init(&out, LIMITS_FILE_MAX);
	buf_printf(&out, LIMITS_MAGIC);
	SPLAY_FOREACH(u, usertree, &ul.users)
		for (k = USERLIMIT_MESSAGES; k <= USERLIMIT_RECIPIENTS; k++) {
			if (limit_of(k, &window) <= 0)
				continue;
			g = step_len(window, &nsteps);
			for (i = 0; i <= WINDOW_STEPS; i++)
				if (u->w[k].n[i] > 0 && u->w[k].step[i] >=
				    now / g - nsteps)
					buf_printf(&out, "%c %lld %u %s\n",
					    k == USERLIMIT_MESSAGES ? 'm' : 'r',
					    (long long)(u->w[k].step[i] * g),
					    u->w[k].n[i], u->name);
		}
	fd = open(LIMITS_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1) {
		log_warn("%s", LIMITS_TMP);
		goto fail;
	}
	for (off = 0; off < buf_used(&out); off += w)
		if ((w = write(fd, buf_head(&out) + off,
		    buf_used(&out) - off)) == -1) {
			if (errno == EINTR) {
				w = 0;
				continue;
			}
			log_warn("write %s", LIMITS_TMP);
			close(fd);
			goto fail;
		}
	if (fsync(fd) == -1 || close(fd) == -1) {
		log_warn("fsync %s", LIMITS_TMP);
		goto fail;
	}
	if (rename(LIMITS_TMP, USERLIMIT_FILE) == -1) {
		log_warn("rename %s", LIMITS_TMP);
		goto fail;
	}
	if ((dfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1) {
		if (fsync(dfd) == -1)
			log_warn("fsync of the queue directory");
		close(dfd);
	}
	buf_free(&out);
	return;
 fail:
	/* the counts are still in memory: try again in a second */
	unlink(LIMITS_TMP);
	buf_free(&out);
	ul.dirty = 1;
	evtimer_add(ul.timer, &tv);
}

/* Read back what userlimit_save() wrote; anything odd is skipped. */
static void
load(void)
{
	struct user	*u;
	char		*text, *line, *next, *name, *end;
	size_t		 len;
	time_t		 now = time(NULL), window;
	long long	 t;
	unsigned long	 n;
	int		 k, lines = 0, bad = 0;

	if ((text = file_read(USERLIMIT_FILE, LIMITS_FILE_MAX, &len)) ==
	    NULL) {
		if (errno != ENOENT)
			log_warn("%s: sending counts lost", USERLIMIT_FILE);
		return;
	}
	if (strncmp(text, LIMITS_MAGIC, strlen(LIMITS_MAGIC)) != 0) {
		log_warnx("%s: not a counts file, ignored", USERLIMIT_FILE);
		free(text);
		return;
	}
	for (line = text + strlen(LIMITS_MAGIC); *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) == NULL) {
			bad++;	/* cut short: cannot be, it was renamed */
			break;
		}
		*next++ = '\0';
		lines++;
		if ((line[0] != 'm' && line[0] != 'r') || line[1] != ' ')
			goto skip;
		k = line[0] == 'm' ? USERLIMIT_MESSAGES : USERLIMIT_RECIPIENTS;
		errno = 0;
		t = strtoll(line + 2, &end, 10);
		if (errno != 0 || end == line + 2 || *end != ' ' || t < 0)
			goto skip;
		n = strtoul(end + 1, &end, 10);
		if (errno != 0 || *end != ' ' || n == 0 || n > UINT32_MAX)
			goto skip;
		name = end + 1;
		if (*name == '\0' || strlen(name) >= sizeof(u->name))
			goto skip;
		if (limit_of(k, &window) <= 0)
			continue;	/* that limit is gone */
		if ((u = user_get(name, now)) == NULL)
			continue;
		window_add(&u->w[k], window, now, (time_t)t, (uint32_t)n);
		continue;
 skip:
		bad++;
	}
	free(text);
	prune(now);
	if (bad > 0)
		log_warnx("%s: %d bad lines skipped", USERLIMIT_FILE, bad);
	log_info("sending counts of %d users read back", ul.nusers);
}

void
userlimit_init(struct event_base *base, struct smsubmit_conf *conf)
{
	ul.conf = conf;
	if ((ul.timer = evtimer_new(base, timer_cb, NULL)) == NULL)
		fatalx("evtimer_new");
	if (conf->user_messages > 0 || conf->user_recipients > 0)
		load();
}
