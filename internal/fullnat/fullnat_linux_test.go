package fullnat_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/fullnat"
	"github.com/toad-project/toad/internal/netnstest"
	"github.com/toad-project/toad/internal/privtest"
	"github.com/toad-project/toad/internal/testaddr"
	"github.com/toad-project/toad/internal/testbed"
	"github.com/toad-project/toad/toa"
)

// The testbed's documentation addresses.
var (
	clientAddrs4           = []netip.Addr{netip.MustParseAddr("203.0.113.2"), netip.MustParseAddr("203.0.113.3"), netip.MustParseAddr("203.0.113.4")}
	clientAddrs6           = []netip.Addr{netip.MustParseAddr("2001:db8:c::2"), netip.MustParseAddr("2001:db8:c::3"), netip.MustParseAddr("2001:db8:c::4")}
	vip4, vip6             = testaddr.VIP4, testaddr.VIP6
	proxyAddr4, proxyAddr6 = testaddr.ProxyAddr4, testaddr.ProxyAddr6
	origin4, origin6       = testaddr.Origin4, testaddr.Origin6
)

// hosts is three namespaces: clients, the proxy, the origin.
//
//	client eth0 ---- cli0 proxy org0 ---- eth0 origin
//	203.0.113.2-4    .1          192.0.2.1    192.0.2.20
//	2001:db8:c::2-4  ::1     2001:db8:2::1    2001:db8:2::20
//
// The VIPs and the proxy's origin-side addresses live on the proxy's TUN
// device, routed there by fullnat.New.
type hosts struct {
	client, proxy, origin *netnstest.NS
}

func newHosts(t testing.TB) *hosts {
	t.Helper()
	privtest.Require(t, "ip")
	tb := &hosts{
		client: netnstest.New(t, "fullnat-c"),
		proxy:  netnstest.New(t, "fullnat-p"),
		origin: netnstest.New(t, "fullnat-o"),
	}
	netnstest.Veth(t, tb.client, "eth0", tb.proxy, "cli0")
	testbed.LinkOrigin(t, tb.proxy, tb.origin)
	var cmds []string
	for i := range clientAddrs4 {
		cmds = append(cmds,
			fmt.Sprintf("addr add %v/24 dev eth0", clientAddrs4[i]),
			fmt.Sprintf("addr add %v/64 dev eth0 nodad", clientAddrs6[i]))
	}
	tb.client.IP(t, append(cmds,
		"route add 198.51.100.0/24 via 203.0.113.1",
		"route add 2001:db8:100::/64 via 2001:db8:c::1")...)
	tb.proxy.IP(t,
		"addr add 203.0.113.1/24 dev cli0",
		"addr add 2001:db8:c::1/64 dev cli0 nodad")
	return tb
}

// accepted is what the origin learned about one connection.
type accepted struct {
	peer   netip.AddrPort // what accept() returned
	client netip.AddrPort // the true client, as the client reported it
}

// server is a Go TCP server in the origin namespace. Per connection it
// reads "hello <client ip:port> <padding>", answers "welcome <peer>", reads
// "bye", answers "ok", and reads to EOF.
type server struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	conn map[uint16]accepted // by the proxy's port
	errs []error
}

func startServer(t testing.TB, ns *netnstest.NS, addr netip.AddrPort) *server {
	t.Helper()
	s := &server{conn: make(map[uint16]accepted)}
	err := ns.Do(func() (err error) {
		s.ln, err = net.Listen("tcp", addr.String())
		return err
	})
	if err != nil {
		t.Fatalf("listen in the origin namespace: %v", err)
	}
	s.wg.Go(func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() { s.serve(c) })
		}
	})
	t.Cleanup(func() {
		s.ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *server) serve(c net.Conn) {
	defer c.Close()
	err := func() error {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
		r := bufio.NewReader(c)
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("read hello from %v: %w", peer, err)
		}
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "hello" {
			return fmt.Errorf("from %v: got %q, want hello", peer, line)
		}
		client, err := netip.ParseAddrPort(f[1])
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.conn[peer.Port()] = accepted{peer: peer, client: client}
		s.mu.Unlock()
		if _, err := fmt.Fprintf(c, "welcome %v\n", peer); err != nil {
			return err
		}
		if line, err = r.ReadString('\n'); err != nil || line != "bye\n" {
			return fmt.Errorf("from %v: got %q, %v; want bye", peer, line, err)
		}
		if _, err := io.WriteString(c, "ok\n"); err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, r) // the client closes first
		return err
	}()
	if err != nil {
		s.mu.Lock()
		s.errs = append(s.errs, err)
		s.mu.Unlock()
	}
}

// runClients opens workers×perWorker connections from the client namespace
// to vip, workers at a time, each from one of addrs, and returns each
// connection's client address. hello is the padding of the first message.
func runClients(t testing.TB, ns *netnstest.NS, addrs []netip.Addr, vip netip.AddrPort, workers, perWorker, hello int) []netip.AddrPort {
	t.Helper()
	var (
		mu      sync.Mutex
		clients []netip.AddrPort
		wg      sync.WaitGroup
		errs    = make([]error, workers)
	)
	pad := strings.Repeat("x", hello)
	for w := range workers {
		wg.Go(func() {
			errs[w] = ns.Do(func() error {
				d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(addrs[w%len(addrs)], 0)), Timeout: 5 * time.Second}
				for range perWorker {
					local, err := exchange(d, vip, pad)
					if err != nil {
						return err
					}
					mu.Lock()
					clients = append(clients, local)
					mu.Unlock()
				}
				return nil
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("clients: %v", err)
	}
	return clients
}

// exchange runs one connection's conversation and returns the client's
// address.
func exchange(d net.Dialer, vip netip.AddrPort, pad string) (netip.AddrPort, error) {
	c, err := d.Dial("tcp", vip.String())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("dial %v: %w", vip, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	r := bufio.NewReader(c)
	if _, err := fmt.Fprintf(c, "hello %v %s\n", local, pad); err != nil {
		return local, fmt.Errorf("%v: write hello: %w", local, err)
	}
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "welcome ") {
		return local, fmt.Errorf("%v: got %q, %v; want welcome", local, line, err)
	}
	if _, err := io.WriteString(c, "bye\n"); err != nil {
		return local, err
	}
	if line, err = r.ReadString('\n'); err != nil || line != "ok\n" {
		return local, fmt.Errorf("%v: got %q, %v; want ok", local, line, err)
	}
	return local, nil
}

// capture reads every frame on one interface of a namespace through an
// AF_PACKET socket and decodes it.
type capture struct {
	f      *os.File
	link   decode.LinkType
	hdrLen int // link header length
	dec    *decode.Decoder
	done   chan struct{}
	notify chan struct{}
	mu     sync.Mutex
	recs   []frame
}

// frame is a decoded frame and the length of its IP packet.
type frame struct {
	decode.Record
	ipLen int
}

// startCapture captures on an Ethernet interface, or on a TUN device when
// link is decode.LinkRaw.
func startCapture(t testing.TB, ns *netnstest.NS, ifname string, link decode.LinkType) *capture {
	t.Helper()
	set, err := toa.ParseSet("all")
	if err != nil {
		t.Fatal(err)
	}
	c := &capture{link: link, hdrLen: 14, dec: decode.New(set), done: make(chan struct{}), notify: make(chan struct{}, 1)}
	if link == decode.LinkRaw {
		c.hdrLen = 0
	}
	err = ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		proto := uint16(unix.ETH_P_ALL<<8&0xff00 | unix.ETH_P_ALL>>8) // network byte order
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20); err != nil {
			unix.Close(fd)
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		c.f = os.NewFile(uintptr(fd), "packet")
		return nil
	})
	if err != nil {
		t.Fatalf("capture on %s: %v", ifname, err)
	}
	go c.run()
	t.Cleanup(func() {
		c.f.Close()
		<-c.done
	})
	return c
}

func (c *capture) run() {
	defer close(c.done)
	buf := make([]byte, 65536)
	for {
		n, err := c.f.Read(buf)
		if err != nil {
			return
		}
		var r decode.Record
		if c.dec.Decode(c.link, buf[:n], time.Now(), &r) != decode.OK {
			continue
		}
		c.mu.Lock()
		c.recs = append(c.recs, frame{r, n - c.hdrLen})
		c.mu.Unlock()
		select {
		case c.notify <- struct{}{}:
		default:
		}
	}
}

// waitForFINs waits until n FINs from the proxy's address have been seen.
func (c *capture) waitForFINs(t testing.TB, proxyAddr netip.Addr, n int) []frame {
	t.Helper()
	return c.waitFor(t, fmt.Sprintf("%d client FINs", n), func(recs []frame) bool {
		fins := 0
		for _, r := range recs {
			if r.Peer.Addr() == proxyAddr && r.Flags&decode.FIN != 0 {
				fins++
			}
		}
		return fins >= n
	})
}

// waitFor waits until cond holds for the frames seen so far.
func (c *capture) waitFor(t testing.TB, what string, cond func([]frame) bool) []frame {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		recs := append([]frame(nil), c.recs...)
		c.mu.Unlock()
		if cond(recs) {
			return recs
		}
		select {
		case <-c.notify:
		case <-deadline.C:
			t.Fatalf("capture: gave up waiting for %s (%d frames seen)", what, len(recs))
		}
	}
}

func TestForwarder(t *testing.T) {
	tb := newHosts(t)
	for i, tc := range []struct {
		name      string
		dialect   toa.Dialect
		placement fullnat.Placement
		position  fullnat.Position
		clients   []netip.Addr
		vip       netip.AddrPort
		origin    netip.AddrPort
		// hello pads the first message; a long one fills segments to the
		// MSS, proving the clamp leaves room for the TOA.
		hello int
	}{
		{"200/8 in SYN", toa.Kind200V4, fullnat.SYN, fullnat.AfterHeader, clientAddrs4, vip4, origin4, 10},
		{"254/8 in ACK and early data (DPVS)", toa.Kind254V4, fullnat.DPVS, fullnat.AfterHeader, clientAddrs4, vip4, origin4, 20000},
		{"254/20 IPv6 client over IPv4 (FNAT64)", toa.Kind254V6, fullnat.DPVS, fullnat.AfterHeader, clientAddrs6, vip6, origin4, 20000},
		{"253/20 over IPv6 (LVS)", toa.Kind253V6, fullnat.LVS, fullnat.AfterHeader, clientAddrs6, vip6, origin6, 5000},
		{"28/7 in SYN and data", toa.Kind28V4, fullnat.SYN | fullnat.Data, fullnat.AfterOptions, clientAddrs4, vip4, origin4, 10},
		{"200/8 in ACK after options (jupiter)", toa.Kind200V4, fullnat.ACK, fullnat.AfterOptions, clientAddrs4, vip4, origin4, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const workers, perWorker = 6, 8
			proxyAddr := proxyAddr4
			if tc.origin.Addr().Is6() {
				proxyAddr = proxyAddr6
			}
			cfg := fullnat.Config{
				VIPs:       []netip.AddrPort{vip4, vip6},
				Origin:     tc.origin,
				ProxyAddr4: proxyAddr4,
				ProxyAddr6: proxyAddr6,
				Placement:  tc.placement,
				Position:   tc.position,
				// A fresh port range per case, so that no 4-tuple of an
				// earlier case is reused while the origin may still hold it.
				PortMin: uint16(10000 + 1000*i),
				PortMax: uint16(10999 + 1000*i),
			}
			if tc.dialect == toa.Kind254V6 || tc.dialect == toa.Kind253V6 {
				cfg.TOA6 = fullnat.Option{Dialect: tc.dialect}
			} else {
				cfg.TOA4 = fullnat.Option{Dialect: tc.dialect}
			}
			srv := startServer(t, tb.origin, tc.origin)
			capt := startCapture(t, tb.origin, "eth0", decode.LinkEthernet)
			f := testbed.Proxy(t, tb.proxy, cfg)

			clients := runClients(t, tb.client, tc.clients, tc.vip, workers, perWorker, tc.hello)
			n := workers * perWorker

			// Every client FIN reaching the origin means the capture holds
			// each connection's whole client side.
			recs := capt.waitForFINs(t, proxyAddr, n)

			// FULLNAT: accept() saw the proxy, one connection per client.
			srv.mu.Lock()
			if err := errors.Join(srv.errs...); err != nil {
				t.Errorf("origin: %v", err)
			}
			byPort := srv.conn
			srv.mu.Unlock()
			if len(byPort) != n {
				t.Errorf("origin accepted %d connections, want %d", len(byPort), n)
			}
			seen := make(map[netip.AddrPort]bool)
			for port, a := range byPort {
				if a.peer.Addr() != proxyAddr || port < cfg.PortMin || port > cfg.PortMax {
					t.Errorf("origin's accept() saw %v, want %v with a port in %d-%d", a.peer, proxyAddr, cfg.PortMin, cfg.PortMax)
				}
				seen[a.client] = true
			}
			for _, c := range clients {
				if !seen[c] {
					t.Errorf("client %v never reached the origin", c)
				}
			}

			toas, largest := checkPlacement(t, recs, byPort, proxyAddr, tc.origin, tc.dialect, tc.placement)
			// A long first message fills segments to the MSS the proxy
			// clamped: with their TOA they must come to the MTU exactly.
			if tc.hello > 5000 && tc.placement&fullnat.Data != 0 && largest != fullnat.DefaultMTU {
				t.Errorf("largest segment with a TOA: %d bytes, want %d (the MTU)", largest, fullnat.DefaultMTU)
			}
			st := f.Stats()
			if st.Conns != uint64(n) || st.NoRoom != 0 || st.NoPort != 0 {
				t.Errorf("got stats %+v, want %d conns, NoRoom 0, NoPort 0", st, n)
			}
			if st.TOAs != uint64(toas) {
				t.Errorf("proxy inserted %d TOAs, origin saw %d", st.TOAs, toas)
			}
			t.Logf("%d connections, %d TOAs seen at the origin (largest packet %d bytes), stats %+v", n, toas, largest, st)
		})
	}
}

// TestForwarderOneNamespace runs clients, proxy and origin in a single
// namespace that does not forward IP, as on a developer's machine, and
// captures on the proxy's TUN device.
func TestForwarderOneNamespace(t *testing.T) {
	privtest.Require(t, "ip")
	ns := netnstest.New(t, "fullnat-1")
	ns.IP(t, "addr add 203.0.113.2/32 dev lo", "addr add 192.0.2.20/32 dev lo")
	srv := startServer(t, ns, origin4)
	f := testbed.Proxy(t, ns, fullnat.Config{
		VIPs:       []netip.AddrPort{vip4},
		Origin:     origin4,
		ProxyAddr4: proxyAddr4,
		TOA4:       fullnat.Option{Dialect: toa.Kind254V4},
		Placement:  fullnat.LVS,
	})
	capt := startCapture(t, ns, f.Device(), decode.LinkRaw)

	const n = 16
	clients := runClients(t, ns, clientAddrs4[:1], vip4, 4, n/4, 3000)
	recs := capt.waitForFINs(t, proxyAddr4, n)
	srv.mu.Lock()
	byPort := srv.conn
	if err := errors.Join(srv.errs...); err != nil {
		t.Errorf("origin: %v", err)
	}
	srv.mu.Unlock()
	if len(byPort) != n || len(clients) != n {
		t.Fatalf("origin accepted %d connections, clients made %d; want %d", len(byPort), len(clients), n)
	}
	for _, a := range byPort {
		if a.peer.Addr() != proxyAddr4 {
			t.Errorf("origin's accept() saw %v, want %v", a.peer, proxyAddr4)
		}
	}
	toas, _ := checkPlacement(t, recs, byPort, proxyAddr4, origin4, toa.Kind254V4, fullnat.LVS)
	if st := f.Stats(); st.TOAs != uint64(toas) || st.NoRoom != 0 {
		t.Errorf("got stats %+v; want %d TOAs (as captured) and NoRoom 0", st, toas)
	}
}

// checkPlacement checks every segment the origin received against the
// placement, and returns how many TOAs it saw and the size of the largest
// IP packet that carried one.
func checkPlacement(t *testing.T, recs []frame, byPort map[uint16]accepted, proxyAddr netip.Addr, origin netip.AddrPort, d toa.Dialect, p fullnat.Placement) (toas, largest int) {
	t.Helper()
	type state struct {
		nonSYN, originData bool
		segs               int
		haveEnd            bool
		end                uint32 // the highest sequence number the client's data reached
	}
	states := make(map[uint16]*state)
	errs := 0
	for _, r := range recs {
		switch {
		case r.Peer == origin && r.Local.Addr() == proxyAddr: // the origin's reply
			if st := states[r.Local.Port()]; st != nil && r.PayloadLen > 0 {
				st.originData = true
			}
			continue
		case r.Peer.Addr() != proxyAddr || r.Local != origin:
			continue
		}
		port := r.Peer.Port()
		st := states[port]
		if st == nil {
			st = new(state)
			states[port] = st
		}
		st.segs++
		data := r.PayloadLen > 0 || r.Flags&decode.FIN != 0
		end := r.Seq + r.PayloadLen
		if r.Flags&decode.FIN != 0 {
			end++
		}
		// A retransmission of early data may cross the origin's first data
		// on the wire: the proxy, which saw it first, rightly gave it a TOA
		// that the origin sees after its own data.
		retransmit := data && st.haveEnd && int32(end-st.end) <= 0
		if data && !retransmit {
			st.haveEnd, st.end = true, end
		}
		var what string
		var want bool
		switch {
		case retransmit && st.originData && !r.HasTOA():
			continue
		case retransmit && st.originData:
			what, want = "retransmitted early data", p&fullnat.Data != 0
		case r.Flags&(decode.SYN|decode.ACK) == decode.SYN:
			what, want = "SYN", p&fullnat.SYN != 0
		case !st.nonSYN:
			st.nonSYN = true
			what, want = "final ACK", p&fullnat.ACK != 0 || data && p&fullnat.Data != 0
		case data && !st.originData:
			what, want = "early data", p&fullnat.Data != 0
		default:
			what, want = "later segment", false
		}
		if r.HasTOA() {
			toas++
			largest = max(largest, r.ipLen)
		}
		bad := ""
		switch {
		case r.HasTOA() != want:
			bad = fmt.Sprintf("TOA %v, want %v", r.HasTOA(), want)
		case !want:
		case r.TOACount != 1:
			bad = fmt.Sprintf("%d TOAs, want 1", r.TOACount)
		case r.TOA.Dialect != d:
			bad = fmt.Sprintf("dialect %v, want %v", r.TOA.Dialect, d)
		default:
			client := byPort[port].client
			if r.TOA.Addr != client.Addr() || r.TOA.HasPort && r.TOA.Port != client.Port() {
				bad = fmt.Sprintf("TOA client %v, want %v", r.TOA, client)
			}
		}
		if bad != "" {
			if errs++; errs <= 10 {
				t.Errorf("port %d %s (%v, %d bytes): %s", port, what, r.Flags, r.PayloadLen, bad)
			}
		}
	}
	if len(states) != len(byPort) {
		t.Errorf("captured segments of %d connections, want %d", len(states), len(byPort))
	}
	return toas, largest
}

// BenchmarkConnections measures new connections per second: dial, two
// round trips of the test conversation, close. "proxy" goes through the
// forwarder with a 254/8 TOA in the final ACK and early data (DPVS);
// "routed", the baseline, reaches the origin directly through the proxy
// namespace's kernel routing.
func BenchmarkConnections(b *testing.B) {
	tb := newHosts(b)
	startServer(b, tb.origin, origin4)
	f := testbed.Proxy(b, tb.proxy, fullnat.Config{
		VIPs:       []netip.AddrPort{vip4},
		Origin:     origin4,
		ProxyAddr4: proxyAddr4,
		TOA4:       fullnat.Option{Dialect: toa.Kind254V4},
		Placement:  fullnat.DPVS,
	})
	// Tens of thousands of connections leave as many client sockets in
	// TIME_WAIT: let connect() pick ports past them.
	tb.client.Sysctl(b, "net.ipv4.ip_local_port_range", "1024 65535")
	tb.client.Sysctl(b, "net.ipv4.tcp_tw_reuse", "1")
	tb.client.IP(b, "route add 192.0.2.0/24 via 203.0.113.1")
	tb.origin.IP(b, "route add 203.0.113.0/24 via 192.0.2.1")
	for _, bc := range []struct {
		name string
		dst  netip.AddrPort
	}{{"proxy", vip4}, {"routed", origin4}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				err := tb.client.Do(func() error {
					d := net.Dialer{Timeout: 5 * time.Second}
					for pb.Next() {
						if _, err := exchange(d, bc.dst, "x"); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Error(err)
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
		})
	}
	if st := f.Stats(); st.NoPort != 0 || st.NoRoom != 0 {
		b.Errorf("got stats %+v, want NoPort and NoRoom 0", st)
	}
}
