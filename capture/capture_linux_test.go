package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/toad-project/toad/capture/packet"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/internal/inject"
	"github.com/toad-project/toad/internal/netnstest"
	"github.com/toad-project/toad/internal/privtest"
	"github.com/toad-project/toad/internal/syncbuf"
	"github.com/toad-project/toad/toa"
)

// collector is a sink that keeps every record and lets a test wait for
// the ones it expects.
type collector struct {
	mu      sync.Mutex
	records []decode.Record
	changed chan struct{}
}

func newCollector() *collector { return &collector{changed: make(chan struct{}, 1)} }

func (c *collector) Observe(r *decode.Record) {
	c.mu.Lock()
	c.records = append(c.records, *r)
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// waitFor waits until done holds for the records so far, or fails t at
// the deadline. It returns a copy of the records.
func (c *collector) waitFor(t *testing.T, what string, done func([]decode.Record) bool) []decode.Record {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		recs := append([]decode.Record(nil), c.records...)
		c.mu.Unlock()
		if done(recs) {
			return recs
		}
		select {
		case <-c.changed:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s: %d records so far", what, len(recs))
		}
	}
}

// seen is what a test compares of a record.
type seen struct {
	Peer, Local netip.AddrPort
	Flags       decode.Flags
	Seq         uint32
	TOA         toa.Client
}

func seenOf(r *decode.Record) seen {
	return seen{r.Peer, r.Local, r.Flags, r.Seq, r.TOA}
}

// traffic is what a test sends and what the capture must deliver of it.
type traffic struct {
	packets [][]byte
	want    map[seen]int
	markers map[seen]bool
	plain   int // packets the filter must keep in the kernel
}

func (tr *traffic) add(s craft.Segment, expected bool) {
	tr.packets = append(tr.packets, s.IP())
	if !expected {
		tr.plain++
		return
	}
	var r decode.Record
	if why := decode.New(nil).Decode(decode.LinkRaw, tr.packets[len(tr.packets)-1], time.Time{}, &r); why != decode.OK {
		panic(why)
	}
	tr.want[seenOf(&r)]++
}

// connections scripts connections from proxies to servers, rounds times:
// every default dialect, in the SYN or the ACK, over IPv4 and IPv6 (some
// with extension headers on the TOA carrier), each with plain data and a
// FIN. Then markers: RSTs on many flows, sent last, so that every reader
// of a fanout group gets one.
func connections(rounds int) *traffic {
	tr := &traffic{want: map[seen]int{}, markers: map[seen]bool{}}
	ts := craft.Timestamps(7, 9)
	port := uint16(20000)
	for range rounds {
		for _, d := range toa.DefaultSet().Dialects() {
			for _, v6 := range []bool{false, true} {
				for place := range 3 {
					port++
					peer, local := netip.AddrPortFrom(proxy4.Addr(), port), server4
					if v6 {
						peer, local = netip.AddrPortFrom(proxy6.Addr(), port), server6
					}
					opt := craft.TOA(d, clientFor(d))
					syn := craft.Segment{Src: peer, Dst: local, Flags: decode.SYN, Seq: 1000, Options: craft.Opts(craft.MSS(1460), craft.NOP, craft.WScale(7))}
					ack := craft.Segment{Src: peer, Dst: local, Flags: decode.ACK, Seq: 1001, Ack: 5001, Options: craft.Opts(craft.NOP, craft.NOP, ts)}
					switch place {
					case 0:
						syn.Options = craft.Opts(opt, syn.Options)
					case 1:
						ack.Options = craft.Opts(ack.Options, opt)
					case 2:
						ack.Options = craft.Opts(opt, ack.Options)
						if v6 {
							ack.Ext = []craft.Ext{{Type: 0, Len: 8}}
						}
					}
					tr.add(syn, true)
					tr.add(ack, place != 0)
					for k := range 5 {
						tr.add(craft.Segment{Src: peer, Dst: local, Flags: decode.ACK | decode.PSH, Seq: 1001 + 100*uint32(k), Ack: 5001,
							Options: craft.Opts(craft.NOP, craft.NOP, ts), Payload: bytes.Repeat([]byte{'x'}, 100)}, false)
					}
					tr.add(craft.Segment{Src: peer, Dst: local, Flags: decode.FIN | decode.ACK, Seq: 1501, Ack: 5001, Options: craft.Opts(craft.NOP, craft.NOP, ts)}, true)
				}
			}
		}
	}
	for i := range 32 {
		m := craft.Segment{Src: netip.AddrPortFrom(proxy4.Addr(), 60000+uint16(i)), Dst: server4, Flags: decode.RST, Seq: 77}
		tr.add(m, true)
		var r decode.Record
		decode.New(nil).Decode(decode.LinkRaw, tr.packets[len(tr.packets)-1], time.Time{}, &r)
		tr.markers[seenOf(&r)] = true
	}
	return tr
}

// deliveredAll reports whether every marker has arrived.
func (tr *traffic) deliveredAll(recs []decode.Record) bool {
	n := 0
	for i := range recs {
		if tr.markers[seenOf(&recs[i])] {
			n++
		}
	}
	return n >= len(tr.markers)
}

// check compares what arrived with what was expected, exactly.
func (tr *traffic) check(t *testing.T, recs []decode.Record) {
	t.Helper()
	got := map[seen]int{}
	for i := range recs {
		got[seenOf(&recs[i])]++
	}
	for k, n := range tr.want {
		if got[k] != n {
			t.Errorf("%v->%v %v seq %d toa %v: delivered %d times, want %d", k.Peer, k.Local, k.Flags, k.Seq, k.TOA, got[k], n)
		}
	}
	for k, n := range got {
		if _, ok := tr.want[k]; !ok {
			t.Errorf("%v->%v %v seq %d toa %v: delivered %d times, want never", k.Peer, k.Local, k.Flags, k.Seq, k.TOA, n)
		}
	}
}

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
)

// vethPair creates namespaces a and b joined by veth-a and veth-b. A has
// the servers' addresses and routes back to the proxies, so its stack
// answers what b sends (with RSTs: nothing listens), which the capture
// must not count. B is silent: IPv6 is off there.
func vethPair(t *testing.T) (a, b *netnstest.NS) {
	a, b = netnstest.New(t, "capture"), netnstest.New(t, "capture")
	b.Sysctl(t, "net.ipv6.conf.all.disable_ipv6", "1")
	netnstest.Veth(t, a, "veth-a", b, "veth-b")
	b.IP(t, "link set veth-b address "+macB.String())
	a.IP(t,
		"link set veth-a address "+macA.String(),
		"addr add "+server4.Addr().String()+"/24 dev veth-a",
		"addr add "+server6.Addr().String()+"/64 dev veth-a nodad",
		"route add 198.51.100.0/24 dev veth-a",
		"route add 2001:db8:100::/64 dev veth-a",
		"neigh add "+proxy4.Addr().String()+" lladdr "+macB.String()+" dev veth-a",
		"neigh add "+proxy6.Addr().String()+" lladdr "+macB.String()+" dev veth-a")
	return a, b
}

func openIn(t *testing.T, ns *netnstest.NS, cfg Config, sink Sink) *Capture {
	t.Helper()
	var c *Capture
	err := ns.Do(func() (err error) {
		c, err = Open(cfg, sink)
		return err
	})
	if err != nil {
		t.Fatalf("open capture in %s: %v", ns.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func sendIn(t *testing.T, ns *netnstest.NS, iface string, dst net.HardwareAddr, packets [][]byte) {
	t.Helper()
	err := ns.Do(func() error { return inject.Burst(iface, dst, packets, 0) })
	if err != nil {
		t.Fatal(err)
	}
}

// TestLiveVeth sends connections across a veth pair to a capture with two
// fanout readers: exactly the TOA carriers and the SYN, FIN and RST
// segments arrive, each once, decoded right, and nothing is dropped.
func TestLiveVeth(t *testing.T) {
	privtest.Require(t, "ip")
	a, b := vethPair(t)
	sink := newCollector()
	c := openIn(t, a, Config{Interface: "veth-a", Readers: 2}, sink)
	tr := connections(4)
	sendIn(t, b, "veth-b", macA, tr.packets)
	recs := sink.waitFor(t, "the markers", tr.deliveredAll)
	tr.check(t, recs)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	st := c.Stats()
	if st.Filter != FilterTOA || !st.IgnoreOutgoing || st.Readers != 2 {
		t.Errorf("filter %v, ignore outgoing %v, %d readers; want %v, true, 2", st.Filter, st.IgnoreOutgoing, st.Readers, FilterTOA)
	}
	if st.Drops != 0 {
		t.Errorf("kernel dropped %d packets, want 0", st.Drops)
	}
	if st.Packets != st.KernelPackets || st.Packets != st.Records || st.Records != uint64(len(recs)) {
		t.Errorf("kernel passed %d packets, readers read %d and made %d records (%d delivered); want all equal",
			st.KernelPackets, st.Packets, st.Records, len(recs))
	}
	sent := len(tr.packets)
	t.Logf("sent %d packets (%d plain), the filter passed %d (%.1f%%)", sent, tr.plain, st.KernelPackets, 100*float64(st.KernelPackets)/float64(sent))
	for _, r := range recs {
		if r.Time.IsZero() || time.Since(r.Time) > time.Minute {
			t.Errorf("record %v->%v has time %v, want the capture time", r.Peer, r.Local, r.Time)
			break
		}
	}
}

// TestLiveLoopback: on loopback every packet passes the capture twice,
// going out and coming in; only the incoming copy counts, on "lo" and on
// every interface. A real TCP connection's handshake and close are seen
// once each too.
func TestLiveLoopback(t *testing.T) {
	privtest.Require(t, "ip")
	for _, iface := range []string{"lo", ""} {
		t.Run(ifaceName(iface), func(t *testing.T) {
			ns := netnstest.New(t, "capture")
			sink := newCollector()
			c := openIn(t, ns, Config{Interface: iface}, sink)
			tr := connections(1)
			sendIn(t, ns, "lo", net.HardwareAddr{0, 0, 0, 0, 0, 0}, tr.packets)
			recs := sink.waitFor(t, "the markers", tr.deliveredAll)
			tr.check(t, recs)

			// A real connection over loopback.
			var peer, local netip.AddrPort
			err := ns.Do(func() error {
				ln, err := net.Listen("tcp4", "127.0.0.1:0")
				if err != nil {
					return err
				}
				defer ln.Close()
				conn, err := net.Dial("tcp4", ln.Addr().String())
				if err != nil {
					return err
				}
				srv, err := ln.Accept()
				if err != nil {
					return err
				}
				peer = conn.LocalAddr().(*net.TCPAddr).AddrPort()
				local = srv.LocalAddr().(*net.TCPAddr).AddrPort()
				conn.Close()
				buf := make([]byte, 1)
				srv.Read(buf) // EOF: the client's FIN arrived
				return srv.Close()
			})
			if err != nil {
				t.Fatal(err)
			}
			count := func(recs []decode.Record, from netip.AddrPort, f decode.Flags) int {
				n := 0
				for _, r := range recs {
					if r.Peer == from && r.Flags&f == f {
						n++
					}
				}
				return n
			}
			recs = sink.waitFor(t, "both FINs", func(recs []decode.Record) bool {
				return count(recs, peer, decode.FIN) > 0 && count(recs, local, decode.FIN) > 0
			})
			for _, w := range []struct {
				from netip.AddrPort
				f    decode.Flags
			}{{peer, decode.SYN}, {local, decode.SYN | decode.ACK}, {peer, decode.FIN}, {local, decode.FIN}} {
				if n := count(recs, w.from, w.f); n != 1 {
					t.Errorf("%v from %v: seen %d times, want once", w.f, w.from, n)
				}
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if st := c.Stats(); st.Drops != 0 || st.Filter != FilterTOA {
				t.Errorf("%d drops, filter %v; want 0, %v", st.Drops, st.Filter, FilterTOA)
			}
		})
	}
}

// TestLiveFilterFallback: a kernel that refuses the full program (here
// net.core.optmem_max lowered in the namespace) gets a shorter one; the
// capture works, says so in the log and the stats, and user space still
// rejects what the kernel let through.
func TestLiveFilterFallback(t *testing.T) {
	privtest.Require(t, "ip")
	ns := netnstest.New(t, "capture")
	err := ns.Do(func() error {
		return os.WriteFile("/proc/sys/net/core/optmem_max", []byte("4096"), 0)
	})
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("this kernel's net.core.optmem_max is not per network namespace, and lowering it host-wide would disturb other tests")
	}
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	sink := newCollector()
	c := openIn(t, ns, Config{Interface: "lo", Logger: slog.New(slog.NewTextHandler(&logs, nil))}, sink)
	if st := c.Stats(); st.Filter != FilterTCP {
		t.Fatalf("filter %v attached, want %v", st.Filter, FilterTCP)
	}
	if !strings.Contains(logs.String(), "kernel refused the capture filter") || !strings.Contains(logs.String(), "filter=toa") {
		t.Errorf("log %q: want the refusal of filter toa", logs.String())
	}
	tr := connections(1)
	sendIn(t, ns, "lo", net.HardwareAddr{0, 0, 0, 0, 0, 0}, tr.packets)
	recs := sink.waitFor(t, "every TCP packet", func(recs []decode.Record) bool { return len(recs) >= len(tr.packets) })
	if len(recs) != len(tr.packets) {
		t.Errorf("got %d records for %d TCP packets sent", len(recs), len(tr.packets))
	}
	got := map[seen]int{}
	for i := range recs {
		got[seenOf(&recs[i])]++
	}
	for k, n := range tr.want {
		if got[k] != n {
			t.Errorf("%v->%v %v: delivered %d times, want %d", k.Peer, k.Local, k.Flags, got[k], n)
		}
	}
}

// TestLiveCloseUnderLoad closes the capture while packets stream in:
// readers stop before the sockets close, and Close is idempotent.
func TestLiveCloseUnderLoad(t *testing.T) {
	privtest.Require(t, "ip")
	ns := netnstest.New(t, "capture")
	sink := newCollector()
	c := openIn(t, ns, Config{Interface: "lo", Readers: 2}, sink)
	stop := make(chan struct{})
	sent := make(chan error, 1)
	go func() {
		sent <- ns.Do(func() error {
			s, err := inject.New("lo", net.HardwareAddr{0, 0, 0, 0, 0, 0})
			if err != nil {
				return err
			}
			defer s.Close()
			tr := connections(1)
			for {
				for _, p := range tr.packets {
					select {
					case <-stop:
						return nil
					default:
					}
					if err := s.Send(p); err != nil {
						return err
					}
				}
			}
		})
	}()
	sink.waitFor(t, "some records", func(recs []decode.Record) bool { return len(recs) > 100 })
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case <-c.Done():
	default:
		t.Error("Done not closed after Close")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	close(stop)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Records == 0 || st.Packets != st.Records {
		t.Errorf("after Close: %d packets, %d records", st.Packets, st.Records)
	}
}

// TestOpenWithoutCapNetRaw: without CAP_NET_RAW, Open says which
// capability is missing and how to grant it.
func TestOpenWithoutCapNetRaw(t *testing.T) {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread loses a capability
		if os.Geteuid() == 0 {
			hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
			var data [2]unix.CapUserData
			if err := unix.Capget(&hdr, &data[0]); err != nil {
				errc <- err
				return
			}
			data[0].Effective &^= 1 << unix.CAP_NET_RAW
			data[0].Permitted &^= 1 << unix.CAP_NET_RAW
			if err := unix.Capset(&hdr, &data[0]); err != nil {
				errc <- err
				return
			}
		}
		c, err := Open(Config{}, SinkFunc(func(*decode.Record) {}))
		if err == nil {
			c.Close()
			err = errors.New("Open succeeded")
		}
		errc <- err
	}()
	err := <-errc
	if !errors.Is(err, os.ErrPermission) {
		t.Fatalf("got %v, want a permission error", err)
	}
	for _, w := range []string{"CAP_NET_RAW", "setcap cap_net_raw+ep", "securityContext"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func TestOpenBadInterface(t *testing.T) {
	_, err := Open(Config{Interface: "toadnope0"}, SinkFunc(func(*decode.Record) {}))
	if err == nil || !strings.Contains(err.Error(), `"toadnope0"`) {
		t.Errorf("got %v, want an error naming the interface", err)
	}
}

// TestKernelAcceptsPrograms attaches every level's program, for small,
// default and large dialect sets, to a real socket.
func TestKernelAcceptsPrograms(t *testing.T) {
	privtest.Require(t)
	conn, err := packet.Open(packet.Config{RingSize: 4096, BlockSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, set := range programTestSets(t, "all") {
		for _, f := range []Filter{FilterTOA, FilterTCP, FilterDirection} {
			prog, err := socketProgram(f, set, 512)
			if err != nil {
				t.Fatal(err)
			}
			if err := conn.SetBPF(prog); err != nil {
				t.Errorf("%v with %d dialects (%d instructions): kernel says %v", f, len(set.Dialects()), len(prog), err)
			}
		}
	}
}

// TestLiveTun captures on a tun device, which has no link header at all,
// and sees it go away: the capture stops with an error.
func TestLiveTun(t *testing.T) {
	privtest.Require(t, "ip")
	ns := netnstest.New(t, "capture")
	var tun int
	err := ns.Do(func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ifr, err := unix.NewIfreq("toadtun0")
		if err != nil {
			return err
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF: %w", err)
		}
		tun = fd
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			unix.Close(tun)
		}
	})
	ns.IP(t, "link set toadtun0 up")
	sink := newCollector()
	c := openIn(t, ns, Config{Interface: "toadtun0"}, sink)
	tr := connections(1)
	for i, p := range tr.packets {
		if _, err := unix.Write(tun, p); err != nil {
			t.Fatalf("write packet %d to the tun device: %v", i, err)
		}
	}
	tr.check(t, sink.waitFor(t, "the markers", tr.deliveredAll))

	unix.Close(tun) // the device goes away
	closed = true
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	select {
	case <-c.Done():
	case <-deadline.C:
		t.Fatal("capture still running on a deleted interface")
	}
	if err := c.Err(); !errors.Is(err, unix.ENETDOWN) {
		t.Errorf("Err() = %v after the interface went away, want ENETDOWN", err)
	}
}

// TestLiveSync: once accept() has returned a TCP connection, Sync on a
// capture with two readers returns only after the connection's SYN has
// reached the sink, however soon after the accept it is called; with
// nothing outstanding it does not wait.
func TestLiveSync(t *testing.T) {
	privtest.Require(t, "ip")
	ns := netnstest.New(t, "capture")
	sink := newCollector()
	c := openIn(t, ns, Config{Interface: "lo", Readers: 2}, sink)
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	syns := func(from netip.AddrPort) int {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		n := 0
		for _, r := range sink.records {
			if r.Peer == from && r.Flags&(decode.SYN|decode.ACK) == decode.SYN {
				n++
			}
		}
		return n
	}
	const conns = 200
	for i := range conns {
		accepted := make(chan net.Conn, 1)
		go func() {
			a, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- a
		}()
		var client net.Conn
		if err := ns.Do(func() (err error) {
			client, err = net.Dial("tcp4", ln.Addr().String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		a, ok := <-accepted
		if !ok {
			t.Fatal("accept failed")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := c.Sync(ctx)
		cancel()
		if err != nil {
			t.Fatalf("connection %d: Sync: %v", i, err)
		}
		from := client.LocalAddr().(*net.TCPAddr).AddrPort()
		if n := syns(from); n != 1 {
			t.Fatalf("connection %d accepted and Sync returned: the sink holds %d SYNs from %v, want 1", i, n, from)
		}
		client.Close()
		a.Close()
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(context.Background()); !errors.Is(err, ErrStopped) {
		t.Errorf("Sync after Close returned %v, want ErrStopped", err)
	}
	if st := c.Stats(); st.Drops != 0 || st.Packets != st.KernelPackets {
		t.Errorf("kernel passed %d packets, dropped %d; readers read %d: want all read, none dropped", st.KernelPackets, st.Drops, st.Packets)
	}
}

// TestLiveSyncAllocs: with nothing outstanding, Sync (what every lookup of
// an unknown connection costs) allocates nothing.
func TestLiveSyncAllocs(t *testing.T) {
	privtest.Require(t, "ip")
	ns := netnstest.New(t, "capture")
	c := openIn(t, ns, Config{Interface: "lo", Readers: 2}, newCollector())
	ctx := context.Background()
	if a := testing.AllocsPerRun(1000, func() {
		if err := c.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("Sync: %.1f allocations, want 0", a)
	}
}
