"""The first ten minutes (issue 7): `make run` as the README gives it, in
a 0700 directory as root with a _smsubmit of another home, every command it
prints delivering into run/mail/, and any way of stopping it stopping
everything; `smsubmit -n` telling the operator what is wrong with the
files, users and modes the configuration names (and the daemon refusing to
start on the same); the man pages under groff and mandoc; the systemd unit,
the journal's priorities, the fail2ban jail and the OpenBSD rc.d script."""

import collections
import fcntl
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from harness import (DAEMON_USER, QUEUE_USER, REPO, SMSUBMIT, Skip,
                     Smsubmit, free_port, need_root, timeout)


def check(path):
    p = subprocess.run([SMSUBMIT, "-n", "-f", path], capture_output=True,
                       timeout=30)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


def conf_with(d, lines):
    """d's config with lines appended, as test.conf; the path and the
    number of the first appended line."""
    path = os.path.join(d.dir, "test.conf")
    base = d.conf_text.splitlines()
    with open(path, "w") as f:
        f.write("\n".join(base + lines) + "\n")
    return path, len(base) + 1


def expect_problem(path, pattern):
    status, out = check(path)
    assert status == 1, "smsubmit -n exited %d: %s" % (status, out)
    assert re.search(pattern, out, re.M), \
        "no line matching %r in: %s" % (pattern, out)
    assert "configuration OK" not in out, out
    return out


def start_refused(d, pattern):
    """Starting d fails before the "started" line, saying pattern."""
    try:
        d.start()
    except RuntimeError:
        pass
    else:
        raise AssertionError("the daemon started")
    assert d.wait_exit() == 1
    log = open(d.log_path, errors="replace").read()
    assert "priv: started," not in log, log
    assert re.search(pattern, log, re.M), \
        "no line matching %r in: %s" % (pattern, log)


# --- smsubmit -n and the start-up checks ---

def t_check_key_not_matching_certificate():
    d = Smsubmit(start=False)
    other = os.path.join(d.dir, "other-key.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", other], check=True,
                   capture_output=True)
    cert2 = os.path.join(d.dir, "cert2.pem")
    shutil.copy(d.cert, cert2)
    path, line = conf_with(d, ['tls certificate "%s" key "%s"' %
                               (cert2, other)])
    expect_problem(path, r"^\S*/test\.conf:%d: certificate %s and key %s: the "
                   r"key does not match the certificate$" %
                   (line, re.escape(cert2), re.escape(other)))


def t_check_certificate_missing():
    d = Smsubmit(start=False)
    path, line = conf_with(d, ['tls certificate "/nonexistent/c.pem" key '
                               '"%s"' % d.key])
    expect_problem(path, r"^\S*/test\.conf:%d: certificate /nonexistent/c\.pem: "
                   r"No such file or directory$" % line)


def t_check_unknown_and_root_users():
    need_root()
    d = Smsubmit(start=False)
    path, line = conf_with(d, ['user "nosuchuser9"', 'queue user "root"'])
    out = expect_problem(path, r"^\S*/test\.conf:%d: user nosuchuser9 does not "
                         r"exist$" % line)
    assert re.search(r"^\S*/test\.conf:%d: queue user root has uid 0" %
                     (line + 1), out, re.M), out


def t_queue_symlink_refused_not_followed():
    """A link planted in the queue by its (unprivileged) owner: root
    neither follows nor chowns it, -n and the start say so."""
    need_root()
    d = Smsubmit(start=False)
    d.make_queue()
    victim = os.path.join(d.dir, "victim")
    with open(victim, "w") as f:
        f.write("root's\n")
    os.chmod(victim, 0o644)
    os.rmdir(os.path.join(d.queue, "tmp"))
    os.symlink(victim, os.path.join(d.queue, "tmp"))
    pattern = r"queue directory %s/tmp is a symbolic link$" % \
        re.escape(d.queue)
    expect_problem(d.conf_path, r"^%s:\d+: %s" % (re.escape(d.conf_path),
                                                  pattern))
    start_refused(d, pattern)
    st = os.lstat(victim)
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o644, \
        "the link's target was changed: uid %d mode %o" % (
            st.st_uid, st.st_mode & 0o777)


def t_queue_directory_itself_a_symlink_refused():
    need_root()
    d = Smsubmit(start=False)
    target = os.path.join(d.dir, "elsewhere")
    os.mkdir(target, 0o755)
    os.symlink(target, d.queue)
    start_refused(d, r"queue directory %s is a symbolic link$" %
                  re.escape(d.queue))
    st = os.stat(target)
    assert st.st_uid == 0 and not os.listdir(target), \
        "root wrote into or chowned the link's target"


def t_queue_wrong_owner_or_mode_refused():
    need_root()
    d = Smsubmit(start=False)
    d.make_queue()
    os.chown(os.path.join(d.queue, "queue"), 0, 0)
    os.chmod(os.path.join(d.queue, "corrupt"), 0o755)
    out = expect_problem(d.conf_path, r"queue directory %s/queue is owned "
                         r"by uid 0, not by the queue user" %
                         re.escape(d.queue))
    assert re.search(r"queue directory %s/corrupt has mode 0755; it must "
                     r"be 0700" % re.escape(d.queue), out), out
    start_refused(d, r"queue directory %s/queue is owned by uid 0" %
                  re.escape(d.queue))


def t_queue_missing_is_created_private():
    d = Smsubmit(start=False)
    status, out = check(d.conf_path)
    assert status == 0, out
    assert not os.path.exists(d.queue), "-n created the queue"
    d.start()
    uid = pwd.getpwnam(QUEUE_USER).pw_uid if os.geteuid() == 0 \
        else os.geteuid()
    for sub in ("", "/tmp", "/queue", "/corrupt"):
        st = os.lstat(d.queue + sub)
        assert st.st_uid == uid and st.st_mode & 0o7777 == 0o700, \
            "%s: uid %d mode %o" % (sub, st.st_uid, st.st_mode & 0o7777)
    d.stop()


def t_check_queue_parent_missing():
    d = Smsubmit(start=False)
    path, line = conf_with(d, ['queue "/nonexistent/dir/queue"'])
    expect_problem(path, r"^\S*/test\.conf:%d: queue directory "
                   r"/nonexistent/dir/queue cannot be created" % line)


def t_sasl_dir_unreadable_by_auth_user_refused():
    """Cyrus would fall back to /etc/sasldb2 without a word: refuse."""
    need_root()
    d = Smsubmit(start=False)
    sasl = os.path.join(d.dir, "sasl")
    os.chown(sasl, 0, 0)
    os.chmod(sasl, 0o700)
    pattern = r"sasl-config %s: %s cannot read it: Permission denied$" % (
        re.escape(sasl), DAEMON_USER)
    expect_problem(d.conf_path, r"^%s:\d+: %s" % (re.escape(d.conf_path),
                                                  pattern))
    start_refused(d, pattern)


def t_sasldb_unreadable_by_auth_user_refused():
    need_root()
    d = Smsubmit(start=False)
    db = os.path.join(d.dir, "sasldb")
    os.chown(db, 0, 0)
    os.chmod(db, 0o600)
    pattern = r"names the sasldb %s, which %s cannot read: Permission " \
        r"denied$" % (re.escape(db), DAEMON_USER)
    expect_problem(d.conf_path, pattern)
    start_refused(d, pattern)


def t_sasl_config_file_missing_refused():
    d = Smsubmit(start=False)
    os.unlink(os.path.join(d.dir, "sasl", "smsubmit.conf"))
    expect_problem(d.conf_path, r"cannot read %s/sasl/smsubmit\.conf: No "
                   r"such file or directory \(Cyrus SASL would use its "
                   r"defaults\)$" % re.escape(d.dir))


def t_check_reports_every_problem():
    need_root()
    d = Smsubmit(start=False)
    path, line = conf_with(d, [
        'tls certificate "/nonexistent/a.pem" key "/nonexistent/a.key"',
        'user "nosuchuser9"',
        'queue "/nonexistent/q"'])
    status, out = check(path)
    assert status == 1, out
    for n in (line, line + 1, line + 2):
        assert re.search(r"^\S*/test\.conf:%d: " % n, out, re.M), \
            "line %d not reported: %s" % (n, out)


# --- man pages ---

def rendered(page):
    """(groff text, mandoc text, groff's warnings) of a page."""
    # no hyphenation (mandoc has none): .nh, and .hy made a no-op
    src = b".nh\n.de hy\n..\n" + open(page, "rb").read()
    g = subprocess.run(["groff", "-mandoc", "-Tascii", "-P-cbou", "-ww",
                        "-rLL=78n"], input=src, capture_output=True,
                       timeout=30)
    m = subprocess.run(["mandoc", "-Tascii", "-Owidth=78", page],
                       capture_output=True, timeout=30)
    # warnings from the page as man(1) renders it, hyphenation on
    w = subprocess.run(["groff", "-mandoc", "-Tascii", "-ww", "-z"],
                       stdin=open(page, "rb"), capture_output=True,
                       timeout=30)
    assert m.returncode == 0, m.stderr
    strip = lambda b: re.sub(r".\x08", "", b.decode(errors="replace"))
    return strip(g.stdout), strip(m.stdout), w.stderr.decode()


def t_manpages_same_under_groff_and_mandoc():
    if not shutil.which("groff") or not shutil.which("mandoc"):
        raise Skip("groff or mandoc missing (apt-get install groff-base "
                   "mandoc)")
    for page in ("smsubmit.8", "etc/smsubmit.conf.5"):
        g, m, warnings = rendered(os.path.join(REPO, page))
        assert warnings == "", "%s: groff says: %s" % (page, warnings)
        body = lambda t: [l for l in t.splitlines() if l.strip()][1:-1]
        heads = lambda t: [l for l in body(t) if re.match(r"^[A-Z][A-Z ]+$",
                                                          l)]
        assert heads(g) == heads(m), "%s: sections differ: %s / %s" % (
            page, heads(g), heads(m))
        words = lambda t: collections.Counter(
            re.findall(r"[A-Za-z0-9]+", "\n".join(body(t))))
        wg, wm = words(g), words(m)
        assert wg == wm, "%s: words only groff shows: %s; only mandoc: %s" \
            % (page, dict(wg - wm), dict(wm - wg))
        # the last section is there in full
        assert "RFC 4954" in g or page.endswith(".5"), page


# --- service integration ---

def installed(tmp, prefix="/opt/smsubmit-test"):
    p = subprocess.run(["make", "-C", REPO, "-s", "install", "DESTDIR=" + tmp,
                        "PREFIX=" + prefix], capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return tmp + prefix


@timeout(300)
def t_systemd_unit_installed_with_path_and_hardened():
    if not shutil.which("systemd-analyze"):
        raise Skip("systemd-analyze missing")
    tmp = tempfile.mkdtemp()
    try:
        root = installed(tmp)
        unit = os.path.join(root, "lib/systemd/system/smsubmit.service")
        text = open(unit).read()
        assert "@SBINDIR@" not in text, text
        assert re.search(r"^ExecStart=/opt/smsubmit-test/sbin/smsubmit -d$",
                         text, re.M), text
        assert re.search(r"^SyslogFacility=mail$", text, re.M), text
        assert re.search(r"^LimitNOFILE=\d+$", text, re.M), text
        p = subprocess.run(["systemd-analyze", "security", "--offline=true",
                            unit], capture_output=True, timeout=60)
        out = p.stdout.decode()
        m = re.search(r"Overall exposure level for smsubmit\.service: "
                      r"([0-9.]+)", out)
        assert m, out + p.stderr.decode()
        assert float(m.group(1)) < 4.0, "exposure %s" % m.group(1)
    finally:
        shutil.rmtree(tmp)


def t_journal_lines_carry_priority():
    """Under systemd stderr is the journal (JOURNAL_STREAM): each line
    starts with its syslog priority, which the journal keeps."""
    d = Smsubmit(start=False)
    d.upstream.start()
    log = os.path.join(d.dir, "journal")
    with open(log, "wb") as f:
        st = os.fstat(f.fileno())
        env = dict(os.environ, JOURNAL_STREAM="%d:%d" % (st.st_dev,
                                                        st.st_ino))
        p = subprocess.Popen([SMSUBMIT, "-d", "-f", d.conf_path],
                             stdout=f, stderr=f, env=env,
                             stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while "started" not in open(log).read():
            assert p.poll() is None and time.monotonic() < deadline, \
                open(log).read()
            time.sleep(0.05)
        # a reload with a broken certificate: warnings
        with open(d.cert, "w") as f:
            f.write("not a certificate\n")
        p.send_signal(signal.SIGHUP)
        while not re.search(r"^<4>", open(log).read(), re.M):
            assert p.poll() is None and time.monotonic() < deadline, \
                open(log).read()
            time.sleep(0.05)
    finally:
        p.terminate()
        p.wait(20)
    lines = [l for l in open(log).read().splitlines() if l]
    assert re.search(r"^<6>priv: started, version ", "\n".join(lines),
                     re.M), lines
    bad = [l for l in lines if not re.match(r"^<[0-7]>[a-z]+: ", l)]
    assert not bad, "lines without a priority: %s" % bad


def t_journal_prefix_only_on_the_journal():
    d = Smsubmit()
    try:
        log = d.log()
        assert "priv: started" in log and "<6>" not in log, log
    finally:
        d.stop()


def t_fail2ban_jail_passes_config_test():
    """The jail as shipped, in Debian 12's stock fail2ban configuration
    (sshd off: stock Debian fails on it without rsyslog), passes -t."""
    if not shutil.which("fail2ban-client") or \
            not os.path.isdir("/etc/fail2ban"):
        raise Skip("fail2ban missing (apt-get install fail2ban "
                   "python3-systemd)")
    tmp = tempfile.mkdtemp()
    try:
        conf = os.path.join(tmp, "fail2ban")
        shutil.copytree("/etc/fail2ban", conf, symlinks=True)
        shutil.copy(os.path.join(REPO, "etc/fail2ban/jail.d/smsubmit.local"),
                    os.path.join(conf, "jail.d"))
        for flt in ("smsubmit.conf", "smsubmit-userlimit.conf"):
            shutil.copy(os.path.join(REPO, "etc/fail2ban/filter.d", flt),
                        os.path.join(conf, "filter.d"))
        with open(os.path.join(conf, "jail.d", "zz-regress.local"), "w") as f:
            f.write("[sshd]\nenabled = false\n")
        p = subprocess.run(["fail2ban-client", "-c", conf, "-t"],
                           capture_output=True, timeout=60)
        out = (p.stdout + p.stderr).decode(errors="replace")
        assert p.returncode == 0 and "configuration test is successful" \
            in out, out
        p = subprocess.run(["fail2ban-client", "-c", conf, "-d"],
                           capture_output=True, timeout=60)
        out = p.stdout.decode(errors="replace")
        assert "'smsubmit'" in out and "systemd" in out, out
        assert "'smsubmit-userlimit'" in out, out
    finally:
        shutil.rmtree(tmp)


def t_openbsd_rc_script_checks_config():
    """rc.d(8) script: its configtest runs smsubmit -n (rc.subr stubbed:
    this is not OpenBSD)."""
    d = Smsubmit(start=False)
    tmp = tempfile.mkdtemp()
    try:
        stub = os.path.join(tmp, "rc.subr")
        with open(stub, "w") as f:
            f.write('rc_cmd() { echo "daemon=$daemon"; echo "pexp=$pexp";'
                    ' rc_configtest; }\n')
        text = open(os.path.join(REPO, "etc/smsubmit.rc")).read()
        assert "/etc/rc.d/rc.subr" in text and "@SBINDIR@" in text
        text = text.replace("/etc/rc.d/rc.subr", stub).replace(
            "@SBINDIR@", os.path.dirname(SMSUBMIT))
        script = os.path.join(tmp, "smsubmit")
        with open(script, "w") as f:
            f.write(text)
        env = dict(os.environ, daemon_flags="-f " + d.conf_path)
        p = subprocess.run(["sh", script, "configtest"], capture_output=True,
                           env=env, timeout=30)
        out = (p.stdout + p.stderr).decode()
        assert p.returncode == 0, out
        assert "daemon=%s" % SMSUBMIT in out, out
        assert "configuration OK" in out, out
        # a broken config fails the check
        env["daemon_flags"] = "-f /nonexistent.conf"
        p = subprocess.run(["sh", script, "configtest"], capture_output=True,
                           env=env, timeout=30)
        assert p.returncode != 0, p.stdout + p.stderr
    finally:
        shutil.rmtree(tmp)


# --- the quick start ---

def copy_tree(dest):
    """The checkout, built, without its run/ (timestamps kept: no
    rebuild)."""
    subprocess.run(["cp", "-a", REPO + "/.", dest], check=True)
    shutil.rmtree(os.path.join(dest, "run"), ignore_errors=True)
    shutil.rmtree(os.path.join(dest, ".git"), ignore_errors=True)


def set_home(user, home):
    """usermod -d, or the same edit under the passwd lock when usermod
    refuses because the user has processes (another suite running)."""
    p = subprocess.run(["usermod", "-d", home, user], capture_output=True)
    if p.returncode == 0:
        return
    with open("/etc/.pwd.lock", "w") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        lines = open("/etc/passwd").read().splitlines(True)
        with open("/etc/passwd.regress", "w") as f:
            for l in lines:
                parts = l.split(":")
                if parts[0] == user:
                    parts[5] = home
                    l = ":".join(parts)
                f.write(l)
        os.chmod("/etc/passwd.regress", 0o644)
        os.rename("/etc/passwd.regress", "/etc/passwd")


def our_processes(top):
    """PIDs whose executable or command line lies under top."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            exe = os.readlink("/proc/%s/exe" % pid)
            cmd = open("/proc/%s/cmdline" % pid, "rb").read()
        except OSError:
            continue
        if exe.startswith(top + "/") or (top + "/").encode() in cmd:
            found.append(int(pid))
    return found


class Demo:
    def __init__(self, top, ports=None):
        self.top = top
        self.ports = ports or [free_port(), free_port(), free_port()]
        self.out = os.path.join(top, "make-run.out")
        env = dict(os.environ)
        for k in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS"):
            env.pop(k, None)
        env.update(RUN_SMTPS_PORT=str(self.ports[0]),
                   RUN_SUBMISSION_PORT=str(self.ports[1]),
                   RUN_UPSTREAM_PORT=str(self.ports[2]))
        self.f = open(self.out, "wb")
        self.proc = subprocess.Popen(["make", "run"], cwd=top, env=env,
                                     stdin=subprocess.DEVNULL, stdout=self.f,
                                     stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def text(self):
        return open(self.out, errors="replace").read()

    def banner(self, seconds=240):
        deadline = time.monotonic() + seconds
        while "Ctrl-C stops smsubmit" not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("no banner: %s" % self.text())
            time.sleep(0.2)
        return self.text()

    def commands(self):
        return [l.strip() for l in self.text().splitlines()
                if l.startswith("  swaks ") or l.startswith("  printf ")]

    def stop(self, how):
        if how == "term":
            os.kill(self.proc.pid, signal.SIGTERM)
        else:
            os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(30)
        deadline = time.monotonic() + 15
        while our_processes(self.top) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = our_processes(self.top)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, "left running after %s: %s" % (how, left)

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for pid in our_processes(self.top):
            os.kill(pid, signal.SIGKILL)
        self.f.close()


def quickstart(parent, stop):
    need_root()
    top = tempfile.mkdtemp(dir=parent)
    assert os.stat(top).st_mode & 0o777 == 0o700
    old_home = None
    demo = None
    try:
        try:
            old_home = pwd.getpwnam(DAEMON_USER).pw_dir
        except KeyError:
            subprocess.run(["useradd", "-r", "-M", "-d", "/var/empty",
                            "-s", "/usr/sbin/nologin", DAEMON_USER],
                           check=True)
            old_home = "/var/empty"
        set_home(DAEMON_USER, "/home/%s-not-there" % DAEMON_USER)
        copy_tree(top)
        demo = Demo(top)
        text = demo.banner()
        # the banner comes after the daemon said it is up
        assert text.index("priv: started") < text.index("smsubmit demo:"), \
            text
        cmds = demo.commands()
        assert len(cmds) == 4, text
        assert sum(" --cacert " in c or "--tls-trust-file=" in c
                   for c in cmds) == 2, cmds
        for c in cmds:
            p = subprocess.run(["sh", "-c", c], capture_output=True,
                               timeout=60, cwd="/")
            assert p.returncode == 0, "%s\nexit %d: %s%s\n%s" % (
                c, p.returncode, p.stdout.decode(), p.stderr.decode(),
                demo.text())
        mail = os.path.join(top, "run", "mail")
        deadline = time.monotonic() + 30
        while len([n for n in os.listdir(mail) if n.endswith(".eml")]) < 4:
            assert time.monotonic() < deadline, \
                "mail: %s\n%s" % (os.listdir(mail), demo.text())
            time.sleep(0.2)
        bodies = [open(os.path.join(mail, n), "rb").read()
                  for n in os.listdir(mail) if n.endswith(".eml")]
        assert sum(b"from curl" in b for b in bodies) == 1, bodies
        assert sum(b"from msmtp" in b for b in bodies) == 1, bodies
        assert b"Received: from" in bodies[0], bodies[0]
        demo.stop(stop)
    finally:
        if demo is not None:
            demo.kill()
        if old_home is not None:
            set_home(DAEMON_USER, old_home)
        shutil.rmtree(top, ignore_errors=True)


@timeout(400)
def t_quickstart_in_tmp_as_root_sigterm_stops_all():
    quickstart("/tmp", "term")


@timeout(400)
def t_quickstart_in_root_home_ctrl_c_stops_all():
    home = pwd.getpwuid(0).pw_dir
    if os.stat(home).st_mode & 0o077:
        raise Skip("%s is not 0700 here" % home)
    quickstart(home, "int")


@timeout(400)
def t_quickstart_port_in_use_stops_before_banner():
    need_root()
    top = tempfile.mkdtemp()
    busy = socket.socket()
    demo = None
    try:
        copy_tree(top)
        ports = [free_port(), free_port(), free_port()]
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", ports[2]))
        busy.listen(1)
        demo = Demo(top, ports)
        status = demo.proc.wait(300)
        text = demo.text()
        assert status != 0, text
        assert "port %d on 127.0.0.1 is in use" % demo.ports[2] in text, text
        assert "smsubmit demo:" not in text and "priv: started" not in text, \
            text
        assert not our_processes(top)
    finally:
        busy.close()
        if demo is not None:
            demo.kill()
        shutil.rmtree(top, ignore_errors=True)


def t_quickstart_installs_what_its_clients_need():
    """swaks has no TLS without libnet-ssleay-perl, which it only
    recommends: run.sh (and CI) install it, and the other clients."""
    text = open(os.path.join(REPO, "etc/run.sh")).read()
    deps = re.search(r'^deps="([^"]*)"', text, re.M).group(1).split()
    ci = open(os.path.join(REPO, ".ci/run")).read()
    for pkg in ("swaks", "libnet-ssleay-perl", "curl", "msmtp"):
        assert pkg in deps, "run.sh does not install %s" % pkg
        assert re.search(r"\b%s\b" % re.escape(pkg), ci), \
            ".ci/run does not install %s" % pkg
