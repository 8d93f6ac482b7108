package toa

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// maxOptLen is the longest a TCP option can be: the whole option space.
const maxOptLen = 40

// Set is the collection of enabled dialects, each with its layout.
type Set struct {
	layout [256][maxOptLen + 1]Layout
}

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

// Enable turns on dialect d with layout l. The layout's length must match
// the dialect's.
func (s *Set) Enable(d Dialect, l Layout) error {
	if l == LayoutNone || l.Len() != d.Len {
		return fmt.Errorf("TOA dialect %v: layout %v has length %d", d, l, l.Len())
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
	if d.Len > maxOptLen {
		return LayoutNone
	}
	return s.layout[d.Kind][d.Len]
}

// Dialects returns the enabled dialects ordered by kind, then length.
func (s *Set) Dialects() []Dialect {
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

// String returns the set in the form ParseSet accepts.
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
//	240=port+ipv4          enable kind 240 with a standard layout
//	                       (port+ipv4, port+ipv6, version+ipv4, version+ipv6)
//
// A list that starts with a plain dialect starts from nothing; one that
// starts with + or - starts from the default. The empty string is "default".
func ParseSet(spec string) (*Set, error) {
	items := strings.Split(spec, ",")
	s := DefaultSet()
	if first := strings.TrimSpace(items[0]); first != "" && first[0] >= '0' && first[0] <= '9' {
		s = new(Set)
	}
	for _, raw := range items {
		item := strings.TrimSpace(raw)
		switch strings.ToLower(item) {
		case "", "default":
			if item != "" {
				*s = *DefaultSet()
			}
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
		if kind, layout, ok := strings.Cut(item, "="); ok {
			k, err := strconv.ParseUint(kind, 10, 8)
			if err != nil {
				return nil, fmt.Errorf("TOA dialect %q: kind must be 0-255", item)
			}
			if k <= 1 {
				return nil, fmt.Errorf("TOA dialect %q: kinds 0 and 1 are EOL and NOP", item)
			}
			l, err := ParseLayout(layout)
			if err != nil || l == LayoutPortIPv4Dest {
				return nil, fmt.Errorf("TOA dialect %q: layout must be port+ipv4, port+ipv6, version+ipv4 or version+ipv6", item)
			}
			s.layout[k][l.Len()] = l
			continue
		}
		op := byte('+')
		if item[0] == '+' || item[0] == '-' {
			op, item = item[0], item[1:]
		}
		d, err := ParseDialect(item)
		if err != nil {
			return nil, err
		}
		if op == '-' {
			s.Disable(d)
			continue
		}
		l := BuiltinLayout(d)
		if l == LayoutNone {
			return nil, fmt.Errorf("TOA dialect %v is not built in (known: %s); declare a new kind as KIND=LAYOUT, for example %d=port+ipv4",
				d, builtinNames(), d.Kind)
		}
		s.layout[d.Kind][d.Len] = l
	}
	return s, nil
}

func builtinNames() string {
	names := make([]string, len(Builtin))
	for i, in := range Builtin {
		names[i] = in.Dialect.String()
	}
	return strings.Join(slices.Compact(names), " ")
}
