package toa_test

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/toa"
)

var update = flag.Bool("update", false, "rewrite the generated seed corpus in testdata/fuzz")

// fuzzSpec enables every layout under some kind, including 254/7, where
// AccECN lives, so that the fuzzer reaches every branch.
const fuzzSpec = "all,240=port+ipv4,241=port+ipv6,242=version+ipv4,243=version+ipv6,254=version+ipv4"

// optionSeeds are the seed inputs of FuzzParseOptions, by name.
func optionSeeds() map[string][]byte {
	seeds := make(map[string][]byte)
	for _, tc := range parseCases {
		if len(tc.opts) <= 40 {
			seeds[tc.name] = craft.CorpusFile(tc.opts, uint8(tc.seg))
		}
	}
	for _, in := range toa.Builtin {
		c := netip.MustParseAddrPort("198.51.100.7:40000")
		if in.Layout.IPv6() {
			c = netip.MustParseAddrPort("[2001:db8::7]:40000")
		}
		t := craft.TOA(in.Dialect, c)
		seeds["linux syn with "+in.Dialect.String()] = craft.CorpusFile(craft.Opts(t, craft.MSS(1460), craft.SACKPerm, craft.Timestamps(1, 0), craft.NOP, craft.WScale(7)), uint8(toa.SYN))
		seeds["ack with "+in.Dialect.String()+" last"] = craft.CorpusFile(craft.Opts(craft.NOP, craft.NOP, craft.Timestamps(1, 2), t), uint8(toa.ACK))
	}
	seeds["fast open cookie syn"] = craft.CorpusFile(craft.Opts(craft.MSS(1460), craft.FastOpen([]byte{1, 2, 3, 4, 5, 6, 7, 8})), uint8(toa.SYN|toa.Data))
	return seeds
}

// setSeeds are the seed inputs of FuzzParseSet.
var setSeeds = []string{"", "default", "all", "none", "+253/8", "-254/16,-28/7", "200/8,254/20", fuzzSpec, "240=port+ipv4+dest", "200/9", "30=port+ipv4"}

func corpusName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(s))
}

// TestFuzzCorpus checks that the committed seed corpus is what the seeds
// above generate; go test ./toa -run TestFuzzCorpus -update rewrites it.
func TestFuzzCorpus(t *testing.T) {
	opts := make(map[string][]byte)
	for name, content := range optionSeeds() {
		opts[corpusName(name)] = content
	}
	sets := make(map[string][]byte)
	for i, spec := range setSeeds {
		sets[fmt.Sprint(i)] = craft.CorpusFile(spec)
	}
	for target, files := range map[string]map[string][]byte{"FuzzParseOptions": opts, "FuzzParseSet": sets} {
		if err := craft.SyncCorpus(filepath.Join("testdata", "fuzz", target), files, *update); err != nil {
			t.Errorf("%v\nrun: go test ./toa -run TestFuzzCorpus -update", err)
		}
	}
}

func FuzzParseOptions(f *testing.F) {
	s, err := toa.ParseSet(fuzzSpec)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, opts []byte, segBits uint8) {
		seg := toa.Segment(segBits) & (toa.SYN | toa.ACK | toa.Data)
		got, err := s.Parse(opts, seg)
		if err != nil {
			if !errors.Is(err, toa.ErrMalformed) || got != (toa.Found{}) {
				t.Fatalf("Parse(% x) = %+v, %v; an error must be ErrMalformed with nothing found", opts, got, err)
			}
			return
		}
		if (got.Count > 0) != !got.First.IsZero() {
			t.Fatalf("Parse(% x) = %+v: Count and First disagree", opts, got)
		}
		// An independent walk: every option, handed to Option, finds the
		// same TOAs; but in a SYN with data that holds two Fast Open
		// options or more, the first look-alike that can be a TOA is one.
		fastOpens := 0
		walk(opts, func(kind uint8, data []byte) {
			if kind == 34 || fastOpenShape(kind, data) {
				fastOpens++
			}
		})
		aside := fastOpens < 2
		var want toa.Found
		walk(opts, func(kind uint8, data []byte) {
			c, ok := s.Option(kind, data, seg)
			if !ok && !aside && fastOpenShape(kind, data) {
				c, ok = s.Option(kind, data, seg&^toa.Data)
				aside = ok
			}
			if ok {
				if want.Count == 0 {
					want.First = c
				}
				want.Count = min(want.Count+1, 255)
			}
		})
		if got != want {
			t.Fatalf("Parse(% x) = %+v, option by option finds %+v", opts, got, want)
		}
		if got.Count == 0 {
			return
		}
		// What was found encodes and parses back to itself.
		c := got.First
		l := s.Layout(c.Dialect)
		if l == toa.LayoutNone || l.HasPort() != c.HasPort || c.Addr.Is4() == l.IPv6() || (!c.HasPort && c.Port != 0) {
			t.Fatalf("Parse(% x) found %+v, inconsistent with its layout %v", opts, c, l)
		}
		enc, err := toa.Append(nil, c.Dialect.Kind, l, netip.AddrPortFrom(c.Addr, c.Port))
		if err != nil {
			t.Fatalf("Append(%+v): %v", c, err)
		}
		again, err := s.Parse(enc, seg&^toa.Data) // alone, a look-alike is a TOA only without data
		if err != nil || again != (toa.Found{First: c, Count: 1}) {
			t.Fatalf("Parse(Append(%+v)) = %+v, %v", c, again, err)
		}
	})
}

// walk calls f with the kind and data of every option of a list that
// parses.
func walk(opts []byte, f func(kind uint8, data []byte)) {
	for i := 0; i < len(opts) && opts[i] != 0; {
		if opts[i] == 1 {
			i++
			continue
		}
		n := int(opts[i+1])
		f(opts[i], opts[i+2:i+n])
		i += n
	}
}

// fastOpenShape reports whether an option has the shape of Fast Open's
// experimental form: kind 253 or 254, identifier 0xF989, no cookie or one
// of 4 to 16 bytes.
func fastOpenShape(kind uint8, data []byte) bool {
	n := len(data) - 2
	return (kind == 253 || kind == 254) && n >= 0 && data[0] == 0xF9 && data[1] == 0x89 && (n == 0 || n >= 4 && n <= 16)
}

func FuzzParseSet(f *testing.F) {
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := toa.ParseSet(spec)
		if err != nil {
			if s != nil {
				t.Fatalf("ParseSet(%q) returned a set and an error", spec)
			}
			return
		}
		again, err := toa.ParseSet(s.String())
		if err != nil {
			t.Fatalf("ParseSet(%q).String() = %q does not parse: %v", spec, s.String(), err)
		}
		if *again != *s {
			t.Fatalf("ParseSet(%q).String() = %q parses to %q", spec, s.String(), again.String())
		}
	})
}
