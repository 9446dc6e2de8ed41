"""
scripted.py: a relay host that misbehaves on cue, for fault injection.

It stores what it takes exactly like upstream.py (same store format, so
the harness's messages(), wait() and find_messages() work on it), but each
connection follows a script: for a command it may answer a given reply,
hang (read and never answer), drop the connection, or send garbage.

    up = Scripted("127.0.0.1", d.relay_port, store, script=[
        {"RCPT": HANG},                 # 1st connection: no answer to RCPT
        {"DATA": ("354 go on", DROP)},  # 2nd: drop right after the 354
        {"DOT": (STORE, DROP)},         # 3rd: keep the message, no reply
    ], always={"RCPT TO:<x@y>": "550 5.1.1 no"})
    d.upstream.stop(); d.upstream = up; up.start()

Connections past the script behave.  A script entry maps a key to an
action; keys are the verb ("EHLO", "MAIL", "RCPT", "DATA", "RSET",
"QUIT", ...), "GREETING" for the first thing said, "DOT" for the reply to
the end of the message, or a whole command line ("RCPT TO:<a@b>", matched
without regard to case), which wins over the verb.  An action is:

    "250 2.0.0 Ok"    a reply (several lines joined by CRLF are fine)
    HANG              no answer; read and discard until the peer hangs up
    DROP              close the connection at once
    GARBAGE           a line that is no SMTP reply, then read on unanswered
    STORE             (only for "DOT") keep the message as received
    (a, b, ...)       these in order, e.g. ("354 go on", DROP)
    [a, b, ...]       the 1st occurrence of the key gets a, the 2nd b...;
                      past the list the relay behaves
    f                 a callable: f(handler, line) gives the action (None
                      to behave); it may block, e.g. to hold a reply
                      until the test lets it go.  For "DOT" the message
                      is handler.data.

`always` applies to every connection, under the connection's own script.
Everything received is recorded: `events` (connection number, what),
`received` (every complete message, stored or not) and `reads`
(connection number, the octets of one read from the socket: what came
together).  `open_now` and `max_open` count connections open at once.
"""

import io
import socket
import socketserver
import threading
import time

from upstream import HOSTNAME, MAX_SIZE, Upstream, parse_path, serve

HANG = "<hang>"
DROP = "<drop>"
GARBAGE = "<garbage>"
STORE = "<store>"
GARBAGE_BYTES = b"\x16\x03\x01\x00\xa5 this is no SMTP reply \xff\xfe\r\n"


class Dropped(Exception):
    pass


class _Reads(io.RawIOBase):
    """The socket as a raw stream that records each read's octets."""

    def __init__(self, sock, record):
        self.sock = sock
        self.record = record

    def readable(self):
        return True

    def readinto(self, b):
        n = self.sock.recv_into(b)
        if n:
            self.record(bytes(b[:n]))
        return n


class _Handler(socketserver.StreamRequestHandler):
    timeout = 120

    def setup(self):
        up = self.server.upstream
        with up.lock:
            self.conn = up.connections
            up.connections += 1
            up.open_now += 1
            up.max_open = max(up.max_open, up.open_now)
        self.script = up._script_for(self.conn)
        self.seen = {}
        super().setup()
        self.rfile.close()
        self.rfile = io.BufferedReader(_Reads(
            self.connection, lambda data: self.server.upstream._read(
                self.conn, data)), 65536)

    def handle(self):
        up = self.server.upstream
        up._track(self.connection, True)
        self.data = b""
        try:
            self.session(up)
        except (Dropped, OSError, ValueError):
            pass
        finally:
            up._event(self.conn, "closed")
            up._track(self.connection, False)
            self.uncount(up)

    def uncount(self, up):
        """No longer open, for open_now: at the end, or before the 221
        (after which the client may connect again at once)."""
        with up.lock:
            if not getattr(self, "uncounted", False):
                self.uncounted = True
                up.open_now -= 1

    # --- the script ---

    def action(self, key, line=None):
        """The scripted action for this key (or whole command line), or
        None to behave."""
        for k in ([line.upper()] if line else []) + [key]:
            if k not in self.script:
                continue
            a = self.script[k]
            if isinstance(a, list):
                i = self.seen.get(k, 0)
                self.seen[k] = i + 1
                a = a[i] if i < len(a) else None
            if callable(a):
                a = a(self, line)
            if a is not None:
                return a
        return None

    def perform(self, action, default, up):
        """Do action (or send default); returns True to go on normally,
        False if the action swallowed the command (hang, garbage)."""
        if action is None:
            action = default
        steps = action if isinstance(action, tuple) else (action,)
        for a in steps:
            up._event(self.conn, "action %s" % a)
            if a == HANG:
                self.drain()
                raise Dropped()
            if a == DROP:
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                raise Dropped()
            if a == GARBAGE:
                self.wfile.write(GARBAGE_BYTES)
                self.wfile.flush()
                self.drain()
                raise Dropped()
            if a == STORE:
                continue
            self.reply(a)
        return True

    def drain(self):
        """Read and discard until the peer closes (or the server stops)."""
        while self.rfile.read1(65536):
            pass

    def reply(self, text):
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    @staticmethod
    def stores(action):
        steps = action if isinstance(action, tuple) else (action,)
        return STORE in steps or any(
            isinstance(a, str) and a[:1] == "2" for a in steps)

    # --- SMTP ---

    def session(self, up):
        self.perform(self.action("GREETING"),
                     "220 %s ESMTP scripted" % HOSTNAME, up)
        helo, mail, rcpts = None, None, []
        while True:
            line = self.rfile.readline(65536)
            if not line:
                return
            cmd = line.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
            verb, _, arg = cmd.partition(" ")
            verb = verb.upper()
            up._log_cmd(cmd)
            up._event(self.conn, "< " + cmd)
            act = self.action(verb, cmd)
            if verb in ("EHLO", "HELO"):
                helo, mail, rcpts = arg, None, []
                self.perform(act, "250-%s\r\n250-PIPELINING\r\n"
                             "250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE %d"
                             % (HOSTNAME, MAX_SIZE) if verb == "EHLO"
                             else "250 %s" % HOSTNAME, up)
            elif verb == "MAIL":
                path = parse_path(arg, "FROM")
                if act is None and (helo is None or mail is not None or
                                    path is None):
                    self.reply("503 5.5.1 bad sequence or syntax")
                    continue
                self.perform(act, "250 2.1.0 Ok", up)
                if _first(act, "250 2.1.0 Ok")[:1] == "2":
                    mail, rcpts = path, []
            elif verb == "RCPT":
                path = parse_path(arg, "TO")
                if act is None and (mail is None or path is None):
                    self.reply("503 5.5.1 bad sequence or syntax")
                    continue
                self.perform(act, "250 2.1.5 Ok", up)
                if _first(act, "250 2.1.5 Ok")[:1] == "2":
                    rcpts.append(path[0])
            elif verb == "DATA":
                if act is None and not rcpts:
                    self.reply("503 5.5.1 no valid recipients")
                    continue
                self.perform(act, "354 End data with <CR><LF>.<CR><LF>",
                             up)
                if not _first(act, "354").startswith("354"):
                    continue
                data = self.read_data()
                if data is None:
                    return
                self.data = data
                dot = self.action("DOT")
                meta = {"mail_from": mail[0] if mail else None,
                        "mail_params": mail[1] if mail else [],
                        "rcpt_to": rcpts, "helo": helo}
                stored = self.stores(dot if dot is not None else "250")
                with up.lock:
                    up.received.append(dict(meta, data=data,
                                            conn=self.conn, stored=stored))
                up._event(self.conn, "message of %d octets%s" % (
                    len(data), " stored" if stored else ""))
                n = up._store(data, meta) if stored else 0
                mail, rcpts = None, []
                self.perform(dot, "250 2.0.0 Ok: stored as %d" % n, up)
            elif verb == "RSET":
                mail, rcpts = None, []
                self.perform(act, "250 2.0.0 Ok", up)
            elif verb == "NOOP":
                self.perform(act, "250 2.0.0 Ok", up)
            elif verb == "QUIT":
                self.uncount(up)
                self.perform(act, "221 2.0.0 Bye", up)
                return
            else:
                self.perform(act, "500 5.5.1 command not recognized", up)

    def read_data(self):
        """The message up to <CRLF>.<CRLF>, dot removed, else None."""
        data = bytearray()
        at_bol = True
        while True:
            line = self.rfile.readline()
            if not line:
                return None
            if at_bol and line == b".\r\n":
                return bytes(data)
            if at_bol and line.startswith(b"."):
                line = line[1:]
            data += line
            at_bol = line.endswith(b"\r\n")


def _first(action, default):
    """The first reply an action gives ("" if it gives none)."""
    if action is None:
        return default
    steps = action if isinstance(action, tuple) else (action,)
    for a in steps:
        if a in (HANG, DROP, GARBAGE):
            return ""
        if a != STORE:
            return a
    return ""


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, addr, upstream):
        self.upstream = upstream
        super().__init__(addr, _Handler)


class Scripted(Upstream):
    def __init__(self, host="127.0.0.1", port=0, store="mail", script=(),
                 always=None):
        super().__init__(host, port, store)
        self.script = list(script)
        self.always = dict(always or {})
        self.events = []
        self.received = []
        self.reads = []
        self.open_now = 0
        self.max_open = 0

    def _script_for(self, n):
        with self.lock:
            s = dict(self.always)
            if n < len(self.script):
                s.update(self.script[n])
        return {k.upper(): v for k, v in s.items()}

    def _read(self, conn, data):
        with self.lock:
            self.reads.append((conn, data))

    def _event(self, conn, what):
        with self.lock:
            self.events.append((conn, time.monotonic(), what))

    def start(self):
        if self._server:
            return
        self._server, self._thread = serve(_Server, self)
        self.port = self._server.server_address[1]

    def transcript(self):
        """The events as text, for a failing test's message."""
        with self.lock:
            ev = list(self.events)
        t0 = ev[0][1] if ev else 0
        return "\n".join("  conn %d +%.2fs %s" % (c, t - t0, w[:100])
                         for c, t, w in ev)


def substitute(d, script=(), always=None):
    """Put a Scripted relay host in place of the harness's upstream of
    daemon d (same port, same store); returns it, started."""
    d.upstream.stop()
    up = Scripted("127.0.0.1", d.relay_port, d.upstream.store,
                  script=script, always=always)
    d.upstream = up
    up.start()
    return up


__all__ = ["Scripted", "substitute", "HANG", "DROP", "GARBAGE", "STORE",
           "GARBAGE_BYTES"]

if __name__ == "__main__":
    raise SystemExit("a library for regress/smtpd tests")
