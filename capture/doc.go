// Package capture feeds decoded TCP segments to a Sink, live from the
// network or from a capture file.
//
// Open captures live on Linux: a cooked (SOCK_DGRAM) AF_PACKET socket per
// reader, so every interface type (Ethernet, veth, VLAN, loopback, tun)
// delivers bare IP packets; a TPACKET_V3 ring; and a classic BPF program,
// built from the enabled TOA dialects, that keeps everything but TOA
// carriers and SYN, FIN and RST segments in the kernel (see Program). Only
// packets the host receives count: on loopback each packet passes twice,
// and what the host sends never carries a TOA. Elsewhere Open returns an
// error wrapping errors.ErrUnsupported.
//
// A live capture also keeps a watermark for sinks that are Advancers: the
// time before which every packet the kernel put in its rings has been
// handed to the sink. It follows the kernel time of the packets delivered
// and, on an idle ring, rises every 10ms to BlockTimeout+10ms behind the
// clock, so that a lookup can wait for the capture to catch up with the
// moment it was made.
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
