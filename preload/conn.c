/*
 * The connection to toad: one per thread that asks (so that threads never
 * wait for each other), opened on first use, checked before every use
 * (the program may have closed its descriptor, or forked), guarded by a
 * process-wide circuit breaker so that a dead toad costs one failed
 * connect per interval. Also toad's trusted ranges, shared by all threads
 * behind a sequence lock, and the outcome counters, reported on lookups.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "preload.h"
#include "proto.h"

/* How long the trusted ranges are believed without a word from toad. */
#define RANGES_TTL_NS (10 * 1000000000ull)
/* How often counters are reported when no lookup carries them. */
#define REPORT_INTERVAL_NS (1000000000ull)
/* The most trusted ranges kept; past it, every peer is asked about. */
#define MAX_RANGES 256

/* ---- the circuit breaker ---------------------------------------------- */

/* next_try is 0 while connecting is allowed, else the time of the next
 * allowed attempt. */
static uint64_t next_try;

/* late_hellos counts the HELLOs in a row that toad answered too late. */
static unsigned late_hellos;
#define LATE_HELLOS 3

static const char *why(int err);

/* breaker_allow says whether this thread may try to connect now. While
 * the breaker is open, one thread per interval wins the attempt. */
static int breaker_allow(uint64_t now)
{
	uint64_t t = __atomic_load_n(&next_try, __ATOMIC_ACQUIRE);
	if (t == 0)
		return 1;
	if (now < t)
		return 0;
	return __atomic_compare_exchange_n(&next_try, &t, now + cfg.retry_ns, 0, __ATOMIC_ACQ_REL,
					   __ATOMIC_ACQUIRE);
}

static void breaker_trip(uint64_t now, const char *why)
{
	if (__atomic_exchange_n(&next_try, now + cfg.retry_ns, __ATOMIC_ACQ_REL) == 0)
		dbg("toad unavailable (%s): using the kernel's addresses, next try in %llums", why,
		    (unsigned long long)(cfg.retry_ns / 1000000));
}

static void breaker_reset(void)
{
	__atomic_store_n(&late_hellos, 0, __ATOMIC_RELAXED);
	if (__atomic_exchange_n(&next_try, 0, __ATOMIC_ACQ_REL) != 0)
		dbg("toad reachable again");
}

/* breaker_fail counts a HELLO that failed. A late one is the noise of a
 * loaded machine as often as a hung toad: only LATE_HELLOS of them in a
 * row open the breaker, where any other failure opens it at once. */
static void breaker_fail(uint64_t now, int err)
{
	if (err == -ETIMEDOUT && __atomic_add_fetch(&late_hellos, 1, __ATOMIC_RELAXED) < LATE_HELLOS)
		return;
	__atomic_store_n(&late_hellos, 0, __ATOMIC_RELAXED);
	breaker_trip(now, why(err));
}

/* toad_reachable says whether a lookup could be tried now: false while
 * the breaker is open, so that callers skip the work that prepares one. */
int toad_reachable(uint64_t now)
{
	uint64_t t = __atomic_load_n(&next_try, __ATOMIC_ACQUIRE);
	return t == 0 || now >= t;
}

/* ---- the trusted ranges ------------------------------------------------ */

struct range {
	uint8_t addr[16];
	uint8_t bits;
};

/* Written by the thread that got a WELCOME, under ranges_mu; read by any
 * thread without a lock, retrying while seq is odd or changed. */
static struct {
	uint32_t seq;
	uint8_t known;       /* a WELCOME was received */
	uint8_t all_trusted; /* toad trusts every peer, or holds too many ranges to keep */
	uint32_t generation;
	uint32_t n;
	struct range r[MAX_RANGES];
} ranges;
static pthread_mutex_t ranges_mu = PTHREAD_MUTEX_INITIALIZER;
/* When the ranges were last confirmed; 0 asks for a confirmation. */
static uint64_t ranges_at;

static int in_range(const uint8_t a[16], const struct range *r)
{
	int full = r->bits / 8, rem = r->bits % 8;
	if (memcmp(a, r->addr, (size_t)full) != 0)
		return 0;
	return rem == 0 || ((a[full] ^ r->addr[full]) & (0xff00 >> rem) & 0xff) == 0;
}

static enum trust trust_now(const struct endpoint *peer)
{
	for (;;) {
		uint32_t s = __atomic_load_n(&ranges.seq, __ATOMIC_ACQUIRE);
		if (s & 1)
			continue;
		enum trust t = TRUST_NO;
		if (!ranges.known)
			t = TRUST_UNKNOWN;
		else if (ranges.all_trusted)
			t = TRUST_YES;
		else
			for (uint32_t i = 0; i < ranges.n && i < MAX_RANGES; i++)
				if (in_range(peer->addr, &ranges.r[i])) {
					t = TRUST_YES;
					break;
				}
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&ranges.seq, __ATOMIC_RELAXED) == s)
			return t;
	}
}

static void ranges_store(int all_trusted, uint32_t generation, uint32_t n, const struct range *r)
{
	pthread_mutex_lock(&ranges_mu);
	__atomic_add_fetch(&ranges.seq, 1, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	ranges.known = 1;
	ranges.all_trusted = (uint8_t)all_trusted;
	ranges.generation = generation;
	ranges.n = n;
	memcpy(ranges.r, r, n * sizeof *r);
	__atomic_add_fetch(&ranges.seq, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&ranges_mu);
}

static uint32_t ranges_generation(void)
{
	return __atomic_load_n(&ranges.generation, __ATOMIC_RELAXED);
}

/* ---- the outcome counters ---------------------------------------------- */

static uint64_t pending[REP_COUNT];
static uint64_t last_report;

void count(int slot)
{
	__atomic_add_fetch(&pending[slot], 1, __ATOMIC_RELAXED);
}

/* take_report moves the pending counts into a frame's counters. */
static int take_report(uint8_t *b, uint32_t took[REP_COUNT])
{
	int any = 0;
	for (int i = 0; i < REP_COUNT; i++) {
		uint64_t v = __atomic_exchange_n(&pending[i], 0, __ATOMIC_RELAXED);
		if (v > UINT32_MAX) {
			__atomic_add_fetch(&pending[i], v - UINT32_MAX, __ATOMIC_RELAXED);
			v = UINT32_MAX;
		}
		took[i] = (uint32_t)v;
		put32(b + 4 * i, took[i]);
		any |= v != 0;
	}
	return any;
}

/* give_back returns counts a frame that could not be sent held. */
static void give_back(const uint32_t took[REP_COUNT])
{
	for (int i = 0; i < REP_COUNT; i++)
		if (took[i])
			__atomic_add_fetch(&pending[i], took[i], __ATOMIC_RELAXED);
}

/* ---- the thread's connection ------------------------------------------- */

struct tconn {
	int fd;         /* -1: none */
	uint64_t ident; /* socket_ident of fd when it was opened */
	uint32_t gen;   /* fork_gen when it was opened */
	uint32_t next_id;
};

static __thread struct tconn tc = {.fd = -1};
static uint32_t fork_gen;
static pthread_key_t conn_key;

/* conn_owned says whether tc.fd is still the socket this thread opened in
 * this process: a program may close descriptors it did not open (daemons
 * do), and a forked child must not talk on its parent's connection. */
static int conn_owned(void)
{
	return tc.fd >= 0 && tc.gen == __atomic_load_n(&fork_gen, __ATOMIC_RELAXED) &&
	       socket_ident(tc.fd) == tc.ident;
}

static void conn_drop(void)
{
	if (tc.fd >= 0 && socket_ident(tc.fd) == tc.ident)
		close(tc.fd);
	tc.fd = -1;
}

/* Thread exit: close the thread's connection. */
static void conn_destructor(void *p)
{
	(void)p;
	if (tc.fd >= 0 && tc.gen == __atomic_load_n(&fork_gen, __ATOMIC_RELAXED))
		conn_drop();
	tc.fd = -1;
}

/* recv_frame reads one message into f (FRAME_SIZE+1 bytes) before
 * deadline. It returns its length, or -ETIMEDOUT, or -EPIPE when toad
 * hung up, or another negative errno. A descriptor that came with the
 * message is stored in *fd when fd is not NULL, and closed otherwise. */
static int recv_frame(uint8_t *f, uint64_t deadline, int *fd)
{
	if (fd != NULL)
		*fd = -1;
	for (;;) {
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(sizeof(int))];
		} ctl;
		struct iovec iov = {.iov_base = f, .iov_len = FRAME_SIZE + 1};
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
		ssize_t n = recvmsg(tc.fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n >= 0) {
			for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
				if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
					continue;
				int got;
				memcpy(&got, CMSG_DATA(c), sizeof got);
				if (fd != NULL && *fd < 0)
					*fd = got;
				else
					close(got);
			}
		}
		if (n > 0)
			return (int)n;
		if (n == 0)
			return -EPIPE;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		uint64_t now = now_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		uint64_t left = deadline - now;
		struct timespec ts = {.tv_sec = (time_t)(left / 1000000000ull), .tv_nsec = (long)(left % 1000000000ull)};
		struct pollfd p = {.fd = tc.fd, .events = POLLIN};
		int r = ppoll(&p, 1, &ts, NULL);
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

/* Errors of await, beside negative errnos. */
#define E_PROTO (-10000)   /* not a frame: toad is not toad */
#define E_VERSION (-10001) /* another protocol version */
#define E_REFUSED (-10002) /* WELCOME with BUSY or NOT_SERVING */

/* await reads frames until one of type t answering id arrives, discarding
 * answers to earlier requests that timed out. A descriptor that comes with
 * the frame awaited is stored in *fd (when not NULL); any other is closed. */
static int await(uint8_t *f, enum frame_type t, uint32_t id, uint64_t deadline, int *fd)
{
	for (;;) {
		if (fd != NULL && *fd >= 0) {
			close(*fd);
			*fd = -1;
		}
		int n = recv_frame(f, deadline, fd);
		if (n < 0)
			return n;
		if (n != FRAME_SIZE || f[0] != MAGIC0 || f[1] != MAGIC1)
			return E_PROTO;
		if (f[OFF_VERSION] != PROTO_VERSION) {
			dbg("toad speaks protocol version %u, this library %u: use the library that comes with "
			    "this toad",
			    f[OFF_VERSION], PROTO_VERSION);
			return E_VERSION;
		}
		if (f[OFF_TYPE] == T_WELCOME && f[WELCOME_STATUS] != S_OK) {
			/* Sent in place of any answer, before toad hangs up. */
			if (f[WELCOME_STATUS] == S_BAD_VERSION)
				return E_VERSION;
			return E_REFUSED;
		}
		if (f[OFF_TYPE] == t && get32(f + OFF_ID) == id)
			return n;
	}
}

/* hello asks toad for its trusted ranges on tc.fd. */
static int hello(uint64_t deadline)
{
	uint8_t f[FRAME_SIZE + 1];
	uint32_t id = ++tc.next_id;
	put_header(f, T_HELLO, id);
	put32(f + HELLO_PID, (uint32_t)getpid());
	if (send(tc.fd, f, FRAME_SIZE, MSG_NOSIGNAL | MSG_DONTWAIT) != FRAME_SIZE)
		return -errno;
	int shm_fd = -1;
	int r = await(f, T_WELCOME, id, deadline, &shm_fd);
	if (r < 0) {
		if (shm_fd >= 0)
			close(shm_fd);
		return r;
	}
	if (shm_fd >= 0) {
		if (f[WELCOME_FLAGS] & WELCOME_SHARED_TABLE) {
			uint64_t size = (uint64_t)get32(f + WELCOME_SHARED_SIZE) << 32 | get32(f + WELCOME_SHARED_SIZE + 4);
			shm_adopt(shm_fd, size);
		} else {
			close(shm_fd);
		}
	}
	int all = (f[WELCOME_FLAGS] & WELCOME_ALL_TRUSTED) != 0;
	uint32_t total = get16(f + WELCOME_RANGES);
	uint32_t generation = get32(f + WELCOME_GENERATION);
	struct range got[MAX_RANGES];
	uint32_t have = 0;
	while (have < total) {
		r = await(f, T_RANGES, id, deadline, NULL);
		if (r < 0)
			return r;
		uint32_t first = get16(f + RANGES_FIRST), n = f[RANGES_COUNT];
		if (first != have || n == 0 || n > RANGES_PER_FRAME || first + n > total)
			return E_PROTO;
		for (uint32_t i = 0; i < n; i++, have++) {
			const uint8_t *e = f + RANGES_ENTRIES + i * RANGE_SIZE;
			if (e[16] > 128)
				return E_PROTO;
			if (have < MAX_RANGES) {
				memcpy(got[have].addr, e, 16);
				got[have].bits = e[16];
			}
		}
	}
	if (total > MAX_RANGES) {
		/* Too many to keep: ask about every peer, toad still checks. */
		all = 1;
		total = 0;
	}
	ranges_store(all, generation, total, got);
	__atomic_store_n(&ranges_at, now_ns(), __ATOMIC_RELAXED);
	dbg("connected to toad: %s, %u trusted ranges", all ? "every peer trusted" : "trusted ranges", total);
	return 0;
}

static const char *why(int err)
{
	switch (err) {
	case E_PROTO:
		return "not speaking the protocol";
	case E_VERSION:
		return "protocol version mismatch";
	case E_REFUSED:
		return "busy or stopping";
	case -ETIMEDOUT:
		return "timed out";
	case -EPIPE:
		return "hung up";
	}
	return strerror(-err);
}

/* conn_open connects this thread to toad and says hello; it returns 1. */
static int conn_open(uint64_t now, uint64_t deadline)
{
	if (!breaker_allow(now))
		return -EAGAIN;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, cfg.socket_path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		int e = errno;
		breaker_trip(now, strerror(e));
		return -e;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		int e = errno;
		close(fd);
		dbg("connect %s: %s", cfg.socket_path, strerror(e));
		breaker_trip(now, strerror(e));
		return -e;
	}
	tc.fd = fd;
	tc.ident = socket_ident(fd);
	tc.gen = __atomic_load_n(&fork_gen, __ATOMIC_RELAXED);
	pthread_setspecific(conn_key, &tc);
	int r = hello(deadline);
	if (r < 0) {
		dbg("hello: %s", why(r));
		conn_drop();
		breaker_fail(now, r);
		return r;
	}
	breaker_reset();
	return 1;
}

/* conn_ready makes sure this thread has a connection it owns: it returns
 * 0 for the one it had, 1 for a new one (whose HELLO brought the ranges),
 * or a negative error. */
static int conn_ready(uint64_t now, uint64_t deadline)
{
	if (tc.fd >= 0 && !conn_owned()) {
		if (tc.gen == __atomic_load_n(&fork_gen, __ATOMIC_RELAXED))
			dbg("the connection to toad was closed behind the library's back: reconnecting");
		/* Not ours any more: forget the number without closing it,
		 * unless it is our parent's socket inherited by fork. */
		if (tc.gen != __atomic_load_n(&fork_gen, __ATOMIC_RELAXED))
			conn_drop();
		tc.fd = -1;
	}
	if (tc.fd >= 0)
		return 0;
	return conn_open(now, deadline);
}

/* ---- the trust decision ------------------------------------------------ */

/* peer_trust says whether toad might know the peer's connections. Ranges
 * older than RANGES_TTL_NS are confirmed by one thread with a HELLO while
 * the others go on with them. */
enum trust peer_trust(const struct endpoint *peer, uint64_t now)
{
	enum trust t = trust_now(peer);
	if (t != TRUST_NO)
		return t;
	uint64_t at = __atomic_load_n(&ranges_at, __ATOMIC_RELAXED);
	if (now - at < RANGES_TTL_NS || !toad_reachable(now) ||
	    !__atomic_compare_exchange_n(&ranges_at, &at, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		return t;
	uint64_t deadline = now + cfg.wait_ns;
	int r = conn_ready(now, deadline);
	if (r == 0 && (r = hello(deadline)) < 0) {
		conn_drop();
		breaker_fail(now, r);
	} else if (r >= 0) {
		__atomic_store_n(&late_hellos, 0, __ATOMIC_RELAXED);
	}
	return trust_now(peer);
}

/* ---- lookups and reports ----------------------------------------------- */

/* asked_wait is the wait to ask toad for when left remains before the
 * caller's deadline: a margin is kept for the answer to come back. */
static uint32_t asked_wait(uint64_t left)
{
	uint64_t margin = left / 4;
	if (margin > 1000000)
		margin = 1000000;
	uint64_t us = (left - margin) / 1000;
	return us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void put_endpoint(uint8_t *b, const struct endpoint *e)
{
	memcpy(b, e->addr, 16);
	put16(b + 16, e->port);
}

void toad_lookup(const struct endpoint *peer, const struct endpoint *local, struct answer *out)
{
	memset(out, 0, sizeof *out);
	out->outcome = OUT_FALLBACK;
	uint64_t start = now_ns(), deadline = start + cfg.wait_ns;
	uint8_t f[FRAME_SIZE + 1];
	uint32_t id = 0;
	int r = -ETIMEDOUT;
	/* A connection that broke (toad restarted) gets one more try. */
	for (int attempt = 0; attempt < 2; attempt++) {
		uint64_t now = now_ns();
		if (now >= deadline)
			break;
		if (conn_ready(now, deadline) < 0)
			return;
		if (trust_now(peer) == TRUST_NO) {
			/* A first HELLO just said toad does not trust this peer. */
			out->outcome = OUT_BYPASS;
			return;
		}
		id = ++tc.next_id;
		put_header(f, T_LOOKUP, id);
		put_endpoint(f + LOOKUP_PEER, peer);
		put_endpoint(f + LOOKUP_LOCAL, local);
		put32(f + LOOKUP_WAIT, asked_wait(deadline - now));
		uint32_t took[REP_COUNT];
		take_report(f + LOOKUP_REPORT, took);
		if (send(tc.fd, f, FRAME_SIZE, MSG_NOSIGNAL | MSG_DONTWAIT) == FRAME_SIZE) {
			__atomic_store_n(&last_report, now, __ATOMIC_RELAXED);
			r = 0;
			break;
		}
		r = -errno;
		give_back(took);
		dbg("send to toad: %s", strerror(-r));
		conn_drop();
	}
	if (r == -ETIMEDOUT)
		return; /* the HELLO took the whole wait */
	if (r != 0) {
		breaker_trip(start, why(r));
		return;
	}
	r = await(f, T_ANSWER, id, deadline, NULL);
	if (r == -ETIMEDOUT) {
		/* Keep the connection: the late answer is discarded by id. */
		dbg("toad did not answer within %lluus", (unsigned long long)(cfg.wait_ns / 1000));
		return;
	}
	if (r < 0) {
		dbg("lookup: %s", why(r));
		conn_drop();
		breaker_trip(start, why(r));
		return;
	}
	uint32_t gen = get32(f + ANSWER_GENERATION);
	if (gen == ranges_generation())
		__atomic_store_n(&ranges_at, now_ns(), __ATOMIC_RELAXED);
	else
		__atomic_store_n(&ranges_at, 0, __ATOMIC_RELAXED); /* changed: confirm at next need */
	switch (f[ANSWER_STATUS]) {
	case S_OK:
		if (f[ANSWER_FAMILY] != 4 && f[ANSWER_FAMILY] != 6)
			return;
		out->outcome = OUT_FOUND;
		out->family = f[ANSWER_FAMILY];
		out->has_port = (f[ANSWER_FLAGS] & ANSWER_HAS_PORT) != 0;
		memcpy(out->addr, f + ANSWER_ADDR, 16);
		out->port = out->has_port ? get16(f + ANSWER_PORT) : 0;
		return;
	case S_NOT_FOUND:
		out->outcome = OUT_NOT_FOUND;
		return;
	case S_NOT_SERVING:
		conn_drop();
		breaker_trip(start, "stopping");
		return;
	default:
		dbg("toad answered status %u", f[ANSWER_STATUS]);
		return;
	}
}

/* report_now sends the pending counters, opening this thread's
 * connection if it has none (and the breaker allows). */
static void report_now(uint64_t now)
{
	uint8_t f[FRAME_SIZE];
	uint32_t took[REP_COUNT];
	put_header(f, T_REPORT, 0);
	if (!take_report(f + REPORT_COUNTERS, took))
		return;
	if (conn_ready(now, now + cfg.wait_ns) < 0 ||
	    send(tc.fd, f, FRAME_SIZE, MSG_NOSIGNAL | MSG_DONTWAIT) != FRAME_SIZE)
		give_back(took);
}

/* report_idle sends the pending counters when no lookup carried them for
 * a while (lookups answered from the shared table, or peers passed
 * through, cost no round trip to carry them on): at most once per
 * REPORT_INTERVAL_NS in the process. */
void report_idle(uint64_t now)
{
	uint64_t last = __atomic_load_n(&last_report, __ATOMIC_RELAXED);
	if (now - last < REPORT_INTERVAL_NS ||
	    !__atomic_compare_exchange_n(&last_report, &last, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		return;
	report_now(now);
}

/* At exit, the counters not reported yet go to toad. */
void conn_at_exit(void)
{
	report_now(now_ns());
}

void conn_init(void)
{
	pthread_key_create(&conn_key, conn_destructor);
}

/*
 * conn_after_fork runs in the child of fork: it drops the parent's
 * connection (the child gets its own on first use), takes no counts of
 * the parent's, and resets locks another thread of the parent may have
 * held.
 */
void conn_after_fork(void)
{
	__atomic_add_fetch(&fork_gen, 1, __ATOMIC_RELAXED);
	if (tc.fd >= 0 && socket_ident(tc.fd) == tc.ident)
		close(tc.fd);
	tc.fd = -1;
	for (int i = 0; i < REP_COUNT; i++)
		pending[i] = 0;
	last_report = 0;
	pthread_mutex_init(&ranges_mu, NULL);
	if (ranges.seq & 1) {
		/* A parent thread was writing them: forget them. */
		ranges.known = 0;
		ranges.seq++;
	}
}
