package capture

import (
	"bytes"
	"context"
	"errors"

	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/internal/craft/gen"
)

// recorder keeps what a capture delivers and when Expire was called.
type recorder struct {
	records []decode.Record
	expires []time.Time
}

func (r *recorder) Observe(rec *decode.Record) { r.records = append(r.records, *rec) }
func (r *recorder) Expire(now time.Time) int {
	r.expires = append(r.expires, now)
	return 0
}

func generate(t testing.TB, f gen.Format, cfg gen.Config) ([]byte, *gen.Truth) {
	t.Helper()
	var buf bytes.Buffer
	truth, err := gen.Write(&buf, f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), truth
}

// TestReplayFormats: pcap and pcapng, one link type or several, give every
// frame to the decoder with its capture time.
func TestReplayFormats(t *testing.T) {
	mixed := []craft.Framing{{Link: decode.LinkEthernet, Tags: []uint16{0x8100}}, {Link: decode.LinkLinuxSLL}, {Link: decode.LinkLinuxSLL2}, {Link: decode.LinkRaw}}
	for _, c := range []struct {
		name     string
		format   gen.Format
		framings []craft.Framing
	}{
		{"pcap ethernet", gen.PCAP, []craft.Framing{{Link: decode.LinkEthernet}}},
		{"pcap sll", gen.PCAP, []craft.Framing{{Link: decode.LinkLinuxSLL}}},
		{"pcapng mixed", gen.PCAPNG, mixed},
	} {
		t.Run(c.name, func(t *testing.T) {
			data, truth := generate(t, c.format, gen.Config{Seed: 9, Conns: 50, Framings: c.framings, DataSegments: 2, Junk: 0.2, IPv6: 0.5})
			var rec recorder
			st, err := Replay(context.Background(), bytes.NewReader(data), nil, &rec)
			if err != nil {
				t.Fatal(err)
			}
			if st.Packets != uint64(truth.Packets) || st.Rejected() != uint64(truth.Junk) || st.Records != uint64(len(rec.records)) {
				t.Errorf("got %d packets, %d rejected, %d records (%d delivered); want %d packets, %d rejected",
					st.Packets, st.Rejected(), st.Records, len(rec.records), truth.Packets, truth.Junk)
			}
			first := map[string]time.Time{}
			for _, r := range rec.records {
				k := r.Peer.String() + r.Local.String()
				if _, ok := first[k]; !ok && r.HasTOA() {
					first[k] = r.Time
				}
			}
			for _, conn := range truth.Conns {
				if conn.Client.IsZero() {
					continue
				}
				if got := first[conn.Peer.String()+conn.Local.String()]; !got.Equal(conn.FirstSeen) {
					t.Errorf("%v: first TOA record at %v, want the capture time %v", conn.Peer, got, conn.FirstSeen)
				}
			}
		})
	}
}

// TestReplayExpiresOnCaptureTime: an Expirer sink is expired with capture
// time, every ExpireEvery of it and at the end.
func TestReplayExpiresOnCaptureTime(t *testing.T) {
	start := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	data, _ := generate(t, gen.PCAP, gen.Config{Seed: 1, Conns: 40, Concurrency: 1, Gap: 100 * time.Millisecond, Start: start})
	var rec recorder
	if _, err := Replay(context.Background(), bytes.NewReader(data), nil, &rec); err != nil {
		t.Fatal(err)
	}
	last := rec.records[len(rec.records)-1].Time
	if len(rec.expires) < 10 {
		t.Fatalf("Expire called %d times over %v of capture, want about one per %v", len(rec.expires), last.Sub(start), ExpireEvery)
	}
	for i, e := range rec.expires[:len(rec.expires)-1] {
		if e.Before(start) || e.After(last) {
			t.Errorf("Expire(%v): outside the capture's time %v to %v", e, start, last)
		}
		if i > 0 && e.Sub(rec.expires[i-1]) < ExpireEvery {
			t.Errorf("Expire at %v and %v: closer than %v", rec.expires[i-1], e, ExpireEvery)
		}
	}
	if got := rec.expires[len(rec.expires)-1]; !got.Equal(last) {
		t.Errorf("last Expire(%v), want the last packet's time %v", got, last)
	}
}

func pcapHeader(link uint32) []byte {
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	w.WriteFileHeader(65535, layers.LinkType(link))
	return buf.Bytes()
}

func TestReplayErrors(t *testing.T) {
	data, _ := generate(t, gen.PCAPNG, gen.Config{Seed: 1, Conns: 5})
	var ng bytes.Buffer
	nw, err := pcapgo.NewNgWriter(&ng, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	nw.AddInterface(pcapgo.NgInterface{Name: "wlan0", LinkType: layers.LinkTypeIEEE80211Radio})
	frame := craft.Framing{Link: decode.LinkEthernet}.Frame((&craft.Segment{Src: proxy4, Dst: server4, Flags: decode.SYN}).IP())
	nw.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: len(frame), Length: len(frame)}, frame)
	nw.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(2, 0), CaptureLength: 4, Length: 4, InterfaceIndex: 1}, []byte{1, 2, 3, 4})
	nw.Flush()
	var null bytes.Buffer
	nullw, err := pcapgo.NewNgWriter(&null, layers.LinkTypeNull)
	if err != nil {
		t.Fatal(err)
	}
	nullw.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: 4, Length: 4}, []byte{2, 0, 0, 0})
	nullw.Flush()
	for _, c := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "read capture header: unexpected EOF"},
		{"text", []byte("GET / HTTP/1.1\r\n"), "not a pcap or pcapng file: it starts with 0x47455420"},
		{"802.11 pcap", pcapHeader(105), "link type 105 is not supported"},
		{"usb pcap", pcapHeader(189), "link type 189 is not supported"},
		{"pcapng with a radio interface", ng.Bytes(), "pcapng interface 1: capture file of link type RadioTap: link type 127 is not supported"},
		{"pcapng of BSD loopback", null.Bytes(), "pcapng interface 0: capture file of link type Null: link type 0 is not supported"},
		{"cut pcapng", data[:len(data)-7], "unexpected EOF"},
	} {
		var rec recorder
		_, err := Replay(context.Background(), bytes.NewReader(c.in), nil, &rec)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got error %v, want one saying %q", c.name, err, c.want)
		}
	}
}

func TestReplayCanceled(t *testing.T) {
	data, _ := generate(t, gen.PCAP, gen.Config{Seed: 1, Conns: 6000})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	st, err := Replay(ctx, bytes.NewReader(data), nil, SinkFunc(func(*decode.Record) {}))
	if !errors.Is(err, context.Canceled) || st.Packets == 0 {
		t.Errorf("got %v after %d packets, want context.Canceled after the first batch", err, st.Packets)
	}
}

// TestReplayAllocations: replaying does not allocate per packet.
func TestReplayAllocations(t *testing.T) {
	for _, f := range []gen.Format{gen.PCAP, gen.PCAPNG} {
		small, _ := generate(t, f, gen.Config{Seed: 1, Conns: 20, DataSegments: 2})
		large, truth := generate(t, f, gen.Config{Seed: 1, Conns: 400, DataSegments: 2})
		sink := SinkFunc(func(*decode.Record) {})
		dec := decode.New(nil)
		measure := func(data []byte) float64 {
			return testing.AllocsPerRun(5, func() {
				if _, err := Replay(context.Background(), bytes.NewReader(data), dec, sink); err != nil {
					t.Fatal(err)
				}
			})
		}
		a, b := measure(small), measure(large)
		if b-a > 10 {
			t.Errorf("%v: %v allocations for a small capture, %v for one of %d packets: want no allocation per packet", f, a, b, truth.Packets)
		}
	}
}
