"""SMTP AUTH (RFC 4954) through Cyrus SASL, on both listeners."""

import base64
import hashlib
import hmac
import os
import time

from harness import USERS, Smsubmit, b64, expect, have_ipv6, \
    refused_at_accept

KINDS = ("tls", "starttls")


def ready(d, kind="tls"):
    """Encrypted and EHLO'd, not yet authenticated."""
    c = d.client(kind)
    if kind == "starttls":
        c.ehlo()
        c.starttls()
    c.ehlo()
    return c


def t_auth_plain_initial_response(d):
    for kind in KINDS:
        c = ready(d, kind)
        expect(c.auth_plain("alice", USERS["alice"]), 235, "2.7.0", kind)
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0", kind)
        c.quit()


def t_auth_plain_challenge(d):
    for kind in KINDS:
        c = ready(d, kind)
        r = expect(c.cmd("AUTH PLAIN"), 334, what=kind)
        assert r.lines[0].strip() == "", "PLAIN challenge not empty: %s" % r
        expect(c.cmd(b64("\0bob\0" + USERS["bob"])), 235, "2.7.0", kind)
        c.quit()


def t_auth_login(d):
    for kind in KINDS:
        c = ready(d, kind)
        r = expect(c.cmd("AUTH LOGIN"), 334, what=kind)
        r = expect(c.cmd(b64("alice")), 334, what=kind)
        expect(c.cmd(b64(USERS["alice"])), 235, "2.7.0", kind)
        c.quit()


def t_auth_login_initial_response(d):
    c = ready(d)
    expect(c.cmd("AUTH LOGIN " + b64("bob")), 334)
    expect(c.cmd(b64(USERS["bob"])), 235, "2.7.0")


def t_auth_mechanisms_advertised(d):
    c = ready(d)
    auth = [x for x in c.caps if x.startswith("AUTH ")]
    assert auth == ["AUTH PLAIN LOGIN"], c.caps


def t_auth_plain_bad_password(d):
    for kind in KINDS:
        c = ready(d, kind)
        expect(c.auth_plain("alice", "wrong"), 535, "5.7.8", kind)
        # still unauthenticated, and a right password now works
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 530, "5.7.0", kind)
        expect(c.auth_plain("alice", USERS["alice"]), 235, "2.7.0", kind)
        c.quit()


def t_auth_plain_unknown_user(d):
    c = ready(d)
    expect(c.auth_plain("mallory", "alice-pw"), 535, "5.7.8")


def t_auth_user_name_no_account_has_is_a_failed_login(d):
    """An empty or blank user name, or one longer than any, gets 535 like
    any wrong login.  Cyrus refused those as a temporary failure (454,
    counted by no delay or ban) after it had copied the password, and
    leaked the copy in [auth]: found by fuzz_ipc, and by LeakSanitizer
    here under SANITIZE=1."""
    for user in ("", " \t", "a" * 2000):
        c = ready(d)
        # the response on a line of its own: 2000 octets are no command
        expect(c.cmd("AUTH PLAIN"), 334)
        expect(c.cmd(b64("\0%s\0%s" % (user, USERS["alice"]))), 535,
               "5.7.8", "PLAIN user %r" % user[:8])
        c.quit()
    c = ready(d)
    expect(c.auth_login("", USERS["alice"]), 535, "5.7.8", "LOGIN user ''")
    # a user name of 255 octets is still a user name, if a wrong one
    expect(c.auth_plain("b" * 255, USERS["alice"]), 535, "5.7.8")
    expect(c.auth_plain("alice", USERS["alice"]), 235, "2.7.0")
    c.quit()


def t_auth_plain_other_users_password(d):
    c = ready(d)
    expect(c.auth_plain("alice", USERS["bob"]), 535, "5.7.8")


def t_auth_login_bad_password(d):
    for kind in KINDS:
        c = ready(d, kind)
        expect(c.auth_login("bob", "alice-pw"), 535, "5.7.8", kind)
        c.quit()


def t_auth_plain_authzid_mismatch(d):
    """alice may not act as bob, even with her own right password."""
    c = ready(d)
    expect(c.auth_plain("alice", USERS["alice"], authzid="bob"), 535)
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 530, "5.7.0")


def t_auth_plain_authzid_same(d):
    c = ready(d)
    expect(c.auth_plain("alice", USERS["alice"], authzid="alice"), 235,
           "2.7.0")


def t_auth_unknown_mechanism(d):
    for kind in KINDS:
        c = ready(d, kind)
        expect(c.cmd("AUTH FOOBAR"), 504, "5.5.4", kind)
        expect(c.cmd("AUTH FOOBAR " + b64("x")), 504, "5.5.4", kind)
        c.quit()


def t_auth_mechanism_not_configured(d):
    """CRAM-MD5 is in Cyrus' mech_list but not in `auth mechanisms`."""
    c = ready(d)
    expect(c.cmd("AUTH CRAM-MD5"), 504, "5.5.4")
    expect(c.cmd("AUTH SCRAM-SHA-256 " + b64("n,,n=alice,r=abcdefgh")),
           504, "5.5.4")


def t_auth_cancel(d):
    """'*' cancels, in the first or a later step; the session goes on.
    One cancel per session, so no failure limit gets in the way."""
    for kind in KINDS:
        for steps in (["AUTH PLAIN"], ["AUTH LOGIN"],
                      ["AUTH LOGIN", b64("alice")]):
            c = ready(d, kind)
            for s in steps:
                expect(c.cmd(s), 334, what="%s %s" % (kind, steps))
            expect(c.cmd("*"), 501, "5.0.0", "%s %s" % (kind, steps))
            expect(c.auth_plain("alice", USERS["alice"]), 235, "2.7.0",
                   "%s, after cancelling %s" % (kind, steps))
            c.quit()


def t_auth_bad_base64(d):
    """Not base64, in the initial response or in a later step."""
    for kind in KINDS:
        for steps, bad in (([], "AUTH PLAIN !!!not*base64!!!"),
                           (["AUTH PLAIN"], "@@@@"),
                           (["AUTH LOGIN"], "YWxp$2U=")):
            c = ready(d, kind)
            for s in steps:
                expect(c.cmd(s), 334, what=kind)
            expect(c.cmd(bad), 501, "5.5.2", "%s %s %r" % (kind, steps, bad))
            expect(c.cmd("NOOP"), 250, "2.0.0", kind)
            c.quit()


def t_auth_twice(d):
    for kind in KINDS:
        c = ready(d, kind)
        expect(c.auth_plain("alice", USERS["alice"]), 235, "2.7.0", kind)
        expect(c.auth_plain("bob", USERS["bob"]), 503, "5.5.1", kind)
        expect(c.cmd("AUTH LOGIN"), 503, "5.5.1", kind)
        c.quit()


def t_auth_inside_transaction(d):
    c = ready(d)
    expect(c.auth_plain("alice", USERS["alice"]), 235, "2.7.0")
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
    expect(c.auth_plain("alice", USERS["alice"]), 503, "5.5.1")


def t_auth_max_failures(d):
    """`auth max-failures 3`: the third failure, the one that reaches the
    limit, is answered 421 4.7.0 (SPEC section 5), not 535, and the
    session is closed."""
    for kind in KINDS:
        c = ready(d, kind)
        for i in (1, 2):
            expect(c.auth_plain("alice", "wrong%d" % i), 535, "5.7.8",
                   "%s: failure %d" % (kind, i))
        expect(c.auth_plain("alice", "wrong3"), 421, "4.7.0",
               "%s: the failure that reaches the limit" % kind)
        assert c.closed(3), "%s: session open after 421" % kind
        assert c.buf == b"", "%s: more after the 421: %r" % (kind, c.buf)


def t_auth_max_failures_counts_per_session(d):
    """Failures in one session do not count against the next one."""
    for _ in range(2):
        c = ready(d)
        for i in (1, 2):
            expect(c.auth_plain("bob", "nope"), 535, "5.7.8")
        c.quit()
    c = ready(d)
    expect(c.auth_plain("bob", "nope"), 535, "5.7.8")
    expect(c.auth_plain("bob", USERS["bob"]), 235, "2.7.0")


# --- SCRAM (RFC 5802, RFC 7677), driven by hand ---

def scram(c, user, password, mech="SCRAM-SHA-256", hashname="sha256"):
    """Run a SCRAM exchange; returns the final reply and checks the
    server's signature when the server sends one."""
    nonce = b64(os.urandom(18))
    first_bare = "n=%s,r=%s" % (user, nonce)
    r = c.cmd("AUTH %s %s" % (mech, b64("n,," + first_bare)))
    if r.code != 334:
        return r
    server_first = base64.b64decode(r.lines[0]).decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    assert attrs["r"].startswith(nonce) and len(attrs["r"]) > len(nonce), \
        server_first
    salted = hashlib.pbkdf2_hmac(hashname, password.encode(),
                                 base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hashname).digest()
    stored_key = hashlib.new(hashname, client_key).digest()
    final_bare = "c=%s,r=%s" % (b64("n,,"), attrs["r"])
    authmsg = ",".join((first_bare, server_first, final_bare)).encode()
    sig = hmac.new(stored_key, authmsg, hashname).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    r = c.cmd(b64(final_bare + ",p=" + b64(proof)))
    if r.code != 334:
        return r
    server_final = base64.b64decode(r.lines[0]).decode()
    server_key = hmac.new(salted, b"Server Key", hashname).digest()
    want = b64(hmac.new(server_key, authmsg, hashname).digest())
    assert server_final == "v=" + want, "bad server signature %r" % \
        server_final
    return c.cmd("")


def t_auth_scram_sha256():
    with Smsubmit(mechanisms="PLAIN LOGIN SCRAM-SHA-256") as d:
        c = ready(d)
        assert "AUTH PLAIN LOGIN SCRAM-SHA-256" in c.caps, c.caps
        expect(scram(c, "alice", USERS["alice"]), 235, "2.7.0")
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
        c.quit()
        c = ready(d, "starttls")
        expect(scram(c, "bob", "not-bobs"), 535, "5.7.8")


def timed(f, *a):
    t0 = time.monotonic()
    r = f(*a)
    return r, time.monotonic() - t0


def t_auth_failure_delay():
    """`auth delay 2s to 8s`: the first failure waits 2s, the next 4s;
    meanwhile another session is served at once.  "At once" and "not
    delayed" are measured against the shortest delay (2s), not against
    the machine's speed."""
    with Smsubmit(conf={"auth delay": "2s to 8s"}) as d:
        c = ready(d)
        r, took = timed(c.auth_plain, "alice", "wrong")
        expect(r, 535, "5.7.8")
        assert 1.8 <= took <= 4, "first failure answered after %.1fs" % took
        other = ready(d, "starttls")
        c.line("AUTH PLAIN " + b64("\0alice\0wrong again"))
        t0 = time.monotonic()
        expect(other.cmd("NOOP"), 250, "2.0.0")
        assert time.monotonic() - t0 < 1.8, "another session was held"
        r = c.reply(timeout=15)
        took = time.monotonic() - t0
        expect(r, 535, "5.7.8")
        assert 3.5 <= took <= 7, "second failure answered after %.1fs" % took
        # a success is not delayed
        r, took = timed(other.auth_plain, "bob", USERS["bob"])
        expect(r, 235, "2.7.0")
        assert took < 1.8, "success delayed: answered after %.1fs" % took


def t_auth_ban():
    """`auth ban after 2 within 1m for 1m`: the address is then refused
    at connect with 421 4.7.0; another address is not."""
    v6 = have_ipv6()
    with Smsubmit(conf={"auth ban": "after 2 within 1m for 1m",
                        "auth delay": "1s to 1s"}, ipv6=v6) as d:
        c = ready(d)
        expect(c.auth_plain("alice", "wrong"), 535, "5.7.8")
        expect(c.auth_login("alice", "wrong"), 535, "5.7.8")
        c.quit()
        # the ban reaches the listener before the 535 that made it
        d.wait_log(r"session [0-9a-f]{8} banned 127\.0\.0\.1 for 60s "
                   r"after 2 auth failures")
        for kind in ("starttls", "tls"):
            # refused at accept, before any TLS work (SPEC section 5)
            refused_at_accept(d, kind)
        d.wait_log(r"connection from 127\.0\.0\.1 on .* refused: Too many "
                   r"authentication failures from your address")
        if v6:
            c = d.client("starttls", host="::1")
            expect(c.greeting, 220, what="::1 is another address")


def t_auth_password_store_unreadable_454():
    """SPEC 5: the authentication back end unavailable (here Cyrus SASL
    cannot open its sasldb) is 454 4.7.0, the session goes on, and it is
    not counted as a failure: not towards `auth max-failures 3`, not in a
    line for fail2ban.  Once the store is back, the same session works."""
    with Smsubmit() as d:
        db = os.path.join(d.dir, "sasldb")
        mode = os.stat(db).st_mode & 0o7777
        c = ready(d)
        mark = d.log_mark()
        os.chmod(db, 0)
        try:
            for _ in range(4):
                expect(c.auth_plain("alice", USERS["alice"]), 454, "4.7.0")
            expect(c.cmd("NOOP"), 250, "2.0.0")
        finally:
            os.chmod(db, mode)
        expect(c.auth_plain("alice", USERS["alice"]), 235, "2.7.0")
        log = d.log()[mark:]
        assert "auth failed for" not in log, log
        assert "auth error mechanism=PLAIN from 127.0.0.1" in log, log


def t_auth_response_line_too_long():
    """SPEC 5: a SASL response line over 12288 octets gets 500 5.5.6 and
    ends the exchange (one reply, whether the line comes whole or in
    pieces); a new AUTH then works in the same session."""
    with Smsubmit() as d:
        for pieces in (1, 8):
            c = ready(d)
            expect(c.cmd("AUTH LOGIN"), 334)
            line = b"QUFB" * 4000 + b"\r\n"         # 16002 octets
            step = len(line) // pieces + 1
            for i in range(0, len(line), step):
                c.send(line[i:i + step])
                time.sleep(0.05)
            expect(c.reply(), 500, "5.5.6", "%d piece(s)" % pieces)
            assert c.pending(0.5) == b"", "more than one reply"
            # the exchange is over: not a 334 for the next line
            expect(c.cmd("NOOP"), 250, "2.0.0")
            expect(c.auth_plain("alice", USERS["alice"]), 235, "2.7.0")
            c.quit()
