"""Memory the [smtp] listener spends per session.  Memory, not time:
nothing here depends on how fast the machine is."""

from harness import Skip, Smsubmit, expect, sanitized, timeout

WARM = 100      # sessions that take the one-time costs (tables, pools)
IDLE = 500      # sessions measured
# KiB of the listener's RSS growth per idle authenticated TLS session.
# Measured: 15.3 (Debian 12, libretls on OpenSSL 3.0, glibc malloc); 15.5
# with the DATA-only fields (struct data) still in struct session, 43.8
# before sessions gave back their buffers while idle, 31.4 with only the
# input buffer (16 KiB) kept again.
BOUND = 17


def listener_rss_kib(d):
    with open("/proc/%d/smaps_rollup" % d.children()["[smtp]"]) as f:
        for line in f:
            if line.startswith("Rss:"):
                return int(line.split()[1])
    raise AssertionError("no Rss in the listener's smaps_rollup")


def hold(d, n, held):
    """n more authenticated TLS sessions, each of which then answered one
    more command (its buffers used again and given back): a plateau."""
    new = [d.session() for _ in range(n)]
    for c in new:
        expect(c.cmd("NOOP"), 250, "2.0.0")
    held.extend(new)


@timeout(180)
def t_idle_session_memory_bounded():
    if sanitized():
        raise Skip("ASan's allocator (redzones, quarantine) is not the "
                   "memory this bounds")
    with Smsubmit(conf={"limit sessions": str(WARM + IDLE + 50),
                        "limit sessions-per-address": str(WARM + IDLE + 50)
                        }) as d:
        held = []
        try:
            hold(d, WARM, held)
            before = listener_rss_kib(d)
            hold(d, IDLE, held)
            after = listener_rss_kib(d)
            per = (after - before) / IDLE
            print("# %.1f KiB of listener RSS per idle session" % per)
            assert per < BOUND, (
                "%.1f KiB of listener RSS per idle session (%d KiB for %d "
                "sessions), more than %d" % (per, after - before, IDLE,
                                             BOUND))
            # still sessions, not memory that merely looks small
            for c in held[::50]:
                expect(c.cmd("NOOP"), 250, "2.0.0")
        finally:
            for c in held:
                c.close()
