package gen

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/toa"
)

var update = flag.Bool("update", false, "rewrite testdata/sample.pcapng")

// samplePath is the sample capture README's first command replays.
var samplePath = filepath.Join("..", "..", "..", "testdata", "sample.pcapng")

// TestSampleUpToDate fails when the committed sample differs from what
// Sample generates; go test -run TestSampleUpToDate -update rewrites it.
func TestSampleUpToDate(t *testing.T) {
	var buf bytes.Buffer
	if _, err := Write(&buf, PCAPNG, Sample()); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(samplePath, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	have, err := os.ReadFile(samplePath)
	if err != nil {
		t.Fatalf("%v (regenerate with go test ./internal/craft/gen -run TestSampleUpToDate -update)", err)
	}
	if !bytes.Equal(have, buf.Bytes()) {
		t.Errorf("%s differs from what gen.Sample generates (%d bytes, want %d); regenerate with go test ./internal/craft/gen -run TestSampleUpToDate -update",
			samplePath, len(have), buf.Len())
	}
}

func TestWriteIsDeterministic(t *testing.T) {
	cfg := Sample()
	var a, b, c bytes.Buffer
	for _, w := range []*bytes.Buffer{&a, &b} {
		if _, err := Write(w, PCAPNG, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Errorf("two runs with seed %d differ", cfg.Seed)
	}
	cfg.Seed++
	if _, err := Write(&c, PCAPNG, cfg); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Bytes(), c.Bytes()) {
		t.Errorf("seeds %d and %d give the same capture", cfg.Seed-1, cfg.Seed)
	}
}

// TestTruth decodes every frame written and checks the ground truth: each
// connection's first TOA is its client, at FirstSeen, and the counts add up.
func TestTruth(t *testing.T) {
	all, err := toa.ParseSet("all")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Seed: 7, Conns: 300, Dialects: all.Dialects(),
		Framings: []craft.Framing{
			{Link: decode.LinkEthernet, Tags: []uint16{0x88A8, 0x8100}}, {Link: decode.LinkLinuxSLL},
			{Link: decode.LinkLinuxSLL2}, {Link: decode.LinkRaw}, {Link: decode.LinkIPv4},
		},
		IPv6: 0.4, Plain: 0.1, Spoofed: 0.05, DataSegments: 3, Junk: 0.3, Options: 0.3,
	}
	var buf bytes.Buffer
	truth, err := Write(&buf, PCAPNG, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewNgReader(&buf, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		client toa.Client
		at     time.Time
	}
	first := map[[2]string]seen{}
	dec := decode.New(all)
	var packets, junk, carriers int
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		packets++
		link := decode.LinkType(ci.AncillaryData[0].(layers.LinkType))
		var rec decode.Record
		if why := dec.Decode(link, data, ci.Timestamp, &rec); why != decode.OK {
			junk++
			continue
		}
		if !rec.HasTOA() {
			continue
		}
		carriers++
		k := [2]string{rec.Peer.String(), rec.Local.String()}
		if _, ok := first[k]; !ok {
			first[k] = seen{rec.TOA, rec.Time}
		}
	}
	if packets != truth.Packets || junk != truth.Junk || carriers != truth.Carriers {
		t.Errorf("decoded %d packets, %d junk, %d carriers; truth says %d, %d, %d",
			packets, junk, carriers, truth.Packets, truth.Junk, truth.Carriers)
	}
	if len(truth.Conns) != cfg.Conns {
		t.Fatalf("got %d connections, want %d", len(truth.Conns), cfg.Conns)
	}
	var spoofed, plain, v6 int
	placements := map[Placement]bool{}
	for _, c := range truth.Conns {
		got, ok := first[[2]string{c.Peer.String(), c.Local.String()}]
		switch {
		case c.Client.IsZero():
			plain++
			if ok {
				t.Errorf("%v->%v: plain connection decodes a TOA %v", c.Peer, c.Local, got.client)
			}
		case !ok:
			t.Errorf("%v->%v (%v, %v): no TOA decoded, want %v", c.Peer, c.Local, c.Client.Dialect, c.Placement, c.Client)
		case got.client != c.Client || !got.at.Equal(c.FirstSeen):
			t.Errorf("%v->%v (%v): first TOA %v at %v, want %v at %v", c.Peer, c.Local, c.Placement, got.client, got.at, c.Client, c.FirstSeen)
		}
		if c.Spoofed {
			spoofed++
			if Trusted[0].Contains(c.Peer.Addr()) || Trusted[1].Contains(c.Peer.Addr()) {
				t.Errorf("spoofed peer %v is in the trusted ranges", c.Peer)
			}
		} else if !Trusted[0].Contains(c.Peer.Addr()) && !Trusted[1].Contains(c.Peer.Addr()) {
			t.Errorf("proxy %v is outside the trusted ranges", c.Peer)
		}
		if c.Peer.Addr().Is6() {
			v6++
		}
		placements[c.Placement] = true
	}
	if spoofed != 15 || plain != 30-1 && plain != 30 || v6 < 60 || len(placements) != len(Placements) {
		t.Errorf("got %d spoofed, %d plain, %d over IPv6, %d placements; want 15, 30, over 60, %d", spoofed, plain, v6, len(placements), len(Placements))
	}
}

func TestPCAPNeedsOneLinkType(t *testing.T) {
	cfg := Config{Conns: 2, Framings: []craft.Framing{{Link: decode.LinkEthernet}, {Link: decode.LinkRaw}}}
	if _, err := Write(new(bytes.Buffer), PCAP, cfg); err == nil {
		t.Error("pcap with two link types: got no error")
	}
}

// TestStreamMatchesWrite checks that Stream hands over the frames Write
// writes, in the same order, and reports the same connections.
func TestStreamMatchesWrite(t *testing.T) {
	cfg := Sample()
	var buf bytes.Buffer
	truth, err := Write(&buf, PCAPNG, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewNgReader(&buf, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		t.Fatal(err)
	}
	type key struct{ peer, local netip.AddrPort }
	conns := map[key]Conn{}
	for _, c := range truth.Conns {
		conns[key{c.Peer, c.Local}] = c
	}
	n := 0
	st, err := Stream(cfg, func(ts time.Time, link decode.LinkType, b []byte) error {
		n++
		data, ci, err := r.ReadPacketData()
		if err != nil {
			t.Fatalf("frame %d: Write wrote fewer frames: %v", n, err)
		}
		if wl := decode.LinkType(ci.AncillaryData[0].(layers.LinkType)); !bytes.Equal(data, b) || !ci.Timestamp.Equal(ts) || wl != link {
			t.Fatalf("frame %d differs: Stream %v %v %x, Write %v %v %x", n, ts, link, b, ci.Timestamp, wl, data)
		}
		return nil
	}, func(c *Conn) {
		want, ok := conns[key{c.Peer, c.Local}]
		if !ok {
			t.Errorf("Stream reports %v->%v, which Write does not (or twice)", c.Peer, c.Local)
			return
		}
		delete(conns, key{c.Peer, c.Local})
		if diff := cmp.Diff(want, *c, cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})); diff != "" {
			t.Errorf("%v->%v: Stream and Write differ (-Write +Stream):\n%s", c.Peer, c.Local, diff)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != truth.Packets || st.Packets != truth.Packets || st.Carriers != truth.Carriers || len(st.Conns) != 0 {
		t.Errorf("Stream: %d frames, truth %d packets %d carriers %d conns; Write: %d packets %d carriers",
			n, st.Packets, st.Carriers, len(st.Conns), truth.Packets, truth.Carriers)
	}
	for k := range conns {
		t.Errorf("%v->%v: Write reports it, Stream does not", k.peer, k.local)
	}
}

// BenchmarkStream generates traffic of the benchmarks' kind: mostly data,
// a handshake and a close per connection.
func BenchmarkStream(b *testing.B) {
	cfg := Config{Seed: 1, Conns: 2000, Framings: []craft.Framing{{Link: decode.LinkEthernet}},
		IPv6: 0.3, Plain: 0.05, Spoofed: 0.01, DataSegments: 8, Junk: 0.01, Options: 0.05, Concurrency: 256}
	b.ReportAllocs()
	packets := 0
	for b.Loop() {
		st, err := Stream(cfg, func(time.Time, decode.LinkType, []byte) error { return nil }, nil)
		if err != nil {
			b.Fatal(err)
		}
		packets += st.Packets
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(packets), "ns/frame")
}
