"""
harness.py: what the integration tests use to run the real daemon.

    with Smsubmit() as d:                    # config, cert, sasldb, upstream
        c = d.client("tls")                  # greeted, TLS verified
        c.ehlo(); c.auth_plain("alice", "alice-pw")
        qid = c.send_message("alice@example.org", ["bob@example.org"], msg)
        m = d.wait_message(qid)              # as the relay host stored it

Smsubmit(conf={...}) overrides configuration statements, e.g.
{"timeout command": "2s", "limit sessions": "2"}; extra=[...] appends lines.
Tests raise Skip("reason") for what cannot run here (e.g. not root).
"""

import atexit
import base64
import os
import pwd
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

from upstream import Upstream, read_store

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
# SMSUBMIT=/path/to/smsubmit tests another build (e.g. a sanitizer one)
SMSUBMIT = os.environ.get("SMSUBMIT") or os.path.join(REPO, "smtpd",
                                                      "smsubmit")
HOSTNAME = "mx.test"
USERS = {"alice": "alice-pw", "bob": "bob-pw"}
DAEMON_USER = "_smsubmit"
QUEUE_USER = "_smsubmitq"
MESSAGE_SIZE = 2 * 1024 * 1024
TITLES = ("[smtp]", "[auth]", "[queue]", "[crypto]")

# every daemon not yet stopped, and those made during the current test
live = []
created = []
# every client opened during the current test, closed by the runner after it
clients = []


class Skip(Exception):
    pass


def timeout(seconds):
    """Decorator: this test may take up to seconds."""
    def set_timeout(f):
        f.timeout = seconds
        return f
    return set_timeout


def need_root():
    if os.geteuid() != 0:
        raise Skip("not root")


_sanitized = {}


def sanitized(binary=None):
    """True if the daemon under test is an ASan/UBSan build."""
    binary = binary or SMSUBMIT
    if binary not in _sanitized:
        p = subprocess.run(["ldd", binary], capture_output=True)
        _sanitized[binary] = b"libasan" in p.stdout or \
            b"libubsan" in p.stdout
    return _sanitized[binary]


# What the sanitizers print when they find something (ASan, UBSan, LSan,
# and ASan's own failure to write its report); any of it fails a test.
SANITIZER_REPORT = re.compile(
    r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|AddressSanitizer:"
    r"DEADLYSIGNAL|SUMMARY: (Address|UndefinedBehavior|Leak)Sanitizer|"
    r"(:\d+:\d+|<unknown>): runtime error: |ERROR: Can't open file: .*sanitizer")


def sanitizer_env(where):
    """The environment for a daemon whose sanitizer reports go to files
    named where.asan.PID and where.ubsan.PID (those of the processes that
    can open them: the chrooted, filtered children report on stderr)."""
    env = dict(os.environ)
    for var, name in (("ASAN_OPTIONS", "asan"), ("UBSAN_OPTIONS", "ubsan")):
        opts = [o for o in env.get(var, "").split(":") if o and
                not o.startswith("log_path=")]
        # the sandboxed processes cannot open their binary to symbolize
        # their stacks: the frames are symbolized here (symbolize_report)
        opts += ["log_path=%s.%s" % (where, name), "symbolize=0"]
        if var == "UBSAN_OPTIONS":
            opts += ["print_stacktrace=1", "halt_on_error=1"]
        env[var] = ":".join(opts)
    return env


FRAME = re.compile(r"^(\s*#\d+ 0x[0-9a-f]+ +)\((/[^+()]+)\+(0x[0-9a-f]+)\)\s*$")


def symbolize_report(text):
    """Stack frames "#N 0xPC (module+0xOFF)" of a report made with
    symbolize=0, each followed by its function and line (addr2line)."""
    lines = text.splitlines()
    wanted = {}
    for l in lines:
        m = FRAME.match(l)
        if m:
            wanted.setdefault(m.group(2), set()).add(m.group(3))
    names = {}
    for module, offs in wanted.items():
        offs = sorted(offs)
        try:
            p = subprocess.run(["addr2line", "-f", "-i", "-p", "-C", "-e",
                                module] + offs, capture_output=True,
                               timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        # one line per address, "(inlined by)" lines after it
        out, i = p.stdout.decode(errors="replace").splitlines(), -1
        for l in out:
            if not l.startswith(" (inlined by)"):
                i += 1
            if i < len(offs):
                names.setdefault((module, offs[i]), []).append(l.strip())
    res = []
    for l in lines:
        m = FRAME.match(l)
        sym = names.get((m.group(2), m.group(3))) if m else None
        if sym and not sym[0].startswith("??"):
            res.append("%s%s (%s+%s)" % (m.group(1), "; ".join(sym),
                                         os.path.basename(m.group(2)),
                                         m.group(3)))
        else:
            res.append(l)
    return "\n".join(res)


def sanitizer_reports(text, what, context=40):
    """The sanitizer reports in text, each with the lines around it."""
    lines = text.splitlines()
    out, last = [], -1
    for i, l in enumerate(lines):
        if i > last and SANITIZER_REPORT.search(l):
            last = min(len(lines), i + context)
            out.append("%s: %s" % (what, symbolize_report(
                "\n".join(lines[max(0, i - 2):last]))))
    return out


def have_ipv6():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def free_port(ipv6=False):
    """A random high port that binds on 127.0.0.1 (and ::1)."""
    for _ in range(200):
        port = random.randint(20000, 60000)
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
            if ipv6:
                with socket.socket(socket.AF_INET6) as s:
                    s.bind(("::1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


def wait_for(predicate, timeout=10, what=None, interval=0.05):
    """Poll predicate() until it returns something true, and return that;
    fail after timeout seconds.  For waiting on an event (a file gone, a
    process exited, a socket state), never on the clock.  what (a string,
    or a function giving one at the time of failure) says what failed."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            if callable(what):
                what = what()
            raise AssertionError("%s: not so after %gs" % (
                what or getattr(predicate, "__name__", "condition"),
                timeout))
        time.sleep(interval)


def run(argv, input=None, timeout=30, check=True):
    p = subprocess.run(argv, input=input, capture_output=True,
                       timeout=timeout)
    if argv and argv[0] in (SMSUBMIT, REGRESS_SMSUBMIT):
        check_output(argv[0], p.stdout + p.stderr)
    if check and p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (
            argv[0], p.returncode, p.stderr.decode(errors="replace")))
    return p


REGRESS_SMSUBMIT = os.path.join(os.path.dirname(SMSUBMIT), "smsubmit-regress")


def check_output(what, data):
    """Fail on a sanitizer report in a command's output."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    reports = sanitizer_reports(data, what)
    if reports:
        raise AssertionError("sanitizer report:\n" + "\n".join(reports))


def ensure_users():
    """As root: the daemon's two system users and /var/empty."""
    if not os.path.isdir("/var/empty"):
        os.makedirs("/var/empty", 0o755)
    os.chown("/var/empty", 0, 0)
    os.chmod("/var/empty", 0o755)
    for user in (DAEMON_USER, QUEUE_USER):
        try:
            pwd.getpwnam(user)
        except KeyError:
            run(["useradd", "-r", "-M", "-d", "/var/empty",
                 "-s", "/usr/sbin/nologin", user])


_cache = None


def _credentials():
    """Certificate, key and sasldb, made once per run and copied."""
    global _cache
    if _cache and os.path.isdir(_cache):
        return _cache
    _cache = tempfile.mkdtemp(prefix="smsubmit-creds-")
    atexit.register(cleanup_credentials)
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", os.path.join(_cache, "key.pem"),
         "-out", os.path.join(_cache, "cert.pem"), "-days", "3650",
         "-subj", "/CN=" + HOSTNAME, "-addext",
         "subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1,"
         "IP:0:0:0:0:0:0:0:1" % HOSTNAME])
    for user, pw in USERS.items():
        run(["saslpasswd2", "-f", os.path.join(_cache, "sasldb"),
             "-u", HOSTNAME, "-c", "-p", user], input=pw.encode())
    return _cache


def cleanup_credentials():
    global _cache
    if _cache:
        shutil.rmtree(_cache, ignore_errors=True)
        _cache = None


def proc_title(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def proc_status(pid):
    """/proc/PID/status as a dict of field -> value string."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


# --- what a process holds in memory (root only), for the key tests ---

def key_secrets(keyfile):
    """Every form of the private key that could sit in memory: name ->
    bytes."""
    with open(keyfile, "rb") as f:
        pem = f.read()
    body = b"".join(l for l in pem.splitlines() if not l.startswith(b"-"))
    der = run(["openssl", "pkey", "-in", keyfile, "-outform", "DER"]).stdout
    text = run(["openssl", "pkey", "-in", keyfile, "-text",
                "-noout"]).stdout.decode()
    out = {}
    fields = {}
    name = None
    for line in text.splitlines():
        m = re.match(r"^(\w+):\s*(.*)$", line)
        if m:
            name = m.group(1)
            fields[name] = m.group(2).strip()
        elif name and line.startswith(" "):
            fields[name] += line.strip()
    for field in ("priv", "prime1", "prime2", "privateExponent"):
        if field not in fields:
            continue
        n = bytes.fromhex(fields[field].replace(":", ""))
        n = n.lstrip(b"\0")
        out[field + " (big-endian)"] = n
        out[field + " (little-endian)"] = n[::-1]
    assert any(k.startswith("priv") or k.startswith("prime") for k in out), \
        "no private numbers read from %s: %s" % (keyfile, text[:200])
    # the DER and PEM forms of the secret number alone (the public key
    # is in them too, and in the certificate the listener holds)
    secret = out.get("priv (big-endian)") or out["prime1 (big-endian)"]
    off = der.index(secret)
    out["DER"] = der[off:off + 24]
    first = (off + 2) // 3        # the first base64 group inside it
    out["PEM text"] = body[first * 4:first * 4 + 24]
    return out


def writable_memory(pid):
    """The bytes of every writable mapping of pid (root only)."""
    if sanitized():
        # terabytes of shadow memory; the plain build is scanned
        raise Skip("ASan build: the memory scan runs in the plain "
                           "build")
    chunks = []
    with open("/proc/%d/maps" % pid) as maps, \
            open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            addr, perms = line.split()[:2]
            if "w" not in perms:
                continue
            lo, hi = (int(x, 16) for x in addr.split("-"))
            try:
                mem.seek(lo)
                chunks.append(mem.read(hi - lo))
            except (OSError, ValueError, OverflowError):
                pass  # e.g. [vvar]
    data = b"".join(chunks)
    assert len(data) > 100000, "read only %d octets of %d" % (len(data), pid)
    return data


def found_in_memory(pid, needles):
    """Names of the needles in the writable memory of pid."""
    mem = writable_memory(pid)
    return sorted(k for k, v in needles.items() if v in mem)



class Smsubmit:
    """A daemon with its own directory, config, credentials and upstream."""

    def __init__(self, conf=None, extra=(), mechanisms="PLAIN LOGIN",
                 ipv6=False, name="smsubmit", start=True, run_as=None,
                 env=None):
        """run_as (when root): start the daemon as that unprivileged
        user instead, the way it runs when not started as root.  env:
        variables added to the daemon's environment (e.g. LD_PRELOAD)."""
        self.env = dict(env or {})
        self.name = name
        self.ipv6 = ipv6
        self.dir = tempfile.mkdtemp(prefix="smsubmit-regress-")
        os.chmod(self.dir, 0o755)
        self.run_as = run_as if os.geteuid() == 0 else None
        self.root = os.geteuid() == 0 and not self.run_as
        self.proc = None
        self.preexec = None  # run in the daemon's process before exec
        self.verbose = True  # -v: debug logging (make bench turns it off)
        self.pids = {}  # children seen, for cleanup after a crash
        self.final_log = None
        self.logf = None
        # what fails the test whatever it asserted: sanitizer reports, a
        # bad exit status (see check_sanitizer and stop_daemon)
        self.problems = []
        self.exit_seen = False
        self._log_start = self._probes = 0
        self._san_pos = 0
        self._san_seen = {}
        self.san_prefix = os.path.join(self.dir, "sanitizer", "report")
        os.mkdir(os.path.dirname(self.san_prefix))
        os.chmod(os.path.dirname(self.san_prefix), 0o1777)
        self.tls_port = free_port(ipv6)
        self.starttls_port = free_port(ipv6)
        self.relay_port = free_port()
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        self.queue = os.path.join(self.dir, "queue")
        self.log_path = os.path.join(self.dir, "smsubmit.log")
        self.conf_path = os.path.join(self.dir, "smsubmit.conf")
        self._setup_files(mechanisms, conf or {}, extra)
        self.upstream = Upstream("127.0.0.1", self.relay_port,
                                 os.path.join(self.dir, "mail"))
        live.append(self)
        created.append(self)
        if start:
            try:
                self.start()
            except BaseException:
                self.stop()
                raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # --- files ---

    def _setup_files(self, mechanisms, overrides, extra):
        creds = _credentials()
        for f in ("cert.pem", "key.pem", "sasldb"):
            shutil.copy(os.path.join(creds, f), os.path.join(self.dir, f))
        os.chmod(self.key, 0o600)
        sasl = os.path.join(self.dir, "sasl")
        os.mkdir(sasl, 0o755)
        with open(os.path.join(sasl, "smsubmit.conf"), "w") as f:
            f.write("pwcheck_method: auxprop\n"
                    "auxprop_plugin: sasldb\n"
                    "sasldb_path: %s/sasldb\n"
                    "mech_list: PLAIN LOGIN SCRAM-SHA-256 SCRAM-SHA-1 "
                    "CRAM-MD5\n" % self.dir)
        if self.root:
            ensure_users()
            pw = pwd.getpwnam(DAEMON_USER)
            for p in (sasl, os.path.join(sasl, "smsubmit.conf"),
                      os.path.join(self.dir, "sasldb")):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            user = DAEMON_USER
            quser = QUEUE_USER
        elif self.run_as:
            pw = pwd.getpwnam(self.run_as)
            for top, dirs, files in os.walk(self.dir):
                for p in [top] + [os.path.join(top, f) for f in files]:
                    os.chown(p, pw.pw_uid, pw.pw_gid)
            user = quser = self.run_as
        else:
            user = quser = pwd.getpwuid(os.getuid()).pw_name
        addrs = ["127.0.0.1"] + (["::1"] if self.ipv6 else [])
        lines = []
        for a in addrs:
            lines.append("listen on %s port %d tls" % (a, self.tls_port))
            lines.append("listen on %s port %d starttls" % (
                a, self.starttls_port))
        settings = {
            "hostname": '"%s"' % HOSTNAME,
            "tls certificate": '"%s" key "%s"' % (self.cert, self.key),
            "auth sasl-config": '"%s"' % sasl,
            "auth mechanisms": mechanisms,
            "auth max-failures": "3",
            # the suite shares 127.0.0.1: short delays, no ban unless asked
            "auth delay": "1s to 1s",
            "auth ban": "after 100000 within 1m for 1m",
            "relay to": "127.0.0.1 port %d" % self.relay_port,
            "queue": '"%s"' % self.queue,
            "queue lifetime": "1d",
            "queue retry": "1s to 4s",
            "limit message-size": "2M",
            "limit recipients": "5",
            "limit sessions": "100",
            "limit sessions-per-address": "100",
            "timeout command": "60s",
            "timeout data": "60s",
            "user": '"%s"' % user,
            "queue user": '"%s"' % quser,
        }
        settings.update(overrides)
        lines.insert(0, "hostname %s" % settings.pop("hostname"))
        for k, v in settings.items():
            if v is not None:
                lines.append("%s %s" % (k, v))
        lines.extend(extra)
        self.conf_text = "\n".join(lines) + "\n"
        with open(self.conf_path, "w") as f:
            f.write(self.conf_text)

    def add_conf(self, *lines):
        """Append statements to the config (before start)."""
        self.conf_text += "".join(l + "\n" for l in lines)
        with open(self.conf_path, "w") as f:
            f.write(self.conf_text)

    def queue_owner(self):
        """(uid, gid) the queue tree must have: the queue user's as root."""
        if self.root:
            pw = pwd.getpwnam(QUEUE_USER)
        elif self.run_as:
            pw = pwd.getpwnam(self.run_as)
        else:
            return os.getuid(), os.getgid()
        return pw.pw_uid, pw.pw_gid

    def make_queue(self):
        """The queue tree as the daemon makes it (before start), to put
        leftovers in."""
        uid, gid = self.queue_owner()
        for sub in ("", "/tmp", "/queue", "/corrupt"):
            os.makedirs(self.queue + sub, 0o700, exist_ok=True)
            os.chmod(self.queue + sub, 0o700)
            os.chown(self.queue + sub, uid, gid)

    def write_file(self, name, text, mode=0o644):
        """A file in the daemon's directory, readable by its users."""
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    # --- running ---

    def start(self):
        self.upstream.start()
        self.start_daemon()

    def start_daemon(self, timeout=10):
        if not os.access(SMSUBMIT, os.X_OK):
            raise RuntimeError("%s is not built" % SMSUBMIT)
        self.logf = open(self.log_path, "ab")
        self._log_start = len(self.log())
        self.logf.write(b"--- harness: starting smsubmit\n")
        self.logf.flush()
        argv = [SMSUBMIT, "-d"] + (["-v"] if self.verbose else []) + \
            ["-f", self.conf_path]
        if self.run_as:
            argv = ["setpriv", "--reuid", self.run_as, "--regid",
                    str(pwd.getpwnam(self.run_as).pw_gid), "--clear-groups",
                    "--"] + argv
        self.exit_seen = False
        env = sanitizer_env(self.san_prefix) if sanitized() else \
            dict(os.environ)
        env.update(self.env)
        if "LD_PRELOAD" in self.env and sanitized():
            # the sanitizers' runtime wants to come first; it still works
            env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + \
                ":verify_asan_link_order=0"
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL, stdout=self.logf, stderr=self.logf,
            cwd=self.dir, env=env, preexec_fn=self.preexec)
        deadline = time.monotonic() + timeout
        self._probes = 0
        addrs = ["127.0.0.1"] + (["::1"] if self.ipv6 else [])
        pending = [(a, p) for a in addrs
                   for p in (self.tls_port, self.starttls_port)]
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError("smsubmit exited with status %d at "
                                   "startup" % self.proc.returncode)
            if time.monotonic() > deadline:
                raise RuntimeError("smsubmit not listening on %s after %ds"
                                   % (pending, timeout))
            a, p = pending[0]
            try:
                socket.create_connection((a, p), timeout=1).close()
                pending.pop(0)
                self._probes += 1
            except OSError:
                time.sleep(0.05)
        # every child says when it is set up; the parent then logs this
        while not re.search(r"priv: started, version",
                            self.log()[self._log_start:]):
            if self.proc.poll() is not None:
                raise RuntimeError("smsubmit exited with status %d at "
                                   "startup" % self.proc.returncode)
            if time.monotonic() > deadline:
                raise RuntimeError("smsubmit not started after %ds" %
                                   timeout)
            time.sleep(0.05)
        self._note_children(2)

    def _note_children(self, wait):
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            kids = self.children()
            self.pids.update({pid: t for t, pid in kids.items()})
            if len(kids) == len(TITLES):
                return
            time.sleep(0.05)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def healthy(self):
        """Running with its three children."""
        return self.alive() and len(self.children()) == len(TITLES)

    def signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout=15):
        """The daemon is expected to exit (by itself, or after a signal
        the test sent): wait for it and return its exit status."""
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("the daemon still runs %gs later" %
                                 timeout)
        self.exit_seen = True
        return status

    def stop_daemon(self, timeout=15):
        """SIGTERM the daemon we started, SIGKILL if it lingers; return
        its exit status (None if it was not running).  Anything but a
        clean exit 0 after the SIGTERM, or an exit nobody waited for
        (wait_exit), is a problem that fails the test."""
        if self.proc is None:
            return None
        self._note_children(0)
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
                if self.proc.returncode != 0:
                    self.problems.append("exit status %d after SIGTERM" %
                                         self.proc.returncode)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
                self.problems.append("still running %ds after SIGTERM" %
                                     timeout)
        elif not self.exit_seen:
            self.problems.append("exited by itself with status %d" %
                                 self.proc.returncode)
        self.kill_leftovers()
        self.check_sanitizer()
        status = self.proc.returncode
        self.proc = None
        if self.logf:
            self.logf.close()
            self.logf = None
        return status

    def kill_leftovers(self, wait=3):
        """Children that outlived their parent (checked by title, so a
        reused PID is left alone) get SIGKILL after a short wait."""
        deadline = time.monotonic() + wait
        while True:
            left = [pid for pid, t in self.pids.items()
                    if pid_alive(pid) and t in (proc_title(pid) or "")]
            if not left:
                break
            if time.monotonic() > deadline:
                for pid in left:
                    os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + wait
                self.leftovers = left
            time.sleep(0.05)
        self.pids = {}

    def kill9(self):
        """kill -9 the parent and every child, as a power cut would."""
        kids = self.children()
        self.pids.update({pid: t for t, pid in kids.items()})
        for pid in [self.proc.pid] + list(kids.values()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(5)
        self.kill_leftovers(0)
        self.proc = None
        if self.logf:
            self.logf.close()
            self.logf = None

    def restart(self):
        self.stop_daemon()
        self.start_daemon()

    def stop(self, keep=False):
        try:
            self.stop_daemon()
        finally:
            self.upstream.stop()
            if os.path.isdir(self.dir):
                self.check_sanitizer()
                self.final_log = self.log_tail()
            if self in live:
                live.remove(self)
            if not keep and not os.environ.get("REGRESS_KEEP"):
                shutil.rmtree(self.dir, ignore_errors=True)

    # --- looking at it ---

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=25):
        return self.log().splitlines()[-n:]

    def check_sanitizer(self):
        """Sanitizer reports new since the last look, in the log (the
        children's stderr) or in report files, go to self.problems."""
        log = self.log()
        new = log[self._san_pos:]
        new = new[:new.rfind("\n") + 1]
        self._san_pos += len(new)
        self.problems += sanitizer_reports(new, "%s daemon log" % self.name)
        where = os.path.dirname(self.san_prefix)
        try:
            names = sorted(os.listdir(where))
        except OSError:
            return
        for name in names:
            path = os.path.join(where, name)
            try:
                with open(path, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            seen = self._san_seen.get(path, 0)
            if len(text) > seen:
                self._san_seen[path] = len(text)
                self.problems.append("sanitizer report %s:\n%s" % (
                    path, symbolize_report(text[seen:seen + 8000])))

    def take_problems(self):
        """What fails the test (see self.problems), now cleared."""
        if os.path.isdir(self.dir):
            self.check_sanitizer()
        out, self.problems = self.problems, []
        return out

    def log_mark(self):
        """Where the log ends now: wait_log(..., since=mark) looks only
        at what comes after."""
        return len(self.log())

    def wait_log(self, pattern, timeout=5, since=0):
        """Poll the log for a regex; return the match or fail."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.log()[since:], re.M)
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError("log has no line matching %r after %gs"
                                     % (pattern, timeout))
            time.sleep(0.1)

    def sessions_open(self):
        """Session IDs the log shows connected and not yet gone, since
        the daemon started; None while the start-up probes (the
        connections start_daemon made to see it listen) are not all
        logged."""
        log = self.log()[self._log_start:]
        opened = re.findall(r"session ([0-9a-f]{8}) connect from", log)
        if len(opened) < self._probes:
            return None
        gone = set(re.findall(r"session ([0-9a-f]{8}) disconnect$", log,
                              re.M))
        return set(opened) - gone

    def wait_idle(self, timeout=10):
        """Until no session is open (the start-up probes included)."""
        wait_for(lambda: self.sessions_open() == set(), timeout,
                 lambda: "sessions still open: %s" % self.sessions_open())

    def children(self):
        """{title: pid} of the daemon's children, e.g. {"[smtp]": 1234}."""
        out = {}
        if not self.alive():
            return out
        try:
            with open("/proc/%d/task/%d/children" % (self.pid, self.pid)) as f:
                pids = [int(x) for x in f.read().split()]
        except OSError:
            return out
        for pid in pids:
            title = proc_title(pid) or ""
            for t in TITLES:
                if t in title:
                    out[t] = pid
        return out

    def messages(self):
        return read_store(self.upstream.store)

    def wait_messages(self, n, timeout=10):
        return self.upstream.wait(n, timeout=timeout)

    def wait_message(self, token, timeout=10):
        """The one upstream message containing token (bytes or str, e.g.
        a queue ID or a unique subject)."""
        if isinstance(token, str):
            token = token.encode()
        return self.upstream.wait(1, lambda m: token in m.eml, timeout)[0]

    def find_messages(self, token):
        if isinstance(token, str):
            token = token.encode()
        return [m for m in self.messages() if token in m.eml]

    def queue_files(self, sub=None):
        """Every regular file under the queue directory (or its
        subdirectory sub: "tmp", "queue", "corrupt"), but for the queue's
        spare files that hold nothing (tmp/spare-*, empty or all zeros:
        see smtpd/spare.c): one that holds anything else is listed, so a
        spare holding mail is a leftover."""
        out = []
        for top, _, files in os.walk(os.path.join(self.queue, sub)
                                     if sub else self.queue):
            out.extend(os.path.join(top, f) for f in files)
        spares = set(self.spares())
        return [f for f in out if f not in spares or not blank(f)]

    def spares(self):
        """The queue's spare files in tmp/, kept for reuse."""
        tmp = os.path.join(self.queue, "tmp")
        try:
            names = os.listdir(tmp)
        except FileNotFoundError:
            return []
        return [os.path.join(tmp, n) for n in names
                if re.fullmatch(r"spare-[me]\.[0-9]+", n)]

    # --- clients ---

    def port(self, kind):
        return self.tls_port if kind == "tls" else self.starttls_port

    def client(self, kind="tls", host="127.0.0.1", **kw):
        """A connected client: kind "tls" (port 465 style, greeted after
        the handshake) or "starttls" (greeted in plaintext)."""
        return Client(host, self.port(kind), tls=(kind == "tls"),
                      cafile=self.cert, **kw)

    def session(self, kind="tls", user="alice", password=None):
        """Encrypted, EHLO'd and authenticated."""
        c = self.client(kind)
        if kind == "starttls":
            c.ehlo()
            c.starttls()
        c.ehlo()
        r = c.auth_plain(user, password or USERS[user])
        expect(r, 235, "2.7.0")
        return c

    def submit(self, msg, sender="alice@example.org",
               rcpts=("bob@example.org",), kind="tls"):
        """One authenticated submission; returns the queue ID."""
        c = self.session(kind)
        try:
            return c.send_message(sender, rcpts, msg)
        finally:
            c.quit()


class Closed(AssertionError):
    pass


class Reply:
    def __init__(self, lines):
        self.raw = lines
        self.code = int(lines[-1][:3])
        self.lines = [l[4:] for l in lines]
        self.text = "\n".join(self.lines)
        m = re.match(r"([245]\.\d{1,3}\.\d{1,3})(\s|$)", self.lines[0])
        self.enh = m.group(1) if m else None

    def __str__(self):
        return " / ".join(self.raw)

    __repr__ = __str__


def blank(path):
    """The file holds nothing: empty, or only zero octets."""
    with open(path, "rb") as f:
        return not f.read().strip(b"\0")


def queued_parts(path):
    """A committed message file (queue/ID.msg) as (envelope, message): the
    envelope's text at its head (smtpd/envelope.c), or None for a file of
    the older layout, which holds the message alone."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(b"version "):
        return None, data
    end = data.find(b"\n\n")
    assert end != -1, "%s: an envelope with no end" % path
    return data[:end + 1].decode("ascii"), data[end + 2:]


def queued_message(path):
    """The message text a committed message file holds."""
    return queued_parts(path)[1]


def expect(reply, code, enh=None, what=""):
    """Assert a reply's code and enhanced status code."""
    ok = reply.code == code and (enh is None or reply.enh == enh)
    if not ok:
        want = "%d %s" % (code, enh or "")
        raise AssertionError("%sexpected %s, got %r" % (
            what + ": " if what else "", want.strip(), str(reply)))
    return reply


def refused_at_accept(d, kind, source=None, host="127.0.0.1"):
    """Assert that a new connection is refused at accept, before any TLS
    work (SPEC section 5): on a starttls listener 421 4.7.0 then close; on
    a tls listener closed without a byte, although the client has sent
    nothing, not even a ClientHello.  Returns what the server sent."""
    s = socket.create_connection(
        (host, d.port(kind)), timeout=5,
        source_address=(source, 0) if source else None)
    data = b""
    try:
        s.settimeout(5)
        while True:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                break
            except socket.timeout:
                raise AssertionError(
                    "%s: not closed within 5s of connect (got %r): the "
                    "refusal waits for the client" % (kind, data))
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    if kind == "tls":
        assert data == b"", "tls: %r sent before closing" % data
    else:
        assert re.match(rb"421 4\.7\.0 [^\r\n]*\r\n\Z", data), \
            "starttls: refusal %r is not one 421 4.7.0 line" % data
    return data


def b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def stuff(msg):
    """A message (CRLF lines) as sent after DATA, with the final dot."""
    if isinstance(msg, str):
        msg = msg.encode()
    if msg and not msg.endswith(b"\r\n"):
        msg += b"\r\n"
    lines = msg.split(b"\r\n")
    out = b"\r\n".join(b"." + l if l.startswith(b".") else l for l in lines)
    return out + b".\r\n"


def strip_received(eml):
    """The message without the Received: header the daemon put on top;
    (received header, rest)."""
    if not eml.startswith(b"Received:"):
        raise AssertionError("message does not start with Received: %r"
                             % eml[:80])
    end = eml.index(b"\r\n") + 2
    while eml[end:end + 1] in (b" ", b"\t"):
        end = eml.index(b"\r\n", end) + 2
    return eml[:end], eml[end:]


def header_section(eml):
    """The header lines (unfolded) of a message, as a list of str."""
    head = eml.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    return re.split(r"\r\n(?![ \t])", head)


class Client:
    """A raw SMTP client: exact bytes out, whole replies in."""

    def __init__(self, host, port, tls=False, cafile=None, timeout=10,
                 greet=True, source=None):
        """source: the local address to connect from (any 127.x.y.z
        works on Linux's loopback)."""
        self.timeout = timeout
        self.cafile = cafile
        self.host = host
        self.buf = b""
        self.sock = socket.create_connection(
            (host, port), timeout=timeout,
            source_address=(source, 0) if source else None)
        clients.append(self)
        self.tls = False
        if tls:
            self._wrap()
        self.greeting = self.reply() if greet else None

    def _context(self):
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=self.cafile)
        return ctx

    def _wrap(self):
        self.sock = self._context().wrap_socket(self.sock,
                                                server_hostname=HOSTNAME)
        self.tls = True

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self, s):
        self.send((s.encode() if isinstance(s, str) else s) + b"\r\n")

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ssl.SSLError as e:
            raise Closed("TLS error: %s" % e)
        except ConnectionResetError:
            data = b""
        if not data:
            raise Closed("connection closed (unparsed: %r)" % self.buf)
        self.buf += data

    def reply(self, timeout=None):
        """One whole (possibly multi-line) reply."""
        timeout = timeout or self.timeout
        lines = []
        deadline = time.monotonic() + timeout
        while True:
            while b"\r\n" not in self.buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no reply within %gs (got %r)" % (
                        timeout, lines + [self.buf]))
                try:
                    self._fill(left)
                except socket.timeout:
                    raise AssertionError("no reply within %gs (got %r)" % (
                        timeout, lines + [self.buf]))
            line, self.buf = self.buf.split(b"\r\n", 1)
            line = line.decode("utf-8", "replace")
            if not re.match(r"\d{3}[ -]", line + " "):
                raise AssertionError("malformed reply line %r" % line)
            lines.append(line)
            if len(line) == 3 or line[3] == " ":
                return Reply(lines)

    def cmd(self, s, timeout=None):
        self.line(s)
        return self.reply(timeout)

    def pending(self, wait=0.5):
        """Whatever the server sends unasked within wait seconds."""
        deadline = time.monotonic() + wait
        try:
            while time.monotonic() < deadline:
                self._fill(max(0.01, deadline - time.monotonic()))
        except (socket.timeout, Closed):
            pass
        data, self.buf = self.buf, b""
        return data

    def closed(self, wait=3):
        """True once the server closes within wait seconds; bytes it sent
        meanwhile are kept in self.buf."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                self._fill(max(0.01, deadline - time.monotonic()))
            except Closed:
                return True
            except socket.timeout:
                return False
            except OSError:
                return True
        return False

    def ehlo(self, name="client.test"):
        r = expect(self.cmd("EHLO " + name), 250, what="EHLO")
        self.caps = [l.upper() for l in r.lines[1:]]
        return r

    def starttls(self):
        expect(self.cmd("STARTTLS"), 220, what="STARTTLS")
        if self.buf:
            raise AssertionError("data after 220 to STARTTLS, before TLS: %r"
                                 % self.buf)
        self._wrap()

    def auth_plain(self, user, password, authzid=""):
        return self.cmd("AUTH PLAIN " + b64("%s\0%s\0%s" % (
            authzid, user, password)))

    def auth_login(self, user, password):
        r = self.cmd("AUTH LOGIN")
        if r.code != 334:
            return r
        r = self.cmd(b64(user))
        if r.code != 334:
            return r
        return self.cmd(b64(password))

    def version(self):
        return self.sock.version() if self.tls else None

    def cipher(self):
        return self.sock.cipher()[0] if self.tls else None

    def send_message(self, sender, rcpts, msg, params=""):
        """MAIL, RCPTs, DATA, the stuffed message; returns the queue ID."""
        expect(self.cmd("MAIL FROM:<%s>%s" % (sender, params)), 250, "2.1.0",
               "MAIL")
        for r in rcpts:
            expect(self.cmd("RCPT TO:<%s>" % r), 250, "2.1.5", "RCPT")
        expect(self.cmd("DATA"), 354, what="DATA")
        self.send(stuff(msg))
        r = expect(self.reply(), 250, "2.0.0", "end of DATA")
        return queue_id(r)

    def quit(self):
        try:
            self.line("QUIT")
            self.reply(2)
        except (AssertionError, OSError):
            pass
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def queue_id(reply):
    m = re.search(r"queued as ([0-9A-Fa-f]{16})\b", reply.text)
    if not m:
        raise AssertionError("no 16-hex-digit queue ID in %r" % str(reply))
    return m.group(1)


def unique(tag="t"):
    return "%s-%d-%06d" % (tag, os.getpid(), random.randrange(10 ** 6))


def message(subject, body="Hello.\r\n", headers=None, msgid=True, date=True):
    """A well-formed message; Message-ID and Date unless asked not to."""
    h = ["From: Alice <alice@example.org>", "To: Bob <bob@example.org>",
         "Subject: %s" % subject]
    if date:
        h.append("Date: Mon, 1 Jan 2024 10:00:00 +0000")
    if msgid:
        h.append("Message-ID: <%s@example.org>" % subject)
    h.extend(headers or [])
    body = body.encode() if isinstance(body, str) else body
    return ("\r\n".join(h) + "\r\n\r\n").encode() + body
