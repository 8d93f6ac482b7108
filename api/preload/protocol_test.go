package preload_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/toad-project/toad/api/preload"
	"github.com/toad-project/toad/toa"
)

var cmpNet = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{}, netip.Prefix{})

// roundTrip puts v in a frame with id, reports an error unless parse
// gives v back, and returns the frame.
func roundTrip[T any, P interface {
	*T
	Put(*preload.Frame, uint32)
}](t *testing.T, v T, id uint32, parse func(*preload.Frame) (T, error)) *preload.Frame {
	t.Helper()
	var f preload.Frame
	P(&v).Put(&f, id)
	got, err := parse(&f)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(v, got, cmpNet); d != "" {
		t.Errorf("%T (-want +got):\n%s", v, d)
	}
	return &f
}

func TestHeader(t *testing.T) {
	var f preload.Frame
	h := preload.Hello{PID: 4242}
	h.Put(&f, 7)
	got, err := preload.ParseHeader(&f, preload.FrameSize)
	if err != nil {
		t.Fatal(err)
	}
	if want := (preload.Header{Version: preload.Version, Type: preload.TypeHello, ID: 7}); got != want {
		t.Errorf("header %+v, want %+v", got, want)
	}
	if got := preload.ParseHello(&f); got != h {
		t.Errorf("hello %+v, want %+v", got, h)
	}
	if string(f[:2]) != "TD" || f[2] != 1 {
		t.Errorf("frame starts % x, want magic TD and version 1", f[:3])
	}

	for _, tc := range []struct {
		name string
		n    int
		edit func(*preload.Frame)
		want error
	}{
		{"short", preload.FrameSize - 1, nil, preload.ErrFrame},
		{"long", preload.FrameSize + 1, nil, preload.ErrFrame},
		{"magic", preload.FrameSize, func(f *preload.Frame) { f[1] = 'X' }, preload.ErrFrame},
		{"version", preload.FrameSize, func(f *preload.Frame) { f[2] = 2 }, preload.ErrVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := f
			if tc.edit != nil {
				tc.edit(&g)
			}
			h, err := preload.ParseHeader(&g, tc.n)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ParseHeader: %v, want %v", err, tc.want)
			}
			if tc.want == preload.ErrVersion && (h.Version != 2 || h.ID != 7) {
				t.Errorf("header of another version %+v, want version 2 and id 7 still", h)
			}
		})
	}
}

func TestWelcomeRoundTrip(t *testing.T) {
	w := preload.Welcome{Status: preload.StatusOK, Flags: preload.FlagAllTrusted, Ranges: 300, Generation: 0xdeadbeef, MaxWait: 5 * time.Second}
	var f preload.Frame
	w.Put(&f, 1)
	if got := preload.ParseWelcome(&f); got != w {
		t.Errorf("welcome %+v, want %+v", got, w)
	}
}

func TestRangesRoundTrip(t *testing.T) {
	r := preload.Ranges{First: 12, Prefixes: []netip.Prefix{
		netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("2001:db8:100::/64"),
		netip.MustParsePrefix("0.0.0.0/0"),
		netip.MustParsePrefix("::/0"),
		netip.MustParsePrefix("192.0.2.1/32"),
		netip.MustParsePrefix("2001:db8::1/128"),
	}}
	f := roundTrip(t, r, 3, preload.ParseRanges)
	// IPv4 ranges travel IPv4-mapped, with 96 more bits.
	if f[12+10] != 0xff || f[12+16] != 96+24 {
		t.Errorf("first range encoded % x, want ::ffff:198.51.100.0 and 120 bits", f[12:30])
	}
	f[10] = 7
	if _, err := preload.ParseRanges(f); !errors.Is(err, preload.ErrBadRequest) {
		t.Errorf("7 ranges in a frame: %v, want ErrBadRequest", err)
	}
}

func TestLookupRoundTrip(t *testing.T) {
	l := preload.Lookup{
		Peer:   netip.MustParseAddrPort("198.51.100.10:40001"),
		Local:  netip.MustParseAddrPort("[2001:db8::20]:8080"),
		Wait:   1500 * time.Microsecond,
		Report: preload.Report{1, 2, 3, 4, 5, 0, 0, 0},
	}
	f := roundTrip(t, l, 9, preload.ParseLookup)

	for _, bad := range []preload.Lookup{
		{Peer: netip.MustParseAddrPort("0.0.0.0:1"), Local: l.Local},
		{Peer: l.Peer, Local: netip.MustParseAddrPort("[::]:80")},
		{Peer: netip.MustParseAddrPort("198.51.100.10:0"), Local: l.Local},
	} {
		bad.Report = preload.Report{preload.ReportOK: 6}
		bad.Put(f, 1)
		got, err := preload.ParseLookup(f)
		if !errors.Is(err, preload.ErrBadRequest) {
			t.Errorf("lookup of %v > %v: %v, want ErrBadRequest", bad.Peer, bad.Local, err)
		}
		if got.Report != bad.Report {
			t.Errorf("report of a bad lookup %v, want %v kept", got.Report, bad.Report)
		}
	}
}

func TestAnswerRoundTrip(t *testing.T) {
	for _, a := range []preload.Answer{
		{Status: preload.StatusOK, Generation: 5, Client: toa.Client{Dialect: toa.Kind254V4, Addr: netip.MustParseAddr("203.0.113.7"), Port: 51234, HasPort: true}},
		{Status: preload.StatusOK, Generation: 5, Client: toa.Client{Dialect: toa.Kind253V6, Addr: netip.MustParseAddr("2001:db8::7"), Port: 1, HasPort: true}},
		{Status: preload.StatusOK, Client: toa.Client{Dialect: toa.Kind28V4, Addr: netip.MustParseAddr("192.0.2.9")}},
		{Status: preload.StatusNotFound, Generation: 5},
		{Status: preload.StatusNotServing},
	} {
		roundTrip(t, a, 11, preload.ParseAnswer)
	}
	// An IPv4-mapped client in a 16-byte TOA is answered as IPv4.
	a := preload.Answer{Status: preload.StatusOK, Client: toa.Client{Dialect: toa.Kind254V6, Addr: netip.MustParseAddr("::ffff:203.0.113.7"), Port: 2, HasPort: true}}
	var f preload.Frame
	a.Put(&f, 1)
	got, _ := preload.ParseAnswer(&f)
	if want := netip.MustParseAddr("203.0.113.7"); got.Client.Addr != want || f[9] != 4 {
		t.Errorf("mapped client answered as %v, family %d; want %v, family 4", got.Client.Addr, f[9], want)
	}
}

func TestGeneration(t *testing.T) {
	a := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	b := []netip.Prefix{netip.MustParsePrefix("198.51.101.0/24")}
	if preload.Generation(0, a) != preload.Generation(0, a) {
		t.Error("the generation of one set of ranges changes")
	}
	if preload.Generation(0, a) == preload.Generation(0, b) {
		t.Error("two sets of ranges have one generation")
	}
	if preload.Generation(0, nil) == preload.Generation(preload.FlagAllTrusted, nil) {
		t.Error("trusting every peer has the generation of trusting none")
	}
}
