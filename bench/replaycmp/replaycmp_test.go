package replaycmp

import (
	"context"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft/gen"
	"github.com/toad-project/toad/toa"
)

func TestMappings(t *testing.T) {
	k1 := correlate.KeyOf(netip.MustParseAddrPort("198.51.100.1:1000"), netip.MustParseAddrPort("192.0.2.20:80"))
	k2 := correlate.KeyOf(netip.MustParseAddrPort("[2001:db8:100::1]:1000"), netip.MustParseAddrPort("[2001:db8::20]:80"))
	c1 := toa.Client{Dialect: toa.Kind200V4, Addr: netip.MustParseAddr("203.0.113.1"), Port: 5, HasPort: true}
	c2 := toa.Client{Dialect: toa.Kind28V4, Addr: netip.MustParseAddr("203.0.113.1")}
	var a, b, c, d Mappings
	a.Add(k1, c1)
	a.Add(k2, c2)
	b.Add(k2, c2)
	b.Add(k1, c1)
	c.Add(k1, c2)
	c.Add(k2, c2)
	d.Add(k1, c1)
	if a != b {
		t.Errorf("the same mappings in another order: got %+v and %+v, want equal", a, b)
	}
	if a == c || a == d {
		t.Errorf("other mappings got the same digest: %+v, %+v, %+v", a, c, d)
	}
	if a.N != 2 || d.N != 1 {
		t.Errorf("got N %d and %d, want 2 and 1", a.N, d.N)
	}
}

func TestMixConfig(t *testing.T) {
	for _, data := range []float64{0, 0.5, 0.95} {
		m := Mix{Conns: 300, Data: data, Seed: 3} // all of it is the sample
		cfg, err := m.Config()
		if err != nil {
			t.Fatal(err)
		}
		c, err := WriteCapture(filepath.Join(t.TempDir(), "mix.pcap"), m)
		if err != nil {
			t.Fatal(err)
		}
		if c.DataSegments != cfg.DataSegments || c.Data < data || c.Packets == 0 {
			t.Errorf("data share %v: got %d segments and a share of %.4f in %d packets, want %d segments and at least the share",
				data, c.DataSegments, c.Data, c.Packets, cfg.DataSegments)
		}
		// The fewest segments that reach the share: one fewer falls short.
		if segs := cfg.DataSegments; segs > 0 {
			if got := share(t, m.config(segs-1)); got >= data {
				t.Errorf("data share %v: %d segments already give %.4f; want the fewest", data, segs-1, got)
			}
		}
	}
	for _, bad := range []Mix{{Conns: -1}, {Data: 1}, {Data: -0.1}} {
		if _, err := bad.Config(); err == nil {
			t.Errorf("Mix %+v: got no error", bad)
		}
	}
}

// share is the share of plain packets the generator makes with cfg.
func share(t *testing.T, cfg gen.Config) float64 {
	t.Helper()
	st, err := gen.Stream(cfg, func(time.Time, decode.LinkType, []byte) error { return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	return float64(st.Packets-st.Carriers-st.Control) / float64(st.Packets)
}

// TestCompare replays a small capture with every tool: each reads every
// packet, and toad, DecodingLayerParser and tshark find exactly the
// generated mappings.
func TestCompare(t *testing.T) {
	c, err := WriteCapture(filepath.Join(t.TempDir(), "replay.pcap"), Mix{Conns: 300, Data: 0.9, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	if c.Truth.N < 250 {
		t.Fatalf("the capture holds %d mappings, want most of its 300 connections", c.Truth.N)
	}
	res, err := Compare(context.Background(), c, Config{Rounds: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 5 || res[0].Tool != Toad || res[4].Tool != Tshark {
		t.Fatalf("got %d results, toad first and tshark last? %+v", len(res), res)
	}
	_, lookErr := exec.LookPath("tshark")
	for _, r := range res {
		if r.Tool == Tshark && lookErr != nil {
			if !strings.Contains(r.Skipped, "not installed") {
				t.Errorf("tshark missing: got Skipped %q, want it to say so", r.Skipped)
			}
			continue
		}
		if r.Skipped != "" || r.Runs != 1 || r.Packets != c.Packets || r.Wall <= 0 {
			t.Errorf("%s: skipped %q, %d runs, %d packets of %d, wall %v", r.Tool, r.Skipped, r.Runs, r.Packets, c.Packets, r.Wall)
		}
		switch r.Tool {
		case Toad, DLP, Tshark:
			if !r.Agrees {
				t.Errorf("%s found %+v, want the truth %+v", r.Tool, r.Found, c.Truth)
			}
		case NewPacket:
			if r.Found.N > c.Truth.N || r.Found.N < c.Truth.N-5 {
				t.Errorf("%s found %d mappings, want about the truth's %d", r.Tool, r.Found.N, c.Truth.N)
			}
		case ReadOnly:
			if r.Maps || r.Found.N != 0 {
				t.Errorf("%s: Maps %v, found %d", r.Tool, r.Maps, r.Found.N)
			}
		}
	}
	if a := res[0].Allocs; a > 0.05 {
		t.Errorf("toad allocates %.3f times per packet, want next to nothing", a)
	}
}

func TestReadTshark(t *testing.T) {
	// A SYN with a 254/8 TOA after MSS, an ACK with a Fast Open look-alike
	// and then a 200/8 TOA over IPv6, a data segment, a header cut short,
	// and an ARP frame.
	lines := strings.Join([]string{
		"1704164645.000141542\t198.51.100.8\t\t10001\t192.0.2.20\t\t8080\t0x0002\t100\t0\t0\t020405b4fe08c3500a000001",
		"1704164645.5\t\t2001:db8:100::1\t10002\t\t2001:db8::20\t443\t0x0010\t101\t7\t0\t0101c8080bb8cb007105",
		"1704164646.1\t198.51.100.9\t\t10003\t192.0.2.20\t\t8080\t0x0018\t5\t6\t100\t0101080a0000000100000002",
		"1704164646.2\t198.51.100.10\t\t10004\t192.0.2.20\t\t8080\t\t\t\t\t",
		"1704164646.3\t\t\t\t\t\t\t\t\t\t\t",
	}, "\n") + "\n"
	found := make(firstTOA)
	n, err := readTshark(strings.NewReader(lines), found)
	if err != nil || n != 5 {
		t.Fatalf("readTshark: %d lines, %v; want 5, nil", n, err)
	}
	want := firstTOA{
		correlate.KeyOf(netip.MustParseAddrPort("198.51.100.8:10001"), netip.MustParseAddrPort("192.0.2.20:8080")):         {Dialect: toa.Kind254V4, Addr: netip.MustParseAddr("10.0.0.1"), Port: 0xc350, HasPort: true},
		correlate.KeyOf(netip.MustParseAddrPort("[2001:db8:100::1]:10002"), netip.MustParseAddrPort("[2001:db8::20]:443")): {Dialect: toa.Kind200V4, Addr: netip.MustParseAddr("203.0.113.5"), Port: 0x0bb8, HasPort: true},
	}
	if found.mappings() != want.mappings() {
		t.Errorf("got %v, want %v", found, want)
	}
	if _, err := readTshark(strings.NewReader("1\t2\t3\n"), make(firstTOA)); err == nil {
		t.Error("a line of 3 fields: got no error")
	}
}

// TestScale checks the scaling run at two small sizes: the table holds
// every connection with its generated client.
func TestScale(t *testing.T) {
	pts, err := Scale(context.Background(), ScaleConfig{Sizes: []int{200, 2000}, Data: 0.5, Rounds: 2, RepeatUpTo: 200})
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 2 {
		t.Fatalf("got %d points, want 2", len(pts))
	}
	for i, p := range pts {
		wantRuns := []int{2, 1}[i]
		if !p.Agrees || p.Runs != wantRuns || p.Packets < 5*p.Conns || p.Replay <= 0 || p.TableBytes <= 0 || p.Entries < p.Conns*9/10 {
			t.Errorf("%d connections: %+v", p.Conns, p)
		}
	}
}
