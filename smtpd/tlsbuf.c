/*
 * tlsbuf.c: OpenSSL's record buffers given back while a connection is
 * idle, in every process that uses libtls (the [smtp] listener's server
 * context, the relay's client context).
 *
 * OpenSSL keeps a read and a write buffer of about 16.5 KiB each for the
 * whole life of a connection unless SSL_MODE_RELEASE_BUFFERS is set, in
 * which case it frees them whenever they are empty and allocates them for
 * the next record.  With 1,000 idle authenticated TLS sessions that mode
 * takes the listener from about 35 to about 19 KiB per session.  libtls
 * (libretls on OpenSSL 3) sets its own modes but has no way to ask for
 * this one, and OpenSSL 3.0's configuration (the openssl.cnf
 * "system_default" section, SSL_CONF_cmd) has "Options" for SSL_OP_*
 * flags but no command for modes.  So this file defines SSL_CTX_new():
 * libtls's call resolves to this definition first (the executable comes
 * first in the dynamic linker's search), which calls OpenSSL's own and
 * adds the mode through the public SSL_CTX_set_mode().  No private
 * structure of either library is touched; libtls only ever adds modes to
 * a context it made, so the bit stays.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/ssl.h>

static SSL_CTX	*(*real_SSL_CTX_new)(const SSL_METHOD *);

/*
 * Found at start-up, before any process forks or enters its sandbox:
 * dlsym() in a sandboxed child is nothing to count on.
 */
__attribute__((constructor)) static void
tlsbuf_init(void)
{
	real_SSL_CTX_new = (SSL_CTX *(*)(const SSL_METHOD *))dlsym(RTLD_NEXT,
	    "SSL_CTX_new");
	if (real_SSL_CTX_new == NULL) {
		/* no OpenSSL under us: nothing sane to fall back to */
		fprintf(stderr, "SSL_CTX_new: %s\n", dlerror());
		abort();
	}
}

SSL_CTX *
SSL_CTX_new(const SSL_METHOD *method)
{
	SSL_CTX	*ctx;

	if ((ctx = real_SSL_CTX_new(method)) != NULL)
		SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	return ctx;
}
