// Package tablecmp compares toad's connection table (correlate.Table) with
// ristretto v2, the cache it was chosen over, on what the product needs:
// how many inserted connections are lost when writers insert as fast as
// they can, nanoseconds per set and get, and bytes per entry. Both run in
// the same process, taking turns, so the ratios hold on a shared machine
// where the absolute numbers drift.
//
// Run is safe to call from one goroutine at a time: it measures the heap.
package tablecmp

import (
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/toa"
)

// Config says how big the comparison is.
type Config struct {
	// Keys is how many distinct connections each phase inserts; the tables
	// are sized to hold exactly that many. 0 means 1M.
	Keys int
	// Writers is how many goroutines insert at once in the loss phase;
	// 0 means 2.
	Writers int
	// Rounds is how many times each table is measured, the two taking
	// turns; each figure of a Result is the median of its rounds. 0 means
	// 1.
	Rounds int
}

// Result is one table's measurements.
type Result struct {
	Name string
	// Lost is how many of Keys connections inserted by Writers goroutines
	// flat out could not be found afterwards (after ristretto's Wait).
	Lost int
	// SetNs is the mean time of an insert by one goroutine into an empty
	// table; SetDropped how many of those inserts the table refused.
	SetNs      float64
	SetDropped int
	// GetNs is the mean time of a lookup of a held key, in scattered order.
	GetNs float64
	// BytesPerEntry is the heap the table took (HeapAlloc after a GC,
	// before and after creating and filling it) per entry it held.
	BytesPerEntry float64
	Held          int // entries held when BytesPerEntry was measured
}

// subject is a table under test; key n is the n-th IPv4 connection.
type subject interface {
	set(n int) bool
	get(n int) bool
	wait()
	close()
}

// subjects are the tables compared, toad's first.
var subjects = []struct {
	name string
	mk   func(keys int) (subject, error)
}{{"toad", newToad}, {"ristretto", newRistretto}}

// Run measures toad's table and ristretto with cfg, in turns, and returns
// their results, toad's first.
func Run(cfg Config) ([]Result, error) {
	if cfg.Keys == 0 {
		cfg.Keys = 1_000_000
	}
	if cfg.Writers == 0 {
		cfg.Writers = 2
	}
	if cfg.Rounds == 0 {
		cfg.Rounds = 1
	}
	if cfg.Keys < 1 || cfg.Keys > 1<<24 || cfg.Writers < 1 || cfg.Rounds < 1 {
		return nil, fmt.Errorf("invalid tablecmp.Config %+v: want 1 to 16M keys, at least one writer and one round", cfg)
	}
	runs := make([][]Result, len(subjects))
	for round := range cfg.Rounds {
		for k := range subjects {
			i := (k + round) % len(subjects) // who goes first alternates
			s := subjects[i]
			r, err := measure(s.name, s.mk, cfg)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
			runs[i] = append(runs[i], r)
		}
	}
	out := make([]Result, len(subjects))
	for i, rs := range runs {
		out[i] = medianResult(rs)
	}
	return out, nil
}

// medianResult returns the median of each figure of rs.
func medianResult(rs []Result) Result {
	med := func(f func(Result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return Result{
		Name:          rs[0].Name,
		Lost:          int(med(func(r Result) float64 { return float64(r.Lost) })),
		SetNs:         med(func(r Result) float64 { return r.SetNs }),
		SetDropped:    int(med(func(r Result) float64 { return float64(r.SetDropped) })),
		GetNs:         med(func(r Result) float64 { return r.GetNs }),
		BytesPerEntry: med(func(r Result) float64 { return r.BytesPerEntry }),
		Held:          int(med(func(r Result) float64 { return float64(r.Held) })),
	}
}

func measure(name string, mk func(int) (subject, error), cfg Config) (Result, error) {
	r := Result{Name: name}
	n := cfg.Keys

	// Loss: Writers goroutines insert distinct keys flat out.
	s, err := mk(n)
	if err != nil {
		return r, err
	}
	var wg sync.WaitGroup
	for w := range cfg.Writers {
		wg.Go(func() {
			for k := w; k < n; k += cfg.Writers {
				s.set(k)
			}
		})
	}
	wg.Wait()
	s.wait()
	for k := range n {
		if !s.get(k) {
			r.Lost++
		}
	}
	s.close()

	// Set: one goroutine into an empty table.
	s, err = mk(n)
	if err != nil {
		return r, err
	}
	start := time.Now()
	for k := range n {
		if !s.set(k) {
			r.SetDropped++
		}
	}
	r.SetNs = float64(time.Since(start).Nanoseconds()) / float64(n)
	s.wait()
	s.close()
	s = nil

	// Memory and gets: a table filled gently enough that nothing is
	// dropped (ristretto waits after every 64 sets).
	before := heapAlloc()
	s, err = mk(n)
	if err != nil {
		return r, err
	}
	for k := range n {
		s.set(k)
		if k%64 == 63 {
			s.wait()
		}
	}
	s.wait()
	after := heapAlloc()
	for k := range n {
		if s.get(k) {
			r.Held++
		}
	}
	if r.Held > 0 {
		r.BytesPerEntry = float64(int64(after)-int64(before)) / float64(r.Held)
	}
	start = time.Now()
	for i := range n {
		s.get(scatter(i, n))
	}
	r.GetNs = float64(time.Since(start).Nanoseconds()) / float64(n)
	s.close()
	runtime.KeepAlive(s)
	return r, nil
}

// scatter visits 0..n-1 in a scattered order.
func scatter(i, n int) int { return int(uint64(i) * 0x9E3779B1 % uint64(n)) }

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

var server = netip.MustParseAddrPort("203.0.113.10:443")

// conn returns connection n: from proxies in 198.51.100.0/24 to one
// server, for a client in 192.0.2.0/24.
func conn(n int) (peer netip.AddrPort, client toa.Client) {
	peer = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(n >> 16)}), uint16(n))
	client = toa.Client{Dialect: toa.Kind254V4, Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(n >> 16)}), Port: uint16(n), HasPort: true}
	return peer, client
}

type toadTable struct{ t *correlate.Table }

func newToad(keys int) (subject, error) {
	t, err := correlate.New(correlate.Config{Capacity: keys})
	return toadTable{t}, err
}

func (t toadTable) set(n int) bool {
	peer, client := conn(n)
	r := decode.Record{Peer: peer, Local: server, Flags: decode.SYN, Seq: uint32(n), TOA: client, TOACount: 1}
	t.t.Observe(&r)
	return true
}

func (t toadTable) get(n int) bool {
	peer, client := conn(n)
	e, ok := t.t.Get(correlate.KeyOf(peer, server))
	return ok && e.Client == client
}

func (toadTable) wait()    {}
func (t toadTable) close() { t.t.Close() }

// value is what ristretto holds for a connection: what toad keeps.
type value struct {
	client   [16]byte
	first    int64
	syn      uint32
	port     uint16
	kind     uint8
	len      uint8
	flags    uint8
	closedAt int64
}

// ristrettoTable keys ristretto by the packed 12-byte 4-tuple. ristretto
// keeps only the key's hashes, so the string may alias a scratch buffer.
type ristrettoTable struct {
	c *ristretto.Cache[string, value]
}

func newRistretto(keys int) (subject, error) {
	c, err := ristretto.NewCache(&ristretto.Config[string, value]{
		NumCounters:        int64(keys) * 10, // as its documentation advises
		MaxCost:            int64(keys),
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	return ristrettoTable{c}, err
}

func packKey(b *[12]byte, peer netip.AddrPort) string {
	p, l := peer.Addr().As4(), server.Addr().As4()
	copy(b[0:], p[:])
	copy(b[4:], l[:])
	b[8], b[9] = byte(peer.Port()>>8), byte(peer.Port())
	b[10], b[11] = byte(server.Port()>>8), byte(server.Port())
	return unsafe.String(&b[0], len(b))
}

func (r ristrettoTable) set(n int) bool {
	var b [12]byte
	peer, client := conn(n)
	v := value{syn: uint32(n), port: client.Port, kind: client.Dialect.Kind, len: client.Dialect.Len}
	a := client.Addr.As4()
	copy(v.client[:], a[:])
	return r.c.Set(packKey(&b, peer), v, 1)
}

func (r ristrettoTable) get(n int) bool {
	var b [12]byte
	peer, client := conn(n)
	v, ok := r.c.Get(packKey(&b, peer))
	return ok && v.port == client.Port
}

func (r ristrettoTable) wait()  { r.c.Wait() }
func (r ristrettoTable) close() { r.c.Close() }
