/*
 * hookdriver runs socket calls that the tests of package api/preload ask
 * for, one command per line on standard input, and answers each with one
 * line on standard output ("ok ..." or "err ERRNO"), so that a Go test can
 * fill toad's table between the steps of a scenario. It is run with the
 * preload library in LD_PRELOAD, or without it as a control.
 *
 * Addresses are printed with their family: inet:192.0.2.1:80,
 * inet6:[2001:db8::1]:80. "kpeer" is the kernel's own peer, read with a
 * raw system call that the library does not see.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#define TOA_SO_GET_LOOKUP 4096

struct toa_nat64_peer {
	struct in6_addr saddr;
	uint16_t sport;
};

/* say writes one line with a single write, so that lines of forked
 * children and threads never mix. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof buf - 2)
		n = (int)sizeof buf - 2;
	buf[n++] = '\n';
	if (write(1, buf, (size_t)n) != n)
		exit(3);
}

static const char *ename(int e)
{
	switch (e) {
	case EINVAL:
		return "EINVAL";
	case EFAULT:
		return "EFAULT";
	case ENOTCONN:
		return "ENOTCONN";
	case ENOPROTOOPT:
		return "ENOPROTOOPT";
	case EOPNOTSUPP:
		return "EOPNOTSUPP";
	case ENOTSOCK:
		return "ENOTSOCK";
	case EBADF:
		return "EBADF";
	case EAGAIN:
		return "EAGAIN";
	}
	static char buf[32];
	snprintf(buf, sizeof buf, "E%d", e);
	return buf;
}

static void fmt_addr(char *out, size_t n, const struct sockaddr_storage *ss, socklen_t len)
{
	char ip[INET6_ADDRSTRLEN];
	if (ss->ss_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *s = (const void *)ss;
		inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
		snprintf(out, n, "inet:%s:%u", ip, ntohs(s->sin_port));
	} else if (ss->ss_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *s = (const void *)ss;
		inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
		snprintf(out, n, "inet6:[%s]:%u", ip, ntohs(s->sin6_port));
	} else if (ss->ss_family == AF_UNIX) {
		snprintf(out, n, "unix");
	} else {
		snprintf(out, n, "family%d", ss->ss_family);
	}
}

static void kpeer(int fd, char *out, size_t n)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof ss;
	if (syscall(SYS_getpeername, fd, &ss, &l) != 0) {
		snprintf(out, n, "%s", ename(errno));
		return;
	}
	fmt_addr(out, n, &ss, l);
}

static int parse_addr(int fam, const char *ip, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof *ss);
	if (fam == 4) {
		struct sockaddr_in *s = (void *)ss;
		s->sin_family = AF_INET;
		s->sin_port = htons((uint16_t)port);
		*len = sizeof *s;
		return inet_pton(AF_INET, ip, &s->sin_addr) == 1 ? 0 : -1;
	}
	struct sockaddr_in6 *s = (void *)ss;
	s->sin6_family = AF_INET6;
	s->sin6_port = htons((uint16_t)port);
	*len = sizeof *s;
	return inet_pton(AF_INET6, ip, &s->sin6_addr) == 1 ? 0 : -1;
}

/* describe prints the result of a call that filled an address buffer of
 * cap bytes (-1: none) with len bytes: the address when whole, its bytes
 * when cut short, and whether the bytes past it were left alone. */
static void describe(const char *tag, int fd, const unsigned char *buf, int cap, socklen_t len)
{
	char k[128], a[256];
	kpeer(fd, k, sizeof k);
	if (cap < 0) {
		say("%sok fd=%d len=- addr=- kpeer=%s", tag, fd, k);
		return;
	}
	if ((int)len <= cap) {
		fmt_addr(a, sizeof a, (const struct sockaddr_storage *)buf, len);
	} else {
		int o = snprintf(a, sizeof a, "cut:");
		for (int i = 0; i < cap && o < (int)sizeof a - 3; i++)
			o += snprintf(a + o, sizeof a - (size_t)o, "%02x", buf[i]);
	}
	int used = (int)len < cap ? (int)len : cap, intact = 1;
	for (int i = used; i < (int)sizeof(struct sockaddr_storage); i++)
		if (buf[i] != 0xAA)
			intact = 0;
	say("%sok fd=%d len=%u addr=%s kpeer=%s intact=%d", tag, fd, (unsigned)len, a, k, intact);
}

/* do_accept accepts on lfd with a buffer of cap bytes (-1: NULL). */
static int do_accept(const char *tag, int lfd, int cap, int four)
{
	union {
		struct sockaddr_storage ss;
		unsigned char b[sizeof(struct sockaddr_storage)];
	} u;
	memset(u.b, 0xAA, sizeof u.b);
	socklen_t len = cap < 0 ? 0 : (socklen_t)cap;
	int fd = four ? accept4(lfd, cap < 0 ? NULL : (struct sockaddr *)&u.ss, cap < 0 ? NULL : &len, SOCK_CLOEXEC)
		      : accept(lfd, cap < 0 ? NULL : (struct sockaddr *)&u.ss, cap < 0 ? NULL : &len);
	if (fd < 0) {
		say("%serr %s", tag, ename(errno));
		return -1;
	}
	describe(tag, fd, u.b, cap, len);
	return fd;
}

static void do_getpeername(int fd, int cap)
{
	union {
		struct sockaddr_storage ss;
		unsigned char b[sizeof(struct sockaddr_storage)];
	} u;
	memset(u.b, 0xAA, sizeof u.b);
	socklen_t len = (socklen_t)cap;
	if (getpeername(fd, (struct sockaddr *)&u.ss, &len) != 0) {
		say("err %s", ename(errno));
		return;
	}
	describe("", fd, u.b, cap, len);
}

static void do_getsockopt(int fd, int optlen)
{
	struct {
		struct toa_nat64_peer p;
		char pad[16];
	} v;
	memset(&v, 0xAA, sizeof v);
	socklen_t len = optlen < 0 ? 0 : (socklen_t)optlen;
	if (getsockopt(fd, IPPROTO_IP, TOA_SO_GET_LOOKUP, optlen < 0 ? NULL : &v, &len) != 0) {
		say("err %s", ename(errno));
		return;
	}
	char ip[INET6_ADDRSTRLEN];
	inet_ntop(AF_INET6, &v.p.saddr, ip, sizeof ip);
	say("ok len=%u addr=[%s]:%u", (unsigned)len, ip, ntohs(v.p.sport));
}

static int do_connect(int fam, const char *src, const char *dst, int port, int srcport, int quiet)
{
	struct sockaddr_storage s, d;
	socklen_t sl, dl;
	if (parse_addr(fam, src, srcport, &s, &sl) || parse_addr(fam, dst, port, &d, &dl)) {
		say("err bad-address");
		return -1;
	}
	int fd = socket(fam == 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (void *)&s, sl) != 0 || connect(fd, (void *)&d, dl) != 0) {
		say("err %s", ename(errno));
		close(fd);
		return -1;
	}
	if (!quiet) {
		struct sockaddr_storage me;
		socklen_t ml = sizeof me;
		char a[128];
		getsockname(fd, (void *)&me, &ml);
		fmt_addr(a, sizeof a, &me, ml);
		say("ok %d %s", fd, a);
	}
	return fd;
}

struct job {
	int lfd, n, cap;
};

static void *accept_job(void *p)
{
	struct job *j = p;
	for (int i = 0; i < j->n; i++)
		do_accept("thread ", j->lfd, j->cap, 1);
	return NULL;
}

static void run(char *line)
{
	char cmd[32] = "", a1[64] = "", a2[64] = "", a3[64] = "", a4[64] = "", a5[64] = "";
	int n = sscanf(line, "%31s %63s %63s %63s %63s %63s", cmd, a1, a2, a3, a4, a5);
	if (n < 1)
		return;
	if (!strcmp(cmd, "listen")) {
		int fam = atoi(a1);
		struct sockaddr_storage ss;
		socklen_t sl;
		if (parse_addr(fam, a2, 0, &ss, &sl)) {
			say("err bad-address");
			return;
		}
		int fd = socket(fam == 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int zero = 0, one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (fam == 6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
		if (bind(fd, (void *)&ss, sl) != 0 || listen(fd, 4096) != 0) {
			say("err %s", ename(errno));
			return;
		}
		sl = sizeof ss;
		getsockname(fd, (void *)&ss, &sl);
		say("ok %d %u", fd, ntohs(fam == 4 ? ((struct sockaddr_in *)&ss)->sin_port : ((struct sockaddr_in6 *)&ss)->sin6_port));
	} else if (!strcmp(cmd, "connect")) {
		do_connect(atoi(a1), a2, a3, atoi(a4), n > 5 ? atoi(a5) : 0, 0);
	} else if (!strcmp(cmd, "connectn")) {
		/* connectn FAM SRC DST PORT N: N connections, no output each */
		int k = atoi(a5);
		for (int i = 0; i < k; i++)
			if (do_connect(atoi(a1), a2, a3, atoi(a4), 0, 1) < 0)
				return;
		say("ok");
	} else if (!strcmp(cmd, "accept") || !strcmp(cmd, "accept4")) {
		do_accept("", atoi(a1), atoi(a2), cmd[6] == '4');
	} else if (!strcmp(cmd, "acceptn")) {
		/* acceptn LFD N CAP: N accepts; how many gave the kernel's peer */
		int lfd = atoi(a1), k = atoi(a2), cap = atoi(a3), kernel = 0, other = 0;
		for (int i = 0; i < k; i++) {
			struct sockaddr_storage ss;
			socklen_t l = (socklen_t)cap;
			int fd = accept(lfd, (void *)&ss, &l);
			if (fd < 0) {
				say("err %s", ename(errno));
				return;
			}
			char a[128], kp[128];
			fmt_addr(a, sizeof a, &ss, l);
			kpeer(fd, kp, sizeof kp);
			if (strcmp(a, kp) == 0)
				kernel++;
			else
				other++;
			close(fd);
		}
		say("ok kernel=%d other=%d", kernel, other);
	} else if (!strcmp(cmd, "getpeername")) {
		do_getpeername(atoi(a1), atoi(a2));
	} else if (!strcmp(cmd, "getsockopt")) {
		do_getsockopt(atoi(a1), atoi(a2));
	} else if (!strcmp(cmd, "sotype")) {
		int t = 0;
		socklen_t l = sizeof t;
		if (getsockopt(atoi(a1), SOL_SOCKET, SO_TYPE, &t, &l) != 0)
			say("err %s", ename(errno));
		else
			say("ok type=%d", t);
	} else if (!strcmp(cmd, "rawaccept")) {
		int fd = (int)syscall(SYS_accept4, atoi(a1), NULL, NULL, 0);
		if (fd < 0)
			say("err %s", ename(errno));
		else
			say("ok %d", fd);
	} else if (!strcmp(cmd, "dup2")) {
		if (dup2(atoi(a1), atoi(a2)) < 0)
			say("err %s", ename(errno));
		else
			say("ok");
	} else if (!strcmp(cmd, "closerange")) {
		if (syscall(SYS_close_range, atoi(a1), atoi(a2), 0) != 0)
			say("err %s", ename(errno));
		else
			say("ok");
	} else if (!strcmp(cmd, "close")) {
		int fd = atoi(a1);
		if (!strcmp(a2, "rst")) {
			struct linger lg = {1, 0};
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		}
		close(fd);
		say("ok");
	} else if (!strcmp(cmd, "waithup")) {
		/* waithup FD: wait until the peer has closed or reset FD */
		struct pollfd p = {.fd = atoi(a1), .events = POLLRDHUP};
		int r = poll(&p, 1, 30000);
		if (r == 1)
			say("ok");
		else
			say("err %s", r == 0 ? "timeout" : ename(errno));
	} else if (!strcmp(cmd, "udp")) {
		/* udp FAM ADDR: a connected UDP socket's getpeername */
		int fam = atoi(a1);
		struct sockaddr_storage ss;
		socklen_t sl;
		parse_addr(fam, a2, 0, &ss, &sl);
		int s1 = socket(fam == 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		int s2 = socket(fam == 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		bind(s1, (void *)&ss, sl);
		bind(s2, (void *)&ss, sl);
		socklen_t l2 = sizeof ss;
		getsockname(s2, (void *)&ss, &l2);
		if (connect(s1, (void *)&ss, l2) != 0) {
			say("err %s", ename(errno));
			return;
		}
		do_getpeername(s1, (int)sizeof(struct sockaddr_storage));
	} else if (!strcmp(cmd, "unix")) {
		/* unix: accept and getpeername on a unix stream socket */
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "toad-hookdriver-%d", (int)getpid());
		socklen_t sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(sa.sun_path + 1));
		int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (bind(l, (void *)&sa, sl) != 0 || listen(l, 1) != 0 || connect(c, (void *)&sa, sl) != 0) {
			say("err %s", ename(errno));
			return;
		}
		struct sockaddr_storage ss;
		socklen_t al = sizeof ss;
		memset(&ss, 0, sizeof ss);
		int fd = accept(l, (void *)&ss, &al);
		socklen_t pl = sizeof ss;
		int r = getpeername(c, (void *)&ss, &pl);
		say("ok fd=%d accept-family=%d accept-len=%u getpeername=%d len=%u", fd, ss.ss_family, (unsigned)al, r,
		    (unsigned)pl);
	} else if (!strcmp(cmd, "fork")) {
		/* fork LFD CAP N: parent and child each accept N times */
		int lfd = atoi(a1), cap = atoi(a2), k = atoi(a3);
		pid_t pid = fork();
		if (pid == 0) {
			for (int i = 0; i < k; i++)
				do_accept("child ", lfd, cap, 1);
			exit(0);
		}
		for (int i = 0; i < k; i++)
			do_accept("parent ", lfd, cap, 1);
		int st = 0;
		waitpid(pid, &st, 0);
		say("ok forked status=%d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	} else if (!strcmp(cmd, "threads")) {
		/* threads LFD N PER CAP */
		int k = atoi(a2);
		struct job j = {atoi(a1), atoi(a3), atoi(a4)};
		pthread_t t[64];
		if (k > 64)
			k = 64;
		for (int i = 0; i < k; i++)
			pthread_create(&t[i], NULL, accept_job, &j);
		for (int i = 0; i < k; i++)
			pthread_join(t[i], NULL);
		say("ok threads");
	} else if (!strcmp(cmd, "ownfds")) {
		/* ownfds: the SOCK_SEQPACKET unix sockets open (the library's),
		 * and whether they close on exec */
		char out[512] = "ok";
		size_t o = 2;
		for (int fd = 0; fd < 1024; fd++) {
			int dom = 0, type = 0;
			socklen_t l = sizeof dom;
			if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) != 0 || dom != AF_UNIX)
				continue;
			l = sizeof type;
			if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) != 0 || type != SOCK_SEQPACKET)
				continue;
			int fl = fcntl(fd, F_GETFD);
			o += (size_t)snprintf(out + o, sizeof out - o, " fd=%d cloexec=%d", fd, (fl & FD_CLOEXEC) != 0);
			if (o >= sizeof out)
				break;
		}
		say("%s", out);
	} else if (!strcmp(cmd, "exit")) {
		exit(0);
	} else {
		say("err unknown-command %s", cmd);
	}
}

int main(void)
{
	char line[512];
	while (fgets(line, sizeof line, stdin) != NULL)
		run(line);
	return 0;
}
