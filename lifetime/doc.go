// Package lifetime follows the TCP connections of a time-ordered stream
// of decoded segments, such as a replayed capture, and reports each one
// once, when it ends: its 4-tuple, the real client its first TOA named,
// when it opened, when and how it ended.
//
// It applies the connection table's rules (package correlate): only
// trusted peers' TOAs are believed, the first TOA wins and a different one
// later is a conflict, a FIN or RST from the peer ends the connection, and
// a SYN with another initial sequence number on a 4-tuple in use starts a
// new connection, ending the one before. Unlike the table it also follows
// connections that never carry a TOA, holds every connection until it
// ends whatever their number (nothing is evicted), and is fed by one
// goroutine. Its memory follows the connections open at once, plus those
// that ended within the last Linger of capture time, whose 4-tuples are
// still held so that their late segments are not taken for new
// connections.
//
// A Tracker is not safe for concurrent use. Its zero value is not usable;
// use New.
package lifetime
