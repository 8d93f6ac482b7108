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
	Addr    netip.Addr
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

// Found is what Parse found in one option list.
type Found struct {
	// First is the first TOA in the list: for LVS and DPVS, the proxy's.
	First Client
	// Count is how many TOAs the list held. More than one means a client
	// may have forged one; First is still the one to believe.
	Count uint8
}

// Parse walks a TCP option list (the bytes between the fixed 20-byte header
// and the data) and returns the TOAs it holds. syn tells whether the segment
// is a SYN, where kind 254 may also be a Fast Open cookie. Parse returns
// ErrMalformed, and nothing else, when the list cannot be walked to its end.
// It never allocates.
func (s *Set) Parse(opts []byte, syn bool) (Found, error) {
	var f Found
	for i := 0; i < len(opts); {
		kind := opts[i]
		switch kind {
		case optEOL:
			return f, nil
		case optNOP:
			i++
			continue
		}
		if i+1 >= len(opts) {
			return Found{}, ErrMalformed
		}
		n := int(opts[i+1])
		if n < 2 || i+n > len(opts) {
			return Found{}, ErrMalformed
		}
		opt := opts[i : i+n]
		i += n
		if n > maxOptLen {
			continue
		}
		l := s.layout[kind][n]
		if l == LayoutNone || isExperiment(opt, syn) {
			continue
		}
		if f.Count == 0 {
			f.First = decodeClient(opt, l)
		}
		if f.Count < 255 {
			f.Count++
		}
	}
	return f, nil
}

// decodeClient reads the client from an option whose length matches l.
func decodeClient(opt []byte, l Layout) Client {
	c := Client{Dialect: Dialect{opt[0], opt[1]}, HasPort: l.HasPort()}
	p := opt[2:]
	switch l {
	case LayoutPortIPv4, LayoutPortIPv4Dest:
		c.Port = binary.BigEndian.Uint16(p)
		c.Addr = netip.AddrFrom4([4]byte(p[2:6]))
	case LayoutPortIPv6:
		c.Port = binary.BigEndian.Uint16(p)
		c.Addr = netip.AddrFrom16([16]byte(p[2:18])).Unmap()
	case LayoutVersionIPv4:
		c.Addr = netip.AddrFrom4([4]byte(p[1:5]))
	case LayoutVersionIPv6:
		c.Addr = netip.AddrFrom16([16]byte(p[1:17])).Unmap()
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

// isExperiment reports whether a kind 253/254 option is a known RFC 6994
// experiment rather than a TOA. Each experiment is recognised only where it
// can occur (its segments and lengths), so that a TOA whose client port
// happens to equal an experiment id is not thrown away: a 254/8 with port
// 63881 (0xF989) is a Fast Open cookie in a SYN, and a TOA anywhere else.
func isExperiment(opt []byte, syn bool) bool {
	if opt[0] != 253 && opt[0] != 254 || len(opt) < 4 {
		return false
	}
	exid := binary.BigEndian.Uint16(opt[2:])
	n := len(opt)
	switch {
	case exid == exidFastOpen:
		return syn && n >= 4+4 && n <= 4+16 // cookie of 4-16 bytes
	case exid == exidAccECN0 || exid == exidAccECN1:
		return (n-4)%3 == 0 && n <= 13
	case n == 6:
		return syn && binary.BigEndian.Uint32(opt[2:]) == exidSMCR
	}
	return false
}
