"""SPEC section 6: "250 after DATA means the message and its envelope are
on stable storage (file fsync'd, renamed into place, directory
fsync'd)".  The kill -9 tests only show that a process crash is survived,
which the page cache survives too; here the order is proven instead, from
the system calls of the queue and the listener (strace): for every
accepted message, every write of its data into tmp/ID ends before the
queue copies it, after its envelope, into a file of its own, every write
into that file ends before its fsync, the fsync ends before its rename
into queue/, the fsync of queue/ begins after the rename, and all of it
ends before the listener writes the 250 to the client's socket.  The 250 is told from the other writes on that socket by its
length: a TLS 1.3 record is the reply's length plus 22 octets."""

import re

from harness import expect, message, queue_id, stuff, timeout, unique
from strace import Tracer

TRACED = ("fsync,fdatasync,sync_file_range,write,writev,pwrite64,sendto,"
          "sendmsg,rename,renameat,renameat2,copy_file_range,sendfile")
TLS13_OVERHEAD = 5 + 1 + 16     # record header, content type, AEAD tag


def submit(d, kind, tag, rcpts, size):
    """One message; (queue ID, the 250 line, the client's port)."""
    c = d.session(kind)
    assert c.version() == "TLSv1.3", "TLS %s: the 250 is told by its " \
        "length in a TLS 1.3 record" % c.version()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
    for r in rcpts:
        expect(c.cmd("RCPT TO:<%s>" % r), 250, "2.1.5")
    expect(c.cmd("DATA"), 354)
    c.send(stuff(message(tag, body=("d" * 78 + "\r\n") * (size // 80))))
    r = expect(c.reply(), 250, "2.0.0", "end of DATA")
    port = c.sock.getsockname()[1]
    c.quit()
    return queue_id(r), r.raw[0], port


def check_order(calls, queue_pid, listener_pid, qid, reply, port):
    """The order of one message's commit and its 250; a list of what is
    wrong (empty if nothing)."""
    q = [c for c in calls if c.pid == queue_pid]
    lst = [c for c in calls if c.pid == listener_pid]
    fd_path = r"^\d+<[^>]*%s>"

    def fsyncs(path_re):
        return [c for c in q if c.name in ("fsync", "fdatasync") and
                c.ret == 0 and re.search(fd_path % path_re, c.args)]

    def renamed(src, dst):
        return [c for c in q if c.name.startswith("rename") and c.ret == 0
                and '"%s"' % src in c.args and '"%s"' % dst in c.args]

    # [queue] writes the envelope, then copies what the listener wrote
    # (tmp/ID), into a file of its own (tmp/ID.msg), which it syncs and
    # renames into queue/
    f_msg = fsyncs(r"/tmp/%s\.msg" % qid)
    r_msg = renamed("tmp/%s.msg" % qid, "queue/%s.msg" % qid)
    copies = [c for c in q if c.name in ("copy_file_range", "write",
                                         "pwrite64", "sendfile") and
              c.ret > 0 and re.search(r"\d+<[^>]*/tmp/%s\.msg>" % qid,
                                      c.args)]
    head = [c for c in copies if c.name == "write" and
            '"version 2\\nid %s' % qid in c.args]
    data = [c for c in calls if c.name in ("write", "writev", "pwrite64")
            and c.ret > 0 and re.search(fd_path % (r"/tmp/%s" % qid),
                                        c.args)]
    want = len(reply) + 2 + TLS13_OVERHEAD
    sock = r"^\d+<TCPv?6?:\[[^]]*->[^]]*:%d\]>" % port
    w250 = [c for c in lst if c.name in ("write", "writev", "sendto",
                                         "sendmsg") and
            re.search(sock, c.args) and c.ret == want]
    problems = []
    for what, got in (("fsync of tmp/%s.msg" % qid, f_msg),
                      ("copy into tmp/%s.msg" % qid, copies),
                      ("envelope written into tmp/%s.msg" % qid, head),
                      ("rename to queue/%s.msg" % qid, r_msg),
                      ("write of the message data into tmp/%s" % qid, data)):
        if not got:
            problems.append("no %s" % what)
    if len(w250) != 1:
        problems.append("%d writes of %d octets (the 250) on the socket "
                        "of port %d: %s" % (len(w250), want, port, w250))
    if problems:
        return problems
    w = w250[0]
    # the last fsync of each before the renames is the one that counts
    fm = [c for c in f_msg if c.end <= r_msg[0].start]
    if not fm:
        problems.append("tmp/%s.msg renamed before its fsync ended" % qid)
    if head[0] is not copies[0]:
        problems.append("the envelope is not the first thing written "
                        "into tmp/%s.msg: %s" % (qid, copies[0]))
    late = [c for c in data if c.end > copies[0].start]
    if late:
        problems.append("data written after the copy began: %s" % late)
    late = [c for c in copies if fm and c.end > fm[-1].start]
    if late:
        problems.append("data copied after the fsync: %s" % late)
    after = r_msg[0].end
    f_dir = [c for c in fsyncs(r"/queue/queue") if c.start >= after and
             c.end <= w.start]
    if not f_dir:
        problems.append("no fsync of queue/ between the renames (ended "
                        "%.6f) and the 250 (%.6f): %s" % (
                            after, w.start, fsyncs(r"/queue/queue")))
    if fm and fm[-1].end > w.start:
        problems.append("the 250 (%.6f) before the file's fsync ended "
                        "(%.6f)" % (w.start, fm[-1].end))
    if r_msg[0].end > w.start:
        problems.append("the 250 before the rename")
    return problems


@timeout(120)
def t_queued_reply_after_fsync_of_file_envelope_and_directory(d):
    kids = d.children()
    qpid, lpid = kids["[queue]"], kids["[smtp]"]
    tracer = Tracer(d, [qpid, lpid], TRACED, strsize=32)
    sent = []
    try:
        for i, (kind, rcpts, size) in enumerate((
                ("tls", ["bob@example.org"], 400),
                ("starttls", ["bob@example.org"], 400),
                ("tls", ["bob@example.org", "carol@example.org"], 4000),
                # more than one write of data into the file
                ("starttls", ["bob@example.org"], 300 * 1024),
                ("tls", ["carol@example.org"], 90 * 1024))):
            tag = unique("durable%d" % i)
            sent.append(submit(d, kind, tag, rcpts, size))
        for qid, _, _ in sent:
            d.wait_message(qid, 30)
    finally:
        calls = tracer.stop()
    assert calls, "strace saw nothing"
    problems = []
    for qid, reply, port in sent:
        problems += ["%s: %s" % (qid, p) for p in
                     check_order(calls, qpid, lpid, qid, reply, port)]
    assert not problems, "\n".join(problems)
