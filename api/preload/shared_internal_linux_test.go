package preload

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/toa"
)

// newTable makes a table, closed when the test ends.
func newTable(t *testing.T) *correlate.Table {
	t.Helper()
	table, err := correlate.New(correlate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { table.Close() })
	return table
}

// newSharedTable makes a shared table of slots over table, closed when
// the test ends if the test has not closed it.
func newSharedTable(t *testing.T, table *correlate.Table, slots int) *SharedTable {
	t.Helper()
	s, err := NewSharedTable(table, slots)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// read looks k up in the shared memory as the library does: the bucket
// the hash names, each slot under its sequence lock.
func read(t *testing.T, mem []byte, peer, local netip.AddrPort) (toa.Client, bool) {
	t.Helper()
	ne := binary.NativeEndian
	if ne.Uint32(mem[hdrMagic:]) != sharedMagic || ne.Uint32(mem[hdrBucket:]) != BucketSlots {
		t.Fatalf("header % x", mem[:16])
	}
	slots := ne.Uint32(mem[hdrSlots:])
	k := keyOf(peer, local)
	h := sharedHash(&k, ne.Uint64(mem[hdrSeed0:]), ne.Uint64(mem[hdrSeed1:]))
	first := uint32(h) & (slots - 1) &^ (BucketSlots - 1)
	for i := range uint32(BucketSlots) {
		s := mem[sharedHeader+int(first+i)*SlotSize:][:SlotSize]
		if ne.Uint32(s[slotSeq:])&1 != 0 {
			t.Fatal("a slot is left mid-write")
		}
		flags := s[slotFlags]
		if flags&slotUsed == 0 || [16]byte(s[slotPeer:slotPeer+16]) != k.peer || [16]byte(s[slotLocal:slotLocal+16]) != k.local ||
			ne.Uint16(s[slotPorts:]) != k.pport || ne.Uint16(s[slotPorts+2:]) != k.lport {
			continue
		}
		c := toa.Client{Dialect: toa.Dialect{Kind: s[slotFlags+1], Len: s[slotFlags+2]}, HasPort: flags&slotHasPort != 0}
		c.Addr = netip.AddrFrom16([16]byte(s[slotClient : slotClient+16]))
		if flags&slotClient6 == 0 {
			c.Addr = c.Addr.Unmap()
		}
		if c.HasPort {
			c.Port = ne.Uint16(s[slotPorts+4:])
		}
		return c, true
	}
	return toa.Client{}, false
}

var (
	tProxy  = netip.MustParseAddrPort("198.51.100.10:40001")
	tOrigin = netip.MustParseAddrPort("192.0.2.20:8080")
	tClient = toa.Client{Dialect: toa.Kind254V4, Addr: netip.MustParseAddr("203.0.113.7"), Port: 51234, HasPort: true}
)

func syn(table *correlate.Table, peer, local netip.AddrPort, c toa.Client, seq uint32) {
	table.Observe(&decode.Record{Time: time.Now(), Peer: peer, Local: local, Flags: decode.SYN, Seq: seq, TOA: c, TOACount: 1})
}

// sync runs fn on the writer, after the events sent before it.
func (s *SharedTable) sync(t *testing.T, events int, fn func()) {
	t.Helper()
	done := make(chan struct{})
	var n atomic.Int64
	s.OnApplied(func() {
		if n.Add(1) == int64(events) {
			close(done)
		}
	})
	fn()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the writer did not write the events")
	}
}

func TestSharedTable(t *testing.T) {
	table := newTable(t)
	syn(table, tProxy, tOrigin, tClient, 1) // before the shared table: the first build has it
	s := newSharedTable(t, table, 64)
	if c, ok := read(t, s.mem, tProxy, tOrigin); !ok || c != tClient {
		t.Fatalf("entry of the first build: %+v %v, want %+v", c, ok, tClient)
	}
	// An IPv6 client, on IPv4-mapped keys as a dual-stack socket sees them.
	other := netip.MustParseAddrPort("198.51.100.10:40002")
	c6 := toa.Client{Dialect: toa.Kind254V6, Addr: netip.MustParseAddr("2001:db8::7"), Port: 1, HasPort: true}
	s.sync(t, 1, func() { syn(table, other, tOrigin, c6, 1) })
	mapped := func(ap netip.AddrPort) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())
	}
	if c, ok := read(t, s.mem, mapped(other), mapped(tOrigin)); !ok || c != c6 {
		t.Errorf("IPv6 client: %+v %v, want %+v", c, ok, c6)
	}
	// A closing connection leaves the table.
	s.sync(t, 1, func() {
		table.Observe(&decode.Record{Time: time.Now(), Peer: other, Local: tOrigin, Flags: decode.RST})
	})
	if _, ok := read(t, s.mem, other, tOrigin); ok {
		t.Error("a closing connection is still in the shared table")
	}
	// A new connection on a 4-tuple replaces its entry.
	c2 := toa.Client{Dialect: toa.Kind200V4, Addr: netip.MustParseAddr("203.0.113.8"), Port: 2, HasPort: true}
	s.sync(t, 2, func() { syn(table, tProxy, tOrigin, c2, 1<<30) })
	if c, ok := read(t, s.mem, tProxy, tOrigin); !ok || c != c2 {
		t.Errorf("reused 4-tuple: %+v %v, want %+v", c, ok, c2)
	}
	if st := s.Stats(); st.Entries != 1 || st.Removed != 2 {
		t.Errorf("stats %+v, want 1 entry, 2 removed", st)
	}
}

func TestSharedTableFull(t *testing.T) {
	table := newTable(t)
	s := newSharedTable(t, table, BucketSlots) // one bucket
	s.sync(t, BucketSlots+1, func() {
		for i := range BucketSlots + 1 {
			syn(table, netip.AddrPortFrom(tProxy.Addr(), uint16(1000+i)), tOrigin, tClient, 1)
		}
	})
	if st := s.Stats(); st.Entries != BucketSlots || st.Full != 1 {
		t.Errorf("stats %+v, want %d entries and 1 left out", st, BucketSlots)
	}
	if _, ok := read(t, s.mem, netip.AddrPortFrom(tProxy.Addr(), 1000+BucketSlots), tOrigin); ok {
		t.Error("the entry left out is found")
	}
}

// TestSharedTableBuild shows that the events that come while the first
// build walks the table are written after it, in order: the table ends
// with what the source holds open.
func TestSharedTableBuild(t *testing.T) {
	table := newTable(t)
	s := newSharedTable(t, table, 64)
	s.mu.Lock()
	s.building = true // as during NewSharedTable's walk
	s.mu.Unlock()
	closed := netip.MustParseAddrPort("198.51.100.99:1")
	syn(table, tProxy, tOrigin, tClient, 1)
	syn(table, closed, tOrigin, tClient, 1)
	table.Observe(&decode.Record{Time: time.Now(), Peer: closed, Local: tOrigin, Flags: decode.RST})
	if _, ok := read(t, s.mem, tProxy, tOrigin); ok {
		t.Fatal("an event was written during the build")
	}
	s.build()
	if c, ok := read(t, s.mem, tProxy, tOrigin); !ok || c != tClient {
		t.Errorf("open connection after the build: %+v %v, want %+v", c, ok, tClient)
	}
	if _, ok := read(t, s.mem, closed, tOrigin); ok {
		t.Error("a connection closed during the build is in the table")
	}
	if st := s.Stats(); st.Entries != 1 {
		t.Errorf("stats %+v, want 1 entry", st)
	}
}

func TestSharedTableClose(t *testing.T) {
	table := newTable(t)
	s := newSharedTable(t, table, 64)
	mem := s.mem
	// A library's mapping outlives toad's.
	lib, err := mapReadOnly(s.fd, len(mem))
	if err != nil {
		t.Fatal(err)
	}
	defer unmap(lib)
	if err := writable(s.fd, len(mem)); err == nil {
		t.Error("the table can be mapped writable")
	}
	s.Close()
	if st := binary.NativeEndian.Uint32(lib[hdrState:]); st != stateDead {
		t.Errorf("state %d after Close, want dead (%d)", st, stateDead)
	}
	for i, b := range lib[sharedHeader:] {
		if b != 0 {
			t.Fatalf("byte %d of a closed table's slots is %#x, want its memory freed", sharedHeader+i, b)
		}
	}
}

func TestNewSharedTableChecksSize(t *testing.T) {
	table := newTable(t)
	for _, n := range []int{-1, 4, 100} {
		if s, err := NewSharedTable(table, n); err == nil {
			s.Close()
			t.Errorf("NewSharedTable(%d slots) accepted it", n)
		}
	}
}

// TestSharedTableClosedIsNotPassed shows that a closed table's descriptor
// number, which may be another file's by then, is never passed.
func TestSharedTableClosedIsNotPassed(t *testing.T) {
	table := newTable(t)
	s := newSharedTable(t, table, 64)
	if !s.withRights(func([]byte) {}) {
		t.Fatal("an open table's descriptor is not passed")
	}
	s.Close()
	if s.withRights(func([]byte) { t.Error("a closed table's descriptor is passed") }) {
		t.Error("withRights says it passed a closed table")
	}
}
