package toa

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Layout is the byte layout of a TOA option's payload (the bytes after kind
// and length).
type Layout uint8

// Layouts known on the wire.
const (
	LayoutNone         Layout = iota // not a TOA
	LayoutPortIPv4                   // port(2) ipv4(4); option length 8
	LayoutPortIPv6                   // port(2) ipv6(16); option length 20
	LayoutVersionIPv4                // version(1) ipv4(4), no port; option length 7
	LayoutVersionIPv6                // version(1) ipv6(16), no port; option length 19
	LayoutPortIPv4Dest               // port(2) ipv4(4) pad(2) dport(2) dipv4(4); option length 16
)

var layoutNames = [...]string{
	LayoutNone:         "none",
	LayoutPortIPv4:     "port+ipv4",
	LayoutPortIPv6:     "port+ipv6",
	LayoutVersionIPv4:  "version+ipv4",
	LayoutVersionIPv6:  "version+ipv6",
	LayoutPortIPv4Dest: "port+ipv4+dest",
}

var layoutLens = [...]uint8{
	LayoutPortIPv4:     8,
	LayoutPortIPv6:     20,
	LayoutVersionIPv4:  7,
	LayoutVersionIPv6:  19,
	LayoutPortIPv4Dest: 16,
}

// Len is the option's total length, kind and length bytes included.
func (l Layout) Len() uint8 {
	if int(l) >= len(layoutLens) {
		return 0
	}
	return layoutLens[l]
}

// HasPort reports whether the layout carries the client's port.
func (l Layout) HasPort() bool {
	return l == LayoutPortIPv4 || l == LayoutPortIPv6 || l == LayoutPortIPv4Dest
}

// IPv6 reports whether the layout carries an IPv6 client address.
func (l Layout) IPv6() bool { return l == LayoutPortIPv6 || l == LayoutVersionIPv6 }

func (l Layout) String() string {
	if int(l) >= len(layoutNames) {
		return "layout(" + strconv.Itoa(int(l)) + ")"
	}
	return layoutNames[l]
}

// ParseLayout parses a layout name as printed by Layout.String.
func ParseLayout(s string) (Layout, error) {
	for l, name := range layoutNames {
		if l != int(LayoutNone) && strings.EqualFold(s, name) {
			return Layout(l), nil
		}
	}
	return LayoutNone, fmt.Errorf("unknown TOA layout %q (want port+ipv4, port+ipv6, version+ipv4, version+ipv6 or port+ipv4+dest)", s)
}

// Dialect identifies a TOA by its option kind and total length. The zero
// value means "no TOA".
type Dialect struct {
	Kind uint8
	Len  uint8
}

// The dialects seen on the wire; see Builtin for who sends each.
var (
	Kind200V4  = Dialect{200, 8}
	Kind201V6  = Dialect{201, 20}
	Kind253V6  = Dialect{253, 20}
	Kind253V4  = Dialect{253, 8}
	Kind254V4  = Dialect{254, 8}
	Kind254TTG = Dialect{254, 16}
	Kind254V6  = Dialect{254, 20}
	Kind28V4   = Dialect{28, 7}
	Kind28V6   = Dialect{28, 19}
)

// IsZero reports whether d is the zero Dialect.
func (d Dialect) IsZero() bool { return d == Dialect{} }

// String returns "kind/len", the form operators use in flags.
func (d Dialect) String() string {
	var b [7]byte
	return string(d.appendText(b[:0]))
}

func (d Dialect) appendText(b []byte) []byte {
	b = strconv.AppendUint(b, uint64(d.Kind), 10)
	b = append(b, '/')
	return strconv.AppendUint(b, uint64(d.Len), 10)
}

// MarshalText implements encoding.TextMarshaler.
func (d Dialect) MarshalText() ([]byte, error) { return d.appendText(nil), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Dialect) UnmarshalText(b []byte) error {
	v, err := ParseDialect(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ParseDialect parses "kind/len", for example "254/20".
func ParseDialect(s string) (Dialect, error) {
	d, err := parseDialect(s)
	if err != nil {
		return Dialect{}, fmt.Errorf("TOA dialect %q: %w", s, err)
	}
	return d, nil
}

func parseDialect(s string) (Dialect, error) {
	k, l, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Dialect{}, errors.New("want kind/length, for example 200/8")
	}
	kind, err := strconv.ParseUint(strings.TrimSpace(k), 10, 8)
	if err != nil {
		return Dialect{}, errors.New("kind must be 0-255")
	}
	length, err := strconv.ParseUint(strings.TrimSpace(l), 10, 8)
	if err != nil || length < 2 || length > maxOptLen {
		return Dialect{}, errors.New("length must be 2-40")
	}
	return Dialect{uint8(kind), uint8(length)}, nil
}

// Info describes a built-in dialect.
type Info struct {
	Dialect Dialect
	Layout  Layout
	// Default dialects are enabled unless the operator says otherwise.
	Default bool
	Senders string
}

// Builtin lists every TOA dialect toad knows, in the order of the reference
// table. 253/8 is off by default: no sender's source code confirms it.
var Builtin = []Info{
	{Kind200V4, LayoutPortIPv4, true, "LVS FULLNAT, Tencent Cloud CLB/Anti-DDoS/GAAP/EdgeOne, UCloud, eCloud, JD jupiter, F5"},
	{Kind201V6, LayoutPortIPv6, true, "JD jupiter (IPv6)"},
	{Kind253V6, LayoutPortIPv6, true, "Alibaba LVS, Alibaba SLB vtoa, Huawei ELB, Tencent NAT64 CLB"},
	{Kind253V4, LayoutPortIPv4, false, "Akamai (unverified)"},
	{Kind254V4, LayoutPortIPv4, true, "Alibaba LVS, iQIYI DPVS, Huawei ELB and Anti-DDoS, Alibaba SLB, ByteDance"},
	{Kind254TTG, LayoutPortIPv4Dest, true, "ByteDance TTGW"},
	{Kind254V6, LayoutPortIPv6, true, "DPVS FNAT66/FNAT64, Alibaba vtoa, ByteDance, Alibaba CDN eBPF, F5 (IPv6)"},
	{Kind28V4, LayoutVersionIPv4, true, "Alibaba Cloud CDN / DCDN"},
	{Kind28V6, LayoutVersionIPv6, true, "Alibaba Cloud CDN (eBPF)"},
}

// BuiltinLayout returns the layout of a built-in dialect, or LayoutNone.
func BuiltinLayout(d Dialect) Layout {
	for _, in := range Builtin {
		if in.Dialect == d {
			return in.Layout
		}
	}
	return LayoutNone
}
