package lifetime_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/lifetime"
	"github.com/toad-project/toad/toa"
)

var (
	t0      = time.Date(2024, 5, 1, 14, 0, 0, 0, time.UTC)
	proxy   = netip.MustParseAddrPort("198.51.100.10:40001")
	proxy2  = netip.MustParseAddrPort("198.51.100.11:40001")
	spoofer = netip.MustParseAddrPort("203.0.113.200:5555")
	server  = netip.MustParseAddrPort("192.0.2.20:8080")
	alice   = toa.Client{Dialect: toa.Kind254V4, Addr: netip.MustParseAddr("203.0.113.7"), Port: 51234, HasPort: true}
	bob     = toa.Client{Dialect: toa.Kind254V4, Addr: netip.MustParseAddr("203.0.113.8"), Port: 4242, HasPort: true}
	carol   = toa.Client{Dialect: toa.Kind253V6, Addr: netip.MustParseAddr("2001:db8:c::1"), Port: 443, HasPort: true}
	dora    = toa.Client{Dialect: toa.Kind28V4, Addr: netip.MustParseAddr("203.0.113.9")}
	trusted = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
)

// at is t0 plus s seconds.
func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// seg is a segment from peer to the server at t0+s seconds.
type seg struct {
	s     float64
	peer  netip.AddrPort
	flags decode.Flags
	seq   uint32
	toas  []toa.Client
}

func (g seg) record() decode.Record {
	r := decode.Record{Time: at(g.s), Peer: g.peer, Local: server, Flags: g.flags, Seq: g.seq}
	if len(g.toas) > 0 {
		r.TOA, r.TOACount = g.toas[0], uint8(len(g.toas))
	}
	return r
}

// emitted is a connection as emitted, and how many connections had
// been emitted before the record after which it came out.
type emitted struct {
	lifetime.Conn
	After int // the index of the segment whose Observe emitted it; -1 for Finish
}

func run(t *testing.T, cfg lifetime.Config, segs []seg, expireAt ...float64) ([]emitted, lifetime.Stats) {
	t.Helper()
	var out []emitted
	step := 0
	tr, err := lifetime.New(cfg, func(c *lifetime.Conn) { out = append(out, emitted{*c, step}) })
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range segs {
		step = i
		for len(expireAt) > 0 && expireAt[0] <= g.s {
			tr.Expire(at(expireAt[0]))
			expireAt = expireAt[1:]
		}
		r := g.record()
		tr.Observe(&r)
	}
	step = -1
	tr.Finish()
	return out, tr.Stats()
}

func conn(peer netip.AddrPort, c toa.Client, opened, firstTOA, closed float64, end lifetime.End, after int) emitted {
	e := emitted{Conn: lifetime.Conn{Peer: peer, Local: server, Client: c, Opened: at(opened), End: end}, After: after}
	if !c.IsZero() {
		e.FirstTOA = at(firstTOA)
	}
	if end != lifetime.Open {
		e.Closed = at(closed)
	}
	return e
}

var cmpConn = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})

func TestTracker(t *testing.T) {
	const (
		SYN = decode.SYN
		ACK = decode.ACK
		FIN = decode.FIN | decode.ACK
		RST = decode.RST
		PSH = decode.ACK | decode.PSH
	)
	for _, c := range []struct {
		name   string
		cfg    lifetime.Config
		segs   []seg
		expire []float64 // Expire calls, at t0 plus these seconds, before the segments at or after them
		want   []emitted
		stats  lifetime.Stats
	}{
		{
			name: "TOA on the ACK, closed by FIN",
			segs: []seg{
				{1, proxy, SYN, 1000, nil},
				{2, proxy, ACK, 1001, []toa.Client{alice}},
				{3, proxy, PSH, 1001, nil},
				{5, proxy, FIN, 1200, nil},
				{6, proxy, ACK, 1201, nil},
			},
			want:  []emitted{conn(proxy, alice, 1, 2, 5, lifetime.FIN, 3)},
			stats: lifetime.Stats{Conns: 1, WithTOA: 1, FIN: 1, Held: 1, Peak: 1, AllTrusted: true},
		},
		{
			name: "TOA on the SYN, reset, a retransmitted RST absorbed",
			segs: []seg{
				{1, proxy, SYN, 1000, []toa.Client{carol}},
				{4, proxy, RST, 1001, nil},
				{4.5, proxy, RST, 1001, nil},
			},
			want:  []emitted{conn(proxy, carol, 1, 1, 4, lifetime.RST, 1)},
			stats: lifetime.Stats{Conns: 1, WithTOA: 1, RST: 1, Held: 1, Peak: 1, AllTrusted: true},
		},
		{
			name: "never closed, emitted at the end in the order first seen",
			segs: []seg{
				{1, proxy2, SYN, 7, []toa.Client{bob}},
				{2, proxy, SYN, 1000, []toa.Client{dora}},
				{3, proxy2, FIN, 9, nil},
			},
			want: []emitted{
				conn(proxy2, bob, 1, 1, 3, lifetime.FIN, 2),
				conn(proxy, dora, 2, 2, 0, lifetime.Open, -1),
			},
			stats: lifetime.Stats{Conns: 2, WithTOA: 2, FIN: 1, Open: 1, Held: 1, Peak: 2, AllTrusted: true},
		},
		{
			name: "a new SYN on an open 4-tuple ends its connection; a retransmitted SYN does not",
			segs: []seg{
				{1, proxy, SYN, 1000, []toa.Client{alice}},
				{1.5, proxy, SYN, 1000, []toa.Client{alice}},
				{60, proxy, SYN, 99999, nil},
				{60.1, proxy, ACK, 100000, []toa.Client{bob}},
			},
			want: []emitted{
				conn(proxy, alice, 1, 1, 60, lifetime.Reused, 2),
				conn(proxy, bob, 60, 60.1, 0, lifetime.Open, -1),
			},
			stats: lifetime.Stats{Conns: 2, WithTOA: 2, Reused: 1, Open: 1, Held: 0, Peak: 1, AllTrusted: true},
		},
		{
			name: "a new SYN right after a FIN starts a new connection; the first ends once",
			segs: []seg{
				{1, proxy, SYN, 1000, []toa.Client{alice}},
				{2, proxy, FIN, 1100, nil},
				{2.5, proxy, SYN, 5000, []toa.Client{bob}},
				{3, proxy, RST, 5001, nil},
			},
			want: []emitted{
				conn(proxy, alice, 1, 1, 2, lifetime.FIN, 1),
				conn(proxy, bob, 2.5, 2.5, 3, lifetime.RST, 3),
			},
			stats: lifetime.Stats{Conns: 2, WithTOA: 2, FIN: 1, RST: 1, Held: 1, Peak: 1, AllTrusted: true},
		},
		{
			name:   "a late FIN within the linger is absorbed; after it, it is a connection of its own",
			cfg:    lifetime.Config{Linger: 10 * time.Second},
			expire: []float64{12, 14, 20},
			segs: []seg{
				{1, proxy, SYN, 1000, []toa.Client{alice}},
				{2, proxy, FIN, 1100, nil},
				{11, proxy, FIN, 1100, nil}, // within 10s
				{20, proxy, FIN, 1100, nil}, // after Expire at 14 (ended at 2, forgotten)
			},
			want: []emitted{
				conn(proxy, alice, 1, 1, 2, lifetime.FIN, 1),
				conn(proxy, toa.Client{}, 20, 0, 20, lifetime.FIN, 3),
			},
			stats: lifetime.Stats{Conns: 2, WithTOA: 1, FIN: 2, Held: 1, Peak: 1, AllTrusted: true},
		},
		{
			name: "a capture that starts after the handshake: the TOA opens it, a SYN just below confirms it",
			segs: []seg{
				{1, proxy, PSH, 500000, []toa.Client{alice}},
				{2, proxy, SYN, 499000, nil}, // within 64 KiB below 499999: the same connection's
				{3, proxy, SYN, 499000, nil}, // its exact ISN now: a retransmission
				{4, proxy, SYN, 1, nil},      // another: a new connection
				{5, proxy, RST, 2, nil},
			},
			want: []emitted{
				conn(proxy, alice, 1, 1, 4, lifetime.Reused, 3),
				conn(proxy, toa.Client{}, 4, 0, 5, lifetime.RST, 4),
			},
			stats: lifetime.Stats{Conns: 2, WithTOA: 1, Reused: 1, RST: 1, Held: 1, Peak: 1, AllTrusted: true},
		},
		{
			name: "first TOA wins; conflicts counted, several TOAs counted, untrusted ignored",
			cfg:  lifetime.Config{Trusted: trusted},
			segs: []seg{
				{1, spoofer, SYN, 5, []toa.Client{bob}},
				{1, proxy, SYN, 1000, []toa.Client{alice, bob}},
				{2, proxy, ACK, 1001, []toa.Client{bob}},
				{3, proxy, PSH, 1001, []toa.Client{alice}},
				{4, spoofer, FIN, 6, []toa.Client{bob}},
				{5, proxy, FIN, 1100, []toa.Client{carol}}, // counted, not the connection's: it came with its end
				{6, proxy, FIN, 1100, []toa.Client{dora}},  // after its end
			},
			want: []emitted{{Conn: lifetime.Conn{Peer: proxy, Local: server, Client: alice, Opened: at(1), FirstTOA: at(1),
				Closed: at(5), End: lifetime.FIN, Conflicts: 2}, After: 5}},
			stats: lifetime.Stats{Conns: 1, WithTOA: 1, FIN: 1, Conflicts: 3, MultipleTOA: 1, Untrusted: 2, Held: 1, Peak: 1},
		},
		{
			name: "without a TOA: followed and emitted with no client; a TOA after the end changes nothing",
			segs: []seg{
				{1, proxy, SYN, 1000, nil},
				{2, proxy, ACK, 1001, nil},
				{3, proxy, FIN, 1100, nil},
				{4, proxy, ACK, 1101, []toa.Client{alice}},
				{5, proxy2, SYN, 1, nil},
			},
			want: []emitted{
				conn(proxy, toa.Client{}, 1, 0, 3, lifetime.FIN, 2),
				conn(proxy2, toa.Client{}, 5, 0, 0, lifetime.Open, -1),
			},
			stats: lifetime.Stats{Conns: 2, FIN: 1, Open: 1, Held: 1, Peak: 2, AllTrusted: true},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, st := run(t, c.cfg, c.segs, c.expire...)
			if diff := cmp.Diff(c.want, got, cmpConn); diff != "" {
				t.Errorf("emitted (-want +got):\n%s", diff)
			}
			if st != c.stats {
				t.Errorf("stats %+v, want %+v", st, c.stats)
			}
		})
	}
}

func TestNewConfig(t *testing.T) {
	if _, err := lifetime.New(lifetime.Config{Trusted: []netip.Prefix{{}}}, func(*lifetime.Conn) {}); err == nil {
		t.Errorf("an invalid trusted range: no error")
	}
	if _, err := lifetime.New(lifetime.Config{Linger: -time.Second}, func(*lifetime.Conn) {}); err == nil {
		t.Errorf("a negative linger: no error")
	}
}

// TestMemoryFollowsOpenConnections: a long stream of short connections
// holds no more than those open at once and those within the linger.
func TestMemoryFollowsOpenConnections(t *testing.T) {
	n := 0
	tr, err := lifetime.New(lifetime.Config{Linger: time.Second}, func(*lifetime.Conn) { n++ })
	if err != nil {
		t.Fatal(err)
	}
	const conns = 100000
	for i := range conns {
		ts := float64(i) / 100 // 100 connections a second, each 0.05s long
		peer := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i % 200)}), uint16(10000+i/200%500))
		for _, r := range []decode.Record{
			{Time: at(ts), Peer: peer, Local: server, Flags: decode.SYN, Seq: uint32(i), TOA: alice, TOACount: 1},
			{Time: at(ts + 0.05), Peer: peer, Local: server, Flags: decode.FIN | decode.ACK, Seq: uint32(i) + 1},
		} {
			tr.Observe(&r)
		}
		if i%100 == 0 {
			tr.Expire(at(ts))
		}
	}
	tr.Finish()
	st := tr.Stats()
	if n != conns || st.FIN != conns || st.Peak > 300 {
		t.Errorf("emitted %d of %d, %d by FIN, peak %d held; want all, by FIN, at most 300 held", n, conns, st.FIN, st.Peak)
	}
}
