package decode

import (
	"net/netip"
	"time"

	"github.com/toad-project/toad/toa"
)

// Flags are the TCP header flags, bit for bit as in byte 13 of the header.
type Flags uint8

// TCP flags.
const (
	FIN Flags = 1 << iota
	SYN
	RST
	PSH
	ACK
	URG
	ECE
	CWR
)

// Has reports whether every flag in g is set.
func (f Flags) Has(g Flags) bool { return f&g == g }

// flagLetters are the flags in the order tcpdump prints them.
var flagLetters = [...]struct {
	f Flags
	c byte
}{{FIN, 'F'}, {SYN, 'S'}, {RST, 'R'}, {PSH, 'P'}, {ACK, '.'}, {URG, 'U'}, {ECE, 'E'}, {CWR, 'W'}}

// String returns the flags as tcpdump prints them: "S", "S.", "P.", "F.",
// "R", or "none".
func (f Flags) String() string {
	if f == 0 {
		return "none"
	}
	var b [len(flagLetters)]byte
	n := 0
	for _, l := range flagLetters {
		if f&l.f != 0 {
			b[n] = l.c
			n++
		}
	}
	return string(b[:n])
}

// Record is one decoded TCP segment, seen from the server's side: Peer is the
// packet's source (the proxy, as the application's socket reports its peer)
// and Local its destination (the application's own address).
type Record struct {
	Time  time.Time
	Peer  netip.AddrPort
	Local netip.AddrPort
	Flags Flags
	Seq   uint32
	Ack   uint32
	// PayloadLen is the TCP payload length the IP header announces, which
	// may exceed what was captured. In the first fragment of a fragmented
	// packet it counts only that fragment's part.
	PayloadLen uint32
	// TOA is the first TOA in the segment (for LVS and DPVS, the proxy's);
	// its zero value means none.
	TOA toa.Client
	// TOACount is how many TOAs the segment carried (saturating at 255);
	// more than one means one of them may be forged. It is zero exactly
	// when TOA is.
	TOACount uint8
}

// HasTOA reports whether the segment carried a TOA.
func (r *Record) HasTOA() bool { return r.TOACount > 0 }
