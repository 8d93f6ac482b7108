package capture

import (
	"net/netip"
	"time"

	"github.com/toad-project/toad/decode"
)

// Incoming is a Sink that passes on what the server received, out of a
// capture taken on the server that holds both directions (tcpdump's
// default): a live capture sees only what arrives, and a sink fed a
// replay must see the same. The server's own FIN and RST would otherwise
// close nothing, or be taken for connections of their own. They are
// recognised by the SYN-ACK the server sent first; the SYN-ACK itself is
// not passed on either. Outgoing data passes, since it never matters to a
// sink that follows connections: no outgoing segment carries a TOA, and
// without SYN, FIN or RST a segment opens and closes nothing. A
// connection whose handshake the capture missed is not recognised, and
// its server's FIN or RST passes.
//
// Its memory follows the connections open at once. The server's side of
// a connection is forgotten Linger (capture time, see Expire) after the
// server's FIN or RST or the peer's RST, or HalfClosed after the peer's
// FIN when the server sends no FIN or RST: the server may go on sending
// for a while after the peer's FIN. Incoming is not safe for concurrent
// use. Its zero value is not usable; use NewIncoming.
type Incoming struct {
	next    Sink
	exp     Expirer // next as an Expirer, or nil
	linger  int64
	servers map[flowKey]uint32 // the server's side of each connection, as a node
	nodes   []side             // the nodes, from index 1; 0 is no node
	free    []uint32
	half    list // server sides whose peer sent a FIN, in that order
	closed  list // server sides closed, in the order they closed
}

// HalfClosed is how long, in capture time, Incoming waits for the
// server's FIN or RST after the peer's FIN.
const HalfClosed = 15 * time.Minute

// side is the state of a server's side of a connection, and its links in
// the list of its state.
type side struct {
	k          flowKey
	state      uint8
	at         int64 // when it entered the state, Unix nanoseconds
	prev, next uint32
}

const (
	sideOpen   = iota
	sideHalf   // the peer sent a FIN
	sideClosed // the server sent a FIN or RST, or the peer a RST
)

// flowKey is one direction of a connection, source then destination,
// addresses in their 16-byte form.
type flowKey struct {
	src, dst   [16]byte
	sport, dpt uint16
}

func flowOf(src, dst netip.AddrPort) flowKey {
	return flowKey{src: src.Addr().Unmap().As16(), dst: dst.Addr().Unmap().As16(), sport: src.Port(), dpt: dst.Port()}
}

// list is a doubly linked list of nodes, oldest first.
type list struct{ head, tail uint32 }

func (in *Incoming) push(l *list, n uint32) {
	s := &in.nodes[n]
	s.prev, s.next = l.tail, 0
	if l.tail != 0 {
		in.nodes[l.tail].next = n
	} else {
		l.head = n
	}
	l.tail = n
}

func (in *Incoming) unlink(l *list, n uint32) {
	s := &in.nodes[n]
	if s.prev != 0 {
		in.nodes[s.prev].next = s.next
	} else {
		l.head = s.next
	}
	if s.next != 0 {
		in.nodes[s.next].prev = s.prev
	} else {
		l.tail = s.prev
	}
	s.prev, s.next = 0, 0
}

// listOf returns the list of a node in state, nil for an open one.
func (in *Incoming) listOf(state uint8) *list {
	switch state {
	case sideHalf:
		return &in.half
	case sideClosed:
		return &in.closed
	}
	return nil
}

// NewIncoming returns an Incoming passing what the server received to
// next. linger is how long, in capture time, the server's side of a
// closed connection is still recognised (its FIN may be retransmitted);
// 0 means a minute.
func NewIncoming(next Sink, linger time.Duration) *Incoming {
	if linger <= 0 {
		linger = time.Minute
	}
	in := &Incoming{next: next, linger: int64(linger), servers: map[flowKey]uint32{}, nodes: make([]side, 1)}
	in.exp, _ = next.(Expirer)
	return in
}

// Observe passes r on unless the server sent it.
func (in *Incoming) Observe(r *decode.Record) {
	switch {
	case r.Flags&(decode.SYN|decode.ACK) == decode.SYN|decode.ACK:
		k := flowOf(r.Peer, r.Local)
		if n, ok := in.servers[k]; ok {
			in.set(n, sideOpen, r.Time) // a new connection on the key is open again
		} else {
			in.servers[k] = in.alloc(k)
		}
		return
	case r.Flags&(decode.FIN|decode.RST) != 0:
		if n, ok := in.servers[flowOf(r.Peer, r.Local)]; ok {
			if in.nodes[n].state != sideClosed {
				in.set(n, sideClosed, r.Time)
			}
			return // the server's own
		}
		if n, ok := in.servers[flowOf(r.Local, r.Peer)]; ok {
			switch st := in.nodes[n].state; {
			case r.Flags&decode.RST != 0 && st != sideClosed:
				in.set(n, sideClosed, r.Time)
			case st == sideOpen:
				in.set(n, sideHalf, r.Time) // the server's FIN may follow
			}
		}
	}
	in.next.Observe(r)
}

// alloc returns a new open node for k.
func (in *Incoming) alloc(k flowKey) uint32 {
	var n uint32
	if l := len(in.free); l > 0 {
		n = in.free[l-1]
		in.free = in.free[:l-1]
	} else {
		n = uint32(len(in.nodes))
		in.nodes = append(in.nodes, side{})
	}
	in.nodes[n] = side{k: k, state: sideOpen}
	return n
}

// set moves node n to state at ts, at the end of its state's list.
func (in *Incoming) set(n uint32, state uint8, ts time.Time) {
	s := &in.nodes[n]
	if l := in.listOf(s.state); l != nil {
		in.unlink(l, n)
	}
	s.state, s.at = state, ts.UnixNano()
	if l := in.listOf(state); l != nil {
		in.push(l, n)
	}
}

// expire forgets the nodes of l that entered their state by cut.
func (in *Incoming) expire(l *list, cut int64) {
	for l.head != 0 && in.nodes[l.head].at <= cut {
		n := l.head
		in.unlink(l, n)
		delete(in.servers, in.nodes[n].k)
		in.free = append(in.free, n)
	}
}

// Expire forgets the server sides closed Linger or longer before now, and
// those whose peer sent a FIN HalfClosed or longer before now, then
// expires next if it is an Expirer, returning what next removed.
func (in *Incoming) Expire(now time.Time) int {
	if !now.IsZero() {
		in.expire(&in.closed, now.UnixNano()-in.linger)
		in.expire(&in.half, now.UnixNano()-int64(HalfClosed))
	}
	if in.exp != nil {
		return in.exp.Expire(now)
	}
	return 0
}

// Servers returns how many connections' server side Incoming holds.
func (in *Incoming) Servers() int { return len(in.servers) }
