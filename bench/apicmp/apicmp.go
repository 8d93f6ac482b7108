package apicmp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"

	"github.com/toad-project/toad/api"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/cputime"
	"github.com/toad-project/toad/internal/grpcecho"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
	"github.com/toad-project/toad/toa"
)

// Config says how long and how hard to measure. Zero fields take the
// defaults in their comments.
type Config struct {
	// Phase is how long each side runs in each round (1s); Rounds how many
	// rounds (3).
	Phase  time.Duration
	Rounds int
	// Batch is how many keys a BatchLookup holds and how many events a
	// stream call receives (1000).
	Batch int
	// Callers is how many goroutines call at once in the throughput cases
	// (32 for unary, 4 for batch).
	Callers int
	// Conns is how many connections the table holds (100000).
	Conns int
	// Options are added to the toad server's (for comparisons of server
	// settings).
	Options []grpc.ServerOption
	// Logf, when set, reports progress.
	Logf func(format string, args ...any)
}

func (c *Config) defaults() {
	if c.Phase == 0 {
		c.Phase = time.Second
	}
	if c.Rounds == 0 {
		c.Rounds = 3
	}
	if c.Batch == 0 {
		c.Batch = 1000
	}
	if c.Conns == 0 {
		c.Conns = 100000
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// Side is one side's figures in one case.
type Side struct {
	// Rate is the median over the rounds of units per second.
	Rate float64
	// CPURate is the median over the rounds of units per second of the
	// process's CPU time, client and server together: what the work costs,
	// whatever other processes take from the machine. 0 where the CPU time
	// is not measured.
	CPURate float64
	// P50 and P99 are call latencies over every call of every round.
	P50, P99 time.Duration
	Calls    int
}

// Result is one case: toad's side and the echo's.
type Result struct {
	Case    string // "unary", "batch", "stream"
	Callers int
	Unit    string // what Rate counts: calls, lookups, events
	Toad    Side
	Echo    Side
	// RateRatio and P50Ratio are the medians over the rounds of toad's
	// rate over the echo's and of toad's median latency over the echo's,
	// each round's two sides taken together: what drifts from round to
	// round on a shared machine cancels out.
	RateRatio, P50Ratio float64
}

// Run measures every case.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	cfg.defaults()
	if cfg.Batch < 1 || cfg.Conns < cfg.Batch || cfg.Rounds < 1 || cfg.Phase < 0 {
		return nil, fmt.Errorf("invalid apicmp.Config %+v: want a batch of at least 1, at least as many connections, and at least one round", cfg)
	}
	dir, err := os.MkdirTemp("", "toadbench-api-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	b, err := start(dir, cfg)
	if err != nil {
		return nil, err
	}
	defer b.close()

	var results []Result
	unary := func(callers int) error {
		r, err := b.unary(ctx, callers)
		results = append(results, r)
		return err
	}
	steps := []func() error{
		func() error { return unary(1) },
		func() error { return unary(cmp.Or(cfg.Callers, 32)) },
		func() error {
			r, err := b.batch(ctx, cmp.Or(cfg.Callers, 4))
			results = append(results, r)
			return err
		},
		func() error {
			r, err := b.stream(ctx)
			results = append(results, r)
			return err
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
		r := results[len(results)-1]
		cfg.Logf("api: %s, %d callers: toad %.0f %s/s (p50 %v), echo %.0f %s/s (p50 %v); toad/echo: rate %.2f, p50 %.2f",
			r.Case, r.Callers, r.Toad.Rate, r.Unit, r.Toad.P50, r.Echo.Rate, r.Unit, r.Echo.P50, r.RateRatio, r.P50Ratio)
	}
	return results, nil
}

// bench is a toad server with a filled table and a bare echo server, each
// on its own unix socket, and a client of each.
type bench struct {
	cfg   Config
	table *correlate.Table
	srv   *api.Server
	echo  *grpc.Server
	conns []*grpc.ClientConn
	wg    sync.WaitGroup

	lookup toadv1.LookupServiceClient
	tester testgrpc.TestServiceClient
	keys   []*toadv1.ConnectionKey
	next   int // the next stream connection's number
}

var local = netip.MustParseAddrPort("192.0.2.20:8080")

// connection returns the n-th connection: a proxy in 198.51.100.0/24 and a
// client in 203.0.113.0/24.
func connection(n int) decode.Record {
	peer := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + n/60000)}), uint16(1+n%60000))
	client := toa.Client{Dialect: toa.Kind200V4, Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + n%250)}), Port: uint16(1024 + n%60000), HasPort: true}
	return decode.Record{Time: time.Now(), Peer: peer, Local: local, Flags: decode.SYN, Seq: 1000, TOA: client, TOACount: 1}
}

func start(dir string, cfg Config) (b *bench, err error) {
	b = &bench{cfg: cfg}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.table, err = correlate.New(correlate.Config{Capacity: cfg.Conns + cfg.Batch}); err != nil {
		return b, err
	}
	for n := range cfg.Conns {
		r := connection(n)
		b.table.Observe(&r)
		b.keys = append(b.keys, &toadv1.ConnectionKey{Peer: r.Peer.String(), Local: r.Local.String()})
	}
	b.next = cfg.Conns
	if b.srv, err = api.New(b.table, api.Config{MaxBatch: max(cfg.Batch, api.DefaultMaxBatch), WatchBuffer: 4 * cfg.Batch, Options: cfg.Options}); err != nil {
		return b, err
	}
	b.srv.SetServing(true)
	tl, err := api.ListenUnix(filepath.Join(dir, "toad.sock"), 0o600)
	if err != nil {
		return b, err
	}
	b.serve(func() error { return b.srv.Serve(tl) })
	b.echo = grpc.NewServer()
	testgrpc.RegisterTestServiceServer(b.echo, grpcecho.Echo{})
	el, err := net.Listen("unix", filepath.Join(dir, "echo.sock"))
	if err != nil {
		return b, err
	}
	b.serve(func() error { return b.echo.Serve(el) })
	for _, s := range []string{"toad.sock", "echo.sock"} {
		cc, err := grpc.NewClient("unix://"+filepath.Join(dir, s), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return b, err
		}
		b.conns = append(b.conns, cc)
	}
	b.lookup = toadv1.NewLookupServiceClient(b.conns[0])
	b.tester = testgrpc.NewTestServiceClient(b.conns[1])
	return b, nil
}

func (b *bench) serve(fn func() error) {
	b.wg.Go(func() {
		if err := fn(); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			b.cfg.Logf("api: serve: %v", err)
		}
	})
}

func (b *bench) close() {
	for _, cc := range b.conns {
		cc.Close()
	}
	if b.srv != nil {
		b.srv.Close()
	}
	if b.echo != nil {
		b.echo.Stop()
	}
	b.wg.Wait()
	if b.table != nil {
		b.table.Close()
	}
}

// call is one side's call; i counts the caller's calls.
type call func(ctx context.Context, i int) error

// phase runs fn from callers goroutines until d has passed and returns
// the calls' latencies, the phase's length and the CPU time it took.
func phase(ctx context.Context, d time.Duration, callers int, fn call) ([]time.Duration, time.Duration, time.Duration, error) {
	lat := make([][]time.Duration, callers)
	errs := make([]error, callers)
	cpu0, start := cputime.Process(), time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := 0; ; i++ {
				t := time.Now()
				if !t.Before(deadline) || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, c+i*callers); err != nil {
					errs[c] = err
					return
				}
				lat[c] = append(lat[c], time.Since(t))
			}
		})
	}
	wg.Wait()
	took, cpu := time.Since(start), cputime.Process()-cpu0
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return nil, 0, 0, err
	}
	return slices.Concat(lat...), took, cpu, nil
}

// compare runs toad's and the echo's calls in turns and returns the case.
func (b *bench) compare(ctx context.Context, r Result, units int, toad, echo call) (Result, error) {
	sides := []*Side{&r.Toad, &r.Echo}
	calls := []call{toad, echo}
	lats := make([][]time.Duration, 2)
	rates := make([][]float64, 2)
	cpuRates := make([][]float64, 2)
	var rateRatios, p50Ratios []float64
	for round := range b.cfg.Rounds {
		var p50 [2]time.Duration
		for k := range 2 {
			i := (k + round) % 2 // who goes first alternates
			lat, took, cpu, err := phase(ctx, b.cfg.Phase, r.Callers, calls[i])
			if err != nil {
				return r, fmt.Errorf("%s, %s side: %w", r.Case, [...]string{"toad", "echo"}[i], err)
			}
			if len(lat) == 0 {
				return r, fmt.Errorf("%s: no call finished within a phase of %v", r.Case, b.cfg.Phase)
			}
			lats[i] = append(lats[i], lat...)
			rates[i] = append(rates[i], float64(len(lat)*units)/took.Seconds())
			if cpu > 0 {
				cpuRates[i] = append(cpuRates[i], float64(len(lat)*units)/cpu.Seconds())
			}
			slices.Sort(lat)
			p50[i] = lat[len(lat)/2]
		}
		rateRatios = append(rateRatios, rates[0][round]/rates[1][round])
		p50Ratios = append(p50Ratios, float64(p50[0])/float64(p50[1]))
	}
	slices.Sort(rateRatios)
	slices.Sort(p50Ratios)
	r.RateRatio, r.P50Ratio = rateRatios[len(rateRatios)/2], p50Ratios[len(p50Ratios)/2]
	for i, s := range sides {
		slices.Sort(lats[i])
		slices.Sort(rates[i])
		s.Calls = len(lats[i])
		s.Rate = rates[i][len(rates[i])/2]
		if len(cpuRates[i]) > 0 {
			slices.Sort(cpuRates[i])
			s.CPURate = cpuRates[i][len(cpuRates[i])/2]
		}
		s.P50, s.P99 = lats[i][s.Calls/2], lats[i][s.Calls*99/100]
	}
	return r, nil
}

func (b *bench) unary(ctx context.Context, callers int) (Result, error) {
	k := b.keys[0]
	req := &toadv1.LookupRequest{Peer: k.Peer, Local: k.Local}
	resp, err := b.lookup.Lookup(ctx, req)
	if err != nil {
		return Result{}, fmt.Errorf("unary: %w", err)
	}
	ereq := grpcecho.Request(req, resp)
	return b.compare(ctx, Result{Case: "unary", Callers: callers, Unit: "calls"}, 1,
		func(ctx context.Context, i int) error {
			k := b.keys[i%len(b.keys)]
			_, err := b.lookup.Lookup(ctx, &toadv1.LookupRequest{Peer: k.Peer, Local: k.Local})
			return err
		},
		func(ctx context.Context, _ int) error {
			_, err := b.tester.UnaryCall(ctx, ereq)
			return err
		})
}

func (b *bench) batch(ctx context.Context, callers int) (Result, error) {
	n := b.cfg.Batch
	// Each caller asks for its own stretch of the table.
	reqs := make([]*toadv1.BatchLookupRequest, len(b.keys)/n)
	for i := range reqs {
		reqs[i] = &toadv1.BatchLookupRequest{Keys: b.keys[i*n : (i+1)*n]}
	}
	resp, err := b.lookup.BatchLookup(ctx, reqs[0])
	if err != nil {
		return Result{}, fmt.Errorf("batch: %w", err)
	}
	ereq := grpcecho.Request(reqs[0], resp)
	return b.compare(ctx, Result{Case: "batch", Callers: callers, Unit: "lookups"}, n,
		func(ctx context.Context, i int) error {
			resp, err := b.lookup.BatchLookup(ctx, reqs[i%len(reqs)])
			if err == nil && (len(resp.GetResults()) != n || !resp.GetResults()[n-1].GetFound()) {
				err = fmt.Errorf("%d results of %d, the last found: %v", len(resp.GetResults()), n, resp.GetResults()[n-1].GetFound())
			}
			return err
		},
		func(ctx context.Context, _ int) error {
			_, err := b.tester.UnaryCall(ctx, ereq)
			return err
		})
}

func (b *bench) stream(ctx context.Context) (Result, error) {
	n := b.cfg.Batch
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := b.lookup.Watch(wctx, &toadv1.WatchRequest{})
	if err != nil {
		return Result{}, fmt.Errorf("stream: %w", err)
	}
	if _, err := w.Header(); err != nil { // subscribed: every event from now on arrives
		return Result{}, fmt.Errorf("stream: %w", err)
	}
	size := 0
	watch := func(context.Context, int) error {
		for range n {
			r := connection(b.next) // a new connection, or the table says nothing
			b.next++
			b.table.Observe(&r)
		}
		for range n {
			ev, err := w.Recv()
			if err != nil {
				return err
			}
			if ev.GetType() != toadv1.EventType_EVENT_TYPE_OPEN {
				return fmt.Errorf("event %v: the watch buffer is too small", ev)
			}
			size = proto.Size(ev)
		}
		return nil
	}
	if err := watch(ctx, 0); err != nil {
		return Result{}, fmt.Errorf("stream: %w", err)
	}
	body := grpcecho.Sized(size, func(n int) proto.Message {
		return &testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, n)}}
	})
	params := make([]*testgrpc.ResponseParameters, n)
	for i := range params {
		params[i] = &testgrpc.ResponseParameters{Size: int32(body)}
	}
	ereq := &testgrpc.StreamingOutputCallRequest{ResponseParameters: params}
	return b.compare(ctx, Result{Case: "stream", Callers: 1, Unit: "events"}, n, watch,
		func(ctx context.Context, _ int) error { return grpcecho.Stream(ctx, b.tester, ereq, n) })
}
