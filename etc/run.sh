#!/bin/sh
#
# etc/run.sh: what `make run` runs.  Builds a throw-away demo in ./run/ (a
# self-signed certificate, a sasldb with one user, the Cyrus SASL and
# smsubmit configurations, the queue), starts a test upstream MTA that
# stores every message it receives in ./run/mail/, and runs smsubmit in the
# foreground in front of it.  Ctrl-C (or SIGTERM, or closing the terminal)
# stops both.  Running it again reuses what ./run/ already holds.
#
# Meant for Debian 12; missing packages are installed when run as root.
# As root the daemon runs privilege-separated for real (_smsubmit,
# _smsubmitq, chroots); as anyone else it runs as that user.  Whatever
# would stop the demo is said in one sentence before the banner.

set -eu

cd "$(dirname "$0")/.."
top=$(pwd -P)
run=$top/run

# ports of the demo; the upstream plays the local MTA (RUN_*_PORT are for
# the regression tests, which run the demo next to other tests)
smtps_port=${RUN_SMTPS_PORT:-10465}
submission_port=${RUN_SUBMISSION_PORT:-10587}
upstream_port=${RUN_UPSTREAM_PORT:-10025}
demo_user=demo
realm=localhost

say() {
	printf 'run.sh: %s\n' "$*"
}

die() {
	printf 'run.sh: %s\n' "$*" >&2
	exit 1
}

is_root() {
	[ "$(id -u)" -eq 0 ]
}

# --- packages ---

# libnet-ssleay-perl: swaks only recommends it, and swaks has no TLS
# without it; curl and msmtp are the banner's other two clients
deps="build-essential pkg-config bison libtls-dev libssl-dev libsasl2-dev
libbsd-dev libevent-dev sasl2-bin libsasl2-modules libsasl2-modules-db
swaks libnet-ssleay-perl curl msmtp openssl python3 mandoc"

if command -v dpkg-query >/dev/null 2>&1; then
	missing=
	for p in $deps; do
		# shellcheck disable=SC2016  # ${Status} is dpkg-query's, not ours
		st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) || st=
		case $st in
		*" ok installed") ;;
		*) missing="$missing $p" ;;
		esac
	done
	if [ -n "$missing" ]; then
		is_root || die "missing packages:$missing; install them as root"
		say "installing$missing"
		apt-get update
		# shellcheck disable=SC2086  # one word per package
		DEBIAN_FRONTEND=noninteractive apt-get install -y \
		    --no-install-recommends $missing
	fi
fi

# --- build; `make run` has already done it ---

if [ -z "${MAKELEVEL:-}" ]; then
	make
fi
[ -x smtpd/smsubmit ] || die "smtpd/smsubmit was not built"
[ -f regress/lib/upstream.py ] || die "regress/lib/upstream.py is missing"

# --- the ports: taken, the demo would relay into someone else's MTA ---

port_free() {
	# SO_REUSEADDR, as the daemon binds: connections of a run just
	# stopped, in TIME_WAIT, are no reason to refuse
	python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}
for p in "$smtps_port" "$submission_port" "$upstream_port"; do
	port_free "$p" || die "port $p on 127.0.0.1 is in use;" \
	    "stop what listens there, then run this again"
done

# --- who the processes run as ---

if is_root; then
	user=_smsubmit
	quser=_smsubmitq
	for u in "$user" "$quser"; do
		if ! id "$u" >/dev/null 2>&1; then
			say "creating system user $u"
			useradd -r -M -d /var/empty -s /usr/sbin/nologin "$u"
		fi
		# its home and shell do not matter (no process chroots
		# there), but it must not be root
		[ "$(id -u "$u")" -ne 0 ] ||
		    die "user $u has uid 0; smsubmit will not run as root"
	done
	[ "$(id -u "$user")" -ne "$(id -u "$quser")" ] ||
	    die "$user and $quser are the same uid; they must be two users"
	# the listener's chroot: it must be root's and nobody else's to write
	if [ ! -d /var/empty ]; then
		install -d -o root -g root -m 0755 /var/empty
	fi
	owner=$(stat -c %u /var/empty)
	mode=$(stat -c %a /var/empty)
	if [ "$owner" -ne 0 ] || [ $(( 0$mode & 022 )) -ne 0 ]; then
		die "/var/empty must be owned by root and writable by root only"
	fi
else
	user=$(id -un)
	quser=$user
fi

# --- ./run/ ---

mkdir -p "$run" "$run/mail"
chmod 0755 "$run"

# The auth process runs as $user and reads the sasldb and the Cyrus SASL
# configuration while it serves.  Below a directory it cannot enter (/root
# and mktemp -d are 0700) they are kept in a directory of their own.
sasldir=$run/sasl
if is_root && ! runuser -u "$user" -- test -x "$run"; then
	sasldir=/var/lib/smsubmit-demo/$(printf '%s' "$top" | sha256sum |
	    cut -c1-12)
	say "$user cannot enter $run: the demo's SASL files go to $sasldir"
	install -d -o root -g root -m 0755 /var/lib/smsubmit-demo
fi
mkdir -p "$sasldir"
if is_root; then
	chown "root:$(id -gn "$user")" "$sasldir"
	chmod 0750 "$sasldir"
else
	chmod 0700 "$sasldir"
fi

cert=$run/cert.pem
key=$run/key.pem
if [ ! -s "$cert" ] || [ ! -s "$key" ] ||
    ! openssl x509 -checkend 86400 -noout -in "$cert" >/dev/null 2>&1; then
	say "making a self-signed certificate for localhost"
	(
		umask 077
		openssl req -x509 -newkey rsa:2048 -nodes -days 30 \
		    -subj /CN=localhost \
		    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
		    -keyout "$key" -out "$cert" 2>/dev/null
	)
fi
chmod 0600 "$key"
chmod 0644 "$cert"

# The demo password is kept so that every run shows the same one.
pwfile=$run/password
if [ ! -s "$pwfile" ]; then
	(umask 077; openssl rand -hex 9 > "$pwfile")
fi
password=$(cat "$pwfile")

sasldb=$sasldir/sasldb2
# -c creates the user or resets the password: either way it matches $pwfile
printf '%s' "$password" |
    saslpasswd2 -p -c -f "$sasldb" -u "$realm" "$demo_user"
if is_root; then
	chown "root:$(id -gn "$user")" "$sasldb"
	chmod 0640 "$sasldb"
else
	chmod 0600 "$sasldb"
fi

cat > "$sasldir/smsubmit.conf" <<EOF
# written by etc/run.sh; rewritten on every run
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: $sasldb
mech_list: PLAIN LOGIN SCRAM-SHA-256
EOF
chmod 0644 "$sasldir/smsubmit.conf"

queue=$run/queue
# a queue left by a run as another user would not be writable (chown -R
# changes links themselves, never what they point to)
if is_root && [ -d "$queue" ] && [ ! -L "$queue" ]; then
	chown -R "$quser:$(id -gn "$quser")" "$queue"
fi

conf=$run/smsubmit.conf
cat > "$conf" <<EOF
# written by etc/run.sh for the demo; rewritten on every run
hostname "$realm"
listen on 127.0.0.1 port $smtps_port tls
listen on 127.0.0.1 port $submission_port starttls
tls certificate "$cert" key "$key"
auth sasl-config "$sasldir"
relay to 127.0.0.1 port $upstream_port
queue "$queue"
user "$user"
queue user "$quser"
EOF

smsubmit=./smtpd/smsubmit
# -n checks what would stop the daemon: users, files, modes, SASL access
$smsubmit -n -f "$conf" ||
    die "smsubmit -n found the problems above in $conf"

# --- the upstream, then the daemon ---

upstream=
daemon=
tailer=
cleanup() {
	trap - EXIT INT TERM HUP
	for p in $daemon $upstream; do
		kill "$p" 2>/dev/null || :
	done
	for p in $daemon $upstream $tailer; do
		wait "$p" 2>/dev/null || :
	done
}
# whatever stops this shell (Ctrl-C, a SIGTERM from make or anyone, the
# terminal going away) stops the daemon and the upstream with it
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Wait until something accepts on a port (the upstream's), or the process
# that was to listen there is gone.
wait_port() {
	python3 -c 'import os, socket, sys, time
port, pid = int(sys.argv[1]), int(sys.argv[2])
for _ in range(300):
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        sys.exit(0)
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)
    time.sleep(0.1)
sys.exit(1)' "$1" "$2"
}

python3 regress/lib/upstream.py --listen "127.0.0.1:$upstream_port" \
    --store "$run/mail" &
upstream=$!
wait_port "$upstream_port" "$upstream" ||
    die "the upstream MTA did not start on port $upstream_port"

# The daemon's messages go to the terminal through run/smsubmit.log, where
# its "started" line (every process up, every port bound) is waited for.
log=$run/smsubmit.log
: > "$log"
$smsubmit -d -f "$conf" 2>> "$log" &
daemon=$!
tail -n +1 -f --pid="$daemon" "$log" >&2 &
tailer=$!
python3 -c 'import os, sys, time
log, pid = sys.argv[1], int(sys.argv[2])
for _ in range(600):
    with open(log, errors="replace") as f:
        if "priv: started" in f.read():
            sys.exit(0)
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)
    time.sleep(0.1)
sys.exit(1)' "$log" "$daemon" ||
    die "smsubmit did not start; its messages are above"

cat <<EOF

smsubmit demo: user "$demo_user", password "$password"

Submit a message on port $smtps_port (implicit TLS) with swaks:

  swaks --server 127.0.0.1:$smtps_port --tls-on-connect --auth PLAIN --auth-user $demo_user --auth-password '$password' --from $demo_user@localhost --to someone@example.org

or on port $submission_port (STARTTLS):

  swaks --server 127.0.0.1:$submission_port --tls --auth LOGIN --auth-user $demo_user --auth-password '$password' --from $demo_user@localhost --to someone@example.org

Clients that verify the certificate need $cert (it is self-signed):

  printf 'Subject: hello\\r\\n\\r\\nfrom curl\\r\\n' | curl --cacert $cert --url smtps://127.0.0.1:$smtps_port --user '$demo_user:$password' --mail-from $demo_user@localhost --mail-rcpt someone@example.org --upload-file -

  printf 'Subject: hello\\n\\nfrom msmtp\\n' | msmtp --host=127.0.0.1 --port=$submission_port --tls=on --tls-starttls=on --tls-trust-file=$cert --auth=on --user=$demo_user --passwordeval='echo $password' --from=$demo_user@localhost someone@example.org

Relayed mail appears in $run/mail/ (one .eml and one .json per message).
Ctrl-C stops smsubmit and the upstream.

EOF

# not exec'd: this shell stays to stop the upstream with the daemon
status=0
wait "$daemon" || status=$?
daemon=
exit "$status"
