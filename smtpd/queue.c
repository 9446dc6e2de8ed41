/*
 * queue.c: the "[queue]" process, chrooted to the queue directory.
 *
 * Layout, relative to the queue directory:
 *	tmp/ID		a message being received (the listener writes it)
 *	tmp/ID.msg	the queue's own copy of it, made at the commit: its
 *			envelope, an empty line, the message
 *	queue/ID.msg	a committed message, never changed again
 *	queue/ID.env	its envelope once it changed (a deferral), which
 *			then counts instead of the one in ID.msg
 *	tmp/ID.env	such an envelope, being written
 *	corrupt/	committed files that could not be parsed
 *
 * The envelope's format, and its writing and reading, are envelope.c's.
 *
 * A message is committed by fdatasync() of tmp/ID.msg, its rename into
 * queue/ (the commit point) and fsync() of queue/.  Only then does the
 * listener hear "ok" and the client "250".  Keeping the envelope in the
 * same file is what makes that one sync of data per message: with the
 * envelope in a file of its own (the layout before, still read), each
 * message of a batch cost two fdatasync()s, and on the bench machine
 * (ext4) the second, a cache flush of its own, was most of the cost of
 * each further message in a batch: a batch of 3 took 1.07 ms of syncs
 * with two files per message and 0.73 with one, 6 messages 2.18 against
 * 1.07 (a micro-bench); with 8 clients sending 100 messages each, about
 * a fifth more messages a second.  The reports this process writes
 * itself (commit_now()) keep the older layout, ID.msg then ID.env, the
 * envelope renamed last.  On start-up everything in tmp/ is removed, and
 * so is a queue/ID.msg that starts with no envelope and has no ID.env (a
 * commit of the older layout that never finished) and an ID.env with no
 * ID.msg (a removal that never finished).
 *
 * Commits share that work (group commit).  A MSG_COMMIT only writes the
 * envelope and copies the message after it, into a spare file (spare.c:
 * no inode is allocated, which was the dearest step), and starts its
 * writeback.
 * Once the event loop has handled every request of the same read, one
 * pass waits for the data of them all (the first wait commits the
 * journal for the whole batch, the writes having overlapped), renames
 * them into place and syncs queue/ once for all: about two journal
 * commits per batch instead of three or four per message.  That pass
 * runs in the syncer's thread (syncer.c), so the loop goes on reading
 * requests meanwhile: a client saying DATA no longer waits for another
 * client's commit.  While a batch is synced the next gathers, and starts
 * when the syncer is done, so batches grow with the load by themselves,
 * and a lone message waits for nothing but its own syncs.  Measured on
 * the bench machine with 8 clients and two files a message: a batch of
 * about 3 messages took 1.8 ms, 1.6 of them in the fdatasync()s (hence
 * the one file a message, above).  Issuing them from several
 * threads at once, so that they share the journal's flushes, saved a
 * fifth to a third of the sync time in a micro-bench (4 to 8 messages a
 * batch): not enough to pay for a pool of threads here, so one it is.
 * A failure of one file fails only its message; a failed sync of queue/
 * fails every message of the batch, since none of them can be known to
 * be on disk.  Measured on the bench machine (ext4), one
 * syncfs() per batch was no faster than the fdatasync()s, and nothing
 * mattered as much as not allocating inodes.
 *
 * A message is removed (after delivery) by renaming its file, then its
 * ID.env if it has one, away into the spares, emptied, with no sync of
 * its own: a crash before the next sync of queue/ brings a delivered
 * message back and it is delivered again.  Mail is delivered at least
 * once, never lost.  The next commit's sync of queue/ settles the
 * removal, or a sync a second later when no commit comes.
 *
 * The listener faces the internet and may be subverted, so this process
 * treats it as OpenSSH's monitor treats its unprivileged child: each
 * session has at most one open message, in one state; each request says
 * in which states it may come (the table "requests"), and any other is
 * fatal: the process exits and the parent stops the daemon.  What the
 * listener can make it hold is bounded: open messages by "limit
 * sessions" (and a little slack for sessions that just ended), recipients
 * by "limit recipients", each field by its size, and the message by
 * "limit message-size", checked with fstat() before the commit.
 *
 * A committed message must not change under the queue, but the listener
 * holds a descriptor open for writing to the file it wrote, and no system
 * call takes that right back.  Renaming that file into queue/ would leave
 * a captured listener free to rewrite a message after its "250" (and
 * after the log line saying what was accepted).  So at the commit the
 * queue copies the file, exactly as large as fstat() said, into
 * tmp/ID.msg, a file the listener never had a descriptor for, and commits
 * that copy; tmp/ID is then removed, and what the listener may still
 * write goes to a file nobody reads.  The copy is made by the kernel
 * (copy_file_range(2), where file systems that can share blocks do so)
 * from pages just written, so it costs a memory copy, no extra disk
 * write: the original is removed before it would be written back.
 * Handing the listener a pipe instead would need no copy on disk but
 * would put every octet through this process and make the listener's
 * writes non-blocking, with a second stream to order against the IPC
 * channel: more code on both sides of the trust boundary for no gain.
 */
#include <sys/types.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "file.h"
#include "log.h"
#include "smsubmit.h"

/*
 * Where a session's message is.  The listener may send a request only in
 * the states the table "requests" gives it; M_NONE is a session without
 * an open message.
 */
enum mstate {
	M_NONE = 0x01,
	M_OPEN = 0x02,		/* file handed out: the envelope next */
	M_ENVELOPE = 0x04,	/* the envelope known: a recipient next */
	M_RCPT = 0x08,		/* recipients: more, or the commit */
	M_COMMIT = 0x10		/* in the next batch: nothing until it ends */
};

#define INCOMING_SLACK	64	/* open messages over "limit sessions" */
#define RECEIVED_MAX	4096	/* the listener's Received: field, over
				   "limit message-size" */

/* A message being received: the listener holds a descriptor to it. */
struct incoming {
	SPLAY_ENTRY(incoming)	 entry;
	TAILQ_ENTRY(incoming)	 batch;		/* M_COMMIT */
	uint32_t		 session;
	enum mstate		 state;
	int			 fd;		/* tmp/ID, read only */
	int			 mfd;		/* tmp/ID.msg, being committed */
	int			 installed;	/* renamed into queue/ */
	int			 error;		/* errno of the commit */
	struct qmsg		 m;
};

SPLAY_HEAD(incomingtree, incoming);
static int	incoming_cmp(struct incoming *, struct incoming *);
SPLAY_PROTOTYPE(incomingtree, incoming, entry, incoming_cmp);

static struct {
	struct smsubmit_conf	*conf;
	struct event_base	*base;
	struct ipc		*listener;
	struct event		*timer;
	struct incomingtree	 incoming;	/* by session */
	int			 nincoming;
	TAILQ_HEAD(, incoming)	 batch;		/* commits gathering */
	struct event		*batch_ev;
	struct syncing {			/* the batch the syncer has */
		TAILQ_HEAD(, incoming) list;
		int		 dirfd;
		int		 synced;	/* queue/ was fsync()ed */
		int		 dir_error;	/* errno of that fsync */
		unsigned int	 mark;		/* spare_mark() before it */
	}			 syncing;
	struct event		*settle_ev;	/* queue/'s sync after removals */
	TAILQ_HEAD(, qmsg)	 queue;
	int			 inflight;	/* messages with the relay */
	int			 dirfd;		/* queue/ */
	int			 stopping;	/* SIGTERM: no new batch */
	struct queue_stats	 stats;		/* for smsubmit -s */
} env;

static void	schedule(void);
static int	has_pending(struct qmsg *);

/* A free-text field from the listener: printable, no line breaks. */
static int
text_valid(const char *s, size_t max)
{
	size_t	 n = strlen(s);

	if (n >= max)
		return 0;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

/* Removals with no commit after them are settled this much later. */
static const struct timeval settle_after = { 1, 0 };

static int	sync_queue_dir(void);

static void
settle_cb(int fd, short ev, void *arg)
{
	(void)sync_queue_dir();
}

static void
message_remove(struct qmsg *m)
{
	char	 path[64];

	/*
	 * The message first: a lone ID.env is swept at start-up, where a
	 * lone ID.msg that starts with its envelope is a message.  Not
	 * synced here: the next commit's sync of queue/ settles it (see the
	 * top).
	 */
	snprintf(path, sizeof(path), "queue/%s.msg", m->id);
	spare_keep(SPARE_MSG, path);
	if (m->envfile) {
		snprintf(path, sizeof(path), "queue/%s.env", m->id);
		spare_keep(SPARE_ENV, path);
	}
	if (!evtimer_pending(env.settle_ev, NULL))
		evtimer_add(env.settle_ev, &settle_after);
	TAILQ_REMOVE(&env.queue, m, entry);
	scheduler_remove(m);
	envelope_clear(m);
	free(m);
}

/* --- recovery --- */

static void
quarantine(const char *id, const char *why)
{
	char	 from[64], to[64];

	log_warnx("message %s: %s, moved to corrupt/", id, why);
	snprintf(from, sizeof(from), "queue/%s.env", id);
	snprintf(to, sizeof(to), "corrupt/%s.env", id);
	if (rename(from, to) == -1 && errno != ENOENT)
		log_warn("rename %s", from);
	snprintf(from, sizeof(from), "queue/%s.msg", id);
	snprintf(to, sizeof(to), "corrupt/%s.msg", id);
	if (rename(from, to) == -1 && errno != ENOENT)
		log_warn("rename %s", from);
}

/* A message whose envelope is the head of queue/ID.msg; NULL if none. */
static struct qmsg *
load_head(const char *id, int *swept)
{
	struct qmsg	*m;
	char		 path[64];
	int		 fd, r;

	snprintf(path, sizeof(path), "queue/%s.msg", id);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1) {
		log_warn("message %s left alone: open", id);
		return NULL;
	}
	if ((m = calloc(1, sizeof(*m))) == NULL)
		fatal("calloc");
	r = envelope_read_head(fd, m);
	close(fd);
	if (r == 0 && strcmp(m->id, id) == 0)
		return m;
	envelope_clear(m);
	free(m);
	if (r == 1) {
		/* the older layout's commit, which never got its ID.env */
		if (unlink(path) == 0)
			(*swept)++;
	} else
		quarantine(id, "unreadable envelope");
	return NULL;
}

/*
 * An ID.env with no "body" says its message is all of ID.msg, as in the
 * older layout.  Should ID.msg start with an envelope of its own all the
 * same (an older queue's ID.env written over a newer ID.msg), the message
 * starts after it, and that must not go to the relay as text: *body is
 * set past it.  0 if path cannot be opened.
 */
static int
head_length(const char *path, const char *id, off_t *body)
{
	struct qmsg	 h;
	int		 fd, r;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1)
		return 0;
	r = envelope_read_head(fd, &h);
	close(fd);
	if (r == 0 && strcmp(h.id, id) == 0)
		*body = h.body;
	envelope_clear(&h);
	return 1;
}

/* A message whose envelope is queue/ID.env; NULL if none. */
static struct qmsg *
load_env(const char *id)
{
	struct qmsg	*m;
	struct stat	 st;
	char		 path[64], *text;
	size_t		 n;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		fatal("calloc");
	snprintf(path, sizeof(path), "queue/%s.env", id);
	if ((text = file_read(path, ENVELOPE_MAX, &n)) == NULL ||
	    envelope_parse(m, text) == -1 || strcmp(m->id, id) != 0) {
		free(text);
		envelope_clear(m);
		free(m);
		quarantine(id, "unreadable envelope");
		return NULL;
	}
	free(text);
	snprintf(path, sizeof(path), "queue/%s.msg", id);
	if (m->body == 0 && !head_length(path, id, &m->body)) {
		envelope_clear(m);
		free(m);
		quarantine(id, "message file unreadable");
		return NULL;
	}
	if (stat(path, &st) == -1 || st.st_size < m->body) {
		envelope_clear(m);
		free(m);
		quarantine(id, "message shorter than its envelope says");
		return NULL;
	}
	m->envfile = 1;
	return m;
}

static void
recover(void)
{
	DIR		*d;
	struct dirent	*de;
	struct qmsg	*m;
	struct stat	 st;
	char		 path[PATH_MAX + 16], id[QUEUE_ID_LEN + 1];
	char		 esc[LOG_ESCAPE_MAX(NAME_MAX)];
	size_t		 n;
	int		 loaded = 0, swept = 0;
	time_t		 now = time(NULL);

	if ((d = opendir("tmp")) == NULL)
		fatal("opendir tmp");
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "tmp/%s", de->d_name);
		if (unlink(path) == 0)
			swept++;
	}
	closedir(d);

	if ((d = opendir("queue")) == NULL)
		fatal("opendir queue");
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		n = strlen(de->d_name);
		memcpy(id, de->d_name, n < QUEUE_ID_LEN ? n : QUEUE_ID_LEN);
		id[n < QUEUE_ID_LEN ? n : QUEUE_ID_LEN] = '\0';
		if (n != QUEUE_ID_LEN + 4 || !envelope_id_valid(id)) {
			log_warnx("stray file queue/%s left alone",
			    log_escape(esc, sizeof(esc), de->d_name));
			continue;
		}
		if (strcmp(de->d_name + QUEUE_ID_LEN, ".msg") == 0) {
			snprintf(path, sizeof(path), "queue/%s.env", id);
			if (stat(path, &st) == 0)
				continue;	/* read with its ID.env */
			if (errno != ENOENT) {
				log_warn("message %s left alone: stat %s", id,
				    path);
				continue;
			}
			if ((m = load_head(id, &swept)) == NULL)
				continue;
		} else if (strcmp(de->d_name + QUEUE_ID_LEN, ".env") == 0) {
			snprintf(path, sizeof(path), "queue/%s.msg", id);
			if (stat(path, &st) == -1 && errno == ENOENT) {
				/* a removal that never finished */
				snprintf(path, sizeof(path), "queue/%s.env",
				    id);
				if (unlink(path) == 0)
					swept++;
				continue;
			}
			if ((m = load_env(id)) == NULL)
				continue;
		} else
			continue;
		/*
		 * Due when its envelope says: a deferred backlog stays
		 * deferred across a restart ("smsubmit -Q" makes it due),
		 * not later than the longest retry, whatever the clock did.
		 */
		if (m->next > now + env.conf->retry_max)
			m->next = now + env.conf->retry_max;
		TAILQ_INSERT_TAIL(&env.queue, m, entry);
		scheduler_add(m);
		loaded++;
	}
	closedir(d);
	fsync(env.dirfd);
	log_info("%d messages recovered, %d unfinished files removed",
	    loaded, swept);
}

/* --- incoming messages: what the listener may make the queue do --- */

static int
incoming_cmp(struct incoming *a, struct incoming *b)
{
	return a->session < b->session ? -1 : a->session > b->session;
}

SPLAY_GENERATE(incomingtree, incoming, entry, incoming_cmp);

static void
incoming_drop(struct incoming *in)
{
	char	 path[64];

	snprintf(path, sizeof(path), "tmp/%s", in->m.id);
	unlink(path);
	close(in->fd);
	SPLAY_REMOVE(incomingtree, &env.incoming, in);
	env.nincoming--;
	envelope_clear(&in->m);
	free(in);
}

/* A new file tmp/ID under a fresh random ID, opened with how. */
static int
file_create(char *id, char *path, size_t len, int how)
{
	uint8_t	 rnd[QUEUE_ID_LEN / 2];
	int	 fd = -1, i, tries;

	for (tries = 0; tries < 10; tries++) {
		arc4random_buf(rnd, sizeof(rnd));
		for (i = 0; i < (int)sizeof(rnd); i++)
			snprintf(id + 2 * i, 3, "%02x", rnd[i]);
		snprintf(path, len, "tmp/%s", id);
		fd = open(path, how | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd != -1 || errno != EEXIST)
			break;
	}
	return fd;
}

static enum queue_result
errno_result(int e)
{
	return (e == ENOSPC || e == EDQUOT) ? QUEUE_R_NOSPACE : QUEUE_R_TEMP;
}

/*
 * Copy exactly size octets of from into to, a file of our own: the
 * kernel copies (or shares the blocks, on a file system that can) where
 * copy_file_range(2) works, else read and write.  Offsets are explicit,
 * so the listener's file position means nothing here.  1 if from was
 * shorter than size (the listener truncated it), -1 on an error.
 */
static int
copy_data(int from, int to, off_t size)
{
	char	 buf[64 * 1024];
	off_t	 off = 0;
	ssize_t	 n, w;

#ifdef __linux__
	while (off < size) {
		off_t	 in = off;

		n = copy_file_range(from, &in, to, NULL, size - off, 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && off == 0 && (errno == EXDEV ||
		    errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP))
			break;	/* not here: read and write */
		if (n == -1)
			return -1;
		if (n == 0)
			return 1;
		off += n;
	}
	if (off == size)
		return 0;
#endif
	while (off < size) {
		if ((n = pread(from, buf, MINIMUM((off_t)sizeof(buf),
		    size - off), off)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			return 1;
		for (w = 0; w < n; ) {
			ssize_t	 k;

			if ((k = write(to, buf + w, n - w)) == -1) {
				if (errno == EINTR)
					continue;
				return -1;
			}
			w += k;
		}
		off += n;
	}
	return 0;
}

/*
 * What a listener may make this process hold: the largest limits any
 * configuration has had since the start.  A session opened before a
 * reload that lowered a limit keeps the limit it started with, and is
 * not a captured listener for going over the new one.
 */
static struct {
	int	 sessions;
	int	 recipients;
	size_t	 size;
} bound;

static void
bounds_raise(void)
{
	if (env.conf->max_sessions > bound.sessions)
		bound.sessions = env.conf->max_sessions;
	if (env.conf->max_recipients > bound.recipients)
		bound.recipients = env.conf->max_recipients;
	if (env.conf->max_message_size > bound.size)
		bound.size = env.conf->max_message_size;
}

static void
msg_create(struct incoming *none, struct ipc_msg *msg)
{
	struct incoming	*in;
	char		 path[64];
	int		 wfd = -1, saved;

	if (ipc_unpack(msg, "") == -1)
		fatalx("bad MSG_CREATE");
	if (env.nincoming >= bound.sessions + INCOMING_SLACK)
		fatalx("MSG_CREATE for session %08x: more open messages than "
		    "sessions", msg->peerid);
	if ((in = calloc(1, sizeof(*in))) == NULL) {
		ipc_send(env.listener, IMSG_MSG_FILE, msg->peerid, -1, "us",
		    (uint32_t)QUEUE_R_TEMP, "");
		return;
	}
	in->session = msg->peerid;
	in->mfd = -1;
	/*
	 * The listener gets a descriptor of its own, write only: it never
	 * reads a file, and shares no file position with ours.
	 */
	in->fd = file_create(in->m.id, path, sizeof(path), O_RDONLY);
	if (in->fd == -1 ||
	    (wfd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)) == -1) {
		saved = errno;
		log_warn("cannot create %s", path);
		ipc_send(env.listener, IMSG_MSG_FILE, msg->peerid, -1, "us",
		    (uint32_t)errno_result(saved), "");
		if (in->fd != -1) {
			close(in->fd);
			unlink(path);
		}
		free(in);
		return;
	}
	in->m.created = time(NULL);
	in->state = M_OPEN;
	SPLAY_INSERT(incomingtree, &env.incoming, in);
	env.nincoming++;
	ipc_send(env.listener, IMSG_MSG_FILE, msg->peerid, wfd, "us",
	    (uint32_t)QUEUE_OK, in->m.id);
}

/* The message a request names must be the session's open one. */
static void
same_message(struct incoming *in, const char *msgid, const char *what)
{
	if (strcmp(in->m.id, msgid) != 0)
		fatalx("%s for session %08x names another message", what,
		    in->session);
}

static void
msg_envelope(struct incoming *in, struct ipc_msg *msg)
{
	const char	*msgid, *from, *user, *helo, *client;
	uint32_t	 flags;

	if (ipc_unpack(msg, "sssssu", &msgid, &from, &user, &helo,
	    &client, &flags) == -1)
		fatalx("bad MSG_ENVELOPE");
	same_message(in, msgid, "MSG_ENVELOPE");
	if (!addr_mailbox_valid(from, ADDR_NULL_OK | ADDR_UTF8) ||
	    strlen(from) >= sizeof(in->m.from) ||
	    !text_valid(user, sizeof(in->m.user)) ||
	    !text_valid(helo, sizeof(in->m.helo)) ||
	    !text_valid(client, sizeof(in->m.client)) ||
	    (flags & ~(ENV_8BITMIME | ENV_SMTPUTF8)))
		fatalx("bad envelope from listener for session %08x",
		    in->session);
	strlcpy(in->m.from, from, sizeof(in->m.from));
	strlcpy(in->m.user, user, sizeof(in->m.user));
	strlcpy(in->m.helo, helo, sizeof(in->m.helo));
	strlcpy(in->m.client, client, sizeof(in->m.client));
	in->m.flags = flags;
	in->state = M_ENVELOPE;
}

static void
msg_rcpt(struct incoming *in, struct ipc_msg *msg)
{
	const char	*msgid, *rcpt;

	if (ipc_unpack(msg, "ss", &msgid, &rcpt) == -1)
		fatalx("bad MSG_RCPT");
	same_message(in, msgid, "MSG_RCPT");
	if (!addr_mailbox_valid(rcpt, ADDR_UTF8 | ADDR_POSTMASTER) ||
	    strlen(rcpt) >= ADDR_MAX)
		fatalx("bad recipient from listener for session %08x",
		    in->session);
	if (in->m.nrcpts >= bound.recipients)
		fatalx("MSG_RCPT for session %08x: more recipients than the "
		    "limit", in->session);
	if (envelope_rcpt_add(&in->m, rcpt, RCPT_PENDING) == -1)
		fatal("rcpt_add");
	in->state = M_RCPT;
}

/* Close and remove a file of ours that will not be committed; errno kept. */
static void
discard(int fd, const char *path)
{
	int	 saved = errno;

	close(fd);
	unlink(path);
	errno = saved;
}

/* Start writing fd's data to disk now, so that a batch's syncs overlap. */
static void
start_writeback(int fd)
{
#ifdef SYNC_FILE_RANGE_WRITE
	(void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#else
	(void)fd;
#endif
}

/*
 * tmp/ID.env for m, written over a spare but not synced: its descriptor,
 * or -1 and errno with nothing left behind.
 */
static int
envelope_stage(const struct qmsg *m, char *path, size_t len)
{
	off_t	 end;
	int	 fd;

	snprintf(path, len, "tmp/%s.env", m->id);
	if ((fd = spare_open(SPARE_ENV, path)) == -1)
		return -1;
	if (envelope_write(fd, m) == -1 ||
	    (end = lseek(fd, 0, SEEK_CUR)) == -1 || ftruncate(fd, end) == -1) {
		discard(fd, path);
		return -1;
	}
	start_writeback(fd);
	return fd;
}

/*
 * Rename the synced message file mpath of m into queue/, and its synced
 * envelope tmp/ID.env after it if it has one; on failure neither is
 * there.
 */
static int
install(const struct qmsg *m, const char *mpath)
{
	char	 epath[64], msgpath[64], envpath[64];
	int	 saved;

	snprintf(epath, sizeof(epath), "tmp/%s.env", m->id);
	snprintf(msgpath, sizeof(msgpath), "queue/%s.msg", m->id);
	snprintf(envpath, sizeof(envpath), "queue/%s.env", m->id);
	if (rename(mpath, msgpath) == -1)
		return -1;
	if (m->envfile && rename(epath, envpath) == -1) {
		saved = errno;
		unlink(msgpath);
		errno = saved;
		return -1;
	}
	return 0;
}

/* Take an installed m out of queue/ again: queue/ could not be synced. */
static void
uninstall(const struct qmsg *m)
{
	char	 path[64];

	if (m->envfile) {
		snprintf(path, sizeof(path), "queue/%s.env", m->id);
		unlink(path);
	}
	snprintf(path, sizeof(path), "queue/%s.msg", m->id);
	unlink(path);
}

/* queue/ was synced after mark: the removals before it are settled. */
static void
settled(unsigned int mark)
{
	spare_settled(mark);
	if (spare_unsettled() == 0)
		evtimer_del(env.settle_ev);
}

/* queue/ on disk, and with it every rename and removal made so far. */
static int
sync_queue_dir(void)
{
	unsigned int	 mark = spare_mark();

	if (fsync(env.dirfd) == -1) {
		log_warn("fsync of the queue directory");
		return -1;
	}
	settled(mark);
	return 0;
}

/*
 * Commit the message file path (fd, written) with the envelope m at once,
 * alone, in the older layout (the envelope in ID.env): for the reports
 * this process writes itself.  On failure nothing is left in queue/ and
 * errno says why; path is the caller's to remove.
 */
static int
commit_now(int fd, const char *path, struct qmsg *m)
{
	char	 epath[64];
	int	 efd, saved;

	m->body = 0;
	m->envfile = 1;
	if ((efd = envelope_stage(m, epath, sizeof(epath))) == -1)
		return -1;
	if (fdatasync(fd) == -1 || fdatasync(efd) == -1 ||
	    install(m, path) == -1) {
		discard(efd, epath);
		return -1;
	}
	close(efd);
	if (sync_queue_dir() == -1) {
		saved = errno;
		uninstall(m);
		errno = saved;
		return -1;
	}
	return 0;
}

/* Take a committed message into the schedule. */
static struct qmsg *
enqueue(struct qmsg *src)
{
	struct qmsg	*m;

	if ((m = malloc(sizeof(*m))) == NULL)
		fatal("malloc");
	*m = *src;
	src->rcpts = NULL;
	src->nrcpts = 0;
	m->next = 0;
	TAILQ_INSERT_TAIL(&env.queue, m, entry);
	scheduler_add(m);
	return m;
}

/*
 * The envelope, then what the listener wrote to tmp/ID, written over a
 * spare as tmp/ID.msg, a file it never had a descriptor for, not synced
 * yet; -1 and errno on failure, nothing left.
 */
static int
snapshot(struct incoming *in, char *path, size_t len)
{
	struct stat	 st;
	off_t		 head;
	int		 fd, r;

	if (fstat(in->fd, &st) == -1)
		return -1;
	if (!S_ISREG(st.st_mode) || st.st_size < 0 || (uintmax_t)st.st_size >
	    bound.size + RECEIVED_MAX)
		fatalx("MSG_COMMIT for session %08x: message of %lld octets, "
		    "over the size limit", in->session,
		    (long long)st.st_size);
	snprintf(path, len, "tmp/%s.msg", in->m.id);
	if ((fd = spare_open(SPARE_MSG, path)) == -1)
		return -1;
	in->m.body = 0;
	in->m.envfile = 0;
	if (envelope_write_head(fd, &in->m) == -1 ||
	    (head = lseek(fd, 0, SEEK_CUR)) == -1) {
		discard(fd, path);
		return -1;
	}
	if ((r = copy_data(in->fd, fd, st.st_size)) == 1)
		fatalx("MSG_COMMIT for session %08x: the message shrank "
		    "while it was copied", in->session);
	if (r == -1 || ftruncate(fd, head + st.st_size) == -1) {
		discard(fd, path);
		return -1;
	}
	start_writeback(fd);
	in->m.body = head;
	return fd;
}

/* The end of a commit: the listener hears how it went. */
static void
commit_done(struct incoming *in)
{
	struct qmsg	*m;
	char		 efrom[LOG_ESCAPE_MAX(ADDR_MAX)];
	char		 euser[LOG_ESCAPE_MAX(sizeof(m->user))];
	char		 path[64];

	if (in->mfd != -1)
		close(in->mfd);
	if (in->error != 0) {
		if (!in->installed && in->mfd != -1) {
			snprintf(path, sizeof(path), "tmp/%s.msg", in->m.id);
			unlink(path);
		}
		errno = in->error;
		log_warn("message %s: commit failed", in->m.id);
		ipc_send(env.listener, IMSG_MSG_RESULT, in->session, -1, "us",
		    (uint32_t)errno_result(in->error), in->m.id);
		incoming_drop(in);
		return;
	}
	m = enqueue(&in->m);
	ipc_send(env.listener, IMSG_MSG_RESULT, in->session, -1, "us",
	    (uint32_t)QUEUE_OK, m->id);
	log_info("session %08x message %s committed: from=<%s> rcpts=%d "
	    "user=%s", in->session, m->id, log_escape(efrom, sizeof(efrom),
	    m->from), m->nrcpts, log_escape(euser, sizeof(euser), m->user));
	incoming_drop(in);
}

/*
 * The syncer's job (syncer.c: system calls only, on what sb holds).  The
 * batch's writeback is under way: wait for each file's data, rename each
 * into queue/, then one sync of queue/ for them all.
 */
static void
batch_sync(void *arg)
{
	struct syncing	*sb = arg;
	struct incoming	*in;
	char		 path[64];
	int		 installed = 0;

	TAILQ_FOREACH(in, &sb->list, batch) {
		snprintf(path, sizeof(path), "tmp/%s.msg", in->m.id);
		if (fdatasync(in->mfd) == -1 || install(&in->m, path) == -1)
			in->error = errno;
		else {
			in->installed = 1;
			installed++;
		}
	}
	sb->dir_error = 0;
	sb->synced = 0;
	if (installed == 0)
		return;
	if (fsync(sb->dirfd) == 0)
		sb->synced = 1;
	else {
		sb->dir_error = errno;
		TAILQ_FOREACH(in, &sb->list, batch)
			if (in->installed && in->error == 0) {
				uninstall(&in->m);
				in->error = sb->dir_error;
			}
	}
}

static void	batch_cb(int, short, void *);

/* Back in the loop: the replies, and the next batch if one gathered. */
static void
batch_done(void *arg)
{
	struct syncing	*sb = arg;
	struct incoming	*in;

	if (sb->dir_error != 0) {
		errno = sb->dir_error;
		log_warn("fsync of the queue directory");
	} else if (sb->synced)
		settled(sb->mark);
	while ((in = TAILQ_FIRST(&sb->list)) != NULL) {
		TAILQ_REMOVE(&sb->list, in, batch);
		commit_done(in);
	}
	schedule();
	if (!env.stopping && !TAILQ_EMPTY(&env.batch))
		batch_cb(-1, EV_TIMEOUT, NULL);
}

/*
 * The batch: every commit that came while the last was synced, or that
 * the last read brought.  Only after its syncs any reply.
 */
static void
batch_cb(int fd, short ev, void *arg)
{
	struct syncing	*sb = &env.syncing;

	if (TAILQ_EMPTY(&env.batch) || syncer_busy())
		return;		/* batch_done() starts it */
	TAILQ_CONCAT(&sb->list, &env.batch, batch);
	sb->dirfd = env.dirfd;
	sb->mark = spare_mark();
	syncer_run(batch_sync, batch_done, sb);
}

static void
msg_commit(struct incoming *in, struct ipc_msg *msg)
{
	const char	*msgid;
	char		 path[64];

	if (ipc_unpack(msg, "s", &msgid) == -1)
		fatalx("bad MSG_COMMIT");
	same_message(in, msgid, "MSG_COMMIT");
	if ((in->mfd = snapshot(in, path, sizeof(path))) == -1) {
		in->error = errno;
		commit_done(in);
		return;
	}
	in->state = M_COMMIT;
	TAILQ_INSERT_TAIL(&env.batch, in, batch);
	/* after the rest of this read: the batch is what it brought */
	event_active(env.batch_ev, EV_TIMEOUT, 0);
}

static void
msg_abort(struct incoming *in, struct ipc_msg *msg)
{
	const char	*msgid;

	if (ipc_unpack(msg, "s", &msgid) == -1)
		fatalx("bad MSG_ABORT");
	same_message(in, msgid, "MSG_ABORT");
	incoming_drop(in);
}

/*
 * What the listener may send, and in which states of the session's
 * message.  Whatever is not here, or comes in another state, is fatal.
 */
static const struct {
	enum msg_type	  type;
	int		  states;
	void		(*handler)(struct incoming *, struct ipc_msg *);
} requests[] = {
	{ IMSG_MSG_CREATE,	M_NONE,			msg_create },
	{ IMSG_MSG_ENVELOPE,	M_OPEN,			msg_envelope },
	{ IMSG_MSG_RCPT,	M_ENVELOPE | M_RCPT,	msg_rcpt },
	{ IMSG_MSG_COMMIT,	M_RCPT,			msg_commit },
	{ IMSG_MSG_ABORT,	M_OPEN | M_ENVELOPE | M_RCPT, msg_abort },
};

static const char *
mstate_name(int state)
{
	switch (state) {
	case M_NONE:
		return "no open message";
	case M_OPEN:
		return "a file handed out";
	case M_ENVELOPE:
		return "an envelope and no recipient";
	case M_COMMIT:
		return "a commit under way";
	default:
		return "recipients";
	}
}

/* May this user send one more message or recipient?  Counted if so. */
static void
limit_request(struct ipc_msg *msg)
{
	struct incoming	*in;
	char		*user;

	/* asked only for a limit that is set, by an authed user */
	if (ipc_unpack(msg, "s", &user) == -1 || *user == '\0' ||
	    !text_valid(user, sizeof(in->m.user)) ||
	    (msg->type == IMSG_LIMIT_MAIL ?
	    env.conf->user_messages : env.conf->user_recipients) == 0)
		fatalx("bad LIMIT request from listener");
	ipc_send(env.listener, IMSG_LIMIT_RESULT, msg->peerid, -1, "u",
	    (uint32_t)userlimit_take(user, msg->type == IMSG_LIMIT_MAIL ?
	    USERLIMIT_MESSAGES : USERLIMIT_RECIPIENTS));
}

static void
listener_dispatch(struct ipc *ipc, struct ipc_msg *msg, void *arg)
{
	struct incoming	*in, key;
	size_t		 i;
	int		 state;

	if (msg == NULL) {
		/* it finished its sessions, or the parent reports its death */
		log_debug("listener gone, exiting");
		userlimit_save();
		exit(0);
	}
	if (msg->fd != -1)
		fatalx("unexpected descriptor from listener");
	/* not about a message: the counters, a user's limits */
	switch (msg->type) {
	case IMSG_STATS:
		control_stats(msg);
		return;
	case IMSG_LIMIT_MAIL:
	case IMSG_LIMIT_RCPT:
		limit_request(msg);
		return;
	}
	for (i = 0; i < sizeof(requests) / sizeof(requests[0]); i++)
		if (requests[i].type == msg->type)
			break;
	if (i == sizeof(requests) / sizeof(requests[0]))
		fatalx("unexpected message %u from listener", msg->type);
	key.session = msg->peerid;
	in = SPLAY_FIND(incomingtree, &env.incoming, &key);
	state = in == NULL ? M_NONE : in->state;
	if (!(requests[i].states & state))
		fatalx("message %u from listener for session %08x with %s",
		    msg->type, msg->peerid, mstate_name(state));
	requests[i].handler(in, msg);
}

/* --- delivery --- */

/*
 * Replace queue/ID.env with m's envelope as it is now: written and
 * synced in tmp/, renamed over the old one, queue/ synced.
 */
static int
envelope_update(struct qmsg *m)
{
	char	 tmp[64], path[64];
	int	 fd;

	if ((fd = envelope_stage(m, tmp, sizeof(tmp))) == -1)
		goto fail;
	snprintf(path, sizeof(path), "queue/%s.env", m->id);
	if (fdatasync(fd) == -1 || rename(tmp, path) == -1) {
		discard(fd, tmp);
		goto fail;
	}
	close(fd);
	m->envfile = 1;
	if (sync_queue_dir() == -1)
		return -1;
	return 0;
 fail:
	log_warn("message %s: cannot update envelope", m->id);
	return -1;
}

/*
 * Write a DSN of that kind about m and commit it to the queue like any
 * message, to the sender (not null: the caller saw to that), with a null
 * sender.  Its queue ID goes to id; -1 to try again later.
 */
static int
dsn_commit(struct qmsg *m, enum dsn_kind kind, char *id)
{
	struct qmsg	 b;
	char		 path[64], msgpath[64];
	int		 fd, msgfd, r;

	memset(&b, 0, sizeof(b));
	snprintf(msgpath, sizeof(msgpath), "queue/%s.msg", m->id);
	if ((fd = file_create(b.id, path, sizeof(path), O_RDWR)) == -1) {
		log_warn("message %s: cannot create a report", m->id);
		return -1;
	}
	if ((msgfd = open(msgpath, O_RDONLY | O_CLOEXEC)) == -1 ||
	    lseek(msgfd, m->body, SEEK_SET) == -1) {
		if (msgfd != -1)
			close(msgfd);
		log_warn("message %s: cannot read", m->id);
		close(fd);
		unlink(path);
		return -1;
	}
	r = bounce_write(fd, env.conf, m, b.id, msgfd, kind);
	close(msgfd);
	b.created = time(NULL);
	b.flags = m->flags;
	strlcpy(b.helo, env.conf->hostname, sizeof(b.helo));
	strlcpy(b.client, "localhost", sizeof(b.client));
	if (r == -1 || envelope_rcpt_add(&b, m->from, RCPT_PENDING) == -1 ||
	    commit_now(fd, path, &b) == -1) {
		log_warn("message %s: cannot commit a report", m->id);
		close(fd);
		unlink(path);
		envelope_clear(&b);
		return -1;
	}
	close(fd);
	strlcpy(id, b.id, QUEUE_ID_LEN + 1);
	enqueue(&b);
	return 0;
}

/*
 * Tell the sender about RCPT_FAILED recipients with a DSN.  0 once they
 * are told (or cannot be: a null sender is never bounced), -1 to try
 * again later.
 */
static int
bounce(struct qmsg *m, int expired)
{
	char	 id[QUEUE_ID_LEN + 1];
	char	 esc[LOG_ESCAPE_MAX(ADDR_MAX)];
	int	 i;

	if (m->from[0] == '\0')
		log_info("message %s: no bounce for a null sender", m->id);
	else {
		if (dsn_commit(m, expired ? DSN_EXPIRED : DSN_FAILED,
		    id) == -1)
			return -1;
		env.stats.bounces++;
		log_info("message %s: bounce %s sent to <%s>", m->id, id,
		    log_escape(esc, sizeof(esc), m->from));
	}
	for (i = 0; i < m->nrcpts; i++)
		if (m->rcpts[i].state == RCPT_FAILED)
			m->rcpts[i].state = RCPT_BOUNCED;
	return 0;
}

/*
 * "queue delay-warning": once a message still has deferred recipients
 * that long after it came, its sender hears so, once.  The envelope
 * keeps when (the caller writes it next), so a restart does not warn
 * again; a crash between the two may, which is the lesser harm.  A null
 * sender, which every report has, is never warned.  If the report cannot
 * be made now, the next deferral tries again.
 */
static void
delay_warning(struct qmsg *m, time_t now)
{
	char	 id[QUEUE_ID_LEN + 1];
	char	 esc[LOG_ESCAPE_MAX(ADDR_MAX)];

	if (env.conf->delay_warning == 0 || m->warned != 0 ||
	    m->from[0] == '\0' || now - m->created < env.conf->delay_warning)
		return;
	if (dsn_commit(m, DSN_DELAYED, id) == -1)
		return;
	m->warned = now;
	log_info("message %s: delayed for %llds, warning %s sent to <%s>",
	    m->id, (long long)(now - m->created), id,
	    log_escape(esc, sizeof(esc), m->from));
}

/*
 * An attempt at m is over, or m had only a bounce to make: remove it
 * when nothing is left to do, else set its next attempt.  1 if m is
 * gone.
 */
static int
attempt_over(struct qmsg *m)
{
	time_t	 now = time(NULL);
	char	 esc[LOG_ESCAPE_MAX(sizeof(m->error))];
	int	 i, pending = 0, done = 0, failed = 0, expired = 0;
	struct timespec	 ts;

	for (i = 0; i < m->nrcpts; i++)
		if (m->rcpts[i].state == RCPT_PENDING)
			pending++;
	if (m->inflight) {
		m->inflight = 0;
		env.inflight--;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		env.stats.relay_attempts++;
		env.stats.relay_usec += (ts.tv_sec - m->relay_start.tv_sec) *
		    1000000LL + (ts.tv_nsec - m->relay_start.tv_nsec) / 1000;
		if (pending > 0)
			env.stats.relay_failures++;
	}
	if (pending > 0 && now - m->created >= env.conf->queue_lifetime) {
		expired = 1;
		for (i = 0; i < m->nrcpts; i++) {
			if (m->rcpts[i].state != RCPT_PENDING)
				continue;
			m->rcpts[i].state = RCPT_FAILED;
			strlcpy(m->rcpts[i].reply, "delivery time expired: ",
			    sizeof(m->rcpts[i].reply));
			strlcat(m->rcpts[i].reply, m->error,
			    sizeof(m->rcpts[i].reply));
		}
		log_info("message %s: expired after %llds", m->id,
		    (long long)(now - m->created));
		pending = 0;
	}
	for (i = 0; i < m->nrcpts; i++) {
		if (m->rcpts[i].state == RCPT_DONE)
			done++;
		else if (m->rcpts[i].state == RCPT_FAILED)
			failed++;
	}
	if (failed > 0 && bounce(m, expired) == -1)
		pending++;	/* keep it until the bounce can be made */
	if (pending == 0) {
		log_info("message %s: delivered to %d of %d recipients, "
		    "removed", m->id, done, m->nrcpts);
		message_remove(m);
		return 1;
	} else {
		if (has_pending(m))
			delay_warning(m, now);
		m->attempts++;
		m->next = now + scheduler_backoff(env.conf, m->attempts);
		log_info("message %s: %d recipients deferred (%s), retry in "
		    "%llds", m->id, pending, log_escape(esc, sizeof(esc),
		    m->error), (long long)(m->next - now));
		envelope_update(m);
		scheduler_add(m);
	}
	return 0;
}

/* The relay's event: an attempt at m is over. */
static void
relay_done(struct qmsg *m)
{
	if (!m->inflight)
		fatalx("relay: a result for message %s it was not given",
		    m->id);
	attempt_over(m);
	schedule();
}

/* The relay's event: it works again after a failure. */
static void
relay_back(void)
{
	/* the backlog need not wait its turn */
	scheduler_all_now();
	log_info("relay %s is back, draining the queue", env.conf->relay_name);
	schedule();
}

const struct qmsg *
queue_first(void)
{
	return TAILQ_FIRST(&env.queue);
}

const struct qmsg *
queue_next(const struct qmsg *m)
{
	return TAILQ_NEXT(m, entry);
}

int
queue_flush(void)
{
	int	 n = scheduler_count();

	scheduler_all_now();
	relay_flush();
	schedule();
	return n;
}

void
queue_stats(struct queue_stats *st)
{
	struct qmsg	*m;
	time_t		 now = time(NULL), oldest = now;

	*st = env.stats;
	st->depth = 0;
	TAILQ_FOREACH(m, &env.queue, entry) {
		st->depth++;
		if (m->created < oldest)
			oldest = m->created;
	}
	st->oldest = now - oldest;
}

static int
has_pending(struct qmsg *m)
{
	int	 i;

	for (i = 0; i < m->nrcpts; i++)
		if (m->rcpts[i].state == RCPT_PENDING)
			return 1;
	return 0;
}

static void
timer_cb(int fd, short ev, void *arg)
{
	schedule();
}

/*
 * Hand due messages to the relay, the earliest first, while it has room,
 * or sleep until one is due.  A relay with no room reports an attempt's
 * end, which runs this again.
 */
static void
schedule(void)
{
	struct qmsg	*m;
	struct timeval	 tv;
	time_t		 now = time(NULL), wake = 0, r;
	int		 slots = relay_free_slots(), waiting = 0;

	while ((m = scheduler_first()) != NULL && m->next <= now) {
		if (has_pending(m) && slots == 0) {
			waiting = 1;
			break;
		}
		scheduler_remove(m);
		if (!has_pending(m)) {
			/* only a bounce to make, which joins the queue */
			attempt_over(m);
			continue;
		}
		slots--;
		m->inflight = 1;
		env.inflight++;
		clock_gettime(CLOCK_MONOTONIC, &m->relay_start);
		relay_deliver(m);
	}
	if (m != NULL && m->next > now)
		wake = m->next;
	/* a down relay: those due wait for its retry */
	if (waiting && (r = relay_retry_at()) > now && (wake == 0 || r < wake))
		wake = r;
	evtimer_del(env.timer);
	if (wake == 0)
		return;
	tv.tv_sec = wake > now ? wake - now : 0;
	tv.tv_usec = 0;
	evtimer_add(env.timer, &tv);
}

/* SIGHUP: retry, lifetime and relay settings count from now on. */
static void
parent_dispatch(struct ipc *ipc, struct ipc_msg *msg, void *arg)
{
	char	 relay[sizeof(env.conf->relay_name)];
	int	 conns = env.conf->relay_connections;

	if (msg == NULL)
		fatalx("parent went away");
	if (msg->type != IMSG_RECONF || msg->fd != -1)
		fatalx("unexpected message %u from parent", msg->type);
	strlcpy(relay, env.conf->relay_name, sizeof(relay));
	if (proc_reconf(msg, env.conf) == -1)
		return;
	bounds_raise();
	if (conns != env.conf->relay_connections) {
		log_info("relay connections %d from now on",
		    env.conf->relay_connections);
		relay_reconf();
	}
	/* a new relay host is worth a try now, not after the old's backoff */
	if (strcmp(relay, env.conf->relay_name) != 0) {
		log_info("relay to %s from now on", env.conf->relay_name);
		relay_moved();
	}
	schedule();
}

static int
queue_count(void)
{
	struct qmsg	*m;
	int		 n = 0;

	TAILQ_FOREACH(m, &env.queue, entry)
		n++;
	return n;
}

static void
signal_cb(int sig, short ev, void *arg)
{
	/*
	 * The batch the syncer has is finished and answered first.  What
	 * gathered behind it was never begun nor answered: no 250 is owed.
	 */
	env.stopping = 1;
	syncer_wait();
	ipc_flush(env.listener);
	userlimit_save();
	log_info("stopping, %d messages in the queue", queue_count());
	exit(0);
}

void
queue_main(struct smsubmit_conf *conf, struct proc_peers *peers)
{
	struct event	*sterm;

	env.conf = conf;
	bounds_raise();
	SPLAY_INIT(&env.incoming);
	TAILQ_INIT(&env.queue);
	TAILQ_INIT(&env.batch);
	TAILQ_INIT(&env.syncing.list);
	if (peers->listener == -1)
		fatalx("queue started without the listener");
	proc_drop(conf->queue_user, conf->queue_dir);
	umask(077);
	if ((env.dirfd = open("queue", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	    -1)
		fatal("open queue directory");
	recover();

	if ((env.base = event_base_new()) == NULL)
		fatalx("event_base_new");
	ipc_attach(peers->parent, env.base, parent_dispatch, NULL);
	env.listener = ipc_new(env.base, peers->listener, "listener",
	    listener_dispatch, NULL);
	env.timer = evtimer_new(env.base, timer_cb, NULL);
	if ((env.batch_ev = event_new(env.base, -1, 0, batch_cb, NULL)) ==
	    NULL || (env.settle_ev = evtimer_new(env.base, settle_cb,
	    NULL)) == NULL)
		fatalx("event_new");
	sterm = evsignal_new(env.base, SIGTERM, signal_cb, NULL);
	if (env.timer == NULL || sterm == NULL ||
	    evsignal_add(sterm, NULL) == -1)
		fatalx("evsignal");
	relay_init(env.base, conf, relay_done, relay_back);
	userlimit_init(env.base, conf);
	control_listen(env.base, env.listener);
	schedule();
	syncer_start(env.base);
	sandbox_enter("queue", peers->parent->fd);
	ipc_send(peers->parent, IMSG_READY, 0, -1, "");
	event_base_dispatch(env.base);
	fatalx("event loop ended");
}
