package decode_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/toa"
)

var update = flag.Bool("update", false, "rewrite the generated seed corpus in testdata/fuzz")

func corpusName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(s))
}

// decodeSeeds are the seed inputs of FuzzDecode: the frames of TestDecode,
// of the benchmark, and random ones.
func decodeSeeds() map[string][]byte {
	seeds := make(map[string][]byte)
	for _, tc := range decodeCases() {
		seeds[corpusName(tc.name)] = craft.CorpusFile(uint16(tc.link), tc.frame)
	}
	for i, f := range benchFrames()[:40] {
		seeds[fmt.Sprintf("bench-%02d", i)] = craft.CorpusFile(uint16(decode.LinkEthernet), f)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 40 {
		link, frame := randomFrame(rng)
		seeds[fmt.Sprintf("random-%02d", i)] = craft.CorpusFile(uint16(link), frame)
	}
	return seeds
}

// TestFuzzCorpus checks that the committed seed corpus is what the seeds
// above generate; go test ./decode -run TestFuzzCorpus -update rewrites it.
func TestFuzzCorpus(t *testing.T) {
	if err := craft.SyncCorpus(filepath.Join("testdata", "fuzz", "FuzzDecode"), decodeSeeds(), *update); err != nil {
		t.Errorf("%v\nrun: go test ./decode -run TestFuzzCorpus -update", err)
	}
}

func FuzzDecode(f *testing.F) {
	set, err := toa.ParseSet(diffSpec)
	if err != nil {
		f.Fatal(err)
	}
	d := decode.New(set)
	g := newGopacketDecoder()
	f.Fuzz(func(t *testing.T, link uint16, frame []byte) {
		l := decode.LinkType(link)
		// Start from a filled record: a rejected frame must clear it.
		r := decode.Record{Peer: proxy4, Local: server4, TOA: toa200, TOACount: 1}
		reason := d.Decode(l, frame, ts, &r)
		if int(reason) >= decode.NumReasons {
			t.Fatalf("Decode = %v, not a Reason", reason)
		}
		if reason != decode.OK {
			if r != (decode.Record{}) {
				t.Fatalf("Decode = %v and left a record: %+v", reason, r)
			}
		} else {
			if !r.Peer.IsValid() || !r.Local.IsValid() || r.Peer.Addr().Is4() != r.Local.Addr().Is4() || r.Time != ts {
				t.Fatalf("Decode = ok with an incomplete record: %+v", r)
			}
			if (r.TOACount > 0) != !r.TOA.IsZero() {
				t.Fatalf("TOACount %d with TOA %+v", r.TOACount, r.TOA)
			}
			if !r.TOA.IsZero() {
				lay := set.Layout(r.TOA.Dialect)
				if lay == toa.LayoutNone || r.TOA.Addr.Is4() == lay.IPv6() || r.TOA.HasPort != lay.HasPort() {
					t.Fatalf("TOA %+v does not fit its dialect's layout %v", r.TOA, lay)
				}
			}
		}
		var again decode.Record
		if reason2 := d.Decode(l, frame, ts, &again); reason2 != reason || again != r {
			t.Fatalf("decoding twice: %v %+v, then %v %+v", reason, r, reason2, again)
		}
		// Wherever gopacket decodes the frame, the two agree.
		var st diffStats
		differ(t, g, d, l, frame, &st)
	})
}
