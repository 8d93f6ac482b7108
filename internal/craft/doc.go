// Package craft builds TCP/IP frames byte by byte for tests, the sample
// capture and the benchmark generator: any TOA dialect at any option
// position, IPv4 options and fragments, IPv6 extension headers, VLAN stacks
// and every link framing the decoder reads. Checksums are correct, so the
// frames can also be sent through a real network stack.
//
// A Segment describes a TCP segment and its IP packet (Src and Dst must be
// of one family, which picks the IP version); Segment.IP builds the packet
// and a Framing wraps it in a link layer. A Framing whose Link adds no
// header (the zero Framing, LinkRaw, LinkIPv4, LinkIPv6) returns the packet
// as it is. Cut shortens a packet into a first fragment.
//
// CorpusFile and SyncCorpus write the seed corpora of fuzz targets.
//
// Functions are safe for concurrent use; they share no state.
package craft
