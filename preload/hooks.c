/*
 * The four functions the library exports: accept, accept4, getpeername
 * and getsockopt. Each does the real call first and passes its result
 * through untouched unless the descriptor is a TCP connection accepted
 * from a peer toad might know about (toad's trusted proxy ranges); then
 * the caller gets the real client toad names, in the family its buffer
 * can hold, or else the kernel's address.
 */
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload.h"

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

/* The DPVS, Tencent and Huawei TOA modules' NAT64 getsockopt. */
#define TOA_SO_GET_LOOKUP 4096
struct toa_nat64_peer {
	struct in6_addr saddr;
	uint16_t sport; /* network order */
};

struct real_fns real;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int ready;

/* in_hook stops recursion: a call the library makes while serving a hook
 * (another preloaded library may route it back here) passes through. */
static __thread int in_hook;

/* The raw system calls stand in when dlsym finds no next definition. */
static int sys_accept(int fd, struct sockaddr *a, socklen_t *l)
{
	return (int)syscall(SYS_accept4, fd, a, l, 0);
}

static int sys_accept4(int fd, struct sockaddr *a, socklen_t *l, int flags)
{
	return (int)syscall(SYS_accept4, fd, a, l, flags);
}

static int sys_getpeername(int fd, struct sockaddr *a, socklen_t *l)
{
	return (int)syscall(SYS_getpeername, fd, a, l);
}

static int sys_getsockopt(int fd, int level, int name, void *v, socklen_t *l)
{
	return (int)syscall(SYS_getsockopt, fd, level, name, v, l);
}

#define RESOLVE(name)                                                                                        \
	do {                                                                                                 \
		real.name = (__typeof__(real.name))dlsym(RTLD_NEXT, #name);                                  \
		if (real.name == NULL)                                                                       \
			real.name = sys_##name;                                                              \
	} while (0)

static void after_fork_child(void)
{
	conn_after_fork();
	shm_after_fork();
	fdtable_after_fork();
}

static void init(void)
{
	RESOLVE(accept);
	RESOLVE(accept4);
	RESOLVE(getpeername);
	RESOLVE(getsockopt);
	read_config();
	conn_init();
	pthread_atfork(NULL, NULL, after_fork_child);
	__atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
}

__attribute__((constructor)) static void load(void)
{
	pthread_once(&once, init);
}

/* At exit, the counters not reported yet go to toad. */
__attribute__((destructor)) static void unload(void)
{
	if (__atomic_load_n(&ready, __ATOMIC_ACQUIRE) && !in_hook)
		conn_at_exit();
}

static inline void ensure_init(void)
{
	if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE))
		pthread_once(&once, init);
}

/* copy_out stores an address as the kernel does: at most *len bytes of
 * it, and its full length in *len. */
static void copy_out(struct sockaddr *addr, socklen_t *len, const void *src, socklen_t srclen)
{
	if (addr == NULL || len == NULL)
		return;
	memcpy(addr, src, *len < srclen ? *len : srclen);
	*len = srclen;
}

/*
 * client_sockaddr builds the address to give a caller whose socket is of
 * family fam and whose buffer holds cap bytes: an IPv4 client on an
 * AF_INET6 socket as ::ffff:a.b.c.d, as the kernel does for dual-stack
 * sockets; an IPv6 client on an AF_INET socket as AF_INET6 when the
 * buffer can hold it and TOAD_PRELOAD_FAMILY does not forbid it. It returns the address's length, or 0 when the
 * client cannot be given (the caller keeps the kernel's address).
 */
static socklen_t client_sockaddr(int fam, const struct answer *a, socklen_t cap, struct sockaddr_storage *out)
{
	memset(out, 0, sizeof *out);
	if (fam == AF_INET && a->family == 4) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)out;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(a->port);
		memcpy(&s4->sin_addr, a->addr + 12, 4);
		return sizeof *s4;
	}
	if (fam == AF_INET && (cap < sizeof(struct sockaddr_in6) || cfg.socket_family))
		return 0;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
	s6->sin6_family = AF_INET6;
	s6->sin6_port = htons(a->port);
	memcpy(&s6->sin6_addr, a->addr, 16);
	return sizeof *s6;
}

/* give answers a caller from slot d: the client when toad named one and
 * the caller can hold it, the kernel's address (kss, ksl) otherwise; the
 * outcome is counted. */
static void give(struct sockaddr *addr, socklen_t *len, const struct slot_data *d,
		 const struct sockaddr_storage *kss, socklen_t ksl)
{
	switch (d->ans.outcome) {
	case OUT_FOUND: {
		struct sockaddr_storage c;
		socklen_t cl = client_sockaddr(d->sock_family, &d->ans, *len, &c);
		if (cl) {
			count(REP_OK);
			copy_out(addr, len, &c, cl);
			return;
		}
		count(REP_MISMATCH);
		break;
	}
	case OUT_NOT_FOUND:
		count(REP_EMPTY);
		break;
	case OUT_BYPASS:
		count(REP_BYPASS);
		break;
	default:
		count(REP_FALLBACK);
		break;
	}
	copy_out(addr, len, kss, ksl);
}

static int is_tcp(int fd)
{
	int proto = 0;
	socklen_t l = sizeof proto;
	if (real.getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &l) != 0)
		return 0;
	return proto == IPPROTO_TCP || proto == IPPROTO_MPTCP;
}

static void log_answer(const char *call, const struct slot_data *d)
{
	if (!cfg.debug)
		return;
	char p[64], c[64];
	fmt_endpoint(p, sizeof p, d->peer.addr, d->peer.port);
	switch (d->ans.outcome) {
	case OUT_FOUND:
		fmt_endpoint(c, sizeof c, d->ans.addr, d->ans.port);
		dbg("%s: peer %s is client %s", call, p, c);
		return;
	case OUT_NOT_FOUND:
		dbg("%s: peer %s: toad knows no client", call, p);
		return;
	}
	dbg("%s: peer %s: toad did not answer", call, p);
}

/* ask gets toad's answer about a connection: from the shared table when
 * it holds it, else over the socket. */
static void ask(const struct endpoint *peer, const struct endpoint *local, struct answer *ans)
{
	if (shm_lookup(peer, local, ans, now_ns()))
		return;
	toad_lookup(peer, local, ans);
}

/* resolve asks toad about a slot's connection and stores the answer,
 * unless another thread did first (then d gets that answer). */
static void resolve(int fd, struct slot_data *d, const char *call)
{
	struct sockaddr_storage lss;
	socklen_t ll = sizeof lss;
	struct endpoint local;
	if (getsockname(fd, (struct sockaddr *)&lss, &ll) != 0)
		return;
	endpoint_from(&lss, &local);
	ask(&d->peer, &local, &d->ans);
	d->state = SLOT_ANSWERED;
	log_answer(call, d);
	if (!slot_update(fd, d->ident, d))
		d->ans.outcome = OUT_FALLBACK;
}

/*
 * after_accept handles the connection fd the real accept returned, whose
 * peer the kernel wrote in kss. The caller's address buffer is addr, len.
 */
static void after_accept(int fd, const struct sockaddr_storage *kss, socklen_t ksl, struct sockaddr *addr,
			 socklen_t *len)
{
	int fam = kss->ss_family;
	if (fam != AF_INET && fam != AF_INET6) {
		copy_out(addr, len, kss, ksl);
		return;
	}
	struct slot_data d;
	memset(&d, 0, sizeof d);
	d.sock_family = (uint8_t)fam;
	endpoint_from(kss, &d.peer);
	uint64_t now = now_ns();
	enum trust t = peer_trust(&d.peer, now);
	if (t == TRUST_NO) {
		count(REP_BYPASS);
		report_idle(now);
		copy_out(addr, len, kss, ksl);
		return;
	}
	int reachable = toad_reachable(now) || shm_usable(now);
	if (!reachable || !is_tcp(fd) || (d.ident = socket_ident(fd)) == 0) {
		/* toad is down (the breaker is open): keep nothing, so that a
		 * later getpeername passes through as well. */
		if (addr != NULL && !reachable)
			count(REP_FALLBACK);
		copy_out(addr, len, kss, ksl);
		return;
	}
	if (addr == NULL) {
		/* Nobody asks yet (libuv, mosquitto): ask toad when
		 * getpeername does. */
		d.state = SLOT_PENDING;
		slot_store(fd, &d);
		return;
	}
	struct sockaddr_storage lss;
	socklen_t ll = sizeof lss;
	struct endpoint local;
	if (getsockname(fd, (struct sockaddr *)&lss, &ll) != 0) {
		copy_out(addr, len, kss, ksl);
		return;
	}
	endpoint_from(&lss, &local);
	ask(&d.peer, &local, &d.ans);
	if (d.ans.outcome == OUT_BYPASS) {
		/* The HELLO of a first connection said toad does not trust the
		 * peer: keep nothing, as for any untrusted peer. */
		count(REP_BYPASS);
		copy_out(addr, len, kss, ksl);
		return;
	}
	d.state = SLOT_ANSWERED;
	slot_store(fd, &d);
	log_answer("accept", &d);
	give(addr, len, &d, kss, ksl);
	report_idle(now);
}

/* bad_args says whether the kernel would fail the call for its address
 * arguments (EFAULT, EINVAL): the call then goes to it as it is. */
static int bad_args(struct sockaddr *addr, socklen_t *len)
{
	return addr != NULL && (len == NULL || (int)*len < 0);
}

static int hooked_accept(int fd, struct sockaddr *addr, socklen_t *len, int flags, int four)
{
	ensure_init();
	if (in_hook || bad_args(addr, len))
		return four ? real.accept4(fd, addr, len, flags) : real.accept(fd, addr, len);
	struct sockaddr_storage kss;
	socklen_t ksl = sizeof kss;
	int nfd = four ? real.accept4(fd, (struct sockaddr *)&kss, &ksl, flags)
		       : real.accept(fd, (struct sockaddr *)&kss, &ksl);
	if (nfd < 0)
		return nfd;
	int saved = errno;
	in_hook = 1;
	after_accept(nfd, &kss, ksl, addr, len);
	in_hook = 0;
	errno = saved;
	return nfd;
}

EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	return hooked_accept(fd, addr, len, 0, 0);
}

EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	return hooked_accept(fd, addr, len, flags, 1);
}

/*
 * current loads fd's slot and checks it against the socket fd refers to
 * now (the kernel's peer kss, and the socket's identity); a slot of
 * another socket is emptied.
 */
static int current(int fd, const struct sockaddr_storage *kss, struct slot_data *d)
{
	if (!slot_load(fd, d))
		return 0;
	struct endpoint peer;
	endpoint_from(kss, &peer);
	if (kss->ss_family != d->sock_family || memcmp(&peer, &d->peer, sizeof peer) != 0 ||
	    socket_ident(fd) != d->ident) {
		slot_forget(fd, d->ident);
		return 0;
	}
	return 1;
}

EXPORT int getpeername(int fd, struct sockaddr *addr, socklen_t *len)
{
	ensure_init();
	if (in_hook || !slot_maybe_used(fd) || addr == NULL || bad_args(addr, len))
		return real.getpeername(fd, addr, len);
	struct sockaddr_storage kss;
	socklen_t ksl = sizeof kss;
	if (real.getpeername(fd, (struct sockaddr *)&kss, &ksl) != 0)
		return -1;
	int saved = errno;
	in_hook = 1;
	struct slot_data d;
	if (!current(fd, &kss, &d))
		copy_out(addr, len, &kss, ksl);
	else {
		if (d.state == SLOT_PENDING)
			resolve(fd, &d, "getpeername");
		give(addr, len, &d, &kss, ksl);
		report_idle(now_ns());
	}
	in_hook = 0;
	errno = saved;
	return 0;
}

/*
 * getsockopt(fd, IPPROTO_IP, TOA_SO_GET_LOOKUP) answers as the NAT64 TOA
 * modules do: the IPv6 client of a connection on an AF_INET socket, in a
 * struct toa_nat64_peer; EINVAL for a short buffer or a connection
 * without a client, EFAULT for one whose client is not of that kind,
 * ENOTCONN when it is not connected. Other options, and descriptors the
 * library keeps nothing for, go to the real getsockopt.
 */
EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	ensure_init();
	if (level != IPPROTO_IP || name != TOA_SO_GET_LOOKUP || in_hook || !slot_maybe_used(fd))
		return real.getsockopt(fd, level, name, val, len);
	struct sockaddr_storage kss;
	socklen_t ksl = sizeof kss;
	if (real.getpeername(fd, (struct sockaddr *)&kss, &ksl) != 0)
		return -1; /* ENOTCONN, as the modules say */
	in_hook = 1;
	struct slot_data d;
	int ret = -1, err = 0;
	if (!current(fd, &kss, &d)) {
		in_hook = 0;
		return real.getsockopt(fd, level, name, val, len);
	}
	if (val == NULL || len == NULL || *len < sizeof(struct toa_nat64_peer)) {
		err = EINVAL;
		goto out;
	}
	if (d.state == SLOT_PENDING)
		resolve(fd, &d, "getsockopt");
	switch (d.ans.outcome) {
	case OUT_FOUND:
		if (d.sock_family != AF_INET || d.ans.family != 6) {
			count(REP_MISMATCH);
			err = EFAULT;
			break;
		}
		struct toa_nat64_peer p;
		memset(&p, 0, sizeof p);
		memcpy(&p.saddr, d.ans.addr, 16);
		p.sport = htons(d.ans.port);
		memcpy(val, &p, sizeof p);
		*len = sizeof p;
		count(REP_OK);
		ret = 0;
		break;
	case OUT_NOT_FOUND:
		count(REP_EMPTY);
		err = EINVAL;
		break;
	case OUT_BYPASS:
		count(REP_BYPASS);
		err = EINVAL;
		break;
	default:
		count(REP_FALLBACK);
		err = EINVAL;
		break;
	}
out:
	in_hook = 0;
	if (ret != 0)
		errno = err;
	return ret;
}
