package correlate_test

import (
	"bytes"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
)

// TestNoLoss inserts a million distinct connections from concurrent
// writers, below capacity: every one must then resolve to its own client.
func TestNoLoss(t *testing.T) {
	const conns, writers = 1_000_000, 4
	tab := newTable(t, correlate.Config{Capacity: 1 << 20})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for n := w; n < conns; n += writers {
				r := synN(n, t0)
				tab.Observe(&r)
			}
		})
	}
	wg.Wait()
	lost := 0
	for n := range conns {
		e, ok := tab.Get(keyN(n))
		if !ok || e.Client != clientN(n) {
			if lost++; lost <= 5 {
				t.Errorf("connection %d: got %v, %v; want %v, true", n, e.Client, ok, clientN(n))
			}
		}
	}
	st := tab.Stats()
	if lost > 0 || st.Entries != conns || st.Evictions != 0 || st.ConnsWithTOA != conns {
		t.Errorf("lost %d of %d; Entries %d, Evictions %d, ConnsWithTOA %d; want 0, %d, 0, %d",
			lost, conns, st.Entries, st.Evictions, st.ConnsWithTOA, conns, conns)
	}
}

// TestFlood pours 10M distinct connections into a 1M-entry table: memory
// stays bounded, and every connection beyond the first million evicts the
// oldest of its shard, counted.
func TestFlood(t *testing.T) {
	if raceEnabled {
		t.Skip("10M segments take minutes under the race detector; make test runs this test without it")
	}
	const capacity, conns = 1_000_000, 10_000_000
	before := heap()
	tab := newTable(t, correlate.Config{Capacity: capacity})
	var r decode.Record
	for n := range conns {
		r = synN(n, t0.Add(time.Duration(n)))
		tab.Observe(&r)
	}
	grown := heap() - before
	st := tab.Stats()
	if st.Entries != capacity || st.Evictions != conns-capacity || st.EvictionsOpen != conns-capacity {
		t.Errorf("got Entries %d, Evictions %d, EvictionsOpen %d; want %d, %d, %d",
			st.Entries, st.Evictions, st.EvictionsOpen, capacity, conns-capacity, conns-capacity)
	}
	// 64 bytes a slot and 11 of index per entry of capacity, and some room.
	if limit := uint64(capacity * 128); grown > limit {
		t.Errorf("heap grew by %d bytes (%d per entry of capacity), want at most %d", grown, grown/capacity, limit)
	}
	t.Logf("heap grew by %.1f MB, %d bytes per entry", float64(grown)/1e6, grown/capacity)
	// Each shard keeps its newest: the last 90% of a capacity's worth are
	// all held, whichever shards they fell in.
	for n := conns - capacity*9/10; n < conns; n++ {
		if e, ok := tab.Get(keyN(n)); !ok || e.Client != clientN(n) {
			t.Fatalf("recent connection %d: got %v, %v; want %v, true", n, e.Client, ok, clientN(n))
		}
	}
	if _, ok := tab.Get(keyN(0)); ok {
		t.Errorf("the oldest connection is still held, want it evicted")
	}
}

func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestConcurrent runs every operation at once, for the race detector.
func TestConcurrent(t *testing.T) {
	tab := newTable(t, correlate.Config{Capacity: 4096, Shards: 8, IdleTimeout: time.Hour})
	sub := tab.Subscribe(64)
	const n = 20000
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := w; i < n; i += 2 {
				observe(tab, synN(i, t0), finN(i-100, t0))
			}
		})
	}
	wg.Go(func() {
		for i := range n {
			wait := time.Duration(0)
			if i%100 == 0 {
				wait = time.Millisecond
			}
			tab.Lookup(t.Context(), keyN(i), wait)
		}
	})
	wg.Go(func() {
		for range 20 {
			tab.Expire(t0.Add(2 * time.Minute))
			tab.Range(func(correlate.Entry) bool { return true })
			var b bytes.Buffer
			if err := tab.WriteSnapshot(&b); err != nil {
				t.Error(err)
			}
			tab.Stats()
		}
	})
	drained := make(chan struct{})
	go func() {
		for range sub.Events() {
		}
		close(drained)
	}()
	wg.Wait()
	tab.Close()
	<-drained
}

// TestAllocs: the capture path and lookups allocate nothing, the table
// being full (an insert evicts) or not.
func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	tab := newTable(t, correlate.Config{Capacity: 1 << 12, Shards: 8})
	n := 0
	for ; n < 1<<13; n++ {
		observe(tab, synN(n, t0))
	}
	known := keyN(n - 1)
	data := decode.Record{Time: t0, Peer: known.Peer(), Local: known.Local(), Flags: decode.ACK | decode.PSH, Seq: 9, TOA: clientN(n - 1), TOACount: 1}
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"Observe new connection", func() { r := synN(n, t0); tab.Observe(&r); n++ }},
		{"Observe segment with its TOA again", func() { tab.Observe(&data) }},
		{"Get", func() { tab.Get(known) }},
		{"Lookup", func() { tab.Lookup(t.Context(), known, 0) }},
		{"Lookup absent", func() { tab.Lookup(t.Context(), keyN(0), 0) }},
	} {
		if a := testing.AllocsPerRun(1000, c.f); a != 0 {
			t.Errorf("%s: %v allocations, want 0", c.name, a)
		}
	}
}
