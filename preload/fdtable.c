/*
 * What the library knows of each descriptor it saw accepted from a
 * trusted peer: the socket's identity, the kernel's peer and toad's
 * answer. Indexed by descriptor number, in chunks mapped on first use
 * (never freed: a descriptor number is reused). Each slot has its own
 * spin lock, held only to copy the slot in or out.
 *
 * The program may close a descriptor and get its number back for another
 * socket through paths the library does not see (close_range, dup2,
 * fclose, a raw syscall), so every read checks the slot against the
 * socket the descriptor refers to now.
 */
#include <sched.h>
#include <string.h>
#include <sys/mman.h>

#include "preload.h"

#define CHUNK_BITS 10
#define CHUNK_SLOTS (1 << CHUNK_BITS)
#define MAX_CHUNKS 4096 /* descriptors below 4M are tracked; the rest pass through */

struct slot {
	uint32_t lock;
	struct slot_data d;
};

static struct slot *chunks[MAX_CHUNKS];

static struct slot *slot_at(int fd, int create)
{
	if (fd < 0 || (unsigned)fd >= (unsigned)MAX_CHUNKS << CHUNK_BITS)
		return NULL;
	struct slot **cp = &chunks[fd >> CHUNK_BITS];
	struct slot *c = __atomic_load_n(cp, __ATOMIC_ACQUIRE);
	if (c == NULL && create) {
		/* mmap, not malloc: accept is async-signal-safe, and the
		 * program's allocator may be another preloaded library. */
		void *m = mmap(NULL, CHUNK_SLOTS * sizeof(struct slot), PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			return NULL;
		struct slot *want = NULL;
		if (__atomic_compare_exchange_n(cp, &want, (struct slot *)m, 0, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			c = m;
		else {
			munmap(m, CHUNK_SLOTS * sizeof(struct slot));
			c = want;
		}
	}
	return c == NULL ? NULL : &c[fd & (CHUNK_SLOTS - 1)];
}

static void lock(struct slot *s)
{
	for (int spins = 0; __atomic_exchange_n(&s->lock, 1, __ATOMIC_ACQUIRE); spins++)
		if (spins > 100)
			sched_yield();
}

static void unlock(struct slot *s)
{
	__atomic_store_n(&s->lock, 0, __ATOMIC_RELEASE);
}

/* slot_maybe_used is the hooks' branch: false for a descriptor the
 * library never kept anything for, so that its calls pass straight on. */
int slot_maybe_used(int fd)
{
	struct slot *s = slot_at(fd, 0);
	return s != NULL && __atomic_load_n(&s->d.state, __ATOMIC_RELAXED) != SLOT_EMPTY;
}

void slot_store(int fd, const struct slot_data *d)
{
	struct slot *s = slot_at(fd, 1);
	if (s == NULL)
		return;
	lock(s);
	s->d = *d;
	unlock(s);
}

/* slot_load copies fd's slot into d and says whether it holds anything. */
int slot_load(int fd, struct slot_data *d)
{
	struct slot *s = slot_at(fd, 0);
	if (s == NULL)
		return 0;
	lock(s);
	*d = s->d;
	unlock(s);
	return d->state != SLOT_EMPTY;
}

/*
 * slot_update stores d in fd's slot if the slot still describes the
 * socket ident and is still pending; otherwise it copies what the slot
 * holds for that socket into d (another thread answered first). It
 * returns 0 when the slot describes another socket now.
 */
int slot_update(int fd, uint64_t ident, struct slot_data *d)
{
	struct slot *s = slot_at(fd, 0);
	if (s == NULL)
		return 0;
	int ok = 1;
	lock(s);
	if (s->d.state == SLOT_EMPTY || s->d.ident != ident)
		ok = 0;
	else if (s->d.state == SLOT_PENDING)
		s->d = *d;
	else
		*d = s->d;
	unlock(s);
	return ok;
}

/* slot_forget empties fd's slot if it still describes the socket ident. */
void slot_forget(int fd, uint64_t ident)
{
	struct slot *s = slot_at(fd, 0);
	if (s == NULL)
		return;
	lock(s);
	if (s->d.ident == ident)
		memset(&s->d, 0, sizeof s->d);
	unlock(s);
}

/* In the child of fork: a slot another thread of the parent was writing
 * is emptied and unlocked. */
void fdtable_after_fork(void)
{
	for (int i = 0; i < MAX_CHUNKS; i++) {
		struct slot *c = chunks[i];
		if (c == NULL)
			continue;
		for (int j = 0; j < CHUNK_SLOTS; j++)
			if (c[j].lock) {
				memset(&c[j].d, 0, sizeof c[j].d);
				c[j].lock = 0;
			}
	}
}
