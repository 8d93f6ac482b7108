package fullnat

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/toa"
)

// flow drives one connection through a Forwarder's handle, playing both the
// client and the origin.
type flow struct {
	t      *testing.T
	f      *Forwarder
	client netip.AddrPort
	vip    netip.AddrPort
	now    time.Time
	proxy  netip.AddrPort // the proxy's source toward the origin, from the SYN
}

// fromClient sends a segment from the client to the VIP and returns what
// reached the origin.
func (fl *flow) fromClient(flags decode.Flags, opts []byte, payload string) (decode.Record, []byte) {
	fl.t.Helper()
	pkt := fl.f.handle((&craft.Segment{Src: fl.client, Dst: fl.vip, Flags: flags, Seq: 1000, Ack: 5000,
		Options: opts, Payload: []byte(payload)}).IP(), make([]byte, 70000), fl.now)
	if pkt == nil {
		fl.t.Fatalf("client segment %v dropped", flags)
	}
	checkSums(fl.t, pkt)
	r := decodeIP(fl.t, pkt)
	if r.Local != fl.f.cfg.Origin {
		fl.t.Fatalf("client segment went to %v, want the origin %v", r.Local, fl.f.cfg.Origin)
	}
	if fl.proxy.IsValid() && r.Peer != fl.proxy {
		fl.t.Fatalf("client segment came from %v, want %v", r.Peer, fl.proxy)
	}
	fl.proxy = r.Peer
	return r, pkt
}

// fromOrigin sends a segment from the origin to the proxy and returns what
// reached the client.
func (fl *flow) fromOrigin(flags decode.Flags, opts []byte, payload string) (decode.Record, []byte) {
	fl.t.Helper()
	pkt := fl.f.handle((&craft.Segment{Src: fl.f.cfg.Origin, Dst: fl.proxy, Flags: flags, Seq: 5000, Ack: 1001,
		Options: opts, Payload: []byte(payload)}).IP(), make([]byte, 70000), fl.now)
	if pkt == nil {
		fl.t.Fatalf("origin segment %v dropped", flags)
	}
	checkSums(fl.t, pkt)
	r := decodeIP(fl.t, pkt)
	if r.Peer != fl.vip || r.Local != fl.client {
		fl.t.Fatalf("origin segment mapped to %v -> %v, want %v -> %v", r.Peer, r.Local, fl.vip, fl.client)
	}
	if r.HasTOA() {
		fl.t.Errorf("origin segment %v to the client carries a TOA", flags)
	}
	return r, pkt
}

func TestPlacement(t *testing.T) {
	for _, tc := range []struct {
		name      string
		placement Placement
		position  Position
		dialect   toa.Dialect
		client    netip.AddrPort
		vip       netip.AddrPort
		origin    netip.AddrPort
		// SYN MSS toward the origin and SYN-ACK MSS toward the client.
		wantMSSOrigin, wantMSSClient int
	}{
		{"200/8 SYN", SYN, AfterHeader, toa.Kind200V4, client4, vip4, origin4, 1452, 1460},
		{"254/8 DPVS ack+data", DPVS, AfterHeader, toa.Kind254V4, client4, vip4, origin4, 1452, 1452},
		{"254/8 LVS", LVS, AfterHeader, toa.Kind254V4, client4, vip4, origin4, 1452, 1452},
		{"200/8 jupiter ack after options", ACK, AfterOptions, toa.Kind200V4, client4, vip4, origin4, 1452, 1452},
		{"254/20 FNAT64", DPVS, AfterHeader, toa.Kind254V6, client6, vip6, origin4, 1400, 1440},
		{"253/20 over IPv6", LVS, AfterHeader, toa.Kind253V6, client6, vip6, origin6, 1420, 1420},
		{"28/7 data only", Data, AfterHeader, toa.Kind28V4, client4, vip4, origin4, 1452, 1452},
		{"none", 0, AfterHeader, toa.Kind200V4, client4, vip4, origin4, 1460, 1460},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, tc.origin, func(c *Config) {
				c.Placement, c.Position = tc.placement, tc.position
				c.TOA4, c.TOA6 = Option{Dialect: toa.Kind200V4}, Option{Dialect: toa.Kind254V6}
				if tc.client.Addr().Is4() {
					c.TOA4 = Option{Dialect: tc.dialect}
				} else {
					c.TOA6 = Option{Dialect: tc.dialect}
				}
			})
			f := newForwarder(cfg, nil, "test")
			fl := &flow{t: t, f: f, client: tc.client, vip: tc.vip, now: time.Unix(1000, 0)}
			checkTOA := func(what string, r decode.Record, want bool) {
				t.Helper()
				if r.HasTOA() != want {
					t.Errorf("%s: got TOA %v, want %v", what, r.HasTOA(), want)
					return
				}
				if !want {
					return
				}
				if r.TOACount != 1 || r.TOA.Dialect != tc.dialect || r.TOA.Addr != tc.client.Addr() ||
					r.TOA.HasPort && r.TOA.Port != tc.client.Port() {
					t.Errorf("%s: got TOA %v (%d), want %v in %v", what, r.TOA, r.TOACount, tc.client, tc.dialect)
				}
			}

			mss := 1460
			if tc.client.Addr().Is6() {
				mss = 1440
			}
			r, pkt := fl.fromClient(decode.SYN, linuxSYNOptions(uint16(mss)), "")
			checkTOA("SYN", r, tc.placement&SYN != 0)
			if got := mssOf(pkt); got != tc.wantMSSOrigin {
				t.Errorf("SYN to origin: got MSS %d, want %d", got, tc.wantMSSOrigin)
			}
			r, _ = fl.fromClient(decode.SYN, linuxSYNOptions(uint16(mss)), "") // retransmission
			checkTOA("retransmitted SYN", r, tc.placement&SYN != 0)
			originMSS := 1460
			if tc.origin.Addr().Is6() {
				originMSS = 1440
			}
			_, pkt = fl.fromOrigin(decode.SYN|decode.ACK, linuxSYNOptions(uint16(originMSS)), "")
			if got := mssOf(pkt); got != tc.wantMSSClient {
				t.Errorf("SYN-ACK to client: got MSS %d, want %d", got, tc.wantMSSClient)
			}
			r, _ = fl.fromClient(decode.ACK, linuxOptions(), "")
			checkTOA("final ACK", r, tc.placement&ACK != 0)
			r, _ = fl.fromClient(decode.ACK|decode.PSH, linuxOptions(), "GET / HTTP/1.0\r\n")
			checkTOA("first data", r, tc.placement&Data != 0)
			r, _ = fl.fromClient(decode.ACK|decode.PSH, linuxOptions(), "\r\n")
			checkTOA("second data", r, tc.placement&Data != 0)
			r, _ = fl.fromClient(decode.ACK, linuxOptions(), "")
			checkTOA("pure ACK", r, false)
			fl.fromOrigin(decode.ACK|decode.PSH, linuxOptions(), "HTTP/1.0 200 OK\r\n\r\n")
			r, _ = fl.fromClient(decode.ACK|decode.PSH, linuxOptions(), "more")
			checkTOA("data after the origin's", r, false)
			r, _ = fl.fromClient(decode.FIN|decode.ACK, linuxOptions(), "")
			checkTOA("FIN", r, false)
			fl.fromOrigin(decode.FIN|decode.ACK, linuxOptions(), "")
			fl.fromClient(decode.ACK, linuxOptions(), "")

			st := f.Stats()
			if st.Conns != 1 || st.Active != 1 || st.NoRoom != 0 {
				t.Errorf("got stats %+v, want 1 conn, 1 active, no NoRoom", st)
			}
			wantTOAs := uint64(0)
			for _, b := range []bool{tc.placement&SYN != 0, tc.placement&SYN != 0, tc.placement&ACK != 0, tc.placement&Data != 0, tc.placement&Data != 0} {
				if b {
					wantTOAs++
				}
			}
			if st.TOAs != wantTOAs {
				t.Errorf("got %d TOAs inserted, want %d", st.TOAs, wantTOAs)
			}
			c := f.tab.lookupClient(connKey{tc.client, tc.vip})
			if c == nil || !c.closing {
				t.Fatalf("got conn %+v after FINs both ways, want it closing", c)
			}
			if n := f.tab.sweep(fl.now.Add(cfg.CloseTimeout-time.Millisecond), cfg.IdleTimeout); n != 0 {
				t.Errorf("swept %d before the close timeout, want 0", n)
			}
			if n := f.tab.sweep(fl.now.Add(cfg.CloseTimeout), cfg.IdleTimeout); n != 1 {
				t.Errorf("swept %d at the close timeout, want 1", n)
			}
		})
	}
}

func TestTOAFamilyWithoutOption(t *testing.T) {
	// Only IPv4 clients get a TOA; an IPv6 client's connection still works.
	f := newForwarder(testConfig(t, origin4, func(c *Config) {
		c.TOA4 = Option{Dialect: toa.Kind200V4}
	}), nil, "test")
	fl := &flow{t: t, f: f, client: client6, vip: vip6, now: time.Unix(1, 0)}
	r, _ := fl.fromClient(decode.SYN, linuxSYNOptions(1440), "")
	if r.HasTOA() {
		t.Errorf("got TOA %v for an IPv6 client with no TOA6, want none", r.TOA)
	}
	fl.fromOrigin(decode.SYN|decode.ACK, linuxSYNOptions(1460), "")
}

func TestDrops(t *testing.T) {
	f := newForwarder(testConfig(t, origin4, func(c *Config) { c.TOA4 = Option{Dialect: toa.Kind200V4} }), nil, "test")
	out := make([]byte, 70000)
	now := time.Unix(1, 0)
	for _, tc := range []struct {
		name string
		seg  craft.Segment
	}{
		{"ACK without a connection", craft.Segment{Src: client4, Dst: vip4, Flags: decode.ACK}},
		{"to an address that is not a VIP", craft.Segment{Src: client4, Dst: netip.MustParseAddrPort("198.51.100.2:80"), Flags: decode.SYN}},
		{"to the VIP's address on another port", craft.Segment{Src: client4, Dst: netip.MustParseAddrPort("198.51.100.1:81"), Flags: decode.SYN}},
		{"origin to an unmapped port", craft.Segment{Src: origin4, Dst: netip.AddrPortFrom(lip4, 5000), Flags: decode.ACK}},
		{"not the origin to the proxy", craft.Segment{Src: netip.MustParseAddrPort("192.0.2.21:8080"), Dst: netip.AddrPortFrom(lip4, 1024), Flags: decode.ACK}},
	} {
		if pkt := f.handle(tc.seg.IP(), out, now); pkt != nil {
			t.Errorf("%s: forwarded, want dropped", tc.name)
		}
	}
}

func TestPortsRunOut(t *testing.T) {
	f := newForwarder(testConfig(t, origin4, func(c *Config) { c.PortMin, c.PortMax = 2000, 2002 }), nil, "test")
	out := make([]byte, 70000)
	now := time.Unix(1, 0)
	var ports []uint16
	for i := range 4 {
		c := netip.AddrPortFrom(client4.Addr(), uint16(30000+i))
		pkt := f.handle((&craft.Segment{Src: c, Dst: vip4, Flags: decode.SYN}).IP(), out, now)
		if i == 3 {
			if pkt != nil {
				t.Errorf("SYN %d forwarded with every port in use, want dropped", i)
			}
			continue
		}
		if pkt == nil {
			t.Fatalf("SYN %d dropped, want forwarded", i)
		}
		ports = append(ports, decodeIP(t, pkt).Peer.Port())
	}
	if want := []uint16{2000, 2001, 2002}; !slices.Equal(ports, want) {
		t.Errorf("got ports %v, want %v", ports, want)
	}
	if st := f.Stats(); st.NoPort != 1 || st.Conns != 3 {
		t.Errorf("got stats %+v, want NoPort 1, Conns 3", st)
	}
	// A RST frees the first port after the close timeout; the next SYN gets
	// it (round robin wraps).
	f.handle((&craft.Segment{Src: netip.AddrPortFrom(client4.Addr(), 30000), Dst: vip4, Flags: decode.RST}).IP(), out, now)
	f.tab.sweep(now.Add(f.cfg.CloseTimeout), f.cfg.IdleTimeout)
	pkt := f.handle((&craft.Segment{Src: netip.AddrPortFrom(client4.Addr(), 31000), Dst: vip4, Flags: decode.SYN}).IP(), out, now)
	if pkt == nil || decodeIP(t, pkt).Peer.Port() != 2000 {
		t.Errorf("SYN after a port was freed: got %v, want port 2000", pkt != nil)
	}
}

func TestHandleAllocs(t *testing.T) {
	f := newForwarder(testConfig(t, origin4, func(c *Config) { c.TOA4 = Option{Dialect: toa.Kind254V4} }), nil, "test")
	out := make([]byte, 70000)
	now := time.Unix(1, 0)
	syn := (&craft.Segment{Src: client4, Dst: vip4, Flags: decode.SYN, Options: linuxSYNOptions(1460)}).IP()
	proxy := decodeIP(t, f.handle(syn, out, now)).Peer
	data := (&craft.Segment{Src: client4, Dst: vip4, Flags: decode.ACK | decode.PSH, Options: linuxOptions(), Payload: make([]byte, 1000)}).IP()
	reply := (&craft.Segment{Src: origin4, Dst: proxy, Flags: decode.ACK, Options: linuxOptions(), Payload: make([]byte, 1000)}).IP()
	if n := testing.AllocsPerRun(100, func() {
		f.handle(data, out, now)
		f.handle(reply, out, now)
	}); n != 0 {
		t.Errorf("got %v allocations per packet pair, want 0", n)
	}
}

// pipe is a device made of channels: the test writes packets the forwarder
// reads, and reads the packets it writes. Once closed it fails as an
// os.File does.
type pipe struct {
	in, out   chan []byte
	closed    chan struct{}
	closeOnce sync.Once
}

func newPipe() *pipe {
	return &pipe{in: make(chan []byte), out: make(chan []byte, 16), closed: make(chan struct{})}
}

func (p *pipe) Read(b []byte) (int, error) {
	select {
	case pkt := <-p.in:
		return copy(b, pkt), nil
	case <-p.closed:
		return 0, os.ErrClosed
	}
}

func (p *pipe) Write(b []byte) (int, error) {
	select {
	case p.out <- append([]byte(nil), b...):
		return len(b), nil
	case <-p.closed:
		return 0, os.ErrClosed
	}
}

func (p *pipe) Close() error {
	p.closeOnce.Do(func() { close(p.closed) })
	return nil
}

func TestRunTimeouts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t, origin4, func(c *Config) {
			c.TOA4 = Option{Dialect: toa.Kind200V4}
			c.IdleTimeout = time.Minute
			c.CloseTimeout = 5 * time.Second
		})
		p := newPipe()
		f := newForwarder(cfg, p, "test")
		errc := make(chan error, 1)
		go func() { errc <- f.Run(t.Context()) }()
		defer func() {
			if err := f.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
			if err := <-errc; err != nil {
				t.Errorf("run: %v", err)
			}
		}()

		send := func(s craft.Segment) []byte {
			t.Helper()
			p.in <- s.IP()
			return <-p.out
		}
		idle := netip.AddrPortFrom(client4.Addr(), 41000)
		closed := netip.AddrPortFrom(client4.Addr(), 41001)
		send(craft.Segment{Src: idle, Dst: vip4, Flags: decode.SYN})
		proxy := decodeIP(t, send(craft.Segment{Src: closed, Dst: vip4, Flags: decode.SYN})).Peer
		send(craft.Segment{Src: origin4, Dst: proxy, Flags: decode.RST | decode.ACK})
		if got := f.Stats().Active; got != 2 {
			t.Fatalf("got %d active, want 2", got)
		}

		time.Sleep(cfg.CloseTimeout + sweepEvery)
		synctest.Wait()
		if got := f.Stats().Active; got != 1 {
			t.Errorf("after the close timeout: got %d active, want 1", got)
		}
		time.Sleep(cfg.IdleTimeout)
		synctest.Wait()
		if got := f.Stats().Active; got != 0 {
			t.Errorf("after the idle timeout: got %d active, want 0", got)
		}
	})
}

func TestRunStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newForwarder(testConfig(t, origin4, nil), newPipe(), "test")
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- f.Run(ctx) }()
		synctest.Wait()
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("run after cancel: got %v, want nil", err)
		}
		if err := f.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if err := f.Close(); err != nil {
			t.Errorf("second close: %v", err)
		}
		if err := f.Run(t.Context()); !errors.Is(err, net.ErrClosed) {
			t.Errorf("run after close: got %v, want net.ErrClosed", err)
		}
	})
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"no VIP", func(c *Config) { c.VIPs = nil }},
		{"no proxy address of the origin's family", func(c *Config) { c.ProxyAddr4 = netip.Addr{} }},
		{"IPv6 layout for IPv4 clients", func(c *Config) { c.TOA4 = Option{Dialect: toa.Kind254V6} }},
		{"unknown kind without layout", func(c *Config) { c.TOA4 = Option{Dialect: toa.Dialect{Kind: 240, Len: 8}} }},
		{"layout length mismatch", func(c *Config) { c.TOA4 = Option{Dialect: toa.Dialect{Kind: 240, Len: 7}, Layout: toa.LayoutPortIPv4} }},
		{"port range", func(c *Config) { c.PortMin, c.PortMax = 3000, 2000 }},
		{"device name", func(c *Config) { c.Device = "averyveryverylongname" }},
	} {
		cfg := Config{VIPs: []netip.AddrPort{vip4}, Origin: origin4, ProxyAddr4: lip4}
		tc.mod(&cfg)
		if _, err := cfg.normalize(); err == nil {
			t.Errorf("%s: got no error", tc.name)
		}
	}
	cfg := Config{VIPs: []netip.AddrPort{vip4}, Origin: origin4, ProxyAddr4: lip4,
		TOA4: Option{Dialect: toa.Dialect{Kind: 240, Len: 8}, Layout: toa.LayoutPortIPv4}}
	if _, err := cfg.normalize(); err != nil {
		t.Errorf("custom kind with layout: %v", err)
	}
}

func TestParsePlacement(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Placement
	}{
		{"syn", SYN}, {"ack+data", DPVS}, {"SYN,ACK,DATA", LVS}, {"none", 0}, {"", 0},
	} {
		got, err := ParsePlacement(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParsePlacement(%q): got %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if back, _ := ParsePlacement(got.String()); back != got {
			t.Errorf("round trip of %v: got %v", got, back)
		}
	}
	if _, err := ParsePlacement("fin"); err == nil {
		t.Error("ParsePlacement(fin): got no error")
	}
}

// BenchmarkHandle measures the rewrite of one established connection's
// packets, a 1000-byte data segment that gets a TOA and the origin's
// 1000-byte reply, without the device's system calls.
func BenchmarkHandle(b *testing.B) {
	for _, bc := range []struct {
		name        string
		client, vip netip.AddrPort
		origin      netip.AddrPort
		toa4, toa6  toa.Dialect
		placement   Placement
	}{
		{"v4", client4, vip4, origin4, toa.Kind254V4, toa.Kind254V6, DPVS},
		{"fnat64", client6, vip6, origin4, toa.Kind254V4, toa.Kind254V6, DPVS},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := newForwarder(testConfig(b, bc.origin, func(c *Config) {
				c.TOA4, c.TOA6, c.Placement = Option{Dialect: bc.toa4}, Option{Dialect: bc.toa6}, bc.placement
			}), nil, "bench")
			out := make([]byte, 70000)
			now := time.Unix(1, 0)
			syn := (&craft.Segment{Src: bc.client, Dst: bc.vip, Flags: decode.SYN, Options: linuxSYNOptions(1440)}).IP()
			proxy := decodeIP(b, f.handle(syn, out, now)).Peer
			f.handle((&craft.Segment{Src: bc.origin, Dst: proxy, Flags: decode.SYN | decode.ACK, Options: linuxSYNOptions(1460)}).IP(), out, now)
			f.handle((&craft.Segment{Src: bc.client, Dst: bc.vip, Flags: decode.ACK, Options: linuxOptions()}).IP(), out, now)
			data := (&craft.Segment{Src: bc.client, Dst: bc.vip, Flags: decode.ACK | decode.PSH, Options: linuxOptions(), Payload: make([]byte, 1000)}).IP()
			reply := (&craft.Segment{Src: bc.origin, Dst: proxy, Flags: decode.ACK, Options: linuxOptions(), Payload: make([]byte, 1000)}).IP()
			b.ReportAllocs()
			b.SetBytes(int64(len(data) + len(reply)))
			for b.Loop() {
				f.handle(data, out, now)
				f.handle(reply, out, now)
			}
		})
	}
}
