package correlate_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/toa"
)

var (
	t0     = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	proxy  = netip.MustParseAddrPort("198.51.100.7:40000")
	server = netip.MustParseAddrPort("203.0.113.10:443")
	key    = correlate.KeyOf(proxy, server)
	cmpNet = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{}, netip.Prefix{}, correlate.Key{})
)

// v4 returns a port-carrying IPv4 client in the LVS/DPVS dialect.
func v4(s string) toa.Client {
	ap := netip.MustParseAddrPort(s)
	return toa.Client{Dialect: toa.Kind254V4, Addr: ap.Addr(), Port: ap.Port(), HasPort: true}
}

// seg returns a segment from proxy to server at t0+at.
func seg(flags decode.Flags, seq uint32, c toa.Client, at time.Duration) decode.Record {
	return segOn(key, flags, seq, c, t0.Add(at))
}

func segOn(k correlate.Key, flags decode.Flags, seq uint32, c toa.Client, at time.Time) decode.Record {
	r := decode.Record{Time: at, Peer: k.Peer(), Local: k.Local(), Flags: flags, Seq: seq, Ack: 1, TOA: c}
	if !c.IsZero() {
		r.TOACount = 1
	}
	return r
}

// keyN returns the n-th of 16M distinct IPv4 keys from proxies in
// 198.51.100.0/24 to one server: from peerN(n) to server.
func keyN(n int) correlate.Key { return correlate.KeyOf(peerN(n), server) }

// peerN is the peer of keyN(n).
func peerN(n int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(n >> 16)}), uint16(n))
}

// clientN returns the client for key n, distinct for every n below 16M.
func clientN(n int) toa.Client {
	return toa.Client{
		Dialect: toa.Kind254V4,
		Addr:    netip.AddrFrom4([4]byte{192, 0, 2, byte(n >> 16)}),
		Port:    uint16(n),
		HasPort: true,
	}
}

// synN returns the SYN, carrying its TOA, that opens connection n.
func synN(n int, at time.Time) decode.Record {
	return decode.Record{Time: at, Peer: peerN(n), Local: server, Flags: decode.SYN, Seq: uint32(n), TOA: clientN(n), TOACount: 1}
}

func newTable(t testing.TB, cfg correlate.Config) *correlate.Table {
	t.Helper()
	tab, err := correlate.New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	t.Cleanup(tab.Close)
	return tab
}

// entries returns every entry of tab by key.
func entries(tab *correlate.Table) map[correlate.Key]correlate.Entry {
	m := make(map[correlate.Key]correlate.Entry)
	tab.Range(func(e correlate.Entry) bool {
		m[e.Key] = e
		return true
	})
	return m
}

func diffEntries(want, got map[correlate.Key]correlate.Entry) string {
	return cmp.Diff(want, got, cmpNet)
}

// mapAP returns ap with its address IPv4-mapped.
func mapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())
}
