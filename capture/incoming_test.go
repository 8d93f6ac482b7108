package capture_test

import (
	"bytes"
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/toad-project/toad/capture"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/internal/craft/gen"
)

// kept is a sink that keeps copies of what it is given, and counts the
// Expire calls passed on to it.
type kept struct {
	recs    []decode.Record
	expires int
}

func (k *kept) Observe(r *decode.Record) { k.recs = append(k.recs, *r) }
func (k *kept) Expire(time.Time) int {
	k.expires++
	return 0
}

var (
	proxy  = netip.MustParseAddrPort("198.51.100.10:40001")
	server = netip.MustParseAddrPort("192.0.2.20:8080")
	t0     = time.Date(2024, 5, 1, 14, 0, 0, 0, time.UTC)
)

// seg is a record at t0+at: in from the proxy to the server, or out.
func seg(in bool, f decode.Flags, at time.Duration) *decode.Record {
	r := &decode.Record{Time: t0.Add(at), Peer: proxy, Local: server, Flags: f}
	if !in {
		r.Peer, r.Local = server, proxy
	}
	return r
}

// TestIncoming: the server's SYN-ACK, FIN and RST are held back, the
// proxy's segments pass, and the server's side is forgotten a linger after
// the connection began closing unless a new handshake reopened it.
func TestIncoming(t *testing.T) {
	const linger = 10 * time.Second
	type step struct {
		r      *decode.Record
		passes bool
	}
	for _, c := range []struct {
		name    string
		steps   []step
		expire  time.Duration // Expire at t0+expire after the steps
		servers int           // server sides held after it
	}{
		{"proxy closes first", []step{
			{seg(true, decode.SYN, 0), true},
			{seg(false, decode.SYN|decode.ACK, 1), false},
			{seg(true, decode.ACK, 2), true},
			{seg(false, decode.ACK|decode.PSH, 3), true},
			{seg(true, decode.FIN|decode.ACK, 4), true},
			{seg(false, decode.FIN|decode.ACK, 5), false},
			{seg(false, decode.FIN|decode.ACK, 6), false}, // retransmitted
		}, linger + 5, 0},
		{"the server's FIN long after the peer's", []step{
			{seg(false, decode.SYN|decode.ACK, 1), false},
			{seg(true, decode.FIN|decode.ACK, 2), true},
			{seg(false, decode.ACK|decode.PSH, 3), true},
			{seg(false, decode.FIN|decode.ACK, 10*time.Minute), false},
		}, 10*time.Minute + linger, 0},
		{"half closed, the server's FIN never seen", []step{
			{seg(false, decode.SYN|decode.ACK, 1), false},
			{seg(true, decode.FIN|decode.ACK, 2), true},
		}, capture.HalfClosed + 2, 0},
		{"half closed, within its time", []step{
			{seg(false, decode.SYN|decode.ACK, 1), false},
			{seg(true, decode.FIN|decode.ACK, 2), true},
		}, capture.HalfClosed + 1, 1},
		{"server closes first", []step{
			{seg(false, decode.SYN|decode.ACK, 1), false},
			{seg(false, decode.FIN|decode.ACK, 5), false},
			{seg(true, decode.FIN|decode.ACK, 6), true},
			{seg(false, decode.RST, 7), false},
		}, linger + 5, 0},
		{"still within the linger", []step{
			{seg(false, decode.SYN|decode.ACK, 1), false},
			{seg(true, decode.RST, 5), true},
		}, linger + 4, 1},
		{"open", []step{
			{seg(false, decode.SYN|decode.ACK, 1), false},
			{seg(true, decode.ACK, 2), true},
		}, time.Hour, 1},
		{"reopened by a new handshake", []step{
			{seg(false, decode.SYN|decode.ACK, 1), false},
			{seg(true, decode.FIN, 2), true},
			{seg(true, decode.SYN, 3), true},
			{seg(false, decode.SYN|decode.ACK, 4), false},
		}, time.Hour, 1},
		{"handshake not captured", []step{
			{seg(true, decode.FIN, 2), true},
			{seg(false, decode.FIN, 3), true},
		}, time.Hour, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			var k kept
			in := capture.NewIncoming(&k, linger)
			var want []decode.Record
			for _, s := range c.steps {
				in.Observe(s.r)
				if s.passes {
					want = append(want, *s.r)
				}
			}
			if len(k.recs) != len(want) {
				t.Fatalf("passed %d records, want %d: %+v", len(k.recs), len(want), k.recs)
			}
			for i := range want {
				if k.recs[i] != want[i] {
					t.Errorf("record %d: got %+v, want %+v", i, k.recs[i], want[i])
				}
			}
			in.Expire(t0.Add(c.expire))
			if got := in.Servers(); got != c.servers {
				t.Errorf("after Expire at +%v: %d server sides held, want %d", c.expire, got, c.servers)
			}
			if k.expires != 1 {
				t.Errorf("Expire reached the next sink %d times, want 1", k.expires)
			}
		})
	}
}

// TestIncomingCapture replays a generated two-way capture through
// Incoming: no segment the server sent with SYN, FIN or RST gets through,
// every one the proxies sent does, and once the connections are closed
// and the linger is over nothing is held but the connections left open.
func TestIncomingCapture(t *testing.T) {
	var buf bytes.Buffer
	truth, err := gen.Write(&buf, gen.PCAP, gen.Config{Seed: 4, Conns: 300, DataSegments: 1, IPv6: 0.3,
		Framings: []craft.Framing{{Link: decode.LinkEthernet}}})
	if err != nil {
		t.Fatal(err)
	}
	servers := map[netip.Addr]bool{}
	open := 0
	for _, c := range truth.Conns {
		servers[c.Local.Addr()] = true
		if !c.Closed {
			open++
		}
	}
	var k kept
	in := capture.NewIncoming(&k, time.Second)
	if _, err := capture.Replay(context.Background(), &buf, nil, in); err != nil {
		t.Fatal(err)
	}
	fromProxies := 0
	for _, r := range k.recs {
		switch {
		case servers[r.Peer.Addr()] && r.Flags&(decode.SYN|decode.FIN|decode.RST) != 0:
			t.Errorf("the server's %v segment %v > %v passed", r.Flags, r.Peer, r.Local)
		case !servers[r.Peer.Addr()] && r.Flags&(decode.FIN|decode.RST) != 0:
			fromProxies++
		}
	}
	if fromProxies == 0 {
		t.Errorf("no FIN or RST from the proxies passed")
	}
	last := k.recs[len(k.recs)-1].Time
	in.Expire(last.Add(time.Hour))
	if got := in.Servers(); got != open {
		t.Errorf("an hour after the end: %d server sides held, want the %d connections left open", got, open)
	}
}
