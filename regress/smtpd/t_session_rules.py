"""The state rules of session.c's command table: every command that has
rules, in every state a client can reach, gets exactly the reply line
SPEC section 5 gives it (the texts are those the daemon has always
sent).  Each probe runs in a fresh session brought to that state."""

from harness import HOSTNAME, USERS, b64, expect

AUTH = "AUTH PLAIN " + b64("\0alice\0" + USERS["alice"])
PROBES = ("STARTTLS", "STARTTLS now", AUTH, "MAIL FROM:<alice@example.org>",
          "RCPT TO:<bob@example.org>", "DATA", "DATA now")

NEED_TLS = "530 5.7.0 Must issue a STARTTLS command first"
NEED_AUTH = "530 5.7.0 Authentication required"
TLS_ON = "503 5.5.1 TLS already active"
STARTTLS_ARG = "501 5.5.4 STARTTLS takes no parameter"
AUTHED = "503 5.5.1 Already authenticated"
MAIL_OK = "250 2.1.0 Ok"
RCPT_OK = "250 2.1.5 Ok"
NEED_MAIL_RCPT = "503 5.5.1 Need MAIL before RCPT"
NEED_MAIL_DATA = "503 5.5.1 Need MAIL before DATA"
NEED_RCPT_DATA = "503 5.5.1 Need RCPT before DATA"

# state -> the reply line to each probe, in the order of PROBES
EXPECTED = {
    "plaintext, greeted": (
        "220 2.0.0 Ready to start TLS", STARTTLS_ARG, NEED_TLS, NEED_TLS,
        NEED_TLS, NEED_TLS, NEED_TLS),
    "plaintext, after EHLO": (
        "220 2.0.0 Ready to start TLS", STARTTLS_ARG, NEED_TLS, NEED_TLS,
        NEED_TLS, NEED_TLS, NEED_TLS),
    "TLS, greeted": (
        TLS_ON, STARTTLS_ARG, "503 5.5.1 Send EHLO first", NEED_AUTH,
        NEED_AUTH, NEED_AUTH, NEED_AUTH),
    "TLS, after EHLO": (
        TLS_ON, STARTTLS_ARG, "235 2.7.0 Authentication successful",
        NEED_AUTH, NEED_AUTH, NEED_AUTH, NEED_AUTH),
    "authenticated": (
        TLS_ON, STARTTLS_ARG, AUTHED, MAIL_OK, NEED_MAIL_RCPT,
        NEED_MAIL_DATA, NEED_MAIL_DATA),
    "after MAIL": (
        TLS_ON, STARTTLS_ARG, AUTHED, "503 5.5.1 Nested MAIL command",
        RCPT_OK, NEED_RCPT_DATA, NEED_RCPT_DATA),
    "after RCPT": (
        TLS_ON, STARTTLS_ARG, AUTHED, "503 5.5.1 Nested MAIL command",
        RCPT_OK, "354 End data with <CR><LF>.<CR><LF>",
        "501 5.5.4 DATA takes no parameter"),
}


def reach(d, state):
    """A client in that state."""
    if state.startswith("plaintext"):
        c = d.client("starttls")
        if state.endswith("EHLO"):
            c.ehlo()
        return c
    c = d.client("tls")
    if state == "TLS, greeted":
        return c
    c.ehlo()
    if state == "TLS, after EHLO":
        return c
    expect(c.cmd(AUTH), 235, "2.7.0")
    if state == "authenticated":
        return c
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0")
    if state == "after MAIL":
        return c
    expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5")
    return c


def t_session_rules_reply_in_every_state(d):
    wrong = []
    for state, replies in EXPECTED.items():
        for probe, want in zip(PROBES, replies):
            c = reach(d, state)
            got = c.cmd(probe).raw[0]
            if got != want:
                wrong.append("%s: %s -> %r, not %r" % (
                    state, probe.split(" ")[0] + ("..." if " " in probe
                                                  else ""), got, want))
            c.close()
    assert not wrong, "\n".join(wrong)


def t_session_rules_other_commands_in_every_state(d):
    """Commands without rules are allowed in every state."""
    for state in EXPECTED:
        c = reach(d, state)
        assert c.cmd("NOOP").raw == ["250 2.0.0 Ok"], state
        assert c.cmd("VRFY bob").code == 252, state
        assert c.cmd("EXPN list").raw == [
            "502 5.5.1 EXPN not available"], state
        assert c.cmd("HELP").code == 214, state
        assert c.cmd("RSET").raw == ["250 2.0.0 Ok"], state
        assert c.cmd("EHLO again.test").raw[0].startswith(
            "250-%s Hello again.test" % HOSTNAME), state
        assert c.cmd("QUIT").code == 221, state
        c.close()


t_session_rules_reply_in_every_state.timeout = 120
