/*
 * libtoad_preload: makes accept(), getpeername() and
 * getsockopt(IPPROTO_IP, 4096) of an unmodified program return the real
 * client of a connection that came through an L4 proxy, asking toad over
 * its preload socket (PROTOCOL.md).
 *
 * Declarations shared by the library's files. Everything is hidden
 * (-fvisibility=hidden) but the four hooks in hooks.c.
 */
#ifndef TOAD_PRELOAD_H
#define TOAD_PRELOAD_H

#include <stdint.h>
#include <sys/socket.h>

#define EXPORT __attribute__((visibility("default")))

/* The functions the hooks replace, resolved once with dlsym(RTLD_NEXT). */
struct real_fns {
	int (*accept)(int, struct sockaddr *, socklen_t *);
	int (*accept4)(int, struct sockaddr *, socklen_t *, int);
	int (*getpeername)(int, struct sockaddr *, socklen_t *);
	int (*getsockopt)(int, int, int, void *, socklen_t *);
};
extern struct real_fns real;

/* Settings, from the environment, fixed after init. */
struct config {
	char socket_path[108];
	uint64_t wait_ns;  /* TOAD_PRELOAD_WAIT: the longest a call blocks */
	uint64_t retry_ns; /* TOAD_PRELOAD_RETRY: the circuit breaker's interval */
	int debug;         /* TOAD_PRELOAD_DEBUG */
	/* TOAD_PRELOAD_FAMILY=socket: never answer in another family than the
	 * socket's (an IPv6 client on an AF_INET socket keeps the kernel's
	 * address), for programs that size their buffers by the listener's
	 * family, such as nginx. */
	int socket_family;
};
extern struct config cfg;

/* One end of a TCP connection: an IPv6 address (IPv4 mapped) and a port
 * in host order. */
struct endpoint {
	uint8_t addr[16];
	uint16_t port;
};

/* What toad said about a connection. */
enum outcome {
	OUT_NONE = 0,
	OUT_FOUND,     /* the client is in the answer */
	OUT_NOT_FOUND, /* toad knows no client */
	OUT_FALLBACK,  /* toad could not answer: absent, slow, busy, stopping */
	OUT_BYPASS,    /* the peer is outside the trusted ranges: never asked */
};

struct answer {
	uint8_t outcome;  /* enum outcome */
	uint8_t family;   /* 4 or 6, for OUT_FOUND */
	uint8_t has_port;
	uint8_t addr[16]; /* IPv4 mapped when family is 4 */
	uint16_t port;
};

/* Report slots (PROTOCOL.md): what the library did with each call. */
enum {
	REP_OK = 0,
	REP_EMPTY = 1,
	REP_MISMATCH = 2,
	REP_BYPASS = 3,
	REP_FALLBACK = 4,
	REP_COUNT = 5,
};

/* conn.c: the connection to toad, the trusted ranges, the counters. */
enum trust { TRUST_UNKNOWN, TRUST_NO, TRUST_YES };
enum trust peer_trust(const struct endpoint *peer, uint64_t now);
int toad_reachable(uint64_t now);
void toad_lookup(const struct endpoint *peer, const struct endpoint *local, struct answer *out);
void count(int slot);
void report_idle(uint64_t now);
void conn_init(void);
void conn_after_fork(void);
void conn_at_exit(void);

/* shm.c: the shared table toad publishes. */
void shm_adopt(int fd, uint64_t size);
int shm_usable(uint64_t now);
int shm_lookup(const struct endpoint *peer, const struct endpoint *local, struct answer *out, uint64_t now);
void shm_after_fork(void);

/* fdtable.c: what the library knows of each accepted descriptor. */
enum slot_state { SLOT_EMPTY = 0, SLOT_PENDING, SLOT_ANSWERED };
struct slot_data {
	uint8_t state;       /* enum slot_state */
	uint8_t sock_family; /* AF_INET or AF_INET6 */
	uint64_t ident;      /* the socket's identity (socket_ident) */
	struct endpoint peer;
	struct answer ans;
};
int slot_maybe_used(int fd);
void slot_store(int fd, const struct slot_data *d);
int slot_load(int fd, struct slot_data *d);
int slot_update(int fd, uint64_t ident, struct slot_data *d);
void slot_forget(int fd, uint64_t ident);
void fdtable_after_fork(void);

/* util.c */
uint64_t now_ns(void);
uint64_t socket_ident(int fd);
void read_config(void);
void dbg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void endpoint_from(const struct sockaddr_storage *ss, struct endpoint *e);
void fmt_endpoint(char *buf, size_t n, const uint8_t addr[16], uint16_t port);

#endif
