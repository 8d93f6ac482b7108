// Package kfilter measures, live, how much of a traffic mix toad's
// in-kernel filter lets through to user space. It builds two network
// namespaces joined by a veth pair, starts a capture (capture.Open) on the
// server's end, and sends the packets of a generated capture across: those
// towards the server from the proxies' end, the server's own from the
// server's end, as on a real link. The capture's kernel counters say how
// many packets reached the ring; the connection table behind it says
// whether every mapping still arrived.
//
// It needs root (CAP_NET_ADMIN for the namespaces, CAP_NET_RAW for the
// sockets) and Linux; elsewhere, and without root, Run returns results
// saying why they were skipped. Run is to be called from one goroutine at
// a time.
package kfilter
