package correlate

import (
	"errors"
	"time"

	"github.com/toad-project/toad/toa"
)

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
