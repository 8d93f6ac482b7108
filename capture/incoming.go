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
// Its memory follows the connections open at once: the server's side of a
// connection is forgotten Linger (capture time, see Expire) after either
// side's FIN or RST. Incoming is not safe for concurrent use. Its zero
// value is not usable; use NewIncoming.
type Incoming struct {
	next    Sink
	exp     Expirer // next as an Expirer, or nil
	linger  int64
	servers map[flowKey]int64 // the server's side of each connection: 0 while open, else when it began closing
	ending  []ending          // closing connections in the order they began, from ending[head]
	head    int
}

// ending is a connection that began closing at t.
type ending struct {
	k flowKey
	t int64
}

// flowKey is one direction of a connection, source then destination,
// addresses in their 16-byte form.
type flowKey struct {
	src, dst   [16]byte
	sport, dpt uint16
}

func flowOf(src, dst netip.AddrPort) flowKey {
	return flowKey{src: src.Addr().Unmap().As16(), dst: dst.Addr().Unmap().As16(), sport: src.Port(), dpt: dst.Port()}
}

// NewIncoming returns an Incoming passing what the server received to
// next. linger is how long, in capture time, the server's side of a
// closing connection is still recognised (its FIN may come after the
// peer's, and be retransmitted); 0 means a minute.
func NewIncoming(next Sink, linger time.Duration) *Incoming {
	if linger <= 0 {
		linger = time.Minute
	}
	in := &Incoming{next: next, linger: int64(linger), servers: map[flowKey]int64{}}
	in.exp, _ = next.(Expirer)
	return in
}

// Observe passes r on unless the server sent it.
func (in *Incoming) Observe(r *decode.Record) {
	switch {
	case r.Flags&(decode.SYN|decode.ACK) == decode.SYN|decode.ACK:
		in.servers[flowOf(r.Peer, r.Local)] = 0 // a new connection on the key is open again
		return
	case r.Flags&(decode.FIN|decode.RST) != 0:
		if t, ok := in.servers[flowOf(r.Peer, r.Local)]; ok {
			if t == 0 {
				in.closing(flowOf(r.Peer, r.Local), r.Time)
			}
			return // the server's own
		}
		if k := flowOf(r.Local, r.Peer); in.servers[k] == 0 {
			if _, ok := in.servers[k]; ok {
				in.closing(k, r.Time) // the peer's: the server's FIN or RST may follow
			}
		}
	}
	in.next.Observe(r)
}

// closing marks the server's side k as closing at ts.
func (in *Incoming) closing(k flowKey, ts time.Time) {
	t := ts.UnixNano()
	if t == 0 {
		t = 1 // 0 means open
	}
	in.servers[k] = t
	if in.head > 0 && in.head >= len(in.ending)/2 {
		n := copy(in.ending, in.ending[in.head:])
		in.ending, in.head = in.ending[:n], 0
	}
	in.ending = append(in.ending, ending{k, t})
}

// Expire forgets the server's side of connections that began closing
// Linger or longer before now, then expires next if it is an Expirer,
// returning what next removed.
func (in *Incoming) Expire(now time.Time) int {
	if !now.IsZero() {
		cut := now.UnixNano() - in.linger
		for in.head < len(in.ending) && in.ending[in.head].t <= cut {
			e := in.ending[in.head]
			if in.servers[e.k] == e.t { // not reopened since
				delete(in.servers, e.k)
			}
			in.head++
		}
		if in.head == len(in.ending) {
			in.ending, in.head = in.ending[:0], 0
		}
	}
	if in.exp != nil {
		return in.exp.Expire(now)
	}
	return 0
}

// Servers returns how many connections' server side Incoming holds.
func (in *Incoming) Servers() int { return len(in.servers) }
