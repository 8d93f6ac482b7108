package api

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
	"github.com/toad-project/toad/toa"
)

// batchService returns a service over a table of n connections, IPv4 and
// IPv6 clients in turn, and a request for all of them.
func batchService(tb testing.TB, n int) (*service, *toadv1.BatchLookupRequest) {
	tb.Helper()
	tab, err := correlate.New(correlate.Config{Capacity: 2 * n})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(tab.Close)
	req := &toadv1.BatchLookupRequest{Keys: make([]*toadv1.ConnectionKey, n)}
	for i := range n {
		peer := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + i/60000)}), uint16(1+i%60000))
		local := netip.MustParseAddrPort("192.0.2.20:8080")
		c := toa.Client{Dialect: toa.Kind200V4, Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + i%250)}), Port: uint16(1024 + i), HasPort: true}
		if i%2 == 1 {
			c = toa.Client{Dialect: toa.Kind254V6, Addr: netip.MustParseAddr(fmt.Sprintf("2001:db8:c::%x", i)), Port: uint16(1024 + i), HasPort: true}
		}
		r := decode.Record{Time: time.Unix(1e9, 0), Peer: peer, Local: local, Flags: decode.SYN, Seq: 1000, TOA: c, TOACount: 1}
		tab.Observe(&r)
		req.Keys[i] = &toadv1.ConnectionKey{Peer: peer.String(), Local: local.String()}
	}
	cfg, err := Config{}.withDefaults()
	if err != nil {
		tb.Fatal(err)
	}
	return &service{table: tab, cfg: &cfg}, req
}

// TestBatchLookupAllocs holds BatchLookup to a fixed number of allocations
// per call, however many keys it holds: the results' messages and the
// clients' text are allocated once for the whole batch.
func TestBatchLookupAllocs(t *testing.T) {
	s, req := batchService(t, 1000)
	ctx := context.Background()
	resp, err := s.BatchLookup(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.GetResults() {
		c := r.GetConnection()
		if !r.GetFound() || c.GetClient() == "" || c.GetClientIp() == "" || c.GetClientPort() != uint32(1024+i) {
			t.Fatalf("result %d: %v", i, r)
		}
	}
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := s.BatchLookup(ctx, req); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 8 {
		t.Errorf("a batch of 1000 keys allocates %v times, want at most 8", allocs)
	}
}

// BenchmarkBatchLookupHandler measures the handler alone, without gRPC.
func BenchmarkBatchLookupHandler(b *testing.B) {
	s, req := batchService(b, 1000)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.BatchLookup(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(req.Keys)), "ns/lookup")
}
