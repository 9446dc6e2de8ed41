/*
 * ipc.h: typed, length-framed messages over a socketpair, with file
 * descriptor passing.
 *
 * A frame is a 16-byte header (type, payload length, peer id, flags, all
 * in host order since both ends are the same binary) followed by the
 * payload.  Payloads are built and read with a tiny format language:
 * 'u' a uint32_t, 's' a NUL-terminated string, 'b' a byte string (a
 * length then the bytes).  ipc_unpack() fails unless the payload matches
 * the format exactly, so each receiver checks type, size and contents in
 * one call.  A frame that cannot be decoded, or an unpack that fails, is
 * fatal for the receiver: the peer is the same program, so a bad message
 * means it has been subverted or is broken.
 */
#ifndef IPC_H
#define IPC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "buf.h"

#define IPC_HDR_LEN		16
#define IPC_MAX_PAYLOAD		(256 * 1024)
#define IPC_F_FD		0x01	/* a descriptor travels with it */
#define IPC_MAX_FDS		16	/* received and not yet claimed */

struct ipc_hdr {
	uint32_t	 type;
	uint32_t	 len;
	uint32_t	 peerid;
	uint32_t	 flags;
};

struct ipc_msg {
	uint32_t	 type;
	uint32_t	 peerid;
	int		 fd;		/* -1 if none */
	const uint8_t	*data;
	size_t		 len;
};

struct ipc_out;
struct event;
struct event_base;

struct ipc {
	const char	*name;		/* the peer, for log lines */
	int		 fd;
	struct buf	 rbuf;
	int		 rfds[IPC_MAX_FDS];
	int		 nrfds;
	size_t		 consume;	/* of the message last handed out */
	TAILQ_HEAD(, ipc_out) outq;
	struct event	*rev;
	struct event	*wev;
	void		(*dispatch)(struct ipc *, struct ipc_msg *, void *);
	void		*arg;
};

/*
 * Decode one frame header from data.  Returns 1 and fills hdr when a
 * whole frame is present, 0 when more bytes are needed, -1 when the header
 * is malformed (unknown flags, oversized payload).
 */
int	 ipc_decode(const uint8_t *, size_t, struct ipc_hdr *);

/* Unpack a payload; 0 on an exact match of the format, -1 otherwise. */
int	 ipc_unpack(const struct ipc_msg *, const char *fmt, ...);

/*
 * Set up a channel on fd; dispatch is called for each message, and with
 * msg == NULL once when the peer closes the channel.
 */
struct ipc	*ipc_new(struct event_base *, int fd, const char *name,
		    void (*)(struct ipc *, struct ipc_msg *, void *), void *);
/*
 * The same in two steps: a channel used synchronously first (at start-up,
 * or for calls that must be answered at once), then, if ever, attached to
 * an event loop.
 */
struct ipc	*ipc_open(int fd, const char *name);
void		 ipc_attach(struct ipc *, struct event_base *,
		    void (*)(struct ipc *, struct ipc_msg *, void *), void *);
/*
 * Wait up to timeout_ms (-1: for ever) for the next message: 1 and msg
 * (valid until the next call), 0 at EOF, -1 on timeout.
 */
int		 ipc_read_sync(struct ipc *, struct ipc_msg *, int timeout_ms);
/* Done with the message last handed out by ipc_read_sync(). */
void		 ipc_consume(struct ipc *);
void		 ipc_free(struct ipc *);
/* Queue a message; fd (or -1) is closed by us once sent. */
void		 ipc_send(struct ipc *, uint32_t type, uint32_t peerid, int fd,
		    const char *fmt, ...);
/* Write everything queued, blocking; for use before exit. */
void		 ipc_flush(struct ipc *);

#endif
