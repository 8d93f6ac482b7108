package lifetime

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/toa"
)

// End is how a connection ended.
type End uint8

// Ends of a connection.
const (
	// Open: still open when the stream ended.
	Open End = iota
	// FIN: the peer sent a FIN.
	FIN
	// RST: the peer sent a RST.
	RST
	// Reused: a SYN with another initial sequence number on the same
	// 4-tuple started a new connection (the previous one's FIN or RST,
	// if any, was not seen).
	Reused
)

var endNames = [...]string{"open", "fin", "rst", "reused"}

func (e End) String() string {
	if int(e) < len(endNames) {
		return endNames[e]
	}
	return fmt.Sprintf("end(%d)", uint8(e))
}

// Conn is one connection's lifetime.
type Conn struct {
	// Peer and Local are its 4-tuple as the server's socket reports it:
	// Peer the proxy, Local the server.
	Peer, Local netip.AddrPort
	// Client is the real client its first trusted TOA named; zero when
	// none did.
	Client toa.Client
	// Opened is the capture time of its first segment seen: its SYN, or,
	// when the capture began after the handshake, the first segment with
	// a TOA, FIN or RST.
	Opened time.Time
	// FirstTOA is when its first trusted TOA was seen; zero when none was.
	FirstTOA time.Time
	// Closed is when it ended: the FIN or RST, or the SYN of the next
	// connection on its 4-tuple; zero when End is Open.
	Closed time.Time
	End    End
	// Conflicts counts the TOAs that named another client than the first
	// before it ended, which were ignored.
	Conflicts uint32
}

// HasTOA reports whether a TOA named the connection's client.
func (c *Conn) HasTOA() bool { return !c.Client.IsZero() }

// Config configures a Tracker. The zero value trusts every peer and holds
// ended connections' 4-tuples for correlate.DefaultLinger.
type Config struct {
	// Trusted are the proxy ranges whose TOAs are believed; empty means
	// every peer.
	Trusted []netip.Prefix
	// Linger is how long, in capture time, an ended connection's 4-tuple
	// is still held, so that its late segments (a retransmitted FIN, the
	// last ACK) neither open a new connection nor count as one; 0 means
	// correlate.DefaultLinger.
	Linger time.Duration
}

// Stats are a Tracker's counters.
type Stats struct {
	// Conns counts the connections seen, ended or not; WithTOA those of
	// them whose client a TOA named.
	Conns, WithTOA uint64
	// FIN, RST and Reused count the connections that ended so, Open those
	// still open when Finish was called.
	FIN, RST, Reused, Open uint64
	// Conflicts counts TOAs that named another client than their
	// connection's first; MultipleTOA segments from trusted peers with
	// more than one TOA; Untrusted segments with a TOA from a peer
	// outside the trusted ranges.
	Conflicts, MultipleTOA, Untrusted uint64
	// Held is how many connections are held now: open, or ended within
	// the linger. Peak is the most held at once.
	Held, Peak int
	// AllTrusted is set when every peer is trusted.
	AllTrusted bool
}

// key is a connection's 4-tuple, addresses in their 16-byte form.
type key struct {
	peer, local  [16]byte
	pport, lport uint16
}

func keyOf(peer, local netip.AddrPort) key {
	return key{peer: peer.Addr().Unmap().As16(), local: local.Addr().Unmap().As16(), pport: peer.Port(), lport: local.Port()}
}

// entry is one connection held, pointer-free.
type entry struct {
	k         key
	id        uint64 // the order connections were first seen in, from 1; 0 in a free slot
	opened    int64  // Unix nanoseconds
	firstTOA  int64
	closed    int64
	isn       correlate.ISN
	conflicts uint32
	client    [16]byte
	cport     uint16
	dialect   toa.Dialect
	flags     uint8
	end       End
}

const (
	fClient  = 1 << iota // a TOA named the client
	fClient6             // its address is IPv6
	fHasPort
	fEnded
)

// ending is an ended connection whose 4-tuple is held until its linger is
// over.
type ending struct {
	slot uint32
	id   uint64
	at   int64
}

// Tracker follows connections and calls its emit function with each one
// as it ends.
type Tracker struct {
	trust  correlate.Trust
	linger int64
	emit   func(*Conn)

	index  map[key]uint32 // slot of each connection held
	slots  []entry
	free   []uint32
	ending []ending // ended connections in the order they ended, from head
	head   int
	nextID uint64
	st     Stats
	out    Conn // what emit is given, reused
}

// New returns a Tracker that calls emit with every connection as it ends:
// at its FIN or RST, at the SYN of the connection that reuses its
// 4-tuple, or, for those still open, at Finish. The *Conn is only valid
// during the call. Connections are emitted in the order they end; those
// open at Finish in the order they were first seen.
func New(cfg Config, emit func(*Conn)) (*Tracker, error) {
	trust, err := correlate.NewTrust(cfg.Trusted)
	if err != nil {
		return nil, fmt.Errorf("lifetime: Config.Trusted%w", err)
	}
	if cfg.Linger < 0 {
		return nil, fmt.Errorf("lifetime: Config.Linger %v: want 0 (default %v) or more", cfg.Linger, correlate.DefaultLinger)
	}
	if cfg.Linger == 0 {
		cfg.Linger = correlate.DefaultLinger
	}
	t := &Tracker{trust: trust, linger: int64(cfg.Linger), emit: emit, index: map[key]uint32{}, nextID: 1}
	t.st.AllTrusted = trust.All()
	return t, nil
}

// Observe applies one segment, seen from the server's side, whose Time is
// the tracker's clock. Segments with no TOA and none of SYN, FIN and RST
// change nothing and cost no lookup.
func (t *Tracker) Observe(r *decode.Record) {
	hasTOA := r.TOACount > 0
	syn := r.Flags&(decode.SYN|decode.ACK) == decode.SYN
	end := r.Flags&(decode.FIN|decode.RST) != 0
	if !hasTOA && !syn && !end {
		return
	}
	if !t.trust.Trusts(r.Peer.Addr()) {
		if hasTOA {
			t.st.Untrusted++
		}
		return
	}
	now := r.Time.UnixNano()
	k := keyOf(r.Peer, r.Local)
	slot, held := t.index[k]
	if held && syn {
		e := &t.slots[slot]
		isNew, isn := e.isn.StartsNew(r.Seq, e.flags&fEnded != 0)
		if isNew {
			if e.flags&fEnded == 0 {
				t.end(e, Reused, now)
			}
			t.release(slot)
			held = false
		} else {
			e.isn = isn
		}
	}
	if !held {
		slot = t.alloc(k)
		e := &t.slots[slot]
		e.id, e.opened, e.isn = t.nextID, now, correlate.ISNOf(r)
		t.nextID++
		t.st.Conns++
	}
	e := &t.slots[slot]
	if hasTOA {
		if r.TOACount > 1 {
			t.st.MultipleTOA++
		}
		switch {
		case e.flags&fClient == 0:
			if e.flags&fEnded == 0 {
				setClient(e, &r.TOA, now)
				t.st.WithTOA++
			}
		case !sameClient(e, &r.TOA):
			t.st.Conflicts++
			if e.flags&fEnded == 0 {
				e.conflicts++
			}
		}
	}
	if end && e.flags&fEnded == 0 {
		how := FIN
		if r.Flags&decode.RST != 0 {
			how = RST
		}
		t.end(e, how, now)
		if t.head > 0 && t.head >= len(t.ending)/2 {
			n := copy(t.ending, t.ending[t.head:])
			t.ending, t.head = t.ending[:n], 0
		}
		t.ending = append(t.ending, ending{slot: slot, id: e.id, at: now})
	}
}

func setClient(e *entry, c *toa.Client, now int64) {
	e.flags |= fClient
	if c.Addr.Is4() {
		a := c.Addr.As4()
		copy(e.client[:], a[:])
	} else {
		e.client = c.Addr.As16()
		e.flags |= fClient6
	}
	if c.HasPort {
		e.flags |= fHasPort
		e.cport = c.Port
	}
	e.dialect = c.Dialect
	e.firstTOA = now
}

func sameClient(e *entry, c *toa.Client) bool {
	var want entry
	setClient(&want, c, 0)
	return e.client == want.client && e.cport == want.cport && e.dialect == want.dialect &&
		e.flags&(fClient6|fHasPort) == want.flags&(fClient6|fHasPort)
}

// end ends e at now and emits it.
func (t *Tracker) end(e *entry, how End, now int64) {
	e.flags |= fEnded
	e.end, e.closed = how, now
	switch how {
	case FIN:
		t.st.FIN++
	case RST:
		t.st.RST++
	case Reused:
		t.st.Reused++
	}
	t.send(e)
}

// send fills t.out from e and emits it.
func (t *Tracker) send(e *entry) {
	c := &t.out
	*c = Conn{
		Peer:      netip.AddrPortFrom(netip.AddrFrom16(e.k.peer).Unmap(), e.k.pport),
		Local:     netip.AddrPortFrom(netip.AddrFrom16(e.k.local).Unmap(), e.k.lport),
		Opened:    time.Unix(0, e.opened).UTC(),
		End:       e.end,
		Conflicts: e.conflicts,
	}
	if e.flags&fClient != 0 {
		if e.flags&fClient6 != 0 {
			c.Client.Addr = netip.AddrFrom16(e.client)
		} else {
			c.Client.Addr = netip.AddrFrom4([4]byte(e.client[:4]))
		}
		c.Client.Port, c.Client.HasPort = e.cport, e.flags&fHasPort != 0
		c.Client.Dialect = e.dialect
		c.FirstTOA = time.Unix(0, e.firstTOA).UTC()
	}
	if e.flags&fEnded != 0 {
		c.Closed = time.Unix(0, e.closed).UTC()
	}
	t.emit(c)
}

// alloc takes a slot for a new connection on k.
func (t *Tracker) alloc(k key) uint32 {
	var slot uint32
	if n := len(t.free); n > 0 {
		slot = t.free[n-1]
		t.free = t.free[:n-1]
		t.slots[slot] = entry{}
	} else {
		slot = uint32(len(t.slots))
		t.slots = append(t.slots, entry{})
	}
	t.slots[slot].k = k
	t.index[k] = slot
	t.st.Held = len(t.index)
	t.st.Peak = max(t.st.Peak, t.st.Held)
	return slot
}

// release forgets the connection in slot.
func (t *Tracker) release(slot uint32) {
	e := &t.slots[slot]
	delete(t.index, e.k)
	e.id, e.flags = 0, 0 // no ending matches it any more
	t.free = append(t.free, slot)
	t.st.Held = len(t.index)
}

// Expire forgets the connections that ended Linger or longer before now,
// so that their 4-tuples are new connections' again, and returns how many
// it forgot. A replay calls it with capture time as the capture goes on
// (capture.Replay and capture.ReplayFiles do for an Expirer). It emits
// nothing: connections are emitted when they end.
func (t *Tracker) Expire(now time.Time) int {
	if now.IsZero() {
		return 0
	}
	cut := now.UnixNano() - t.linger
	n := 0
	for t.head < len(t.ending) && t.ending[t.head].at <= cut {
		x := t.ending[t.head]
		t.head++
		if e := &t.slots[x.slot]; e.id == x.id && e.flags&fEnded != 0 {
			t.release(x.slot)
			n++
		}
	}
	if t.head == len(t.ending) {
		t.ending, t.head = t.ending[:0], 0
	}
	return n
}

// Finish emits the connections still open, End Open, in the order they
// were first seen, and forgets them. The tracker may go on afterwards, as
// if the stream started anew with the ended connections still held.
func (t *Tracker) Finish() {
	var open []uint32
	for _, slot := range t.index {
		if t.slots[slot].flags&fEnded == 0 {
			open = append(open, slot)
		}
	}
	slices.SortFunc(open, func(a, b uint32) int { return cmp.Compare(t.slots[a].id, t.slots[b].id) })
	for _, slot := range open {
		t.st.Open++
		t.send(&t.slots[slot])
		t.release(slot)
	}
}

// Stats returns the tracker's counters.
func (t *Tracker) Stats() Stats { return t.st }
