/*
 * signer.c: the listener's side of the key process.
 *
 * The listener holds certificates but no private key: libtls is given a
 * fake one (tls_config_use_fake_private_key), which makes OpenSSL use the
 * RSA and EC methods in force for the keys it builds from the
 * certificates.  Those installed here forward each private-key operation
 * to [crypto] over a channel of their own and wait for the answer: OpenSSL
 * cannot suspend a handshake in the middle of a signature, so the call is
 * synchronous, bounded by a timeout.  The handshakes run in threads
 * (handshaker.c), which share the one channel (see call()).  The key is
 * named by the SHA-256 of its public key, which both
 * sides compute from what they hold.
 *
 * RSA decryption (RSA key exchange, which has no forward secrecy) is
 * refused: the key process would otherwise be a decryption oracle.
 */
#define OPENSSL_API_COMPAT	0x10100000L

#include <sys/types.h>

#include <pthread.h>
#include <string.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "log.h"
#include "smsubmit.h"

#define SIGNER_TIMEOUT	10000	/* ms: the key process is ours, not slow */

/*
 * Calls from several threads: each sends its request under the lock and
 * takes a ticket; [crypto] answers in the order it was asked, so the
 * ticket's holder reads the next answer.  It reads without the lock, so
 * that another thread's request is on its way meanwhile and [crypto]
 * goes from one signature to the next without waiting to be woken: the
 * reader touches only the channel's input, a sender only its output.
 */
static pthread_mutex_t	 lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	 turn = PTHREAD_COND_INITIALIZER;
static unsigned long	 tickets, serving;
static const char	*failure;	/* the channel is done for: why */
static __thread unsigned long	 signed_here;

static struct {
	struct ipc	*crypto;
	RSA_METHOD	*rsa;
	EC_KEY_METHOD	*ec;
} env;

/* Send a request and wait for the signature; its length, or -1. */
static int
call(uint32_t type, const uint8_t *id, const uint8_t *in, size_t inlen,
    uint32_t padding, uint8_t *out, size_t outmax)
{
	struct ipc_msg	 msg;
	const uint8_t	*sig;
	size_t		 siglen;
	unsigned long	 ticket;
	const char	*why;
	int		 r = -1;

	signed_here++;
	pthread_mutex_lock(&lock);
	if (failure != NULL) {
		pthread_mutex_unlock(&lock);
		return -1;
	}
	ticket = tickets++;
	if (type == IMSG_CRYPTO_RSA_SIGN)
		ipc_send(env.crypto, type, 0, -1, "bbu", id,
		    (size_t)CRYPTO_KEYID_LEN, in, inlen, padding);
	else
		ipc_send(env.crypto, type, 0, -1, "bb", id,
		    (size_t)CRYPTO_KEYID_LEN, in, inlen);
	ipc_flush(env.crypto);
	while (serving != ticket)
		pthread_cond_wait(&turn, &lock);
	pthread_mutex_unlock(&lock);
	/*
	 * In a handshaker thread nothing may exit (two threads in exit()
	 * at once, or OpenSSL's atexit clean-up under a handshake, can
	 * hang): a failure is noted, the signature fails, and the loop
	 * stops the process (signer_failed()).
	 */
	why = NULL;
	switch (ipc_read_sync(env.crypto, &msg, SIGNER_TIMEOUT)) {
	case 1:
		if (msg.type != IMSG_CRYPTO_SIG || msg.fd != -1 ||
		    ipc_unpack(&msg, "b", &sig, &siglen) == -1 ||
		    siglen > outmax)
			why = "bad answer from the key process";
		else if (siglen > 0) {
			memcpy(out, sig, siglen);
			r = siglen;
		}
		break;
	case 0:
		why = "key process went away";
		break;
	default:
		why = "key process did not answer in time";
		break;
	}
	pthread_mutex_lock(&lock);
	if (why != NULL && failure == NULL)
		failure = why;
	if (why != NULL)
		r = -1;
	serving++;
	pthread_cond_broadcast(&turn);
	pthread_mutex_unlock(&lock);
	return r;
}

const char *
signer_failed(void)
{
	const char	*why;

	pthread_mutex_lock(&lock);
	why = failure;
	pthread_mutex_unlock(&lock);
	return why;
}

unsigned long
signer_count(void)
{
	return signed_here;
}

static int
der_id(unsigned char *der, int n, uint8_t id[CRYPTO_KEYID_LEN])
{
	unsigned int	 len = CRYPTO_KEYID_LEN;
	int		 r;

	if (n <= 0)
		return -1;
	r = EVP_Digest(der, n, id, &len, EVP_sha256(), NULL);
	OPENSSL_free(der);
	return r == 1 ? 0 : -1;
}

static int
rsa_priv_enc(int flen, const unsigned char *from, unsigned char *to,
    RSA *rsa, int padding)
{
	uint8_t		 id[CRYPTO_KEYID_LEN];
	unsigned char	*der = NULL;

	if (flen < 0 || der_id(der, i2d_RSA_PUBKEY(rsa, &der), id) == -1)
		return -1;
	return call(IMSG_CRYPTO_RSA_SIGN, id, from, flen, padding, to,
	    RSA_size(rsa));
}

static int
rsa_priv_dec(int flen, const unsigned char *from, unsigned char *to,
    RSA *rsa, int padding)
{
	log_warnx("RSA key exchange refused: no forward secrecy");
	return -1;
}

static int
ec_sign(int type, const unsigned char *dgst, int dlen, unsigned char *sig,
    unsigned int *siglen, const BIGNUM *kinv, const BIGNUM *r,
    EC_KEY *eckey)
{
	uint8_t		 id[CRYPTO_KEYID_LEN];
	unsigned char	*der = NULL;
	int		 n;

	if (dlen < 0 || der_id(der, i2d_EC_PUBKEY(eckey, &der), id) == -1)
		return 0;
	if ((n = call(IMSG_CRYPTO_EC_SIGN, id, dgst, dlen, 0, sig,
	    ECDSA_size(eckey))) == -1)
		return 0;
	*siglen = n;
	return 1;
}

static ECDSA_SIG *
ec_sign_sig(const unsigned char *dgst, int dlen, const BIGNUM *kinv,
    const BIGNUM *r, EC_KEY *eckey)
{
	unsigned char	 der[256];
	const unsigned char *p = der;
	unsigned int	 len;

	if (ECDSA_size(eckey) > (int)sizeof(der) ||
	    !ec_sign(0, dgst, dlen, der, &len, kinv, r, eckey))
		return NULL;
	return d2i_ECDSA_SIG(NULL, &p, len);
}

/* Nothing here holds a private key to prepare a signature with. */
static int
ec_sign_setup(EC_KEY *eckey, BN_CTX *ctx, BIGNUM **kinv, BIGNUM **r)
{
	return 0;
}

void
signer_init(int fd)
{
	env.crypto = ipc_open(fd, "crypto");
	/* copies of OpenSSL's own, so everything public works as before */
	if ((env.rsa = RSA_meth_dup(RSA_PKCS1_OpenSSL())) == NULL ||
	    RSA_meth_set1_name(env.rsa, "smsubmit key process") != 1 ||
	    RSA_meth_set_priv_enc(env.rsa, rsa_priv_enc) != 1 ||
	    RSA_meth_set_priv_dec(env.rsa, rsa_priv_dec) != 1)
		fatalx("cannot install the RSA method");
	RSA_set_default_method(env.rsa);
	if ((env.ec = EC_KEY_METHOD_new(EC_KEY_OpenSSL())) == NULL)
		fatalx("cannot install the EC method");
	EC_KEY_METHOD_set_sign(env.ec, ec_sign, ec_sign_setup, ec_sign_sig);
	EC_KEY_set_default_method(env.ec);
}
