package api_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"

	"github.com/toad-project/toad/api"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/cputime"
	"github.com/toad-project/toad/internal/grpcecho"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
	"github.com/toad-project/toad/toa"
)

// The benchmarks put every toad call beside a bare gRPC call over the same
// transport in the same run, so that the ratio between them is what toad
// adds:
//
//   - unary: Lookup against grpc.health.v1 Check on the same server (a map
//     lookup behind a mutex: a trivial handler);
//   - batch: BatchLookup against grpc.testing UnaryCall echoing payloads of
//     the same sizes, on a bare server;
//   - stream: Watch events against grpc.testing StreamingOutputCall
//     streaming messages of the same size, on a bare server.
//
// Each benchmark reports both sides and their ratios:
//
//	go test -run '^$' -bench . -benchtime 2s ./api/

// benchConns are the connections the lookups ask for, all in the table.
func benchConns(tb testing.TB, f *fixture, n int) []*toadv1.ConnectionKey {
	keys := make([]*toadv1.ConnectionKey, n)
	for i := range keys {
		c := conn{
			peer:    fmt.Sprintf("198.51.100.%d:%d", 1+i/60000, 1+i%60000),
			local:   "192.0.2.20:8080",
			client:  fmt.Sprintf("203.0.113.%d:%d", i%250+1, 1024+i%60000),
			dialect: toa.Kind200V4,
		}
		open(tb, f.table, c)
		keys[i] = &toadv1.ConnectionKey{Peer: c.peer, Local: c.local}
	}
	return keys
}

// startEcho serves the echo service on a unix socket; it returns a client.
func startEcho(b *testing.B) testgrpc.TestServiceClient {
	path := filepath.Join(b.TempDir(), "echo.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	s := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(s, grpcecho.Echo{})
	go s.Serve(l)
	b.Cleanup(s.Stop)
	return testgrpc.NewTestServiceClient((&fixture{socket: path}).dial(b, transports[0]))
}

// side is one of the calls a benchmark compares.
type side struct {
	name  string
	units int // lookups or events a call stands for
	call  func() error

	lat     [][]time.Duration // each caller's latencies
	elapsed time.Duration     // the wall time of its waves
	cpu     time.Duration     // the process's CPU time during its waves
}

// compare runs the sides in turn, a wave each per iteration: callers
// goroutines each making perWave calls. Taking turns in short waves puts
// both sides under the same conditions on a busy machine. For each side it
// reports the rate of units (unit/s), the units per second of the
// process's CPU time (unit/cpu-s: client and server together, whatever
// other processes take from the machine), and the p50 and p99 call
// latencies; and, for the first side against the second, the ratios of the
// rates and of the latencies.
func compare(b *testing.B, callers, perWave int, unit string, sides ...*side) {
	b.ReportAllocs()
	for _, s := range sides {
		s.lat = make([][]time.Duration, callers)
	}
	one := func(s *side, w int) {
		for range perWave {
			t := time.Now()
			if err := s.call(); err != nil {
				b.Errorf("%s: %v", s.name, err)
				return
			}
			s.lat[w] = append(s.lat[w], time.Since(t))
		}
	}
	var wg sync.WaitGroup
	for b.Loop() {
		for _, s := range sides {
			t, c := time.Now(), cputime.Process()
			if callers == 1 {
				one(s, 0)
			} else {
				for w := range callers {
					wg.Go(func() { one(s, w) })
				}
				wg.Wait()
			}
			s.elapsed += time.Since(t)
			s.cpu += cputime.Process() - c
		}
	}
	type result struct{ rate, p50, p99 float64 }
	res := make([]result, len(sides))
	for i, s := range sides {
		all := slices.Concat(s.lat...)
		if len(all) == 0 || s.elapsed == 0 {
			return
		}
		slices.Sort(all)
		res[i] = result{
			rate: float64(len(all)*s.units) / s.elapsed.Seconds(),
			p50:  float64(all[len(all)/2].Nanoseconds()) / 1e3,
			p99:  float64(all[len(all)*99/100].Nanoseconds()) / 1e3,
		}
		b.ReportMetric(res[i].rate, s.name+"-"+unit+"/s")
		if s.cpu > 0 {
			b.ReportMetric(float64(len(all)*s.units)/s.cpu.Seconds(), s.name+"-"+unit+"/cpu-s")
		}
		b.ReportMetric(res[i].p50, s.name+"-p50-µs")
		b.ReportMetric(res[i].p99, s.name+"-p99-µs")
	}
	if len(res) == 2 {
		b.ReportMetric(res[0].rate/res[1].rate, "rate-ratio")
		b.ReportMetric(res[0].p50/res[1].p50, "p50-ratio")
		b.ReportMetric(res[0].p99/res[1].p99, "p99-ratio")
	}
}

// BenchmarkUnary: Lookup of a known connection against the health Check
// echo, over the unix socket and TCP, from 1 and from 32 concurrent
// callers sharing one client connection. Goal: p50-ratio <= 1.2.
func BenchmarkUnary(b *testing.B) {
	f := start(b, api.Config{})
	keys := benchConns(b, f, 1024)
	for _, tr := range transports {
		cc := f.dial(b, tr)
		lookup, health := toadv1.NewLookupServiceClient(cc), healthpb.NewHealthClient(cc)
		for _, callers := range []int{1, 32} {
			perWave := 1
			if callers > 1 {
				perWave = 8
			}
			b.Run(fmt.Sprintf("%s/callers=%d", tr.name, callers), func(b *testing.B) {
				var next atomic.Uint64
				compare(b, callers, perWave, "calls",
					&side{name: "lookup", units: 1, call: func() error {
						k := keys[next.Add(1)%uint64(len(keys))]
						_, err := lookup.Lookup(context.Background(), &toadv1.LookupRequest{Peer: k.Peer, Local: k.Local})
						return err
					}},
					&side{name: "echo", units: 1, call: func() error {
						_, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
						return err
					}})
			})
		}
	}
}

// BenchmarkBatch: BatchLookup of 1000 known connections a call, over the
// unix socket, from 1 and from 4 concurrent callers, against the echo of
// payloads of the same sizes. Goal: lookup-lookups/s >= 1M.
func BenchmarkBatch(b *testing.B) {
	const n = 1000
	f := start(b, api.Config{})
	req := &toadv1.BatchLookupRequest{Keys: benchConns(b, f, n)}
	c := f.client(b, transports[0])
	resp, err := c.BatchLookup(context.Background(), req)
	if err != nil {
		b.Fatal(err)
	}
	echo := startEcho(b)
	ereq := &testgrpc.SimpleRequest{ResponseSize: int32(proto.Size(resp)), Payload: &testgrpc.Payload{Body: make([]byte, proto.Size(req))}}
	for _, callers := range []int{1, 4} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			compare(b, callers, 1, "lookups",
				&side{name: "lookup", units: n, call: func() error {
					resp, err := c.BatchLookup(context.Background(), req)
					if err == nil && (len(resp.GetResults()) != n || !resp.GetResults()[n-1].GetFound()) {
						err = fmt.Errorf("%d results, the last found: %v", len(resp.GetResults()), resp.GetResults()[n-1].GetFound())
					}
					return err
				}},
				&side{name: "echo", units: n, call: func() error {
					_, err := echo.UnaryCall(context.Background(), ereq)
					return err
				}})
		})
	}
}

// BenchmarkStream: Watch events, 1000 new connections a call observed and
// received over the unix socket, against a server stream of 1000 messages
// of the same size.
func BenchmarkStream(b *testing.B) {
	const n = 1000
	f := start(b, api.Config{WatchBuffer: 4 * n})
	s, _ := watch(b, f.client(b, transports[0]), 0)
	r := record(b, conn{peer: "198.51.100.1:1", local: "192.0.2.20:8080", client: "203.0.113.7:51234", dialect: toa.Kind200V4}, decode.SYN)
	next := 0
	size := 0
	watchCall := func() error {
		for range n {
			// A new connection each time, or the table sees a
			// retransmitted SYN and says nothing.
			r.Peer = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(next / 65000)}), uint16(1+next%65000))
			r.Local = netip.AddrPortFrom(r.Local.Addr(), uint16(8080+next/(65000*256)))
			f.table.Observe(&r)
			next++
		}
		for range n {
			ev, err := s.Recv()
			if err != nil {
				return err
			}
			if ev.GetType() != eventOpen {
				return fmt.Errorf("event %v: the watch buffer is too small", ev)
			}
			size = proto.Size(ev)
		}
		return nil
	}
	if err := watchCall(); err != nil {
		b.Fatal(err)
	}
	echo := startEcho(b)
	params := make([]*testgrpc.ResponseParameters, n)
	for i := range params {
		params[i] = &testgrpc.ResponseParameters{Size: int32(size)}
	}
	ereq := &testgrpc.StreamingOutputCallRequest{ResponseParameters: params}
	compare(b, 1, 1, "events",
		&side{name: "watch", units: n, call: watchCall},
		&side{name: "echo", units: n, call: func() error { return grpcecho.Stream(context.Background(), echo, ereq, n) }})
}
