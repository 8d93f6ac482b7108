package correlate_test

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
)

const benchConns = 1_000_000

// filled returns a table of capacity entries holding conns connections.
func filled(b *testing.B, capacity, conns int) *correlate.Table {
	b.Helper()
	tab := newTable(b, correlate.Config{Capacity: capacity})
	for n := range conns {
		r := synN(n, t0)
		tab.Observe(&r)
	}
	return tab
}

// spread visits 0..benchConns-1 in a scattered order.
func spread(i int) int { return int(uint64(i) * 0x9E3779B1 % benchConns) }

// BenchmarkGet looks up connections in a table of a million: scattered
// over all of them (most miss the CPU cache), among 4096 (all hit it), and
// absent ones.
func BenchmarkGet(b *testing.B) {
	tab := filled(b, 1<<20, benchConns)
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
	b.Run("cached", func(b *testing.B) {
		keys := make([]correlate.Key, 4096)
		for i := range keys {
			keys[i] = keyN(spread(i))
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, ok := tab.Get(keys[i&4095]); !ok {
				b.Fatal("not found")
			}
			i++
		}
	})
	b.Run("absent", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			tab.Get(keyN(benchConns + i&0xfffff))
			i++
		}
	})
}

// BenchmarkPut measures Observe: a new connection into a full table of a
// million (each one evicts the oldest of its shard), a segment repeating a
// known connection's TOA, and a data segment without one.
func BenchmarkPut(b *testing.B) {
	tab := filled(b, benchConns, benchConns)
	b.Run("new", func(b *testing.B) {
		b.ReportAllocs()
		n := benchConns
		for b.Loop() {
			r := synN(n&0xffffff, t0)
			tab.Observe(&r)
			n++
		}
	})
	b.Run("repeat", func(b *testing.B) {
		k := keyN(benchConns - 1)
		r := decode.Record{Time: t0, Peer: k.Peer, Local: k.Local, Flags: decode.ACK | decode.PSH, TOA: clientN(benchConns - 1), TOACount: 1}
		b.ReportAllocs()
		for b.Loop() {
			tab.Observe(&r)
		}
	})
	b.Run("data", func(b *testing.B) {
		k := keyN(benchConns - 1)
		r := decode.Record{Time: t0, Peer: k.Peer, Local: k.Local, Flags: decode.ACK | decode.PSH}
		b.ReportAllocs()
		for b.Loop() {
			tab.Observe(&r)
		}
	})
}

// BenchmarkMix runs lookups and new connections in parallel, one new
// connection to seven lookups, on a full table of a million.
func BenchmarkMix(b *testing.B) {
	tab := filled(b, benchConns, benchConns)
	var next atomic.Int64
	next.Store(benchConns)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1 << 20))
		for pb.Next() {
			if i&7 == 0 {
				r := synN(int(next.Add(1))&0xffffff, t0)
				tab.Observe(&r)
			} else {
				tab.Get(keyN(spread(i)))
			}
			i++
		}
	})
}

// BenchmarkBytesPerEntry fills a table of 10M with IPv4 connections of
// IPv4 clients and reports the heap it took (runtime.MemStats.HeapAlloc
// after a GC, before and after, New included) per entry.
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
