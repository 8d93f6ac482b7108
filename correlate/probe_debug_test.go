package correlate

import (
	"net/netip"
	"testing"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/toa"
)

func dbgTable(b *testing.B) (*Table, []Key) {
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
	keys := make([]Key, 1024)
	for i := range keys {
		keys[i] = keyN(int(uint64(i) * 0x9E3779B1 % 1000000))
	}
	return tab, keys
}

var sink uint64

func BenchmarkDbg(b *testing.B) {
	tab, keys := dbgTable(b)
	b.Run("keyof+pack+hash", func(b *testing.B) {
		i := 0
		for b.Loop() {
			k := keys[i&1023]
			k = KeyOf(k.Peer, k.Local)
			var p pkey
			p.set(k.Peer, k.Local)
			sink += tab.seed.hash(&p)
			i++
		}
	})
	ps := make([]pkey, 1024)
	hs := make([]uint64, 1024)
	for i, k := range keys {
		ps[i].set(k.Peer, k.Local)
		hs[i] = tab.seed.hash(&ps[i])
	}
	b.Run("find", func(b *testing.B) {
		i := 0
		for b.Loop() {
			h := hs[i&1023]
			s := tab.shardOf(h)
			sink += uint64(s.find(&ps[i&1023], uint32(h)))
			i++
		}
	})
	b.Run("find+lock", func(b *testing.B) {
		i := 0
		for b.Loop() {
			h := hs[i&1023]
			s := tab.shardOf(h)
			s.mu.RLock()
			sink += uint64(s.find(&ps[i&1023], uint32(h)))
			s.mu.RUnlock()
			i++
		}
	})
	b.Run("find+entry", func(b *testing.B) {
		i := 0
		for b.Loop() {
			h := hs[i&1023]
			s := tab.shardOf(h)
			ref := s.find(&ps[i&1023], uint32(h))
			e := s.entry(ref, keys[i&1023])
			sink += uint64(e.SynSeq)
			i++
		}
	})
	b.Run("Get", func(b *testing.B) {
		i := 0
		for b.Loop() {
			e, _ := tab.Get(keys[i&1023])
			sink += uint64(e.SynSeq)
			i++
		}
	})
}

func BenchmarkDbg2(b *testing.B) {
	server := netip.MustParseAddrPort("203.0.113.10:443")
	keys := make([]Key, 1024)
	for i := range keys {
		n := i * 977
		keys[i] = Key{Peer: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(n >> 16)}), uint16(n)), Local: server}
	}
	var sd seed
	b.Run("keyof", func(b *testing.B) {
		i := 0
		for b.Loop() {
			k := keys[i&1023]
			k = KeyOf(k.Peer, k.Local)
			sink += uint64(k.Peer.Port())
			i++
		}
	})
	b.Run("pack", func(b *testing.B) {
		i := 0
		for b.Loop() {
			k := keys[i&1023]
			var p pkey
			p.set(k.Peer, k.Local)
			sink += uint64(p.k4.peer)
			i++
		}
	})
	b.Run("hash", func(b *testing.B) {
		var p pkey
		p.set(keys[0].Peer, keys[0].Local)
		for b.Loop() {
			p.k4.pport++
			sink += sd.hash(&p)
		}
	})
	b.Run("unix", func(b *testing.B) {
		i := int64(0)
		for b.Loop() {
			t := timeOf(i)
			sink += uint64(t.Nanosecond())
			i++
		}
	})
}

func BenchmarkDbg3(b *testing.B) {
	server := netip.MustParseAddrPort("203.0.113.10:443")
	keys := make([]Key, 1024)
	for i := range keys {
		n := i * 977
		keys[i] = Key{Peer: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(n >> 16)}), uint16(n)), Local: server}
	}
	b.Run("is4", func(b *testing.B) {
		i := 0
		for b.Loop() {
			k := &keys[i&1023]
			if k.Peer.Addr().Is4() {
				sink++
			}
			i++
		}
	})
	b.Run("as4", func(b *testing.B) {
		i := 0
		for b.Loop() {
			k := &keys[i&1023]
			a := k.Peer.Addr().As4()
			sink += uint64(a[3])
			i++
		}
	})
	b.Run("as16", func(b *testing.B) {
		i := 0
		for b.Loop() {
			k := &keys[i&1023]
			a := k.Peer.Addr().As16()
			sink += uint64(a[15])
			i++
		}
	})
	b.Run("port", func(b *testing.B) {
		i := 0
		for b.Loop() {
			k := &keys[i&1023]
			sink += uint64(k.Peer.Port())
			i++
		}
	})
	b.Run("copy", func(b *testing.B) {
		i := 0
		for b.Loop() {
			k := keys[i&1023]
			sink += uint64(k.Local.Port())
			i++
		}
	})
}

func be4(a [4]byte) uint32 {
	return uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
}

func pack2(p *pkey, peer, local netip.AddrPort) {
	pa, la := peer.Addr(), local.Addr()
	if pa.Is4() && la.Is4() {
		p.is6 = false
		p.k4 = key4{peer: be4(pa.As4()), local: be4(la.As4()), pport: peer.Port(), lport: local.Port()}
		return
	}
	p.set(peer, local)
}

func BenchmarkDbg4(b *testing.B) {
	server := netip.MustParseAddrPort("203.0.113.10:443")
	keys := make([]Key, 1024)
	for i := range keys {
		n := i * 977
		keys[i] = Key{Peer: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(n >> 16)}), uint16(n)), Local: server}
	}
	b.Run("pack", func(b *testing.B) {
		i := 0
		for b.Loop() {
			k := &keys[i&1023]
			var p pkey
			p.set(k.Peer, k.Local)
			sink += uint64(p.k4.peer)
			i++
		}
	})
	b.Run("pack2", func(b *testing.B) {
		i := 0
		var p pkey
		for b.Loop() {
			k := &keys[i&1023]
			pack2(&p, k.Peer, k.Local)
			sink += uint64(p.k4.peer)
			i++
		}
	})
}
