package correlate_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/toa"
)

func TestNewConfig(t *testing.T) {
	for _, c := range []struct {
		name  string
		cfg   correlate.Config
		field string // named in the error; empty for a valid config
	}{
		{"zero", correlate.Config{}, ""},
		{"explicit", correlate.Config{Capacity: 10, Shards: 4, Linger: time.Second, IdleTimeout: time.Hour,
			Trusted: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}, ""},
		{"mapped prefix", correlate.Config{Trusted: []netip.Prefix{netip.MustParsePrefix("::ffff:198.51.100.0/120")}}, ""},
		{"negative capacity", correlate.Config{Capacity: -1}, "Config.Capacity"},
		{"huge capacity", correlate.Config{Capacity: correlate.MaxCapacity + 1}, "Config.Capacity"},
		{"shards not a power of two", correlate.Config{Shards: 3}, "Config.Shards"},
		{"negative shards", correlate.Config{Shards: -2}, "Config.Shards"},
		{"negative linger", correlate.Config{Linger: -time.Second}, "Config.Linger"},
		{"negative idle timeout", correlate.Config{IdleTimeout: -time.Second}, "Config.IdleTimeout"},
		{"invalid prefix", correlate.Config{Trusted: []netip.Prefix{{}}}, "Config.Trusted[0]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tab, err := correlate.New(c.cfg)
			if c.field == "" {
				if err != nil {
					t.Fatalf("New: %v, want no error", err)
				}
				tab.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.field) {
				t.Fatalf("New: got error %v, want one naming %s", err, c.field)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	tab := newTable(t, correlate.Config{})
	st := tab.Stats()
	if st.Capacity != correlate.DefaultCapacity || !st.AllTrusted {
		t.Errorf("got Capacity %d, AllTrusted %v; want %d, true", st.Capacity, st.AllTrusted, correlate.DefaultCapacity)
	}
	tab.Observe(&[]decode.Record{seg(decode.SYN, 1, v4("192.0.2.1:1111"), 0)}[0])
	tab.Observe(&[]decode.Record{seg(decode.FIN|decode.ACK, 2, toa.Client{}, 0)}[0])
	if n := tab.Expire(t0.Add(correlate.DefaultLinger - 1)); n != 0 {
		t.Errorf("Expire before the default linger: got %d removed, want 0", n)
	}
	if n := tab.Expire(t0.Add(correlate.DefaultLinger)); n != 1 {
		t.Errorf("Expire at the default linger: got %d removed, want 1", n)
	}
}

func TestObserve(t *testing.T) {
	a, b := v4("192.0.2.1:1111"), v4("192.0.2.2:2222")
	ms := time.Millisecond
	trusted := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/25")}
	outsider := correlate.KeyOf(netip.MustParseAddrPort("198.51.100.200:40000"), server)
	mappedKey := correlate.KeyOf(
		netip.MustParseAddrPort("[::ffff:198.51.100.7]:40000"),
		netip.MustParseAddrPort("[::ffff:203.0.113.10]:443"))

	key6 := correlate.KeyOf(netip.MustParseAddrPort("[2001:db8::7]:40000"), netip.MustParseAddrPort("[2001:db8::10]:443"))
	noPort6 := toa.Client{Dialect: toa.Kind28V6, Addr: netip.MustParseAddr("2001:db8:c::1")}
	nat64 := toa.Client{Dialect: toa.Kind254V6, Addr: netip.MustParseAddr("2001:db8:c::2"), Port: 3333, HasPort: true}

	open := func(c toa.Client, first time.Duration, syn uint32, inferred bool) correlate.Entry {
		return correlate.Entry{Key: key, Client: c, FirstSeen: t0.Add(first), State: correlate.StateOpen,
			SynSeq: syn, HasSynSeq: true, SynSeqInferred: inferred}
	}
	closing := func(e correlate.Entry, at time.Duration) correlate.Entry {
		e.State, e.ClosedAt = correlate.StateClosing, t0.Add(at)
		return e
	}
	twoTOAs := seg(decode.SYN, 1000, a, 0)
	twoTOAs.TOACount = 2

	for _, c := range []struct {
		name    string
		trusted []netip.Prefix
		segs    []decode.Record
		want    []correlate.Entry
		stats   correlate.Stats // Capacity, Entries* and Closing are filled in from want
	}{{
		name:  "toa in the syn",
		segs:  []decode.Record{seg(decode.SYN, 1000, a, 0)},
		want:  []correlate.Entry{open(a, 0, 1000, false)},
		stats: correlate.Stats{ConnsWithTOA: 1},
	}, {
		name: "toa in the handshake's ack",
		segs: []decode.Record{
			seg(decode.SYN, 1000, toa.Client{}, 0),
			seg(decode.ACK, 1001, a, ms),
		},
		want:  []correlate.Entry{open(a, ms, 1000, true)},
		stats: correlate.Stats{ConnsWithTOA: 1, SYNsWithoutTOA: 1},
	}, {
		name: "same toa again changes nothing",
		segs: []decode.Record{
			seg(decode.SYN, 1000, a, 0),
			seg(decode.ACK, 1001, a, ms),
			seg(decode.ACK|decode.PSH, 1001, a, 2*ms),
		},
		want:  []correlate.Entry{open(a, 0, 1000, false)},
		stats: correlate.Stats{ConnsWithTOA: 1},
	}, {
		name: "a different toa later is a conflict",
		segs: []decode.Record{
			seg(decode.SYN, 1000, a, 0),
			seg(decode.ACK|decode.PSH, 1001, b, ms),
		},
		want:  []correlate.Entry{open(a, 0, 1000, false)},
		stats: correlate.Stats{ConnsWithTOA: 1, Conflicts: 1},
	}, {
		name: "retransmitted syn changes nothing",
		segs: []decode.Record{
			seg(decode.SYN, 1000, a, 0),
			seg(decode.SYN, 1000, a, time.Second),
		},
		want:  []correlate.Entry{open(a, 0, 1000, false)},
		stats: correlate.Stats{ConnsWithTOA: 1},
	}, {
		name: "late syn confirms an inferred isn",
		segs: []decode.Record{
			seg(decode.SYN, 1000, toa.Client{}, 0),
			seg(decode.ACK, 1001, a, ms),
			seg(decode.SYN, 1000, toa.Client{}, 2*ms),
		},
		want:  []correlate.Entry{open(a, ms, 1000, false)},
		stats: correlate.Stats{ConnsWithTOA: 1, SYNsWithoutTOA: 2},
	}, {
		name: "syn shortly below an isn inferred from data",
		segs: []decode.Record{
			seg(decode.ACK|decode.PSH, 5001, a, ms),
			seg(decode.SYN, 1000, toa.Client{}, 2*ms),
		},
		want:  []correlate.Entry{open(a, ms, 1000, false)},
		stats: correlate.Stats{ConnsWithTOA: 1, SYNsWithoutTOA: 1},
	}, {
		name: "syn far from an inferred isn starts a new connection",
		segs: []decode.Record{
			seg(decode.ACK, 1001, a, ms),
			seg(decode.SYN, 900000, toa.Client{}, 2*ms),
		},
		stats: correlate.Stats{ConnsWithTOA: 1, SYNsWithoutTOA: 1, Reused: 1},
	}, {
		name: "syn with another isn and a toa replaces the client",
		segs: []decode.Record{
			seg(decode.SYN, 1000, a, 0),
			seg(decode.SYN, 9000, b, time.Second),
		},
		want:  []correlate.Entry{open(b, time.Second, 9000, false)},
		stats: correlate.Stats{ConnsWithTOA: 2, Reused: 1},
	}, {
		name: "syn with another isn and no toa removes the old client",
		segs: []decode.Record{
			seg(decode.SYN, 1000, a, 0),
			seg(decode.SYN, 9000, toa.Client{}, time.Second),
		},
		stats: correlate.Stats{ConnsWithTOA: 1, SYNsWithoutTOA: 1, Reused: 1},
	}, {
		name: "port reuse with the toa in the ack",
		segs: []decode.Record{
			seg(decode.SYN, 1000, toa.Client{}, 0),
			seg(decode.ACK, 1001, a, ms),
			seg(decode.SYN, 9000, toa.Client{}, time.Second),
			seg(decode.ACK, 9001, b, time.Second+ms),
		},
		want:  []correlate.Entry{open(b, time.Second+ms, 9000, true)},
		stats: correlate.Stats{ConnsWithTOA: 2, SYNsWithoutTOA: 2, Reused: 1},
	}, {
		name: "syn on a closing entry starts a new connection",
		segs: []decode.Record{
			seg(decode.SYN, 1000, a, 0),
			seg(decode.FIN|decode.ACK, 1001, toa.Client{}, ms),
			seg(decode.SYN, 1000, b, 2*ms),
		},
		want:  []correlate.Entry{open(b, 2*ms, 1000, false)},
		stats: correlate.Stats{ConnsWithTOA: 2, Reused: 1},
	}, {
		name: "syn-ack is not a new connection",
		segs: []decode.Record{
			seg(decode.SYN, 1000, a, 0),
			seg(decode.SYN|decode.ACK, 77, toa.Client{}, ms),
		},
		want:  []correlate.Entry{open(a, 0, 1000, false)},
		stats: correlate.Stats{ConnsWithTOA: 1},
	}, {
		name: "fin moves to closing",
		segs: []decode.Record{
			seg(decode.SYN, 1000, a, 0),
			seg(decode.FIN|decode.ACK, 1001, toa.Client{}, time.Second),
		},
		want:  []correlate.Entry{closing(open(a, 0, 1000, false), time.Second)},
		stats: correlate.Stats{ConnsWithTOA: 1},
	}, {
		name: "rst moves to closing, a later fin changes nothing",
		segs: []decode.Record{
			seg(decode.SYN, 1000, a, 0),
			seg(decode.RST, 1001, toa.Client{}, time.Second),
			seg(decode.FIN|decode.ACK, 1001, toa.Client{}, 2*time.Second),
		},
		want:  []correlate.Entry{closing(open(a, 0, 1000, false), time.Second)},
		stats: correlate.Stats{ConnsWithTOA: 1},
	}, {
		name: "toa on a closing entry",
		segs: []decode.Record{
			seg(decode.SYN, 1000, a, 0),
			seg(decode.FIN|decode.ACK, 1001, toa.Client{}, time.Second),
			seg(decode.ACK, 1001, a, 2*time.Second),
			seg(decode.ACK, 1001, b, 3*time.Second),
		},
		want:  []correlate.Entry{closing(open(a, 0, 1000, false), time.Second)},
		stats: correlate.Stats{ConnsWithTOA: 1, Conflicts: 1},
	}, {
		name:    "untrusted peer is never stored",
		trusted: trusted,
		segs: []decode.Record{
			segOn(outsider, decode.SYN, 1000, a, t0),
			segOn(outsider, decode.ACK, 1001, a, t0),
			segOn(outsider, decode.FIN, 1001, toa.Client{}, t0),
		},
		stats: correlate.Stats{Untrusted: 2},
	}, {
		name:    "trusted peer",
		trusted: trusted,
		segs:    []decode.Record{seg(decode.SYN, 1000, a, 0)},
		want:    []correlate.Entry{open(a, 0, 1000, false)},
		stats:   correlate.Stats{ConnsWithTOA: 1},
	}, {
		name: "ipv4-mapped key is the plain ipv4 key",
		segs: []decode.Record{
			segOn(mappedKey, decode.SYN, 1000, a, t0),
			seg(decode.FIN, 1001, toa.Client{}, ms),
		},
		want:  []correlate.Entry{closing(open(a, 0, 1000, false), ms)},
		stats: correlate.Stats{ConnsWithTOA: 1},
	}, {
		name: "ipv6 key, ipv6 client without a port",
		segs: []decode.Record{segOn(key6, decode.SYN, 1000, noPort6, t0)},
		want: []correlate.Entry{{Key: key6, Client: noPort6, FirstSeen: t0, State: correlate.StateOpen,
			SynSeq: 1000, HasSynSeq: true}},
		stats: correlate.Stats{ConnsWithTOA: 1},
	}, {
		name:  "nat64: ipv6 client on an ipv4 key",
		segs:  []decode.Record{seg(decode.SYN, 1000, nat64, 0)},
		want:  []correlate.Entry{open(nat64, 0, 1000, false)},
		stats: correlate.Stats{ConnsWithTOA: 1},
	}, {
		name:  "two toas in a segment, the first believed",
		segs:  []decode.Record{twoTOAs},
		want:  []correlate.Entry{open(a, 0, 1000, false)},
		stats: correlate.Stats{ConnsWithTOA: 1, MultipleTOA: 1},
	}, {
		name: "connection without a toa counted once at its close",
		segs: []decode.Record{
			seg(decode.SYN, 1000, toa.Client{}, 0),
			seg(decode.ACK|decode.PSH, 1001, toa.Client{}, ms),
			seg(decode.FIN|decode.ACK, 1101, toa.Client{}, 2*ms),
			seg(decode.FIN|decode.ACK, 1101, toa.Client{}, 3*ms),
			seg(decode.RST, 1102, toa.Client{}, 4*ms),
		},
		stats: correlate.Stats{SYNsWithoutTOA: 1, ConnsWithoutTOA: 1},
	}, {
		name: "a new connection on the key is counted again",
		segs: []decode.Record{
			seg(decode.FIN|decode.ACK, 1101, toa.Client{}, 0),
			seg(decode.SYN, 5000, toa.Client{}, ms),
			seg(decode.RST, 5001, toa.Client{}, 2*ms),
		},
		stats: correlate.Stats{SYNsWithoutTOA: 1, ConnsWithoutTOA: 2},
	}, {
		name: "data without a toa on an unknown key",
		segs: []decode.Record{seg(decode.ACK|decode.PSH, 1001, toa.Client{}, 0)},
	}} {
		t.Run(c.name, func(t *testing.T) {
			tab := newTable(t, correlate.Config{Capacity: 16, Shards: 1, Trusted: c.trusted})
			for i := range c.segs {
				tab.Observe(&c.segs[i])
			}
			want := make(map[correlate.Key]correlate.Entry)
			ws := c.stats
			ws.Capacity, ws.AllTrusted = 16, len(c.trusted) == 0
			for _, e := range c.want {
				want[e.Key] = e
				ws.Entries++
				if e.Client.Addr.Is4() {
					ws.EntriesIPv4++
				} else {
					ws.EntriesIPv6++
				}
				if e.State == correlate.StateClosing {
					ws.Closing++
				}
			}
			if d := diffEntries(want, entries(tab)); d != "" {
				t.Errorf("entries (-want +got):\n%s", d)
			}
			for k, w := range want {
				got, ok := tab.Get(k)
				if !ok || !cmp.Equal(got, w, cmpNet) {
					t.Errorf("Get(%v) = %+v, %v; want %+v, true", k, got, ok, w)
				}
			}
			if d := cmp.Diff(ws, tab.Stats()); d != "" {
				t.Errorf("Stats (-want +got):\n%s", d)
			}
			if tab.Len() != len(want) {
				t.Errorf("Len() = %d, want %d", tab.Len(), len(want))
			}
		})
	}
}

// TestMappedLookup looks a connection up both ways: a dual-stack listener
// reports IPv4 peers IPv4-mapped.
func TestMappedLookup(t *testing.T) {
	tab := newTable(t, correlate.Config{Capacity: 16, Shards: 1})
	r := seg(decode.SYN, 1, v4("192.0.2.1:1111"), 0)
	tab.Observe(&r)
	mapped := correlate.KeyOf(
		netip.AddrPortFrom(netip.AddrFrom16(proxy.Addr().As16()), proxy.Port()),
		netip.AddrPortFrom(netip.AddrFrom16(server.Addr().As16()), server.Port()))

	for _, k := range []correlate.Key{key, mapped} {
		e, ok := tab.Get(k)
		if !ok || e.Key != key {
			t.Errorf("Get(%v) = key %v, %v; want key %v, true", k, e.Key, ok, key)
		}
	}
}

// TestDecodedFrames feeds the table frames through the real decoder: the
// DPVS 1.9.6 handshake, whose TOA comes with the ACK.
func TestDecodedFrames(t *testing.T) {
	client := netip.MustParseAddrPort("192.0.2.44:5555")
	dec := decode.New(nil)
	tab := newTable(t, correlate.Config{Capacity: 16, Shards: 1})
	for i, s := range []craft.Segment{
		{Src: proxy, Dst: server, Flags: decode.SYN, Seq: 7000, Options: craft.MSS(1460)},
		{Src: proxy, Dst: server, Flags: decode.ACK, Seq: 7001, Ack: 1,
			Options: craft.TOA(toa.Kind254V4, client)},
	} {
		var r decode.Record
		frame := craft.Framing{Link: decode.LinkEthernet}.Frame(s.IP())
		if reason := dec.Decode(decode.LinkEthernet, frame, t0.Add(time.Duration(i)*time.Millisecond), &r); reason != decode.OK {
			t.Fatalf("segment %d: Decode: %v", i, reason)
		}
		tab.Observe(&r)
	}
	e, ok := tab.Get(key)
	if !ok {
		t.Fatalf("Get(%v): not found", key)
	}
	if got := netip.AddrPortFrom(e.Client.Addr, e.Client.Port); got != client || e.SynSeq != 7000 || !e.SynSeqInferred {
		t.Errorf("got client %v, SynSeq %d inferred %v; want %v, 7000 inferred", got, e.SynSeq, e.SynSeqInferred, client)
	}
}

// TestLookupCanonicalKey: a lookup finds an entry whatever form its key
// takes (IPv4-mapped, with an IPv6 zone), and answers with the canonical
// key.
func TestLookupCanonicalKey(t *testing.T) {
	tab, err := correlate.New(correlate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	c := toa.Client{Dialect: toa.Kind200V4, Addr: netip.MustParseAddr("203.0.113.7"), Port: 1, HasPort: true}
	for _, k := range []correlate.Key{
		correlate.KeyOf(netip.MustParseAddrPort("198.51.100.7:40000"), netip.MustParseAddrPort("192.0.2.20:443")),
		correlate.KeyOf(netip.MustParseAddrPort("[2001:db8::7]:40000"), netip.MustParseAddrPort("[2001:db8::10]:443")),
	} {
		r := decode.Record{Time: t0, Peer: k.Peer(), Local: k.Local(), Flags: decode.SYN, Seq: 1, TOA: c, TOACount: 1}
		tab.Observe(&r)
	}
	for _, tt := range []struct{ peer, local, want string }{
		{"[::ffff:198.51.100.7]:40000", "[::ffff:192.0.2.20]:443", "198.51.100.7:40000"},
		{"[2001:db8::7%eth0]:40000", "[2001:db8::10]:443", "[2001:db8::7]:40000"},
	} {
		k := correlate.KeyOf(netip.MustParseAddrPort(tt.peer), netip.MustParseAddrPort(tt.local))
		e, err := tab.Lookup(context.Background(), k, 0)
		if err != nil || e.Key.Peer().String() != tt.want || e.Key.Local().Addr().Zone() != "" {
			t.Errorf("Lookup(%s > %s) = %+v, %v; want the entry of %s", tt.peer, tt.local, e.Key, err, tt.want)
		}
		if g, ok := tab.Get(k); !ok || g.Key != e.Key {
			t.Errorf("Get(%s > %s) = %+v, %v; want %+v", tt.peer, tt.local, g.Key, ok, e.Key)
		}
	}
}
