package preload_test

import (
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toad-project/toad/api/preload"
	"github.com/toad-project/toad/toa"
)

// scenario is one test of the library's hooks, run under each C library.
type scenario struct {
	name string
	run  func(t *testing.T, lc libc)
}

// TestHooks runs unmodified programs' socket calls (the hookdriver
// program) with the library loaded, against a preload Server answering
// from a real table, over real TCP connections on loopback.
func TestHooks(t *testing.T) {
	dir := built(t)
	for _, lc := range libcs(dir) {
		t.Run(lc.name, func(t *testing.T) {
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) { sc.run(t, lc) })
			}
		})
	}
}

// env is the library's environment for a toad at path: a wait that never
// runs out in these tests (toad answers NOT_FOUND at once for the
// connections a test marks absent).
func env(path string, more ...string) []string {
	return append([]string{"TOAD_PRELOAD_SOCKET=" + path, "TOAD_PRELOAD_WAIT=30s"}, more...)
}

// dialAs connects to the listener at local and makes the table hold
// client for the connection, as its SYN's TOA would; it returns the
// connection's address, the peer the kernel gives the listener.
func (d *driver) dialAs(td *toad, local netip.AddrPort, client toa.Client) netip.AddrPort {
	d.t.Helper()
	_, p := d.dial(local)
	td.insert(p, local, client)
	return p
}

// peerIs runs a call that returns an address and reports an error unless
// the address is want.
func (d *driver) peerIs(want string, format string, args ...any) result {
	d.t.Helper()
	r := d.result(format, args...)
	if r.addr != want {
		d.t.Errorf("%s: %+v, want %s", fmt.Sprintf(format, args...), r, want)
	}
	return r
}

// acceptAsKernel makes n connections to the listener l at local and
// accepts them through the library, reporting an error unless every
// peer is the one the kernel gave.
func (d *driver) acceptAsKernel(l int, local netip.AddrPort, n int) {
	d.t.Helper()
	d.ok("connectn 4 127.0.0.1 127.0.0.1 %d %d", local.Port(), n)
	if got, want := d.do("acceptn %d %d 128", l, n), fmt.Sprintf("ok kernel=%d other=0", n); got != want {
		d.t.Errorf("acceptn: %q, want %q: every peer as the kernel said", got, want)
	}
}

// statsAtExit ends d and returns td's counters once d's library has hung
// up, so that they count all it did.
func (td *toad) statsAtExit(d *driver) preload.Stats {
	td.t.Helper()
	d.exit()
	td.idle()
	return td.srv.Stats()
}

var (
	cli4  = client4("203.0.113.7:51234")
	cli4b = client4("198.51.100.77:1")
	cli6  = client6("[2001:db8::7]:443")
)

var scenarios = []scenario{
	{"accept", func(t *testing.T, lc libc) {
		td, d := setup(t, lc)
		l, local := d.listen(4, "127.0.0.1")
		p1 := d.dialAs(td, local, cli4)
		r := d.result("accept %d 128", l)
		want := result{fd: r.fd, len: "16", addr: inet(4, addrPort(cli4)), kpeer: inet(4, p1), intact: true}
		if r != want {
			t.Errorf("accept: %+v, want %+v", r, want)
		}
		if g := d.result("getpeername %d 128", r.fd); g != want {
			t.Errorf("getpeername: %+v, want %+v", g, want)
		}
		d.dialAs(td, local, cli4b)
		if r := d.peerIs(inet(4, addrPort(cli4b)), "accept4 %d 128", l); r.len != "16" {
			t.Errorf("accept4: %+v, want 16 bytes", r)
		}
		st := td.statsAtExit(d)
		// getpeername is answered from what accept learnt: no lookup.
		if st.Lookups != 2 || st.Found != 2 || st.GetnameOK != 3 {
			t.Errorf("stats %+v, want 2 lookups found and 3 calls answered", st)
		}
	}},

	{"null address", func(t *testing.T, lc libc) {
		td, d := setup(t, lc)
		l, local := d.listen(4, "127.0.0.1")
		d.dialAs(td, local, cli4)
		r := d.result("accept %d -1", l)
		if r.len != "-" {
			t.Fatalf("accept with a NULL address: %+v", r)
		}
		for range 2 {
			d.peerIs(inet(4, addrPort(cli4)), "getpeername %d 128", r.fd)
		}
		if st := td.statsAtExit(d); st.Lookups != 1 || st.GetnameOK != 2 {
			t.Errorf("stats %+v, want 1 lookup (at the first getpeername) and 2 calls answered", st)
		}
	}},

	{"short buffer", func(t *testing.T, lc libc) {
		td, d := setup(t, lc)
		l, local := d.listen(4, "127.0.0.1")
		sa := sockaddr4(addrPort(cli4))
		for _, capacity := range []int{8, 0, 15} {
			p := d.dialAs(td, local, cli4)
			r := d.result("accept %d %d", l, capacity)
			want := result{fd: r.fd, len: "16", addr: "cut:" + hex.EncodeToString(sa[:capacity]), kpeer: inet(4, p), intact: true}
			if r != want {
				t.Errorf("accept with %d bytes: %+v, want %+v", capacity, r, want)
			}
			if g := d.result("getpeername %d 4", r.fd); g.addr != "cut:"+hex.EncodeToString(sa[:4]) || g.len != "16" || !g.intact {
				t.Errorf("getpeername with 4 bytes: %+v, want the first 4 bytes of the client's address", g)
			}
		}
		// A dual-stack socket's address needs 28 bytes: 16 hold a part.
		l6, local6 := d.listen(6, "::")
		d.dialAs(td, local6, cli4)
		sa6 := sockaddr6(addrPort(cli4))
		r := d.result("accept %d 16", l6)
		if r.addr != "cut:"+hex.EncodeToString(sa6[:16]) || r.len != "28" || !r.intact {
			t.Errorf("dual-stack accept with 16 bytes: %+v, want the first 16 of the client's 28", r)
		}
		d.exit()
	}},

	{"ipv4 client on ipv6 socket", func(t *testing.T, lc libc) {
		td, d := setup(t, lc)
		l, local := d.listen(6, "::")
		p := d.dialAs(td, local, cli4)
		r := d.result("accept %d 128", l)
		if want := (result{fd: r.fd, len: "28", addr: inet(6, addrPort(cli4)), kpeer: inet(6, p), intact: true}); r != want {
			t.Errorf("accept: %+v, want %+v", r, want)
		}
		// A dialect without a port gives port 0, never the proxy's.
		d.dialAs(td, local, toa.Client{Dialect: toa.Kind28V4, Addr: netip.MustParseAddr("192.0.2.9")})
		d.peerIs("inet6:[::ffff:192.0.2.9]:0", "accept %d 128", l)
		// An IPv6 peer and client on the same socket.
		l6, local6 := d.listen(6, "::1")
		d.dialAs(td, local6, cli6)
		if r := d.peerIs(inet(6, addrPort(cli6)), "accept %d 128", l6); r.len != "28" {
			t.Errorf("IPv6 client: %+v, want 28 bytes", r)
		}
		d.exit()
	}},

	{"ipv6 client on ipv4 socket", func(t *testing.T, lc libc) {
		td, d := setup(t, lc)
		l, local := d.listen(4, "127.0.0.1")
		d.dialAs(td, local, cli6)
		if r := d.peerIs(inet(6, addrPort(cli6)), "accept %d 128", l); r.len != "28" || !r.intact {
			t.Errorf("room for 28 bytes: %+v, want 28 bytes and the rest intact", r)
		}
		p2 := d.dialAs(td, local, cli6)
		r := d.result("accept %d 16", l)
		if want := (result{fd: r.fd, len: "16", addr: inet(4, p2), kpeer: inet(4, p2), intact: true}); r != want {
			t.Errorf("room for 16 bytes: %+v, want the kernel's address %+v", r, want)
		}
		d.peerIs(inet(6, addrPort(cli6)), "getpeername %d 128", r.fd)
		if st := td.statsAtExit(d); st.GetnameMismatch != 1 || st.GetnameOK != 2 {
			t.Errorf("stats %+v, want 1 mismatch and 2 answered", st)
		}
	}},

	{"ipv6 client on ipv4 socket, TOAD_PRELOAD_FAMILY=socket", func(t *testing.T, lc libc) {
		// For programs that size a peer's text by the listener's family
		// (nginx): the kernel's address, whatever the buffer holds; the
		// NAT64 getsockopt still names the client.
		td := startToad(t, nil)
		d := startDriver(t, lc, true, env(td.path, "TOAD_PRELOAD_FAMILY=socket")...)
		l, local := d.listen(4, "127.0.0.1")
		p := d.dialAs(td, local, cli6)
		r := d.result("accept %d 128", l)
		if want := (result{fd: r.fd, len: "16", addr: inet(4, p), kpeer: inet(4, p), intact: true}); r != want {
			t.Errorf("accept: %+v, want the kernel's address %+v", r, want)
		}
		d.peerIs(inet(4, p), "getpeername %d 128", r.fd)
		if got := d.do("getsockopt %d 20", r.fd); got != "ok len=20 addr=[2001:db8::7]:443" {
			t.Errorf("getsockopt 4096: %q, want the client", got)
		}
		// An IPv4 client on the same socket is given as ever.
		d.dialAs(td, local, cli4)
		d.peerIs(inet(4, addrPort(cli4)), "accept %d 128", l)
		if st := td.statsAtExit(d); st.GetnameMismatch != 2 || st.GetnameOK != 2 {
			t.Errorf("stats %+v, want 2 mismatches (accept, getpeername) and 2 answered (getsockopt, the IPv4 client)", st)
		}
	}},

	{"getsockopt 4096", func(t *testing.T, lc libc) {
		td, d := setup(t, lc)
		ctl := startDriver(t, lc, false)
		l, local := d.listen(4, "127.0.0.1")
		accept := func(c toa.Client, capacity int) (fd, client int) {
			cfd, p := d.dial(local)
			if c.IsZero() {
				td.markAbsent(p, local)
			} else {
				td.insert(p, local, c)
			}
			return d.result("accept %d %d", l, capacity).fd, cfd
		}
		nat64, out := accept(cli6, 128)
		for _, tc := range []struct{ optlen, want string }{
			{"20", "ok len=20 addr=[2001:db8::7]:443"},
			{"64", "ok len=20 addr=[2001:db8::7]:443"},
			{"19", "err EINVAL"},
			{"-1", "err EINVAL"},
		} {
			if got := d.do("getsockopt %d %s", nat64, tc.optlen); got != tc.want {
				t.Errorf("NAT64 connection, optlen %s: %q, want %q", tc.optlen, got, tc.want)
			}
		}
		v4, _ := accept(cli4, 128)
		if got := d.do("getsockopt %d 20", v4); got != "err EFAULT" {
			t.Errorf("IPv4 client: %q, want err EFAULT", got)
		}
		none, _ := accept(toa.Client{}, 128)
		if got := d.do("getsockopt %d 20", none); got != "err EINVAL" {
			t.Errorf("no client: %q, want err EINVAL", got)
		}
		pending, _ := accept(cli6, -1)
		if got := d.do("getsockopt %d 20", pending); got != "ok len=20 addr=[2001:db8::7]:443" {
			t.Errorf("after accept(NULL): %q, want the client", got)
		}
		// Other options and other sockets go to the kernel.
		if got := d.do("sotype %d", nat64); got != "ok type=1" {
			t.Errorf("SO_TYPE: %q, want ok type=1", got)
		}
		cl, cport := ctl.listen(4, "127.0.0.1")
		ccfd, _ := ctl.connect(4, "127.0.0.1", "127.0.0.1", cport.Port(), 0)
		if got, want := d.do("getsockopt %d 20", out), ctl.do("getsockopt %d 20", ccfd); got != want {
			t.Errorf("outgoing connection: %q, want the kernel's %q", got, want)
		}
		// A connection reset by its peer is not connected any more.
		reset, rfd := accept(cli6, 128)
		d.ok("close %d rst", rfd)
		d.ok("waithup %d", reset)
		if got := d.do("getsockopt %d 20", reset); got != "err ENOTCONN" {
			t.Errorf("reset connection: %q, want err ENOTCONN", got)
		}
		_ = cl
		d.exit()
		ctl.exit()
	}},

	{"not tcp", func(t *testing.T, lc libc) {
		td, d := setup(t, lc)
		ctl := startDriver(t, lc, false)
		for _, cmd := range []string{"udp 4 127.0.0.1", "udp 6 ::1"} {
			if r := d.result("%s", cmd); r.addr != r.kpeer || r.addr == "" {
				t.Errorf("%s: %+v, want the kernel's peer", cmd, r)
			}
		}
		unixLine := func(d *driver) string {
			f := d.ok("unix")
			return strings.Join(f[1:], " ") // without the descriptor number
		}
		if got, want := unixLine(d), unixLine(ctl); got != want {
			t.Errorf("unix socket: %q, want the kernel's %q", got, want)
		}
		// An outgoing connection's peer is the server it dialed.
		_, local := d.listen(4, "127.0.0.1")
		c, _ := d.dial(local)
		d.peerIs(inet(4, local), "getpeername %d 128", c)
		d.exit()
		ctl.exit()
		if st := td.srv.Stats(); st.ConnsAccepted != 0 {
			t.Errorf("the library connected to toad %d times for sockets it must pass through", st.ConnsAccepted)
		}
	}},

	{"fork", func(t *testing.T, lc libc) { forkScenario(t, lc, false) }},
	{"fork, shared table", func(t *testing.T, lc libc) { forkScenario(t, lc, true) }},
	{"threads", func(t *testing.T, lc libc) { threadsScenario(t, lc, false) }},
	{"threads, shared table", func(t *testing.T, lc libc) { threadsScenario(t, lc, true) }},

	{"shared table", func(t *testing.T, lc libc) {
		td, d := setup(t, lc, shared())
		l, local := d.listen(4, "127.0.0.1")
		for i, tc := range []struct {
			client   toa.Client
			capacity int
			want     string
		}{
			{cli4, 128, inet(4, addrPort(cli4))}, // asked over the socket: the table comes with the answer
			{cli4b, 128, inet(4, addrPort(cli4b))},
			{cli6, 128, inet(6, addrPort(cli6))},
			{cli6, 16, ""}, // the kernel's address: no room for the IPv6 client
		} {
			p := d.dialAs(td, local, tc.client)
			td.waitApplied(1)
			want := tc.want
			if want == "" {
				want = inet(4, p)
			}
			if r := d.result("accept %d %d", l, tc.capacity); r.addr != want {
				t.Errorf("accept %d: %+v, want %s", i, r, want)
			}
		}
		d.dialAs(td, local, cli4)
		td.waitApplied(1)
		fd := d.result("accept %d -1", l).fd
		d.peerIs(inet(4, addrPort(cli4)), "getpeername %d 128", fd)
		st := td.statsAtExit(d)
		if st.Lookups != 1 || st.GetnameOK != 4 || st.GetnameMismatch != 1 || st.SharedEntries != 5 {
			t.Errorf("stats %+v, want 1 lookup over the socket, 4 answered, 1 mismatch, 5 shared entries", st)
		}
	}},

	{"shared table without closed connections", func(t *testing.T, lc libc) {
		td, d := setup(t, lc, shared())
		l, local := d.listen(4, "127.0.0.1")
		d.dialAs(td, local, cli4)
		td.waitApplied(1)
		d.result("accept %d 128", l) // maps the table
		// A connection that closed before accept: its 4-tuple may be a
		// new connection's already, which only the table can tell.
		p := d.dialAs(td, local, cli4b)
		td.finish(p, local)
		td.waitApplied(2)
		d.peerIs(inet(4, addrPort(cli4b)), "accept %d 128", l)
		if st := td.statsAtExit(d); st.Lookups != 2 || st.SharedEntries != 1 {
			t.Errorf("stats %+v, want the closing connection asked over the socket and 1 shared entry", st)
		}
	}},

	{"shared table of a crashed toad", func(t *testing.T, lc libc) {
		td, d := setup(t, lc, shared())
		l, local := d.listen(4, "127.0.0.1")
		td.shared.StopHeartbeat()
		for range 3 {
			d.dialAs(td, local, cli4)
			td.waitApplied(1)
			d.peerIs(inet(4, addrPort(cli4)), "accept %d 128", l)
		}
		if st := td.statsAtExit(d); st.Lookups != 3 {
			t.Errorf("stats %+v, want every lookup over the socket: the table's heartbeat stopped", st)
		}
	}},

	{"reused descriptors", func(t *testing.T, lc libc) {
		td, d := setup(t, lc)
		l, local := d.listen(4, "127.0.0.1")

		// dup2 puts another socket behind a descriptor the library knows.
		d.dialAs(td, local, cli4)
		a := d.result("accept %d 128", l).fd
		_, p2 := d.dial(local)
		b := atoi(t, d.ok("rawaccept %d", l)[0])
		d.ok("dup2 %d %d", b, a)
		if r := d.result("getpeername %d 128", a); r.addr != inet(4, p2) {
			t.Errorf("after dup2: %+v, want the new socket's peer %s, never %s", r, inet(4, p2), inet(4, addrPort(cli4)))
		}

		// close_range, then a new connection on the same 4-tuple lands on
		// the same descriptor number behind the library's back.
		c3, p3 := d.dial(local)
		td.insert(p3, local, cli4)
		fd := d.result("accept %d 128", l).fd
		d.ok("close %d rst", c3)
		d.ok("waithup %d", fd)
		d.ok("closerange %d %d", fd, fd)
		c4, again := d.connect(4, "127.0.0.1", "127.0.0.1", local.Port(), p3.Port())
		if again != p3 {
			t.Fatalf("reconnected from %v, want the same 4-tuple from %v", again, p3)
		}
		td.insert(p3, local, cli4b) // the new connection's SYN
		if got := atoi(t, d.ok("rawaccept %d", l)[0]); got != fd {
			t.Fatalf("raw accept got descriptor %d, want the reused %d", got, fd)
		}
		if r := d.result("getpeername %d 128", fd); r.addr != inet(4, p3) {
			t.Errorf("same 4-tuple, same descriptor, new socket: %+v, want the kernel's %s", r, inet(4, p3))
		}
		// Accepted through the library, the 4-tuple's next connection gets
		// its own client.
		d.ok("close %d rst", c4)
		d.ok("waithup %d", fd)
		d.ok("closerange %d %d", fd, fd)
		d.connect(4, "127.0.0.1", "127.0.0.1", local.Port(), p3.Port())
		td.insert(p3, local, cli6)
		if r := d.result("accept %d 128", l); r.fd != fd || r.addr != inet(6, addrPort(cli6)) {
			t.Errorf("accept on the reused descriptor: %+v, want descriptor %d and client %s", r, fd, inet(6, addrPort(cli6)))
		}
		if r := d.result("getpeername %d 128", fd); r.addr != inet(6, addrPort(cli6)) {
			t.Errorf("getpeername on the reused descriptor: %+v, want %s", r, inet(6, addrPort(cli6)))
		}
		d.exit()
	}},

	{"untrusted peer", func(t *testing.T, lc libc) {
		td, d := setup(t, lc, trusting("192.0.2.0/24", "2001:db8::/32"))
		l, local := d.listen(4, "127.0.0.1")
		const n = 10
		d.acceptAsKernel(l, local, n)
		st := td.statsAtExit(d)
		if st.Hellos != 1 || st.Lookups != 0 || st.GetnameBypass != n {
			t.Errorf("stats %+v, want 1 hello, no lookup, %d bypassed", st, n)
		}
	}},

	{"toad absent", func(t *testing.T, lc libc) {
		path := socketPath(t)
		d := startDriver(t, lc, true, env(path, "TOAD_PRELOAD_RETRY=1h", "TOAD_PRELOAD_DEBUG=1")...)
		l, local := d.listen(4, "127.0.0.1")
		d.acceptAsKernel(l, local, 20)
		_, p := d.dial(local)
		fd := d.result("accept %d -1", l).fd
		d.peerIs(inet(4, p), "getpeername %d 128", fd)
		d.exit()
		if c := strings.Count(d.stderr.String(), "connect "+path); c != 1 {
			t.Errorf("%d connects to the absent toad, want 1 (the circuit breaker's); log:\n%s", c, d.stderr)
		}
	}},

	{"circuit breaker", func(t *testing.T, lc libc) {
		// Something that accepts and hangs up at once: a broken toad.
		path := socketPath(t)
		ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
		if err != nil {
			t.Fatal(err)
		}
		var conns atomic.Int64
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				conns.Add(1)
				c.Close()
			}
		}()
		d := startDriver(t, lc, true, env(path, "TOAD_PRELOAD_RETRY=1h")...)
		l, local := d.listen(4, "127.0.0.1")
		d.acceptAsKernel(l, local, 20)
		d.exit()
		// The library waited for each connection it made to be hung up on,
		// so every one was accepted by now.
		ln.Close()
		<-done
		if c := conns.Load(); c != 1 {
			t.Errorf("the library connected %d times, want 1 per breaker interval", c)
		}
	}},

	{"toad too slow", func(t *testing.T, lc libc) {
		// A toad that takes connections and never answers: one late
		// HELLO is a loaded machine's noise and must not open the
		// breaker; three in a row do.
		path := socketPath(t)
		const marker = 0xfeedface
		markerSeen := make(chan struct{})
		fake := serveFake(t, path, func(w *wire, h preload.Header, f *preload.Frame, _ *[]uint32) {
			if h.Type == preload.TypeHello && preload.ParseHello(f).PID == marker {
				close(markerSeen)
			}
		})
		d := startDriver(t, lc, true, "TOAD_PRELOAD_SOCKET="+path, "TOAD_PRELOAD_WAIT=5ms", "TOAD_PRELOAD_RETRY=1h")
		l, local := d.listen(4, "127.0.0.1")
		d.acceptAsKernel(l, local, 20)
		d.exit()
		// Connections are accepted in the order they were made: once a
		// last one of ours is served, every one of the library's was.
		c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var f preload.Frame
		(&preload.Hello{PID: marker}).Put(&f, 1)
		if _, err := c.Write(f[:]); err != nil {
			t.Fatal(err)
		}
		select {
		case <-markerSeen:
		case <-time.After(10 * time.Second):
			t.Fatal("the fake toad never read the marker's HELLO")
		}
		if got := fake.conns.Load() - 1; got != 3 {
			t.Errorf("the library connected %d times to a toad that never answers, want 3 (one late HELLO is retried, three open the breaker)", got)
		}
	}},

	{"toad comes back", func(t *testing.T, lc libc) {
		path := socketPath(t)
		d := startDriver(t, lc, true, env(path, "TOAD_PRELOAD_RETRY=1ms")...)
		l, local := d.listen(4, "127.0.0.1")
		_, p := d.dial(local)
		if r := d.result("accept %d 128", l); r.addr != inet(4, p) {
			t.Fatalf("without toad: %+v, want the kernel's %s", r, inet(4, p))
		}
		td := startToad(t, nil, at(path))
		for i := 0; ; i++ {
			if i == 1000 {
				t.Fatal("the library did not come back to toad in 1000 connections")
			}
			d.dialAs(td, local, cli4)
			if r := d.result("accept %d 128", l); r.addr == inet(4, addrPort(cli4)) {
				break
			}
		}
		d.exit()
	}},

	{"waits for the handshake", func(t *testing.T, lc libc) {
		td, started := startSignaling(t)
		d := startDriver(t, lc, true, env(td.path)...)
		l, local := d.listen(4, "127.0.0.1")
		_, p := d.dial(local)
		d.send("accept %d 128", l)
		select {
		case <-started:
		case <-time.After(deadline):
			t.Fatal("the library never asked")
		}
		td.insert(p, local, cli4) // the TOA arrives while accept waits
		if r := parseResult(t, d.read()); r.addr != inet(4, addrPort(cli4)) {
			t.Errorf("accept: %+v, want %s", r, inet(4, addrPort(cli4)))
		}
		d.exit()
	}},

	{"late answers", func(t *testing.T, lc libc) {
		// A toad that answers the first lookup only after the second came:
		// the library gives up on the first and must not take its answer
		// for the second's.
		path := socketPath(t)
		fake := serveFake(t, path, func(w *wire, h preload.Header, f *preload.Frame, held *[]uint32) {
			switch h.Type {
			case preload.TypeHello:
				var out preload.Frame
				(&preload.Welcome{Status: preload.StatusOK, Flags: preload.FlagAllTrusted}).Put(&out, h.ID)
				w.send(&out)
			case preload.TypeLookup:
				*held = append(*held, h.ID)
				if len(*held) < 2 {
					return
				}
				for i, id := range *held {
					c := cli4
					if i > 0 {
						c = cli4b
					}
					var out preload.Frame
					(&preload.Answer{Status: preload.StatusOK, Client: c}).Put(&out, id)
					w.send(&out)
				}
				*held = nil
			}
		})
		// The first lookup must run out of time; the second has a second
		// for an answer sent at once.
		d := startDriver(t, lc, true, "TOAD_PRELOAD_SOCKET="+path, "TOAD_PRELOAD_WAIT=1s")
		l, local := d.listen(4, "127.0.0.1")
		_, p := d.dial(local)
		d.peerIs(inet(4, p), "accept %d 128", l) // the kernel's, once the wait ran out
		d.dial(local)
		d.peerIs(inet(4, addrPort(cli4b)), "accept %d 128", l) // its own answer, not the first's
		d.exit()
		if n := fake.conns.Load(); n != 1 {
			t.Errorf("%d connections, want 1: a timeout keeps the connection", n)
		}
	}},

	{"version mismatch", func(t *testing.T, lc libc) {
		path := socketPath(t)
		fake := serveFake(t, path, func(w *wire, h preload.Header, f *preload.Frame, _ *[]uint32) {
			var out preload.Frame
			(&preload.Welcome{Status: preload.StatusOK, Flags: preload.FlagAllTrusted}).Put(&out, h.ID)
			out[2] = 2 // a toad of a later protocol
			w.send(&out)
		})
		d := startDriver(t, lc, true, env(path, "TOAD_PRELOAD_RETRY=1h", "TOAD_PRELOAD_DEBUG=1")...)
		l, local := d.listen(4, "127.0.0.1")
		d.acceptAsKernel(l, local, 5)
		d.exit()
		if !strings.Contains(d.stderr.String(), "protocol version 2") {
			t.Errorf("the debug log does not name the mismatch:\n%s", d.stderr)
		}
		if n := fake.conns.Load(); n != 1 {
			t.Errorf("%d connections, want 1 per breaker interval", n)
		}
	}},

	{"no re-entry", func(t *testing.T, lc libc) {
		// Another preloaded library whose getsockname calls getpeername,
		// which the library answers by way of getsockname.
		td := startToad(t, nil)
		d := startDriver(t, lc, true, env(td.path, "LD_PRELOAD="+lc.reenter+" "+lc.lib)...)
		l, local := d.listen(4, "127.0.0.1")
		d.dialAs(td, local, cli4)
		fd := d.result("accept %d -1", l).fd
		d.peerIs(inet(4, addrPort(cli4)), "getpeername %d 128", fd)
		d.exit()
	}},

	{"own descriptor", func(t *testing.T, lc libc) {
		td, d := setup(t, lc)
		l, local := d.listen(4, "127.0.0.1")
		d.dialAs(td, local, cli4)
		d.result("accept %d 128", l)
		f := d.ok("ownfds")
		if len(f) != 2 || f[1] != "cloexec=1" {
			t.Errorf("the library's sockets: %v, want one, closed on exec", f)
		}
		d.exit()
	}},
}

// sockaddr4 and sockaddr6 are the bytes of a struct sockaddr_in and
// sockaddr_in6 (the family in host order, the rest in network order).
func sockaddr4(ap netip.AddrPort) []byte {
	b := make([]byte, 16)
	binary.NativeEndian.PutUint16(b, 2)
	binary.BigEndian.PutUint16(b[2:], ap.Port())
	a := ap.Addr().As4()
	copy(b[4:], a[:])
	return b
}

func sockaddr6(ap netip.AddrPort) []byte {
	b := make([]byte, 28)
	binary.NativeEndian.PutUint16(b, 10)
	binary.BigEndian.PutUint16(b[2:], ap.Port())
	a := ap.Addr().As16()
	copy(b[8:], a[:])
	return b
}

// fake is a server of the protocol whose answers a test writes.
type fake struct {
	conns atomic.Int64
}

// serveFake serves path with handle called for every frame received.
func serveFake(t *testing.T, path string, handle func(w *wire, h preload.Header, f *preload.Frame, held *[]uint32)) *fake {
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	fk := &fake{}
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			fk.conns.Add(1)
			go func() {
				defer c.Close()
				w := &wire{t: t, c: c}
				var held []uint32
				for {
					var buf [preload.FrameSize + 1]byte
					n, err := c.Read(buf[:])
					if err != nil {
						return
					}
					f := (*preload.Frame)(buf[:preload.FrameSize])
					h, err := preload.ParseHeader(f, n)
					if err != nil {
						return
					}
					handle(w, h, f, &held)
				}
			}()
		}
	}()
	return fk
}

// TestExports checks that each library exports the four hooks and no
// other function.
func TestExports(t *testing.T) {
	dir := built(t)
	for _, lc := range libcs(dir) {
		f, err := elf.Open(lc.lib)
		if err != nil {
			t.Fatal(err)
		}
		syms, err := f.DynamicSymbols()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range syms {
			if s.Section != elf.SHN_UNDEF && elf.ST_BIND(s.Info) != elf.STB_LOCAL && elf.ST_TYPE(s.Info) == elf.STT_FUNC &&
				s.Name != "_init" && s.Name != "_fini" {
				got = append(got, s.Name)
			}
		}
		slices.Sort(got)
		if want := []string{"accept", "accept4", "getpeername", "getsockopt"}; !slices.Equal(got, want) {
			t.Errorf("%s exports %v, want %v", lc.name, got, want)
		}
	}
}

func addrPort(c toa.Client) netip.AddrPort { return netip.AddrPortFrom(c.Addr, c.Port) }

// setupTable starts a toad, with a shared table if sharedTable, and a
// driver with the library asking it.
func setupTable(t *testing.T, lc libc, sharedTable bool) (*toad, *driver) {
	t.Helper()
	if sharedTable {
		return setup(t, lc, shared())
	}
	return setup(t, lc)
}

// dialClients makes n connections to the listener at local, the i-th's
// TOA carrying the IPv4 client client(i); it returns the client each
// connection must be accepted as, by the kernel's peer.
func (d *driver) dialClients(td *toad, local netip.AddrPort, n int, client func(i int) string) map[string]string {
	d.t.Helper()
	want := make(map[string]string, n)
	for i := range n {
		c := client4(client(i))
		p := d.dialAs(td, local, c)
		want[inet(4, p)] = inet(4, addrPort(c))
	}
	return want
}

// forkScenario: after fork, the parent and the child both accept, each
// getting its own connections' clients; the child opens a connection of
// its own rather than talk on its parent's.
func forkScenario(t *testing.T, lc libc, sharedTable bool) {
	td, d := setupTable(t, lc, sharedTable)
	l, local := d.listen(4, "127.0.0.1")
	d.dialAs(td, local, cli4)
	d.result("accept %d 128", l) // the parent's connection to toad is open
	const each = 5
	want := d.dialClients(td, local, 2*each, func(i int) string { return fmt.Sprintf("203.0.113.%d:%d", 10+i, 1000+i) })
	if sharedTable {
		td.waitApplied(2*each + 1)
	}
	d.send("fork %d 128 %d", l, each)
	seen := map[string]int{}
	for {
		line := d.read()
		if strings.HasPrefix(line, "ok forked") {
			if line != "ok forked status=0" {
				t.Errorf("child: %q", line)
			}
			break
		}
		who, _, _ := strings.Cut(line, " ")
		r := parseResult(t, line)
		seen[who]++
		if r.addr != want[r.kpeer] {
			t.Errorf("%s accepted %s as %s, want %s", who, r.kpeer, r.addr, want[r.kpeer])
		}
	}
	if seen["parent"] != each || seen["child"] != each {
		t.Errorf("accepts seen %v, want %d each", seen, each)
	}
	st := td.statsAtExit(d)
	if st.GetnameOK != 2*each+1 {
		t.Errorf("stats %+v, want %d calls answered", st, 2*each+1)
	}
	if sharedTable {
		// The first lookup brought the table; the rest read it.
		if st.Lookups != 1 {
			t.Errorf("stats %+v, want 1 lookup over the socket", st)
		}
	} else if st.ConnsAccepted != 2 || st.Found != 2*each+1 {
		t.Errorf("stats %+v, want 2 connections (the child's own) and %d found", st, 2*each+1)
	}
}

// threadsScenario: threads accepting at once on one listener each get
// their own connections' clients.
func threadsScenario(t *testing.T, lc libc, sharedTable bool) {
	td, d := setupTable(t, lc, sharedTable)
	l, local := d.listen(4, "127.0.0.1")
	const threads, each = 8, 25
	want := d.dialClients(td, local, threads*each, func(i int) string { return fmt.Sprintf("198.51.100.%d:%d", i%250+1, 2000+i) })
	if sharedTable {
		td.waitApplied(threads * each)
	}
	d.send("threads %d %d %d 128", l, threads, each)
	n := 0
	for {
		line := d.read()
		if line == "ok threads" {
			break
		}
		r := parseResult(t, line)
		n++
		if r.addr != want[r.kpeer] {
			t.Errorf("thread accepted %s as %s, want %s", r.kpeer, r.addr, want[r.kpeer])
		}
	}
	if n != threads*each {
		t.Errorf("%d accepts, want %d", n, threads*each)
	}
	// Each thread's connection closed when the thread ended.
	td.idle()
	st := td.statsAtExit(d)
	if st.GetnameOK != threads*each {
		t.Errorf("stats %+v, want every call answered", st)
	}
	if sharedTable {
		if st.Lookups > threads {
			t.Errorf("stats %+v, want at most one lookup over the socket per thread", st)
		}
	} else if st.ConnsAccepted < threads || st.ConnsAccepted > threads+1 || st.Found != threads*each {
		// At exit, a counter left over by the threads may need a
		// connection of its own to be reported.
		t.Errorf("stats %+v, want one connection per thread (and one at exit) and every lookup found", st)
	}
}
