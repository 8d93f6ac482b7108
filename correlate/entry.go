package correlate

import (
	"errors"
	"net/netip"
	"time"

	"github.com/toad-project/toad/toa"
)

// Key is a connection's server-side 4-tuple: the peer and local addresses
// exactly as the application's socket reports them. IPv4-mapped IPv6
// addresses are stored unmapped, so "[::ffff:192.0.2.1]:80" and
// "192.0.2.1:80" are the same key. Key is comparable.
type Key struct {
	Peer  netip.AddrPort
	Local netip.AddrPort
}

// KeyOf returns the key for a connection from peer to local, unmapping
// IPv4-mapped addresses and dropping IPv6 zones.
func KeyOf(peer, local netip.AddrPort) Key {
	return Key{Peer: canon(peer), Local: canon(local)}
}

func canon(ap netip.AddrPort) netip.AddrPort {
	a := ap.Addr().Unmap().WithZone("")
	return netip.AddrPortFrom(a, ap.Port())
}

// State is where a connection is in its life.
type State uint8

// States of a connection.
const (
	StateUnknown State = iota
	StateOpen          // handshake seen, no FIN or RST yet
	StateClosing       // FIN or RST seen; answered until the linger ends
)

func (s State) String() string {
	switch s {
	case StateOpen:
		return "open"
	case StateClosing:
		return "closing"
	}
	return "unknown"
}

// Entry is what the table knows of one connection.
type Entry struct {
	Key Key
	// Client is the real client the TOA named; Client.HasPort is false for
	// dialects that carry no port.
	Client toa.Client
	// FirstSeen is the capture time of the first TOA.
	FirstSeen time.Time
	State     State
	// ClosedAt is when the connection began closing (its first FIN or RST,
	// or the SYN of a new connection on its key); zero while it is open.
	ClosedAt time.Time
	// SynSeq is the client's initial sequence number, when HasSynSeq: the
	// SYN's own when the TOA came in the SYN; otherwise inferred from the
	// segment that brought the TOA (its Seq minus one), and SynSeqInferred
	// is set until a SYN confirms it.
	SynSeq         uint32
	HasSynSeq      bool
	SynSeqInferred bool
}

// EventType says what happened to a connection.
type EventType uint8

// Event types.
const (
	EventUnknown EventType = iota
	EventOpen              // a new connection with its client
	EventClose             // a connection moved to closing
)

func (e EventType) String() string {
	switch e {
	case EventOpen:
		return "open"
	case EventClose:
		return "close"
	}
	return "unknown"
}

// Event is one change to the table, as delivered to subscribers.
type Event struct {
	Type  EventType
	Entry Entry
}

// ErrNotFound is returned by lookups for a key the table does not hold.
var ErrNotFound = errors.New("connection not found")
