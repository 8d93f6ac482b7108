package preload

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/toad-project/toad/correlate"
)

// The heartbeat: the library stops trusting a table whose heartbeat is
// older than a second (toad crashed or froze, its entries may be stale)
// and asks over the socket. It is renewed with every change written, not
// by a timer, so that an idle toad sleeps: the connection a
// library looks up after an accept was just published, with a fresh
// heartbeat, and older ones cost a round trip once the table is quiet.

// Source is what a SharedTable mirrors: *correlate.Table is one.
type Source interface {
	Follow(fn func(*correlate.Event)) *correlate.Subscription
	Range(fn func(correlate.Entry) bool)
}

// SharedTable mirrors the open connections of a table into shared memory
// that the libraries map read-only, so that a lookup of a connection toad
// already knows costs them no round trip. It holds open entries only: a
// closing connection, whose 4-tuple a proxy may be reusing, and one not
// seen yet, are asked about over the socket, where the table's rules
// (the barrier, the wait) apply. It is a memfd, sealed so that its size
// never changes and nobody but toad can write it, passed to each library
// in its WELCOME.
//
// It follows the table's events as they happen, on the goroutine that
// changes the table (the capture's reader): no event is missed, and none
// costs a wakeup of another goroutine.
type SharedTable struct {
	src   Source
	fd    int
	mem   []byte
	slots uint32
	seed0 uint64
	seed1 uint64

	sub     *correlate.Subscription
	closeMu sync.Once

	// mu serialises the writers: events come from every goroutine that
	// changes the table, each under its shard's lock (taken before mu).
	mu       sync.Mutex
	building bool              // the first build runs: events wait in queue
	queue    []correlate.Event // in the order they happened

	// fdMu keeps fd open while a WELCOME passes it: a closed descriptor's
	// number may be another file's by then.
	fdMu   sync.RWMutex
	closed bool

	entries, published, removed, full atomic.Uint64

	// For tests, under mu: noBeat stops the heartbeat; applied is called
	// after each event is written.
	noBeat  bool
	applied func()
}

// NewSharedTable makes a shared table of slots entries (0 means
// DefaultSharedSlots; a power of two, at least BucketSlots) mirroring
// src, fills it with src's open entries and follows src's events. Close
// stops it.
func NewSharedTable(src Source, slots int) (*SharedTable, error) {
	if slots == 0 {
		slots = DefaultSharedSlots
	}
	if slots < BucketSlots || slots&(slots-1) != 0 || sharedHeader+slots*SlotSize > maxSharedSize {
		return nil, fmt.Errorf("preload: shared table of %d slots: want a power of two from %d to %d", slots, BucketSlots, (maxSharedSize-sharedHeader)/SlotSize)
	}
	size := sharedHeader + slots*SlotSize
	fd, err := unix.MemfdCreate("toad-preload", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("preload: shared table: memfd_create: %w", err)
	}
	fail := func(what string, err error) (*SharedTable, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("preload: shared table: %s: %w", what, err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		return fail("size", err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail("mmap", err)
	}
	// After this mapping, nobody may map it writable (5.1 and later), nor
	// change its size: a library's mapping never faults.
	seals := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_FUTURE_WRITE | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); errors.Is(err, unix.EINVAL) {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals&^unix.F_SEAL_FUTURE_WRITE)
		if err != nil {
			unix.Munmap(mem)
			return fail("seal", err)
		}
	} else if err != nil {
		unix.Munmap(mem)
		return fail("seal", err)
	}
	s := &SharedTable{
		src: src, fd: fd, mem: mem, slots: uint32(slots),
		seed0: rand.Uint64(), seed1: rand.Uint64(), building: true,
	}
	ne := binary.NativeEndian
	ne.PutUint32(mem[hdrMagic:], sharedMagic)
	ne.PutUint32(mem[hdrLayout:], sharedLayout)
	ne.PutUint32(mem[hdrSlots:], uint32(slots))
	ne.PutUint32(mem[hdrBucket:], BucketSlots)
	ne.PutUint64(mem[hdrSeed0:], s.seed0)
	ne.PutUint64(mem[hdrSeed1:], s.seed1)
	s.sub = src.Follow(s.follow)
	s.build()
	atomic.StoreUint32(s.u32(hdrState), stateLive)
	return s, nil
}

// withRights calls send with the control message that passes the
// table's descriptor, which stays open meanwhile; after Close it calls
// nothing and returns false.
func (s *SharedTable) withRights(send func(oob []byte)) bool {
	s.fdMu.RLock()
	defer s.fdMu.RUnlock()
	if s.closed {
		return false
	}
	send(unix.UnixRights(s.fd))
	return true
}

// Size is the shared table's size in bytes.
func (s *SharedTable) Size() int { return len(s.mem) }

func (s *SharedTable) u32(off int) *uint32 { return (*uint32)(unsafe.Pointer(&s.mem[off])) }
func (s *SharedTable) u64(off int) *uint64 { return (*uint64)(unsafe.Pointer(&s.mem[off])) }

// follow writes ev, or queues it while the first build runs.
func (s *SharedTable) follow(ev *correlate.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.building {
		s.queue = append(s.queue, *ev)
		return
	}
	s.apply(ev)
	s.heartbeat()
	if s.applied != nil {
		s.applied()
	}
}

func (s *SharedTable) heartbeat() {
	if s.noBeat {
		return
	}
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	atomic.StoreUint64(s.u64(hdrHeartbeat), uint64(ts.Nano()))
}

func (s *SharedTable) apply(ev *correlate.Event) {
	k := keyOf(ev.Entry.Key.Peer(), ev.Entry.Key.Local())
	if ev.Type == correlate.EventOpen && ev.Entry.State == correlate.StateOpen {
		s.put(&k, &ev.Entry)
	} else {
		s.del(&k)
	}
}

// build fills the table with the source's open entries, then writes the
// events that came meanwhile, in order: an entry the walk found open and
// an event then closed is removed, and one the walk saw after its event
// is written twice, the same.
func (s *SharedTable) build() {
	s.src.Range(func(e correlate.Entry) bool {
		if e.State == correlate.StateOpen {
			k := keyOf(e.Key.Peer(), e.Key.Local())
			s.mu.Lock()
			s.put(&k, &e)
			s.mu.Unlock()
		}
		return true
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.queue {
		s.apply(&s.queue[i])
	}
	s.queue, s.building = nil, false
	s.heartbeat()
}

func (s *SharedTable) slotOff(i uint32) int { return sharedHeader + int(i)*SlotSize }

// find returns the slot holding k in its bucket, or a free one (found
// false), or -1 when the bucket is full.
func (s *SharedTable) find(k *sharedKey) (off int, found bool) {
	h := sharedHash(k, s.seed0, s.seed1)
	first := uint32(h) & (s.slots - 1) &^ (BucketSlots - 1)
	free := -1
	for i := range uint32(BucketSlots) {
		off := s.slotOff(first + i)
		if atomic.LoadUint32(s.u32(off+slotFlags))&slotUsed == 0 {
			if free < 0 {
				free = off
			}
			continue
		}
		if s.holds(off, k) {
			return off, true
		}
	}
	return free, false
}

func (s *SharedTable) holds(off int, k *sharedKey) bool {
	m := s.mem[off:]
	ne := binary.NativeEndian
	ports := ne.Uint64(m[slotPorts:])
	return [16]byte(m[slotPeer:slotPeer+16]) == k.peer && [16]byte(m[slotLocal:slotLocal+16]) == k.local &&
		uint16(ports) == k.pport && uint16(ports>>16) == k.lport
}

// put publishes e under k, under the slot's sequence lock: the seq is odd
// while the slot changes. Every store is atomic, so that they reach other
// processes in program order.
func (s *SharedTable) put(k *sharedKey, e *correlate.Entry) {
	off, found := s.find(k)
	if off < 0 {
		s.full.Add(1)
		return
	}
	c := &e.Client
	flags := uint32(slotUsed)
	addr := c.Addr
	if addr.Is4In6() {
		addr = addr.Unmap()
	}
	if !addr.Is4() {
		flags |= slotClient6
	}
	if c.HasPort {
		flags |= slotHasPort
	}
	flags |= uint32(c.Dialect.Kind)<<8 | uint32(c.Dialect.Len)<<16
	var w [slotWords]uint64
	var b [SlotSize]byte
	copy(b[slotPeer:], k.peer[:])
	copy(b[slotLocal:], k.local[:])
	ne := binary.NativeEndian
	ne.PutUint16(b[slotPorts:], k.pport)
	ne.PutUint16(b[slotPorts+2:], k.lport)
	if c.HasPort {
		ne.PutUint16(b[slotPorts+4:], c.Port)
	}
	a16 := addr.As16()
	copy(b[slotClient:], a16[:])
	for i := 1; i < slotWords; i++ {
		w[i] = ne.Uint64(b[i*8:])
	}
	seq := s.u32(off + slotSeq)
	atomic.StoreUint32(seq, atomic.LoadUint32(seq)+1)
	atomic.StoreUint32(s.u32(off+slotFlags), flags)
	for i := 1; i < slotWords; i++ {
		atomic.StoreUint64(s.u64(off+i*8), w[i])
	}
	atomic.StoreUint32(seq, atomic.LoadUint32(seq)+1)
	if !found {
		s.entries.Add(1)
	}
	s.published.Add(1)
}

func (s *SharedTable) del(k *sharedKey) {
	if off, found := s.find(k); found {
		s.clear(off)
		s.entries.Add(^uint64(0))
		s.removed.Add(1)
	}
}

func (s *SharedTable) clear(off int) {
	seq := s.u32(off + slotSeq)
	atomic.StoreUint32(seq, atomic.LoadUint32(seq)+1)
	atomic.StoreUint32(s.u32(off+slotFlags), 0)
	atomic.StoreUint32(seq, atomic.LoadUint32(seq)+1)
}

// SharedStats are a SharedTable's counters.
type SharedStats struct {
	Entries   uint64 // connections published now
	Published uint64 // entries written
	Removed   uint64 // entries removed as their connections closed
	Full      uint64 // entries not published because their bucket was full
}

// Stats returns the table's counters.
func (s *SharedTable) Stats() SharedStats {
	return SharedStats{
		Entries: s.entries.Load(), Published: s.published.Load(), Removed: s.removed.Load(),
		Full: s.full.Load(),
	}
}

// Close stops following the table, marks it dead (the libraries stop
// reading it) and frees its memory, though libraries may still map it:
// they then read empty slots. It is idempotent.
func (s *SharedTable) Close() error {
	s.closeMu.Do(func() {
		s.sub.Close()
		atomic.StoreUint32(s.u32(hdrState), stateDead)
		unix.Fallocate(s.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, sharedHeader, int64(len(s.mem)-sharedHeader))
		unix.Munmap(s.mem)
		s.fdMu.Lock()
		s.closed = true
		unix.Close(s.fd)
		s.fdMu.Unlock()
	})
	return nil
}
