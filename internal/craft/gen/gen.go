package gen

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/toa"
)

// Format is a capture file format.
type Format uint8

// Formats.
const (
	PCAP Format = iota
	PCAPNG
)

func (f Format) String() string {
	if f == PCAPNG {
		return "pcapng"
	}
	return "pcap"
}

// Placement is where a proxy puts its TOA.
type Placement uint8

// Placements.
const (
	// SYNFirst: on the SYN, right after the fixed header (LVS, Huawei).
	SYNFirst Placement = iota
	// SYNMiddle: on the SYN, between MSS and SACK-permitted.
	SYNMiddle
	// ACKFirst: on the handshake-completing ACK only (DPVS 1.9.6 and later).
	ACKFirst
	// ACKLast: appended after NOP NOP timestamps on the ACK (JD jupiter).
	ACKLast
	// Every: on the SYN, the ACK and the first two data segments (LVS
	// FULLNAT, DPVS before 1.9.6).
	Every
	// NOPRun: on the ACK behind a run of NOPs, then EOL.
	NOPRun
	// Forged: the proxy's TOA first and a forged one after it, on the SYN
	// and the ACK.
	Forged
	// AfterFastOpen: the SYN carries a TCP Fast Open cookie in its
	// experimental form (a 254/8 look-alike) and the data it lets
	// through; the TOA rides on the ACK.
	AfterFastOpen
	numPlacements
)

// Placements lists every Placement.
var Placements = []Placement{SYNFirst, SYNMiddle, ACKFirst, ACKLast, Every, NOPRun, Forged, AfterFastOpen}

var placementNames = [...]string{"syn-first", "syn-middle", "ack-first", "ack-last", "every", "nop-run", "forged", "after-fastopen"}

func (p Placement) String() string {
	if p < numPlacements {
		return placementNames[p]
	}
	return "placement(" + strconv.Itoa(int(p)) + ")"
}

// Addresses. Proxies sit in Trusted; spoofers, clients forging a TOA while
// reaching the server directly, do not.
var (
	Trusted = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:100::/64")}

	proxyV4   = netip.MustParseAddr("198.51.100.0")
	proxyV6   = netip.MustParseAddr("2001:db8:100::")
	spoofV4   = netip.MustParseAddr("203.0.113.128")
	spoofV6   = netip.MustParseAddr("2001:db8:bad::")
	clientV4  = netip.MustParseAddr("203.0.113.0")
	clientV6  = netip.MustParseAddr("2001:db8:c::")
	serversV4 = []netip.AddrPort{netip.MustParseAddrPort("192.0.2.20:8080"), netip.MustParseAddrPort("192.0.2.21:443")}
	serversV6 = []netip.AddrPort{netip.MustParseAddrPort("[2001:db8::20]:443"), netip.MustParseAddrPort("[2001:db8::21]:8080")}
)

// Config describes a capture.
type Config struct {
	Seed  uint64
	Conns int
	// Dialects are used in turn; nil means the default set's.
	Dialects []toa.Dialect
	// Placements are used in turn, shifted by one after each round of
	// dialects so that the pairs vary; nil means all.
	Placements []Placement
	// Framings are used in turn per connection; nil means raw IP. A pcap
	// file holds one link type; pcapng gets an interface per link type.
	Framings []craft.Framing
	// IPv6 is the share of connections carried over IPv6 (their clients'
	// family follows the dialect, not this).
	IPv6 float64
	// Plain is the share of connections without a TOA.
	Plain float64
	// Spoofed is the share of connections from outside Trusted that carry
	// a forged TOA.
	Spoofed float64
	// DataSegments is the number of data segments each way per connection:
	// the plain traffic a kernel filter keeps away.
	DataSegments int
	// Junk is the share of connections followed by a frame the decoder
	// rejects (UDP, ICMP, a later fragment, a cut header, ARP, garbage).
	Junk float64
	// Options is the share of packets with IPv4 options or IPv6 extension
	// headers.
	Options float64
	// Concurrency is how many connections interleave; 0 means 16.
	Concurrency int
	// Start is the first timestamp; zero means 2024-01-02T03:04:05Z.
	Start time.Time
	// Gap is the mean time between packets; 0 means 200µs.
	Gap time.Duration
	// Proxies is how many proxy addresses of each family the peers come
	// from; 0 means 200.
	Proxies int
	// Ports, when positive, is how many source ports each proxy uses, in
	// turn, so that 4-tuples are reused as proxies reuse them: never one
	// still in use by a connection of the capture, whether or not that
	// connection was closed. It must exceed Concurrency. 0 gives every
	// connection a 4-tuple of its own, up to ten million connections.
	Ports int
	// Ends is how connections end; its zero value means 60% with a FIN,
	// 10% with a RST, and the rest never closed.
	Ends Ends
}

// Ends is how the peers end connections, as shares; the rest are never
// closed.
type Ends struct{ FIN, RST float64 }

// Conn is one generated connection, as the server sees it.
type Conn struct {
	Peer, Local netip.AddrPort
	// Client is what the first TOA names; zero for a plain connection.
	Client    toa.Client
	Placement Placement
	Framing   craft.Framing
	// Spoofed reports a peer outside Trusted.
	Spoofed bool
	// Closed reports a connection that the peer ended with FIN or RST,
	// at ClosedAt; Reset that it was a RST.
	Closed   bool
	Reset    bool
	ClosedAt time.Time
	// Opened is the capture time of its SYN.
	Opened time.Time
	// FirstSeen is the capture time of the first segment with a TOA.
	FirstSeen time.Time
}

// Resolvable reports whether a toad trusting the generator's proxies
// (Trusted) resolves the connection: its first TOA came from one of them.
func (c *Conn) Resolvable() bool { return !c.Client.IsZero() && !c.Spoofed }

// Truth is what Write wrote.
type Truth struct {
	Conns []Conn
	// Packets counts every frame; Junk those the decoder rejects.
	Packets, Junk int
	// Carriers counts frames with a TOA; Control those with SYN, FIN or
	// RST and no TOA. The rest is what a kernel filter keeps away.
	Carriers, Control int
}

// Sample is the configuration of testdata/sample.pcapng: a few dozen
// connections in every default dialect and placement, over IPv4 and
// IPv6, on Ethernet with and without a VLAN tag, with plain connections,
// plain data and one spoofed connection.
func Sample() Config {
	return Config{
		Seed:         1,
		Conns:        40,
		Framings:     []craft.Framing{{Link: decode.LinkEthernet}, {Link: decode.LinkEthernet, Tags: []uint16{0x8100}}},
		IPv6:         0.35,
		Plain:        0.1,
		Spoofed:      0.025,
		DataSegments: 2,
		Junk:         0.1,
		Options:      0.05,
		Concurrency:  6,
		Gap:          3 * time.Millisecond,
	}
}

type packet struct {
	iface int
	frame []byte
	mark  uint8 // what the packet's time stamps in Conn
}

const (
	markTOA   = 1 << iota // FirstSeen
	markClose             // ClosedAt
	markOpen              // Opened
)

type conn struct {
	Conn
	packets []packet
	next    int
	slot    int // index in Truth.Conns
}

// Write writes the capture cfg describes to w.
func Write(w io.Writer, format Format, cfg Config) (*Truth, error) {
	g, err := newGenerator(cfg)
	if err != nil {
		return nil, err
	}
	emit, flush, err := g.writer(w, format)
	if err != nil {
		return nil, err
	}
	if err := g.run(emit); err != nil {
		return nil, err
	}
	return &g.truth, flush()
}

// writer returns the functions that write packets to w in format, the
// file header written.
func (g *generator) writer(w io.Writer, format Format) (emit func(ts time.Time, p packet) error, flush func() error, err error) {
	switch format {
	case PCAP:
		if len(g.links) > 1 {
			return nil, nil, fmt.Errorf("gen: a pcap file holds one link type, the framings have %v", g.links)
		}
		bw := bufio.NewWriterSize(w, 1<<16)
		pw := pcapgo.NewWriterNanos(bw)
		if err := pw.WriteFileHeader(65535, layers.LinkType(g.links[0])); err != nil {
			return nil, nil, err
		}
		emit = func(ts time.Time, p packet) error {
			return pw.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(p.frame), Length: len(p.frame)}, p.frame)
		}
		return emit, bw.Flush, nil
	case PCAPNG:
		opts := pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "toad gen"}}
		nw, err := pcapgo.NewNgWriterInterface(w, ngInterface(g.links[0]), opts)
		if err != nil {
			return nil, nil, err
		}
		for _, l := range g.links[1:] {
			if _, err := nw.AddInterface(ngInterface(l)); err != nil {
				return nil, nil, err
			}
		}
		emit = func(ts time.Time, p packet) error {
			return nw.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(p.frame), Length: len(p.frame), InterfaceIndex: p.iface}, p.frame)
		}
		return emit, nw.Flush, nil
	}
	return nil, nil, fmt.Errorf("gen: unknown format %d", format)
}

// WriteSplit writes the capture cfg describes as several files, the way
// tcpdump's -G and -C rotate them or two capture points share a link:
// file(ts, n) says which of the files named names gets packet number n,
// captured at ts, and returns an index into names. Every file gets its
// header, so a file no packet went to holds a capture of none.
func WriteSplit(names []string, format Format, cfg Config, file func(ts time.Time, n int) int) (*Truth, error) {
	g, err := newGenerator(cfg)
	if err != nil {
		return nil, err
	}
	emits := make([]func(time.Time, packet) error, len(names))
	flushes := make([]func() error, len(names))
	for i, name := range names {
		f, err := os.Create(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if emits[i], flushes[i], err = g.writer(f, format); err != nil {
			return nil, err
		}
	}
	n := 0
	err = g.run(func(ts time.Time, p packet) error {
		i := file(ts, n)
		n++
		if i < 0 || i >= len(names) {
			return fmt.Errorf("gen: packet %d at %v goes to file %d of %d", n-1, ts, i, len(names))
		}
		return emits[i](ts, p)
	})
	if err != nil {
		return nil, err
	}
	for _, flush := range flushes {
		if err := flush(); err != nil {
			return nil, err
		}
	}
	return &g.truth, nil
}

// Stream generates the capture cfg describes without writing it: it calls
// frame with every frame, its capture time and its link type, in capture
// order, and conn with every connection once its last frame has gone to
// frame, FirstSeen and ClosedAt set. The frame is only valid during the
// call. The Truth returned counts the packets but holds no Conns, so that
// memory stays flat however many connections there are. A nil conn drops
// them.
func Stream(cfg Config, frame func(ts time.Time, link decode.LinkType, b []byte) error, conn func(*Conn)) (*Truth, error) {
	g, err := newGenerator(cfg)
	if err != nil {
		return nil, err
	}
	if conn == nil {
		conn = func(*Conn) {}
	}
	g.onConn = conn
	err = g.run(func(ts time.Time, p packet) error { return frame(ts, g.links[p.iface], p.frame) })
	if err != nil {
		return nil, err
	}
	return &g.truth, nil
}

// WriteFile is Write to a file named name.
func WriteFile(name string, format Format, cfg Config) (*Truth, error) {
	f, err := os.Create(name)
	if err != nil {
		return nil, err
	}
	t, err := Write(f, format, cfg)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return t, err
}

func ngInterface(l decode.LinkType) pcapgo.NgInterface {
	return pcapgo.NgInterface{Name: l.String(), LinkType: layers.LinkType(l), TimestampResolution: 9}
}

type generator struct {
	cfg      Config
	rng      *rand.Rand
	links    []decode.LinkType
	dialects []toa.Dialect
	places   []Placement
	truth    Truth
	now      time.Time
	started  int
	onConn   func(*Conn)                // Stream's; nil for Write, which keeps truth.Conns
	inUse    map[[2]netip.AddrPort]bool // with Ports, the 4-tuples of the connections being written
	nextPort []int                      // with Ports, each proxy's next port
}

func newGenerator(cfg Config) (*generator, error) {
	if cfg.Dialects == nil {
		cfg.Dialects = toa.DefaultSet().Dialects()
	}
	if cfg.Placements == nil {
		cfg.Placements = Placements
	}
	if cfg.Framings == nil {
		cfg.Framings = []craft.Framing{{Link: decode.LinkRaw}}
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 16
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	}
	if cfg.Gap == 0 {
		cfg.Gap = 200 * time.Microsecond
	}
	if cfg.Proxies == 0 {
		cfg.Proxies = 200
	}
	if cfg.Proxies < 0 || cfg.Ports < 0 || cfg.Ports > 50000 {
		return nil, fmt.Errorf("gen: %d proxies with %d ports each: want a positive number of proxies and 0 to 50000 ports", cfg.Proxies, cfg.Ports)
	}
	if cfg.Ports > 0 && cfg.Ports <= cfg.Concurrency {
		return nil, fmt.Errorf("gen: %d ports for %d connections at once: want more ports, so that a free 4-tuple is always found", cfg.Ports, cfg.Concurrency)
	}
	for _, d := range cfg.Dialects {
		if toa.BuiltinLayout(d) == toa.LayoutNone {
			return nil, fmt.Errorf("gen: dialect %v is not built in", d)
		}
	}
	if len(cfg.Dialects) == 0 || len(cfg.Placements) == 0 {
		return nil, fmt.Errorf("gen: no dialects or placements")
	}
	g := &generator{
		cfg:      cfg,
		rng:      rand.New(rand.NewPCG(cfg.Seed, 0x70ad)),
		dialects: cfg.Dialects,
		places:   cfg.Placements,
		now:      cfg.Start,
	}
	if cfg.Ports > 0 {
		g.inUse = map[[2]netip.AddrPort]bool{}
		g.nextPort = make([]int, cfg.Proxies)
	}
	for _, f := range cfg.Framings {
		if err := decode.CheckLink(f.Link); err != nil {
			return nil, fmt.Errorf("gen: %w", err)
		}
		if g.iface(f.Link) < 0 {
			g.links = append(g.links, f.Link)
		}
	}
	return g, nil
}

func (g *generator) iface(l decode.LinkType) int {
	for i, have := range g.links {
		if have == l {
			return i
		}
	}
	return -1
}

// every reports whether item i is one of an evenly spread share.
func every(i int, share float64) bool {
	return int(float64(i+1)*share) > int(float64(i)*share)
}

func (g *generator) run(emit func(time.Time, packet) error) error {
	active := make([]*conn, 0, g.cfg.Concurrency)
	for len(active) < g.cfg.Concurrency && g.started < g.cfg.Conns {
		active = append(active, g.newConn())
	}
	for len(active) > 0 {
		i := g.rng.IntN(len(active))
		c := active[i]
		g.now = g.now.Add(time.Duration(float64(g.cfg.Gap) * (0.5 + g.rng.Float64())))
		p := c.packets[c.next]
		c.next++
		if p.mark&markTOA != 0 {
			c.FirstSeen = g.now
		}
		if p.mark&markClose != 0 {
			c.ClosedAt = g.now
		}
		if p.mark&markOpen != 0 {
			c.Opened = g.now
		}
		if err := emit(g.now, p); err != nil {
			return err
		}
		g.truth.Packets++
		if c.next == len(c.packets) {
			if g.inUse != nil {
				delete(g.inUse, [2]netip.AddrPort{c.Peer, c.Local})
			}
			if g.onConn != nil {
				g.onConn(&c.Conn)
			} else {
				g.truth.Conns[c.slot] = c.Conn
			}
			if g.started < g.cfg.Conns {
				active[i] = g.newConn()
			} else {
				active = append(active[:i], active[i+1:]...)
			}
		}
	}
	return nil
}

// newConn scripts connection number g.started.
func (g *generator) newConn() *conn {
	i := g.started
	g.started++
	cfg := &g.cfg
	d := g.dialects[i%len(g.dialects)]
	place := g.places[(i/len(g.dialects)+i%len(g.dialects))%len(g.places)]
	framing := cfg.Framings[i%len(cfg.Framings)]
	v6 := g.rng.Float64() < cfg.IPv6
	switch framing.Link {
	case decode.LinkIPv4:
		v6 = false
	case decode.LinkIPv6:
		v6 = true
	}
	spoofed := every(i, cfg.Spoofed)
	plainConn := !spoofed && every(i+7, cfg.Plain)

	proxy := i % cfg.Proxies
	host := uint32(1 + proxy)
	port := uint16(10000 + (i/cfg.Proxies)%50000)
	var peer, local netip.AddrPort
	if v6 {
		local = serversV6[g.rng.IntN(len(serversV6))]
	} else {
		local = serversV4[g.rng.IntN(len(serversV4))]
	}
	peerAt := func(port uint16) netip.AddrPort {
		switch {
		case v6 && spoofed:
			return netip.AddrPortFrom(addAddr(spoofV6, host), port)
		case v6:
			return netip.AddrPortFrom(addAddr(proxyV6, host), port)
		case spoofed && g.inUse != nil:
			return netip.AddrPortFrom(addAddr(spoofV4, 1+uint32(i%120)), port)
		case spoofed:
			return netip.AddrPortFrom(addAddr(spoofV4, 1+uint32(i%120)), uint16(10000+(i/120)%50000))
		}
		return netip.AddrPortFrom(addAddr(proxyV4, host), port)
	}
	peer = peerAt(port)
	if g.inUse != nil {
		// The proxy's next port whose 4-tuple is free: ports go round.
		for {
			port = uint16(10000 + g.nextPort[proxy])
			g.nextPort[proxy] = (g.nextPort[proxy] + 1) % cfg.Ports
			if peer = peerAt(port); !g.inUse[[2]netip.AddrPort{peer, local}] {
				break
			}
		}
		g.inUse[[2]netip.AddrPort{peer, local}] = true
	}
	client := g.client(d)
	c := &conn{Conn: Conn{Peer: peer, Local: local, Placement: place, Framing: framing, Spoofed: spoofed}}
	var opt, forged []byte
	if !plainConn {
		opt = craft.TOA(d, client)
		forged = craft.TOA(d, g.client(d))
		c.Client = decodeClient(d, opt)
	}

	rf := framing
	rf.PacketType = 4 // outgoing, for the cooked captures
	ifc := g.iface(framing.Link)
	isn, risn := g.rng.Uint32(), g.rng.Uint32()
	seq, rseq := isn+1, risn+1
	ts := craft.Timestamps(g.rng.Uint32(), 0)
	marked := false
	add := func(in bool, s craft.Segment) {
		if in {
			s.Src, s.Dst = peer, local
		} else {
			s.Src, s.Dst = local, peer
		}
		if g.rng.Float64() < cfg.Options {
			if v6 {
				s.Ext = extHeaders[g.rng.IntN(len(extHeaders))]
			} else {
				s.IPOptions = ipOptions[g.rng.IntN(len(ipOptions))]
			}
		}
		s.ID = uint16(g.rng.Uint32())
		ip := s.IP()
		var mark uint8
		if in && opt != nil && !marked && containsTOA(s.Options, opt) {
			mark |= markTOA
			marked = true
		}
		if in && s.Flags&(decode.FIN|decode.RST) != 0 {
			mark |= markClose
		}
		if in && s.Flags == decode.SYN {
			mark |= markOpen
		}
		f := framing
		if !in {
			f = rf
		}
		c.packets = append(c.packets, packet{iface: ifc, frame: f.Frame(ip), mark: mark})
		switch {
		case in && opt != nil && containsTOA(s.Options, opt):
			g.truth.Carriers++
		case s.Flags&(decode.SYN|decode.FIN|decode.RST) != 0:
			g.truth.Control++
		}
	}
	// SYN.
	synOpts := craft.Opts(craft.MSS(1460), craft.SACKPerm, ts, craft.NOP, craft.WScale(7))
	var synData []byte
	switch place {
	case SYNFirst, Every:
		synOpts = craft.Opts(opt, synOpts)
	case SYNMiddle:
		synOpts = craft.Opts(craft.MSS(1460), opt, craft.SACKPerm, ts, craft.NOP, craft.WScale(7))
	case Forged:
		synOpts = craft.Opts(opt, forged)
		for _, o := range [][]byte{craft.MSS(1460), craft.NOP, craft.WScale(7)} {
			if len(synOpts)+len(o) <= 40 {
				synOpts = craft.Opts(synOpts, o)
			}
		}
	case AfterFastOpen:
		synOpts = craft.Opts(craft.MSS(1460), craft.FastOpen(g.bytes(4)), craft.NOP, craft.WScale(7))
		synData = fastOpenData
	}
	add(true, craft.Segment{Flags: decode.SYN, Seq: isn, Options: synOpts, Payload: synData})
	seq += uint32(len(synData)) // the server takes it with the SYN
	add(false, craft.Segment{Flags: decode.SYN | decode.ACK, Seq: risn, Ack: seq, Options: craft.Opts(craft.MSS(1460), craft.SACKPerm, ts, craft.NOP, craft.WScale(7))})

	// The ACK that completes the handshake.
	ackOpts := craft.Opts(craft.NOP, craft.NOP, ts)
	switch place {
	case ACKFirst, Every, AfterFastOpen:
		ackOpts = craft.Opts(opt, ackOpts)
	case ACKLast:
		ackOpts = craft.Opts(ackOpts, opt)
	case NOPRun:
		n := 1 + g.rng.IntN(40-len(opt)-2)
		if opt == nil {
			n = 3
		}
		ackOpts = craft.Opts(nops(n), opt, []byte{0})
	case Forged:
		ackOpts = craft.Opts(opt, forged)
	}
	add(true, craft.Segment{Flags: decode.ACK, Seq: seq, Ack: rseq, Options: ackOpts})

	// Data both ways.
	for k := range cfg.DataSegments {
		o := craft.Opts(craft.NOP, craft.NOP, ts)
		if place == Every && k < 2 {
			o = craft.Opts(opt, o)
		}
		req := g.bytes(20 + g.rng.IntN(200))
		add(true, craft.Segment{Flags: decode.ACK | decode.PSH, Seq: seq, Ack: rseq, Options: o, Payload: req})
		seq += uint32(len(req))
		resp := g.bytes(20 + g.rng.IntN(600))
		add(false, craft.Segment{Flags: decode.ACK | decode.PSH, Seq: rseq, Ack: seq, Options: craft.Opts(craft.NOP, craft.NOP, ts), Payload: resp})
		rseq += uint32(len(resp))
	}

	// Close: most with FIN, some with RST, some left open.
	fin, rst := g.ends()
	switch {
	case fin:
		add(true, craft.Segment{Flags: decode.FIN | decode.ACK, Seq: seq, Ack: rseq, Options: craft.Opts(craft.NOP, craft.NOP, ts)})
		add(false, craft.Segment{Flags: decode.FIN | decode.ACK, Seq: rseq, Ack: seq + 1, Options: craft.Opts(craft.NOP, craft.NOP, ts)})
		add(true, craft.Segment{Flags: decode.ACK, Seq: seq + 1, Ack: rseq + 1, Options: craft.Opts(craft.NOP, craft.NOP, ts)})
		c.Closed = true
	case rst:
		add(true, craft.Segment{Flags: decode.RST | decode.ACK, Seq: seq, Ack: rseq})
		c.Closed, c.Reset = true, true
	}

	if every(i+3, cfg.Junk) {
		c.packets = append(c.packets, packet{iface: ifc, frame: g.junk(framing, v6)})
		g.truth.Junk++
	}
	if g.onConn == nil {
		g.truth.Conns = append(g.truth.Conns, c.Conn)
		c.slot = len(g.truth.Conns) - 1
	}
	return c
}

// ends draws how the next connection ends.
func (g *generator) ends() (fin, rst bool) {
	e := g.cfg.Ends
	if e == (Ends{}) {
		r := g.rng.IntN(10)
		return r < 6, r == 6
	}
	x := g.rng.Float64()
	return x < e.FIN, x >= e.FIN && x < e.FIN+e.RST
}

// containsTOA reports whether opts holds opt as an option.
func containsTOA(opts, opt []byte) bool {
	if len(opt) == 0 {
		return false
	}
	for i := 0; i+len(opt) <= len(opts); i++ {
		if string(opts[i:i+len(opt)]) == string(opt) {
			return true
		}
	}
	return false
}

func decodeClient(d toa.Dialect, opt []byte) toa.Client {
	set := new(toa.Set)
	_ = set.Enable(d, toa.BuiltinLayout(d))
	f, err := set.Parse(opt, 0)
	if err != nil || f.Count == 0 {
		panic(fmt.Sprintf("gen: option %x does not parse as %v", opt, d))
	}
	return f.First
}

// fastOpenData is what a SYN with a Fast Open cookie carries.
var fastOpenData = []byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")

// fastOpenExID is the experiment id of TCP Fast Open's experimental
// option (254, then 0xF989). A kind 253 or 254 TOA whose client port reads
// the same is, in a SYN with data, a Fast Open cookie to every reader
// (toa.Set.Parse skips it); the generator never makes one, so that its
// ground truth holds.
const fastOpenExID = 0xF989

// client returns a client address for dialect d.
func (g *generator) client(d toa.Dialect) netip.AddrPort {
	port := uint16(1024 + g.rng.IntN(64000))
	if port == fastOpenExID {
		port++
	}
	if toa.BuiltinLayout(d).IPv6() {
		return netip.AddrPortFrom(addAddr(clientV6, 1+g.rng.Uint32N(1<<20)), port)
	}
	return netip.AddrPortFrom(addAddr(clientV4, 1+g.rng.Uint32N(126)), port)
}

func (g *generator) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.rng.Uint32())
	}
	return b
}

func nops(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 1
	}
	return b
}

// addAddr returns a plus n in its low 32 bits.
func addAddr(a netip.Addr, n uint32) netip.Addr {
	b := a.As16()
	v := uint32(b[12])<<24 | uint32(b[13])<<16 | uint32(b[14])<<8 | uint32(b[15])
	v += n
	b[12], b[13], b[14], b[15] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	out := netip.AddrFrom16(b)
	if a.Is4() {
		return out.Unmap()
	}
	return out
}

var (
	extHeaders = [][]craft.Ext{
		{{Type: 0, Len: 8}},
		{{Type: 60, Len: 16}},
		{{Type: 0, Len: 8}, {Type: 60, Len: 24}},
		{{Type: 43, Len: 8}},
		{{Type: 44}}, // an atomic fragment
	}
	ipOptions = [][]byte{
		{1, 1, 1, 0},
		{7, 7, 4, 0, 0, 0, 0}, // record route, one empty slot
	}
)

// junk returns a frame the decoder rejects.
func (g *generator) junk(f craft.Framing, v6 bool) []byte {
	src, dst := netip.MustParseAddrPort("192.0.2.99:53"), netip.MustParseAddrPort("192.0.2.20:53")
	if v6 {
		src, dst = netip.MustParseAddrPort("[2001:db8::99]:53"), netip.MustParseAddrPort("[2001:db8::20]:53")
	}
	s := craft.Segment{Src: src, Dst: dst, Flags: decode.ACK, Payload: g.bytes(32)}
	switch g.rng.IntN(5) {
	case 0: // UDP or ICMP: rewrite the protocol
		ip := s.IP()
		proto := []byte{17, 1}[g.rng.IntN(2)]
		if v6 {
			ip[6] = proto
		} else {
			ip[9] = proto
		}
		return f.Frame(ip)
	case 1: // a later fragment
		if v6 {
			s.Ext = []craft.Ext{{Type: 44, FragOffset: 100}}
		} else {
			s.FragOffset = 100
		}
		return f.Frame(s.IP())
	case 2: // a header cut short
		fr := f.Frame(s.IP())
		return fr[:len(fr)-len(s.Payload)-10]
	case 3: // not IP: ARP where the framing can say so, else garbage
		switch f.Link {
		case decode.LinkEthernet, decode.LinkLinuxSLL, decode.LinkLinuxSLL2:
			fr := f.Frame(make([]byte, 28))
			setEtherType(f, fr, 0x0806)
			return fr
		}
		return f.Frame(append([]byte{0x00}, g.bytes(27)...))
	default: // a bad IP version
		ip := s.IP()
		ip[0] = 0x50 | ip[0]&0x0f
		fr := f.Frame(ip)
		return fr
	}
}

// setEtherType overwrites the protocol field of a frame f built.
func setEtherType(f craft.Framing, fr []byte, et uint16) {
	var at int
	switch f.Link {
	case decode.LinkEthernet:
		at = 12 + 4*len(f.Tags)
	case decode.LinkLinuxSLL:
		at = 14
	case decode.LinkLinuxSLL2:
		at = 0
	}
	fr[at], fr[at+1] = byte(et>>8), byte(et)
}
