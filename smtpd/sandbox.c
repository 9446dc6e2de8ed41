/*
 * sandbox.c: the system calls each child may make once it is set up.
 *
 * On Linux a seccomp filter (libseccomp) with no_new_privs allows a list
 * of calls per process; anything else raises SIGSYS, whose handler sends
 * the call's number to the parent over the IPC socket (a frame built by
 * hand, since only write(2) is safe there) and exits.  The parent names
 * the call in its log and shuts the daemon down.  On OpenBSD, pledge(2)
 * says the same with promises.
 */
#include <sys/types.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "smsubmit.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

#ifdef __linux__
#include <seccomp.h>

static int	 report_fd = -1;

/* Every child: memory, time, randomness, its sockets, libevent. */
static const char *base_calls[] = {
	"read", "write", "readv", "writev", "close", "exit", "exit_group",
	"rt_sigreturn", "rt_sigprocmask", "rt_sigaction", "brk",
	"munmap", "mremap", "madvise", "epoll_wait",
	"epoll_pwait", "epoll_ctl", "clock_gettime", "gettimeofday", "time",
	"getpid", "gettid", "getrandom", "recvmsg", "sendmsg", "sendto",
	"recvfrom", "fstat", "newfstatat", "fcntl", "futex", "lseek", "poll",
	"ppoll", "restart_syscall", "sched_yield", "getuid", "geteuid",
	"getgid", "getegid", "clock_nanosleep", "nanosleep", NULL
};

/* The listener: accept and talk on sockets it has; no files, no exec. */
static const char *listener_calls[] = {
	"accept4", "accept", "getsockname", "getpeername", "shutdown", NULL
};

/* The queue: its directory and connections to the relay host. */
static const char *queue_calls[] = {
	"openat", "open", "unlink", "unlinkat", "rename", "renameat",
	"renameat2", "fsync", "fdatasync", "getdents64", "dup", "dup2",
	"dup3", "socket", "connect", "getsockopt", "setsockopt", "accept4",
	"getsockname", "shutdown", "statx", "stat", "lstat", "ftruncate",
	"pread64", "copy_file_range", "sync_file_range", "fallocate", NULL
};

/*
 * Auth: Cyrus SASL reads its password store (files, or a socket to
 * saslauthd or a database) on each exchange.
 */
static const char *auth_calls[] = {
	"openat", "open", "stat", "lstat", "statx", "access", "faccessat",
	"faccessat2", "readlink", "readlinkat", "getdents64", "flock",
	"pread64", "pwrite64", "uname", "socket", "connect", "getsockname",
	"getpeername", "setsockopt", "getsockopt", "dup", "dup2", "dup3",
	"sysinfo", "getcwd", "fsync", "fdatasync", NULL
};

/*
 * The sanitizers' runtime needs a few more calls; only builds made for
 * the tests have them, and none opens a file, so the listener's filter
 * is tested as it ships.
 */
#if defined(__SANITIZE_ADDRESS__)
/*
 * LeakSanitizer's check at exit stops the world by tracing the process,
 * which cannot work inside the filter; the sanitizer builds check memory
 * errors in the daemon and leaks in the unit tests.
 */
const char	*__asan_default_options(void);

const char *
__asan_default_options(void)
{
	return "detect_leaks=0";
}

static const char *sanitizer_calls[] = {
	"sigaltstack", "prctl", "sched_getaffinity", "mincore", "getppid",
	"arch_prctl", "tgkill", NULL
};

/*
 * UBSan (a library of its own with gcc) sets itself up at its first
 * report: it reads its binary's name, command line and environment, and
 * probes memory through a pipe, all of which it does without when
 * refused.  Refused, not killed, so the report is printed; libc never
 * makes these calls here (it opens with openat, pipes nothing).
 */
static const char *sanitizer_refused[] = {
	"readlink", "open", "pipe", "pipe2", NULL
};

static int
listed(const char **calls, const char *name)
{
	for (; calls != NULL && *calls != NULL; calls++)
		if (strcmp(*calls, name) == 0)
			return 1;
	return 0;
}

static void
refuse(scmp_filter_ctx ctx, const char **calls, const char **own)
{
	int	 nr;

	for (; *calls != NULL; calls++) {
		if (listed(own, *calls) || (nr =
		    seccomp_syscall_resolve_name(*calls)) == __NR_SCMP_ERROR)
			continue;
		if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0) < 0)
			fatalx("seccomp_rule_add %s", *calls);
	}
	/* and whether stderr is a terminal, to colour the report */
	if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOTTY), SCMP_SYS(ioctl), 1,
	    SCMP_A1(SCMP_CMP_EQ, TCGETS, 0)) < 0)
		fatalx("seccomp_rule_add ioctl");
}
#endif

/*
 * Before the chroot, in the builds made for the tests: the sanitizers'
 * report file (log_path), if one is asked for, is opened now, while its
 * path resolves; they would try to open it when they find something, in
 * the chroot and under the filter, and the report would be lost.
 */
void
sandbox_prepare(void)
{
#if defined(__SANITIZE_ADDRESS__)
	(void)__sanitizer_get_report_path();
#endif
}

static void
sigsys_handler(int sig, siginfo_t *info, void *ctx)
{
	struct ipc_hdr	 hdr;
	uint8_t		 frame[sizeof(hdr) + sizeof(uint32_t)];
	uint32_t	 nr = info->si_syscall;

	memset(&hdr, 0, sizeof(hdr));
	hdr.type = IMSG_SANDBOX_VIOLATION;
	hdr.len = sizeof(nr);
	memcpy(frame, &hdr, sizeof(hdr));
	memcpy(frame + sizeof(hdr), &nr, sizeof(nr));
	/* nothing more can be done if the parent does not hear it */
	if (report_fd == -1 || write(report_fd, frame, sizeof(frame)) !=
	    (ssize_t)sizeof(frame))
		_exit(4);
	_exit(3);
}

static void
allow(scmp_filter_ctx ctx, const char **calls)
{
	int	 nr;

	for (; *calls != NULL; calls++) {
		/* names unknown on this architecture are simply absent */
		if ((nr = seccomp_syscall_resolve_name(*calls)) == __NR_SCMP_ERROR)
			continue;
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) < 0)
			fatalx("seccomp_rule_add %s", *calls);
	}
}

/*
 * Memory may be mapped and protected, but never executable: code that
 * got in cannot be made to run.  Nothing loads code after set-up.
 */
static void
allow_memory(scmp_filter_ctx ctx)
{
	if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
	    SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)) < 0 ||
	    seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
	    SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)) < 0)
		fatalx("seccomp_rule_add mmap");
}

static void
limit(int resource, rlim_t n, const char *what)
{
	struct rlimit	 rl = { n, n };

	if (setrlimit(resource, &rl) == -1)
		fatal("setrlimit %s", what);
}

void
sandbox_enter(const char *proc, int parentfd)
{
	struct sigaction	 sa;
	scmp_filter_ctx		 ctx;
	const char		**own = NULL;

	report_fd = parentfd;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sigsys_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) == -1)
		fatal("sigaction SIGSYS");

	/*
	 * No child forks.  The key process never writes a file, but with -d
	 * its log lines go to stderr, which may be one.
	 */
	limit(RLIMIT_NPROC, 0, "RLIMIT_NPROC");
	if (strcmp(proc, "crypto") == 0 && !log_foreground())
		limit(RLIMIT_FSIZE, 0, "RLIMIT_FSIZE");

	if ((ctx = seccomp_init(SCMP_ACT_TRAP)) == NULL)
		fatalx("seccomp_init");
	/*
	 * Only the native architecture: a call made through another ABI
	 * (i386 or x32 on amd64) has other numbers and would slip past.
	 */
	/*
	 * Into every thread: the queue has its syncer (syncer.c), started
	 * before, and after this it can start no other.
	 */
	if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1) < 0 ||
	    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1) < 0 ||
	    seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH,
	    SCMP_ACT_KILL_PROCESS) < 0)
		fatalx("seccomp attributes");
	allow(ctx, base_calls);
	allow_memory(ctx);
	if (strcmp(proc, "smtp") == 0)
		allow(ctx, own = listener_calls);
	else if (strcmp(proc, "queue") == 0) {
		allow(ctx, own = queue_calls);
		/* libevent sizes its socket reads with FIONREAD, no more */
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
		    SCMP_A1(SCMP_CMP_EQ, FIONREAD, 0)) < 0)
			fatalx("seccomp_rule_add ioctl");
	} else if (strcmp(proc, "auth") == 0)
		allow(ctx, own = auth_calls);
	else if (strcmp(proc, "crypto") == 0)
		;	/* signs with what it holds: the base set is all */
	else
		fatalx("%s: no sandbox for %s", __func__, proc);
#if defined(__SANITIZE_ADDRESS__)
	allow(ctx, sanitizer_calls);
	refuse(ctx, sanitizer_refused, own);
	/* what they read to print a report (maps, symbols) is read now */
	__sanitizer_sandbox_on_notify(NULL);
#endif
	if (seccomp_load(ctx) < 0)
		fatalx("seccomp_load");
	seccomp_release(ctx);
	log_debug("sandbox: seccomp filter for %s loaded", proc);
}

const char *
sandbox_syscall_name(uint32_t nr)
{
	static char	 name[64];
	char		*s;

	if ((s = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE,
	    nr)) == NULL) {
		snprintf(name, sizeof(name), "#%u", nr);
		return name;
	}
	strlcpy(name, s, sizeof(name));
	free(s);
	return name;
}

#elif defined(__OpenBSD__)

void
sandbox_prepare(void)
{
}

void
sandbox_enter(const char *proc, int parentfd)
{
	const char	*promises;

	if (strcmp(proc, "smtp") == 0)
		promises = "stdio inet recvfd";
	else if (strcmp(proc, "queue") == 0)
		promises = "stdio rpath wpath cpath fattr inet unix recvfd "
		    "sendfd";
	else
		promises = "stdio rpath flock unix inet dns";
	/*
	 * The listener sees no file at all, the queue only its chroot.  Auth
	 * is not unveiled: where its password store lives is Cyrus SASL's
	 * configuration, not ours.
	 */
	if (strcmp(proc, "smtp") == 0 && unveil("/", "") == -1)
		fatal("unveil");
	if (strcmp(proc, "queue") == 0 && unveil("/", "rwc") == -1)
		fatal("unveil");
	if (strcmp(proc, "auth") != 0 && unveil(NULL, NULL) == -1)
		fatal("unveil");
	if (pledge(promises, NULL) == -1)
		fatal("pledge");
}

const char *
sandbox_syscall_name(uint32_t nr)
{
	return "unknown";
}

#else
#error "smsubmit needs a system call sandbox for this system"
#endif
