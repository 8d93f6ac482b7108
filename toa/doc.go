// Package toa reads and writes TOA ("TCP Option Address") options: the TCP
// options in which L4 proxies, anti-DDoS services and FULLNAT load balancers
// pass the real client address of a connection whose source they rewrote.
//
// A dialect is a (kind, length) pair; the same kind means different things
// at different lengths, so the client's address family always comes from the
// option length, never from the IP version of the packet that carries it.
// Builtin lists the dialects seen on the wire and who sends them.
//
// A Set holds the enabled dialects. Its zero value (and a nil *Set) enables
// nothing; use DefaultSet or ParseSet. A Set is safe for concurrent use once
// it is no longer modified. Set.Parse walks a whole option list of a
// Segment, skipping the experiments that share kinds 253 and 254 (Fast
// Open, SMC-R, AccECN) where they can ride; Set.Option decodes one option.
// Neither allocates.
//
// Append and AppendDialect encode TOAs, for tests and traffic generators.
package toa
