package e2e_test

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toad-project/toad/internal/fullnat"
)

// nginxRun is one measured run of nginx: connections per second and the
// latency of each, from the client's connect to the server's close.
type nginxRun struct {
	rate      float64
	latency   []time.Duration
	fallbacks int // connections the library gave the proxy's address
}

// measureNginx runs n conversations with the nginx already listening, par
// at once, and checks each answer with want.
func (b *preloadBed) measureNginx(tb testing.TB, n, par int, want func(peer netip.AddrPort) string) nginxRun {
	tb.Helper()
	client4, _ := clientAddrs(0)
	lat := make([]time.Duration, n)
	var (
		wg     sync.WaitGroup
		wrong  atomic.Int64
		mu     sync.Mutex
		errs   []error
		next   = make(chan int, n)
		record = func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	)
	for i := range n {
		next <- i
	}
	close(next)
	start := time.Now()
	for range par {
		wg.Go(func() {
			for i := range next {
				t0 := time.Now()
				c, err := dial(b.client, client4, vip4)
				if err != nil {
					record(err)
					continue
				}
				peer := addrPort(c.LocalAddr())
				got, err := nginx.ask(nil, c, i)
				lat[i] = time.Since(t0)
				if err != nil {
					record(err)
				} else if w := want(peer); !samePeer(got, w, !strings.HasPrefix(w, proxyAddr4.String())) {
					// The library's default wait is short: on a loaded
					// machine toad may answer too late, and the program
					// gets the proxy. Counted, not failed.
					if strings.HasPrefix(got, proxyAddr4.String()+":") {
						wrong.Add(1)
					} else {
						record(fmt.Errorf("connection %d: nginx said %q, want %q", i, got, w))
					}
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if len(errs) > 0 {
		tb.Fatalf("%d of %d conversations failed; the first: %v", len(errs), n, errs[0])
	}
	return nginxRun{rate: float64(n) / took.Seconds(), latency: lat, fallbacks: int(wrong.Load())}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func p50(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkPreloadNginx runs the same unmodified nginx (master and two
// workers) behind the FULLNAT proxy, with and without the preload
// library, alternately in one run, b.N connections per run, 8 at a time:
// the connections per second of each, their ratio (the goal: 0.95 or
// more), and the median latency of a connection from connect to the
// server's close, whose difference is what the library adds to each
// accept (the goal: 50 µs or less at p50). Every answer is checked: the
// real client with the library, the proxy without.
//
//	go test -run '^$' -bench PreloadNginx -benchtime 3000x ./e2e/
func BenchmarkPreloadNginx(b *testing.B) {
	const (
		rounds = 5 // pairs of runs, kernel then library
		par    = 8
		warmup = 200
	)
	bed := newPreloadBed(b)
	bed.portSpan = 60000 - bed.nextPort // one proxy, no 4-tuple reused
	bed.proxyTo(b, nginx.addr(), fullnat.LVS)
	toProxy := func(netip.AddrPort) string { return nginx.want(netip.AddrPortFrom(proxyAddr4, 0)) }
	n := max(b.N, 100)
	if total := rounds * 2 * (n + warmup); total > int(bed.portSpan) {
		b.Fatalf("%d connections would reuse the proxy's %d ports: lower -benchtime", total, bed.portSpan)
	}
	before := bed.preloadStats(b)
	var rates [2][]float64
	fallbacks := 0
	var lats [2][]time.Duration
	// toad's CPU time and context switches over the measured runs of
	// each mode: without the library it only captures; with it, it
	// also publishes to the shared table and answers the socket.
	var toadCPU [2]time.Duration
	var toadSwitches [2]int64
	for range rounds {
		for mode, preload := range []bool{false, true} {
			want := toProxy
			if preload {
				want = nginx.want
			}
			var env []string // the library's default settings
			if preload {
				env = bed.defaultEnv()
			}
			p := nginx.start(b, bed, env)
			bed.measureNginx(b, warmup, par, want)
			cpu0, sw0 := usage(b, bed.toad)
			r := bed.measureNginx(b, n, par, want)
			cpu1, sw1 := usage(b, bed.toad)
			toadCPU[mode] += cpu1 - cpu0
			toadSwitches[mode] += sw1 - sw0
			p.Stop(stopTimeout)
			rates[mode] = append(rates[mode], r.rate)
			fallbacks += r.fallbacks
			lats[mode] = append(lats[mode], p50(r.latency))
		}
	}
	after := bed.preloadStats(b)
	d := func(k string) uint64 { return after[k] - before[k] }
	b.Logf("library calls answered %d, over the socket %d (found %d), fallbacks %d",
		d("preload_getname_toa_ok"), d("preload_lookups"), d("preload_lookups_found"), d("preload_fallbacks"))
	// Each round's runs are neighbours in time: their ratio and
	// difference see the same load, which a shared machine changes.
	var ratios []float64
	var added []float64
	for i := range rounds {
		ratios = append(ratios, rates[1][i]/rates[0][i])
		added = append(added, float64((lats[1][i] - lats[0][i]).Microseconds()))
	}
	b.ReportMetric(median(rates[0]), "kernel-conns/s")
	b.ReportMetric(median(rates[1]), "preload-conns/s")
	b.ReportMetric(median(ratios), "conns/s-ratio")
	b.ReportMetric(float64(p50(lats[0]).Microseconds()), "kernel-p50-µs")
	b.ReportMetric(float64(p50(lats[1]).Microseconds()), "preload-p50-µs")
	b.ReportMetric(median(added), "added-p50-µs")
	b.ReportMetric(float64(fallbacks)/float64(rounds*n), "fallback-fraction")
	conns := float64(rounds * n)
	b.ReportMetric(float64(toadCPU[0].Microseconds())/conns, "toad-capture-cpu-µs/conn")
	b.ReportMetric(float64(toadCPU[1].Microseconds())/conns, "toad-preload-cpu-µs/conn")
	b.ReportMetric(float64(toadSwitches[0])/conns, "toad-capture-sleeps/conn")
	b.ReportMetric(float64(toadSwitches[1])/conns, "toad-preload-sleeps/conn")
	b.ReportMetric(0, "ns/op")
	if fallbacks > rounds*n/10 {
		b.Errorf("%d of %d connections got the proxy's address with the library: toad answered too late", fallbacks, rounds*n)
	}
	b.Logf("%d connections × %d rounds, %d at a time: conns/s kernel %.0f, library %.0f, ratios %.3f; p50 kernel %v, library %v, added µs %v",
		n, rounds, par, rates[0], rates[1], ratios, lats[0], lats[1], added)
}
