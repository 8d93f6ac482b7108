package fullnat

import (
	"encoding/binary"
	"flag"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/toa"
)

var update = flag.Bool("update", false, "rewrite the generated seed corpus in testdata/fuzz")

// fuzzSeeds are the seed inputs of FuzzHandle: segments both ways, in both
// families, with options that leave more or less room.
func fuzzSeeds() map[string][]byte {
	seeds := make(map[string][]byte)
	for name, s := range map[string]craft.Segment{
		"client-syn":             {Src: client4, Dst: vip4, Flags: decode.SYN, Options: linuxSYNOptions(1460)},
		"client-ack":             {Src: client4, Dst: vip4, Flags: decode.ACK, Options: linuxOptions()},
		"client-data-eol-padded": {Src: client4, Dst: vip4, Flags: decode.ACK | decode.PSH, Options: craft.Opts(craft.MSS(1), []byte{0, 0, 0}), Payload: []byte("abc")},
		"client6-fin-hop-by-hop": {Src: client6, Dst: vip6, Flags: decode.ACK | decode.FIN, Options: linuxOptions(), Ext: []craft.Ext{{Type: 0, Len: 8}}, Payload: []byte("x")},
		"client6-syn-fast-open":  {Src: client6, Dst: vip6, Flags: decode.SYN, Options: craft.FastOpen(make([]byte, 16))},
		"origin-data":            {Src: origin4, Dst: lipPort(1024), Flags: decode.ACK | decode.PSH, Options: linuxOptions(), Payload: []byte("reply")},
		"origin-syn-ack":         {Src: origin4, Dst: lipPort(1025), Flags: decode.SYN | decode.ACK, Options: linuxSYNOptions(1460)},
	} {
		seeds[name] = craft.CorpusFile(s.IP())
	}
	// IPv6 packets with a wrong TCP checksum and two bytes after the
	// payload length that make a sum over the whole buffer come out right:
	// the checks must sum what the parser reads, not the buffer.
	for name, s := range map[string]struct {
		seg   craft.Segment
		after []byte
	}{
		"client6-bad-sum-hidden-after-the-payload": {
			craft.Segment{Src: client6, Dst: vip6, Flags: decode.ACK, Options: linuxOptions(), Payload: []byte("abcd")},
			[]byte{0xff, 0xfc}},
		"client6-bad-sum-hidden-by-hop-by-hop": {
			craft.Segment{Src: client6, Dst: vip6, Flags: decode.ACK | decode.FIN, Options: linuxOptions(), Ext: []craft.Ext{{Type: 0, Len: 8}}, Payload: []byte("x")},
			[]byte{0xf0, 0xf8}},
	} {
		pkt := s.seg.IP()
		sum := len(pkt) - len(s.seg.Payload) - 20 - len(s.seg.Options) + 16
		binary.BigEndian.PutUint16(pkt[sum:], binary.BigEndian.Uint16(pkt[sum:])+1)
		seeds[name] = craft.CorpusFile(append(pkt, s.after...))
	}
	return seeds
}

// TestFuzzCorpus checks that the committed seed corpus is what fuzzSeeds
// generates; go test ./fullnat -run TestFuzzCorpus -update rewrites it.
func TestFuzzCorpus(t *testing.T) {
	if err := craft.SyncCorpus(filepath.Join("testdata", "fuzz", "FuzzHandle"), fuzzSeeds(), *update); err != nil {
		t.Errorf("%v\nrun: go test ./fullnat -run TestFuzzCorpus -update", err)
	}
}

// FuzzHandle feeds arbitrary packets to a forwarder holding one connection
// in each family. Nothing may panic; whatever comes out must be a TCP/IP
// packet that parses, and a packet that arrived with valid checksums must
// leave with valid checksums.
func FuzzHandle(f *testing.F) {
	f.Fuzz(func(t *testing.T, pkt []byte) {
		fw := newForwarder(testConfig(t, origin4, func(c *Config) {
			c.TOA4, c.TOA6 = Option{Dialect: toa.Kind200V4}, Option{Dialect: toa.Kind254V6}
			c.Position = Position(len(pkt) % 2)
			c.PortMin, c.PortMax = 1024, 1031
		}), nil, "fuzz")
		out := make([]byte, 70000)
		now := time.Unix(1, 0)
		fw.handle((&craft.Segment{Src: client4, Dst: vip4, Flags: decode.SYN}).IP(), out, now)
		fw.handle((&craft.Segment{Src: client6, Dst: vip6, Flags: decode.SYN}).IP(), out, now)
		fw.handle((&craft.Segment{Src: origin4, Dst: lipPort(1024), Flags: decode.SYN | decode.ACK}).IP(), out, now)

		valid := func(p []byte) bool {
			_, ok := parse(p)
			return ok && sumsOK(p)
		}
		inOK := valid(pkt)
		toas := fw.Stats().TOAs
		res := fw.handle(pkt, out, now)
		if res == nil {
			return
		}
		s, ok := parse(res)
		if !ok {
			t.Fatalf("output does not parse: % x", res)
		}
		if fw.Stats().TOAs > toas && len(res) > fw.cfg.MTU {
			t.Fatalf("inserted a TOA into a %d-byte packet, above the MTU", len(res))
		}
		if s.doff > maxTCPHeader {
			t.Fatalf("TCP header of %d bytes", s.doff)
		}
		if inOK && !sumsOK(res) {
			t.Fatalf("valid input % x\ngave bad checksums % x", pkt, res)
		}
	})
}

func lipPort(p uint16) netip.AddrPort { return netip.AddrPortFrom(lip4, p) }
