package correlate_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
)

// TestKeyOf: a key is canonical from its construction: an IPv4-mapped
// address is its IPv4 address, a zone is dropped, IPv6 stays IPv6, and
// keys are equal exactly when they name the same connection.
func TestKeyOf(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, c := range []struct {
		name              string
		peer, local       string
		wantPeer, wantLoc string
		same              [2]string // another spelling of the same key: peer, local
	}{
		{"ipv4", "198.51.100.7:40000", "192.0.2.20:443", "198.51.100.7:40000", "192.0.2.20:443", [2]string{}},
		{"mapped ipv4", "[::ffff:198.51.100.7]:40000", "[::ffff:192.0.2.20]:443",
			"198.51.100.7:40000", "192.0.2.20:443", [2]string{"198.51.100.7:40000", "192.0.2.20:443"}},
		{"one side mapped", "[::ffff:198.51.100.7]:40000", "192.0.2.20:443",
			"198.51.100.7:40000", "192.0.2.20:443", [2]string{"198.51.100.7:40000", "[::ffff:192.0.2.20]:443"}},
		{"ipv6", "[2001:db8::7]:40000", "[2001:db8::10]:443", "[2001:db8::7]:40000", "[2001:db8::10]:443", [2]string{}},
		{"ipv6 zones", "[fe80::7%eth0]:40000", "[fe80::10%eth1]:443",
			"[fe80::7]:40000", "[fe80::10]:443", [2]string{"[fe80::7]:40000", "[fe80::10%eth2]:443"}},
		{"ipv4 beside ipv6", "[::ffff:198.51.100.7]:40000", "[2001:db8::10]:443",
			"198.51.100.7:40000", "[2001:db8::10]:443", [2]string{"198.51.100.7:40000", "[2001:db8::10]:443"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := correlate.KeyOf(ap(c.peer), ap(c.local))
			if !k.IsValid() {
				t.Fatalf("KeyOf(%s, %s).IsValid() = false, want true", c.peer, c.local)
			}
			if got := k.Peer(); got != ap(c.wantPeer) {
				t.Errorf("Peer() = %v, want %v", got, c.wantPeer)
			}
			if got := k.Local(); got != ap(c.wantLoc) {
				t.Errorf("Local() = %v, want %v", got, c.wantLoc)
			}
			if got, want := k.String(), c.wantPeer+" > "+c.wantLoc; got != want {
				t.Errorf("String() = %q, want %q", got, want)
			}
			if again := correlate.KeyOf(k.Peer(), k.Local()); again != k {
				t.Errorf("KeyOf(Peer(), Local()) = %v, want %v", again, k)
			}
			if p, l := c.same[0], c.same[1]; p != "" {
				if o := correlate.KeyOf(ap(p), ap(l)); o != k {
					t.Errorf("KeyOf(%s, %s) = %v, want it equal to %v", p, l, o, k)
				}
			}
		})
	}

	// Keys differing in any part differ.
	base := correlate.KeyOf(ap("198.51.100.7:40000"), ap("192.0.2.20:443"))
	for _, o := range []correlate.Key{
		correlate.KeyOf(ap("192.0.2.20:443"), ap("198.51.100.7:40000")),
		correlate.KeyOf(ap("198.51.100.7:40001"), ap("192.0.2.20:443")),
		correlate.KeyOf(ap("198.51.100.7:40000"), ap("192.0.2.20:444")),
		correlate.KeyOf(ap("198.51.100.8:40000"), ap("192.0.2.20:443")),
		correlate.KeyOf(ap("198.51.100.7:40000"), ap("192.0.2.21:443")),
		correlate.KeyOf(ap("[::198.51.100.7]:40000"), ap("[::192.0.2.20]:443")), // IPv4-compatible is IPv6
		{},
	} {
		if o == base {
			t.Errorf("%v == %v, want them different", o, base)
		}
	}
}

// TestZeroKey: the zero Key, and a key of an invalid address, names no
// connection, and the table never answers for it.
func TestZeroKey(t *testing.T) {
	valid := netip.MustParseAddrPort("192.0.2.20:443")
	for _, k := range []correlate.Key{
		{},
		correlate.KeyOf(netip.AddrPort{}, valid),
		correlate.KeyOf(valid, netip.AddrPort{}),
	} {
		if k != (correlate.Key{}) || k.IsValid() || k.Peer().IsValid() || k.Local().IsValid() {
			t.Errorf("got %#v (valid %v, peer %v, local %v); want the zero Key, invalid",
				k, k.IsValid(), k.Peer(), k.Local())
		}
	}
	tab := newTable(t, correlate.Config{Capacity: 16, Shards: 1})
	for _, peer := range []netip.AddrPort{netip.AddrPort{}, netip.MustParseAddrPort("0.0.0.0:0")} {
		r := decode.Record{Time: t0, Peer: peer, Local: netip.MustParseAddrPort("0.0.0.0:0"), Flags: decode.SYN, Seq: 1,
			TOA: v4("203.0.113.7:1"), TOACount: 1}
		tab.Observe(&r)
	}
	if n := tab.Len(); n != 1 {
		t.Errorf("Len() = %d after a record with an invalid address and one of 0.0.0.0, want 1", n)
	}
	if e, ok := tab.Get(correlate.Key{}); ok {
		t.Errorf("Get(zero Key) = %v, true; want not found", e)
	}
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if _, err := tab.Lookup(context.Background(), correlate.Key{}, time.Hour); !errors.Is(err, correlate.ErrNotFound) {
			t.Errorf("Lookup(zero Key, 1h) = %v, want ErrNotFound", err)
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("Lookup(zero Key, 1h) waited %v, want an answer at once", waited)
		}
	})
	if st := tab.Stats(); st.LookupsNotFound != 1 || st.LookupsTimedOut != 0 {
		t.Errorf("got LookupsNotFound %d, TimedOut %d; want 1, 0", st.LookupsNotFound, st.LookupsTimedOut)
	}
}
