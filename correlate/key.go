package correlate

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Key is a connection's server-side 4-tuple: the peer and local addresses
// as the application's socket reports them, packed and made canonical once,
// by KeyOf: IPv4-mapped IPv6 addresses are unmapped, so
// "[::ffff:192.0.2.1]:80" and "192.0.2.1:80" are the same key, and IPv6
// zones are dropped. Key is comparable, and two keys are equal exactly
// when they name the same connection; the table uses it as it is.
//
// The zero Key names no connection: its Peer and Local are the zero
// AddrPort.
type Key struct {
	k4  key4 // when fam is fam4; zero otherwise
	k6  key6 // when fam is fam6; zero otherwise
	fam uint8
}

// Key families.
const (
	famNone = iota // the zero Key
	fam4           // both addresses IPv4: k4
	fam6           // any other: k6
)

// key4 is the key of a connection between two IPv4 addresses, packed into
// 12 bytes.
type key4 struct {
	peer, local  uint32
	pport, lport uint16
}

// key6 is the key of any other connection, addresses in their 16-byte form
// (an IPv4 address beside an IPv6 one is stored IPv4-mapped).
type key6 struct {
	peer, local  [16]byte
	pport, lport uint16
}

// KeyOf returns the key of a connection from peer to local, unmapping
// IPv4-mapped addresses and dropping IPv6 zones. Either address invalid
// yields the zero Key.
func KeyOf(peer, local netip.AddrPort) Key {
	var k Key
	k.set(peer, local)
	return k
}

// set makes the zero Key *k KeyOf(peer, local), in place: the table's
// Observe builds the key of every segment this way.
func (k *Key) set(peer, local netip.AddrPort) {
	pa, la := peer.Addr(), local.Addr()
	if !pa.Is4() || !la.Is4() {
		pa, la = pa.Unmap(), la.Unmap()
		if !pa.Is4() || !la.Is4() {
			if pa.IsValid() && la.IsValid() {
				k.fam = fam6
				k.k6 = key6{peer: pa.As16(), local: la.As16(), pport: peer.Port(), lport: local.Port()}
			}
			return
		}
	}
	k.fam = fam4
	k.k4 = key4{peer: be32(pa.As4()), local: be32(la.As4()), pport: peer.Port(), lport: local.Port()}
}

// keyOf6 returns the key of k, whose IPv4 addresses are IPv4-mapped, as
// KeyOf would.
func keyOf6(k *key6) Key {
	if is4in6(&k.peer) && is4in6(&k.local) {
		return Key{fam: fam4, k4: key4{
			peer: be32([4]byte(k.peer[12:])), local: be32([4]byte(k.local[12:])),
			pport: k.pport, lport: k.lport,
		}}
	}
	return Key{fam: fam6, k6: *k}
}

// Peer returns the connection's peer address, canonical.
func (k Key) Peer() netip.AddrPort {
	peer, _ := k.ends()
	return peer
}

// Local returns the connection's local address, canonical.
func (k Key) Local() netip.AddrPort {
	_, local := k.ends()
	return local
}

// ends returns the peer and local addresses of k.
func (k *Key) ends() (peer, local netip.AddrPort) {
	switch k.fam {
	case fam4:
		return netip.AddrPortFrom(addr4(k.k4.peer), k.k4.pport), netip.AddrPortFrom(addr4(k.k4.local), k.k4.lport)
	case fam6:
		return netip.AddrPortFrom(netip.AddrFrom16(k.k6.peer).Unmap(), k.k6.pport),
			netip.AddrPortFrom(netip.AddrFrom16(k.k6.local).Unmap(), k.k6.lport)
	}
	return netip.AddrPort{}, netip.AddrPort{}
}

// IsValid reports whether k names a connection, that is, whether it is
// not the zero Key.
func (k Key) IsValid() bool { return k.fam != famNone }

// String returns "peer > local", or "invalid Key" for the zero Key.
func (k Key) String() string {
	if !k.IsValid() {
		return "invalid Key"
	}
	peer, local := k.ends()
	return peer.String() + " > " + local.String()
}

func be32(a [4]byte) uint32 { return binary.BigEndian.Uint32(a[:]) }

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

func (s *seed) hash(k *Key) uint64 {
	if k.fam == fam6 {
		return s.hash6(&k.k6)
	}
	return s.hash4(&k.k4)
}
