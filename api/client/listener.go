package client

import (
	"context"
	"net"
	"sync"
	"time"
)

// rpcSlack is added to the lookup's wait for the call itself.
const rpcSlack = time.Second

// Listener wraps a net.Listener: its connections report the real client
// from RemoteAddr.
type Listener struct {
	net.Listener
	c *Client
}

// Listener wraps l so that each accepted connection's RemoteAddr asks toad
// for the real client.
func (c *Client) Listener(l net.Listener) *Listener { return &Listener{Listener: l, c: c} }

// Wrap wraps l with the default client: each accepted connection's
// RemoteAddr reports the real client, as the toad at DefaultTarget knows
// it, or the proxy's address when toad does not know the connection or
// cannot be reached.
func Wrap(l net.Listener) net.Listener {
	c, err := Default()
	if err != nil {
		// Default's target is a constant that parses; nothing to wrap with
		// otherwise.
		return l
	}
	return c.Listener(l)
}

// Accept returns the next connection as a *Conn. It does not wait for toad:
// the lookup happens on the connection's first RemoteAddr or RealAddr call.
func (l *Listener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Conn{Conn: nc, c: l.c, ctx: ctx, cancel: cancel}, nil
}

// Conn is a connection accepted by a Listener.
type Conn struct {
	net.Conn
	c      *Client
	ctx    context.Context // canceled by Close, ending a lookup in flight
	cancel context.CancelFunc

	once sync.Once
	real *net.TCPAddr
	err  error
}

// RemoteAddr returns the real client of the connection, or, when toad does
// not know it, the address the socket reports (the proxy's). The first call
// asks toad, waiting up to the client's wait for a handshake in flight;
// LookupErr tells why the real client is not known.
func (c *Conn) RemoteAddr() net.Addr {
	if a, err := c.realAddr(); err == nil {
		return a
	}
	return c.Conn.RemoteAddr()
}

// ProxyAddr returns the remote address the socket reports: the proxy's.
func (c *Conn) ProxyAddr() net.Addr { return c.Conn.RemoteAddr() }

// LookupErr asks toad if nobody has yet, and returns why the real client is
// not known (ErrNotFound, or a failure to reach toad), or nil when it is.
func (c *Conn) LookupErr() error {
	_, err := c.realAddr()
	return err
}

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Close closes the connection and ends a lookup in flight.
func (c *Conn) Close() error {
	c.cancel()
	return c.Conn.Close()
}

// realAddr asks toad once, bounded by the client's wait, and remembers.
func (c *Conn) realAddr() (*net.TCPAddr, error) {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(c.ctx, c.c.wait+rpcSlack)
		defer cancel()
		c.real, c.err = c.c.realAddr(ctx, c.Conn)
	})
	return c.real, c.err
}
