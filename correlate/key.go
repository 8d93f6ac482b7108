package correlate

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// key4 is a Key whose two addresses are IPv4, packed into 12 bytes.
type key4 struct {
	peer, local  uint32
	pport, lport uint16
}

// key6 is any other Key, addresses in their 16-byte form (an IPv4 address
// beside an IPv6 one is stored IPv4-mapped).
type key6 struct {
	peer, local  [16]byte
	pport, lport uint16
}

// pkey is a Key packed for the table.
type pkey struct {
	is6 bool
	k4  key4
	k6  key6
}

// set packs the key of a connection from peer to local into p. It
// canonicalises as KeyOf does: IPv4-mapped addresses are unmapped and zones
// ignored.
func (p *pkey) set(peer, local netip.AddrPort) {
	pa, la := peer.Addr(), local.Addr()
	if !pa.Is4() || !la.Is4() {
		pa, la = pa.Unmap(), la.Unmap()
		if !pa.Is4() || !la.Is4() {
			p.is6 = true
			p.k6 = key6{peer: pa.As16(), local: la.As16(), pport: peer.Port(), lport: local.Port()}
			return
		}
	}
	p.is6 = false
	p.k4 = key4{peer: be32(pa.As4()), local: be32(la.As4()), pport: peer.Port(), lport: local.Port()}
}

// setKey packs *k into p and makes *k canonical (see KeyOf). Packing is
// the one canonicalisation: a key that is not two plain IPv4 addresses is
// read back from p rather than canonicalised a second time.
func (p *pkey) setKey(k *Key) {
	p.set(k.Peer, k.Local)
	if !k.Peer.Addr().Is4() || !k.Local.Addr().Is4() {
		*k = p.unpack()
	}
}

func be32(a [4]byte) uint32 { return binary.BigEndian.Uint32(a[:]) }

// unpack returns the canonical Key p was packed from.
func (p *pkey) unpack() Key {
	if !p.is6 {
		return p.k4.unpack()
	}
	return p.k6.unpack()
}

func (k *key4) unpack() Key {
	return Key{
		Peer:  netip.AddrPortFrom(addr4(k.peer), k.pport),
		Local: netip.AddrPortFrom(addr4(k.local), k.lport),
	}
}

func (k *key6) unpack() Key {
	return Key{
		Peer:  netip.AddrPortFrom(netip.AddrFrom16(k.peer).Unmap(), k.pport),
		Local: netip.AddrPortFrom(netip.AddrFrom16(k.local).Unmap(), k.lport),
	}
}

func addr4(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// seed keys the table's hash, so that which keys collide is not known
// outside the process.
type seed [5]uint64

// mix is the multiply-fold step of wyhash.
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

const (
	wyp0 = 0xa0761d6478bd642f
	wyp1 = 0xe7037ed1a0b428db
)

func (s *seed) hash4(k *key4) uint64 {
	a := uint64(k.peer)<<32 | uint64(k.local)
	b := uint64(k.pport)<<16 | uint64(k.lport)
	return mix(mix(a^s[0], b^s[1])^s[4], wyp0)
}

func (s *seed) hash6(k *key6) uint64 {
	le := binary.LittleEndian
	h := mix(le.Uint64(k.peer[:8])^s[0], le.Uint64(k.peer[8:])^s[1]) ^
		mix(le.Uint64(k.local[:8])^s[2], le.Uint64(k.local[8:])^s[3])
	return mix(h^(uint64(k.pport)<<16|uint64(k.lport))^s[4], wyp1)
}

func (s *seed) hash(p *pkey) uint64 {
	if p.is6 {
		return s.hash6(&p.k6)
	}
	return s.hash4(&p.k4)
}
