"""Privilege separation (SPEC section 2): who runs as whom, where."""

import grp
import os
import pwd
import signal

import harness
from harness import DAEMON_USER, QUEUE_USER, TITLES, Smsubmit, need_root, \
    proc_status, proc_title


def child(d, title):
    kids = d.children()
    assert title in kids, "no %s child: %s" % (title, kids)
    return kids[title]


def ids(pid):
    """(real, effective, saved, fs uids), same for gids, groups."""
    st = proc_status(pid)
    return ([int(x) for x in st["Uid"].split()],
            [int(x) for x in st["Gid"].split()],
            [int(x) for x in st.get("Groups", "").split()])


def runs_as(pid, user):
    pw = pwd.getpwnam(user)
    uids, gids, groups = ids(pid)
    assert uids == [pw.pw_uid] * 4, "uids %s, want %s (%d)" % (
        uids, user, pw.pw_uid)
    assert gids == [pw.pw_gid] * 4, "gids %s, want %s's group %d" % (
        gids, user, pw.pw_gid)
    assert groups in ([], [pw.pw_gid]), "supplementary groups %s (%s)" % (
        groups, [grp.getgrgid(g).gr_name for g in groups])


def t_privsep_process_titles(d):
    title = proc_title(d.pid)
    assert "[priv]" in title, title
    kids = d.children()
    assert sorted(kids) == sorted(TITLES), kids
    for t, pid in kids.items():
        assert proc_status(pid)["PPid"] == str(d.pid), (t, pid)


def t_privsep_parent_root(d):
    need_root()
    uids, gids, _ = ids(d.pid)
    assert uids == [0] * 4 and gids == [0] * 4, (uids, gids)


def t_privsep_smtp_user(d):
    need_root()
    runs_as(child(d, "[smtp]"), DAEMON_USER)


def t_privsep_auth_user(d):
    need_root()
    runs_as(child(d, "[auth]"), DAEMON_USER)


def t_privsep_queue_user(d):
    need_root()
    runs_as(child(d, "[queue]"), QUEUE_USER)


def t_privsep_smtp_chroot(d):
    need_root()
    root = os.readlink("/proc/%d/root" % child(d, "[smtp]"))
    assert root == "/var/empty", root


def t_privsep_crypto_user(d):
    need_root()
    runs_as(child(d, "[crypto]"), DAEMON_USER)


def t_privsep_crypto_chroot(d):
    need_root()
    root = os.readlink("/proc/%d/root" % child(d, "[crypto]"))
    assert root == "/var/empty", root


def maps_base(pid):
    """Where the smsubmit binary is mapped in pid."""
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            if line.rstrip().endswith("/smsubmit") or \
                    "smsubmit-regress" in line or "(deleted)" in line:
                return int(line.split("-")[0], 16)
    raise AssertionError("no smsubmit mapping in %d" % pid)


def t_privsep_children_reexecuted(d):
    """Each child was re-executed: its own layout, not the parent's copy
    (a fork alone would map the binary, heap and stack where the parent
    has them)."""
    need_root()
    pids = [d.pid] + list(d.children().values())
    bases = [maps_base(p) for p in pids]
    assert len(set(bases)) == len(bases), \
        "shared layouts: %s" % dict(zip(pids, map(hex, bases)))
    stacks = []
    for p in pids:
        with open("/proc/%d/maps" % p) as f:
            stacks += [l.split("-")[0] for l in f if "[stack]" in l]
    assert len(set(stacks)) == len(pids), stacks


def t_privsep_queue_chroot(d):
    need_root()
    root = os.readlink("/proc/%d/root" % child(d, "[queue]"))
    assert os.path.realpath(root) == os.path.realpath(d.queue), root


def t_privsep_auth_not_chrooted(d):
    need_root()
    root = os.readlink("/proc/%d/root" % child(d, "[auth]"))
    assert root == "/", root


def open_files(pid):
    out = []
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            out.append(os.readlink(os.path.join(fd_dir, fd)))
        except OSError:
            pass
    return out


def t_privsep_listener_holds_no_secrets(d):
    """The listener has neither the key file, the sasldb nor anything of
    the queue open; auth does not hold the key file.  Nor does any of
    them hold the private key in memory: only [crypto] does (the scan
    must find it there, or it proves nothing)."""
    c = d.session()  # a session in flight, so every process has worked
    c.send_message("alice@example.org", ["bob@example.org"],
                   b"Subject: x\r\n\r\nx\r\n")
    secret = [d.key, os.path.join(d.dir, "sasldb"), d.queue]
    for f in open_files(child(d, "[smtp]")):
        assert not any(f.startswith(s) for s in secret), \
            "[smtp] has %s open" % f
    for f in open_files(child(d, "[auth]")):
        assert not f.startswith(d.key) and not f.startswith(d.queue), \
            "[auth] has %s open" % f
    for f in open_files(child(d, "[queue]")):
        assert not f.startswith(d.key) and "sasldb" not in f, \
            "[queue] has %s open" % f
    # memory: as root, in the plain build (ASan's shadow is terabytes)
    if os.geteuid() != 0 or harness.sanitized():
        return
    needles = harness.key_secrets(d.key)
    for title in ("[smtp]", "[auth]", "[queue]"):
        leaked = harness.found_in_memory(child(d, title), needles)
        assert not leaked, "%s memory holds the private key: %s" % (
            title, leaked)
    held = harness.found_in_memory(child(d, "[crypto]"), needles)
    assert any("priv" in k or "prime" in k for k in held), \
        "the scan finds no key even in [crypto]: %s" % held


def t_privsep_queue_files_owned_by_queue_user():
    need_root()
    with Smsubmit() as d:
        d.upstream.stop()
        d.submit(b"Subject: owned\r\n\r\nx\r\n")
        files = d.queue_files()
        assert files, "nothing in the queue"
        uid = pwd.getpwnam(QUEUE_USER).pw_uid
        for f in files:
            try:
                st = os.stat(f)
            except FileNotFoundError:
                continue  # e.g. tmp/ cleaned meanwhile
            assert st.st_uid == uid, "%s owned by %d" % (f, st.st_uid)


def t_privsep_child_death_stops_daemon():
    for title in TITLES:
        with Smsubmit() as d:
            pid = child(d, title)
            os.kill(pid, signal.SIGKILL)
            try:
                status = d.wait_exit(10)
            except AssertionError:
                raise AssertionError("parent still running 10s after %s "
                                     "died" % title)
            assert status == 1, "exit status %d after %s died" % (
                status, title)
            # and the other children go too
            d.kill_leftovers(wait=5)
            left = getattr(d, "leftovers", [])
            assert not left, "children outlived the parent: %s" % left


def t_privsep_not_root_warns_once_and_works():
    """Not started as root: one warning, same processes, mail flows.
    As root the daemon is started as nobody for this."""
    with Smsubmit(run_as="nobody") as d:
        uid = os.getuid() if os.geteuid() else pwd.getpwnam("nobody").pw_uid
        kids = d.children()
        assert sorted(kids) == sorted(TITLES), kids
        for pid in [d.pid] + list(kids.values()):
            assert ids(pid)[0] == [uid] * 4, (pid, ids(pid))
        qid = d.submit(b"Subject: nonroot\r\n\r\nx\r\n")
        d.wait_message(qid)
        warnings = [l for l in d.log().splitlines() if "root" in l.lower()]
        assert len(warnings) == 1, warnings
