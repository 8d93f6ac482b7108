// Package capture feeds decoded TCP segments to a Sink, live from the
// network or from a capture file.
//
// Open captures live on Linux: a cooked (SOCK_DGRAM) AF_PACKET socket per
// reader (package packet), so every interface type (Ethernet, veth, VLAN,
// loopback, tun) delivers bare IP packets; a TPACKET_V2 ring, whose
// reader the kernel wakes for each packet and which sleeps, with no
// timeout, while none comes; and a classic BPF program, built from the
// enabled TOA dialects, that keeps everything but TOA carriers and SYN,
// FIN and RST segments in the kernel (see Program). Only packets the host
// receives count: on loopback each packet passes twice, and what the host
// sends never carries a TOA. Elsewhere Open returns an error wrapping
// errors.ErrUnsupported.
//
// Sync tells a lookup when the sink has seen every packet the host
// received before the lookup was made: the sockets count the packets the
// kernel gave them, the readers those they handed over, and Sync waits
// for the second to reach the first, read when it was called.
//
// Replay reads pcap and pcapng files, stamping each record with its
// capture time, so a Sink whose clock follows the records behaves as it
// did on the wire. ReplayFiles reads several files as one capture, in
// capture-time order whatever order they are named in, merging the
// records of files that overlap; Seams reports where they leave a gap or
// overlap. Incoming keeps, of a capture that holds both directions, what
// the server received: what a live capture sees.
//
// Correctness never depends on the kernel filter: whatever reaches user
// space is decoded and rejected there like anything else.
//
// A Capture is safe for concurrent use; its zero value is not usable (use
// Open). Sinks given to Open must be safe for concurrent use when
// Config.Readers is above 1.
package capture
