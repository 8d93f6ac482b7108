package packet

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/toad-project/toad/internal/inject"
	"github.com/toad-project/toad/internal/netnstest"
	"github.com/toad-project/toad/internal/privtest"
)

// deadline bounds every wait in these tests; nothing should come near it.
const deadline = 20 * time.Second

var macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}

// link is a veth pair between two namespaces: packets written to the
// sender's end arrive at the receiver's end, veth-r.
type link struct {
	recv, send *netnstest.NS
	witness    int // a plain packet socket on veth-r that takes only markers
}

func newLink(t testing.TB) *link {
	t.Helper()
	privtest.Require(t, "ip")
	l := &link{recv: netnstest.New(t, "packet"), send: netnstest.New(t, "packet")}
	// The sender's end stays silent: no IPv6, no addresses.
	l.send.Sysctl(t, "net.ipv6.conf.all.disable_ipv6", "1")
	l.recv.Sysctl(t, "net.ipv6.conf.all.disable_ipv6", "1")
	netnstest.Veth(t, l.recv, "veth-r", l.send, "veth-s")
	l.recv.IP(t, "link set veth-r address "+macB.String())
	err := l.recv.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		l.witness = fd
		prog, err := bpf.Assemble(onlyProto(markerProto))
		if err != nil {
			return err
		}
		filter := make([]unix.SockFilter, len(prog))
		for i, ins := range prog {
			filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
		}
		fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(deadline.Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		ifi, err := net.InterfaceByName("veth-r")
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(l.witness) })
	return l
}

// settle sends a marker and waits until it has reached veth-r: every
// packet sent before it has then passed every packet socket there (the
// kernel hands each packet to all of them before the next).
func (l *link) settle(t testing.TB) {
	t.Helper()
	l.sendAll(t, [][]byte{udp(0, markerProto)})
	buf := make([]byte, 64)
	if _, _, err := unix.Recvfrom(l.witness, buf, 0); err != nil {
		t.Fatalf("the marker did not reach veth-r: %v", err)
	}
}

// open opens a Conn on veth-r with prog attached (nil: every packet).
func (l *link) open(t testing.TB, cfg Config, prog []bpf.Instruction) *Conn {
	t.Helper()
	var c *Conn
	err := l.recv.Do(func() error {
		var err error
		if c, err = Open(cfg); err != nil {
			return err
		}
		if prog == nil {
			prog = []bpf.Instruction{bpf.RetConstant{Val: 0xffff}}
		}
		raw, err := bpf.Assemble(prog)
		if err != nil {
			return err
		}
		if err := c.SetBPF(raw); err != nil {
			return err
		}
		ifi, err := net.InterfaceByName("veth-r")
		if err != nil {
			return err
		}
		return c.Bind(ifi)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sendAll writes IPv4 packets to veth-s, in order, from one thread.
func (l *link) sendAll(t testing.TB, packets [][]byte) {
	t.Helper()
	err := l.send.Do(func() error { return inject.Burst("veth-s", macB, packets, 0) })
	if err != nil {
		t.Fatal(err)
	}
}

// udp returns an IPv4 UDP packet from 198.51.100.1 to 192.0.2.1 whose
// IP protocol is proto and whose payload holds seq.
func udp(seq uint32, proto byte) []byte {
	p := make([]byte, 20+8+4)
	p[0], p[8], p[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	copy(p[12:], []byte{198, 51, 100, 1})
	copy(p[16:], []byte{192, 0, 2, 1})
	fixChecksum(p)
	binary.BigEndian.PutUint16(p[20:], 4000)
	binary.BigEndian.PutUint16(p[22:], 5000)
	binary.BigEndian.PutUint16(p[24:], 12)
	binary.BigEndian.PutUint32(p[28:], seq)
	return p
}

const markerProto = 253 // RFC 3692 experimental: the end marker's protocol

// onlyProto is a filter passing IPv4 packets of one protocol.
func onlyProto(proto byte) []bpf.Instruction {
	return []bpf.Instruction{
		bpf.LoadAbsolute{Off: 9, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(proto), SkipFalse: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	}
}

// receiver runs Receive in a goroutine and keeps what it hands over.
type receiver struct {
	c    *Conn
	mu   sync.Mutex
	got  [][]byte
	ts   []time.Time
	more chan struct{}
	done chan error
}

func receive(c *Conn) *receiver {
	r := &receiver{c: c, more: make(chan struct{}, 1), done: make(chan error, 1)}
	go func() {
		r.done <- c.Receive(func(data []byte, ts time.Time) {
			r.mu.Lock()
			r.got = append(r.got, bytes.Clone(data))
			r.ts = append(r.ts, ts)
			r.mu.Unlock()
			select {
			case r.more <- struct{}{}:
			default:
			}
		})
	}()
	return r
}

// waitN waits until n packets have been handed over and returns them.
func (r *receiver) waitN(t *testing.T, n int) [][]byte {
	t.Helper()
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	for {
		r.mu.Lock()
		got := r.got
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-r.more:
		case err := <-r.done:
			t.Fatalf("Receive returned %v after %d packets, want %d", err, len(got), n)
		case <-timer.C:
			t.Fatalf("%d packets handed over within %v, want %d", len(got), deadline, n)
		}
	}
}

// TestReceive: packets sent across a veth arrive whole, in order, each
// once, stamped with the time they were received; the counters agree.
func TestReceive(t *testing.T) {
	l := newLink(t)
	c := l.open(t, Config{RingSize: 64 << 10, BlockSize: 16 << 10}, nil)
	r := receive(c)
	// Three rounds of 100 through a ring of 108 frames: it wraps.
	const n = 300
	var packets [][]byte
	for i := range n {
		packets = append(packets, udp(uint32(i), unix.IPPROTO_UDP))
	}
	before := time.Now()
	var got [][]byte
	for i := 0; i < n; i += 100 {
		l.sendAll(t, packets[i:i+100])
		got = r.waitN(t, i+100)
	}
	for i, p := range packets {
		if !bytes.Equal(got[i], p) {
			t.Fatalf("packet %d: got % x, want % x", i, got[i], p)
		}
	}
	r.mu.Lock()
	for i, ts := range r.ts {
		if ts.Before(before.Add(-time.Second)) || ts.After(time.Now()) {
			t.Errorf("packet %d stamped %v, want the time it was sent (%v)", i, ts, before)
		}
	}
	r.mu.Unlock()
	st, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets != n || st.Drops != 0 || st.Received != n {
		t.Errorf("stats %+v, want %d packets, 0 drops, %d received", st, n, n)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-r.done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Receive returned %v after Close, want net.ErrClosed", err)
	}
	var oe *net.OpError
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := c.Mark(); !errors.As(err, &oe) && err != nil {
		t.Errorf("Mark after Close: %v, want nil or a *net.OpError", err)
	}
	if st2, _ := c.Stats(); st2 != st {
		t.Errorf("stats after Close %+v, want %+v as Close read them", st2, st)
	}
}

// TestFilterBeforeBind: the filter applies from the socket's first packet:
// of a stream of packets that began before the socket was opened, only
// those the filter passes ever reach it.
func TestFilterBeforeBind(t *testing.T) {
	l := newLink(t)
	stop := make(chan struct{})
	sent := make(chan error, 1)
	go func() {
		sent <- l.send.Do(func() error {
			s, err := inject.New("veth-s", macB)
			if err != nil {
				return err
			}
			defer s.Close()
			for i := uint32(0); ; i++ {
				select {
				case <-stop:
					return nil
				default:
				}
				if err := s.Send(udp(i, unix.IPPROTO_UDP)); err != nil {
					return err
				}
			}
		})
	}()
	c := l.open(t, Config{}, onlyProto(markerProto))
	r := receive(c)
	l.sendAll(t, [][]byte{udp(1, markerProto)})
	got := r.waitN(t, 1)
	close(stop)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if got[0][9] != markerProto {
		t.Errorf("first packet has protocol %d, want only the marker (%d)", got[0][9], markerProto)
	}
	if st, _ := c.Stats(); st.Packets != 1 {
		t.Errorf("the socket took %d packets, want only the marker", st.Packets)
	}
}

// TestDrops: a ring that fills up drops what does not fit and counts it;
// Mark counts only what the ring holds, so a Wait for it returns once
// those are handed over.
func TestDrops(t *testing.T) {
	l := newLink(t)
	c := l.open(t, Config{RingSize: 4096, BlockSize: 4096, SnapLen: 128}, onlyProto(unix.IPPROTO_UDP))
	frames := 4096 / frameSize(128)
	const n = 100
	var packets [][]byte
	for i := range n {
		packets = append(packets, udp(uint32(i), unix.IPPROTO_UDP))
	}
	l.sendAll(t, packets)
	l.settle(t) // nothing reads yet
	st, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets != n || st.Drops != n-uint64(frames) {
		t.Fatalf("stats %+v, want %d packets and %d drops (a ring of %d frames)", st, n, n-frames, frames)
	}
	m, err := c.Mark()
	if err != nil || m != Mark(frames) {
		t.Fatalf("Mark = %d, %v; want %d", m, err, frames)
	}
	r := receive(c)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := c.Wait(ctx, m); err != nil {
		t.Fatal(err)
	}
	got := r.waitN(t, frames)
	for i := range frames {
		if !bytes.Equal(got[i], packets[i]) {
			t.Errorf("frame %d holds % x, want the packet sent %d-th", i, got[i], i)
		}
	}
}

// TestSyncAfterAccept: once accept() has returned a TCP connection, Sync
// returns only after the handshake's segments have been handed over,
// however fast the lookup follows the accept: the kernel puts them in the
// ring on their way up the stack, before TCP sees them.
func TestSyncAfterAccept(t *testing.T) {
	privtest.Require(t, "ip")
	ns := netnstest.New(t, "packet")
	var c *Conn
	var ln net.Listener
	err := ns.Do(func() (err error) {
		if c, err = Open(Config{}); err != nil {
			return err
		}
		tcp, err := bpf.Assemble(onlyProto(unix.IPPROTO_TCP))
		if err != nil {
			return err
		}
		if err := c.SetBPF(tcp); err != nil {
			return err
		}
		if err := c.SetIgnoreOutgoing(); err != nil {
			return err
		}
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			return err
		}
		if err := c.Bind(lo); err != nil {
			return err
		}
		ln, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer ln.Close()

	// Segments by source port, as Receive hands them over.
	var mu sync.Mutex
	acks := map[uint16]int{} // segments from the client with ACK set and no SYN
	go c.Receive(func(data []byte, _ time.Time) {
		if len(data) < 40 || data[0]>>4 != 4 {
			return
		}
		ihl := int(data[0]&0xf) * 4
		tcp := data[ihl:]
		flags := tcp[13]
		if flags&0x10 != 0 && flags&0x02 == 0 {
			mu.Lock()
			acks[binary.BigEndian.Uint16(tcp[0:])]++
			mu.Unlock()
		}
	})

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
		err := ns.Do(func() (err error) {
			client, err = net.Dial("tcp4", ln.Addr().String())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		a, ok := <-accepted
		if !ok {
			t.Fatal("accept failed")
		}
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		err = c.Sync(ctx)
		cancel()
		if err != nil {
			t.Fatalf("connection %d: Sync: %v", i, err)
		}
		port := netip.MustParseAddrPort(client.LocalAddr().String()).Port()
		mu.Lock()
		n := acks[port]
		mu.Unlock()
		if n == 0 {
			t.Fatalf("connection %d accepted and Sync returned, but the handshake's last ACK from port %d was not handed over", i, port)
		}
		client.Close()
		a.Close()
	}
}

// TestCloseWakesReceive: an idle Receive, asleep with no timeout, returns
// when the socket closes; a Wait for a packet that never comes returns
// too.
func TestCloseWakesReceive(t *testing.T) {
	l := newLink(t)
	c := l.open(t, Config{}, nil)
	r := receive(c)
	waited := make(chan error, 1)
	go func() { waited <- c.Wait(context.Background(), 1) }()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	for range 2 {
		select {
		case err := <-r.done:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("Receive returned %v, want net.ErrClosed", err)
			}
		case err := <-waited:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("Wait returned %v, want net.ErrClosed", err)
			}
		case <-timer.C:
			t.Fatal("Receive or Wait still running after Close")
		}
	}
	if err := c.Receive(func([]byte, time.Time) {}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Receive after Close: %v, want net.ErrClosed", err)
	}
}

// parking receives from c, and lets a test wait until the receiver has
// parked.
type parking struct {
	*receiver
	c     *Conn
	parks chan struct{}
}

func receiveParking(c *Conn) *parking {
	p := &parking{c: c, parks: make(chan struct{}, 64)}
	c.mu.Lock()
	c.onPark = func() { p.parks <- struct{}{} }
	c.mu.Unlock()
	p.receiver = receive(c)
	return p
}

// waitParked waits until Receive waits in the runtime's poller.
func (p *parking) waitParked(t *testing.T) {
	t.Helper()
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	for {
		p.c.mu.Lock()
		parked := p.c.parked != nil
		p.c.mu.Unlock()
		if parked {
			return
		}
		select {
		case <-p.parks: // look again
		case err := <-p.done:
			t.Fatalf("Receive returned %v before it parked", err)
		case <-timer.C:
			t.Fatalf("Receive did not park within %v", deadline)
		}
	}
}

// ended waits for Receive to return and returns its error.
func (p *parking) ended(t *testing.T) error {
	t.Helper()
	select {
	case err := <-p.done:
		return err
	case <-time.After(deadline):
		t.Fatal("a parked Receive still runs")
		return nil
	}
}

// TestParkedReceive: a Receive parked on a quiet link hands over the
// packets that come, and returns when the socket closes.
func TestParkedReceive(t *testing.T) {
	l := newLink(t)
	c := l.open(t, Config{}, onlyProto(unix.IPPROTO_UDP))
	r := receiveParking(c)
	for i := range 3 {
		r.waitParked(t)
		l.sendAll(t, [][]byte{udp(uint32(i), unix.IPPROTO_UDP)})
		if got := r.waitN(t, i+1); !bytes.Equal(got[i], udp(uint32(i), unix.IPPROTO_UDP)) {
			t.Fatalf("packet %d: got % x", i, got[i])
		}
	}
	r.waitParked(t)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.ended(t); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Receive returned %v, want net.ErrClosed", err)
	}
}

// TestParkedInterfaceGone: a Receive parked on an interface that goes
// away returns the socket's error.
func TestParkedInterfaceGone(t *testing.T) {
	l := newLink(t)
	c := l.open(t, Config{}, onlyProto(unix.IPPROTO_UDP))
	r := receiveParking(c)
	r.waitParked(t)
	l.recv.IP(t, "link del veth-r")
	if err := r.ended(t); !errors.Is(err, unix.ENETDOWN) {
		t.Errorf("Receive returned %v after the interface went away, want ENETDOWN", err)
	}
}

// TestFanout: two sockets in a fanout group share the traffic by flow:
// each flow reaches one of them, whole and in order.
func TestFanout(t *testing.T) {
	l := newLink(t)
	a := l.open(t, Config{}, onlyProto(unix.IPPROTO_UDP))
	b := l.open(t, Config{}, onlyProto(unix.IPPROTO_UDP))
	id := uint16(os.Getpid()) ^ 0x5a5a
	for _, c := range []*Conn{a, b} {
		if err := c.JoinFanout(id); err != nil {
			t.Fatal(err)
		}
	}
	ra, rb := receive(a), receive(b)
	const flows, per = 16, 20
	var packets [][]byte
	for i := range flows * per {
		p := udp(uint32(i), unix.IPPROTO_UDP)
		binary.BigEndian.PutUint16(p[20:], uint16(1000+i%flows)) // the flow's source port
		packets = append(packets, p)
	}
	l.sendAll(t, packets)
	l.settle(t)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	total := 0
	for _, r := range []*receiver{ra, rb} {
		if err := r.c.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		r.mu.Lock()
		total += len(r.got)
		r.mu.Unlock()
	}
	owner := map[uint16]*receiver{}
	last := map[uint16]uint32{}
	for _, r := range []*receiver{ra, rb} {
		r.mu.Lock()
		for _, p := range r.got {
			port := binary.BigEndian.Uint16(p[20:])
			if o, ok := owner[port]; ok && o != r {
				t.Errorf("flow %d reached both sockets", port)
			}
			owner[port] = r
			seq := binary.BigEndian.Uint32(p[28:])
			if s, ok := last[port]; ok && seq <= s {
				t.Errorf("flow %d: packet %d after %d", port, seq, s)
			}
			last[port] = seq
		}
		r.mu.Unlock()
	}
	if total != flows*per || len(owner) != flows {
		t.Errorf("%d packets of %d flows handed over, want %d of %d", total, len(owner), flows*per, flows)
	}
}
