package toa_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/toad-project/toad/toa"
)

// defaultDialects is what DefaultSet enables, in the order Dialects returns.
var defaultDialects = []toa.Dialect{
	{Kind: 28, Len: 7}, {Kind: 28, Len: 19},
	{Kind: 200, Len: 8}, {Kind: 201, Len: 20},
	{Kind: 253, Len: 20},
	{Kind: 254, Len: 8}, {Kind: 254, Len: 16}, {Kind: 254, Len: 20},
}

func TestDefaultSet(t *testing.T) {
	s := toa.DefaultSet()
	if diff := cmp.Diff(defaultDialects, s.Dialects()); diff != "" {
		t.Errorf("DefaultSet().Dialects() mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]uint8{28, 200, 201, 253, 254}, s.Kinds()); diff != "" {
		t.Errorf("DefaultSet().Kinds() mismatch (-want +got):\n%s", diff)
	}
	for _, in := range toa.Builtin {
		want := toa.LayoutNone
		if in.Default {
			want = in.Layout
		}
		if got := s.Layout(in.Dialect); got != want {
			t.Errorf("DefaultSet().Layout(%v) = %v, want %v", in.Dialect, got, want)
		}
		if got := toa.BuiltinLayout(in.Dialect); got != in.Layout {
			t.Errorf("BuiltinLayout(%v) = %v, want %v", in.Dialect, got, in.Layout)
		}
		if got := in.Layout.Len(); got != in.Dialect.Len {
			t.Errorf("Builtin %v: layout %v has length %d", in.Dialect, in.Layout, got)
		}
	}
	if got := s.String(); got != "28/7,28/19,200/8,201/20,253/20,254/8,254/16,254/20" {
		t.Errorf("DefaultSet().String() = %q", got)
	}
	var zero toa.Set
	if got := zero.String(); got != "none" {
		t.Errorf("Set{}.String() = %q, want none", got)
	}
}

func TestParseSet(t *testing.T) {
	allDialects := []toa.Dialect{
		{Kind: 28, Len: 7}, {Kind: 28, Len: 19},
		{Kind: 200, Len: 8}, {Kind: 201, Len: 20},
		{Kind: 253, Len: 8}, {Kind: 253, Len: 20},
		{Kind: 254, Len: 8}, {Kind: 254, Len: 16}, {Kind: 254, Len: 20},
	}
	for _, tc := range []struct {
		spec string
		want []toa.Dialect
		// custom lists the dialects with a non-built-in layout.
		custom map[toa.Dialect]toa.Layout
	}{
		{spec: "", want: defaultDialects},
		{spec: "default", want: defaultDialects},
		{spec: " Default ", want: defaultDialects},
		{spec: "all", want: allDialects},
		{spec: "none"},
		{spec: "none,", want: nil},
		{spec: "+253/8", want: allDialects},
		{spec: "200/8", want: []toa.Dialect{toa.Kind200V4}},
		{spec: "200/8, 254/20", want: []toa.Dialect{toa.Kind200V4, toa.Kind254V6}},
		{spec: "-254/16,-28/7,-28/19", want: []toa.Dialect{toa.Kind200V4, toa.Kind201V6, toa.Kind253V6, toa.Kind254V4, toa.Kind254V6}},
		{spec: "200/8,-200/8"},
		{spec: "all,-253/8", want: defaultDialects},
		{spec: "none,default", want: defaultDialects},
		{spec: "200/8,none,254/8", want: []toa.Dialect{toa.Kind254V4}},
		{spec: "240=port+ipv4", want: []toa.Dialect{{Kind: 240, Len: 8}},
			custom: map[toa.Dialect]toa.Layout{{Kind: 240, Len: 8}: toa.LayoutPortIPv4}},
		{spec: "+240=PORT+IPV6", want: []toa.Dialect{
			{Kind: 28, Len: 7}, {Kind: 28, Len: 19},
			{Kind: 200, Len: 8}, {Kind: 201, Len: 20},
			{Kind: 240, Len: 20},
			{Kind: 253, Len: 20},
			{Kind: 254, Len: 8}, {Kind: 254, Len: 16}, {Kind: 254, Len: 20},
		},
			custom: map[toa.Dialect]toa.Layout{{Kind: 240, Len: 20}: toa.LayoutPortIPv6}},
		{spec: "default, 240 = version+ipv4, 241=version+ipv6, 242=port+ipv4+dest",
			want: []toa.Dialect{
				{Kind: 28, Len: 7}, {Kind: 28, Len: 19},
				{Kind: 200, Len: 8}, {Kind: 201, Len: 20},
				{Kind: 240, Len: 7}, {Kind: 241, Len: 19}, {Kind: 242, Len: 16},
				{Kind: 253, Len: 20},
				{Kind: 254, Len: 8}, {Kind: 254, Len: 16}, {Kind: 254, Len: 20},
			},
			custom: map[toa.Dialect]toa.Layout{
				{Kind: 240, Len: 7}: toa.LayoutVersionIPv4, {Kind: 241, Len: 19}: toa.LayoutVersionIPv6, {Kind: 242, Len: 16}: toa.LayoutPortIPv4Dest,
			}},
		{spec: "240=port+ipv4,-240=port+ipv4"},
		{spec: "254=version+ipv4,254/8", want: []toa.Dialect{{Kind: 254, Len: 7}, toa.Kind254V4},
			custom: map[toa.Dialect]toa.Layout{{Kind: 254, Len: 7}: toa.LayoutVersionIPv4}},
	} {
		s, err := toa.ParseSet(tc.spec)
		if err != nil {
			t.Errorf("ParseSet(%q): %v", tc.spec, err)
			continue
		}
		if diff := cmp.Diff(tc.want, s.Dialects()); diff != "" {
			t.Errorf("ParseSet(%q).Dialects() mismatch (-want +got):\n%s", tc.spec, diff)
		}
		for _, d := range s.Dialects() {
			want, ok := tc.custom[d]
			if !ok {
				want = toa.BuiltinLayout(d)
			}
			if got := s.Layout(d); got != want {
				t.Errorf("ParseSet(%q).Layout(%v) = %v, want %v", tc.spec, d, got, want)
			}
		}
		// String is a spec that gives the same set back.
		again, err := toa.ParseSet(s.String())
		if err != nil {
			t.Errorf("ParseSet(%q).String() = %q, which does not parse: %v", tc.spec, s.String(), err)
		} else if *again != *s {
			t.Errorf("ParseSet(%q).String() = %q, which parses to %q", tc.spec, s.String(), again.String())
		}
	}
}

func TestParseSetErrors(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"foo", `TOA dialect "foo": want kind/length, for example 200/8`},
		{"200/8,foo", `TOA dialect "foo": want kind/length, for example 200/8`},
		{"-", `TOA dialect "-": want kind/length, for example 200/8`},
		{"256/8", `TOA dialect "256/8": kind must be 0-255`},
		{"200/41", `TOA dialect "200/41": length must be 2-40`},
		{"200/1", `TOA dialect "200/1": length must be 2-40`},
		{"200/x", `TOA dialect "200/x": length must be 2-40`},
		{"200/9", `TOA dialect "200/9": not a built-in dialect (built in: 200/8 201/20 253/20 253/8 254/8 254/16 254/20 28/7 28/19); declare another kind as KIND=LAYOUT, for example 200=port+ipv4`},
		{"+240/8", `TOA dialect "+240/8": not a built-in dialect (built in: 200/8 201/20 253/20 253/8 254/8 254/16 254/20 28/7 28/19); declare another kind as KIND=LAYOUT, for example 240=port+ipv4`},
		{"240=port+ipv5", `TOA dialect "240=port+ipv5": unknown TOA layout "port+ipv5" (want port+ipv4, port+ipv6, version+ipv4, version+ipv6 or port+ipv4+dest)`},
		{"240=none", `TOA dialect "240=none": unknown TOA layout "none" (want port+ipv4, port+ipv6, version+ipv4, version+ipv6 or port+ipv4+dest)`},
		{"x=port+ipv4", `TOA dialect "x=port+ipv4": kind must be 0-255`},
		{"-1000=port+ipv4", `TOA dialect "-1000=port+ipv4": kind must be 0-255`},
		{"0=port+ipv4", `TOA dialect "0=port+ipv4": kind 0 is EOL, not a TOA; use the kind your proxy sends`},
		{"1=port+ipv4", `TOA dialect "1=port+ipv4": kind 1 is NOP, not a TOA; use the kind your proxy sends`},
		{"30=port+ipv4", `TOA dialect "30=port+ipv4": kind 30 is MPTCP, not a TOA; use the kind your proxy sends`},
		{"+34=port+ipv6", `TOA dialect "+34=port+ipv6": kind 34 is TCP Fast Open, not a TOA; use the kind your proxy sends`},
	} {
		s, err := toa.ParseSet(tc.spec)
		if err == nil {
			t.Errorf("ParseSet(%q) = %v, want error %q", tc.spec, s, tc.want)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("ParseSet(%q) error:\n got %q\nwant %q", tc.spec, err, tc.want)
		}
	}
}

func TestParseDialect(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want toa.Dialect
		err  string
	}{
		{in: "200/8", want: toa.Kind200V4},
		{in: " 254/20 ", want: toa.Kind254V6},
		{in: "28 / 7", want: toa.Kind28V4},
		{in: "0/2", want: toa.Dialect{Kind: 0, Len: 2}},
		{in: "255/40", want: toa.Dialect{Kind: 255, Len: 40}},
		{in: "", err: `TOA dialect "": want kind/length, for example 200/8`},
		{in: "200", err: `TOA dialect "200": want kind/length, for example 200/8`},
		{in: "200:8", err: `TOA dialect "200:8": want kind/length, for example 200/8`},
		{in: "-1/8", err: `TOA dialect "-1/8": kind must be 0-255`},
		{in: "0x c8/8", err: `TOA dialect "0x c8/8": kind must be 0-255`},
		{in: "200/0", err: `TOA dialect "200/0": length must be 2-40`},
		{in: "200/256", err: `TOA dialect "200/256": length must be 2-40`},
		{in: "200/8/1", err: `TOA dialect "200/8/1": length must be 2-40`},
	} {
		got, err := toa.ParseDialect(tc.in)
		switch {
		case tc.err != "" && (err == nil || err.Error() != tc.err):
			t.Errorf("ParseDialect(%q) = %v, %v; want error %q", tc.in, got, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseDialect(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestDialectText(t *testing.T) {
	for _, in := range toa.Builtin {
		b, err := in.Dialect.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != in.Dialect.String() {
			t.Errorf("%v: MarshalText = %q, String = %q", in.Dialect, b, in.Dialect.String())
		}
		var d toa.Dialect
		if err := d.UnmarshalText(b); err != nil || d != in.Dialect {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", b, d, err, in.Dialect)
		}
	}
	if got := (toa.Dialect{Kind: 255, Len: 255}).String(); got != "255/255" {
		t.Errorf("String() = %q, want 255/255", got)
	}
	var d toa.Dialect
	if err := d.UnmarshalText([]byte("nope")); err == nil {
		t.Errorf("UnmarshalText(nope) succeeded: %v", d)
	}
}

func TestParseLayout(t *testing.T) {
	for l := toa.LayoutPortIPv4; l <= toa.LayoutPortIPv4Dest; l++ {
		got, err := toa.ParseLayout(l.String())
		if err != nil || got != l {
			t.Errorf("ParseLayout(%q) = %v, %v; want %v", l.String(), got, err, l)
		}
	}
	if _, err := toa.ParseLayout("none"); err == nil {
		t.Errorf("ParseLayout(none) succeeded, want an error")
	}
	if got := toa.Layout(99).String(); got != "layout(99)" {
		t.Errorf("Layout(99).String() = %q", got)
	}
	if got := toa.Layout(99).Len(); got != 0 {
		t.Errorf("Layout(99).Len() = %d, want 0", got)
	}
}

func TestEnable(t *testing.T) {
	var s toa.Set
	if err := s.Enable(toa.Dialect{Kind: 240, Len: 20}, toa.LayoutPortIPv6); err != nil {
		t.Fatalf("Enable(240/20, port+ipv6): %v", err)
	}
	if got := s.Layout(toa.Dialect{Kind: 240, Len: 20}); got != toa.LayoutPortIPv6 {
		t.Errorf("after Enable, Layout(240/20) = %v", got)
	}
	s.Disable(toa.Dialect{Kind: 240, Len: 20})
	s.Disable(toa.Dialect{Kind: 240, Len: 200}) // out of range: no effect, no panic
	if got := s.Dialects(); len(got) != 0 {
		t.Errorf("after Disable, Dialects() = %v, want none", got)
	}
	for _, tc := range []struct {
		d    toa.Dialect
		l    toa.Layout
		want string
	}{
		{toa.Dialect{Kind: 240, Len: 8}, toa.LayoutPortIPv6, "TOA dialect 240/8: layout port+ipv6 has length 20"},
		{toa.Dialect{Kind: 240, Len: 8}, toa.LayoutNone, "TOA dialect 240/8: layout none has length 0"},
		{toa.Dialect{Kind: 29, Len: 16}, toa.LayoutPortIPv4Dest, "TOA dialect 29/16: kind 29 is TCP-AO, not a TOA; use the kind your proxy sends"},
		{toa.Dialect{Kind: 1, Len: 8}, toa.LayoutPortIPv4, "TOA dialect 1/8: kind 1 is NOP, not a TOA; use the kind your proxy sends"},
	} {
		if err := s.Enable(tc.d, tc.l); err == nil || err.Error() != tc.want {
			t.Errorf("Enable(%v, %v) = %v, want %q", tc.d, tc.l, err, tc.want)
		}
	}
}
