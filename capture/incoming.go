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
	servers map[flowKey]side // the server's side of each connection
	closed  queue            // server sides closed, in the order they closed
	half    queue            // server sides whose peer sent a FIN, in that order
}

// HalfClosed is how long, in capture time, Incoming waits for the
// server's FIN or RST after the peer's FIN.
const HalfClosed = 15 * time.Minute

// side is the state of a server's side of a connection.
type side struct {
	state uint8
	at    int64 // when it entered the state, Unix nanoseconds
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

// queue is a FIFO of server sides that entered a state, by time.
type queue struct {
	q    []queued
	head int
}

type queued struct {
	k flowKey
	s side
}

func (q *queue) push(k flowKey, s side) {
	if q.head > 0 && q.head >= len(q.q)/2 {
		n := copy(q.q, q.q[q.head:])
		q.q, q.head = q.q[:n], 0
	}
	q.q = append(q.q, queued{k, s})
}

// expire forgets the sides of q that entered their state by cut and are
// still in it.
func (q *queue) expire(cut int64, servers map[flowKey]side) {
	for q.head < len(q.q) && q.q[q.head].s.at <= cut {
		e := q.q[q.head]
		if servers[e.k] == e.s {
			delete(servers, e.k)
		}
		q.head++
	}
	if q.head == len(q.q) {
		q.q, q.head = q.q[:0], 0
	}
}

// NewIncoming returns an Incoming passing what the server received to
// next. linger is how long, in capture time, the server's side of a
// closed connection is still recognised (its FIN may be retransmitted);
// 0 means a minute.
func NewIncoming(next Sink, linger time.Duration) *Incoming {
	if linger <= 0 {
		linger = time.Minute
	}
	in := &Incoming{next: next, linger: int64(linger), servers: map[flowKey]side{}}
	in.exp, _ = next.(Expirer)
	return in
}

// Observe passes r on unless the server sent it.
func (in *Incoming) Observe(r *decode.Record) {
	switch {
	case r.Flags&(decode.SYN|decode.ACK) == decode.SYN|decode.ACK:
		in.servers[flowOf(r.Peer, r.Local)] = side{state: sideOpen} // a new connection on the key is open again
		return
	case r.Flags&(decode.FIN|decode.RST) != 0:
		k := flowOf(r.Peer, r.Local)
		if s, ok := in.servers[k]; ok {
			if s.state != sideClosed {
				in.set(k, sideClosed, r.Time)
			}
			return // the server's own
		}
		k = flowOf(r.Local, r.Peer)
		if s, ok := in.servers[k]; ok {
			switch {
			case r.Flags&decode.RST != 0 && s.state != sideClosed:
				in.set(k, sideClosed, r.Time)
			case s.state == sideOpen:
				in.set(k, sideHalf, r.Time) // the server's FIN may follow
			}
		}
	}
	in.next.Observe(r)
}

// set moves the server side k to state at ts.
func (in *Incoming) set(k flowKey, state uint8, ts time.Time) {
	s := side{state: state, at: ts.UnixNano()}
	in.servers[k] = s
	if state == sideHalf {
		in.half.push(k, s)
	} else {
		in.closed.push(k, s)
	}
}

// Expire forgets the server sides closed Linger or longer before now, and
// those whose peer sent a FIN HalfClosed or longer before now, then
// expires next if it is an Expirer, returning what next removed.
func (in *Incoming) Expire(now time.Time) int {
	if !now.IsZero() {
		in.closed.expire(now.UnixNano()-in.linger, in.servers)
		in.half.expire(now.UnixNano()-int64(HalfClosed), in.servers)
	}
	if in.exp != nil {
		return in.exp.Expire(now)
	}
	return 0
}

// Servers returns how many connections' server side Incoming holds.
func (in *Incoming) Servers() int { return len(in.servers) }
