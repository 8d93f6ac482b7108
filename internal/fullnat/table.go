package fullnat

import (
	"net/netip"
	"time"
)

// connKey is a connection seen from the client's side.
type connKey struct {
	client, vip netip.AddrPort
}

// Handshake states of a conn.
const (
	stateSyn         uint8 = iota // the client's SYN went to the origin
	stateSynAck                   // the origin's SYN-ACK went to the client
	stateEstablished              // the client's final ACK went to the origin
)

// conn is one proxied connection.
type conn struct {
	key   connKey
	port  uint16 // the proxy's port toward the origin
	state uint8
	// finClient and finOrigin record a FIN seen from each side; closing is
	// set by FINs both ways or a RST, and closeAt is when the entry goes.
	finClient, finOrigin, closing bool
	// originData is set once the origin has sent data: the end of "early
	// data" for Placement Data.
	originData bool
	last       time.Time
	closeAt    time.Time
	// opt is the TOA this connection's segments carry, optLen bytes long
	// (0 for none).
	opt    [40]byte
	optLen uint8
}

func (c *conn) toa() []byte {
	if c.optLen == 0 {
		return nil
	}
	return c.opt[:c.optLen]
}

// table maps connections both ways and allocates proxy ports round-robin,
// so that a port is reused as late as possible. It is not safe for
// concurrent use.
type table struct {
	byClient map[connKey]*conn
	byPort   []*conn // indexed by port-min
	min      uint16
	next     int // index of the next port to try
}

func newTable(min, max uint16) table {
	return table{
		byClient: make(map[connKey]*conn),
		byPort:   make([]*conn, int(max)-int(min)+1),
		min:      min,
	}
}

func (t *table) len() int { return len(t.byClient) }

func (t *table) lookupClient(k connKey) *conn { return t.byClient[k] }

func (t *table) lookupPort(p uint16) *conn {
	i := int(p) - int(t.min)
	if i < 0 || i >= len(t.byPort) {
		return nil
	}
	return t.byPort[i]
}

// add maps a new connection, or returns nil when every port is in use.
func (t *table) add(k connKey, now time.Time) *conn {
	if len(t.byClient) >= len(t.byPort) {
		return nil
	}
	for t.byPort[t.next] != nil {
		t.next = (t.next + 1) % len(t.byPort)
	}
	c := &conn{key: k, port: t.min + uint16(t.next), last: now}
	t.byPort[t.next] = c
	t.next = (t.next + 1) % len(t.byPort)
	t.byClient[k] = c
	return c
}

func (t *table) remove(c *conn) {
	delete(t.byClient, c.key)
	t.byPort[int(c.port)-int(t.min)] = nil
}

// sweep removes the connections whose close timeout has passed or that
// have been idle for idle, and returns how many it removed.
func (t *table) sweep(now time.Time, idle time.Duration) int {
	n := 0
	for _, c := range t.byClient {
		if c.closing && !now.Before(c.closeAt) || now.Sub(c.last) >= idle {
			t.remove(c)
			n++
		}
	}
	return n
}
