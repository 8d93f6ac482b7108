package gen

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
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
	truth, r := writeNg(t, cfg)
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

// writeNg writes cfg's capture as pcapng into memory and returns what it
// holds and a reader of it.
func writeNg(t *testing.T, cfg Config) (*Truth, *pcapgo.NgReader) {
	t.Helper()
	var buf bytes.Buffer
	truth, err := Write(&buf, PCAPNG, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewNgReader(&buf, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		t.Fatal(err)
	}
	return truth, r
}

// TestStreamMatchesWrite checks that Stream hands over the frames Write
// writes, in the same order, and reports the same connections.
func TestStreamMatchesWrite(t *testing.T) {
	cfg := Sample()
	truth, r := writeNg(t, cfg)
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

// TestPortReuse: with Ports, proxies take their ports in turn, so that
// 4-tuples come back, never while a connection of the capture still uses
// one; every connection has its SYN's time, and the ends follow Ends.
func TestPortReuse(t *testing.T) {
	cfg := Config{Seed: 3, Conns: 600, Concurrency: 4, Proxies: 2, Ports: 5, DataSegments: 1,
		Ends: Ends{FIN: 0.5, RST: 0.3}, Gap: time.Second}
	type span struct{ from, to time.Time }
	spans := map[[2]netip.AddrPort][]span{}
	var now time.Time
	var fin, rst, open int
	_, err := Stream(cfg, func(ts time.Time, _ decode.LinkType, _ []byte) error {
		now = ts
		return nil
	}, func(c *Conn) {
		// Called as the connection's last frame has gone out, at now.
		if c.Opened.IsZero() || c.FirstSeen.Before(c.Opened) || c.Closed && c.ClosedAt.Before(c.Opened) {
			t.Errorf("%v > %v: opened %v, first TOA %v, closed %v: want the SYN first", c.Peer, c.Local, c.Opened, c.FirstSeen, c.ClosedAt)
		}
		switch {
		case c.Reset:
			rst++
		case c.Closed:
			fin++
		default:
			open++
		}
		k := [2]netip.AddrPort{c.Peer, c.Local}
		spans[k] = append(spans[k], span{c.Opened, now})
	})
	if err != nil {
		t.Fatal(err)
	}
	reused := 0
	for k, ss := range spans {
		slices.SortFunc(ss, func(a, b span) int { return a.from.Compare(b.from) })
		for i := 1; i < len(ss); i++ {
			if !ss[i].from.After(ss[i-1].to) {
				t.Errorf("%v reused at %v while in use until %v", k, ss[i].from, ss[i-1].to)
			}
		}
		reused += len(ss) - 1
		if k[0].Port() < 10000 || k[0].Port() >= 10000+uint16(cfg.Ports) {
			t.Errorf("%v: port outside the %d the proxies use", k, cfg.Ports)
		}
	}
	// 2 proxies, 5 ports, 2 servers of each family, IPv4 only.
	if len(spans) > 2*5*2 || reused < 500 {
		t.Errorf("%d 4-tuples, %d reuses; want at most 20 4-tuples, reused by most connections", len(spans), reused)
	}
	if fin < 250 || fin > 350 || rst < 140 || rst > 220 || open < 80 || open > 160 {
		t.Errorf("%d FIN, %d RST, %d left open of 600; want about 300, 180, 120", fin, rst, open)
	}
	if _, err := Write(new(bytes.Buffer), PCAP, Config{Conns: 1, Ports: 16}); err == nil {
		t.Errorf("16 ports for 16 connections at once: got no error")
	}
}

// TestWriteSplit: the packets of a capture split over several files are
// the packets of the whole capture, each in the file it was sent to.
func TestWriteSplit(t *testing.T) {
	cfg := Config{Seed: 8, Conns: 50, DataSegments: 2}
	var whole bytes.Buffer
	if _, err := Write(&whole, PCAP, cfg); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	names := []string{filepath.Join(dir, "a.pcap"), filepath.Join(dir, "b.pcap"), filepath.Join(dir, "c.pcap")}
	truth, err := WriteSplit(names, PCAP, cfg, func(_ time.Time, n int) int { return n % 2 }) // c.pcap gets none
	if err != nil {
		t.Fatal(err)
	}
	var files []*pcapgo.Reader
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		r, err := pcapgo.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		files = append(files, r)
	}
	wr, err := pcapgo.NewReader(&whole)
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; ; n++ {
		want, wci, werr := wr.ReadPacketData()
		if werr != nil {
			if n != truth.Packets {
				t.Errorf("the whole capture has %d packets, WriteSplit's truth %d", n, truth.Packets)
			}
			break
		}
		got, ci, err := files[n%2].ReadPacketData()
		if err != nil || !bytes.Equal(got, want) || !ci.Timestamp.Equal(wci.Timestamp) {
			t.Fatalf("packet %d: file %d has %x at %v (%v), want %x at %v", n, n%2, got, ci.Timestamp, err, want, wci.Timestamp)
		}
	}
	if _, _, err := files[2].ReadPacketData(); err == nil {
		t.Errorf("c.pcap holds a packet, want none")
	}
}
