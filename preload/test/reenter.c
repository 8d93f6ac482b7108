/*
 * reenter is a second preloaded library, loaded before libtoad_preload,
 * whose getsockname calls getpeername on the same descriptor, as an
 * interposer of its own might. libtoad_preload calls getsockname while it
 * answers getpeername: without its guard against re-entry, this would
 * recurse until the stack ran out.
 */
#include <dlfcn.h>
#include <stddef.h>
#include <sys/socket.h>

__attribute__((visibility("default"))) int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
{
	static int (*next)(int, struct sockaddr *, socklen_t *);
	if (next == NULL)
		next = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "getsockname");
	struct sockaddr_storage ss;
	socklen_t l = sizeof ss;
	getpeername(fd, (struct sockaddr *)&ss, &l);
	return next(fd, addr, len);
}
