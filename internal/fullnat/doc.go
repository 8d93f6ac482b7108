// Package fullnat is a user-space FULLNAT L4 proxy that inserts TOAs: the
// stand-in for a cloud load balancer (LVS, DPVS, Tencent CLB, Alibaba SLB)
// in front of an origin server, for tests and for trying an origin locally.
//
// Clients connect to a VIP. The proxy forwards each connection to the
// origin with its source rewritten to the proxy's own origin-side address
// and a port it allocates, and its destination to the origin; replies are
// mapped back, so the client sees the VIP and the origin's accept() sees
// the proxy. Sequence numbers are left alone (no SYN proxy). Into the
// client's segments it inserts a TOA naming the client's true ip:port, in
// the dialect (Config.TOA4, TOA6), segments (Placement: the SYN, the
// handshake-completing ACK, data until the origin has sent data) and
// option position (Position: right after the fixed header as LVS and DPVS
// do, or after the segment's own options as JD jupiter does) chosen for
// the run, and fixes the data offset, the IP lengths and the checksums.
// An IPv6 client reaches an IPv4 origin (DPVS FNAT64, with a 254/20 TOA)
// and an IPv4 client an IPv6 one.
//
// A segment whose TCP header would pass 60 bytes, or whose packet would
// pass the MTU, goes without its TOA and is counted (Stats.NoRoom), as
// real proxies do. To keep that rare, the MSS option is clamped both ways:
// in the SYN to the origin by the TOA's size (as LVS and DPVS do), and in
// the SYN-ACK to the client as well, since the client sends the segments
// that carry the TOA; both also allow for an IP header that grows between
// families. Connections are tracked for the port mapping and forgotten
// CloseTimeout after FINs both ways or a RST, or after IdleTimeout.
//
// # Mechanism
//
// New creates a TUN device and routes the VIPs and the proxy's
// origin-side address to it; the namespace's kernel routes everything else.
// A client's packet to a VIP is routed into the TUN, the proxy reads it,
// rewrites it and writes it back, and the kernel forwards it to the origin;
// the origin's reply to the proxy address takes the same path back. The
// VIPs and proxy addresses are never assigned to an interface, so the
// kernel holds no socket that could answer them with a RST, and no
// netfilter rule is needed to silence it. The kernel also does the link
// layer (ARP, neighbor discovery), routing, and segmentation of offloaded
// packets before they reach the TUN, so the proxy only ever sees whole IP
// packets. Everything is plain system calls from golang.org/x/sys/unix: no
// cgo, no netlink library. The alternatives cost more: AF_PACKET on two
// interfaces would have to answer ARP and neighbor discovery itself and
// needs nftables or iptables rules to stop the kernel's RSTs (neither is
// on the CI machine); NFQUEUE needs netfilter rules and conntrack as well.
//
// The price is one read and one write system call per packet on a single
// goroutine, the write carrying the kernel's forwarding of the packet. In
// the namespace testbed (BenchmarkConnections) that is a few thousand new
// connections per second, next to the same kernel routing the packets
// without the proxy.
//
// The namespace New runs in must forward IP (net.ipv4.ip_forward=1 and,
// for IPv6, net.ipv6.conf.all.forwarding=1) for clients and origins
// elsewhere. Clients and an origin on the proxy's own host need no
// forwarding: the origin listens on any non-loopback local address.
//
// Not handled: IP fragments (dropped), IPv4 options and IPv6 extension
// headers (removed), ICMP errors for proxied connections (not translated),
// more than one origin.
//
// # Use
//
// A Forwarder's methods are safe for concurrent use. It is made by New,
// which returns it ready to Run; its zero value is not usable. A Config's
// zero fields take the documented defaults.
package fullnat
