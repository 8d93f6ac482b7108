package fullnat

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/toad-project/toad/toa"
)

// Placement is the set of client-to-origin segments that carry the TOA.
type Placement uint8

// Placements; combine them with |.
const (
	// SYN is the client's SYN (and its retransmissions).
	SYN Placement = 1 << iota
	// ACK is the client's ACK that completes the three-way handshake.
	ACK
	// Data is every client segment with data or a FIN, from the handshake
	// until the origin has sent data.
	Data
)

// Placements of real proxies.
const (
	// LVS is Alibaba LVS FULLNAT and DPVS before v1.9.6.
	LVS = SYN | ACK | Data
	// DPVS is DPVS v1.9.6 and later: no TOA in the SYN.
	DPVS = ACK | Data
)

var placementNames = [...]string{"syn", "ack", "data"}

// String returns the placement as "syn+ack+data", or "none".
func (p Placement) String() string {
	var parts []string
	for i, name := range placementNames {
		if p&(1<<i) != 0 {
			parts = append(parts, name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "+")
}

// ParsePlacement parses a placement as String prints it; "," separates
// parts as well as "+".
func ParsePlacement(s string) (Placement, error) {
	var p Placement
	for part := range strings.FieldsFuncSeq(strings.ToLower(s), func(r rune) bool { return r == '+' || r == ',' }) {
		found := false
		for i, name := range placementNames {
			if part == name {
				p |= 1 << i
				found = true
			}
		}
		if !found && part != "none" {
			return 0, fmt.Errorf("TOA placement %q: want syn, ack and data joined by +, for example ack+data", s)
		}
	}
	return p, nil
}

// Position is where the TOA goes in the option list.
type Position uint8

// Positions.
const (
	// AfterHeader puts the TOA right after the fixed 20-byte TCP header,
	// before the segment's own options, as LVS and DPVS do.
	AfterHeader Position = iota
	// AfterOptions appends the TOA after the segment's own options, as JD
	// jupiter does.
	AfterOptions
)

// String returns "after-header" or "after-options".
func (p Position) String() string {
	switch p {
	case AfterHeader:
		return "after-header"
	case AfterOptions:
		return "after-options"
	}
	return fmt.Sprintf("position(%d)", uint8(p))
}

// ParsePosition parses a position as String prints it, or "first"/"last".
func ParsePosition(s string) (Position, error) {
	switch strings.ToLower(s) {
	case "after-header", "first":
		return AfterHeader, nil
	case "after-options", "last":
		return AfterOptions, nil
	}
	return 0, fmt.Errorf("TOA position %q: want after-header (LVS, DPVS) or after-options (jupiter)", s)
}

// Option is the TOA the proxy inserts for clients of one address family.
// Its zero value inserts nothing.
type Option struct {
	Dialect toa.Dialect
	// Layout is the option's payload layout. Zero means the built-in layout
	// of Dialect; set it for a kind toad does not know.
	Layout toa.Layout
}

// IsZero reports whether o inserts nothing.
func (o Option) IsZero() bool { return o.Dialect.IsZero() }

func (o Option) layout() toa.Layout {
	if o.Layout != toa.LayoutNone {
		return o.Layout
	}
	return toa.BuiltinLayout(o.Dialect)
}

// Defaults for the zero fields of Config.
const (
	DefaultDevice       = "toadproxy0"
	DefaultMTU          = 1500
	DefaultIdleTimeout  = 90 * time.Second
	DefaultCloseTimeout = 7 * time.Second
	DefaultPortMin      = 1024
	DefaultPortMax      = 65535
)

// Config configures a Forwarder. Zero fields take the defaults above.
type Config struct {
	// VIPs are the addresses and ports clients connect to: IPv4, IPv6 or
	// both. At least one.
	VIPs []netip.AddrPort
	// Origin is the server the proxy forwards every connection to.
	Origin netip.AddrPort
	// ProxyAddr4 and ProxyAddr6 are the proxy's origin-side source
	// addresses (LVS calls them local addresses): the peer the origin's
	// accept() sees. The one of Origin's family is required; New routes it
	// to the proxy's device, so it must not be assigned to an interface.
	ProxyAddr4, ProxyAddr6 netip.Addr
	// TOA4 and TOA6 are the TOAs inserted for IPv4 and IPv6 clients. The
	// option's layout must carry the client's family: an IPv6 client behind
	// an IPv4 origin gets a 254/20, as DPVS FNAT64 sends. A zero Option
	// inserts none for that family.
	TOA4, TOA6 Option
	// Placement is which segments carry the TOA; zero inserts none.
	Placement Placement
	// Position is where the TOA goes among the segment's options.
	Position Position

	// PortMin and PortMax bound the proxy ports toward the origin.
	PortMin, PortMax uint16
	// MTU is the largest IP packet the proxy sends, and the device's MTU.
	MTU int
	// IdleTimeout ends a connection that has seen no packet for that long.
	IdleTimeout time.Duration
	// CloseTimeout is how long a connection stays mapped after FINs both
	// ways or a RST, for the last ACKs and retransmissions.
	CloseTimeout time.Duration
	// Device is the name of the TUN device New creates.
	Device string
	// Logger receives start and stop messages; nil discards them.
	Logger *slog.Logger
}

// proxyAddr returns the origin-side source address.
func (c *Config) proxyAddr() netip.Addr {
	if c.Origin.Addr().Is4() {
		return c.ProxyAddr4
	}
	return c.ProxyAddr6
}

// normalize fills in defaults and checks c.
func (c Config) normalize() (Config, error) {
	if c.PortMin == 0 && c.PortMax == 0 {
		c.PortMin, c.PortMax = DefaultPortMin, DefaultPortMax
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.Device == "" {
		c.Device = DefaultDevice
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if len(c.VIPs) == 0 {
		errs = append(errs, errors.New("no VIP: set at least one address:port clients connect to"))
	}
	c.VIPs = append([]netip.AddrPort(nil), c.VIPs...)
	for i, v := range c.VIPs {
		c.VIPs[i] = netip.AddrPortFrom(v.Addr().Unmap(), v.Port())
		if !v.IsValid() || v.Port() == 0 {
			errs = append(errs, fmt.Errorf("VIP %v: want address:port with a non-zero port", v))
		}
	}
	c.Origin = netip.AddrPortFrom(c.Origin.Addr().Unmap(), c.Origin.Port())
	if !c.Origin.IsValid() || c.Origin.Port() == 0 {
		errs = append(errs, fmt.Errorf("origin %v: want address:port with a non-zero port", c.Origin))
	}
	c.ProxyAddr4, c.ProxyAddr6 = c.ProxyAddr4.Unmap(), c.ProxyAddr6.Unmap()
	if c.ProxyAddr4.IsValid() && !c.ProxyAddr4.Is4() {
		errs = append(errs, fmt.Errorf("proxy address %v is not IPv4", c.ProxyAddr4))
	}
	if c.ProxyAddr6.IsValid() && !c.ProxyAddr6.Is6() {
		errs = append(errs, fmt.Errorf("proxy address %v is not IPv6", c.ProxyAddr6))
	}
	if c.Origin.IsValid() && !c.proxyAddr().IsValid() {
		errs = append(errs, fmt.Errorf("origin %v: set the proxy's origin-side address of its family (ProxyAddr4 or ProxyAddr6)", c.Origin))
	}
	for _, o := range []struct {
		opt Option
		v6  bool
		fam string
	}{{c.TOA4, false, "IPv4"}, {c.TOA6, true, "IPv6"}} {
		if o.opt.IsZero() {
			continue
		}
		l := o.opt.layout()
		switch {
		case l == toa.LayoutNone:
			errs = append(errs, fmt.Errorf("TOA %v for %s clients: not a built-in dialect; set its Layout", o.opt.Dialect, o.fam))
		case l.Len() != o.opt.Dialect.Len:
			errs = append(errs, fmt.Errorf("TOA %v for %s clients: layout %v is %d bytes long", o.opt.Dialect, o.fam, l, l.Len()))
		case l.IPv6() != o.v6:
			errs = append(errs, fmt.Errorf("TOA %v for %s clients: layout %v carries the other address family", o.opt.Dialect, o.fam, l))
		case o.opt.Dialect.Kind <= 1:
			errs = append(errs, fmt.Errorf("TOA %v: kinds 0 and 1 are EOL and NOP", o.opt.Dialect))
		}
	}
	if c.Placement&^(SYN|ACK|Data) != 0 {
		errs = append(errs, fmt.Errorf("placement %#x: unknown bits", uint8(c.Placement)))
	}
	if c.Position != AfterHeader && c.Position != AfterOptions {
		errs = append(errs, fmt.Errorf("unknown TOA position %v", c.Position))
	}
	if c.PortMin == 0 || c.PortMin > c.PortMax {
		errs = append(errs, fmt.Errorf("proxy ports %d-%d: want 1 <= min <= max", c.PortMin, c.PortMax))
	}
	if c.MTU < 576 || c.MTU > 65535 {
		errs = append(errs, fmt.Errorf("MTU %d: want 576-65535", c.MTU))
	}
	if c.IdleTimeout < 0 || c.CloseTimeout < 0 {
		errs = append(errs, errors.New("timeouts must not be negative"))
	}
	if len(c.Device) >= 16 {
		errs = append(errs, fmt.Errorf("device name %q: at most 15 bytes", c.Device))
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("fullnat config: %w", err)
	}
	return c, nil
}

// Stats are a Forwarder's counters.
type Stats struct {
	// Conns counts connections opened: client SYNs given a proxy port.
	Conns uint64
	// Active is the number of connections mapped now.
	Active int
	// Packets counts packets forwarded, both ways.
	Packets uint64
	// TOAs counts TOA options inserted.
	TOAs uint64
	// NoRoom counts segments that should have carried a TOA but were
	// forwarded without it: the TCP header would exceed 60 bytes or the
	// packet the MTU, or (AfterOptions) the segment's option list cannot
	// be walked.
	NoRoom uint64
	// NoPort counts client SYNs dropped because every proxy port was in use.
	NoPort uint64
	// Dropped counts packets not forwarded: not to a VIP nor from the
	// origin to a mapped port, not TCP, fragments, malformed, or a write
	// that failed.
	Dropped uint64
}
