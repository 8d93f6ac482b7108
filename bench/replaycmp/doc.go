// Package replaycmp measures how fast toad gets the real clients out of a
// capture file, beside the tools a user would pick instead, on the same
// file in the same run: gopacket's NewPacket, gopacket's
// DecodingLayerParser, and tshark extracting the same fields. Each tool
// reads the file, decodes every packet into the fields of a decode.Record
// (addresses, ports, flags, sequence numbers, payload length, the first
// TOA) and keeps, per connection, the first TOA a trusted proxy sent; toad
// does it with its decoder and its connection table, the others with their
// decoders and a Go map. The mappings each found are checked against the
// generator's ground truth.
//
// It also measures how replay time and table memory grow with the number
// of connections (Scale), on frames streamed from the generator in memory.
//
// The functions measure the process's heap and time: call one at a time.
// The zero values of the configuration types take the documented defaults.
package replaycmp
