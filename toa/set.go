package toa

import (
	"fmt"
	"strconv"
	"strings"
)

// maxOptLen is the longest a TCP option can be: the whole option space.
const maxOptLen = 40

// Set is the collection of enabled dialects, each with its layout. The zero
// Set, and a nil *Set, enable nothing.
type Set struct {
	layout [256][maxOptLen + 1]Layout
}

// emptySet stands in for a nil *Set.
var emptySet Set

// DefaultSet returns a Set with the built-in dialects that are on by default.
func DefaultSet() *Set {
	s := new(Set)
	for _, in := range Builtin {
		if in.Default {
			s.layout[in.Dialect.Kind][in.Dialect.Len] = in.Layout
		}
	}
	return s
}

// standardKinds are TCP option kinds in everyday use whose lengths overlap
// the TOA layouts' or that the option walk itself interprets; none may be
// declared as a TOA.
var standardKinds = map[uint8]string{
	0:  "EOL",
	1:  "NOP",
	2:  "MSS",
	3:  "window scale",
	4:  "SACK permitted",
	5:  "SACK",
	8:  "timestamps",
	19: "TCP MD5 signature",
	29: "TCP-AO",
	30: "MPTCP",
	34: "TCP Fast Open",
}

func checkKind(kind uint8) error {
	if name, ok := standardKinds[kind]; ok {
		return fmt.Errorf("kind %d is %s, not a TOA; use the kind your proxy sends", kind, name)
	}
	return nil
}

// Enable turns on dialect d with layout l. The layout's length must match
// the dialect's, and d's kind must not be a standard TCP option (MSS, SACK,
// timestamps, MPTCP, Fast Open...).
func (s *Set) Enable(d Dialect, l Layout) error {
	if l == LayoutNone || l.Len() != d.Len {
		return fmt.Errorf("TOA dialect %v: layout %v has length %d", d, l, l.Len())
	}
	if err := checkKind(d.Kind); err != nil {
		return fmt.Errorf("TOA dialect %v: %w", d, err)
	}
	s.layout[d.Kind][d.Len] = l
	return nil
}

// Disable turns off dialect d.
func (s *Set) Disable(d Dialect) {
	if d.Len <= maxOptLen {
		s.layout[d.Kind][d.Len] = LayoutNone
	}
}

// Layout returns d's layout, or LayoutNone when d is not enabled.
func (s *Set) Layout(d Dialect) Layout {
	if s == nil || d.Len > maxOptLen {
		return LayoutNone
	}
	return s.layout[d.Kind][d.Len]
}

// Dialects returns the enabled dialects ordered by kind, then length.
func (s *Set) Dialects() []Dialect {
	if s == nil {
		return nil
	}
	var ds []Dialect
	for k := range s.layout {
		for l, lay := range s.layout[k] {
			if lay != LayoutNone {
				ds = append(ds, Dialect{uint8(k), uint8(l)})
			}
		}
	}
	return ds
}

// Kinds returns the distinct option kinds of the enabled dialects, ascending.
func (s *Set) Kinds() []uint8 {
	var ks []uint8
	for _, d := range s.Dialects() {
		if len(ks) == 0 || ks[len(ks)-1] != d.Kind {
			ks = append(ks, d.Kind)
		}
	}
	return ks
}

// String returns the set in the form ParseSet accepts: ParseSet(s.String())
// enables exactly the dialects s enables.
func (s *Set) String() string {
	ds := s.Dialects()
	if len(ds) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(ds))
	for _, d := range ds {
		lay := s.Layout(d)
		if BuiltinLayout(d) == lay {
			parts = append(parts, d.String())
		} else {
			parts = append(parts, strconv.Itoa(int(d.Kind))+"="+lay.String())
		}
	}
	return strings.Join(parts, ",")
}

// ParseSet parses an operator's dialect list: comma-separated items, each
//
//	default | all | none   start from the default, every built-in, or nothing
//	200/8 or +200/8        enable a built-in dialect
//	-253/20                disable a dialect
//	240=port+ipv4          enable kind 240 with a standard layout (port+ipv4,
//	                       port+ipv6, version+ipv4, version+ipv6 or
//	                       port+ipv4+dest), for a proxy that sends another
//	                       kind; +240=port+ipv4 and -240=port+ipv4 work too
//
// A list whose first item enables something without a sign (200/8,
// 240=port+ipv4) starts from nothing, so it says exactly what is on; one
// that starts with + or - edits the default. The empty string is "default".
// Later items override earlier ones.
func ParseSet(spec string) (*Set, error) {
	items := strings.Split(spec, ",")
	s := DefaultSet()
	if first := strings.TrimSpace(items[0]); first != "" && first[0] >= '0' && first[0] <= '9' {
		s = new(Set)
	}
	for _, raw := range items {
		item := strings.TrimSpace(raw)
		switch strings.ToLower(item) {
		case "":
			continue
		case "default":
			*s = *DefaultSet()
			continue
		case "all":
			for _, in := range Builtin {
				s.layout[in.Dialect.Kind][in.Dialect.Len] = in.Layout
			}
			continue
		case "none":
			*s = Set{}
			continue
		}
		op, body := byte('+'), item
		if item[0] == '+' || item[0] == '-' {
			op, body = item[0], item[1:]
		}
		d, l, err := parseItem(body)
		if err != nil {
			return nil, fmt.Errorf("TOA dialect %q: %w", item, err)
		}
		if op == '-' {
			s.Disable(d)
			continue
		}
		s.layout[d.Kind][d.Len] = l
	}
	return s, nil
}

// parseItem parses "kind/len" (a built-in dialect) or "kind=layout".
func parseItem(item string) (Dialect, Layout, error) {
	kind, layout, custom := strings.Cut(item, "=")
	if !custom {
		d, err := parseDialect(item)
		if err != nil {
			return Dialect{}, LayoutNone, err
		}
		l := BuiltinLayout(d)
		if l == LayoutNone {
			return Dialect{}, LayoutNone, fmt.Errorf("not a built-in dialect (built in: %s); declare another kind as KIND=LAYOUT, for example %d=port+ipv4",
				builtinNames(), d.Kind)
		}
		return d, l, nil
	}
	k, err := strconv.ParseUint(strings.TrimSpace(kind), 10, 8)
	if err != nil {
		return Dialect{}, LayoutNone, fmt.Errorf("kind must be 0-255")
	}
	if err := checkKind(uint8(k)); err != nil {
		return Dialect{}, LayoutNone, err
	}
	l, err := ParseLayout(strings.TrimSpace(layout))
	if err != nil {
		return Dialect{}, LayoutNone, err
	}
	return Dialect{uint8(k), l.Len()}, l, nil
}

func builtinNames() string {
	names := make([]string, len(Builtin))
	for i, in := range Builtin {
		names[i] = in.Dialect.String()
	}
	return strings.Join(names, " ")
}
