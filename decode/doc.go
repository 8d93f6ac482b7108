// Package decode turns captured frames into Records: the server-side
// 4-tuple of a TCP segment, its flags, sequence numbers and payload length,
// and the first TOA it carries.
//
// It reads Ethernet II with any number of 802.1Q/802.1ad tags, Linux cooked
// captures (SLL, SLL2), and bare IP packets (LINKTYPE_RAW, IPV4, IPV6, and
// what a cooked AF_PACKET socket delivers); IPv4 with options and IPv6
// through hop-by-hop, routing, destination options, authentication and
// fragment headers. Non-first fragments are never decoded; a first fragment
// is, when it holds the whole TCP header.
//
// Decoding never allocates and never panics: a frame yields either a Record
// or a Reason it was rejected (and a zero Record), which callers count. A
// Decoder is safe for concurrent use; its zero value decodes frames but
// recognises no TOA dialect (use New).
package decode
