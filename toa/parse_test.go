package toa_test

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/toad-project/toad/toa"
)

var (
	addr4 = netip.MustParseAddr("203.0.113.7")
	addr6 = netip.MustParseAddr("2001:db8:1::7")
	// The client's address and port as they appear on the wire.
	wire4    = []byte{203, 0, 113, 7}
	wire6    = []byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7}
	port4    = []byte{0xC8, 0x22} // 51234
	port6    = []byte{0x13, 0x88} // 5000
	mapped   = []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 7}
	optMSS   = []byte{2, 4, 0x05, 0xb4}
	optSACKP = []byte{4, 2}
	optWS    = []byte{3, 3, 7}
	optTS    = []byte{8, 10, 0, 0, 0, 1, 0, 0, 0, 2}
)

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// One option of each built-in dialect, byte by byte.
var (
	opt200V4  = cat([]byte{200, 8}, port4, wire4)
	opt201V6  = cat([]byte{201, 20}, port6, wire6)
	opt253V6  = cat([]byte{253, 20}, port6, wire6)
	opt253V4  = cat([]byte{253, 8}, port4, wire4)
	opt254V4  = cat([]byte{254, 8}, port4, wire4)
	opt254TTG = cat([]byte{254, 16}, port4, wire4, []byte{0, 0, 0x1f, 0x90, 192, 0, 2, 20})
	opt254V6  = cat([]byte{254, 20}, port6, wire6)
	opt28V4   = cat([]byte{28, 7, 1}, wire4)
	opt28V6   = cat([]byte{28, 19, 1}, wire6)
)

var cmpAddr = cmpopts.EquateComparable(netip.Addr{})

// optFO8 is a 254/8 TOA for 1.2.3.4 port 63881 (0xF989), or a Fast Open
// cookie of 4 bytes in its experimental form: the same bytes.
var (
	optFO8     = []byte{254, 8, 0xF9, 0x89, 1, 2, 3, 4}
	found63881 = toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 254, Len: 8}, Addr: netip.AddrFrom4([4]byte{1, 2, 3, 4}), Port: 63881, HasPort: true}, Count: 1}
)

type parseCase struct {
	name string
	set  string // ParseSet spec
	opts []byte
	seg  toa.Segment
	want toa.Found
	err  error
}

var parseCases = []parseCase{
	// Every dialect on its own.
	{name: "200/8", opts: opt200V4,
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 200, Len: 8}, Addr: addr4, Port: 51234, HasPort: true}, Count: 1}},
	{name: "201/20", opts: opt201V6,
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 201, Len: 20}, Addr: addr6, Port: 5000, HasPort: true}, Count: 1}},
	{name: "253/20", opts: opt253V6,
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 253, Len: 20}, Addr: addr6, Port: 5000, HasPort: true}, Count: 1}},
	{name: "253/8 is off by default", opts: opt253V4, want: toa.Found{}},
	{name: "253/8 enabled", set: "+253/8", opts: opt253V4,
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 253, Len: 8}, Addr: addr4, Port: 51234, HasPort: true}, Count: 1}},
	{name: "254/8", opts: opt254V4,
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 254, Len: 8}, Addr: addr4, Port: 51234, HasPort: true}, Count: 1}},
	{name: "254/16 client is the first six bytes", opts: opt254TTG,
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 254, Len: 16}, Addr: addr4, Port: 51234, HasPort: true}, Count: 1}},
	{name: "254/20", opts: opt254V6,
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 254, Len: 20}, Addr: addr6, Port: 5000, HasPort: true}, Count: 1}},
	{name: "28/7 has no port", opts: opt28V4,
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 28, Len: 7}, Addr: addr4}, Count: 1}},
	{name: "28/19 has no port", opts: opt28V6,
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 28, Len: 19}, Addr: addr6}, Count: 1}},
	{name: "every dialect in a SYN", opts: cat(opt200V4, opt254V6), seg: toa.SYN,
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 200, Len: 8}, Addr: addr4, Port: 51234, HasPort: true}, Count: 2}},

	// Family from the length: an IPv4-mapped address in a 16-byte layout
	// stays IPv6.
	{name: "254/20 carrying an IPv4-mapped address", opts: cat([]byte{254, 20}, port4, mapped),
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 254, Len: 20}, Addr: netip.AddrFrom16([16]byte(mapped)), Port: 51234, HasPort: true}, Count: 1}},

	// Experiments sharing kind 254.
	{name: "Fast Open cookie 254/8 in a SYN with data", seg: toa.SYN | toa.Data,
		opts: cat(optMSS, optFO8), want: toa.Found{}},
	{name: "Fast Open cookie 254/8 in a SYN-ACK", seg: toa.SYN | toa.ACK,
		opts: cat(optMSS, optFO8), want: toa.Found{}},
	{name: "same bytes in a non-SYN are a TOA for port 63881", seg: toa.ACK | toa.Data,
		opts: cat(optMSS, optFO8), want: found63881},
	{name: "same bytes in a SYN without data are a TOA for port 63881", seg: toa.SYN,
		opts: cat(optMSS, optFO8), want: found63881},
	{name: "254/8 for port 63881 in a SYN with data, beside a Fast Open cookie of kind 34", seg: toa.SYN | toa.Data,
		opts: cat(optFO8, optMSS, []byte{34, 10, 1, 2, 3, 4, 5, 6, 7, 8}), want: found63881},
	{name: "254/8 for port 63881 in a SYN with data, before an experimental Fast Open cookie", seg: toa.SYN | toa.Data,
		opts: cat(optFO8, optMSS, []byte{254, 12, 0xF9, 0x89, 1, 2, 3, 4, 5, 6, 7, 8}), want: found63881},
	{name: "254/8 for port 63881 in a SYN with data, beside a Fast Open cookie request", seg: toa.SYN | toa.Data,
		opts: cat(optFO8, []byte{254, 4, 0xF9, 0x89}), want: found63881},
	{name: "two look-alikes in a SYN with data: the first is the TOA", seg: toa.SYN | toa.Data,
		opts: cat(optFO8, []byte{254, 8, 0xF9, 0x89, 5, 6, 7, 8}), want: found63881},
	{name: "a look-alike after a TOA in a SYN with data, beside kind 34, counts second", seg: toa.SYN | toa.Data,
		opts: cat(opt200V4, optFO8, []byte{34, 2}),
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 200, Len: 8}, Addr: addr4, Port: 51234, HasPort: true}, Count: 2}},
	{name: "two Fast Open options in a SYN-ACK are both cookies", seg: toa.SYN | toa.ACK,
		opts: cat(optFO8, []byte{34, 2}), want: toa.Found{}},
	{name: "Fast Open cookie 254/16 in a SYN with data", seg: toa.SYN | toa.Data,
		opts: cat([]byte{254, 16, 0xF9, 0x89}, make([]byte, 12)), want: toa.Found{}},
	{name: "Fast Open cookie 254/20 in a SYN with data", seg: toa.SYN | toa.Data,
		opts: cat([]byte{254, 20, 0xF9, 0x89}, make([]byte, 16)), want: toa.Found{}},
	{name: "Fast Open cookie before a real TOA in a SYN with data", seg: toa.SYN | toa.Data,
		opts: cat(optFO8, opt200V4),
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 200, Len: 8}, Addr: addr4, Port: 51234, HasPort: true}, Count: 1}},
	{name: "SMC-R in a SYN next to a TOA", seg: toa.SYN,
		opts: cat([]byte{254, 6, 0xE2, 0xD4, 0xC3, 0xD9}, opt254V4),
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 254, Len: 8}, Addr: addr4, Port: 51234, HasPort: true}, Count: 1}},
	{name: "AccECN 254/7 is not a version+ipv4 TOA", set: "default,254=version+ipv4",
		opts: []byte{254, 7, 0xAC, 0xCE, 0, 0, 1}, want: toa.Found{}},
	{name: "AccECN 254/7 with ExID 0xACCF", set: "default,254=version+ipv4",
		opts: []byte{254, 7, 0xAC, 0xCF, 0, 0, 1}, want: toa.Found{}},
	{name: "254/7 with another first byte is a version+ipv4 TOA", set: "default,254=version+ipv4",
		opts: cat([]byte{254, 7, 1}, wire4),
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 254, Len: 7}, Addr: addr4}, Count: 1}},
	{name: "254/8 TOA for port 0xACCE is not AccECN (wrong length)",
		opts: cat([]byte{254, 8, 0xAC, 0xCE}, wire4),
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 254, Len: 8}, Addr: addr4, Port: 0xACCE, HasPort: true}, Count: 1}},

	// Kind 28 is also User Timeout, at length 4.
	{name: "User Timeout 28/4 is not a TOA", opts: []byte{28, 4, 0x80, 0x3c}, want: toa.Found{}},
	{name: "User Timeout next to a 28/7", opts: cat([]byte{28, 4, 0x80, 0x3c}, opt28V4),
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 28, Len: 7}, Addr: addr4}, Count: 1}},

	// Position.
	{name: "TOA first (LVS, DPVS)", opts: cat(opt254V4, optMSS, optSACKP, optTS, []byte{1}, optWS),
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 254, Len: 8}, Addr: addr4, Port: 51234, HasPort: true}, Count: 1}},
	{name: "TOA last (jupiter)", opts: cat([]byte{1, 1}, optTS, opt200V4),
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 200, Len: 8}, Addr: addr4, Port: 51234, HasPort: true}, Count: 1}},
	{name: "TOA in the middle", opts: cat(optMSS, opt201V6, optSACKP, optWS),
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 201, Len: 20}, Addr: addr6, Port: 5000, HasPort: true}, Count: 1}},
	{name: "metadata option after the TOA (vtoa 250/8)", opts: cat(opt254V4, []byte{250, 8, 0x1f, 0x90, 192, 0, 2, 20}),
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 254, Len: 8}, Addr: addr4, Port: 51234, HasPort: true}, Count: 1}},
	{name: "no options", opts: nil, want: toa.Found{}},
	{name: "options without a TOA", opts: cat(optMSS, optSACKP, optTS, []byte{1}, optWS), seg: toa.SYN, want: toa.Found{}},

	// Two TOAs: the first wins, both are counted.
	{name: "two TOAs", opts: cat(opt254V4, cat([]byte{200, 8, 0, 80}, []byte{198, 51, 100, 99})),
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 254, Len: 8}, Addr: addr4, Port: 51234, HasPort: true}, Count: 2}},
	{name: "two TOAs of one dialect", opts: cat(opt28V6, []byte{28, 19, 1}, mapped),
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 28, Len: 19}, Addr: addr6}, Count: 2}},
	{name: "count saturates at 255", opts: bytes.Repeat(opt200V4, 300),
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 200, Len: 8}, Addr: addr4, Port: 51234, HasPort: true}, Count: 255}},

	// The walk.
	{name: "EOL ends the walk", opts: cat(optMSS, []byte{0}, opt200V4), want: toa.Found{}},
	{name: "bytes after EOL are not parsed", opts: cat(opt200V4, []byte{0, 200, 0, 5}),
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 200, Len: 8}, Addr: addr4, Port: 51234, HasPort: true}, Count: 1}},
	{name: "NOPs are skipped", opts: cat([]byte{1, 1, 1}, opt254V6, []byte{1}),
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 254, Len: 20}, Addr: addr6, Port: 5000, HasPort: true}, Count: 1}},
	{name: "length 0", opts: cat(opt200V4, []byte{200, 0}), err: toa.ErrMalformed},
	{name: "length 1", opts: []byte{2, 1, 1, 1}, err: toa.ErrMalformed},
	{name: "length past the end", opts: cat(opt200V4, []byte{8, 10, 0, 0}), err: toa.ErrMalformed},
	{name: "TOA cut by the end", opts: opt254V6[:19], err: toa.ErrMalformed},
	{name: "kind without length at the end", opts: cat(opt200V4, []byte{2}), err: toa.ErrMalformed},

	// Dialects by configuration.
	{name: "custom kind 240=port+ipv4", set: "default,240=port+ipv4", opts: cat([]byte{240, 8}, port4, wire4),
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 240, Len: 8}, Addr: addr4, Port: 51234, HasPort: true}, Count: 1}},
	{name: "custom kind 240 alone", set: "240=port+ipv4", opts: cat(opt200V4, []byte{240, 8}, port4, wire4),
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 240, Len: 8}, Addr: addr4, Port: 51234, HasPort: true}, Count: 1}},
	{name: "custom kind 241=version+ipv6", set: "+241=version+ipv6", opts: cat([]byte{241, 19, 1}, wire6),
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 241, Len: 19}, Addr: addr6}, Count: 1}},
	{name: "kind 240 unknown by default", opts: cat([]byte{240, 8}, port4, wire4), want: toa.Found{}},
	{name: "disabled dialect", set: "-200/8", opts: cat(opt200V4, opt254V4),
		want: toa.Found{First: toa.Client{Dialect: toa.Dialect{Kind: 254, Len: 8}, Addr: addr4, Port: 51234, HasPort: true}, Count: 1}},
	{name: "empty set", set: "none", opts: cat(opt200V4, opt254V4), want: toa.Found{}},
	{name: "empty set still rejects a malformed list", set: "none", opts: []byte{200, 1}, err: toa.ErrMalformed},
}

func mustSet(t testing.TB, spec string) *toa.Set {
	t.Helper()
	s, err := toa.ParseSet(spec)
	if err != nil {
		t.Fatalf("ParseSet(%q): %v", spec, err)
	}
	return s
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mustSet(t, tc.set).Parse(tc.opts, tc.seg)
			if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
				t.Fatalf("Parse(% x) error = %v, want %v", tc.opts, err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got, cmpAddr); diff != "" {
				t.Errorf("Parse(% x) mismatch (-want +got):\n%s", tc.opts, diff)
			}
		})
	}
}

func TestParseNilSet(t *testing.T) {
	var s *toa.Set
	got, err := s.Parse(cat(opt200V4, optMSS), 0)
	if err != nil || got != (toa.Found{}) {
		t.Errorf("nil Set: Parse = %+v, %v, want no TOA and no error", got, err)
	}
	if _, err := s.Parse([]byte{200, 9}, 0); !errors.Is(err, toa.ErrMalformed) {
		t.Errorf("nil Set: Parse of a malformed list: error = %v, want ErrMalformed", err)
	}
	if l := s.Layout(toa.Kind200V4); l != toa.LayoutNone {
		t.Errorf("nil Set: Layout(200/8) = %v, want none", l)
	}
	if _, ok := s.Option(200, opt200V4[2:], 0); ok {
		t.Errorf("nil Set: Option(200/8) found a TOA, want none")
	}
}

func TestOption(t *testing.T) {
	s := toa.DefaultSet()
	for _, tc := range []struct {
		name string
		kind uint8
		data []byte
		seg  toa.Segment
		want toa.Client
		ok   bool
	}{
		{"254/20", 254, opt254V6[2:], 0,
			toa.Client{Dialect: toa.Dialect{Kind: 254, Len: 20}, Addr: addr6, Port: 5000, HasPort: true}, true},
		{"28/7", 28, opt28V4[2:], toa.SYN, toa.Client{Dialect: toa.Dialect{Kind: 28, Len: 7}, Addr: addr4}, true},
		{"Fast Open in a SYN with data", 254, []byte{0xF9, 0x89, 1, 2, 3, 4}, toa.SYN | toa.Data, toa.Client{}, false},
		{"Fast Open in a SYN-ACK", 254, []byte{0xF9, 0x89, 1, 2, 3, 4}, toa.SYN | toa.ACK, toa.Client{}, false},
		{"a TOA for port 63881 in a SYN without data", 254, []byte{0xF9, 0x89, 1, 2, 3, 4}, toa.SYN,
			toa.Client{Dialect: toa.Dialect{Kind: 254, Len: 8}, Addr: netip.AddrFrom4([4]byte{1, 2, 3, 4}), Port: 63881, HasPort: true}, true},
		{"MSS", 2, []byte{5, 0xb4}, toa.SYN, toa.Client{}, false},
		{"no data", 254, nil, 0, toa.Client{}, false},
		{"longer than the option space", 254, make([]byte, 39), 0, toa.Client{}, false},
		{"much longer", 200, make([]byte, 300), 0, toa.Client{}, false},
	} {
		got, ok := s.Option(tc.kind, tc.data, tc.seg)
		if ok != tc.ok || !cmp.Equal(got, tc.want, cmpAddr) {
			t.Errorf("%s: Option(%d, % x, %v) = %v, %v; want %v, %v", tc.name, tc.kind, tc.data, tc.seg, got, ok, tc.want, tc.ok)
		}
	}
}

func TestClientString(t *testing.T) {
	for _, tc := range []struct {
		c    toa.Client
		want string
	}{
		{toa.Client{}, ""},
		{toa.Client{Dialect: toa.Kind200V4, Addr: addr4, Port: 51234, HasPort: true}, "203.0.113.7:51234"},
		{toa.Client{Dialect: toa.Kind254V6, Addr: addr6, Port: 5000, HasPort: true}, "[2001:db8:1::7]:5000"},
		{toa.Client{Dialect: toa.Kind28V4, Addr: addr4}, "203.0.113.7"},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.c, got, tc.want)
		}
	}
}

func TestParseAllocs(t *testing.T) {
	s := mustSet(t, "all,240=port+ipv4")
	lists := [][]byte{
		cat(opt254V4, optMSS, optSACKP, optTS, []byte{1}, optWS),
		cat(optTS, opt254V6),
		cat(opt28V6, []byte{0}),
		cat(optMSS, []byte{254, 8, 0xF9, 0x89, 1, 2, 3, 4}),
		[]byte{200, 1},
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, opts := range lists {
			s.Parse(opts, toa.SYN|toa.Data)
			s.Parse(opts, 0)
		}
	})
	if allocs != 0 {
		t.Errorf("Parse allocates %v times per run, want 0", allocs)
	}
}

// TestScan checks Scan against Parse on every case, writing into a Client
// that holds an earlier TOA.
func TestScan(t *testing.T) {
	for _, tc := range parseCases {
		s := mustSet(t, tc.set)
		first := toa.Client{Dialect: toa.Kind200V4, Addr: addr4, Port: 1, HasPort: true}
		n, err := s.Scan(tc.opts, tc.seg, &first)
		if (err != nil) != (tc.err != nil) {
			t.Errorf("%s: Scan error = %v, want %v", tc.name, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		if got := (toa.Found{First: first, Count: n}); !cmp.Equal(got, tc.want, cmpAddr) {
			t.Errorf("%s: Scan = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
