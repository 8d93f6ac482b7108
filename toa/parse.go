package toa

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// TCP option kinds with a meaning to the option walk itself.
const (
	optEOL = 0
	optNOP = 1
)

// ErrMalformed reports an option list that cannot be walked: an option whose
// length is below 2 or runs past the end of the header.
var ErrMalformed = errors.New("malformed TCP options")

// Client is the real client address carried by one TOA option.
type Client struct {
	Dialect Dialect
	// Addr is the address exactly as the option carries it: IPv4 for the
	// 4-byte layouts, IPv6 for the 16-byte ones, whatever the IP version of
	// the packet. An IPv4-mapped address in a 16-byte layout stays IPv6
	// (Addr.Is4In6 reports it; Addr.Unmap converts it).
	Addr netip.Addr
	// Port is the client's port; zero when HasPort is false (kind 28 carries
	// no port).
	Port    uint16
	HasPort bool
}

// IsZero reports whether c is the zero Client (no TOA).
func (c Client) IsZero() bool { return c.Dialect.IsZero() }

// String returns "ip:port", or the address alone when the dialect carries no
// port.
func (c Client) String() string {
	if c.IsZero() {
		return ""
	}
	if !c.HasPort {
		return c.Addr.String()
	}
	return netip.AddrPortFrom(c.Addr, c.Port).String()
}

// Segment is what Parse needs to know of the segment whose options it
// walks: kinds 253 and 254 are shared with experiments (RFC 6994) that each
// ride in some segments only, and a TOA is told from them by where it is.
type Segment uint8

// The flags of a Segment.
const (
	SYN  Segment = 1 << iota // the SYN flag: a SYN, or a SYN-ACK with ACK
	ACK                      // the ACK flag
	Data                     // the segment carries data
)

// SegmentOf returns the Segment of a TCP segment with these flags and
// payload length.
func SegmentOf(syn, ack bool, payload int) Segment {
	var s Segment
	if syn {
		s |= SYN
	}
	if ack {
		s |= ACK
	}
	if payload > 0 {
		s |= Data
	}
	return s
}

// Found is what Parse found in one option list.
type Found struct {
	// First is the first TOA in the list: for LVS and DPVS, the proxy's.
	First Client
	// Count is how many TOAs the list held, saturating at 255. More than
	// one means a client may have forged one; First is still the one to
	// believe.
	Count uint8
}

// Parse walks a TCP option list (the bytes between the fixed 20-byte header
// and the data) of a segment seg and returns the TOAs it holds. EOL ends
// the list, NOP is skipped, and an option whose length is below 2 or runs
// past the end makes Parse return the zero Found and ErrMalformed, its only
// error. A nil Set finds no TOA but still checks the list. Parse never
// allocates.
//
// Kinds 253 and 254 are also experiments' (RFC 6994), told from TOAs by
// their identifier and by the segments they ride in. One stays ambiguous:
// Fast Open's experimental cookie (identifier 0xF989, 4 to 16 bytes) has
// the length of a 254/8 or 254/20 TOA whose client port is 63881. Parse
// reads it as a cookie in a SYN-ACK, and in a SYN that carries data (the
// data the cookie lets through), unless the list holds another Fast Open
// option (kind 34, or a second one of the experimental form): a client
// sends one, so the first that can be a TOA is one. Everywhere else (a SYN
// without data, any segment without SYN) it is a TOA.
func (s *Set) Parse(opts []byte, seg Segment) (Found, error) {
	var f Found
	n, err := s.Scan(opts, seg, &f.First)
	if err != nil {
		return Found{}, err
	}
	f.Count = n
	return f, nil
}

// Scan is Parse for callers that keep the first TOA in a struct of their
// own: it sets *first to the first TOA, or to the zero Client when there is
// none, and returns how many TOAs the list held (saturating at 255). On
// error, *first is unspecified.
func (s *Set) Scan(opts []byte, seg Segment, first *Client) (count uint8, err error) {
	if s == nil {
		s = &emptySet
	}
	*first = Client{}
	// A Fast Open look-alike in a SYN with data is set aside, and read as
	// a TOA if the list turns out to hold another Fast Open option.
	var (
		synData    = seg&(SYN|ACK|Data) == SYN|Data
		aside      []byte // the first look-alike's option
		asideFirst bool   // no TOA came before it
		fastOpens  int    // Fast Open options of either form
	)
	for i := 0; i < len(opts); {
		kind := opts[i]
		switch kind {
		case optEOL:
			i = len(opts)
			continue
		case optNOP:
			i++
			continue
		}
		if i+1 >= len(opts) {
			return 0, ErrMalformed
		}
		n := int(opts[i+1])
		if n < 2 || n > len(opts)-i {
			return 0, ErrMalformed
		}
		data := opts[i+2 : i+n]
		i += n
		if synData && (kind == optFastOpen || isFastOpen(kind, data)) {
			fastOpens++
		}
		if n > maxOptLen || s.layout[kind][n] == LayoutNone {
			continue // the common case: not a TOA dialect
		}
		c, ok := s.Option(kind, data, seg)
		if !ok {
			if aside == nil && synData && isFastOpen(kind, data) {
				aside, asideFirst = opts[i-n:i], count == 0
			}
			continue
		}
		if count == 0 {
			*first = c
		}
		if count < 255 {
			count++
		}
	}
	if aside != nil && fastOpens > 1 {
		if asideFirst {
			*first = decodeClient(aside[0], aside[2:], s.layout[aside[0]][len(aside)])
		}
		if count < 255 {
			count++
		}
	}
	return count, nil
}

// Option decodes one TCP option of a segment seg, given its kind and its
// data (the bytes after the kind and length bytes, so the option's length
// is len(data)+2). It reports false when the option is not a TOA of an
// enabled dialect, or is a known experiment that shares the TOA kinds in
// that segment (see Parse; alone, Option cannot see the other options that
// make a Fast Open look-alike a TOA in a SYN with data). It is for callers
// that walk the option list themselves; it never allocates.
func (s *Set) Option(kind uint8, data []byte, seg Segment) (Client, bool) {
	if s == nil || len(data) > maxOptLen-2 {
		return Client{}, false
	}
	l := s.layout[kind][len(data)+2]
	if l == LayoutNone || isExperiment(kind, data, seg) {
		return Client{}, false
	}
	return decodeClient(kind, data, l), true
}

// decodeClient reads the client from the data of an option whose length
// matches l.
func decodeClient(kind uint8, p []byte, l Layout) Client {
	c := Client{Dialect: Dialect{kind, l.Len()}, HasPort: l.HasPort()}
	switch l {
	case LayoutPortIPv4, LayoutPortIPv4Dest:
		c.Port = binary.BigEndian.Uint16(p)
		c.Addr = netip.AddrFrom4([4]byte(p[2:6]))
	case LayoutPortIPv6:
		c.Port = binary.BigEndian.Uint16(p)
		c.Addr = netip.AddrFrom16([16]byte(p[2:18]))
	case LayoutVersionIPv4:
		c.Addr = netip.AddrFrom4([4]byte(p[1:5]))
	case LayoutVersionIPv6:
		c.Addr = netip.AddrFrom16([16]byte(p[1:17]))
	}
	return c
}

// Experiment identifiers (RFC 6994) that share kinds 253 and 254 with TOAs.
const (
	exidFastOpen = 0xF989     // RFC 7413 experimental form, SYN and SYN-ACK only
	exidAccECN0  = 0xACCE     // AccECN, any segment, lengths 4+3n
	exidAccECN1  = 0xACCF     //
	exidSMCR     = 0xE2D4C3D9 // SMC-R, SYN and SYN-ACK only, length 6
)

// optFastOpen is the kind of Fast Open's standard form (RFC 7413).
const optFastOpen = 34

// isFastOpen reports whether a kind 253/254 option, given its data, has the
// shape of Fast Open's experimental form: its identifier, and no cookie
// (a request) or one of 4 to 16 bytes.
func isFastOpen(kind uint8, data []byte) bool {
	if kind != 253 && kind != 254 || len(data) < 2 || binary.BigEndian.Uint16(data) != exidFastOpen {
		return false
	}
	n := len(data) + 2
	return n == 4 || n >= 4+4 && n <= 4+16
}

// isExperiment reports whether a kind 253/254 option, given its data, is a
// known RFC 6994 experiment rather than a TOA in a segment seg. Each
// experiment is recognised only where it can occur (its segments and
// lengths), so that a TOA whose client port happens to equal an experiment
// id is not thrown away: a 254/8 with port 63881 (0xF989) is a Fast Open
// cookie in a SYN-ACK or a SYN with data, and a TOA anywhere else.
func isExperiment(kind uint8, data []byte, seg Segment) bool {
	if kind != 253 && kind != 254 || len(data) < 2 {
		return false
	}
	exid := binary.BigEndian.Uint16(data)
	n := len(data) + 2
	switch {
	case exid == exidFastOpen:
		// A cookie rides a SYN-ACK, or a SYN with the data it lets through.
		return seg&SYN != 0 && seg&(ACK|Data) != 0 && isFastOpen(kind, data)
	case exid == exidAccECN0 || exid == exidAccECN1:
		return (n-4)%3 == 0 && n <= 4+3*3 // zero to three 3-byte counters
	case n == 6:
		return seg&SYN != 0 && binary.BigEndian.Uint32(data) == exidSMCR
	}
	return false
}
