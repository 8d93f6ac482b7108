// Package gen writes pcap and pcapng captures of generated TCP connections
// through L4 proxies: every TOA dialect and placement, IPv4 and IPv6, any
// link framing, plain data, connections from outside the trusted proxy
// ranges forging a TOA, and junk frames. The same Config and seed always
// give the same bytes. Write returns the ground truth: each connection's
// key and real client.
//
// It builds the sample capture in testdata/ and the large captures of the
// benchmarks. Its functions are safe for concurrent use; a zero Config
// writes an empty capture.
package gen
