/* Settings, time, socket identity and the debug log. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "preload.h"

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

#define DEFAULT_SOCKET "/run/toad/preload.sock"
#define DEFAULT_WAIT_NS (20 * 1000000ull)
#define MIN_WAIT_NS (1000000ull)
#define DEFAULT_RETRY_NS (1000 * 1000000ull)
#define MAX_DURATION_NS (60 * 1000000000ull)

struct config cfg;

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* no_cookie is set once SO_COOKIE turns out unsupported (before 4.12). */
static int no_cookie;

/*
 * socket_ident returns an identity of the socket fd refers to that no
 * other socket shares while it is open: its cookie (unique for the life of
 * the system), or, on kernels without SO_COOKIE, its inode. 0 means fd is
 * not a socket.
 */
uint64_t socket_ident(int fd)
{
	if (!__atomic_load_n(&no_cookie, __ATOMIC_RELAXED)) {
		uint64_t c = 0;
		socklen_t l = sizeof c;
		if (real.getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &l) == 0 && l == sizeof c)
			return c;
		if (errno != ENOPROTOOPT)
			return 0;
		__atomic_store_n(&no_cookie, 1, __ATOMIC_RELAXED);
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
		return 0;
	return (uint64_t)st.st_ino | 1ull << 63;
}

/*
 * parse_duration reads "20ms", "500us", "1s", "2m" or a bare number of
 * milliseconds into *ns; it returns -1 for anything else.
 */
static int parse_duration(const char *s, uint64_t *ns)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s || errno != 0 || *s == '-')
		return -1;
	uint64_t unit;
	if (*end == 0 || strcmp(end, "ms") == 0)
		unit = 1000000ull;
	else if (strcmp(end, "us") == 0)
		unit = 1000ull;
	else if (strcmp(end, "ns") == 0)
		unit = 1ull;
	else if (strcmp(end, "s") == 0)
		unit = 1000000000ull;
	else if (strcmp(end, "m") == 0)
		unit = 60000000000ull;
	else
		return -1;
	if (v > MAX_DURATION_NS / unit)
		v = MAX_DURATION_NS / unit;
	*ns = v * unit;
	return 0;
}

static void duration_env(const char *name, uint64_t def, uint64_t *out)
{
	const char *v = getenv(name);
	*out = def;
	if (v == NULL || *v == 0)
		return;
	if (parse_duration(v, out) != 0) {
		*out = def;
		dbg("%s=%s is not a duration (want e.g. 20ms, 500us, 1s): using %llums", name, v,
		    (unsigned long long)(def / 1000000));
	}
}

void read_config(void)
{
	const char *d = getenv("TOAD_PRELOAD_DEBUG");
	cfg.debug = d != NULL && *d != 0 && strcmp(d, "0") != 0;
	const char *p = getenv("TOAD_PRELOAD_SOCKET");
	if (p == NULL || *p == 0)
		p = DEFAULT_SOCKET;
	if (strlen(p) >= sizeof cfg.socket_path) {
		dbg("TOAD_PRELOAD_SOCKET is longer than a unix socket path may be: using %s", DEFAULT_SOCKET);
		p = DEFAULT_SOCKET;
	}
	strcpy(cfg.socket_path, p);
	duration_env("TOAD_PRELOAD_WAIT", DEFAULT_WAIT_NS, &cfg.wait_ns);
	if (cfg.wait_ns < MIN_WAIT_NS) {
		/* The round trip itself needs some time. */
		dbg("TOAD_PRELOAD_WAIT below 1ms: using 1ms");
		cfg.wait_ns = MIN_WAIT_NS;
	}
	duration_env("TOAD_PRELOAD_RETRY", DEFAULT_RETRY_NS, &cfg.retry_ns);
	const char *f = getenv("TOAD_PRELOAD_FAMILY");
	cfg.socket_family = f != NULL && strcmp(f, "socket") == 0;
	if (f != NULL && *f != 0 && !cfg.socket_family && strcmp(f, "any") != 0)
		dbg("TOAD_PRELOAD_FAMILY=%s is neither any nor socket: using any", f);
	dbg("loaded: socket %s, wait %lluus, retry %llums", cfg.socket_path,
	    (unsigned long long)(cfg.wait_ns / 1000), (unsigned long long)(cfg.retry_ns / 1000000));
}

/* dbg writes one line to standard error when TOAD_PRELOAD_DEBUG is set. */
void dbg(const char *fmt, ...)
{
	if (!cfg.debug)
		return;
	int saved = errno;
	char buf[512];
	int n = snprintf(buf, sizeof buf, "toad-preload[%d]: ", (int)getpid());
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof buf - 2)
		n = (int)sizeof buf - 2;
	buf[n++] = '\n';
	ssize_t w = write(2, buf, (size_t)n);
	(void)w;
	errno = saved;
}

void endpoint_from(const struct sockaddr_storage *ss, struct endpoint *e)
{
	memset(e, 0, sizeof *e);
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
		e->addr[10] = e->addr[11] = 0xff;
		memcpy(e->addr + 12, &s4->sin_addr, 4);
		e->port = ntohs(s4->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
		memcpy(e->addr, &s6->sin6_addr, 16);
		e->port = ntohs(s6->sin6_port);
	}
}

static int is_mapped(const uint8_t a[16])
{
	static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	return memcmp(a, prefix, 12) == 0;
}

void fmt_endpoint(char *buf, size_t n, const uint8_t addr[16], uint16_t port)
{
	char ip[INET6_ADDRSTRLEN];
	if (is_mapped(addr)) {
		inet_ntop(AF_INET, addr + 12, ip, sizeof ip);
		snprintf(buf, n, "%s:%u", ip, port);
	} else {
		inet_ntop(AF_INET6, addr, ip, sizeof ip);
		snprintf(buf, n, "[%s]:%u", ip, port);
	}
}
