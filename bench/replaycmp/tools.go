package replaycmp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/toad-project/toad/capture"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft/gen"
	"github.com/toad-project/toad/internal/gporacle"
	"github.com/toad-project/toad/toa"
)

// Tool names.
const (
	Toad      = "toad"
	DLP       = "gopacket DecodingLayerParser"
	NewPacket = "gopacket NewPacket"
	Tshark    = "tshark"
	// ReadOnly reads the file as the Go tools do and decodes nothing: the
	// floor under their replays from the file.
	ReadOnly = "pcapgo read, no decoding"
)

// keepAll is the linger of a table that must still hold every closed
// connection when the replay ends, so that its mappings can be counted.
const keepAll = 100 * 365 * 24 * time.Hour

// packetFunc handles one Ethernet frame.
type packetFunc func(data []byte, ts time.Time)

// decoder is a tool's way through packets: a packetFunc, and a function
// that gives the mappings found, called once the clock has stopped.
type decoder func(c *Capture) (packetFunc, func() Mappings, error)

func newTable(c *Capture) (*correlate.Table, error) {
	return correlate.New(correlate.Config{Capacity: max(c.Mix.Conns, 1), Trusted: gen.Trusted, Linger: keepAll})
}

func tableMappings(t *correlate.Table) func() Mappings {
	return func() Mappings {
		defer t.Close()
		var m Mappings
		t.Range(func(e correlate.Entry) bool {
			m.Add(e.Key, e.Client)
			return true
		})
		return m
	}
}

// replayToad replays the file with capture.Replay, as `toad serve --pcap`
// does, into a correlate.Table that trusts the generator's proxies and
// holds every connection, through capture.Incoming: what the server
// received of the two-way capture.
func replayToad(ctx context.Context, c *Capture) (int, func() Mappings, error) {
	f, err := os.Open(c.Path)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	t, err := newTable(c)
	if err != nil {
		return 0, nil, err
	}
	st, err := capture.Replay(ctx, f, decode.New(nil), capture.NewIncoming(t, keepAll))
	if err != nil {
		t.Close()
		return 0, nil, err
	}
	return int(st.Packets), tableMappings(t), nil
}

// replayWith replays the file with a decoder, reading it as
// capture.Replay does.
func replayWith(d decoder) run {
	return func(ctx context.Context, c *Capture) (int, func() Mappings, error) {
		fn, found, err := d(c)
		if err != nil {
			return 0, nil, err
		}
		n, err := eachPacket(ctx, c.Path, fn)
		return n, found, err
	}
}

// readOnly decodes nothing.
func readOnly(*Capture) (packetFunc, func() Mappings, error) {
	return func([]byte, time.Time) {}, func() Mappings { return Mappings{} }, nil
}

// eachPacket reads a pcap file as capture.Replay does (a 1 MiB buffer,
// pcapgo's zero-copy reads) and calls fn with every packet.
func eachPacket(ctx context.Context, path string, fn packetFunc) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return 0, err
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		return 0, fmt.Errorf("%s: link type %v, want Ethernet", path, r.LinkType())
	}
	n := 0
	for {
		data, ci, err := r.ZeroCopyReadPacketData()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if n++; n&0xffff == 1 {
			if err := ctx.Err(); err != nil {
				return n, err
			}
		}
		fn(data, ci.Timestamp)
	}
}

// dlpDecoder decodes with a gopacket.DecodingLayerParser, gopacket's
// fastest way: preallocated layers, no packet objects.
func dlpDecoder(c *Capture) (packetFunc, func() Mappings, error) {
	var (
		eth   layers.Ethernet
		dot1q layers.Dot1Q
		ip4   layers.IPv4
		ip6   layers.IPv6
		ext   layers.IPv6ExtensionSkipper // hop-by-hop, routing, destination options
		frag  layers.IPv6Fragment
		tcp   layers.TCP
		r     decode.Record
	)
	// The skipper comes before the fragment layer, which then takes
	// fragment headers over from it.
	p := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &dot1q, &ip4, &ip6, &ext, &frag, &tcp)
	p.IgnoreUnsupported = true // the TCP payload, later fragments
	decoded := make([]gopacket.LayerType, 0, 8)
	set := toa.DefaultSet()
	found := make(firstTOA, c.Mix.Conns) // sized, as toad's table is
	return func(data []byte, ts time.Time) {
		if err := p.DecodeLayers(data, &decoded); err != nil || len(decoded) == 0 || decoded[len(decoded)-1] != layers.LayerTypeTCP {
			return
		}
		var src, dst []byte
		for _, typ := range decoded {
			switch typ {
			case layers.LayerTypeIPv4:
				src, dst = ip4.SrcIP, ip4.DstIP
			case layers.LayerTypeIPv6:
				src, dst = ip6.SrcIP, ip6.DstIP
			}
		}
		gporacle.Fill(&r, set, ts, src, dst, &tcp)
		if r.TOACount > 0 {
			found.observe(r.Peer, r.Local, r.TOA)
		}
	}, found.mappings, nil
}

// newPacketDecoder decodes with gopacket.NewPacket, the way gopacket's
// documentation starts with, given its fast options: lazy decoding, and
// no copy of the packet's bytes.
func newPacketDecoder(c *Capture) (packetFunc, func() Mappings, error) {
	var r decode.Record
	set := toa.DefaultSet()
	found := make(firstTOA, c.Mix.Conns) // sized, as toad's table is
	opts := gopacket.DecodeOptions{Lazy: true, NoCopy: true}
	return func(data []byte, ts time.Time) {
		pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, opts)
		tcp, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ok {
			return
		}
		var src, dst []byte
		switch ip := pkt.NetworkLayer().(type) {
		case *layers.IPv4:
			src, dst = ip.SrcIP, ip.DstIP
		case *layers.IPv6:
			src, dst = ip.SrcIP, ip.DstIP
		default:
			return
		}
		gporacle.Fill(&r, set, ts, src, dst, tcp)
		if r.TOACount > 0 {
			found.observe(r.Peer, r.Local, r.TOA)
		}
	}, found.mappings, nil
}

// unreadByNewPacket counts the packets of the capture in which toad's
// decoder finds a TOA and gopacket's NewPacket no TCP header, and those of
// them whose IPv6 header chain holds an atomic fragment header (offset 0,
// no more fragments: a whole packet, RFC 6946).
func unreadByNewPacket(ctx context.Context, c *Capture) (unread, atomic int, err error) {
	d := decode.New(nil)
	var r decode.Record
	opts := gopacket.DecodeOptions{Lazy: true, NoCopy: true}
	_, err = eachPacket(ctx, c.Path, func(data []byte, ts time.Time) {
		if d.Decode(decode.LinkEthernet, data, ts, &r) != decode.OK || r.TOACount == 0 {
			return
		}
		pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, opts)
		if pkt.Layer(layers.LayerTypeTCP) != nil {
			return
		}
		unread++
		if f, ok := pkt.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment); ok && f.FragmentOffset == 0 && !f.MoreFragments {
			atomic++
		}
	})
	return unread, atomic, err
}
