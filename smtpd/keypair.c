/*
 * keypair.c: what makes a certificate and private key usable, said once
 * for the two places that ask: the key process when it loads them, and
 * the start-up checks (check.c) before anything starts.
 */
#define OPENSSL_API_COMPAT	0x10100000L

#include <sys/types.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "log.h"
#include "smsubmit.h"

/* No passphrase prompt: a protected key is refused, not waited for. */
static int
no_password(char *buf, int size, int rwflag, void *u)
{
	return 0;
}

const char *
keypair_parse(const uint8_t *cert, size_t certlen, const uint8_t *pem,
    size_t pemlen, EVP_PKEY **pkeyp)
{
	EVP_PKEY	*pkey = NULL;
	X509		*x509 = NULL;
	BIO		*bio;
	const char	*why = NULL;
	int		 type;

	if ((bio = BIO_new_mem_buf(cert, certlen)) == NULL)
		fatalx("BIO_new_mem_buf");
	x509 = PEM_read_bio_X509(bio, NULL, no_password, NULL);
	BIO_free(bio);
	if ((bio = BIO_new_mem_buf(pem, pemlen)) == NULL)
		fatalx("BIO_new_mem_buf");
	pkey = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL);
	BIO_free(bio);
	if (x509 == NULL)
		why = "no certificate in PEM form";
	else if (pkey == NULL)
		why = "no private key (or one protected by a passphrase)";
	else if ((type = EVP_PKEY_get_base_id(pkey)) != EVP_PKEY_RSA &&
	    type != EVP_PKEY_EC)
		why = "neither an RSA nor an EC key";
	else if (type == EVP_PKEY_RSA && EVP_PKEY_get_bits(pkey) < 2048)
		why = "RSA key shorter than 2048 bits";
	else if (X509_check_private_key(x509, pkey) != 1)
		why = "the key does not match the certificate";
	ERR_clear_error();
	X509_free(x509);
	if (why != NULL || pkeyp == NULL)
		EVP_PKEY_free(pkey);
	else
		*pkeyp = pkey;
	return why;
}
