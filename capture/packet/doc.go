// Package packet is a Linux AF_PACKET socket made for capture: a cooked
// (SOCK_DGRAM) socket, so that every link type delivers bare network-layer
// packets, with a TPACKET_V2 receive ring that the kernel fills frame by
// frame and Receive reads in place.
//
// Open returns a socket bound to no protocol, which receives nothing: the
// caller attaches its classic BPF filter (SetBPF) and sets its options
// first, then Bind starts reception, so that no packet ever gets past
// without the filter. A bound socket may join a fanout group.
//
// Receive hands over each packet as soon as the kernel has written it
// (the kernel wakes the reader per frame). Between packets it sleeps in
// poll(2); after 5 ms without one it parks in the runtime's poller, which
// holds no thread and sleeps with no timeout. Close wakes it. Mark and Wait
// let another goroutine learn from the socket itself that every packet the
// kernel put in the ring before a moment has been handed over: the kernel
// counts each packet it gives a frame before it fills the frame
// (PACKET_STATISTICS), and Receive counts those it has handed over.
//
// Errors are *net.OpError values whose Net is "packet". A process without
// CAP_NET_RAW gets one that errors.Is reports as os.ErrPermission.
//
// A Conn is safe for concurrent use, except that only one goroutine may
// call Receive. Its zero value is not usable (use Open). Off Linux, Open
// returns an error wrapping errors.ErrUnsupported.
package packet
