package correlate

import (
	"net/netip"
	"testing"
	"time"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/toa"
)

func TestProbeDebug(t *testing.T) {
	tab, _ := New(Config{Capacity: 1 << 20})
	server := netip.MustParseAddrPort("203.0.113.10:443")
	keys := make([]pkey, 1000000)
	start := time.Now()
	for n := range 1000000 {
		peer := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(n >> 16)}), uint16(n))
		r := decode.Record{Peer: peer, Local: server, Flags: decode.SYN, TOA: toa.Client{Dialect: toa.Kind254V4, Addr: peer.Addr()}, TOACount: 1}
		tab.Observe(&r)
		keys[n] = pack(peer, server)
	}
	t.Logf("insert %v/op", time.Since(start)/1000000)
	probes := 0
	start = time.Now()
	for i := range keys {
		p := &keys[i]
		h := tab.seed.hash(p)
		s := tab.shardOf(h)
		n := len(s.idx)
		j := home(uint32(h), n)
		for {
			e := s.idx[j]
			probes++
			if e == 0 {
				t.Fatal("missing")
			}
			if uint32(e>>32) == uint32(h) {
				break
			}
			if j++; j == n {
				j = 0
			}
		}
	}
	t.Logf("avg probes %.2f, %v/op", float64(probes)/1e6, time.Since(start)/1000000)
	start = time.Now()
	for i := range 4000000 {
		p := &keys[(i*7919)&4095]
		h := tab.seed.hash(p)
		s := tab.shardOf(h)
		s.mu.RLock()
		if s.find(p, uint32(h)) == 0 {
			t.Fatal("x")
		}
		s.mu.RUnlock()
	}
	t.Logf("cached find %v/op", time.Since(start)/4000000)
}

func TestGetDebug(t *testing.T) {
	tab, _ := New(Config{Capacity: 1 << 20})
	server := netip.MustParseAddrPort("203.0.113.10:443")
	keyN := func(n int) Key {
		return Key{Peer: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(n >> 16)}), uint16(n)), Local: server}
	}
	for n := range 1000000 {
		k := keyN(n)
		r := decode.Record{Peer: k.Peer, Local: server, Flags: decode.SYN, TOA: toa.Client{Dialect: toa.Kind254V4, Addr: k.Peer.Addr()}, TOACount: 1}
		tab.Observe(&r)
	}
	for _, name := range []string{"first4096", "spread4096"} {
		keys := make([]Key, 4096)
		for i := range keys {
			if name == "first4096" {
				keys[i] = keyN(i)
			} else {
				keys[i] = keyN(int(uint64(i) * 0x9E3779B1 % 1000000))
			}
		}
		start := time.Now()
		for i := range 4000000 {
			if _, ok := tab.Get(keys[(i*7919)&4095]); !ok {
				t.Fatal("x")
			}
		}
		t.Logf("%s Get %v/op", name, time.Since(start)/4000000)
	}
}
