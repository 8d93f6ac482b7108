package decode

import (
	"net/netip"
	"strings"
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

// String returns the flags as tcpdump prints them: "S", "S.", "F.", "R".
func (f Flags) String() string {
	var b strings.Builder
	for _, c := range []struct {
		f Flags
		s byte
	}{{SYN, 'S'}, {FIN, 'F'}, {RST, 'R'}, {PSH, 'P'}, {URG, 'U'}, {ECE, 'E'}, {CWR, 'W'}, {ACK, '.'}} {
		if f&c.f != 0 {
			b.WriteByte(c.s)
		}
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
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
	// may exceed what was captured.
	PayloadLen uint32
	// TOA is the first TOA in the segment; its zero value means none.
	TOA toa.Client
	// TOACount is how many TOAs the segment carried; more than one means
	// one of them may be forged.
	TOACount uint8
}

// HasTOA reports whether the segment carried a TOA.
func (r *Record) HasTOA() bool { return r.TOACount > 0 }
