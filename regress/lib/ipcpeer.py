"""ipcpeer.py: the test as a child's parent and peer, the way a captured
process would be one.  A child is started as the daemon starts it
(`smsubmit -X auth|queue -I 0`, its channel to the parent on descriptor
3); the test then sends the configuration and the channel to the peer it
plays, and speaks the IPC protocol (common/ipc.h) on both channels."""

import os
import re
import select
import socket
import struct
import subprocess
import time

from harness import REPO, SMSUBMIT

HDR = struct.Struct("=IIII")   # type, payload length, peerid, flags
IPC_F_FD = 1
PROC_SMTP, PROC_AUTH, PROC_QUEUE = 1, 2, 3
IPC_MAX_PAYLOAD = 256 * 1024


def _msg_types():
    """enum msg_type from smsubmit.h: name -> number."""
    with open(os.path.join(REPO, "smtpd", "smsubmit.h")) as f:
        text = f.read()
    body = re.search(r"enum msg_type \{(.*?)\};", text, re.S).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    names = [n.strip() for n in body.split(",") if n.strip()]
    return {n: i for i, n in enumerate(names)}


T = _msg_types()
NAMES = {v: k for k, v in T.items()}


def pack(fmt, *args):
    out = b""
    for c, a in zip(fmt, args):
        if c == "u":
            out += struct.pack("=I", a)
        elif c == "s":
            out += (a.encode() if isinstance(a, str) else a) + b"\0"
        elif c == "b":
            out += struct.pack("=I", len(a)) + a
    return out


def unpack(fmt, data):
    out = []
    for c in fmt:
        if c == "u":
            out.append(struct.unpack_from("=I", data)[0])
            data = data[4:]
        elif c == "s":
            n = data.index(b"\0")
            out.append(data[:n].decode())
            data = data[n + 1:]
    assert data == b"", "payload longer than %r" % fmt
    return out


class Channel:
    """One end of a socketpair speaking ipc.c's frames."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.fds = []       # received, for the frames flagged IPC_F_FD

    def send(self, type_, peerid=0, fmt="", *args, fd=None):
        payload = pack(fmt, *args)
        self.send_raw(T[type_] if isinstance(type_, str) else type_,
                      peerid, payload, fd=fd)

    @staticmethod
    def frame(type_, peerid=0, fmt="", *args):
        """One frame without a descriptor, to send with others at once."""
        payload = pack(fmt, *args)
        return HDR.pack(T[type_], len(payload), peerid, 0) + payload

    def send_frames(self, frames):
        """Frames in one write: the peer reads them all at once."""
        self.sock.sendall(b"".join(frames))

    def send_raw(self, type_, peerid, payload, fd=None, length=None):
        frame = HDR.pack(type_, len(payload) if length is None else length,
                         peerid, IPC_F_FD if fd is not None else 0) + payload
        try:
            if fd is None:
                self.sock.sendall(frame)
            else:
                socket.send_fds(self.sock, [frame], [fd])
        except (BrokenPipeError, ConnectionResetError):
            pass    # the child is gone: the caller checks how it ended

    def recv(self, timeout=5):
        """(type name, peerid, payload, fd or None), or None on timeout
        or EOF."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= HDR.size:
                t, n, peer, flags = HDR.unpack_from(self.buf)
                if len(self.buf) >= HDR.size + n:
                    data = self.buf[HDR.size:HDR.size + n]
                    self.buf = self.buf[HDR.size + n:]
                    fd = self.fds.pop(0) if flags & IPC_F_FD else None
                    return NAMES.get(t, t), peer, data, fd
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return None
            try:
                chunk, fds, _, _ = socket.recv_fds(self.sock, 65536, 16)
            except ConnectionResetError:
                return None
            self.fds.extend(fds)
            if not chunk:
                return None
            self.buf += chunk

    def close(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        self.sock.close()


class Child:
    """`smsubmit -X proc`, with the test as its parent and as the peer
    of type peer_type (PROC_SMTP: the listener)."""

    def __init__(self, d, proc, peer_type=PROC_SMTP, log_name=None,
                 env=None):
        self.d = d
        self.proc_name = proc
        ps, cs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.log_path = os.path.join(d.dir, log_name or proc + ".log")
        log = open(self.log_path, "ab")
        self.log_start = log.tell()

        def fd3():
            os.dup2(cs.fileno(), 3)

        self.proc = subprocess.Popen(
            [SMSUBMIT, "-d", "-v", "-X", proc, "-I", "0"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            close_fds=False, preexec_fn=fd3, cwd=d.dir,
            env=dict(os.environ, **env) if env else None)
        cs.close()
        log.close()
        self.parent = Channel(ps)
        ls, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.peer = Channel(ls)
        with open(d.conf_path, "rb") as f:
            text = f.read()
        self.parent.send("IMSG_CONF", 0, "sb", d.conf_path, text)
        self.parent.send("IMSG_PEER", 0, "uu", peer_type, 0,
                         fd=theirs.fileno())
        theirs.close()
        self.parent.send("IMSG_START")

    def ready(self, timeout=10):
        m = self.parent.recv(timeout)
        assert m and m[0] == "IMSG_READY", (m, self.log())

    def log(self):
        """This child's log lines (the file may hold earlier children's)."""
        with open(self.log_path, "rb") as f:
            f.seek(self.log_start)
            return f.read().decode(errors="replace")

    def dies(self, why, timeout=5):
        """The child exits with status 1 and logs why (a regex)."""
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s still running; log:\n%s" % (
                self.proc_name, self.log()))
        assert status == 1, "exit status %d; log:\n%s" % (status, self.log())
        assert re.search(why, self.log()), \
            "no %r in the log:\n%s" % (why, self.log())

    def alive(self):
        return self.proc.poll() is None

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.peer.close()
        self.parent.close()
