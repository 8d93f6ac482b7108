package correlate_test

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
)

// A million connections: their index and slots (75 MB) are far bigger
// than the CPU caches, so a lookup or insert at a random one waits for
// main memory twice (index bucket, then slot). The "hot" variants work on
// connections whose buckets and slots are cached, as those of a connection
// just accepted are: they measure the table's own work.
const benchConns = 1_000_000

// filled returns a table of capacity entries holding conns connections.
func filled(b *testing.B, capacity, conns int) *correlate.Table {
	b.Helper()
	tab := newBenchTable(b, correlate.Config{Capacity: capacity})
	for n := range conns {
		r := synN(n, t0)
		tab.Observe(&r)
	}
	return tab
}

// spread visits 0..benchConns-1 in a scattered order.
func spread(i int) int { return int(uint64(i) * 0x9E3779B1 % benchConns) }

// BenchmarkGet looks up connections in a table of a million.
func BenchmarkGet(b *testing.B) {
	tab := filled(b, 1<<20, benchConns)
	b.Run("hot", func(b *testing.B) {
		keys := make([]correlate.Key, 1024)
		for i := range keys {
			keys[i] = keyN(spread(i))
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, ok := tab.Get(keys[i&1023]); !ok {
				b.Fatal("not found")
			}
			i++
		}
	})
	b.Run("scattered", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, ok := tab.Get(keyN(spread(i))); !ok {
				b.Fatal("not found")
			}
			i++
		}
	})
	b.Run("absent", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, ok := tab.Get(keyN(benchConns + i&0xfffff)); ok {
				b.Fatal("found")
			}
			i++
		}
	})
}

// BenchmarkPut measures Observe: a new connection into a full table (each
// one evicts the oldest of its shard), hot (a table of 4096) and in a
// table of a million; a segment repeating a known connection's TOA; a data
// segment without one.
func BenchmarkPut(b *testing.B) {
	b.Run("new/hot", func(b *testing.B) {
		const conns = 4096
		tab := filled(b, conns, conns)
		// Connections 4096 to 8191, then 0 to 4095 again, and so on: each
		// has been evicted when it comes round again.
		recs := make([]decode.Record, 2*conns)
		for n := range recs {
			recs[n] = synN((n+conns)%len(recs), t0)
		}
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			tab.Observe(&recs[n])
			if n++; n == len(recs) {
				n = 0
			}
		}
		if st := tab.Stats(); st.Entries != conns {
			b.Fatalf("Entries = %d, want %d", st.Entries, conns)
		}
	})
	b.Run("new/1M", func(b *testing.B) {
		tab := filled(b, benchConns, benchConns)
		b.ReportAllocs()
		n := benchConns
		for b.Loop() {
			r := synN(n&0xffffff, t0)
			tab.Observe(&r)
			n++
		}
		if st := tab.Stats(); st.Entries != benchConns {
			b.Fatalf("Entries = %d, want %d", st.Entries, benchConns)
		}
	})
	tab := filled(b, 4096, 4096)
	k := keyN(4095)
	b.Run("repeat", func(b *testing.B) {
		r := decode.Record{Time: t0, Peer: k.Peer(), Local: k.Local(), Flags: decode.ACK | decode.PSH, TOA: clientN(4095), TOACount: 1}
		b.ReportAllocs()
		for b.Loop() {
			tab.Observe(&r)
		}
	})
	b.Run("data", func(b *testing.B) {
		r := decode.Record{Time: t0, Peer: k.Peer(), Local: k.Local(), Flags: decode.ACK | decode.PSH}
		b.ReportAllocs()
		for b.Loop() {
			tab.Observe(&r)
		}
	})
}

// BenchmarkMix runs capture workers and lookups at once on a full table of
// a million: each goroutine opens a connection, then looks up seven of the
// last 64 it opened, as an application does the connections it accepts.
func BenchmarkMix(b *testing.B) {
	tab := filled(b, benchConns, benchConns)
	var next atomic.Int64
	next.Store(benchConns)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var recent [64]int
		for i := range recent {
			recent[i] = int(next.Add(1)) & 0xffffff
			r := synN(recent[i], t0)
			tab.Observe(&r)
		}
		i := 0
		for pb.Next() {
			if i&7 == 0 {
				n := int(next.Add(1)) & 0xffffff
				r := synN(n, t0)
				tab.Observe(&r)
				recent[i>>3&63] = n
			} else if _, ok := tab.Get(keyN(recent[(i*5)&63])); !ok {
				b.Error("a recent connection is not found")
				return
			}
			i++
		}
	})
}

// BenchmarkBytesPerEntry fills a table of 10M with IPv4 connections of
// IPv4 clients and reports the heap it took (runtime.MemStats.HeapAlloc
// after a GC, before New and after the last insert) per entry.
func BenchmarkBytesPerEntry(b *testing.B) {
	const conns = 10_000_000
	for b.Loop() {
		before := heap()
		tab, err := correlate.New(correlate.Config{Capacity: conns})
		if err != nil {
			b.Fatal(err)
		}
		for n := range conns {
			r := synN(n, t0.Add(time.Duration(n)))
			tab.Observe(&r)
		}
		after := heap()
		if tab.Len() != conns {
			b.Fatalf("Len() = %d, want %d", tab.Len(), conns)
		}
		b.ReportMetric(float64(after-before)/conns, "B/entry")
		b.ReportMetric(0, "ns/op")
		runtime.KeepAlive(tab)
	}
}
