package replaycmp

import (
	"fmt"
	"math"
	"os"
	"time"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/internal/craft/gen"
)

// DefaultData is the share of packets that are plain data, unless a Mix
// says otherwise: a server behind proxies sees mostly data.
const DefaultData = 0.95

// Mix describes the traffic of a generated capture: connections from L4
// proxies in every default TOA dialect and every placement of the option,
// 30% over IPv6, a fifth of them behind an 802.1Q tag, a few with IP options
// or IPv6 extension headers; 5% of the connections carry no TOA, 1% come
// from outside the trusted proxy ranges with a forged one, and 1% are
// followed by a frame no decoder takes (UDP, ICMP, a later fragment, a cut
// header, ARP, a bad IP version).
type Mix struct {
	// Conns is how many connections, one handshake each.
	Conns int
	// Data is the share of packets that carry no TOA and no SYN, FIN or
	// RST: the data segments (and bare ACKs) that a kernel filter keeps
	// away. The generator gets as many data segments per connection as it
	// takes to reach it; Capture reports the share reached.
	Data float64
	// Seed makes the capture; the same Mix gives the same bytes.
	Seed uint64
}

// config returns the generator's configuration with segs data segments
// each way per connection.
func (m Mix) config(segs int) gen.Config {
	return gen.Config{
		Seed:  m.Seed,
		Conns: m.Conns,
		Framings: []craft.Framing{
			{Link: decode.LinkEthernet}, {Link: decode.LinkEthernet}, {Link: decode.LinkEthernet}, {Link: decode.LinkEthernet},
			{Link: decode.LinkEthernet, Tags: []uint16{0x8100}},
		},
		IPv6:         0.3,
		Plain:        0.05,
		Spoofed:      0.01,
		DataSegments: segs,
		Junk:         0.01,
		Options:      0.02,
		Concurrency:  256,
	}
}

// Config returns the generator's configuration for m.
func (m Mix) Config() (gen.Config, error) {
	if m.Conns < 0 || m.Data < 0 || m.Data >= 1 || math.IsNaN(m.Data) {
		return gen.Config{}, fmt.Errorf("invalid traffic mix %+v: want 0 or more connections and a data share in [0, 1)", m)
	}
	segs, err := dataSegments(m)
	if err != nil {
		return gen.Config{}, err
	}
	return m.config(segs), nil
}

// dataSegments returns the fewest data segments each way per connection
// that make m.Data of the packets plain, in a sample of the mix: its first
// 1000 connections, or 200 at least. With two segments and more, each
// added segment each way adds about two plain packets per connection and
// nothing else, which gives a first guess; samples around it settle the
// number.
func dataSegments(m Mix) (int, error) {
	sample := m
	sample.Conns = min(max(m.Conns, 200), 1000)
	// share returns the plain share of the sample with segs segments, and
	// the plain and other packets per connection.
	share := func(segs int) (s, plain, other float64, err error) {
		t, err := gen.Stream(sample.config(segs), func(time.Time, decode.LinkType, []byte) error { return nil }, nil)
		if err != nil {
			return 0, 0, 0, err
		}
		o := float64(t.Carriers + t.Control)
		p := float64(t.Packets) - o
		return p / (p + o), p / float64(sample.Conns), o / float64(sample.Conns), nil
	}
	reaches := func(segs int) (bool, error) {
		s, _, _, err := share(segs)
		return s >= m.Data, err
	}
	_, p, o, err := share(2)
	if err != nil {
		return 0, err
	}
	// (p + 2k) / (p + 2k + o) >= Data, with k segments past the second.
	segs := 2 + max(0, int(math.Ceil((m.Data/(1-m.Data)*o-p)/2)))
	for {
		ok, err := reaches(segs)
		if err != nil {
			return 0, err
		}
		if !ok {
			segs++
			continue
		}
		if segs == 0 {
			return 0, nil
		}
		fewer, err := reaches(segs - 1)
		if err != nil {
			return 0, err
		}
		if !fewer {
			return segs, nil
		}
		segs--
	}
}

// Capture is a generated capture file and what it holds.
type Capture struct {
	Path string
	Mix  Mix
	// Packets is how many frames the file holds; Bytes its size.
	Packets int
	Bytes   int64
	// Data is the share of packets without TOA, SYN, FIN or RST.
	Data float64
	// DataSegments is how many data segments each way each connection got.
	DataSegments int
	// Truth is the mappings a tool must find.
	Truth Mappings
	// Generated is how long writing the file took.
	Generated time.Duration
}

// WriteCapture writes the capture of m to a pcap file at path.
func WriteCapture(path string, m Mix) (*Capture, error) {
	cfg, err := m.Config()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	truth, err := gen.WriteFile(path, gen.PCAP, cfg)
	if err != nil {
		return nil, fmt.Errorf("write capture: %w", err)
	}
	c := &Capture{Path: path, Mix: m, Packets: truth.Packets, DataSegments: cfg.DataSegments, Generated: time.Since(start)}
	if truth.Packets > 0 {
		c.Data = float64(truth.Packets-truth.Carriers-truth.Control) / float64(truth.Packets)
	}
	for i := range truth.Conns {
		c.Truth.Truth(&truth.Conns[i])
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	c.Bytes = fi.Size()
	return c, nil
}
