/*
 * spare.c: the queue's files kept for reuse.  When a message leaves the
 * queue its files are not unlinked but renamed into tmp/ as spares and
 * emptied (cut to nothing, or zeroed: clear()), and the next commit
 * writes into a spare instead of creating a file.
 *
 * Why: creating a file allocates an inode, and on ext4 that is the
 * dearest step of a commit once a directory has seen many files come and
 * go, because the allocator steps over every recently freed inode of the
 * group (recently_deleted() in the kernel's profile).  On the machine the
 * bench runs on that cost 0.1 to 1 ms of system CPU per file; a commit
 * made two of them, and under load the queue process spent half a core
 * on nothing else.  With spares, messages per second with 100 messages
 * per session went from about 400 to about 850 there.  (Writing over a
 * spare without emptying it first saved a little more disk work but was
 * no faster, and would keep delivered mail on disk under another name.)
 *
 * The one danger is reuse before the removal is on disk.  If message X's
 * file becomes a spare, gets message Y's text and Y's data reaches the
 * disk while the rename that took X's file out of queue/ does not, a
 * crash could bring back queue/X.msg holding Y's text, delivered to X's
 * recipients.  So a spare is "settling" until queue/ has been fsync()ed
 * after it was made (every commit does that), and only then free for
 * reuse.  A crash while spares are being written leaves them in tmp/,
 * which the start-up sweep empties.
 *
 * Only files the queue alone ever had a descriptor to become spares: the
 * listener's tmp/ID files are still created and unlinked, so nothing the
 * listener may hold a descriptor to is ever part of a committed message.
 * (Reusing those too was tried: what a listener writes through a
 * descriptor it kept would then land in a later session's message, and
 * t_queue_ipc_random_sequences_follow_protocol_or_exit caught it.)
 */
#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "log.h"
#include "smsubmit.h"

#define SPARE_MAX	128	/* of each kind, free and settling */
#define ZERO_MAX	(64 * 1024)	/* octets a spare keeps its blocks for */

static struct pool {
	char		 tag;		/* in the name: tmp/spare-TAG.N */
	unsigned int	 free[SPARE_MAX];
	int		 nfree;
	unsigned int	 settling[SPARE_MAX];
	int		 nsettling;
} pools[] = {
	[SPARE_MSG] = { .tag = 'm' },
	[SPARE_ENV] = { .tag = 'e' },
};

static unsigned int	 serial;

static void
spare_name(struct pool *p, unsigned int n, char *path, size_t len)
{
	snprintf(path, len, "tmp/spare-%c.%u", p->tag, n);
}

/*
 * Make fd, a spare of size octets, hold no mail.  Cutting it to nothing
 * frees its blocks, which on a file system mounted with "discard" waits
 * for the disk: 71 us for a 10 KB message on the bench machine (ext4),
 * in the queue's loop, which with 8 clients sending 100 messages each
 * went a sixth faster without it.  Where the file system can, a small
 * spare is zeroed instead (fallocate(2) ZERO_RANGE, 4 us there: the
 * blocks stay allocated but read as zeros), and the commit that reuses
 * it writes over them and cuts it to its own length.  A large one is cut
 * all the same, so that spares hold at most SPARE_MAX * ZERO_MAX octets
 * of disk.
 */
static int
clear(int fd, off_t size)
{
#ifdef FALLOC_FL_ZERO_RANGE
	if (size > 0 && size <= ZERO_MAX && fallocate(fd,
	    FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 0, size) == 0)
		return 0;
#endif
	return ftruncate(fd, 0);
}

int
spare_open(enum spare_kind kind, const char *path)
{
	struct pool	*p = &pools[kind];
	char		 spare[64];
	int		 fd;

	while (p->nfree > 0) {
		spare_name(p, p->free[--p->nfree], spare, sizeof(spare));
		if (rename(spare, path) == -1) {
			log_warn("rename %s", spare);
			continue;
		}
		if ((fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC)) !=
		    -1) {
			return fd;
		}
		log_warn("open %s", path);
		unlink(path);
	}
	return open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600);
}

void
spare_keep(enum spare_kind kind, const char *path)
{
	struct pool	*p = &pools[kind];
	struct stat	 st;
	char		 spare[64];
	unsigned int	 n;
	int		 fd;

	if (p->nfree + p->nsettling >= SPARE_MAX) {
		if (unlink(path) == -1 && errno != ENOENT)
			log_warn("unlink %s", path);
		return;
	}
	n = serial++;
	spare_name(p, n, spare, sizeof(spare));
	if (rename(path, spare) == -1) {
		if (errno != ENOENT)
			log_warn("rename %s", path);
		return;
	}
	/*
	 * No mail is kept once it has left the queue.  Only a plain file
	 * of its own is emptied: never through a link, never one with
	 * other names (which the queue never makes, but someone might).
	 */
	if ((fd = open(spare, O_WRONLY | O_NOFOLLOW | O_CLOEXEC)) == -1 ||
	    fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
	    clear(fd, st.st_size) == -1) {
		if (fd != -1)
			close(fd);
		if (unlink(spare) == -1)
			log_warn("unlink %s", spare);
		return;
	}
	close(fd);
	p->settling[p->nsettling++] = n;
}

unsigned int
spare_mark(void)
{
	return serial;
}

void
spare_settled(unsigned int mark)
{
	struct pool	*p;
	size_t		 k;
	int		 i, n;

	/*
	 * The removals that made the spares kept before mark are on disk
	 * now; those kept since (while the syncer's fsync ran) wait for
	 * the next sync.  Serials grow, so they are a prefix.
	 */
	for (k = 0; k < sizeof(pools) / sizeof(pools[0]); k++) {
		p = &pools[k];
		for (n = 0; n < p->nsettling &&
		    (int)(p->settling[n] - mark) < 0; n++)
			p->free[p->nfree++] = p->settling[n];
		for (i = n; i < p->nsettling; i++)
			p->settling[i - n] = p->settling[i];
		p->nsettling -= n;
	}
}

int
spare_unsettled(void)
{
	return pools[SPARE_MSG].nsettling + pools[SPARE_ENV].nsettling;
}
