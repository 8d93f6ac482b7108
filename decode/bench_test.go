package decode_test

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/toa"
)

// benchFrames is the benchmark's traffic: 1000 Ethernet frames, 70% IPv4
// and 30% IPv6, a fifth of them with an 802.1Q tag. 5% are handshake
// segments carrying a TOA (SYNs with Linux's options, and handshake ACKs
// with timestamps) in six dialects; 95% are data segments with timestamps,
// 0-1448 bytes of payload and no TOA. The frames lie back to back in one
// buffer, 16-byte aligned, as in the blocks of a TPACKET_V3 ring.
func benchFrames() [][]byte {
	rng := rand.New(rand.NewPCG(42, 42))
	dialects := []toa.Dialect{toa.Kind200V4, toa.Kind254V4, toa.Kind254V6, toa.Kind253V6, toa.Kind28V4, toa.Kind201V6}
	frames := make([][]byte, 1000)
	for i := range frames {
		v6 := rng.IntN(10) < 3
		s := &craft.Segment{Src: randomAddrPort(rng, v6), Dst: server4, Seq: rng.Uint32(), Ack: rng.Uint32()}
		if v6 {
			s.Dst = server6
		}
		if i%20 == 0 {
			d := dialects[(i/20)%len(dialects)]
			client := netip.AddrPortFrom(client4.Addr(), uint16(rng.Uint32()))
			if toa.BuiltinLayout(d).IPv6() {
				client = netip.AddrPortFrom(client6.Addr(), client.Port())
			}
			opt := craft.TOA(d, client)
			if (i/20)%2 == 0 {
				s.Flags, s.Ack = decode.SYN, 0
				s.Options = craft.Opts(opt, craft.MSS(1460), craft.SACKPerm, craft.WScale(7))
			} else {
				s.Flags = decode.ACK
				s.Options = craft.Opts(opt, craft.NOP, craft.NOP, craft.Timestamps(rng.Uint32(), rng.Uint32()))
			}
		} else {
			s.Flags = decode.ACK | decode.PSH
			s.Options = craft.Opts(craft.NOP, craft.NOP, craft.Timestamps(rng.Uint32(), rng.Uint32()))
			s.Payload = make([]byte, rng.IntN(1449))
		}
		f := craft.Framing{Link: decode.LinkEthernet, Pad: true}
		if rng.IntN(5) == 0 {
			f.Tags = []uint16{0x8100}
		}
		frames[i] = f.Frame(s.IP())
	}
	size := 0
	for _, f := range frames {
		size += (len(f) + 15) &^ 15
	}
	ring := make([]byte, 0, size)
	for i, f := range frames {
		start := len(ring)
		ring = append(ring, f...)
		frames[i] = ring[start:len(ring):len(ring)]
		ring = ring[:(len(ring)+15)&^15]
	}
	return frames
}

// BenchmarkDecode decodes the frames of benchFrames, one per op.
func BenchmarkDecode(b *testing.B) {
	frames := benchFrames()
	d := decode.New(nil)
	var r decode.Record
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if reason := d.Decode(decode.LinkEthernet, frames[i], ts, &r); reason != decode.OK {
			b.Fatalf("frame %d: %v", i, reason)
		}
		if i++; i == len(frames) {
			i = 0
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
}

// BenchmarkDecodeGopacket decodes the same frames into the same Record
// with gopacket's DecodingLayerParser: addresses, ports, flags, seq/ack, and
// the first TOA found by walking layers.TCP's options.
func BenchmarkDecodeGopacket(b *testing.B) {
	frames := benchFrames()
	g := newGopacketDecoder()
	set := toa.DefaultSet()
	var r decode.Record
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if ok, _ := g.decode(decode.LinkEthernet, frames[i]); !ok {
			b.Fatalf("frame %d: gopacket found no TCP header", i)
		}
		g.record(set, &r)
		r.Time = ts
		if i++; i == len(frames) {
			i = 0
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
}

// TestBenchmarksAgree checks that both benchmarks extract the same records,
// so that they measure the same work.
func TestBenchmarksAgree(t *testing.T) {
	d := decode.New(nil)
	g := newGopacketDecoder()
	set := toa.DefaultSet()
	toas := 0
	for i, f := range benchFrames() {
		var want, got decode.Record
		if reason := d.Decode(decode.LinkEthernet, f, ts, &want); reason != decode.OK {
			t.Fatalf("frame %d: %v", i, reason)
		}
		if ok, _ := g.decode(decode.LinkEthernet, f); !ok {
			t.Fatalf("frame %d: gopacket found no TCP header", i)
		}
		g.record(set, &got)
		got.Time, got.PayloadLen = ts, want.PayloadLen
		if got != want {
			t.Errorf("frame %d: gopacket way %+v, toad %+v", i, got, want)
		}
		if want.HasTOA() {
			toas++
		}
	}
	if toas != 50 {
		t.Errorf("%d of 1000 frames carry a TOA, want 50", toas)
	}
}

// TestDecodeAllocs proves decoding allocates nothing, whatever the frame:
// IPv4 and IPv6, with and without TOAs, accepted and rejected.
func TestDecodeAllocs(t *testing.T) {
	d := decode.New(nil)
	type frame struct {
		link decode.LinkType
		b    []byte
	}
	var frames []frame
	reasons := make(map[decode.Reason]bool)
	for _, tc := range decodeCases() {
		frames = append(frames, frame{tc.link, tc.frame})
		reasons[tc.reason] = true
	}
	for _, f := range benchFrames()[:100] {
		frames = append(frames, frame{decode.LinkEthernet, f})
	}
	if len(reasons) != decode.NumReasons {
		t.Fatalf("the frames yield %d of the %d reasons", len(reasons), decode.NumReasons)
	}
	var r decode.Record
	allocs := testing.AllocsPerRun(50, func() {
		for _, f := range frames {
			d.Decode(f.link, f.b, ts, &r)
		}
	})
	if allocs != 0 {
		t.Errorf("decoding %d frames allocates %v times, want 0", len(frames), allocs)
	}
}
