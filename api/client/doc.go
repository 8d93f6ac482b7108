// Package client asks toad who is really behind a TCP connection that
// reached a Go server through an L4 proxy.
//
// Most servers need one line, wrapping their listener so that each accepted
// connection's RemoteAddr reports the real client:
//
//	ln = client.Wrap(ln)
//
// Wrap uses the toad serving on DefaultTarget. For another address, or to
// ask directly, make a Client with New:
//
//	c, err := client.New("unix:///run/toad/toad.sock")
//	...
//	addr, err := c.RealAddr(ctx, conn)
//
// A Client is safe for concurrent use; its zero value is not usable. The
// default client behind Wrap and RealAddr is made on first use and lives as
// long as the process.
package client
