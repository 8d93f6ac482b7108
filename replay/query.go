package replay

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/toad-project/toad/lifetime"
)

// Endpoint is an address, with or without a port, that a connection's
// peer, local address or client is matched against. Its zero value
// matches anything.
type Endpoint struct {
	Addr netip.Addr
	// Port is matched when HasPort is set; otherwise every port is.
	Port    uint16
	HasPort bool
}

// IsZero reports whether e matches anything.
func (e Endpoint) IsZero() bool { return !e.Addr.IsValid() }

func (e Endpoint) String() string {
	switch {
	case e.IsZero():
		return ""
	case e.HasPort:
		return netip.AddrPortFrom(e.Addr, e.Port).String()
	}
	return e.Addr.String()
}

// ParseEndpoint parses an address with an optional port: 198.51.100.10,
// 198.51.100.10:40001, 2001:db8::1, [2001:db8::1] or [2001:db8::1]:40001.
// IPv4-mapped IPv6 addresses are taken as IPv4; zones are refused.
func ParseEndpoint(s string) (Endpoint, error) {
	var e Endpoint
	if ap, err := netip.ParseAddrPort(s); err == nil {
		e = Endpoint{Addr: ap.Addr(), Port: ap.Port(), HasPort: true}
	} else if a, err := netip.ParseAddr(s); err == nil {
		e = Endpoint{Addr: a}
	} else if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil && a.Is6() && len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		e = Endpoint{Addr: a}
	} else {
		return Endpoint{}, fmt.Errorf("%q is not an address or address:port (want e.g. 198.51.100.10, 198.51.100.10:40001, 2001:db8::1 or [2001:db8::1]:40001)", s)
	}
	if e.Addr.Zone() != "" {
		return Endpoint{}, fmt.Errorf("%q: addresses with a zone are not matched (want e.g. 2001:db8::1 or [2001:db8::1]:40001)", s)
	}
	e.Addr = e.Addr.Unmap()
	return e, nil
}

// matches reports whether address a with port p (when hasPort) is e.
func (e Endpoint) matches(a netip.Addr, p uint16, hasPort bool) bool {
	if e.IsZero() {
		return true
	}
	if a.Unmap() != e.Addr {
		return false
	}
	return !e.HasPort || hasPort && p == e.Port
}

// ParseTime parses an RFC 3339 time, such as 2024-05-01T14:02:00Z or
// 2024-05-01T16:02:00.5+02:00.
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time, such as 2024-05-01T14:02:00Z or 2024-05-01T16:02:00+02:00", s)
	}
	return t.UTC(), nil
}

// Query selects connections. Its zero value selects every connection a
// TOA resolved.
type Query struct {
	// At, when set, selects the connections open at that instant:
	// opened at or before it, and closed at or after it, or never.
	At time.Time
	// Peer, Local and Client select connections by their peer (the
	// proxy), local address (the server) and real client; a zero
	// Endpoint selects any. A connection without a TOA has no client.
	Peer, Local, Client Endpoint
	// All selects connections without a TOA too.
	All bool
}

// Match reports whether q selects c.
func (q *Query) Match(c *lifetime.Conn) bool {
	if !q.All && !c.HasTOA() {
		return false
	}
	if !q.At.IsZero() && (c.Opened.After(q.At) || c.End != lifetime.Open && c.Closed.Before(q.At)) {
		return false
	}
	if !q.Peer.matches(c.Peer.Addr(), c.Peer.Port(), true) || !q.Local.matches(c.Local.Addr(), c.Local.Port(), true) {
		return false
	}
	if !q.Client.IsZero() && (!c.HasTOA() || !q.Client.matches(c.Client.Addr, c.Client.Port, c.Client.HasPort)) {
		return false
	}
	return true
}

// String returns q as toad replay's flags, "" for the zero Query.
func (q *Query) String() string {
	var parts []string
	if !q.At.IsZero() {
		parts = append(parts, "--at "+q.At.Format(time.RFC3339Nano))
	}
	for _, f := range []struct {
		name string
		e    Endpoint
	}{{"peer", q.Peer}, {"local", q.Local}, {"client", q.Client}} {
		if !f.e.IsZero() {
			parts = append(parts, "--"+f.name+" "+f.e.String())
		}
	}
	if q.All {
		parts = append(parts, "--all")
	}
	return strings.Join(parts, " ")
}
