// Package preload serves toad's lookups to the LD_PRELOAD library
// (libtoad_preload.so, built from the repository's preload directory),
// which makes accept(), getpeername() and getsockopt(IPPROTO_IP, 4096)
// of unmodified programs return the real client of connections that came
// through an L4 proxy.
//
// The library and the Server speak a small binary protocol, specified in
// preload/PROTOCOL.md: fixed-size frames over a SOCK_SEQPACKET unix
// socket, one request in flight per connection. A connection starts with
// HELLO, which the Server answers with its limits and toad's trusted
// proxy ranges, so that the library passes connections from other peers
// through without asking; then each LOOKUP, carrying the connection's
// peer and local addresses as the kernel reports them and the wait the
// caller allows, gets an ANSWER. The library's outcome counters ride on
// its lookups (and on rare REPORT frames), never in a round trip of their
// own. The codec (Frame, ParseHeader and the message types) has no I/O
// and is shared by the Server and by tests.
//
// A Server answers from a Lookuper, which *correlate.Table is; it is
// bounded (MaxConns connections, one goroutine and one frame buffer each,
// fixed frame size, a capped wait) and counts what it does in Stats,
// beside the outcomes the libraries report; Counters describes each
// counter for the views that export them. Listen makes its socket with
// the permissions of toad's other unix socket, plus an optional group so
// that workers running as another user can connect.
//
// A Server is safe for concurrent use; build one with New, its zero value
// is not usable.
package preload
