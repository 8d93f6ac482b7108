/*
 * acceptbench measures what accept costs a server: N times, a client
 * connects over loopback, the server accepts with an address buffer, and
 * the client resets the connection (so that no port lingers in
 * TIME_WAIT). It prints the elapsed nanoseconds. Run with and without the
 * preload library, it shows what the library adds to each connection.
 *
 *   acceptbench N [ADDR]
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: acceptbench N [ADDR]\n");
		return 2;
	}
	long n = atol(argv[1]);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	inet_pton(AF_INET, argc > 2 ? argv[2] : "127.0.0.1", &sa.sin_addr);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	socklen_t sl = sizeof sa;
	if (bind(l, (void *)&sa, sl) != 0 || listen(l, 128) != 0 || getsockname(l, (void *)&sa, &sl) != 0) {
		perror("listen");
		return 1;
	}
	printf("port %u\n", ntohs(sa.sin_port));
	fflush(stdout);
	/* Wait for the go-ahead: the caller fills toad's table first. */
	char go[8];
	if (fgets(go, sizeof go, stdin) == NULL)
		return 1;
	struct linger lg = {1, 0};
	long long t0 = now();
	for (long i = 0; i < n; i++) {
		int c = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(c, (void *)&sa, sizeof sa) != 0) {
			perror("connect");
			return 1;
		}
		struct sockaddr_storage peer;
		socklen_t pl = sizeof peer;
		int s = accept(l, (void *)&peer, &pl);
		if (s < 0) {
			perror("accept");
			return 1;
		}
		setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		close(c);
		close(s);
	}
	printf("ns %lld\n", now() - t0);
	return 0;
}
