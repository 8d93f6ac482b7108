package preload

import (
	"encoding/binary"
	"net/netip"
)

// The shared table's layout; PROTOCOL.md ("The shared table") specifies
// it. Integers are in the host's byte order: the table never leaves the
// machine.
const (
	// SlotSize is the size of one entry of the shared table.
	SlotSize = 64
	// BucketSlots is how many slots a key may sit in.
	BucketSlots = 8
	// DefaultSharedSlots is the shared table's size in slots unless told
	// otherwise: 16 MiB.
	DefaultSharedSlots = 1 << 18

	sharedMagic   = 0x48534454 // "TDSH" in little-endian memory
	sharedLayout  = 1
	sharedHeader  = 64
	stateLive     = 1
	stateDead     = 2
	slotUsed      = 1
	slotClient6   = 2
	slotHasPort   = 4
	hdrMagic      = 0
	hdrLayout     = 4
	hdrSlots      = 8
	hdrBucket     = 12
	hdrSeed0      = 16
	hdrSeed1      = 24
	hdrState      = 32
	hdrHeartbeat  = 40
	slotSeq       = 0
	slotFlags     = 4 // flags, dialect kind, dialect length, reserved
	slotPeer      = 8
	slotLocal     = 24
	slotPorts     = 40 // peer port, local port, client port, reserved: 16 bits each
	slotClient    = 48
	slotWords     = SlotSize / 8
	maxSharedSize = 1 << 34
)

// sharedKey is a connection's key as the shared table holds it: both
// addresses in their 16-byte form (IPv4 mapped), as the library sees
// them.
type sharedKey struct {
	peer, local  [16]byte
	pport, lport uint16
}

func keyOf(peer, local netip.AddrPort) sharedKey {
	return sharedKey{peer: peer.Addr().As16(), local: local.Addr().As16(), pport: peer.Port(), lport: local.Port()}
}

// mix is splitmix64's finalizer.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// sharedHash is the hash both toad and the library compute over a key:
// the addresses read as host-order 64-bit words.
func sharedHash(k *sharedKey, seed0, seed1 uint64) uint64 {
	ne := binary.NativeEndian
	h := seed0
	h = mix(h ^ ne.Uint64(k.peer[:8]))
	h = mix(h ^ ne.Uint64(k.peer[8:]))
	h = mix(h ^ ne.Uint64(k.local[:8]))
	h = mix(h ^ ne.Uint64(k.local[8:]))
	return mix(h ^ (uint64(k.pport)<<16 | uint64(k.lport)) ^ seed1)
}
