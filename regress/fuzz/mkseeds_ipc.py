#!/usr/bin/env python3
"""Write the seeds of regress/fuzz/corpus/fuzz_ipc/ that drive the
processes (the format is fuzz_ipc.c's): python3 mkseeds_ipc.py DIR."""
import base64
import os
import struct
import sys

QUEUE, AUTH = b"\x00", b"\x01"
(CREATE, ENVELOPE, RCPT, COMMIT, ABORT, STATS, LIMIT_MAIL, LIMIT_RCPT,
 WRITE) = range(9)
HOLD = 15
START, STEP, END, RELEASE, PARENT_FAILURE = range(5)
FD, LIAR = 0x10, 0x20


def rec(kind, sess=0, payload=b"", flags=0, lie=None):
    op = kind | flags | (sess << 6)
    out = bytes([op])
    if lie is not None:
        out += struct.pack("<II", *lie)
    return out + struct.pack("<H", len(payload)) + payload


def s(*parts):
    return b"".join(p + b"\0" for p in parts)


def u(n):
    return struct.pack("<I", n)


def envelope(sender=b"alice@example.org"):
    return s(b"%i", sender, b"alice", b"client.example", b"192.0.2.1") + u(0)


def start(mech, ir=None, client=b"192.0.2.1"):
    return s(mech, ir or b"") + u(ir is not None) + s(client,
                                                       b"192.0.2.2;587")


def b64(x):
    return base64.b64encode(x)


seeds = {
    # empty payloads: the canned requests, any order a few octets away
    "q_canned": QUEUE + rec(CREATE) + rec(WRITE, 0, b"\x00hi\r\n") +
    rec(ENVELOPE) + rec(RCPT) + rec(RCPT) + rec(COMMIT) +
    rec(CREATE, 1) + rec(ENVELOPE, 1) + rec(ABORT, 1) +
    rec(LIMIT_MAIL) + rec(LIMIT_RCPT),
    # two commits in one read: one batch, one sync of queue/, two results
    "q_batch": QUEUE + rec(CREATE) + rec(CREATE, 1) + rec(ENVELOPE) +
    rec(ENVELOPE, 1) + rec(RCPT) + rec(RCPT, 1) + rec(WRITE, 1, b"\x01x") +
    rec(HOLD) + rec(COMMIT) + rec(COMMIT, 1) + rec(HOLD) +
    rec(CREATE) + rec(CREATE, 1),
    # fatal: a request while its commit waits for the batch
    "q_create_while_committing": QUEUE + rec(CREATE) + rec(ENVELOPE) +
    rec(RCPT) + rec(HOLD) + rec(COMMIT) + rec(ABORT),
    "a_canned": AUTH + rec(START) + rec(STEP) + rec(STEP) +
    rec(START, 1) + rec(STEP, 1) + rec(END, 1) + rec(PARENT_FAILURE),
    # a message from create to commit, and a second one aborted
    "q_commit": QUEUE + rec(CREATE) +
    rec(WRITE, 0, b"\x00Subject: hi\r\n\r\nhello\r\n") +
    rec(ENVELOPE, 0, envelope()) +
    rec(RCPT, 0, s(b"%i", b"bob@example.com")) +
    rec(RCPT, 0, s(b"%i", b"carol@example.com")) +
    rec(COMMIT, 0, s(b"%i")) +
    rec(CREATE, 1) + rec(ENVELOPE, 1, envelope(b"")) +
    rec(ABORT, 1, s(b"%i")) +
    rec(LIMIT_MAIL, 0, s(b"alice")) + rec(LIMIT_RCPT, 0, s(b"alice")),
    # two sessions interleaved, one message each
    "q_two_sessions": QUEUE + rec(CREATE, 0) + rec(CREATE, 1) +
    rec(ENVELOPE, 1, envelope()) + rec(ENVELOPE, 0, envelope()) +
    rec(RCPT, 0, s(b"%i", b"postmaster")) +
    rec(RCPT, 1, s(b"%i", b"bob@example.com")) +
    rec(WRITE, 1, b"\x03line\r\n") +
    rec(COMMIT, 1, s(b"%i")) + rec(COMMIT, 0, s(b"%i")),
    # fatal: each breaks the table or a check once
    "q_commit_while_open": QUEUE + rec(CREATE) + rec(COMMIT, 0, s(b"%i")),
    "q_rcpt_no_envelope": QUEUE + rec(CREATE) +
    rec(RCPT, 0, s(b"%i", b"bob@example.com")),
    "q_other_message": QUEUE + rec(CREATE, 0) + rec(CREATE, 1) +
    rec(ENVELOPE, 0, s(b"%o", b"a@b.example", b"", b"h", b"unknown") +
        u(0)),
    "q_too_big": QUEUE + rec(CREATE) + rec(ENVELOPE, 0, envelope()) +
    rec(RCPT, 0, s(b"%i", b"bob@example.com")) +
    rec(WRITE, 0, b"\xff" + b"x" * 40) + rec(COMMIT, 0, s(b"%i")),
    "q_descriptor": QUEUE + rec(CREATE, 0, b"", FD),
    "q_short_envelope": QUEUE + rec(CREATE) +
    rec(ENVELOPE, 0, s(b"%i", b"a@b.example")),
    "q_length_lies": QUEUE + rec(CREATE, 0, b"", LIAR, (3, 0)) +
    rec(CREATE, 1),
    "q_bad_flags": QUEUE + rec(CREATE, 0, b"", LIAR, (0, 6)),
    "q_stats": QUEUE + rec(STATS, 0, u(8) + b"\0" * 8),
    # auth: PLAIN at once, LOGIN in steps, a wrong password held back
    "a_plain_login": AUTH +
    rec(START, 0, start(b"PLAIN", b64(b"\0alice\0secret"))) +
    rec(START, 1, start(b"LOGIN")) +
    rec(STEP, 1, s(b64(b"alice"))) + rec(STEP, 1, s(b64(b"secret"))) +
    rec(START, 2, start(b"PLAIN", b64(b"\0alice\0wrong"))) +
    rec(RELEASE) + rec(END, 0),
    "a_held_then_end": AUTH +
    rec(START, 0, start(b"PLAIN", b64(b"\0bob\0x"), b"2001:db8::1")) +
    rec(END, 0) +
    rec(START, 1, start(b"CRAM-MD5")) + rec(STEP, 1, s(b64(b"bob 0f"))) +
    rec(START, 2, start(b"DIGEST-MD5")) +
    rec(START, 0, start(b"LOGIN", b"")) + rec(STEP, 0, s(b"!!")) +
    rec(PARENT_FAILURE, 0, s(b"192.0.2.9", b"bob")),
    "a_ban": AUTH + b"".join(
        rec(START, 0, start(b"PLAIN", b64(b"\0alice\0no"))) + rec(RELEASE)
        for _ in range(4)),
    "a_step_without_start": AUTH + rec(STEP, 0, s(b64(b"alice"))),
    "a_start_twice": AUTH + rec(START, 0, start(b"LOGIN")) +
    rec(START, 0, start(b"LOGIN")),
    "a_not_offered": AUTH + rec(START, 0, start(b"ANONYMOUS")),
    # Cyrus took neither: [auth] answered 454 and leaked, now "unknown"
    # logs in and an address the listener never makes is fatal
    "a_unknown_client": AUTH +
    rec(START, 0, start(b"PLAIN", b64(b"\0alice\0secret"), b"unknown")),
    # Cyrus leaked the password for these: a failed login before it now
    "a_login_empty_user": AUTH + rec(START) + rec(STEP, 0, s(b"")) +
    rec(STEP, 0, s(b64(b"secret"))),
    "a_plain_long_user": AUTH +
    rec(START, 0, start(b"PLAIN", b64(b"\0" + b"a" * 2000 + b"\0secret"))),
    "a_plain_blank_user": AUTH +
    rec(START, 0, start(b"PLAIN")) + rec(STEP, 0, s(b64(b"\0 \0secret"))),
    "a_bad_local": AUTH + rec(START, 0, s(b"LOGIN", b"") + u(0) +
                              s(b"192.0.2.1", b"192.0.\xce\xd1;587")),
}

d = sys.argv[1]
for name, data in seeds.items():
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
