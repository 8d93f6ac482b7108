package e2e_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/toad-project/toad/api/client"
	"github.com/toad-project/toad/internal/apitest"
	"github.com/toad-project/toad/internal/fullnat"
	"github.com/toad-project/toad/internal/netnstest"
	"github.com/toad-project/toad/internal/privtest"
	"github.com/toad-project/toad/internal/testaddr"
	"github.com/toad-project/toad/internal/testbed"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
	"github.com/toad-project/toad/toa"
)

// The testbed's documentation addresses.
var (
	vip4, vip6             = testaddr.VIP4, testaddr.VIP6
	proxyAddr4, proxyAddr6 = testaddr.ProxyAddr4, testaddr.ProxyAddr6
	origin4, origin6       = testaddr.Origin4, testaddr.Origin6
	trusted                = testaddr.Trusted

	attacker4 = netip.MustParseAddr("203.0.113.194")
	// The attacker runs a FULLNAT proxy of its own: clients in its
	// namespace dial attackerVIP, and the origin sees attackerProxy.
	attackerVIP   = netip.MustParseAddrPort("203.0.113.251:80")
	attackerProxy = netip.MustParseAddr("203.0.113.250")
)

// nClients is how many client namespaces the testbed has.
const nClients = 3

// clientAddrs returns client k's addresses.
func clientAddrs(k int) (v4, v6 netip.Addr) {
	return netip.AddrFrom4([4]byte{203, 0, 113, byte(64*k + 2)}),
		netip.MustParseAddr(fmt.Sprintf("2001:db8:c:%d::2", k))
}

// The dialects the scenarios use, as toad serve --dialects takes them.
const dialects = "200/8,254/8,254/20,253/20,28/7"

// Timeouts: nothing in the testbed should come near them.
const (
	// connTimeout bounds a client connection's dial, and each connection's
	// whole life at the origin.
	connTimeout = time.Minute
	// lookupWait is how long the origin's lookups may wait for toad's
	// capture to catch up with them; connections toad does not know (the
	// attacker's) are answered as soon as it has.
	lookupWait = 3 * time.Second
	// collectTimeout bounds the wait for the origin's answers.
	collectTimeout = 30 * time.Second
	stopTimeout    = 15 * time.Second
)

// bed is the testbed:
//
//	client0  eth0 ---- cli0 ─┐
//	client1  eth0 ---- cli1 ─┤
//	client2  eth0 ---- cli2 ─┼─ proxy  org0 ---- eth0  origin
//	attacker eth0 ---- atk0 ─┘
//
//	clientK   203.0.113.(64K+2)/26   2001:db8:c:K::2/64   (cliK: .1, ::1)
//	attacker  203.0.113.194/26                            (atk0: .193)
//	origin    192.0.2.20/24          2001:db8:2::20/64    (org0: .1, ::1)
//
// The proxy namespace routes between all of them; the fullnat forwarder
// running in it owns the VIPs and the proxy's origin-side addresses
// (198.51.100.0/24, 2001:db8:100::/64). Clients reach only the VIPs; the
// attacker reaches the origin directly, from its own address and through
// a forwarder of its own, whose origin-side address 203.0.113.250 is
// outside the trusted ranges. In the origin namespace run the toad command
// (capturing on eth0) and the application, a Go server on origin4 and
// origin6.
type bed struct {
	clients               []*netnstest.NS
	proxy, origin, attack *netnstest.NS

	bin, dir string   // the toad binary; the directory of its socket and state
	args     []string // toad's command line, keeping its table in stateDir
	toad     *testbed.Toad
	api      *client.Client // the test's own: stats and lookups

	srv4, srv6 *origin
}

// newBed builds the testbed and starts toad and the origin's servers.
func newBed(t testing.TB) *bed {
	t.Helper()
	privtest.Require(t, "ip")
	b := &bed{
		proxy:  netnstest.New(t, "e2e-p"),
		origin: netnstest.New(t, "e2e-o"),
		attack: netnstest.New(t, "e2e-a"),
	}
	for k := range nClients {
		c := netnstest.New(t, "e2e-c")
		b.clients = append(b.clients, c)
		linkClient(t, c, b.proxy, k)
	}
	testbed.LinkOrigin(t, b.proxy, b.origin, originToAttacker)
	linkAttacker(t, b.attack, b.proxy)

	b.bin = testbed.BuildToad(t)
	// t.TempDir's path holds the test's name: too long for a unix socket.
	dir, err := os.MkdirTemp("", "toad-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	b.dir = dir
	b.args = []string{"serve",
		"--interface", "eth0",
		"--socket", filepath.Join(dir, "toad.sock"),
		"--listen", "127.0.0.1:0",
		"--trusted-proxies", trusted,
		"--dialects", dialects,
		"--state-dir", b.stateDir(),
		"--drain", "0s",
	}
	b.toad = testbed.StartToad(t, b.origin, b.bin, b.args...)
	// toad may restart under the clients' feet: calls wait for it rather
	// than fail at once.
	ready := client.WithDialOptions(grpc.WithDefaultCallOptions(grpc.WaitForReady(true)))
	b.api = apitest.Client(t, b.socket(), ready, client.WithWait(0))
	app := apitest.Client(t, b.socket(), ready, client.WithWait(lookupWait))
	b.srv4 = startOrigin(t, b.origin, origin4, app)
	b.srv6 = startOrigin(t, b.origin, origin6, app)
	return b
}

// linkClient joins client k's eth0 to the proxy's cliK, each end with
// its addresses of client k's /26 and /64, and routes the VIPs' ranges
// from the client through the proxy.
func linkClient(t testing.TB, c, proxy *netnstest.NS, k int) {
	t.Helper()
	dev := fmt.Sprintf("cli%d", k)
	netnstest.Veth(t, c, "eth0", proxy, dev)
	a4, a6 := clientAddrs(k)
	gw4, gw6 := a4.Prev(), a6.Prev()
	c.IP(t,
		fmt.Sprintf("addr add %v/26 dev eth0", a4),
		fmt.Sprintf("addr add %v/64 dev eth0 nodad", a6),
		fmt.Sprintf("route add 198.51.100.0/24 via %v", gw4),
		fmt.Sprintf("route add 2001:db8:100::/64 via %v", gw6))
	proxy.IP(t,
		fmt.Sprintf("addr add %v/26 dev %s", gw4, dev),
		fmt.Sprintf("addr add %v/64 dev %s nodad", gw6, dev))
}

// originToAttacker is the origin's route back to the attacker, an extra
// command for testbed.LinkOrigin.
const originToAttacker = "route add 203.0.113.192/26 via 192.0.2.1"

// linkAttacker joins the attacker's eth0 to the proxy's atk0. The
// attacker claims to be client 0, on its own loopback, and forwards for
// its own FULLNAT proxy, whose origin-side address the proxy routes to it.
func linkAttacker(t testing.TB, attack, proxy *netnstest.NS) {
	t.Helper()
	netnstest.Veth(t, attack, "eth0", proxy, "atk0")
	proxy.IP(t,
		"addr add 203.0.113.193/26 dev atk0",
		fmt.Sprintf("route add %v/32 via %v", attackerProxy, attacker4))
	victim, _ := clientAddrs(0)
	attack.IP(t,
		fmt.Sprintf("addr add %v/26 dev eth0", attacker4),
		fmt.Sprintf("addr add %v/32 dev lo", victim),
		"route add 192.0.2.0/24 via 203.0.113.193")
	attack.Sysctl(t, "net.ipv4.ip_forward", "1")
}

// dpvsProxy is the proxy of the single-VIP scenarios, on device dev:
// IPv4 clients to origin4, their TOAs of kind 254 in DPVS's placement.
func dpvsProxy(dev string) fullnat.Config {
	return fullnat.Config{
		VIPs:       []netip.AddrPort{vip4},
		Origin:     origin4,
		ProxyAddr4: proxyAddr4,
		TOA4:       fullnat.Option{Dialect: toa.Kind254V4},
		Placement:  fullnat.DPVS,
		Device:     dev,
	}
}

// attackersProxy is the attacker's own FULLNAT proxy to origin, on device
// dev: from attackerVIP, connecting from attackerProxy (outside the
// trusted ranges), with TOAs of kind 200 that name whoever dialed it.
func attackersProxy(origin netip.AddrPort, dev string) fullnat.Config {
	return fullnat.Config{
		VIPs:       []netip.AddrPort{attackerVIP},
		Origin:     origin,
		ProxyAddr4: attackerProxy,
		TOA4:       fullnat.Option{Dialect: toa.Kind200V4},
		Placement:  fullnat.LVS,
		Device:     dev,
	}
}

func (b *bed) socket() string { return filepath.Join(b.dir, "toad.sock") }

// stateDir is where toad keeps its table.
func (b *bed) stateDir() string { return filepath.Join(b.dir, "state") }

// argsPersisting returns toad's command line with its state directory,
// or without it (the table in memory alone).
func (b *bed) argsPersisting(on bool) []string {
	if on {
		return b.args
	}
	var args []string
	for i := 0; i < len(b.args); i++ {
		if b.args[i] == "--state-dir" {
			i++
			continue
		}
		args = append(args, b.args[i])
	}
	return args
}

// stats returns toad's counters.
func (b *bed) stats(t testing.TB) *toadv1.GetStatsResponse { return getStats(t, b.api) }

// getStats returns the counters of the toad c calls.
func getStats(t testing.TB, c *client.Client) *toadv1.GetStatsResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
	defer cancel()
	st, err := c.Service().GetStats(ctx, &toadv1.GetStatsRequest{})
	if err != nil {
		t.Fatalf("GetStats: %v", err)
	}
	return st
}

// answer is what the origin learned about one connection.
type answer struct {
	// peer and local are the socket's addresses: peer is the proxy's (or
	// the attacker's).
	peer, local netip.AddrPort
	// said is what the wrapped connection's RemoteAddr reported, err what
	// its LookupErr returned.
	said netip.AddrPort
	err  error
	// claimed is the client socket's own address, as the client wrote it.
	claimed netip.AddrPort
	// latency runs from accept's return to RemoteAddr's.
	latency time.Duration
	// proto is a failure of the conversation itself.
	proto error
	// With an echo server beside toad (origin.withEcho), the origin also
	// calls it once per connection, before asking toad on every other
	// connection (echoFirst), after it on the others. echoLatency runs
	// from accept's return to the echo's answer when echoFirst; latency
	// then includes it and measures nothing.
	echoFirst   bool
	echoLatency time.Duration
	echoErr     error
}

// origin is the application: a Go TCP server whose listener is wrapped by
// toad's client, so that RemoteAddr reports the real client. Per
// connection it asks RemoteAddr right after accept, reads the client's
// "hello <ip:port>", answers "you are <RemoteAddr>", reports an answer,
// and holds the connection until the client closes it.
type origin struct {
	echo    atomic.Pointer[echoClient]
	calls   atomic.Uint64
	ln      net.Listener
	answers chan answer
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closed  chan struct{} // signaled when a connection ends
}

func startOrigin(t testing.TB, ns *netnstest.NS, addr netip.AddrPort, c *client.Client) *origin {
	t.Helper()
	o := &origin{
		answers: make(chan answer, 1<<14),
		stop:    make(chan struct{}),
		conns:   make(map[net.Conn]struct{}),
		closed:  make(chan struct{}, 1),
	}
	var ln net.Listener
	err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr.String())
		return err
	})
	if err != nil {
		t.Fatalf("listen on %v: %v", addr, err)
	}
	o.ln = c.Listener(ln)
	o.wg.Go(func() {
		for {
			conn, err := o.ln.Accept()
			if err != nil {
				return
			}
			accepted := time.Now()
			o.mu.Lock()
			o.conns[conn] = struct{}{}
			o.mu.Unlock()
			o.wg.Go(func() { o.serve(conn, accepted) })
		}
	})
	t.Cleanup(o.close)
	return o
}

func (o *origin) close() {
	close(o.stop)
	o.ln.Close()
	o.mu.Lock()
	for c := range o.conns {
		c.Close()
	}
	o.mu.Unlock()
	o.wg.Wait()
}

func (o *origin) serve(c net.Conn, accepted time.Time) {
	defer func() {
		c.Close()
		o.mu.Lock()
		delete(o.conns, c)
		o.mu.Unlock()
		select {
		case o.closed <- struct{}{}:
		default:
		}
	}()
	tc := c.(*client.Conn)
	var a answer
	echo := o.echo.Load()
	if echo != nil && o.calls.Add(1)%2 == 0 {
		a.echoFirst = true
		a.echoErr = echo.call()
		a.echoLatency = time.Since(accepted)
	}
	said := c.RemoteAddr()
	a.latency = time.Since(accepted)
	if echo != nil && !a.echoFirst {
		a.echoErr = echo.call()
	}
	a.err = tc.LookupErr()
	a.said = addrPort(said)
	a.peer = addrPort(tc.ProxyAddr())
	a.local = addrPort(c.LocalAddr())
	c.SetDeadline(time.Now().Add(connTimeout))
	r := bufio.NewReader(c)
	a.proto = func() error {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("read hello: %w", err)
		}
		claimed, ok := strings.CutPrefix(strings.TrimSpace(line), "hello ")
		if !ok {
			return fmt.Errorf("got %q, want hello <ip:port>", line)
		}
		a.claimed, err = netip.ParseAddrPort(claimed)
		return err
	}()
	select {
	case o.answers <- a:
	case <-o.stop:
		return
	}
	if a.proto != nil {
		return
	}
	if _, err := fmt.Fprintf(c, "you are %v\n", said); err != nil {
		return
	}
	io.Copy(io.Discard, r) // until the client closes
}

// drain discards answers left by an earlier, failed run.
func (o *origin) drain() {
	for {
		select {
		case <-o.answers:
		default:
			return
		}
	}
}

// waitIdle waits until the origin holds no connection: the clients closed
// theirs, and the origin its side.
func (o *origin) waitIdle(t testing.TB) {
	t.Helper()
	deadline := time.NewTimer(collectTimeout)
	defer deadline.Stop()
	for {
		o.mu.Lock()
		n := len(o.conns)
		o.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-o.closed:
		case <-deadline.C:
			t.Fatalf("the origin still holds %d connections the clients closed", n)
		}
	}
}

// collect returns the next n answers.
func (o *origin) collect(t testing.TB, n int) []answer {
	t.Helper()
	deadline := time.NewTimer(collectTimeout)
	defer deadline.Stop()
	out := make([]answer, 0, n)
	for len(out) < n {
		select {
		case a := <-o.answers:
			out = append(out, a)
		case <-deadline.C:
			t.Fatalf("the origin answered %d connections, want %d", len(out), n)
		}
	}
	return out
}

func addrPort(a net.Addr) netip.AddrPort {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// dialer opens n connections from one address of a namespace.
type dialer struct {
	ns   *netnstest.NS
	from netip.Addr
	to   netip.AddrPort
	n    int
}

// clientDialers returns a dialer of n connections per client namespace, to
// vip from the client's address of vip's family.
func (b *bed) clientDialers(vip netip.AddrPort, n int) []dialer {
	var ds []dialer
	for k, ns := range b.clients {
		a4, a6 := clientAddrs(k)
		from := a4
		if vip.Addr().Is6() {
			from = a6
		}
		ds = append(ds, dialer{ns: ns, from: from, to: vip, n: n})
	}
	return ds
}

// conn is one client connection, open until the test closes it.
type conn struct {
	net.Conn
	local netip.AddrPort
	// reply is who the origin said the client is.
	reply netip.AddrPort
}

// open opens every dialer's connections at once, each through its hello
// and the origin's reply, and returns them open (closed when the test ends)
// with how long that took.
func open(t testing.TB, ds []dialer) ([]*conn, time.Duration) {
	t.Helper()
	start := time.Now()
	conns, err := dialAll(ds)
	took := time.Since(start)
	t.Cleanup(func() { closeAll(conns) })
	if err != nil {
		t.Fatal(err)
	}
	return conns, took
}

// dialAll opens every dialer's connections at once, each through its
// hello and the origin's reply, and returns those it opened; the caller
// closes them.
func dialAll(ds []dialer) ([]*conn, error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []*conn
		errs  []error
	)
	for _, d := range ds {
		for range d.n {
			wg.Go(func() {
				c, err := d.open()
				mu.Lock()
				defer mu.Unlock()
				if c != nil {
					conns = append(conns, c)
				}
				if err != nil {
					errs = append(errs, err)
				}
			})
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		return conns, fmt.Errorf("%d of %d connections failed; the first: %w", len(errs), len(errs)+len(conns), errors.Join(errs[:min(len(errs), 5)]...))
	}
	return conns, nil
}

// open dials in d's namespace and runs the conversation's first round.
func (d dialer) open() (*conn, error) {
	var nc net.Conn
	err := d.ns.Do(func() (err error) {
		nd := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(d.from, 0)), Timeout: connTimeout}
		nc, err = nd.Dial("tcp", d.to.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %v from %v: %w", d.to, d.from, err)
	}
	c := &conn{Conn: nc, local: addrPort(nc.LocalAddr())}
	nc.SetDeadline(time.Now().Add(connTimeout))
	if _, err := fmt.Fprintf(nc, "hello %v\n", c.local); err != nil {
		return c, fmt.Errorf("%v: write hello: %w", c.local, err)
	}
	line, err := bufio.NewReader(nc).ReadString('\n')
	if err != nil {
		return c, fmt.Errorf("%v to %v: read the origin's reply: %w", c.local, d.to, err)
	}
	said, ok := strings.CutPrefix(strings.TrimSpace(line), "you are ")
	if c.reply, err = netip.ParseAddrPort(said); !ok || err != nil {
		return c, fmt.Errorf("%v: got %q from the origin, want you are <ip:port>", c.local, line)
	}
	nc.SetDeadline(time.Time{})
	return c, nil
}

func closeAll(conns []*conn) {
	for _, c := range conns {
		c.Close()
	}
}

// finish closes the connections, the clients first, and waits for the
// origin's side to close too, so that no segment of theirs is left for the
// next run's proxy.
func finish(t testing.TB, srv *origin, conns ...[]*conn) {
	t.Helper()
	all := slices.Concat(conns...)
	for _, c := range all {
		c.Conn.(*net.TCPConn).CloseWrite()
	}
	// The origin's FIN reached each client, which acknowledged it.
	for _, c := range all {
		c.SetReadDeadline(time.Now().Add(collectTimeout))
		if n, err := io.Copy(io.Discard, c); n > 0 || err != nil {
			t.Errorf("client %v: read %d bytes and %v after closing, want the origin's FIN", c.local, n, err)
		}
		c.Close()
	}
	srv.waitIdle(t)
}

// check matches the origin's answers with the connections the clients
// opened: one answer per connection, from peer's address, whose RemoteAddr
// is want(the client's own address, the socket's peer) and whose lookup
// error is wantErr. It returns the answers by the client's address.
func check(t testing.TB, conns []*conn, answers []answer, peer netip.Addr, want func(local, peer netip.AddrPort) netip.AddrPort, wantErr error) map[netip.AddrPort]answer {
	t.Helper()
	byClient := make(map[netip.AddrPort]answer, len(answers))
	wrong := &mistakes{t: t}
	report := wrong.report
	for _, a := range answers {
		if a.proto != nil {
			report("origin: connection from %v: %v", a.peer, a.proto)
			continue
		}
		if _, dup := byClient[a.claimed]; dup {
			report("origin: two connections claim %v", a.claimed)
		}
		byClient[a.claimed] = a
	}
	for _, c := range conns {
		a, ok := byClient[c.local]
		w := want(c.local, a.peer)
		switch {
		case !ok:
			report("client %v: the origin never saw it", c.local)
		case a.peer.Addr() != peer:
			report("client %v: the origin's socket saw peer %v, want %v", c.local, a.peer, peer)
		case a.said != w || !errors.Is(a.err, wantErr):
			report("client %v (peer %v): RemoteAddr said %v, lookup error %v; want %v, %v", c.local, a.peer, a.said, a.err, w, wantErr)
		case c.reply != w:
			report("client %v: the origin replied %v, want %v", c.local, c.reply, w)
		}
	}
	if len(answers) != len(conns) {
		report("the origin answered %d connections, the clients opened %d", len(answers), len(conns))
	}
	wrong.summary(len(conns), "connections wrong")
	return byClient
}

// mistakes reports the first ten mistakes a check finds, and counts them
// all: a broken run finds thousands.
type mistakes struct {
	t testing.TB
	n int
}

func (m *mistakes) report(format string, args ...any) {
	m.t.Helper()
	if m.n++; m.n <= 10 {
		m.t.Errorf(format, args...)
	}
}

// summary reports how many of total were wrong, if any were: "N of total
// what".
func (m *mistakes) summary(total int, what string) {
	m.t.Helper()
	if m.n > 0 {
		m.t.Errorf("%d of %d %s", m.n, total, what)
	}
}

// split divides answers by their peer's address.
func split(answers []answer) map[netip.Addr][]answer {
	m := make(map[netip.Addr][]answer)
	for _, a := range answers {
		m[a.peer.Addr()] = append(m[a.peer.Addr()], a)
	}
	return m
}

// percentile returns the p-th percentile (0-100) of ds, which it sorts.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds)-1) * p / 100)
	return ds[i]
}
