#!/usr/bin/env python3
"""
bench.py: `make bench`.  Starts the real daemon (its own directory, config,
certificate and sasldb, made the way regress/lib/harness.py makes them for
the tests) in front of a discarding relay host (regress/bench/sink), drives
it with regress/bench/smtpload and prints one line per scenario and figure:

    c1     one client, one message per TLS+AUTH session
    s32    32 clients, one message per session
    p8     8 clients, 100 messages per session
    big8   8 clients, 1 MB messages (10 per session)
    idle   BENCHIDLE authenticated TLS sessions kept open, idle: a row
           for each size in the list (1000,10000 by default), named
           idle1k, idle10k...; Postfix (a process per session) only up
           to PEER_IDLE_MAX (1000) of them
    body   the DATA framing alone (regress/bench/bodybench, smsubmit only)

Figures: messages/s and MB/s accepted during the load; e2e msg/s (messages
relayed / (load + drain)); p50/p99 of the latency of the final 250 (from
the end-of-data dot to the reply); server CPU per message (utime + stime of
every process of the server, reaped children included, read from /proc
before the load and after the drain); the load generator's own CPU per
message and the share of the machine's CPU time left idle during the load
(near 0: the two cores are the bound, not either program); drain time (from the end of the load
until the sink has every accepted message); memory per idle session (the
growth of the server's summed RSS, and PSS, divided by the sessions);
for body, the MB/s of body_parse (with its copy), body_scan (without) and
body_stuff on a 10 MB message of 76-octet lines, and of 990-octet lines
(_long).

    python3 regress/bench/bench.py [--peer postfix] [--time S] [--idle N,...]
        [--only ROW,...] [--repeat N]

BENCHTIME (seconds of load per scenario, 5 by default), BENCHIDLE,
BENCHONLY (rows to run, e.g. c1,idle; idle is every idle row), BENCHREPEAT (runs of each server,
taking turns; the table then has the medians) and PEER=postfix come from
the environment too.  With a peer the same load runs
against Debian's Postfix set up in a temporary directory as a submission
server (implicit TLS, Cyrus SASL sasldb, relaying to the same kind of sink)
and each figure gets a ratio smsubmit / peer.  Nothing here asserts
anything about time.  Run as root for the real privilege separation (and
for the Postfix peer).
"""

import argparse
import mmap
import os
import pwd
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))

import harness  # noqa: E402
import postfix  # noqa: E402

SINK = os.path.join(HERE, "sink")
LOAD = os.path.join(HERE, "smtpload")
BODYBENCH = os.path.join(HERE, "bodybench")
CLK = os.sysconf("SC_CLK_TCK")
DRAIN_MAX = 120

# name, clients, messages per session, message size
SCENARIOS = [
    ("c1", 1, 1, 10240),
    ("s32", 32, 1, 10240),
    ("p8", 8, 100, 10240),
    ("big8", 8, 10, 1048576),
]

# figure, its format, which way is better
FIGURES = [
    ("msg/s", "%.1f", "higher"),
    ("MB/s", "%.2f", "higher"),
    ("e2e_msg/s", "%.1f", "higher"),
    ("p50_ms", "%.2f", "lower"),
    ("p99_ms", "%.2f", "lower"),
    ("cpu_ms/msg", "%.3f", "lower"),
    ("load_cpu_ms/msg", "%.3f", "lower"),
    ("machine_idle_%", "%.1f", "higher"),
    ("drain_s", "%.2f", "lower"),
]
# Postfix forks an smtpd for each session: 10,000 of them is more than a
# small machine holds, and its figure per session is the same at 1,000
PEER_IDLE_MAX = 1000

# the most sessions the daemon may be configured for under this process's
# RLIMIT_NOFILE (it wants two descriptors a session and some of its own;
# main() sets it); an idle row asking for more holds this many, and says so
FIT_SESSIONS = None

IDLE_FIGURES = [
    ("rss_KiB/session", "%.1f", "lower"),
    ("pss_KiB/session", "%.1f", "lower"),
]

BODY_FIGURES = [(f, "%.1f", "higher") for f in (
    "parse_MB/s", "parse_long_MB/s", "scan_MB/s", "scan_long_MB/s",
    "stuff_MB/s", "stuff_long_MB/s")]


def log(msg):
    print("# " + msg, file=sys.stderr, flush=True)


# --- the server's processes, from /proc ---

def tree(root):
    """root and every descendant still alive."""
    out, unseen = [], [root]
    while unseen:
        pid = unseen.pop()
        out.append(pid)
        try:
            for t in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/children" % (pid, t)) as f:
                    unseen.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return out


def cpu_seconds(root):
    """utime+stime of the tree, with the children it has reaped."""
    ticks = 0
    for pid in tree(root):
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after ")": state is fields[0]; utime..cstime are stat 14-17
        ticks += sum(int(x) for x in fields[11:15])
    return ticks / CLK


def memory_kib(root):
    """(summed VmRSS, summed Pss) of the tree in KiB."""
    rss = pss = 0
    for pid in tree(root):
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
            with open("/proc/%d/smaps_rollup" % pid) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            continue
    return rss, pss


# --- the relay host ---

class Sink:
    def __init__(self, directory):
        self.port = harness.free_port()
        self.count_path = os.path.join(directory, "sink.count")
        self.proc = subprocess.Popen(
            [SINK, "-p", str(self.port), "-o", self.count_path],
            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                break
            except OSError:
                if self.proc.poll() is not None or \
                        time.monotonic() > deadline:
                    raise RuntimeError("the sink did not start")
                time.sleep(0.02)
        with open(self.count_path, "rb") as f:
            self.map = mmap.mmap(f.fileno(), 16, mmap.MAP_SHARED,
                                 mmap.PROT_READ)

    def messages(self):
        return struct.unpack("=QQ", self.map[:16])[0]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --- the servers ---

class Ours:
    name = "smsubmit"

    def __init__(self, sink, sessions):
        self.d = harness.Smsubmit(conf={
            "relay to": "127.0.0.1 port %d" % sink.port,
            "limit sessions": str(sessions),
            "limit sessions-per-address": str(sessions),
            "limit recipients": "100",
            "auth ban": "after 100000 within 1m for 1m",
        }, name="bench", start=False)
        self.d.verbose = False
        try:
            self.d.start_daemon()
        except RuntimeError as e:
            tail = "\n".join(self.d.log_tail(5))
            self.d.stop()
            raise RuntimeError("%s\n%s" % (e, tail))
        self.port = self.d.tls_port
        self.cafile = self.d.cert
        self.dir = self.d.dir

    def root(self):
        return self.d.pid

    def stop(self):
        self.d.stop()


# the instance's two submission listeners; the rest is postfix.SERVICES
POSTFIX_MASTER = """\
127.0.0.1:{tls} inet n - n - - smtpd
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
127.0.0.1:{sub} inet n - n - - smtpd
  -o smtpd_tls_security_level=encrypt
""" + postfix.SERVICES

POSTFIX_MAIN = """\
compatibility_level = 3.6
queue_directory = {dir}/spool
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
myhostname = mx.test
mydomain = test
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{sink}
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_peername_lookup = no
smtpd_tls_cert_file = {dir}/cert.pem
smtpd_tls_key_file = {dir}/key.pem
smtpd_tls_security_level = may
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = {dir}/etc/sasl
smtpd_sasl_local_domain = mx.test
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
smtpd_client_connection_count_limit = 0
default_process_limit = {procs}
message_size_limit = 10485760
biff = no
"""


class Postfix:
    """Debian's Postfix as a submission server, all of it in a temporary
    directory: `postfix -c DIR/etc start` with its own queue."""
    name = "postfix"

    def __init__(self, sink, sessions):
        if os.geteuid() != 0:
            raise RuntimeError("PEER=postfix needs root")
        if not shutil.which("postfix"):
            raise RuntimeError("postfix is not installed: apt-get install "
                               "postfix (main_mailer_type: No configuration)")
        pw = pwd.getpwnam("postfix")
        self.dir = tempfile.mkdtemp(prefix="smsubmit-bench-postfix-")
        os.chmod(self.dir, 0o755)
        creds = harness._credentials()
        for f in ("cert.pem", "key.pem", "sasldb"):
            shutil.copy(os.path.join(creds, f), os.path.join(self.dir, f))
        os.chmod(os.path.join(self.dir, "key.pem"), 0o600)
        # smtpd reads the sasldb as the postfix user
        os.chown(os.path.join(self.dir, "sasldb"), pw.pw_uid, pw.pw_gid)
        os.chmod(os.path.join(self.dir, "sasldb"), 0o600)
        self.etc = os.path.join(self.dir, "etc")
        os.mkdir(self.etc, 0o755)
        # Debian's smtpd reads $config_directory/sasl/smtpd.conf whatever
        # cyrus_sasl_config_path says; main.cf names the same directory
        os.mkdir(os.path.join(self.etc, "sasl"), 0o755)
        with open(os.path.join(self.etc, "sasl", "smtpd.conf"), "w") as f:
            f.write("pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
                    "sasldb_path: %s/sasldb\nmech_list: PLAIN LOGIN\n"
                    % self.dir)
        self.port = harness.free_port()
        sub = harness.free_port()
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(POSTFIX_MAIN.format(dir=self.dir, sink=sink.port,
                                        procs=sessions))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(POSTFIX_MASTER.format(tls=self.port, sub=sub))
        self.cafile = os.path.join(self.dir, "cert.pem")
        # `postfix check` makes what is inside these
        os.mkdir(os.path.join(self.dir, "spool"), 0o755)
        os.mkdir(os.path.join(self.dir, "data"), 0o700)
        os.chown(os.path.join(self.dir, "data"), pw.pw_uid, pw.pw_gid)
        self.postfix("check")
        self.postfix("start")
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("postfix not listening: %s" %
                                       self.log_tail())
                time.sleep(0.1)
        with open(os.path.join(self.dir, "spool", "pid",
                               "master.pid")) as f:
            self.master = int(f.read().split()[0])

    def postfix(self, what):
        # before its log is set up, postfix says why it stops on
        # stderr only if that is a terminal: give it one (script)
        p = subprocess.run(["script", "-qec", "postfix -c %s %s" % (
            self.etc, what), "/dev/null"], capture_output=True,
            stdin=subprocess.DEVNULL, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("postfix %s: %s %s" % (
                what, p.stdout.decode(errors="replace"), self.log_tail()))

    def log_tail(self, n=15):
        try:
            with open(os.path.join(self.dir, "maillog"), errors="replace") \
                    as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def root(self):
        return self.master

    def stop(self):
        try:
            self.postfix("stop")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        deadline = time.monotonic() + 15
        while harness.pid_alive(self.master) and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        if harness.pid_alive(self.master) and \
                "master" in (harness.proc_title(self.master) or ""):
            os.kill(self.master, signal.SIGKILL)
        if not os.environ.get("REGRESS_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)


# --- the load ---

def smtpload(server, *args):
    argv = [LOAD, "-p", str(server.port), "-C", server.cafile] + \
        [str(a) for a in args]
    p = subprocess.run(argv, capture_output=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError("smtpload: %s" % p.stderr.decode(errors="replace"))
    err = p.stderr.decode(errors="replace").strip()
    if err:
        log("%s: %s" % (server.name, err))
    return dict(kv.split("=") for kv in p.stdout.decode().split())


def machine_ticks():
    """(idle, total) jiffies of every CPU of the machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[3] + v[4], sum(v[:8])


def wait_sink(sink, target):
    """Seconds until the sink has target messages (None if it never did)."""
    t0 = time.monotonic()
    while sink.messages() < target:
        if time.monotonic() - t0 > DRAIN_MAX:
            return None
        time.sleep(0.005)
    return time.monotonic() - t0


def scenario(server, sink, clients, per, size, seconds):
    base = sink.messages()
    cpu0 = cpu_seconds(server.root())
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    idle0, total0 = machine_ticks()
    r = smtpload(server, "-c", clients, "-m", per, "-s", size,
                 "-t", seconds)
    idle1, total1 = machine_ticks()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    msgs = int(r["messages"])
    drain = wait_sink(sink, base + msgs)
    cpu = cpu_seconds(server.root()) - cpu0
    el = float(r["elapsed"])
    return {
        "msg/s": msgs / el,
        "MB/s": int(r["octets"]) / el / 1e6,
        "e2e_msg/s": msgs / (el + drain) if drain is not None else 0.0,
        "p50_ms": float(r["p50_ms"]),
        "p99_ms": float(r["p99_ms"]),
        "cpu_ms/msg": cpu * 1000 / msgs if msgs else float("nan"),
        "load_cpu_ms/msg": load * 1000 / msgs if msgs else float("nan"),
        "machine_idle_%": 100.0 * (idle1 - idle0) / max(1, total1 - total0),
        "drain_s": drain if drain is not None else float("inf"),
        "errors": int(r["errors"]),
        "messages": msgs,
    }


def idle(server, n):
    rss0, pss0 = memory_kib(server.root())
    p = subprocess.Popen([LOAD, "-p", str(server.port), "-C", server.cafile,
                          "-c", "8", "-i", str(n)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    line = p.stdout.readline().decode().split()
    if len(line) != 2 or line[0] != "ready":
        p.kill()
        raise RuntimeError("smtpload -i: %r %s" % (
            line, p.stderr.read().decode(errors="replace")))
    opened = int(line[1])
    time.sleep(1)  # let every session settle into its idle state
    rss1, pss1 = memory_kib(server.root())
    out, err = p.communicate(timeout=120)  # EOF: close them
    if err.strip():
        log("%s: %s" % (server.name, err.decode(errors="replace").strip()))
    return {
        "sessions": opened,
        "rss_KiB/session": (rss1 - rss0) / opened if opened else 0.0,
        "pss_KiB/session": (pss1 - pss0) / opened if opened else 0.0,
    }


def bodybench(seconds):
    """The framing code's own figures: "name value" lines."""
    p = subprocess.run([BODYBENCH, "%g" % min(seconds, 5.0)],
                       capture_output=True, timeout=300, check=True)
    out = {}
    for line in p.stdout.decode().splitlines():
        name, value = line.split()
        out[name] = float(value)
    return out


def idle_row(n):
    """The idle row's name for n sessions: idle1k, idle10k, idle500."""
    return "idle%dk" % (n // 1000) if n % 1000 == 0 else "idle%d" % n


def wanted(row, only):
    return not only or row in only or \
        (row.startswith("idle") and "idle" in only)


def bench(kind, seconds, sizes, only):
    """The load rows on one server, then each idle row on a fresh one:
    the idle sessions must not reuse memory the busy rows (or a smaller
    idle row) freed, and the busy rows must not run beside what 1,000
    sessions leave behind (for Postfix, as many idle smtpd processes)."""
    results = {}
    rows = [s for s in SCENARIOS if wanted(s[0], only)]
    nidle = max(sizes)

    def run_rows(server, sink):
        for name, clients, per, size in rows:
            log("%s: %s (%d clients, %d per session, %d octets, %gs)" % (
                server.name, name, clients, per, size, seconds))
            results[name] = scenario(server, sink, clients, per, size,
                                     seconds)

    def run_idle(n, held):
        def run(server, sink):
            log("%s: idle (%d sessions)" % (server.name, held))
            results[idle_row(n)] = idle(server, held)
        return run

    if rows:
        with_server(kind, nidle, seconds, run_rows)
    for n in sizes:
        if not wanted(idle_row(n), only):
            continue
        if kind is not Ours and n > PEER_IDLE_MAX:
            log("%s: no idle row of %d sessions (PEER_IDLE_MAX)" % (
                kind.name, n))
            continue
        held = min(n, FIT_SESSIONS or n)
        if held < n:
            log("%s: %s holds %d sessions: RLIMIT_NOFILE allows no more" % (
                kind.name, idle_row(n), held))
        with_server(kind, held, seconds, run_idle(n, held))
    if kind is Ours and (not only or "body" in only):
        log("%s: body (bodybench)" % kind.name)
        results["body"] = bodybench(seconds)
    return results


def with_server(kind, nidle, seconds, what):
    """Start a sink and the server, warm it up, call what(server, sink),
    stop both."""
    directory = tempfile.mkdtemp(prefix="smsubmit-bench-")
    sink = Sink(directory)
    server = None
    try:
        server = kind(sink, min(nidle + 100, FIT_SESSIONS or nidle + 100))
        log("%s: warming up" % server.name)
        scenario(server, sink, 2, 2, 10240, min(1.0, seconds))
        what(server, sink)
    finally:
        if server:
            server.stop()
        sink.stop()
        shutil.rmtree(directory, ignore_errors=True)


def median(runs):
    """One server's results, each figure the median over the runs
    (errors summed, sessions held the fewest)."""
    out = {}
    for row in runs[0]:
        out[row] = {}
        for fig in runs[0][row]:
            vals = sorted(r[row][fig] for r in runs)
            if fig == "errors":
                out[row][fig] = sum(vals)
            elif fig == "sessions":
                out[row][fig] = vals[0]
            else:
                out[row][fig] = statistics.median(vals)
    return out


def fmt(f, v):
    return "-" if v is None else f % v


def table(names, runs, only, sizes):
    """One line per scenario and figure: each server's value, and
    the ratio of the first to the second."""
    head = "%-7s %-16s" % ("row", "figure") + "".join(
        " %12s" % n for n in names)
    if len(names) == 2:
        head += " %8s  better" % ("ratio")
    lines = [head]
    rows = [(s[0], FIGURES) for s in SCENARIOS] + \
        [(idle_row(n), IDLE_FIGURES) for n in sizes] + \
        [("body", BODY_FIGURES)]
    rows = [r for r in rows if wanted(r[0], only)]
    for row, figures in rows:
        for fig, f, better in figures:
            vals = [r.get(row, {}).get(fig) for r in runs]
            line = "%-7s %-16s" % (row, fig) + "".join(
                " %12s" % fmt(f, v) for v in vals)
            if len(names) == 2:
                a, b = vals
                # no ratio of figures too small to be shown
                ratio = None
                if a is not None and b is not None and \
                        float(f % a) and float(f % b):
                    ratio = a / b
                line += " %8s  %s" % (fmt("%.3g", ratio), better)
            lines.append(line)
    for row in [s[0] for s in SCENARIOS if s[0] in runs[0]]:
        for n, r in zip(names, runs):
            if r[row]["errors"]:
                lines.append("# %s %s: %d errors" % (n, row,
                                                     r[row]["errors"]))
    for n, r in zip(names, runs):
        for row in [idle_row(x) for x in sizes]:
            if row in r:
                lines.append("# %s %s: %d sessions held" % (
                    n, row, r[row]["sessions"]))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer", default=os.environ.get("PEER") or None,
                    choices=["postfix"])
    ap.add_argument("--time", type=float,
                    default=float(os.environ.get("BENCHTIME") or 5))
    ap.add_argument("--idle",
                    default=os.environ.get("BENCHIDLE") or "1000,10000",
                    help="idle sessions: a row for each size in the list")
    ap.add_argument("--only", default=os.environ.get("BENCHONLY") or "",
                    help="rows to run, e.g. c1,idle")
    ap.add_argument("--repeat", type=int,
                    default=int(os.environ.get("BENCHREPEAT") or 1),
                    help="runs of each server; the table has the medians")
    a = ap.parse_args()
    only = [x for x in a.only.split(",") if x]
    try:
        sizes = sorted(set(int(x) for x in a.idle.split(",") if x))
    except ValueError:
        ap.error("--idle: a list of numbers")
    if not sizes or sizes[0] < 1:
        ap.error("--idle: a list of numbers")
    for x in only:
        if x not in [s[0] for s in SCENARIOS] + ["idle", "body"] + \
                [idle_row(n) for n in sizes]:
            ap.error("no row %r" % x)
    # every idle session is a descriptor in the daemon (which inherits
    # this limit) and in the generator
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * sizes[-1] + 1024
    if want > hard:
        # root may raise the hard limit too (the daemon wants two
        # descriptors a session)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            soft = hard = want
        except (ValueError, OSError):
            pass
    want = max(soft, min(hard, want))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    global FIT_SESSIONS
    FIT_SESSIONS = (want - 128) // 2
    with open("/proc/loadavg") as f:
        log("load average before: %s" % " ".join(f.read().split()[:3]))
    kinds = [Ours] + ([Postfix] if a.peer == "postfix" else [])
    names = [k.name for k in kinds]
    reps = []
    try:
        for i in range(a.repeat):
            # the servers take turns, so a busy minute hurts both
            reps.append([bench(k, a.time, sizes, only) for k in kinds])
            if a.repeat > 1:
                log(("run %d of %d:\n%s" % (i + 1, a.repeat, table(
                    names, reps[-1], only, sizes))).replace("\n", "\n# "))
    finally:
        harness.cleanup_credentials()
    with open("/proc/loadavg") as f:
        log("load average after: %s" % " ".join(f.read().split()[:3]))
    if a.repeat > 1:
        print("# medians of %d runs" % a.repeat)
    print(table(names, [median([r[i] for r in reps])
                        for i in range(len(kinds))], only, sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
