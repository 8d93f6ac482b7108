package correlate_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
)

func TestTrust(t *testing.T) {
	tr, err := correlate.NewTrust([]netip.Prefix{
		netip.MustParsePrefix("198.51.100.7/24"), // masked to .0/24
		netip.MustParsePrefix("::ffff:203.0.113.0/120"),
		netip.MustParsePrefix("2001:db8:100::/64"),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		addr string
		want bool
	}{
		{"198.51.100.200", true},
		{"::ffff:198.51.100.1", true},
		{"203.0.113.9", true},
		{"2001:db8:100::5", true},
		{"198.51.101.1", false},
		{"2001:db8:101::5", false},
	} {
		if got := tr.Trusts(netip.MustParseAddr(c.addr)); got != c.want {
			t.Errorf("Trusts(%s) = %v, want %v", c.addr, got, c.want)
		}
	}
	if tr.All() {
		t.Errorf("All() = true with ranges")
	}
	var all correlate.Trust
	if !all.All() || !all.Trusts(netip.MustParseAddr("192.0.2.1")) {
		t.Errorf("zero Trust: All %v, trusts 192.0.2.1 %v; want both true", all.All(), all.Trusts(netip.MustParseAddr("192.0.2.1")))
	}
	if _, err := correlate.NewTrust([]netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), {}}); err == nil || !strings.HasPrefix(err.Error(), "[1] ") {
		t.Errorf("NewTrust with an invalid prefix: %v, want an error starting with its index [1]", err)
	}
}

func TestISN(t *testing.T) {
	rec := func(f decode.Flags, seq uint32) *decode.Record { return &decode.Record{Flags: f, Seq: seq} }
	for _, c := range []struct {
		name string
		r    *decode.Record
		want correlate.ISN
	}{
		{"syn", rec(decode.SYN, 1000), correlate.ISN{Seq: 1000, Known: true}},
		{"ack", rec(decode.ACK, 1001), correlate.ISN{Seq: 1000, Known: true, Inferred: true}},
		{"data wraps", rec(decode.ACK|decode.PSH, 0), correlate.ISN{Seq: 1<<32 - 1, Known: true, Inferred: true}},
		{"syn-ack", rec(decode.SYN|decode.ACK, 5), correlate.ISN{}},
	} {
		if got := correlate.ISNOf(c.r); got != c.want {
			t.Errorf("%s: ISNOf = %+v, want %+v", c.name, got, c.want)
		}
	}

	exact := correlate.ISN{Seq: 1000, Known: true}
	inferred := correlate.ISN{Seq: 100000, Known: true, Inferred: true}
	for _, c := range []struct {
		name    string
		isn     correlate.ISN
		seq     uint32
		closing bool
		isNew   bool
		after   correlate.ISN
	}{
		{"retransmitted syn", exact, 1000, false, false, exact},
		{"another isn", exact, 2000, false, true, exact},
		{"closing", exact, 1000, true, true, exact},
		{"unknown isn", correlate.ISN{}, 7, false, true, correlate.ISN{}},
		{"inferred, syn at it", inferred, 100000, false, false, correlate.ISN{Seq: 100000, Known: true}},
		{"inferred, syn below within 64KiB", inferred, 100000 - 65535, false, false, correlate.ISN{Seq: 100000 - 65535, Known: true}},
		{"inferred, syn 64KiB below", inferred, 100000 - 65536, false, true, inferred},
		{"inferred, syn above", inferred, 100001, false, true, inferred},
		{"inferred, closing", inferred, 100000, true, true, inferred},
	} {
		isNew, after := c.isn.StartsNew(c.seq, c.closing)
		if isNew != c.isNew || after != c.after {
			t.Errorf("%s: StartsNew(%d, %v) = %v, %+v; want %v, %+v", c.name, c.seq, c.closing, isNew, after, c.isNew, c.after)
		}
	}
}
