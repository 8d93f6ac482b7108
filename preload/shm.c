/*
 * The shared table: toad's open connections, in a memfd toad passes with
 * its WELCOME and the library maps read-only, so that a connection toad
 * already knows costs no round trip. Every slot is under a sequence lock
 * (odd while toad writes it); a read that races a write, a miss, a table
 * toad marked dead or whose heartbeat stopped all send the lookup to the
 * socket instead. Layout: PROTOCOL.md, "The shared table".
 *
 * When toad restarts, the new table replaces the old, which is unmapped
 * once no thread reads it (each mapping counts its readers).
 */
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "preload.h"

#define SHM_MAGIC 0x48534454u
#define SHM_LAYOUT 1
#define SHM_HEADER 64
#define SLOT_SIZE 64
#define BUCKET 8
#define STATE_LIVE 1
#define SLOT_USED 1u
#define SLOT_CLIENT6 2u
#define SLOT_HAS_PORT 4u
/* A table whose heartbeat is older than this is not believed: toad
 * crashed or froze, and its entries may be stale. */
#define HEARTBEAT_MAX_AGE_NS (1000 * 1000000ull)

struct shm_map {
	const uint8_t *base;
	size_t len;
	uint32_t slots;
	uint64_t seed0, seed1;
	dev_t dev;
	ino_t ino;
	uint32_t readers;
};

/* Two descriptors, used in turn: the one not current is unmapped before
 * it is reused. */
static struct shm_map maps[2];
static struct shm_map *current;
static pthread_mutex_t adopt_mu = PTHREAD_MUTEX_INITIALIZER;

static uint32_t ld32(const uint8_t *p)
{
	return __atomic_load_n((const uint32_t *)p, __ATOMIC_RELAXED);
}

static uint64_t ld64(const uint8_t *p)
{
	return __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED);
}

/* shm_adopt maps the table toad sent (fd, size bytes) unless it is the
 * one already mapped; fd is closed either way. */
void shm_adopt(int fd, uint64_t size)
{
	struct stat st;
	if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != size || size < SHM_HEADER) {
		close(fd);
		return;
	}
	pthread_mutex_lock(&adopt_mu);
	struct shm_map *cur = __atomic_load_n(&current, __ATOMIC_SEQ_CST);
	if (cur != NULL && cur->dev == st.st_dev && cur->ino == st.st_ino) {
		pthread_mutex_unlock(&adopt_mu);
		close(fd);
		return;
	}
	void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED) {
		pthread_mutex_unlock(&adopt_mu);
		dbg("map the shared table: %m");
		return;
	}
	const uint8_t *b = m;
	uint32_t slots = ld32(b + 8);
	if (ld32(b) != SHM_MAGIC || ld32(b + 4) != SHM_LAYOUT || ld32(b + 12) != BUCKET || slots < BUCKET ||
	    (slots & (slots - 1)) != 0 || SHM_HEADER + (uint64_t)slots * SLOT_SIZE > size) {
		dbg("the shared table's layout is not one this library reads: asking over the socket");
		munmap(m, (size_t)size);
		pthread_mutex_unlock(&adopt_mu);
		return;
	}
	struct shm_map *n = cur == &maps[0] ? &maps[1] : &maps[0];
	*n = (struct shm_map){.base = b, .len = (size_t)size, .slots = slots, .seed0 = ld64(b + 16),
			      .seed1 = ld64(b + 24), .dev = st.st_dev, .ino = st.st_ino};
	__atomic_store_n(&current, n, __ATOMIC_SEQ_CST);
	if (cur != NULL) {
		/* Readers that took the old table before the switch finish. */
		while (__atomic_load_n(&cur->readers, __ATOMIC_SEQ_CST) != 0)
			sched_yield();
		munmap((void *)cur->base, cur->len);
		memset(cur, 0, sizeof *cur);
	}
	pthread_mutex_unlock(&adopt_mu);
	dbg("mapped the shared table: %u slots", slots);
}

static struct shm_map *acquire(void)
{
	for (;;) {
		struct shm_map *m = __atomic_load_n(&current, __ATOMIC_SEQ_CST);
		if (m == NULL)
			return NULL;
		__atomic_add_fetch(&m->readers, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&current, __ATOMIC_SEQ_CST) == m)
			return m;
		__atomic_sub_fetch(&m->readers, 1, __ATOMIC_SEQ_CST);
	}
}

static void release(struct shm_map *m)
{
	__atomic_sub_fetch(&m->readers, 1, __ATOMIC_SEQ_CST);
}

static int live(const struct shm_map *m, uint64_t now)
{
	if (ld32(m->base + 32) != STATE_LIVE)
		return 0;
	uint64_t beat = __atomic_load_n((const uint64_t *)(m->base + 40), __ATOMIC_ACQUIRE);
	return beat >= now || now - beat < HEARTBEAT_MAX_AGE_NS;
}

/* shm_usable says whether a live shared table is mapped. */
int shm_usable(uint64_t now)
{
	struct shm_map *m = acquire();
	if (m == NULL)
		return 0;
	int ok = live(m, now);
	release(m);
	return ok;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static uint64_t word(const uint8_t *p)
{
	uint64_t w;
	memcpy(&w, p, 8);
	return w;
}

/* read_slot copies slot s into out if it holds the key, under its
 * sequence lock: 1 found, 0 not this key, -1 being written. */
static int read_slot(const uint8_t *s, const uint8_t key[36], uint16_t pport, uint16_t lport, uint8_t out[SLOT_SIZE])
{
	uint32_t seq = __atomic_load_n((const uint32_t *)s, __ATOMIC_ACQUIRE);
	if (seq & 1)
		return -1;
	uint64_t w[SLOT_SIZE / 8];
	for (int i = 0; i < SLOT_SIZE / 8; i++)
		w[i] = ld64(s + 8 * i);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	if (__atomic_load_n((const uint32_t *)s, __ATOMIC_RELAXED) != seq)
		return -1;
	memcpy(out, w, SLOT_SIZE);
	uint16_t ports[2];
	memcpy(ports, out + 40, 4);
	if (!(out[4] & SLOT_USED) || memcmp(out + 8, key, 16) != 0 || memcmp(out + 24, key + 16, 16) != 0 ||
	    ports[0] != pport || ports[1] != lport)
		return 0;
	return 1;
}

/* shm_lookup answers from the shared table: 1 with the client in out, 0
 * when the table cannot say (no table, not live, not there, busy). */
int shm_lookup(const struct endpoint *peer, const struct endpoint *local, struct answer *out, uint64_t now)
{
	struct shm_map *m = acquire();
	if (m == NULL)
		return 0;
	int found = 0;
	if (!live(m, now))
		goto done;
	uint8_t key[36];
	memcpy(key, peer->addr, 16);
	memcpy(key + 16, local->addr, 16);
	uint64_t h = m->seed0;
	h = mix(h ^ word(key));
	h = mix(h ^ word(key + 8));
	h = mix(h ^ word(key + 16));
	h = mix(h ^ word(key + 24));
	h = mix(h ^ ((uint64_t)peer->port << 16 | local->port) ^ m->seed1);
	uint32_t first = (uint32_t)h & (m->slots - 1) & ~(uint32_t)(BUCKET - 1);
	for (uint32_t i = 0; i < BUCKET && !found; i++) {
		const uint8_t *s = m->base + SHM_HEADER + (size_t)(first + i) * SLOT_SIZE;
		uint8_t slot[SLOT_SIZE];
		int r;
		for (int tries = 0; (r = read_slot(s, key, peer->port, local->port, slot)) < 0 && tries < 4; tries++)
			;
		if (r <= 0)
			continue;
		memset(out, 0, sizeof *out);
		out->outcome = OUT_FOUND;
		out->family = (slot[4] & SLOT_CLIENT6) ? 6 : 4;
		out->has_port = (slot[4] & SLOT_HAS_PORT) != 0;
		memcpy(out->addr, slot + 48, 16);
		if (out->has_port)
			memcpy(&out->port, slot + 44, 2);
		found = 1;
	}
done:
	release(m);
	return found;
}

/* In the child of fork: counts of readers that were other threads of the
 * parent are void, and so is the lock. */
void shm_after_fork(void)
{
	pthread_mutex_init(&adopt_mu, NULL);
	for (int i = 0; i < 2; i++)
		maps[i].readers = 0;
}
