package correlate

import (
	"sync"
	"sync/atomic"
)

// An entry lives in a slot of its shard's arena for its key family. Slots
// hold no pointers, so the garbage collector never scans them; a slot[key4]
// is 64 bytes, a slot[key6] 88.
type slot[K key4 | key6] struct {
	k     K
	flags uint8
	v     val
}

// val is the part of an entry shared by both key families: 48 bytes.
type val struct {
	client [16]byte // client[:4] when the client is IPv4
	first  int64    // FirstSeen, Unix nanoseconds
	stamp  int64    // closing: when it began; open: last segment seen (with IdleTimeout)
	prev   uint32   // ref of the previous entry in the entry's list
	next   uint32   // ref of the next entry in its list, or of the next free slot
	syn    uint32
	cport  uint16
	dkind  uint8
	dlen   uint8
}

// Slot flags.
const (
	fClosing     = 1 << iota
	fClient6     // the client address is IPv6
	fHasPort     // the dialect carried the client's port
	fHasSyn      // syn holds the client's initial sequence number
	fSynInferred // syn was inferred from the segment that brought the TOA
)

// A ref names a slot: bit 31 says which arena, the low bits are the slot
// index plus one, so that 0 means none.
const (
	ref6    = 1 << 31
	refSlot = ref6 - 1
)

// arena is a growable array of slots in fixed-size chunks, so that growing
// never copies or moves an entry. Freed slots are reused before new ones, so
// an arena never holds more slots than its shard's peak entry count.
type arena[K key4 | key6] struct {
	chunks [][]slot[K]
	shift  uint   // log2 of the chunk length
	used   uint32 // slots handed out so far
	free   uint32 // first free slot (index+1), linked through v.next
}

func (a *arena[K]) at(i uint32) *slot[K] {
	return &a.chunks[i>>a.shift][i&(1<<a.shift-1)]
}

func (a *arena[K]) alloc() uint32 {
	if a.free != 0 {
		i := a.free - 1
		a.free = a.at(i).v.next
		return i
	}
	i := a.used
	if int(i>>a.shift) == len(a.chunks) {
		a.chunks = append(a.chunks, make([]slot[K], 1<<a.shift))
	}
	a.used++
	return i
}

// release frees slot i. Its content is left as it was: a free slot is only
// read again once alloc's caller has set all of it.
func (a *arena[K]) release(i uint32) {
	a.at(i).v.next = a.free
	a.free = i + 1
}

// list is a doubly linked list of entries threaded through val.prev and
// val.next, oldest first.
type list struct{ head, tail uint32 }

// counters are a shard's event counters, written under its lock.
type counters struct {
	connsWithTOA    uint64
	connsWithoutTOA uint64
	synsWithoutTOA  uint64
	conflicts       uint64
	multipleTOA     uint64
	reused          uint64
	evictions       uint64
	evictionsOpen   uint64
	expired         uint64
	idleExpired     uint64
}

// lookupCounters are counted by lookups, which hold only the read lock.
type lookupCounters struct {
	ok, notFound, timedOut, canceled, stale atomic.Uint64
}

// recentLen is how many keys a shard remembers having counted as closed
// without a TOA.
const recentLen = 256

// shard is one lock's worth of the table. Its index is an open-addressing
// hash table with linear probing and backward-shift deletion; each bucket
// holds the key's 32-bit hash above the entry's ref, 0 when empty. The
// index is allocated once, sized for the shard's hard limit at a load
// factor of at most 0.8, so it never grows.
type shard struct {
	mu       sync.RWMutex
	idx      []uint64
	a4       arena[key4]
	a6       arena[key6]
	open     list // open entries, oldest first
	closing  list // closing entries, in the order they began closing
	n        int  // entries
	nClosing int
	nClient6 int
	hard     int // entries this shard never exceeds, whatever the table's fill
	c        counters
	look     lookupCounters
	waiters  map[Key][]*waiter
	recent   [recentLen]uint64
	log      *shardLog // changes for a Recorder; nil when not recording
	_        [64]byte  // keep the next shard's lock off this shard's last cache line
}

// init readies a zero shard to hold up to hard entries. Arena chunks are
// of 1024 slots, or fewer for a small shard.
func (s *shard) init(hard int) {
	shift := uint(10)
	for shift > 4 && 1<<(shift-1) >= hard {
		shift--
	}
	s.idx = make([]uint64, hard+hard/4+1)
	s.a4.shift, s.a6.shift = shift, shift
	s.hard = hard
}

// home is the bucket where a hash's probe sequence starts.
func home(h uint32, n int) int { return int(uint64(h) * uint64(n) >> 32) }

// hdr returns the shared part and the flags of the entry ref names.
func (s *shard) hdr(ref uint32) (*val, *uint8) {
	i := ref&refSlot - 1
	if ref&ref6 != 0 {
		sl := s.a6.at(i)
		return &sl.v, &sl.flags
	}
	sl := s.a4.at(i)
	return &sl.v, &sl.flags
}

func (s *shard) val(ref uint32) *val {
	v, _ := s.hdr(ref)
	return v
}

// find returns the ref of k's entry, or 0.
func (s *shard) find(k *Key, h uint32) uint32 {
	if k.fam == fam6 {
		return findIn(s.idx, &s.a6, ref6, h, &k.k6)
	}
	return findIn(s.idx, &s.a4, 0, h, &k.k4)
}

func findIn[K key4 | key6](idx []uint64, a *arena[K], fam, h uint32, k *K) uint32 {
	n := len(idx)
	i := home(h, n)
	for {
		e := idx[i]
		if e == 0 {
			return 0
		}
		if ref := uint32(e); uint32(e>>32) == h && ref&ref6 == fam && a.at(ref&refSlot-1).k == *k {
			return ref
		}
		if i++; i == n {
			i = 0
		}
	}
}

// index adds ref, whose key hashes to h, to the index.
func (s *shard) index(h, ref uint32) {
	n := len(s.idx)
	i := home(h, n)
	for s.idx[i] != 0 {
		if i++; i == n {
			i = 0
		}
	}
	s.idx[i] = uint64(h)<<32 | uint64(ref)
}

// unindex removes ref, whose key hashes to h, from the index, shifting the
// rest of its cluster back so that no probe sequence is broken.
func (s *shard) unindex(h, ref uint32) {
	n := len(s.idx)
	want := uint64(h)<<32 | uint64(ref)
	j := home(h, n)
	for s.idx[j] != want {
		if j++; j == n {
			j = 0
		}
	}
	i := j
	for {
		if i++; i == n {
			i = 0
		}
		e := s.idx[i]
		if e == 0 {
			break
		}
		// e may move back to the hole at j unless its home lies
		// cyclically in (j, i].
		k := home(uint32(e>>32), n)
		if j <= i {
			if j < k && k <= i {
				continue
			}
		} else if j < k || k <= i {
			continue
		}
		s.idx[j] = e
		j = i
	}
	s.idx[j] = 0
}

func (s *shard) push(l *list, ref uint32) {
	v := s.val(ref)
	v.prev, v.next = l.tail, 0
	if l.tail != 0 {
		s.val(l.tail).next = ref
	} else {
		l.head = ref
	}
	l.tail = ref
}

func (s *shard) unlink(l *list, ref uint32) {
	v := s.val(ref)
	if v.prev != 0 {
		s.val(v.prev).next = v.next
	} else {
		l.head = v.next
	}
	if v.next != 0 {
		s.val(v.next).prev = v.prev
	} else {
		l.tail = v.prev
	}
	v.prev, v.next = 0, 0
}

// alloc takes a slot for k, indexes it and returns its ref; the caller
// fills it in and links it into a list.
func (s *shard) alloc(k *Key, h uint32) uint32 {
	var ref uint32
	if k.fam == fam6 {
		i := s.a6.alloc()
		s.a6.at(i).k = k.k6
		ref = ref6 | (i + 1)
	} else {
		i := s.a4.alloc()
		s.a4.at(i).k = k.k4
		ref = i + 1
	}
	s.index(h, ref)
	s.n++
	return ref
}

// keyOf returns the key of ref's entry.
func (s *shard) keyOf(ref uint32) (k Key) {
	if ref&ref6 != 0 {
		k.fam, k.k6 = fam6, s.a6.at(ref&refSlot-1).k
	} else {
		k.fam, k.k4 = fam4, s.a4.at(ref&refSlot-1).k
	}
	return k
}

// waiter is a lookup waiting for its key; ch is closed when the key is
// inserted or the table closes.
type waiter struct{ ch chan struct{} }

func (s *shard) addWaiter(k Key, w *waiter) {
	if s.waiters == nil {
		s.waiters = make(map[Key][]*waiter)
	}
	s.waiters[k] = append(s.waiters[k], w)
}

func (s *shard) removeWaiter(k Key, w *waiter) {
	ws := s.waiters[k]
	for i, x := range ws {
		if x == w {
			ws[i] = ws[len(ws)-1]
			ws[len(ws)-1] = nil
			ws = ws[:len(ws)-1]
			break
		}
	}
	if len(ws) > 0 {
		s.waiters[k] = ws
		return
	}
	delete(s.waiters, k)
	if len(s.waiters) == 0 {
		s.waiters = nil // a burst of waiters leaves no map behind
	}
}

// wake releases the waiters for k.
func (s *shard) wake(k Key) {
	ws, ok := s.waiters[k]
	if !ok {
		return
	}
	for _, w := range ws {
		close(w.ch)
	}
	delete(s.waiters, k)
	if len(s.waiters) == 0 {
		s.waiters = nil
	}
}

// countClosedWithoutTOA records that a connection with no entry ended, and
// reports whether it had not been counted already.
func (s *shard) countClosedWithoutTOA(h uint64) bool {
	h |= 1
	i := h >> 32 & (recentLen - 1)
	if s.recent[i] == h {
		return false
	}
	s.recent[i] = h
	return true
}

// forgetClosed forgets a key counted as closed without a TOA, when a new
// connection starts on it.
func (s *shard) forgetClosed(h uint64) {
	h |= 1
	if i := h >> 32 & (recentLen - 1); s.recent[i] == h {
		s.recent[i] = 0
	}
}
