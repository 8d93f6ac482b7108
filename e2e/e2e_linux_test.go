package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/toad-project/toad/api/client"
	"github.com/toad-project/toad/internal/cputime"
	"github.com/toad-project/toad/internal/fullnat"
	"github.com/toad-project/toad/internal/privtest"
	"github.com/toad-project/toad/internal/testbed"
	"github.com/toad-project/toad/toa"
)

// perClient is how many connections each client namespace opens at once
// in a scenario.
const perClient = 100

// scenario is one proxy setup: which TOA, in which segments, where among
// the options, over which address families.
type scenario struct {
	name      string
	dialect   toa.Dialect
	placement fullnat.Placement
	position  fullnat.Position
	clients6  bool // IPv6 clients, else IPv4
	origin6   bool // an IPv6 origin, else IPv4
}

var scenarios = []scenario{
	{"200/8 in SYN (LVS, Tencent)", toa.Kind200V4, fullnat.SYN, fullnat.AfterHeader, false, false},
	{"254/8 in final ACK and early data only (DPVS 1.9.6+)", toa.Kind254V4, fullnat.DPVS, fullnat.AfterHeader, false, false},
	{"254/20 IPv6 clients through IPv4 proxy (DPVS FNAT64)", toa.Kind254V6, fullnat.DPVS, fullnat.AfterHeader, true, false},
	{"253/20 over IPv6 (Alibaba LVS)", toa.Kind253V6, fullnat.LVS, fullnat.AfterHeader, true, true},
	{"28/7 no port, after options (Alibaba CDN)", toa.Kind28V4, fullnat.SYN | fullnat.Data, fullnat.AfterOptions, false, false},
	{"200/8 in final ACK after options (JD jupiter)", toa.Kind200V4, fullnat.ACK, fullnat.AfterOptions, false, false},
}

// measure is what one run measured.
type measure struct {
	name    string
	conns   int
	took    time.Duration   // to open them all, each through its first round trip
	latency []time.Duration // from accept to the real client, per connection
	cpu     time.Duration   // toad's, over the run
}

func (m *measure) String() string {
	return fmt.Sprintf("%4d conns in %6.0fms: %5.0f conns/s; accept→answer p50 %6.2fms p99 %6.2fms; toad CPU %4.0fms = %5.1f ms/1000 conns",
		m.conns, ms(m.took), float64(m.conns)/m.took.Seconds(), ms(percentile(m.latency, 50)), ms(percentile(m.latency, 99)),
		ms(m.cpu), ms(m.cpu)*1000/float64(m.conns))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// cpu returns toad's CPU time so far.
func (b *bed) cpu(t testing.TB) time.Duration {
	t.Helper()
	d, err := b.toad.CPU()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestEndToEnd resolves hundreds of concurrent connections per proxy
// setup, each to its true client; then shows an attacker's forged TOAs
// answered with nothing while proxied connections keep working, and
// connections surviving a restart of toad. Its log reports connections per
// second, the latency from accept to the real client, and toad's CPU per
// thousand connections.
func TestEndToEnd(t *testing.T) {
	b := newBed(t)
	if testbed.Race {
		t.Log("toad is built with the race detector: its CPU figures are inflated")
	}
	var runs []*measure
	nextPort := uint16(10000)
	// A fresh range of proxy ports per run, so that no 4-tuple of an
	// earlier run comes back (TestProxyPortReuse is about that).
	ports := func() (lo, hi uint16) {
		lo = nextPort
		nextPort += 1000
		return lo, lo + 999
	}

	for i, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			srv, origin, peer := b.srv4, origin4, proxyAddr4
			if sc.origin6 {
				srv, origin, peer = b.srv6, origin6, proxyAddr6
			}
			vip := vip4
			if sc.clients6 {
				vip = vip6
			}
			srv.drain()
			cfg := fullnat.Config{
				VIPs:       []netip.AddrPort{vip4, vip6},
				Origin:     origin,
				ProxyAddr4: proxyAddr4,
				ProxyAddr6: proxyAddr6,
				Placement:  sc.placement,
				Position:   sc.position,
				Device:     fmt.Sprintf("toadp%d", i),
			}
			cfg.PortMin, cfg.PortMax = ports()
			if toa.BuiltinLayout(sc.dialect).IPv6() {
				cfg.TOA6 = fullnat.Option{Dialect: sc.dialect}
			} else {
				cfg.TOA4 = fullnat.Option{Dialect: sc.dialect}
			}
			want := func(local, _ netip.AddrPort) netip.AddrPort { return local }
			if !toa.BuiltinLayout(sc.dialect).HasPort() {
				want = func(local, _ netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(local.Addr(), 0) }
			}

			cpu := b.cpu(t)
			f := testbed.Proxy(t, b.proxy, cfg)
			conns, took := open(t, b.clientDialers(vip, perClient))
			answers := srv.collect(t, len(conns))
			m := &measure{name: sc.name, conns: len(conns), took: took, cpu: b.cpu(t) - cpu}
			check(t, conns, answers, peer, want, nil)
			finish(t, srv, conns)
			for _, a := range answers {
				m.latency = append(m.latency, a.latency)
			}
			runs = append(runs, m)
			t.Logf("%v; proxy %+v", m, f.Stats())
		})
	}

	t.Run("forged TOAs from outside the trusted proxies", func(t *testing.T) {
		// Proxied clients and the attacker at the same time. The attacker
		// dials the origin through a FULLNAT proxy of its own that puts a
		// 200/8 TOA in every segment it may, naming client0's address
		// (which the attacker's clients use), and dials it directly too.
		const forged, direct = 30, 10
		b.srv4.drain()
		cfg := dpvsProxy("toadp-atk")
		cfg.PortMin, cfg.PortMax = ports()
		victim, _ := clientAddrs(0)
		cpu := b.cpu(t)
		testbed.Proxy(t, b.proxy, cfg)
		evil := testbed.Proxy(t, b.attack, attackersProxy(origin4, "toadatk0"))
		untrusted := b.stats(t).GetTable().GetUntrusted()

		ds := append(b.clientDialers(vip4, perClient),
			dialer{ns: b.attack, from: victim, to: attackerVIP, n: forged},
			dialer{ns: b.attack, from: attacker4, to: origin4, n: direct})
		conns, _ := open(t, ds)
		answers := b.srv4.collect(t, len(conns))

		byDst := make(map[netip.AddrPort][]*conn)
		for _, c := range conns {
			dst := addrPort(c.RemoteAddr())
			byDst[dst] = append(byDst[dst], c)
		}
		byPeer := split(answers)
		same := func(local, _ netip.AddrPort) netip.AddrPort { return local }
		peer := func(_, peer netip.AddrPort) netip.AddrPort { return peer }
		t.Run("proxied", func(t *testing.T) {
			check(t, byDst[vip4], byPeer[proxyAddr4], proxyAddr4, same, nil)
		})
		t.Run("forged", func(t *testing.T) {
			check(t, byDst[attackerVIP], byPeer[attackerProxy], attackerProxy, peer, client.ErrNotFound)
		})
		t.Run("direct", func(t *testing.T) {
			check(t, byDst[origin4], byPeer[attacker4], attacker4, peer, client.ErrNotFound)
		})
		finish(t, b.srv4, conns)

		if st := evil.Stats(); st.TOAs < forged {
			t.Errorf("the attacker's proxy inserted %d TOAs, want at least %d (one per connection)", st.TOAs, forged)
		}
		// Each forged connection's SYN alone carried a TOA.
		if got := b.stats(t).GetTable().GetUntrusted() - untrusted; got < forged {
			t.Errorf("toad counted %d untrusted TOAs, want at least %d", got, forged)
		} else {
			t.Logf("toad counted %d untrusted TOAs from %d forged connections", got, forged)
		}
		// The attacker's connections are answered not found as soon as
		// the capture has caught up; the proxied ones are measured.
		var lat []time.Duration
		for _, a := range byPeer[proxyAddr4] {
			lat = append(lat, a.latency)
		}
		t.Logf("%d proxied connections beside the attacker: accept→answer p50 %.2fms p99 %.2fms; toad CPU %.0fms",
			len(lat), ms(percentile(lat, 50)), ms(percentile(lat, 99)), ms(b.cpu(t)-cpu))
	})

	t.Run("toad restarted with connections open", func(t *testing.T) {
		// The TOA rides in the final ACK and early data only, and the origin
		// has answered by the time toad stops: nothing the connections send
		// afterwards carries it, so only toad's state directory can tell
		// who they are once it is back.
		const held, after = 40, 20
		b.srv4.drain()
		cfg := fullnat.Config{
			VIPs:       []netip.AddrPort{vip4, vip6},
			Origin:     origin4,
			ProxyAddr4: proxyAddr4,
			ProxyAddr6: proxyAddr6,
			TOA4:       fullnat.Option{Dialect: toa.Kind254V4},
			TOA6:       fullnat.Option{Dialect: toa.Kind254V6},
			Placement:  fullnat.DPVS,
			Device:     "toadp-rst",
		}
		cfg.PortMin, cfg.PortMax = ports()
		testbed.Proxy(t, b.proxy, cfg)
		same := func(local, _ netip.AddrPort) netip.AddrPort { return local }

		conns, _ := open(t, append(b.clientDialers(vip4, held), b.clientDialers(vip6, held)...))
		byClient := check(t, conns, b.srv4.collect(t, len(conns)), proxyAddr4, same, nil)
		if t.Failed() {
			return
		}

		if err := b.toad.Stop(stopTimeout); err != nil {
			t.Fatalf("stop toad: %v\n%s", err, b.toad.Log())
		}
		snaps, err := filepath.Glob(filepath.Join(b.stateDir(), "snapshot-*"))
		if err != nil || len(snaps) != 1 {
			t.Fatalf("toad stopped: snapshots in %s: %v, %v (want one, written by the clean stop)", b.stateDir(), snaps, err)
		}
		if fi, err := os.Stat(snaps[0]); err != nil || fi.Size() == 0 {
			t.Fatalf("toad stopped: snapshot %s: %v (want a file that is not empty)", snaps[0], err)
		}
		// The new toad lives as long as this subtest, which comes last; it
		// too must stop cleanly.
		b.toad = testbed.StartToad(t, b.origin, b.bin, b.args...)

		ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
		defer cancel()
		wrong := &mistakes{t: t}
		for _, c := range conns {
			a := byClient[c.local]
			got, err := b.api.Lookup(ctx, a.peer, a.local)
			if err != nil || got.Client != c.local {
				wrong.report("after the restart, Lookup(%v, %v) = %v, %v; want %v", a.peer, a.local, got.Client, err, c.local)
			}
		}
		wrong.summary(len(conns), "connections open across the restart unknown after it")

		// The connections themselves never noticed.
		for _, c := range conns[:nClients] {
			if _, err := fmt.Fprintf(c, "still here\n"); err != nil {
				t.Errorf("client %v: write after the restart: %v", c.local, err)
			}
		}
		fresh, _ := open(t, b.clientDialers(vip4, after))
		check(t, fresh, b.srv4.collect(t, len(fresh)), proxyAddr4, same, nil)
		finish(t, b.srv4, fresh, conns)
		t.Logf("%d connections open across the restart resolved from the state directory; %d new ones after it", len(conns), len(fresh))
	})

	total := &measure{name: "all"}
	t.Log("measured: per run, 300 connections opened at once from 3 client namespaces, each through one round trip;")
	t.Log("accept→answer is under that burst, on 2 CPUs shared by clients, proxy, origin and toad:")
	for _, m := range runs {
		t.Logf("  %-55s %v", m.name, m)
		total.conns += m.conns
		total.took += m.took
		total.cpu += m.cpu
		total.latency = append(total.latency, m.latency...)
	}
	if total.conns > 0 {
		t.Logf("  %-55s %v", "all", total)
	}
}

// TestProxyPortReuse has the proxy reuse its ports toward the origin, as
// real proxies do from their pools. The proxy has 300 ports, forgets a
// connection soon after it closes, and hands out ports round-robin: every
// connection of a second run has the 4-tuple of one of a first run's,
// which toad still holds as closing (it answers those for --linger). The
// second run's connections come a few at a time, so the origin's lookup
// right after accept may reach toad before its capture has handed over the
// new handshake. A lookup that finds a closing entry waits for the capture
// to catch up with the moment of the call, so every connection gets its
// own client, never the previous one on its 4-tuple.
func TestProxyPortReuse(t *testing.T) {
	privtest.Require(t, "ip")
	b := newBed(t)
	// One proxy for both runs, so that each connection's last ACK reaches
	// the origin and no socket there still holds a 4-tuple when it comes
	// back. Until the first run's connections are forgotten, the second
	// run's first SYNs find no free port and are sent again a second later.
	cfg := dpvsProxy("")
	cfg.PortMin, cfg.PortMax = 10000, 10000+nClients*perClient-1
	cfg.CloseTimeout = 100 * time.Millisecond
	testbed.Proxy(t, b.proxy, cfg)
	same := func(local, _ netip.AddrPort) netip.AddrPort { return local }
	for _, r := range []struct {
		name string
		at   int // connections per client at once
	}{
		{"first run", perClient},
		{"ports reused", 1},
	} {
		t.Run(r.name, func(t *testing.T) {
			var conns []*conn
			var answers []answer
			for range perClient / r.at {
				cs, _ := open(t, b.clientDialers(vip4, r.at))
				answers = append(answers, b.srv4.collect(t, len(cs))...)
				finish(t, b.srv4, cs)
				conns = append(conns, cs...)
			}
			check(t, conns, answers, proxyAddr4, same, nil)
			st := b.stats(t).GetTable()
			var lat []time.Duration
			for _, a := range answers {
				lat = append(lat, a.latency)
			}
			t.Logf("toad: %d SYNs without TOA, %d 4-tuples reused, %d TOA conflicts; accept→answer p50 %.2fms p99 %.2fms",
				st.GetSynsWithoutToa(), st.GetReused(), st.GetConflicts(), ms(percentile(lat, 50)), ms(percentile(lat, 99)))
		})
	}
}

// BenchmarkConnections measures connections through the testbed with toad
// resolving each at the origin, beside a bare gRPC echo server (a process
// of its own, on a unix socket as toad's) that the origin calls once per
// connection too: right after accept on every other connection, after
// asking toad on the others. The proxy is the toad-proxy command, a process
// of its own. Every iteration opens batch connections at once, spread over
// the client namespaces, each through one round trip, and closes them. The
// TOA rides in the SYN (200/8), known to toad before accept returns, or in
// the final ACK and early data only (254/8, DPVS), or nowhere (the proxy
// inserts none, and toad answers not found).
//
// It reports connections per second; the latency from accept to toad's
// answer (p50, p99) on the connections that asked toad first, and from
// accept to the echo's on the others, and their ratio; CPU time per
// connection of toad and of the echo server (one call each); and the share
// of a core that toad, the proxy and this process (clients and origin)
// used, which names what limits the rate.
//
//	go test -run '^$' -bench BenchmarkConnections -benchtime 2s ./e2e/
func BenchmarkConnections(b *testing.B) {
	bd := newBed(b)
	echo := startEcho(b, bd)
	bd.srv4.withEcho(echo)
	proxyBin := testbed.BuildCommand(b, "github.com/toad-project/toad/cmd/toad-proxy")
	// Tens of thousands of connections leave as many client sockets in
	// TIME_WAIT: let connect() pick ports past them.
	for _, ns := range bd.clients {
		ns.Sysctl(b, "net.ipv4.ip_local_port_range", "1024 65535")
		ns.Sysctl(b, "net.ipv4.tcp_tw_reuse", "1")
	}
	// Each proxy has its own fifth of the ports: a 4-tuple that comes
	// back within toad's linger is TestProxyPortReuse's business, not this
	// benchmark's.
	const share = (65536 - 1024) / 5
	for i, p := range []struct {
		name, toa, placement string
	}{
		{"syn", "200/8", "syn"},
		{"dpvs", "254/8", "ack+data"},
		{"notoa", "none", "syn"},
	} {
		b.Run(p.name, func(b *testing.B) {
			lo := 1024 + i*share
			proxy := testbed.Start(b, bd.proxy, "toad-proxy", proxyBin, "proxying",
				"-vip", vip4.String(), "-origin", origin4.String(), "-proxy-addr", proxyAddr4.String(),
				"-toa", p.toa, "-toa6", "none", "-placement", p.placement,
				"-ports", fmt.Sprintf("%d-%d", lo, lo+share-1), "-device", fmt.Sprintf("toadp%d", i))
			for _, batch := range []int{1, 30} {
				b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
					benchConnections(b, bd, echo, proxy, batch, p.toa != "none")
				})
			}
		})
	}
	// Persistence off, then on, in the same run: toad restarted without
	// its state directory, then with it, 30 connections at once with the
	// TOA in the ACK (DPVS). The "on" case reports the bytes the journal
	// wrote per connection, its compactions included.
	for i, on := range []bool{false, true} {
		name := map[bool]string{false: "persist-off", true: "persist-on"}[on]
		b.Run(name, func(b *testing.B) {
			lo := 1024 + (3+i)*share
			proxy := testbed.Start(b, bd.proxy, "toad-proxy", proxyBin, "proxying",
				"-vip", vip4.String(), "-origin", origin4.String(), "-proxy-addr", proxyAddr4.String(),
				"-toa", "254/8", "-toa6", "none", "-placement", "ack+data",
				"-ports", fmt.Sprintf("%d-%d", lo, lo+share-1), "-device", fmt.Sprintf("toadp%d", 3+i))
			b.Run("batch=30", func(b *testing.B) {
				if err := bd.toad.Stop(stopTimeout); err != nil {
					b.Fatalf("stop toad: %v\n%s", err, bd.toad.Log())
				}
				bd.toad = testbed.StartToad(b, bd.origin, bd.bin, bd.argsPersisting(on)...)
				benchConnections(b, bd, echo, proxy, 30, true)
			})
		})
	}
}

func benchConnections(b *testing.B, bd *bed, echo *echoClient, proxy *testbed.Process, batch int, withTOA bool) {
	var ds []dialer
	for k, d := range bd.clientDialers(vip4, 0) {
		d.n = batch / nClients
		if k < batch%nClients {
			d.n++
		}
		ds = append(ds, d)
	}
	var lat, echoLat []time.Duration
	n := 0
	journalBytes := func() uint64 { return bd.stats(b).GetJournal().GetBytes() }
	journal0 := journalBytes()
	toad0, toadSw0 := usage(b, bd.toad)
	echo0, echoSw0 := usage(b, echo.proc)
	proxy0, _ := usage(b, proxy)
	self0 := cputime.Process()
	for b.Loop() {
		conns, _ := open(b, ds)
		for _, a := range bd.srv4.collect(b, len(conns)) {
			want, wantErr := a.claimed, error(nil)
			if !withTOA {
				want, wantErr = a.peer, client.ErrNotFound
			}
			if a.proto != nil || a.echoErr != nil || !errors.Is(a.err, wantErr) || a.said != want {
				b.Fatalf("client %v: RemoteAddr said %v, lookup error %v, echo error %v, conversation %v; want %v, %v",
					a.claimed, a.said, a.err, a.echoErr, a.proto, want, wantErr)
			}
			if a.echoFirst {
				echoLat = append(echoLat, a.echoLatency)
			} else {
				lat = append(lat, a.latency)
			}
		}
		finish(b, bd.srv4, conns)
		n += len(conns)
	}
	elapsed := b.Elapsed()
	toad1, toadSw1 := usage(b, bd.toad)
	echo1, echoSw1 := usage(b, echo.proc)
	proxy1, _ := usage(b, proxy)
	toadCPU, echoCPU, proxyCPU, selfUsed := toad1-toad0, echo1-echo0, proxy1-proxy0, cputime.Process()-self0
	toadSw, echoSw := toadSw1-toadSw0, echoSw1-echoSw0
	if j := bd.stats(b).GetJournal(); j != nil {
		b.ReportMetric(float64(j.GetBytes()-journal0)/float64(n), "journal-B/conn")
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	share := func(d time.Duration) float64 { return 100 * float64(d) / float64(elapsed) }
	b.ReportMetric(float64(n)/elapsed.Seconds(), "conns/s")
	p50, echo50 := percentile(lat, 50), percentile(echoLat, 50)
	b.ReportMetric(us(p50), "p50-µs")
	b.ReportMetric(us(percentile(lat, 99)), "p99-µs")
	b.ReportMetric(us(echo50), "echo-p50-µs")
	b.ReportMetric(us(percentile(echoLat, 99)), "echo-p99-µs")
	if echo50 > 0 {
		b.ReportMetric(float64(p50)/float64(echo50), "p50/echo")
	}
	b.ReportMetric(us(toadCPU)/float64(n), "toad-cpu-µs/conn")
	b.ReportMetric(us(echoCPU)/float64(n), "echo-cpu-µs/call")
	b.ReportMetric(float64(toadSw)/float64(n), "toad-sleeps/conn")
	b.ReportMetric(float64(echoSw)/float64(n), "echo-sleeps/call")
	b.ReportMetric(share(toadCPU), "toad-cpu-%")
	b.ReportMetric(share(proxyCPU), "proxy-cpu-%")
	b.ReportMetric(share(selfUsed), "bench-cpu-%")
}

// usage returns process p's CPU time and sleeps so far.
func usage(tb testing.TB, p *testbed.Process) (time.Duration, int64) {
	tb.Helper()
	cpu, err := p.CPU()
	if err != nil {
		tb.Fatal(err)
	}
	sleeps, err := p.Sleeps()
	if err != nil {
		tb.Fatal(err)
	}
	return cpu, sleeps
}
