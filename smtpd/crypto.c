/*
 * crypto.c: the "[crypto]" process, the only one that holds the TLS
 * private keys.
 *
 * The parent reads each certificate and key and sends them here; the
 * listener is configured with the certificates and a fake key, and every
 * private-key operation of its handshakes comes here as a request
 * (signer.c), answered with the signature.  The process runs as the
 * unprivileged user, chrooted to the empty directory, sandboxed; it talks
 * to nobody but the parent and the listener, and never to the network.
 *
 * A request names the key by the SHA-256 of its public key and is checked
 * before anything is signed: the key must be one held, the operation must
 * be one the key can do, and the input must be what a TLS handshake
 * signs.  An RSA input without padding must be a well-formed PSS encoding,
 * so the listener cannot use the key to decrypt: a raw RSA private
 * operation on arbitrary input would be a decryption oracle.  RSA key
 * exchange (decryption) is never done at all.
 */
#define OPENSSL_API_COMPAT	0x10100000L

#include <sys/types.h>

#include <event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "log.h"
#include "smsubmit.h"

#define SIGNS_PER_SEC	4096	/* more than both cores can sign */

struct key {
	uint8_t		 id[CRYPTO_KEYID_LEN];
	EVP_PKEY	*pkey;
};

/* The keys loaded last, and those before (handshakes still in flight). */
struct keyset {
	struct key	 key[CRYPTO_KEYS_MAX];
	int		 n;
};

static struct {
	struct smsubmit_conf	*conf;
	struct event_base	*base;
	struct ipc		*parent;
	struct ipc		*listener;
	struct keyset		 cur;
	struct keyset		 old;
	struct keyset		 loading;
	int			 load_failed;
	time_t			 second;
	unsigned int		 signs;		/* in that second */
} env;

static void
keyset_clear(struct keyset *ks)
{
	int	 i;

	for (i = 0; i < ks->n; i++)
		EVP_PKEY_free(ks->key[i].pkey);
	memset(ks, 0, sizeof(*ks));
}

static int
key_id(EVP_PKEY *pkey, uint8_t id[CRYPTO_KEYID_LEN])
{
	unsigned char	*der = NULL;
	unsigned int	 len = CRYPTO_KEYID_LEN;
	int		 n, r;

	if ((n = i2d_PUBKEY(pkey, &der)) <= 0)
		return -1;
	r = EVP_Digest(der, n, id, &len, EVP_sha256(), NULL);
	OPENSSL_free(der);
	return r == 1 && len == CRYPTO_KEYID_LEN ? 0 : -1;
}

static void
key_add(const uint8_t *cert, size_t certlen, const uint8_t *pem,
    size_t pemlen)
{
	struct keyset	*ks = &env.loading;
	EVP_PKEY	*pkey = NULL;
	const char	*why;

	if (ks->n == CRYPTO_KEYS_MAX)
		why = "too many keys";
	else if ((why = keypair_parse(cert, certlen, pem, pemlen,
	    &pkey)) == NULL && key_id(pkey, ks->key[ks->n].id) == -1) {
		why = "cannot encode the public key";
		EVP_PKEY_free(pkey);
	}
	if (why != NULL) {
		log_warnx("key refused: %s", why);
		env.load_failed = 1;
		return;
	}
	ks->key[ks->n++].pkey = pkey;
}

static void
keys_end(uint32_t expected)
{
	uint32_t	 n = 0;

	if (env.load_failed || env.loading.n == 0 ||
	    (uint32_t)env.loading.n != expected) {
		keyset_clear(&env.loading);
		log_warnx("new keys refused, keeping %d", env.cur.n);
	} else {
		keyset_clear(&env.old);
		env.old = env.cur;
		env.cur = env.loading;
		memset(&env.loading, 0, sizeof(env.loading));
		n = env.cur.n;
		log_info("%u private key%s loaded", n, n == 1 ? "" : "s");
	}
	env.load_failed = 0;
	ipc_send(env.parent, IMSG_CRYPTO_LOADED, 0, -1, "u", n);
}

static void
parent_dispatch(struct ipc *ipc, struct ipc_msg *msg, void *arg)
{
	const uint8_t	*cert, *pem;
	size_t		 certlen, pemlen;
	uint32_t	 expected;

	if (msg == NULL)
		fatalx("parent went away");
	if (msg->fd != -1)
		fatalx("unexpected descriptor from parent");
	switch (msg->type) {
	case IMSG_CRYPTO_KEY:
		if (ipc_unpack(msg, "bb", &cert, &certlen, &pem,
		    &pemlen) == -1)
			fatalx("bad CRYPTO_KEY from parent");
		key_add(cert, certlen, pem, pemlen);
		/* the key's only copy is the parsed one */
		explicit_bzero((void *)msg->data, msg->len);
		break;
	case IMSG_CRYPTO_KEYS_END:
		if (ipc_unpack(msg, "u", &expected) == -1)
			fatalx("bad CRYPTO_KEYS_END from parent");
		keys_end(expected);
		break;
	default:
		fatalx("unexpected message %u from parent", msg->type);
	}
}

static EVP_PKEY *
key_find(const uint8_t *id, size_t len)
{
	struct keyset	*sets[2] = { &env.cur, &env.old };
	int		 s, i;

	if (len != CRYPTO_KEYID_LEN)
		fatalx("key id of %zu octets from listener", len);
	for (s = 0; s < 2; s++)
		for (i = 0; i < sets[s]->n; i++)
			if (memcmp(sets[s]->key[i].id, id, len) == 0)
				return sets[s]->key[i].pkey;
	return NULL;
}

/*
 * Is em, the input of a raw RSA private operation, a PSS encoding (RFC
 * 8017 section 9.1.1) with a salt as long as the hash, as TLS 1.2 and
 * 1.3 make them?  The check is the decoding, without the message hash:
 * unmask DB and find zeros, 0x01 and the salt where they belong.
 */
static int
pss_encoded(const uint8_t *em, size_t k, int modbits)
{
	const EVP_MD	*mds[3] = { EVP_sha256(), EVP_sha384(), EVP_sha512() };
	uint8_t		 db[1024], cnt[4], md[EVP_MAX_MD_SIZE];
	size_t		 emlen, dblen, hlen, i, j, off;
	unsigned int	 mdlen;
	int		 emskip, m;

	if (k > sizeof(db))
		return 0;
	/* emBits = modBits - 1: a leading zero octet when that is 8n */
	off = ((modbits - 1) % 8 == 0) ? 1 : 0;
	if (off == 1 && em[0] != 0)
		return 0;
	em += off;
	emlen = k - off;
	emskip = 8 * emlen - (modbits - 1);
	if (emlen < 2 || em[emlen - 1] != 0xbc)
		return 0;
	for (m = 0; m < 3; m++) {
		hlen = EVP_MD_get_size(mds[m]);
		if (emlen < 2 * hlen + 2)
			continue;
		dblen = emlen - hlen - 1;
		/* MGF1 over H, xored into a copy of maskedDB */
		memcpy(db, em, dblen);
		for (i = 0, j = 0; i < dblen; j++) {
			EVP_MD_CTX	*ctx;
			size_t		 n;

			cnt[0] = j >> 24;
			cnt[1] = j >> 16;
			cnt[2] = j >> 8;
			cnt[3] = j;
			if ((ctx = EVP_MD_CTX_new()) == NULL ||
			    EVP_DigestInit_ex(ctx, mds[m], NULL) != 1 ||
			    EVP_DigestUpdate(ctx, em + dblen, hlen) != 1 ||
			    EVP_DigestUpdate(ctx, cnt, 4) != 1 ||
			    EVP_DigestFinal_ex(ctx, md, &mdlen) != 1)
				fatalx("MGF1 digest");
			EVP_MD_CTX_free(ctx);
			for (n = 0; n < mdlen && i < dblen; n++, i++)
				db[i] ^= md[n];
		}
		if (emskip > 0)
			db[0] &= 0xff >> emskip;
		/* DB = PS (zeros) || 0x01 || salt, the salt hLen long */
		for (i = 0; i < dblen - hlen - 1 && db[i] == 0; i++)
			;
		if (i == dblen - hlen - 1 && db[i] == 0x01)
			return 1;
	}
	return 0;
}

/* A DigestInfo (RFC 8017 section 9.2) of a hash TLS uses, or MD5+SHA1. */
static int
digestinfo_valid(const uint8_t *in, size_t len)
{
	static const struct {
		size_t		 hlen;
		uint8_t		 prefix[19];
		size_t		 plen;
	} di[] = {
		{ 20, { 0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03,
		    0x02, 0x1a, 0x05, 0x00, 0x04, 0x14 }, 15 },
		{ 32, { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48,
		    0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04,
		    0x20 }, 19 },
		{ 48, { 0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48,
		    0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04,
		    0x30 }, 19 },
		{ 64, { 0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48,
		    0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04,
		    0x40 }, 19 },
	};
	size_t	 i;

	if (len == 36)		/* TLS 1.0 and 1.1: MD5 || SHA-1 */
		return 1;
	for (i = 0; i < sizeof(di) / sizeof(di[0]); i++)
		if (len == di[i].plen + di[i].hlen &&
		    memcmp(in, di[i].prefix, di[i].plen) == 0)
			return 1;
	return 0;
}

/* Keep to the rate a handshake load can need; a flood just waits. */
static void
pace(void)
{
	struct timespec	 ts;
	time_t		 now = time(NULL);

	if (now != env.second) {
		env.second = now;
		env.signs = 0;
	}
	if (++env.signs <= SIGNS_PER_SEC)
		return;
	log_warnx("more than %d signatures a second asked for, pacing",
	    SIGNS_PER_SEC);
	ts.tv_sec = 1;
	ts.tv_nsec = 0;
	nanosleep(&ts, NULL);
	env.second = time(NULL);
	env.signs = 1;
}

static void
sign(EVP_PKEY *pkey, int padding, const uint8_t *in, size_t inlen)
{
	EVP_PKEY_CTX	*ctx;
	uint8_t		 sig[1024];
	size_t		 siglen = sizeof(sig);

	pace();
	if ((size_t)EVP_PKEY_get_size(pkey) > sizeof(sig) ||
	    (ctx = EVP_PKEY_CTX_new(pkey, NULL)) == NULL)
		fatalx("EVP_PKEY_CTX_new");
	if (EVP_PKEY_sign_init(ctx) != 1 || (padding != 0 &&
	    EVP_PKEY_CTX_set_rsa_padding(ctx, padding) != 1) ||
	    EVP_PKEY_sign(ctx, sig, &siglen, in, inlen) != 1) {
		log_warnx("signature failed");
		ERR_clear_error();
		siglen = 0;
	}
	EVP_PKEY_CTX_free(ctx);
	ipc_send(env.listener, IMSG_CRYPTO_SIG, 0, -1, "b", sig, siglen);
	explicit_bzero(sig, sizeof(sig));
}

static void
refuse(const char *why)
{
	log_warnx("signature refused: %s", why);
	ipc_send(env.listener, IMSG_CRYPTO_SIG, 0, -1, "b", "", (size_t)0);
}

static void
listener_dispatch(struct ipc *ipc, struct ipc_msg *msg, void *arg)
{
	EVP_PKEY	*pkey;
	const uint8_t	*id, *in;
	size_t		 idlen, inlen;
	uint32_t	 padding;
	int		 type;

	if (msg == NULL) {
		/* it finished its sessions, or the parent reports its death */
		log_debug("listener gone, exiting");
		exit(0);
	}
	if (msg->fd != -1)
		fatalx("unexpected descriptor from listener");
	switch (msg->type) {
	case IMSG_CRYPTO_RSA_SIGN:
		if (ipc_unpack(msg, "bbu", &id, &idlen, &in, &inlen,
		    &padding) == -1)
			fatalx("bad CRYPTO_RSA_SIGN from listener");
		type = EVP_PKEY_RSA;
		break;
	case IMSG_CRYPTO_EC_SIGN:
		if (ipc_unpack(msg, "bb", &id, &idlen, &in, &inlen) == -1)
			fatalx("bad CRYPTO_EC_SIGN from listener");
		type = EVP_PKEY_EC;
		padding = 0;
		break;
	default:
		fatalx("unexpected message %u from listener", msg->type);
	}
	if ((pkey = key_find(id, idlen)) == NULL) {
		/* a certificate reloaded twice since its handshake began */
		refuse("no such key");
		return;
	}
	if (EVP_PKEY_get_base_id(pkey) != type)
		fatalx("listener asked for %s with a %s key", type ==
		    EVP_PKEY_RSA ? "RSA" : "ECDSA", type == EVP_PKEY_RSA ?
		    "EC" : "RSA");
	if (type == EVP_PKEY_EC) {
		if (inlen != 20 && inlen != 28 && inlen != 32 && inlen != 48 &&
		    inlen != 64)
			fatalx("ECDSA digest of %zu octets from listener",
			    inlen);
	} else if (padding == RSA_NO_PADDING) {
		if (inlen != (size_t)EVP_PKEY_get_size(pkey) ||
		    !pss_encoded(in, inlen, EVP_PKEY_get_bits(pkey)))
			fatalx("raw RSA input from listener is no PSS "
			    "encoding");
	} else if (padding == RSA_PKCS1_PADDING) {
		if (!digestinfo_valid(in, inlen))
			fatalx("RSA PKCS#1 input from listener is no "
			    "digest");
	} else
		fatalx("RSA padding %u from listener", padding);
	sign(pkey, type == EVP_PKEY_RSA ? (int)padding : 0, in, inlen);
}

static void
signal_cb(int sig, short ev, void *arg)
{
	exit(0);
}

void
crypto_main(struct smsubmit_conf *conf, struct proc_peers *peers)
{
	struct event	*sterm;

	env.conf = conf;
	if (peers->listener == -1)
		fatalx("key process started without the listener");
	/* everything OpenSSL reads from files, read before the chroot */
	if (OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG |
	    OPENSSL_INIT_ADD_ALL_CIPHERS | OPENSSL_INIT_ADD_ALL_DIGESTS,
	    NULL) != 1 || EVP_sha256() == NULL)
		fatalx("OpenSSL initialisation failed");
	proc_drop(conf->user, geteuid() == 0 ? SMSUBMIT_EMPTY : NULL);

	if ((env.base = event_base_new()) == NULL)
		fatalx("event_base_new");
	env.parent = peers->parent;
	ipc_attach(env.parent, env.base, parent_dispatch, NULL);
	env.listener = ipc_new(env.base, peers->listener, "listener",
	    listener_dispatch, NULL);
	sterm = evsignal_new(env.base, SIGTERM, signal_cb, NULL);
	if (sterm == NULL || evsignal_add(sterm, NULL) == -1)
		fatalx("evsignal");
	sandbox_enter("crypto", env.parent->fd);
	ipc_send(env.parent, IMSG_READY, 0, -1, "");
	event_base_dispatch(env.base);
	fatalx("event loop ended");
}
