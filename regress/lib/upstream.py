#!/usr/bin/env python3
"""
upstream.py: the relay host smsubmit delivers to, a small real SMTP server.

It speaks EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP and QUIT, undoes the
transparency dot and keeps every other octet of the message as it came
(CRLF included).  Each message becomes two files in the store directory,
each written to a temporary name and renamed into place, the JSON last:

    <n>.eml   the message bytes
    <n>.json  {"mail_from": ..., "mail_params": [...], "rcpt_to": [...],
               "helo": ...}

As a library (the regress harness):

    up = Upstream("127.0.0.1", port, store_dir)
    up.start() ... up.messages() ... up.wait(1) ... up.stop(); up.start()
    up.fail_mail(2)             # 451 to MAIL on the next 2 connections
    up.fail_mail(2, per="command")  # 451 to the next 2 MAIL commands
    up.reject_rcpt("x@y")       # 550 to RCPT TO:<x@y>, until cleared
    up.defer_rcpt("x@y")        # 451 to RCPT TO:<x@y>, until cleared

As a command (also used by `make run`), printing one line per message:

    python3 regress/lib/upstream.py --listen 127.0.0.1:10025 --store ./run/mail
"""

import argparse
import json
import os
import re
import signal
import socket
import socketserver
import threading
import time

HOSTNAME = "upstream.test"
MAX_SIZE = 104857600


class Message:
    """One stored message: its number, bytes and envelope."""

    def __init__(self, n, eml, meta):
        self.n = n
        self.eml = eml
        self.meta = meta
        self.mail_from = meta.get("mail_from")
        self.mail_params = meta.get("mail_params", [])
        self.rcpt_to = meta.get("rcpt_to", [])
        self.helo = meta.get("helo")

    def __repr__(self):
        return "<Message %d from=<%s> to=%s %d octets>" % (
            self.n, self.mail_from, self.rcpt_to, len(self.eml))


def read_store(store):
    """All complete messages in a store directory, oldest first."""
    out = []
    try:
        names = os.listdir(store)
    except FileNotFoundError:
        return out
    for name in names:
        m = re.fullmatch(r"(\d+)\.json", name)
        if not m:
            continue
        n = int(m.group(1))
        try:
            with open(os.path.join(store, name)) as f:
                meta = json.load(f)
            with open(os.path.join(store, "%d.eml" % n), "rb") as f:
                eml = f.read()
        except (OSError, ValueError):
            continue
        out.append(Message(n, eml, meta))
    out.sort(key=lambda msg: msg.n)
    return out


def parse_path(arg, keyword):
    """'FROM:<a@b> P=1' -> ('a@b', ['P=1']), or None if malformed."""
    m = re.match(r"(?i)%s:\s*<([^>]*)>(.*)$" % keyword, arg)
    if not m:
        return None
    return m.group(1), m.group(2).split()


class _Handler(socketserver.StreamRequestHandler):
    # the daemon's sessions must not hang on a stuck test
    timeout = 120

    def reply(self, text):
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self):
        up = self.server.upstream
        up._track(self.connection, True)
        try:
            self.session(up)
        except (OSError, ValueError):
            pass
        finally:
            up._track(self.connection, False)

    def session(self, up):
        with up.lock:
            up.connections += 1
            up.connect_times.append(time.monotonic())
            fail_connect = up._take("connect")
            fail_mail = up._take("mail")
        if fail_connect:
            self.reply(fail_connect)
            return
        self.reply("220 %s ESMTP upstream" % HOSTNAME)
        helo = None
        mail = None
        rcpts = []
        while True:
            line = self.rfile.readline(65536)
            if not line:
                return
            cmd = line.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
            verb, _, arg = cmd.partition(" ")
            verb = verb.upper()
            up._log_cmd(cmd)
            if verb == "EHLO":
                helo, mail, rcpts = arg, None, []
                self.reply("250-%s\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                           "250-SMTPUTF8\r\n250 SIZE %d" % (HOSTNAME,
                                                            MAX_SIZE))
            elif verb == "HELO":
                helo, mail, rcpts = arg, None, []
                self.reply("250 %s" % HOSTNAME)
            elif verb == "MAIL":
                path = parse_path(arg, "FROM")
                if helo is None:
                    self.reply("503 5.5.1 EHLO first")
                elif mail is not None:
                    self.reply("503 5.5.1 nested MAIL")
                elif path is None:
                    self.reply("501 5.5.4 syntax: MAIL FROM:<address>")
                elif fail_mail:
                    self.reply(fail_mail)
                else:
                    with up.lock:
                        refusal = up._take("mail_cmd")
                    if refusal:
                        self.reply(refusal)
                    else:
                        mail, rcpts = path, []
                        self.reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                path = parse_path(arg, "TO")
                if mail is None:
                    self.reply("503 5.5.1 MAIL first")
                elif path is None:
                    self.reply("501 5.5.4 syntax: RCPT TO:<address>")
                else:
                    refusal = up._rcpt_refusal(path[0])
                    if refusal:
                        self.reply(refusal)
                    else:
                        rcpts.append(path[0])
                        self.reply("250 2.1.5 Ok")
            elif verb == "DATA":
                if not rcpts:
                    self.reply("503 5.5.1 no valid recipients")
                    continue
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                data = self.read_data()
                if data is None:
                    return
                n = up._store(data, {"mail_from": mail[0],
                                     "mail_params": mail[1],
                                     "rcpt_to": rcpts, "helo": helo})
                mail, rcpts = None, []
                self.reply("250 2.0.0 Ok: stored as %d" % n)
            elif verb == "RSET":
                mail, rcpts = None, []
                self.reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:
                self.reply("500 5.5.1 command not recognized")

    def read_data(self):
        """The message up to <CRLF>.<CRLF>, dot removed, else None."""
        data = bytearray()
        at_bol = True  # the previous line ended in CRLF
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


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, addr, upstream):
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        self.upstream = upstream
        super().__init__(addr, _Handler)


def serve(server_class, owner):
    """Bind server_class on owner.host:owner.port, retrying for a while
    (a restart can race with the old socket's teardown), and serve it in
    a thread.  Returns (server, thread)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            server = server_class((owner.host, owner.port), owner)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    thread = threading.Thread(target=server.serve_forever,
                              kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    return server, thread


class Upstream:
    def __init__(self, host="127.0.0.1", port=0, store="mail", on_store=None):
        self.host = host
        self.port = port
        self.store = store
        self.on_store = on_store
        self.lock = threading.Lock()
        self.connections = 0
        self.connect_times = []     # time.monotonic() of each connection
        self.command_times = []     # ... and of each of self.commands
        self.commands = []
        # replies to give, one per connection ("connect", "mail") or per
        # command ("mail_cmd")
        self.faults = {"connect": [], "mail": [], "mail_cmd": []}
        self.rcpt_faults = {}
        self._server = None
        self._thread = None
        self._socks = set()
        os.makedirs(store, exist_ok=True)
        names = [int(m.group(1)) for m in
                 (re.fullmatch(r"(\d+)\.json", x) for x in os.listdir(store))
                 if m]
        self._next = max(names, default=0) + 1

    # --- running ---

    def start(self):
        if self._server:
            return
        self._server, self._thread = serve(_Server, self)
        self.port = self._server.server_address[1]

    def stop(self):
        """Stop listening and cut every connection in flight."""
        if not self._server:
            return
        self._server.shutdown()
        self._server.server_close()
        with self.lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)
        self._server = None
        self._thread = None

    @property
    def running(self):
        return self._server is not None

    # --- faults ---

    def fail_connect(self, n, reply="421 4.3.2 upstream going away"):
        """Greet the next n connections with reply and hang up."""
        with self.lock:
            self.faults["connect"] += [reply] * n

    def fail_mail(self, n, reply="451 4.3.0 upstream busy, try later",
                  per="connection"):
        """Answer MAIL with reply on the next n connections (every MAIL
        of such a connection), or to the next n MAIL commands."""
        kind = {"connection": "mail", "command": "mail_cmd"}[per]
        with self.lock:
            self.faults[kind] += [reply] * n

    def reject_rcpt(self, addr, reply="550 5.1.1 no such user here"):
        with self.lock:
            self.rcpt_faults[addr.lower()] = reply

    def defer_rcpt(self, addr, reply="451 4.2.0 mailbox busy"):
        self.reject_rcpt(addr, reply)

    def clear_faults(self):
        with self.lock:
            self.faults = {"connect": [], "mail": [], "mail_cmd": []}
            self.rcpt_faults = {}

    def _take(self, kind):
        q = self.faults[kind]
        return q.pop(0) if q else None

    def _rcpt_refusal(self, addr):
        with self.lock:
            return self.rcpt_faults.get(addr.lower())

    # --- store ---

    def _track(self, sock, add):
        with self.lock:
            (self._socks.add if add else self._socks.discard)(sock)

    def _log_cmd(self, cmd):
        with self.lock:
            self.commands.append(cmd)
            self.command_times.append(time.monotonic())

    def _store(self, data, meta):
        with self.lock:
            n = self._next
            self._next += 1
        base = os.path.join(self.store, str(n))
        for suffix, content in ((".eml", data),
                                (".json", json.dumps(meta).encode())):
            tmp = os.path.join(self.store, ".%d%s.tmp" % (n, suffix))
            with open(tmp, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, base + suffix)
        if self.on_store:
            self.on_store(n, data, meta)
        return n

    def messages(self):
        return read_store(self.store)

    def wait(self, n=1, match=None, timeout=10):
        """Poll until n messages (matching match(msg), if given) are
        stored; return them, or raise AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = [m for m in self.messages() if match is None or match(m)]
            if len(msgs) >= n:
                return msgs
            if time.monotonic() > deadline:
                raise AssertionError(
                    "upstream: %d of %d expected messages after %gs "
                    "(%d stored in all, %d connections)" % (
                        len(msgs), n, timeout, len(self.messages()),
                        self.connections))
            time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser(description="a test SMTP relay host "
                                 "that stores what it receives")
    ap.add_argument("--listen", default="127.0.0.1:10025",
                    help="address:port (default %(default)s)")
    ap.add_argument("--store", default="mail",
                    help="directory for <n>.eml and <n>.json")
    args = ap.parse_args()
    host, _, port = args.listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"

    def show(n, data, meta):
        print("stored %s/%d.eml from=<%s> to=%s size=%d" % (
            args.store, n, meta["mail_from"],
            ",".join("<%s>" % r for r in meta["rcpt_to"]), len(data)),
            flush=True)

    up = Upstream(host, int(port), args.store, on_store=show)
    up.start()
    print("upstream: listening on %s port %d, storing in %s" % (
        host, up.port, args.store), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    while not stop.wait(1):
        pass
    up.stop()


if __name__ == "__main__":
    main()
