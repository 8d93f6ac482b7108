package preload_test

import (
	"context"
	"testing"
	"time"

	"github.com/toad-project/toad/api/preload"
)

// BenchmarkLookup compares a lookup over the preload socket (a Go client
// of the protocol, one frame each way, through the Server) with the same
// lookup made in process on the table: the price of the round trip.
func BenchmarkLookup(b *testing.B) {
	td := startToad(b, nil)
	td.insert(proxy, origin, client4("203.0.113.7:51234"))
	ctx := context.Background()
	b.Run("in-process", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := td.table.Lookup(ctx, correlateKey(proxy, origin), 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("socket", func(b *testing.B) {
		w := dial(b, td.path)
		w.hello()
		var f preload.Frame
		var in [preload.FrameSize + 1]byte
		l := preload.Lookup{Peer: proxy, Local: origin, Wait: time.Millisecond}
		b.ReportAllocs()
		for b.Loop() {
			w.id++
			l.Put(&f, w.id)
			if _, err := w.c.Write(f[:]); err != nil {
				b.Fatal(err)
			}
			if _, err := w.c.Read(in[:]); err != nil {
				b.Fatal(err)
			}
			if in[8] != byte(preload.StatusOK) {
				b.Fatalf("status %d", in[8])
			}
		}
	})
}
