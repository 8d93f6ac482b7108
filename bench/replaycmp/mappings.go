package replaycmp

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/internal/craft/gen"
	"github.com/toad-project/toad/toa"
)

// Mappings is an order-free digest of a set of mappings, connection to
// real client: how many, and the sum of their hashes. Two tools found the
// same mappings when their digests are equal; two different sets collide
// with a chance of the order of 2^-64.
type Mappings struct {
	N   int
	Sum uint64
}

var seed = maphash.MakeSeed()

// Add adds the mapping of k to c.
func (m *Mappings) Add(k correlate.Key, c toa.Client) {
	var b [80]byte
	put := func(at int, ap netip.AddrPort) {
		a := ap.Addr().As16()
		copy(b[at:], a[:])
		binary.BigEndian.PutUint16(b[at+16:], ap.Port())
	}
	put(0, k.Peer())
	put(18, k.Local())
	put(36, netip.AddrPortFrom(c.Addr, c.Port))
	b[54], b[55] = c.Dialect.Kind, c.Dialect.Len
	if c.HasPort {
		b[56] = 1
	}
	if c.Addr.Is4() {
		b[57] = 1
	}
	m.N++
	m.Sum += maphash.Bytes(seed, b[:58])
}

// Truth adds the mappings a tool must find in the connections of a
// generated capture: the first TOA of each connection from a trusted
// proxy.
func (m *Mappings) Truth(c *gen.Conn) {
	if c.Resolvable() {
		m.Add(correlate.KeyOf(c.Peer, c.Local), c.Client)
	}
}

// trusted reports whether a is one of the generator's proxies, whose TOAs
// count.
func trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range gen.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// firstTOA keeps the first TOA of every connection from a trusted proxy,
// in a Go map: what a user of a packet library writes around it.
type firstTOA map[correlate.Key]toa.Client

func (f firstTOA) observe(peer, local netip.AddrPort, c toa.Client) {
	if !trusted(peer.Addr()) {
		return
	}
	k := correlate.KeyOf(peer, local)
	if _, ok := f[k]; !ok {
		f[k] = c
	}
}

func (f firstTOA) mappings() Mappings {
	var m Mappings
	for k, c := range f {
		m.Add(k, c)
	}
	return m
}
