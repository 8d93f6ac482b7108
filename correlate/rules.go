package correlate

import (
	"fmt"
	"net/netip"

	"github.com/toad-project/toad/decode"
)

// The rules of this file are the ones the Table applies to every segment,
// exported so that other followers of connections (the lifetime tracker
// of toad replay) decide the same way: which peers are believed, and when
// a SYN on a known 4-tuple starts a new connection.

// Trust is a set of trusted proxy ranges. Its zero value trusts every
// peer.
type Trust struct {
	prefixes []netip.Prefix
}

// NewTrust returns the Trust of ranges, which must be valid prefixes; an
// error starts with the invalid one's index, "[2] ...", for the caller to
// name the list. IPv4-mapped prefixes are stored as IPv4 ones and every
// prefix masked, so that membership is one comparison per range.
func NewTrust(ranges []netip.Prefix) (Trust, error) {
	var t Trust
	for i, p := range ranges {
		if !p.IsValid() {
			return Trust{}, fmt.Errorf("[%d] %v: want a CIDR such as 192.0.2.0/24", i, p)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		t.prefixes = append(t.prefixes, p.Masked())
	}
	return t, nil
}

// All reports whether every peer is trusted: no ranges were given.
func (t Trust) All() bool { return len(t.prefixes) == 0 }

// Trusts reports whether a TOA from a peer at a is believed.
func (t Trust) Trusts(a netip.Addr) bool {
	if len(t.prefixes) == 0 {
		return true
	}
	a = a.Unmap()
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ISN is what is known of a connection's client initial sequence number,
// by which a SYN on its 4-tuple is told to be a retransmission or a new
// connection.
type ISN struct {
	Seq uint32
	// Known is false when nothing is known: the connection was first seen
	// by a segment that tells nothing of it (a SYN-ACK).
	Known bool
	// Inferred is set when Seq was inferred from a later segment (its Seq
	// minus one: the handshake's ACK and first data segment carry ISN+1)
	// rather than read from the SYN itself.
	Inferred bool
}

// ISNOf returns what the segment by which a connection is first known
// tells of its initial sequence number: a SYN's own, or one inferred from
// any other segment but a SYN-ACK.
func ISNOf(r *decode.Record) ISN {
	switch {
	case r.Flags&(decode.SYN|decode.ACK) == decode.SYN:
		return ISN{Seq: r.Seq, Known: true}
	case r.Flags&decode.SYN == 0:
		return ISN{Seq: r.Seq - 1, Known: true, Inferred: true}
	}
	return ISN{}
}

// synWindow is how far below an inferred initial sequence number a SYN
// may be and still be taken for the same connection's: the inference is
// exact when the TOA came with the handshake's ACK, and errs by the data
// sent before the first segment the capture saw.
const synWindow = 1 << 16

// StartsNew reports whether a SYN (without ACK) with sequence number seq
// starts a new connection on the 4-tuple of a connection whose initial
// sequence number is isn, closing saying that connection has begun
// closing. A closing connection, or one whose ISN is unknown or another,
// gives way to a new one; an inferred ISN matches any SYN up to 64 KiB
// below it. When the SYN is the same connection's, StartsNew also returns
// the ISN it confirms (exact from then on).
func (isn ISN) StartsNew(seq uint32, closing bool) (bool, ISN) {
	switch {
	case closing, !isn.Known:
		return true, isn
	case isn.Inferred:
		if isn.Seq-seq >= synWindow {
			return true, isn
		}
		return false, ISN{Seq: seq, Known: true}
	}
	return isn.Seq != seq, isn
}
