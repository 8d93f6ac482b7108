// Package toa reads and writes TOA ("TCP Option Address") options: the TCP
// options in which L4 proxies, anti-DDoS services and FULLNAT load balancers
// pass the real client address of a connection whose source they rewrote.
//
// A dialect is a (kind, length) pair; the same kind means different things
// at different lengths, so the client's address family always comes from the
// option length, never from the IP version of the packet that carries it.
//
// A Set holds the enabled dialects. Its zero value enables nothing; use
// DefaultSet or ParseSet. A Set is safe for concurrent use once it is no
// longer modified. Parsing never allocates.
package toa
