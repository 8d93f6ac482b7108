package decode_test

import (
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/gporacle"
	"github.com/toad-project/toad/toa"
)

// gopacketDecoder decodes frames with gopacket's DecodingLayerParser, the
// fastest way gopacket offers, into the layers below. It is the reference
// of the differential test and the baseline of the benchmark.
type gopacketDecoder struct {
	eth   layers.Ethernet
	dot1q layers.Dot1Q
	sll   layers.LinuxSLL
	sll2  layers.LinuxSLL2
	ip4   layers.IPv4
	ip6   layers.IPv6
	ext   layers.IPv6ExtensionSkipper // hop-by-hop, routing, destination options
	frag  layers.IPv6Fragment
	ah    layers.IPSecAH
	tcp   layers.TCP

	parsers map[gopacket.LayerType]*gopacket.DecodingLayerParser
	decoded []gopacket.LayerType
}

func newGopacketDecoder() *gopacketDecoder {
	g := &gopacketDecoder{parsers: make(map[gopacket.LayerType]*gopacket.DecodingLayerParser), decoded: make([]gopacket.LayerType, 0, 16)}
	for _, first := range []gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeLinuxSLL, layers.LayerTypeLinuxSLL2, layers.LayerTypeIPv4, layers.LayerTypeIPv6} {
		// The skipper comes before the fragment layer, which then takes
		// fragment headers over from it.
		p := gopacket.NewDecodingLayerParser(first, &g.eth, &g.dot1q, &g.sll, &g.sll2, &g.ip4, &g.ip6, &g.ext, &g.frag, &g.ah, &g.tcp)
		p.IgnoreUnsupported = true // the TCP payload, fragments
		g.parsers[first] = p
	}
	return g
}

// decode decodes frame; it reports whether gopacket decoded a TCP header,
// and whether it saw the capture end before the packet did.
func (g *gopacketDecoder) decode(link decode.LinkType, frame []byte) (ok, truncated bool) {
	var first gopacket.LayerType
	switch link {
	case decode.LinkEthernet:
		first = layers.LayerTypeEthernet
	case decode.LinkLinuxSLL:
		first = layers.LayerTypeLinuxSLL
	case decode.LinkLinuxSLL2:
		first = layers.LayerTypeLinuxSLL2
	case decode.LinkIPv4:
		first = layers.LayerTypeIPv4
	case decode.LinkIPv6:
		first = layers.LayerTypeIPv6
	case decode.LinkRaw:
		if len(frame) == 0 {
			return false, false
		}
		switch frame[0] >> 4 {
		case 4:
			first = layers.LayerTypeIPv4
		case 6:
			first = layers.LayerTypeIPv6
		default:
			return false, false
		}
	default:
		return false, false
	}
	p := g.parsers[first]
	if err := p.DecodeLayers(frame, &g.decoded); err != nil {
		return false, p.Truncated
	}
	n := len(g.decoded)
	return n > 0 && g.decoded[n-1] == layers.LayerTypeTCP, p.Truncated
}

// record fills r from the layers decode found, walking the TCP options for
// TOAs of set: what decode.Decoder does, the gopacket way.
func (g *gopacketDecoder) record(set *toa.Set, r *decode.Record) {
	var src, dst []byte
	for _, typ := range g.decoded {
		switch typ {
		case layers.LayerTypeIPv4:
			src, dst = g.ip4.SrcIP, g.ip4.DstIP
		case layers.LayerTypeIPv6:
			src, dst = g.ip6.SrcIP, g.ip6.DstIP
		}
	}
	gporacle.Fill(r, set, time.Time{}, src, dst, &g.tcp)
	r.PayloadLen = 0 // compared apart: gopacket keeps only the captured payload
}

// linkType returns the EtherType that a decoded link layer names next.
func (g *gopacketDecoder) linkType(typ gopacket.LayerType) layers.EthernetType {
	switch typ {
	case layers.LayerTypeEthernet:
		return g.eth.EthernetType
	case layers.LayerTypeDot1Q:
		return g.dot1q.Type
	case layers.LayerTypeLinuxSLL:
		return g.sll.EthernetType
	case layers.LayerTypeLinuxSLL2:
		return g.sll2.ProtocolType
	}
	return 0
}
