#!/bin/sh
#
# etc/run.sh: what `make run` runs.  Builds a throw-away demo in ./run/ (a
# self-signed certificate, a sasldb with one user, the Cyrus SASL and
# smsubmit configurations, the queue), starts a test upstream MTA that
# stores every message it receives in ./run/mail/, and runs smsubmit in the
# foreground in front of it.  Ctrl-C stops both.  Running it again reuses
# what ./run/ already holds.
#
# Meant for Debian 12; missing packages are installed when run as root.
# As root the daemon runs privilege-separated for real (_smsubmit,
# _smsubmitq, chroots); as anyone else it runs as that user.

set -eu

cd "$(dirname "$0")/.."
top=$(pwd -P)
run=$top/run

# ports of the demo; the upstream plays the local MTA
smtps_port=10465
submission_port=10587
upstream_port=10025
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

deps="build-essential pkg-config bison libtls-dev libssl-dev libsasl2-dev libbsd-dev
libevent-dev sasl2-bin libsasl2-modules libsasl2-modules-db swaks curl
openssl python3 mandoc"

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
		DEBIAN_FRONTEND=noninteractive apt-get install -y $missing
	fi
fi

# --- build; `make run` has already done it ---

if [ -z "${MAKELEVEL:-}" ]; then
	make
fi
[ -x smtpd/smsubmit ] || die "smtpd/smsubmit was not built"
[ -f regress/lib/upstream.py ] || die "regress/lib/upstream.py is missing"

# --- who the processes run as ---

if is_root; then
	user=_smsubmit
	quser=_smsubmitq
	for u in "$user" "$quser"; do
		if ! id "$u" >/dev/null 2>&1; then
			say "creating system user $u"
			useradd -r -M -d /var/empty -s /usr/sbin/nologin "$u"
		fi
	done
	# the listener's chroot: it must be root's and nobody else's to write
	if [ ! -d /var/empty ]; then
		install -d -o root -g root -m 0755 /var/empty
	fi
	owner=$(stat -c %u /var/empty)
	mode=$(stat -c %a /var/empty)
	if [ "$owner" -ne 0 ] || [ $(( 0$mode & 022 )) -ne 0 ]; then
		say "warning: /var/empty should be owned by root, mode 0755"
	fi
else
	user=$(id -un)
	quser=$user
fi

# --- ./run/ ---

mkdir -p "$run" "$run/sasl" "$run/mail"
# the auth process (not root) reads the sasldb and its config in here
chmod 0755 "$run" "$run/sasl"

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

sasldb=$run/sasldb2
# -c creates the user or resets the password: either way it matches $pwfile
printf '%s' "$password" |
    saslpasswd2 -p -c -f "$sasldb" -u "$realm" "$demo_user"
if is_root; then
	chown "root:$(id -gn "$user")" "$sasldb"
	chmod 0640 "$sasldb"
	if command -v runuser >/dev/null 2>&1 &&
	    ! runuser -u "$user" -- test -r "$sasldb"; then
		say "warning: $user cannot read $sasldb;" \
		    "every directory above $run must be searchable by others"
	fi
else
	chmod 0600 "$sasldb"
fi

cat > "$run/sasl/smsubmit.conf" <<EOF
# written by etc/run.sh; rewritten on every run
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: $sasldb
mech_list: PLAIN LOGIN SCRAM-SHA-256
EOF
chmod 0644 "$run/sasl/smsubmit.conf"

queue=$run/queue
# a queue left by a run as another user would not be writable
if is_root && [ -d "$queue" ]; then
	chown -R "$quser" "$queue"
fi

conf=$run/smsubmit.conf
cat > "$conf" <<EOF
# written by etc/run.sh for the demo; rewritten on every run
hostname "$realm"
listen on 127.0.0.1 port $smtps_port tls
listen on 127.0.0.1 port $submission_port starttls
tls certificate "$cert" key "$key"
auth sasl-config "$run/sasl"
relay to 127.0.0.1 port $upstream_port
queue "$queue"
user "$user"
queue user "$quser"
EOF

smsubmit=./smtpd/smsubmit
$smsubmit -n -f "$conf" || die "$conf does not parse"

# --- the upstream, then the daemon ---

upstream=
cleanup() {
	if [ -n "$upstream" ]; then
		kill "$upstream" 2>/dev/null || :
		wait "$upstream" 2>/dev/null || :
		upstream=
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

python3 regress/lib/upstream.py --listen "127.0.0.1:$upstream_port" \
    --store "$run/mail" &
upstream=$!
sleep 1
kill -0 "$upstream" 2>/dev/null ||
    die "the upstream did not start (is port $upstream_port in use?)"

cat <<EOF

smsubmit demo: user "$demo_user", password "$password"

Submit a message on port $smtps_port (implicit TLS):

  swaks --server 127.0.0.1:$smtps_port --tls-on-connect --auth PLAIN --auth-user $demo_user --auth-password '$password' --from $demo_user@localhost --to someone@example.org

or on port $submission_port (STARTTLS):

  swaks --server 127.0.0.1:$submission_port --tls --auth LOGIN --auth-user $demo_user --auth-password '$password' --from $demo_user@localhost --to someone@example.org

Relayed mail appears in ./run/mail/ (one .eml and one .json per message).
Ctrl-C stops smsubmit and the upstream.

EOF

# Not exec'd: this shell stays to stop the upstream when smsubmit exits.
$smsubmit -d -f "$conf"
