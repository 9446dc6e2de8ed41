"""The listener's front door: limits applied at accept, before any TLS
work, the handshake timeout, floods from one address or one network, and
running out of descriptors.  Each test runs its own daemon.

Linux routes all of 127.0.0.0/8 over the loopback, so a test can connect
from 127.0.0.2 or 127.0.1.3 to stand for another client or network."""

import errno
import os
import resource
import select
import smtplib
import socket
import ssl
import subprocess
import threading
import time

from harness import HOSTNAME, SMSUBMIT, USERS, Closed, Skip, Smsubmit, \
    expect, message, refused_at_accept, timeout, unique


def held(d, kind, n, source=None):
    """n greeted sessions."""
    out = []
    for _ in range(n):
        c = d.client(kind, source=source)
        expect(c.greeting, 220, what="session below the limit")
        out.append(c)
    return out


def served(d, kind="starttls", source=None):
    c = d.client(kind, source=source)
    expect(c.greeting, 220, what="served from %s" % source)
    expect(c.cmd("NOOP"), 250, "2.0.0")
    c.quit()


def t_session_limit_refused_before_tls():
    """`limit sessions 2`: the third connection is refused at accept: on
    587 with 421 4.7.0, on 465 closed before the client even sends its
    ClientHello, so it costs no handshake."""
    with Smsubmit(conf={"limit sessions": "2"}) as d:
        sessions = held(d, "tls", 1) + held(d, "starttls", 1)
        for kind in ("tls", "starttls"):
            refused_at_accept(d, kind)
            refused_at_accept(d, kind, source="127.0.0.2")
        d.wait_log(r"connection from 127\.0\.0\.2 on .* refused: Too many "
                   r"sessions$")
        for c in sessions:
            expect(c.cmd("NOOP"), 250, "2.0.0", "held session")
        sessions.pop().quit()
        deadline = time.monotonic() + 5
        while True:
            try:
                served(d, "tls")
                break
            except (AssertionError, OSError, ssl.SSLError):
                assert time.monotonic() < deadline, "no slot freed"
                time.sleep(0.1)


def t_address_limit_refused_before_tls():
    """`limit sessions-per-address 2`: a third from 127.0.0.1 is refused
    at accept; 127.0.0.2 is still served."""
    with Smsubmit(conf={"limit sessions-per-address": "2"}) as d:
        sessions = held(d, "tls", 2)
        refused_at_accept(d, "tls")
        refused_at_accept(d, "starttls")
        d.wait_log(r"connection from 127\.0\.0\.1 on .* refused: Too many "
                   r"sessions from your address$")
        served(d, "tls", source="127.0.0.2")
        served(d, "starttls", source="127.0.0.2")
        for c in sessions:
            expect(c.cmd("NOOP"), 250, "2.0.0")


def t_network_limit_refused_before_tls():
    """`limit sessions-per-network 3`: 127.0.0.2 and 127.0.0.3 share a
    /24; the fourth session from it is refused although each address is
    under its own limit, and 127.0.1.2 (another /24) is served."""
    with Smsubmit(conf={"limit sessions-per-address": "2",
                        "limit sessions-per-network": "3"}) as d:
        sessions = held(d, "tls", 2, "127.0.0.2") + \
            held(d, "starttls", 1, "127.0.0.3")
        refused_at_accept(d, "tls", source="127.0.0.3")
        refused_at_accept(d, "starttls", source="127.0.0.4")
        d.wait_log(r"connection from 127\.0\.0\.4 on .* refused: Too many "
                   r"sessions from your network$")
        served(d, "tls", source="127.0.1.2")
        served(d, "starttls", source="127.0.1.2")
        # a slot of the network freed is a slot for any of its addresses
        sessions.pop(0).quit()
        deadline = time.monotonic() + 5
        while True:
            try:
                served(d, "tls", source="127.0.0.9")
                break
            except (AssertionError, OSError, ssl.SSLError):
                assert time.monotonic() < deadline, "network slot not freed"
                time.sleep(0.1)


def t_network_limit_ipv6_64():
    """The same over IPv6: ::1 is its own /64."""
    with socket.socket(socket.AF_INET6) as s:
        try:
            s.bind(("::1", 0))
        except OSError:
            raise Skip("no IPv6 loopback")
    with Smsubmit(conf={"limit sessions-per-address": "5",
                        "limit sessions-per-network": "2"}, ipv6=True) as d:
        held_ = [d.client("starttls", host="::1") for _ in range(2)]
        for c in held_:
            expect(c.greeting, 220)
        refused_at_accept(d, "tls", host="::1")
        refused_at_accept(d, "starttls", host="::1")
        d.wait_log(r"connection from ::1 on .* refused: Too many sessions "
                   r"from your network$")
        served(d, "tls")  # 127.0.0.1: IPv4, another network


NETNS_SCRIPT = r"""
import subprocess, sys
sys.path.insert(0, sys.argv[1])
for cmd in (["ip", "link", "set", "lo", "up"],
            ["ip", "-6", "addr", "add", "fd00:0:0:1::2/64", "dev", "lo",
             "nodad"],
            ["ip", "-6", "addr", "add", "fd00:0:0:1:ffff::3/64", "dev", "lo",
             "nodad"],
            ["ip", "-6", "addr", "add", "fd00:0:0:2::2/64", "dev", "lo",
             "nodad"]):
    subprocess.run(cmd, check=True)
from harness import Smsubmit, expect, refused_at_accept
with Smsubmit(conf={"limit sessions-per-address": "5",
                    "limit sessions-per-network": "2"}, ipv6=True) as d:
    held = [d.client("starttls", host="::1", source=a)
            for a in ("fd00:0:0:1::2", "fd00:0:0:1:ffff::3")]
    for c in held:
        expect(c.greeting, 220)
    refused_at_accept(d, "tls", host="::1", source="fd00:0:0:1::2")
    refused_at_accept(d, "starttls", host="::1", source="fd00:0:0:1:ffff::3")
    d.wait_log(r"connection from fd00:0:0:1::2 on .* refused: Too many "
               r"sessions from your network$")
    c = d.client("tls", host="::1", source="fd00:0:0:2::2")
    expect(c.greeting, 220, what="another /64")
    c.quit()
print("netns test passed")
"""


def t_network_limit_ipv6_64_in_netns():
    """In a network namespace of its own, with addresses of two /64s on
    its loopback: fd00:0:0:1::2 and fd00:0:0:1:ffff::3 share a /64 and
    its limit; fd00:0:0:2::2 is another network and is served."""
    lib = os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "lib")
    try:
        p = subprocess.run(["unshare", "-n", "true"], capture_output=True,
                           timeout=10)
    except FileNotFoundError:
        raise Skip("no unshare(1)")
    if p.returncode != 0:
        raise Skip("cannot make a network namespace: %s" %
                   p.stderr.decode().strip())
    p = subprocess.run(["unshare", "-n", "python3", "-c", NETNS_SCRIPT,
                        lib], capture_output=True, timeout=50)
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode == 0 and "netns test passed" in out, out[-3000:]


# --- timeout handshake ---

def closed_after(s, within):
    """Seconds until the server closes s (reading and dropping what it
    sends); fails if it is still open after within."""
    t0 = time.monotonic()
    s.settimeout(within)
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError("still open after %gs" % within)
    return time.monotonic() - t0


@timeout(60)
def t_handshake_timeout_silent_client():
    """`timeout handshake 3s` with `timeout command 60s`: a client that
    connects to 465 and sends nothing is closed after about 3s, not 60s."""
    with Smsubmit(conf={"timeout handshake": "3s"}) as d:
        s = socket.create_connection(("127.0.0.1", d.tls_port))
        took = closed_after(s, 15)
        s.close()
        assert 2 <= took <= 9, "closed after %.1fs" % took
        d.wait_log(r"session \w+ timeout in TLS handshake")


def client_hello():
    """The first TLS record a real client sends."""
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=HOSTNAME)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


@timeout(60)
def t_handshake_timeout_stalled_client_hello():
    """Half a ClientHello, then silence: the handshake deadline is not
    moved by the bytes that did come."""
    with Smsubmit(conf={"timeout handshake": "3s"}) as d:
        hello = client_hello()
        s = socket.create_connection(("127.0.0.1", d.tls_port))
        t0 = time.monotonic()
        try:
            for b in hello[:len(hello) // 2]:
                # a byte every 0.1s, for longer than the timeout
                s.send(bytes([b]))
                time.sleep(0.1)
                if time.monotonic() - t0 > 10:
                    break
        except OSError:
            pass  # closed meanwhile
        took = time.monotonic() - t0 + closed_after(s, 15)
        s.close()
        assert 2 <= took <= 9, "closed after %.1fs" % took


@timeout(60)
def t_handshake_timeout_until_first_command():
    """After the handshake on 465, the first command must also come
    within `timeout handshake`: 421 4.4.2 after about 3s."""
    with Smsubmit(conf={"timeout handshake": "3s"}) as d:
        c = d.client("tls")
        t0 = time.monotonic()
        r = c.reply(timeout=15)
        took = time.monotonic() - t0
        expect(r, 421, "4.4.2")
        assert 2 <= took <= 9, "421 after %.1fs" % took
        assert c.closed(3)
        # once a command came, `timeout command` applies
        c = d.client("tls")
        expect(c.cmd("NOOP"), 250, "2.0.0")
        assert c.pending(4.5) == b"", "cut within timeout command"
        expect(c.cmd("NOOP"), 250, "2.0.0")


@timeout(60)
def t_handshake_timeout_stalled_starttls():
    """587: after the 220 to STARTTLS, a client that never starts its
    handshake is closed after `timeout handshake`, without a word."""
    with Smsubmit(conf={"timeout handshake": "3s"}) as d:
        c = d.client("starttls")
        c.ehlo()
        expect(c.cmd("STARTTLS"), 220, what="STARTTLS")
        t0 = time.monotonic()
        took = closed_after(c.sock, 15)
        assert 2 <= took <= 9, "closed after %.1fs" % took
        d.wait_log(r"session \w+ timeout in TLS handshake")


# --- floods ---

def flood(ports, sources, per_source, stop, stats):
    """Connect per_source sockets from each source, spread over ports, and
    keep them open, reconnecting those the server closes, until stop is
    set."""
    socks = {}

    def connect(src, port):
        s = socket.socket()
        s.setblocking(False)
        s.bind((src, 0))
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        socks[s.fileno()] = (s, src, port)
        stats["connects"] += 1
        return s.fileno()

    for src in sources:
        for i in range(per_source):
            connect(src, ports[i % len(ports)])
    stats["open"] = len(socks)
    stats["ready"].set()
    poll = select.poll()
    for fd in socks:
        poll.register(fd, select.POLLIN)
    while not stop.is_set():
        for fd, _ in poll.poll(50):
            poll.unregister(fd)
            s, src, port = socks.pop(fd)
            try:
                data = s.recv(100)
            except OSError:
                data = b""
            if data:
                socks[fd] = (s, src, port)  # a 421 line, then the close
                poll.register(fd, select.POLLIN)
                continue
            s.close()
            stats["refused"] += 1
            if not stop.is_set():
                poll.register(connect(src, port), select.POLLIN)
        stats["open"] = len(socks)
    for s, _, _ in socks.values():
        s.close()


def fd_budget(want):
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(100, min(want, soft - 300))


def submit_ssl(d, source):
    """A real client (smtplib) submits a message; returns (seconds,
    queue ID line)."""
    ctx = ssl.create_default_context(cafile=d.cert)
    tag = unique("flood")
    t0 = time.monotonic()
    with smtplib.SMTP_SSL("127.0.0.1", d.tls_port, context=ctx,
                          source_address=(source, 0), timeout=30,
                          local_hostname="client.test") as c:
        c.login("alice", USERS["alice"])
        c.sendmail("alice@example.org", ["bob@example.org"],
                   message(tag))
    took = time.monotonic() - t0
    d.wait_message(tag, 30)
    return took


def nfd(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def run_flood(d, sources, per_source, client_source, hold, ports):
    """Returns the client's submission times without and with the flood
    and the flood's counts; checks that [smtp] never holds more than
    hold flood sessions."""
    base = min(submit_ssl(d, client_source) for _ in range(3))
    pid = d.children()["[smtp]"]
    fds = nfd(pid)
    stop = threading.Event()
    stats = {"connects": 0, "refused": 0, "open": 0,
             "ready": threading.Event()}
    t = threading.Thread(target=flood, args=(ports, sources, per_source,
                                             stop, stats))
    t.start()
    try:
        assert stats["ready"].wait(60), "flood not started"
        # the listener sheds the excess at once, the rest stays idle
        deadline = time.monotonic() + 20
        while stats["refused"] < stats["connects"] // 2:
            assert time.monotonic() < deadline, "flood not refused: %s" % \
                stats
            time.sleep(0.1)
        most = 0
        times = []
        for _ in range(3):
            most = max(most, nfd(pid) - fds)
            times.append(submit_ssl(d, client_source))
            most = max(most, nfd(pid) - fds)
        # a session is one descriptor; a refused one is closed at once
        assert most <= hold + 2, "[smtp] held %d more descriptors in the " \
            "flood, at most %d sessions allowed" % (most, hold)
        stats["held"] = most
    finally:
        stop.set()
        t.join(30)
    return base, times, stats


@timeout(180)
def t_flood_from_one_address_does_not_starve_others():
    """2000 idle TCP connections from 127.0.0.2 to 465, reconnecting as
    they are refused, with the default limits: a real client (smtplib
    SMTP_SSL) from 127.0.0.3 still logs in and submits."""
    n = fd_budget(2000)
    with Smsubmit(conf={"limit sessions": "1000",
                        "limit sessions-per-address": "20"}) as d:
        base, times, stats = run_flood(d, ["127.0.0.2"], n, "127.0.0.3",
                                       20, [d.tls_port])
        print("# flood of %d idle connections from one address "
              "(%d refused, <= %d held): submission %.3fs, %.3fs, %.3fs "
              "(%.3fs without the flood)" % (
                  n, stats["refused"], stats["held"], times[0], times[1],
                  times[2], base))


@timeout(180)
def t_flood_from_one_network_does_not_starve_others():
    """2000 idle connections from 100 addresses of 127.0.0.0/24, to 465
    and 587, each address under its per-address limit: the per-network
    limit (default 100) keeps slots for 127.0.1.3."""
    n = fd_budget(2000)
    sources = ["127.0.0.%d" % i for i in range(2, 102)]
    with Smsubmit(conf={"limit sessions": "150",
                        "limit sessions-per-address": "20"}) as d:
        base, times, stats = run_flood(d, sources, n // len(sources),
                                       "127.0.1.3", 100,
                                       [d.tls_port, d.starttls_port])
        print("# flood of %d idle connections from one /24 (%d refused, "
              "<= %d held): submission %.3fs, %.3fs, %.3fs (%.3fs "
              "without)" % (n, stats["refused"], stats["held"], times[0],
                            times[1], times[2], base))


# --- running out of descriptors ---

def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def set_nofile(pid, n):
    """prlimit(2) on another user's process needs its uid (or
    CAP_SYS_RESOURCE, which a container may not grant)."""
    st = os.stat("/proc/%d" % pid)
    argv = ["prlimit", "--pid", str(pid), "--nofile=%d:%d" % (n, n)]
    if st.st_uid != os.geteuid():
        argv = ["setpriv", "--reuid", str(st.st_uid), "--regid",
                str(st.st_gid), "--clear-groups", "--"] + argv
    p = subprocess.run(argv, capture_output=True, timeout=10)
    if p.returncode != 0:
        raise Skip("cannot lower RLIMIT_NOFILE of [smtp]: %s" %
                   p.stderr.decode().strip())


@timeout(90)
def t_descriptor_exhaustion_pauses_accepting():
    """With RLIMIT_NOFILE of [smtp] lowered under it, connections beyond
    what it can hold make accept4() fail with EMFILE: the listener stops
    accepting instead of spinning (little CPU, one warning), and accepts
    again once sessions close."""
    with Smsubmit() as d:
        pid = d.children()["[smtp]"]
        limit = nfd(pid) + 3
        set_nofile(pid, limit)
        sessions = held(d, "starttls", 3)
        waiting = [socket.create_connection(("127.0.0.1", d.starttls_port))
                   for _ in range(10)]
        # every descriptor is taken: the waiting ones stay in the backlog
        deadline = time.monotonic() + 5
        while nfd(pid) < limit:
            assert time.monotonic() < deadline, "[smtp] has %d of %d " \
                "descriptors" % (nfd(pid), limit)
            time.sleep(0.05)
        cpu0 = cpu_seconds(pid)
        time.sleep(3)
        spent = cpu_seconds(pid) - cpu0
        assert spent < 0.5, "[smtp] spent %.2fs of CPU in 3s" % spent
        d.wait_log(r"accept on .*: Too many open files: not accepting for "
                   r"a while")
        warnings = d.log().count("Too many open files")
        assert warnings == 1, "%d warnings in 3s" % warnings
        for c in sessions:
            c.quit()
        # the waiting connections are served in turn, then a new one
        for s in waiting:
            s.close()
        d.wait_log(r"accepting again")
        deadline = time.monotonic() + 10
        while True:
            try:
                served(d, "starttls")
                break
            except (AssertionError, OSError):
                assert time.monotonic() < deadline, "not serving again"
                time.sleep(0.2)
        assert d.healthy()


def nofile_of(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no Max open files in /proc/%d/limits" % pid)


def t_nofile_raised_to_fit_sessions():
    """Started with a soft RLIMIT_NOFILE of 256, `limit sessions 3000`
    raises it in every process to two per session and some."""
    def low():
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    d = Smsubmit(conf={"limit sessions": "3000"}, start=False)
    try:
        d.preexec = low
        d.start()
        for title, pid in d.children().items():
            assert nofile_of(pid) >= 2 * 3000, "%s: %d" % (title,
                                                           nofile_of(pid))
        served(d)
    finally:
        d.stop()


def t_nofile_too_low_refused():
    """Not root, with a hard RLIMIT_NOFILE of 256: a configuration with
    `limit sessions 1000` cannot fit and `-n` says so and how to fix it;
    `limit sessions 50` fits."""
    import pwd
    # the files -n now reads must be nobody's (as root)
    d = Smsubmit(start=False, run_as="nobody")
    try:
        def low():
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        argv = [SMSUBMIT, "-n", "-f", d.conf_path]
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            argv = ["setpriv", "--reuid", str(nobody.pw_uid), "--regid",
                    str(nobody.pw_gid), "--clear-groups", "--"] + argv
        with open(d.conf_path) as f:
            text = f.read()
        for sessions, ok in (("1000", False), ("50", True)):
            with open(d.conf_path, "w") as f:
                f.write(text.replace("limit sessions 100\n",
                                     "limit sessions %s\n" % sessions))
            os.chmod(d.conf_path, 0o644)
            p = subprocess.run(argv, capture_output=True, timeout=30,
                               preexec_fn=low)
            err = p.stderr.decode()
            if ok:
                assert p.returncode == 0, err
            else:
                assert p.returncode == 1, (p.returncode, err)
                assert '"limit sessions 1000" needs' in err and \
                    "RLIMIT_NOFILE" in err and "LimitNOFILE=" in err, err
    finally:
        d.stop()
