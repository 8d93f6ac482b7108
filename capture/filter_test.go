package capture

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/net/bpf"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/internal/craft/gen"
	"github.com/toad-project/toad/toa"
)

var (
	proxy4  = netip.MustParseAddrPort("198.51.100.10:40001")
	server4 = netip.MustParseAddrPort("192.0.2.20:8080")
	proxy6  = netip.MustParseAddrPort("[2001:db8:100::10]:40001")
	server6 = netip.MustParseAddrPort("[2001:db8::20]:443")
	client4 = netip.MustParseAddrPort("203.0.113.7:51234")
	client6 = netip.MustParseAddrPort("[2001:db8:c::7]:51234")
)

// framings are the link framings a capture can come in.
var framings = []craft.Framing{
	{Link: decode.LinkRaw},
	{Link: decode.LinkEthernet},
	{Link: decode.LinkEthernet, Tags: []uint16{0x8100}},
	{Link: decode.LinkEthernet, Tags: []uint16{0x88A8, 0x8100}},
	{Link: decode.LinkEthernet, Tags: []uint16{0x9100, 0x88A8, 0x8100}},
	{Link: decode.LinkLinuxSLL},
	{Link: decode.LinkLinuxSLL2},
}

func clientFor(d toa.Dialect) netip.AddrPort {
	if toa.BuiltinLayout(d).IPv6() {
		return client6
	}
	return client4
}

// placements put a TOA at every position a sender uses, and a few more.
func placements(t []byte) map[string][]byte {
	ts := craft.Timestamps(1, 2)
	m := map[string][]byte{
		"first":          craft.Opts(t, craft.MSS(1460)),
		"only":           t,
		"after-nop-ts":   craft.Opts(craft.NOP, craft.NOP, ts, t),
		"after-mss-sack": craft.Opts(craft.MSS(1460), craft.SACKPerm, t, craft.NOP, craft.WScale(7)),
		"before-eol":     craft.Opts(craft.NOP, t, []byte{0}),
		"two-toas":       craft.Opts(t, t),
		"after-tfo":      craft.Opts(craft.FastOpen([]byte{1, 2, 3, 4}), t),
		"after-uto":      craft.Opts([]byte{28, 4, 0x80, 0x10}, t),
	}
	// Behind a run of NOPs, up to the last offset where it fits.
	for n := 1; n+len(t) <= 40; n++ {
		opts := make([]byte, n, n+len(t))
		for i := range opts {
			opts[i] = 1
		}
		m[fmt.Sprintf("after-%d-nops", n)] = append(opts, t...)
	}
	return m
}

type sample struct {
	name  string
	seg   craft.Segment
	frame craft.Framing
}

// corpus returns TOA carriers in every built-in dialect, placement, IP
// family and framing, with IPv4 options and IPv6 extension headers.
func corpus() []sample {
	var out []sample
	for _, in := range toa.Builtin {
		d := in.Dialect
		opt := craft.TOA(d, clientFor(d))
		for pname, opts := range placements(opt) {
			if len(opts) > 40 {
				continue
			}
			for _, fam := range []string{"v4", "v4opts", "v6", "v6ext"} {
				seg := craft.Segment{Src: proxy4, Dst: server4, Flags: decode.ACK, Seq: 1, Ack: 2, Options: opts, Payload: []byte("GET / HTTP/1.1\r\n")}
				switch fam {
				case "v4opts":
					seg.IPOptions = []byte{1, 1, 1, 0}
				case "v6", "v6ext":
					seg.Src, seg.Dst = proxy6, server6
				}
				if fam == "v6ext" {
					seg.Ext = []craft.Ext{{Type: 0, Len: 8}, {Type: 60, Len: 16}}
				}
				for _, f := range framings {
					out = append(out, sample{fmt.Sprintf("%v/%s/%s/%v%x", d, pname, fam, f.Link, f.Tags), seg, f})
				}
			}
		}
	}
	return out
}

// plain returns segments the filter must keep in the kernel: data and
// pure ACKs without a TOA, with the options real stacks send.
func plain() []craft.Segment {
	ts := craft.Timestamps(100, 200)
	var out []craft.Segment
	for _, opts := range [][]byte{
		nil,
		craft.Opts(craft.NOP, craft.NOP, ts),
		craft.Opts(craft.NOP, craft.NOP, ts, craft.NOP, craft.NOP, []byte{5, 10, 0, 0, 0, 1, 0, 0, 0, 2}), // SACK block
		craft.Opts([]byte{28, 4, 0x80, 0x10}),                        // user timeout, kind 28 at length 4
		craft.Opts([]byte{254, 6, 0xAC, 0xCE, 0, 0}),                 // AccECN experiment
		craft.Opts(craft.NOP, craft.NOP, craft.NOP, ts),              // odd padding
		craft.Opts([]byte{0}, craft.TOA(toa.Kind200V4, client4)[1:]), // EOL, then bytes that are not options
		craft.Opts(craft.NOP, []byte{200, 1}),                        // malformed length
		craft.Opts([]byte{200, 30, 0, 0}),                            // length past the header
	} {
		for _, src := range []netip.AddrPort{proxy4, proxy6} {
			dst := server4
			if src.Addr().Is6() {
				dst = server6
			}
			for _, flags := range []decode.Flags{decode.ACK, decode.ACK | decode.PSH, decode.ACK | decode.URG | decode.ECE} {
				out = append(out, craft.Segment{Src: src, Dst: dst, Flags: flags, Seq: 10, Ack: 20, Options: opts, Payload: []byte("data")})
			}
		}
	}
	return out
}

func vm(t testing.TB, f Filter, set *toa.Set) *bpf.VM {
	t.Helper()
	prog, err := Program(f, set, 512)
	if err != nil {
		t.Fatalf("Program(%v): %v", f, err)
	}
	v, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatalf("NewVM(%v): %v", f, err)
	}
	return v
}

func run(t testing.TB, v *bpf.VM, pkt []byte) bool {
	t.Helper()
	n, err := v.Run(pkt)
	if err != nil {
		t.Fatalf("VM: %v", err)
	}
	return n > 0
}

// TestProgramPassesEveryTOA runs the filter in bpf.VM over the corpus: every
// frame in which the decoder finds a TOA passes, in every framing (the
// filter sees the network header, as a cooked socket shows it).
func TestProgramPassesEveryTOA(t *testing.T) {
	all, err := toa.ParseSet("all")
	if err != nil {
		t.Fatal(err)
	}
	dec := decode.New(all)
	full := vm(t, FilterTOA, all)
	tcp := vm(t, FilterTCP, all)
	n := 0
	for _, s := range corpus() {
		ip := s.seg.IP()
		var r decode.Record
		if why := dec.Decode(s.frame.Link, s.frame.Frame(ip), time.Time{}, &r); why != decode.OK {
			t.Fatalf("%s: decode: %v", s.name, why)
		}
		if !r.HasTOA() {
			continue // a Fast Open cookie alone, say
		}
		n++
		if !run(t, full, ip) {
			t.Errorf("%s: filter %v drops a segment whose TOA the decoder reads (%v)", s.name, FilterTOA, r.TOA)
		}
		if !run(t, tcp, ip) {
			t.Errorf("%s: filter %v drops a TCP segment", s.name, FilterTCP)
		}
	}
	if n < 5000 {
		t.Errorf("corpus has %d TOA carriers, want thousands", n)
	}
}

// TestProgramPassesHandshakeAndClose: SYN, FIN and RST pass without a TOA.
func TestProgramPassesHandshakeAndClose(t *testing.T) {
	full := vm(t, FilterTOA, nil)
	for _, flags := range []decode.Flags{decode.SYN, decode.SYN | decode.ACK, decode.FIN | decode.ACK, decode.RST, decode.RST | decode.ACK, decode.FIN | decode.PSH | decode.ACK} {
		for _, src := range []netip.AddrPort{proxy4, proxy6} {
			dst := server4
			if src.Addr().Is6() {
				dst = server6
			}
			seg := craft.Segment{Src: src, Dst: dst, Flags: flags, Options: craft.Opts(craft.MSS(1460), craft.NOP, craft.WScale(7))}
			if !run(t, full, seg.IP()) {
				t.Errorf("%v %v: dropped, want passed", src, flags)
			}
		}
	}
}

// TestProgramDropsPlainData: data and ACKs without a TOA stay in the kernel.
func TestProgramDropsPlainData(t *testing.T) {
	full := vm(t, FilterTOA, nil)
	dec := decode.New(nil)
	for _, s := range plain() {
		ip := s.IP()
		var r decode.Record
		if why := dec.Decode(decode.LinkRaw, ip, time.Time{}, &r); why == decode.OK && r.HasTOA() {
			t.Fatalf("%v options %x: the decoder finds a TOA in a plain segment", s.Src, s.Options)
		}
		if run(t, full, ip) {
			t.Errorf("%v %v options %x: passed, want dropped", s.Src, s.Flags, s.Options)
		}
	}
}

// TestProgramIPSelection covers what is not a TCP segment with options.
func TestProgramIPSelection(t *testing.T) {
	udp4 := craft.Segment{Src: proxy4, Dst: server4, Flags: decode.ACK}
	ip := udp4.IP()
	ip[9] = 17 // UDP; the checksum no longer matters to a filter
	later := craft.Segment{Src: proxy4, Dst: server4, Flags: decode.SYN, FragOffset: 10}
	first := craft.Segment{Src: proxy4, Dst: server4, Flags: decode.ACK, MoreFragments: true, Options: craft.TOA(toa.Kind200V4, client4)}
	udp6 := craft.Segment{Src: proxy6, Dst: server6, Flags: decode.ACK}
	ip6 := udp6.IP()
	ip6[6] = 17
	hbh := craft.Segment{Src: proxy6, Dst: server6, Flags: decode.ACK, Ext: []craft.Ext{{Type: 0, Len: 8}}}
	frag6 := craft.Segment{Src: proxy6, Dst: server6, Flags: decode.ACK, Ext: []craft.Ext{{Type: 44}}}
	tcp4 := craft.Segment{Src: proxy4, Dst: server4, Flags: decode.ACK}
	for _, c := range []struct {
		name     string
		pkt      []byte
		toa, tcp bool
	}{
		{"udp over ipv4", ip, false, false},
		{"ipv4 later fragment", later.IP(), false, true},
		{"ipv4 first fragment with a TOA", first.IP(), true, true},
		{"udp over ipv6", ip6, false, false},
		{"ipv6 hop-by-hop", hbh.IP(), true, true},
		{"ipv6 fragment header", frag6.IP(), true, true},
		{"tcp without options", tcp4.IP(), false, true},
		{"arp-like", []byte{0, 1, 8, 0, 6, 4, 0, 1}, false, false},
		{"empty", nil, false, false},
		{"truncated ipv4", ip[:12], false, false},
		{"truncated ipv6", ip6[:30], false, false},
	} {
		if got := run(t, vm(t, FilterTOA, nil), c.pkt); got != c.toa {
			t.Errorf("%s: filter toa passes = %v, want %v", c.name, got, c.toa)
		}
		if got := run(t, vm(t, FilterTCP, nil), c.pkt); got != c.tcp {
			t.Errorf("%s: filter tcp passes = %v, want %v", c.name, got, c.tcp)
		}
	}
}

// TestProgramDialectSets: a set's dialects pass, others do not, lengths
// included.
func TestProgramDialectSets(t *testing.T) {
	for _, c := range []struct {
		spec string
		opt  []byte
		want bool
	}{
		{"200/8", craft.TOA(toa.Kind200V4, client4), true},
		{"200/8", craft.TOA(toa.Kind254V4, client4), false},
		{"254/20", craft.TOA(toa.Kind254V4, client4), false},
		{"254/20", craft.TOA(toa.Kind254V6, client6), true},
		{"default", craft.TOA(toa.Kind253V4, client4), false},
		{"all", craft.TOA(toa.Kind253V4, client4), true},
		{"240=port+ipv4", []byte{240, 8, 0, 80, 203, 0, 113, 9}, true},
		{"240=port+ipv4", []byte{241, 8, 0, 80, 203, 0, 113, 9}, false},
		{"none", craft.TOA(toa.Kind200V4, client4), false},
	} {
		set, err := toa.ParseSet(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		seg := craft.Segment{Src: proxy4, Dst: server4, Flags: decode.ACK, Options: craft.Opts(craft.NOP, craft.NOP, craft.Timestamps(1, 2), c.opt)}
		if got := run(t, vm(t, FilterTOA, set), seg.IP()); got != c.want {
			t.Errorf("set %q, option %x: passes = %v, want %v", c.spec, c.opt, got, c.want)
		}
	}
}

// TestDirectionPrefix runs the prefix's logic in the VM with its two
// ancillary loads replaced by the values the kernel would load.
func TestDirectionPrefix(t *testing.T) {
	for _, c := range []struct {
		pktType, proto uint32
		want           bool
	}{
		{0, etherIPv4, true},  // to us
		{0, etherIPv6, true},  //
		{1, etherIPv4, true},  // broadcast
		{3, etherIPv6, true},  // to another host (promiscuous)
		{4, etherIPv4, false}, // outgoing
		{4, etherIPv6, false}, //
		{0, 0x0806, false},    // ARP
		{0, 0x8100, false},    // a VLAN tag left in place
	} {
		prog := directionPrefix()
		for i, ins := range prog {
			if ext, ok := ins.(bpf.LoadExtension); ok {
				v := c.proto
				if ext.Num == bpf.ExtType {
					v = c.pktType
				}
				prog[i] = bpf.LoadConstant{Dst: bpf.RegA, Val: v}
			}
		}
		prog = append(prog, bpf.RetConstant{Val: 1})
		v, err := bpf.NewVM(prog)
		if err != nil {
			t.Fatal(err)
		}
		if got := run(t, v, []byte{0x45}); got != c.want {
			t.Errorf("pkttype %d proto %#04x: passes = %v, want %v", c.pktType, c.proto, got, c.want)
		}
	}
	raw, err := socketProgram(FilterTOA, nil, 512)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > 4096 {
		t.Errorf("program has %d instructions, the kernel takes at most 4096", len(raw))
	}
	t.Logf("filter %v: %d instructions with the prefix", FilterTOA, len(raw))
}

// TestAttachFilterFallsBack: a kernel that refuses long programs gets a
// shorter one, and one that refuses all gets none; nothing fails.
func TestAttachFilterFallsBack(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct {
		limit int // the longest program accepted; -1 none
		want  Filter
	}{
		{4096, FilterTOA},
		{100, FilterTCP},
		{8, FilterDirection},
		{-1, FilterNone},
	} {
		var tried []int
		attach := func(p []bpf.RawInstruction) error {
			tried = append(tried, len(p))
			if len(p) > c.limit {
				return errors.New("cannot allocate memory")
			}
			return nil
		}
		if got := attachFilter(attach, FilterTOA, nil, 512, log); got != c.want {
			t.Errorf("limit %d: attached %v, want %v (tried lengths %v)", c.limit, got, c.want, tried)
		}
	}
	none := attachFilter(func([]bpf.RawInstruction) error { return errors.New("never called") }, FilterNone, nil, 512, log)
	if none != FilterNone {
		t.Errorf("want FilterNone asked: got %v", none)
	}
}

// FuzzProgram checks on arbitrary packets that the filter passes every
// segment in which the decoder finds a TOA, and every SYN, FIN and RST.
func FuzzProgram(f *testing.F) {
	for _, s := range corpus()[:200] {
		f.Add(s.seg.IP())
	}
	for _, s := range plain() {
		f.Add(s.IP())
	}
	all, _ := toa.ParseSet("all")
	progs := map[*toa.Set]*bpf.VM{}
	for _, set := range []*toa.Set{toa.DefaultSet(), all} {
		prog, err := Program(FilterTOA, set, 512)
		if err != nil {
			f.Fatal(err)
		}
		v, err := bpf.NewVM(prog)
		if err != nil {
			f.Fatal(err)
		}
		progs[set] = v
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for set, v := range progs {
			var r decode.Record
			if decode.New(set).Decode(decode.LinkRaw, pkt, time.Time{}, &r) != decode.OK {
				continue
			}
			if !r.HasTOA() && r.Flags&(decode.SYN|decode.FIN|decode.RST) == 0 {
				continue
			}
			n, err := v.Run(pkt)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Errorf("set %v: filter drops %x, in which the decoder finds TOA %v flags %v", set, pkt, r.TOA, r.Flags)
			}
		}
	})
}

// TestProgramOnGeneratedTraffic runs the filter over a generated mix of
// handshakes, data, closes and junk: it passes every TOA carrier and every
// SYN, FIN and RST, and drops every plain segment (IPv6 ones with
// extension headers aside, which go to user space whole).
func TestProgramOnGeneratedTraffic(t *testing.T) {
	data, truth := generate(t, gen.PCAP, gen.Config{
		Seed: 11, Conns: 2000, IPv6: 0.3, Plain: 0.05, Spoofed: 0.01, DataSegments: 8, Junk: 0.02, Options: 0.05,
	})
	r, err := pcapgo.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	v := vm(t, FilterTOA, nil)
	dec := decode.New(nil)
	var passed, packets, carriers int
	for {
		ip, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		packets++
		pass := run(t, v, ip)
		if pass {
			passed++
		}
		var rec decode.Record
		if dec.Decode(decode.LinkRaw, ip, time.Time{}, &rec) != decode.OK {
			continue
		}
		want := rec.HasTOA() || rec.Flags&(decode.SYN|decode.FIN|decode.RST) != 0
		if rec.HasTOA() {
			carriers++
		}
		if want && !pass || !want && pass && !(ip[0]>>4 == 6 && ip[6] != 6) {
			t.Errorf("%v->%v %v toa %v: passes %v, want %v", rec.Peer, rec.Local, rec.Flags, rec.TOA, pass, want)
		}
	}
	if packets != truth.Packets || carriers != truth.Carriers {
		t.Fatalf("read %d packets, %d carriers; generated %d, %d", packets, carriers, truth.Packets, truth.Carriers)
	}
	t.Logf("the filter passes %d of %d packets (%.1f%%)", passed, packets, 100*float64(passed)/float64(packets))
}

// checkClassic applies the kernel's checks on a classic program that
// bpf.VM does not (net/core/filter.c, bpf_check_classic and
// check_load_and_stores): every instruction is taken to follow the one
// before it, returns included, and a scratch cell must be written on
// every such path before it is read.
func checkClassic(prog []bpf.RawInstruction) error {
	const (
		clsMask = 0x07
		ld, ldx = 0x00, 0x01
		st, stx = 0x02, 0x03
		jmp     = 0x05
		mem     = 0x60
		ja      = 0x00
	)
	masks := make([]uint16, len(prog))
	for i := range masks {
		masks[i] = 0xffff
	}
	var valid uint16
	for pc, ins := range prog {
		valid &= masks[pc]
		switch cls := ins.Op & clsMask; {
		case cls == st || cls == stx:
			valid |= 1 << ins.K
		case (cls == ld || cls == ldx) && ins.Op&0xe0 == mem:
			if valid&(1<<ins.K) == 0 {
				return fmt.Errorf("instruction %d reads M[%d] before it is written", pc, ins.K)
			}
		case cls == jmp && ins.Op&0xf0 == ja:
			masks[pc+1+int(ins.K)] &= valid
			valid = 0xffff
		case cls == jmp:
			masks[pc+1+int(ins.Jt)] &= valid
			masks[pc+1+int(ins.Jf)] &= valid
			valid = 0xffff
		}
	}
	return nil
}

// programTestSets returns dialect sets from none to base plus 40 custom
// kinds, the range of program sizes the filter must handle.
func programTestSets(t *testing.T, base string) []*toa.Set {
	t.Helper()
	big := base
	for k := 100; k < 140; k++ {
		big += fmt.Sprintf(",%d=port+ipv4", k)
	}
	var sets []*toa.Set
	for _, spec := range []string{"none", "200/8", "default", "all", big} {
		set, err := toa.ParseSet(spec)
		if err != nil {
			t.Fatal(err)
		}
		sets = append(sets, set)
	}
	return sets
}

// TestProgramsPassKernelChecks: every level, for small, default and large
// dialect sets, passes the kernel's checks and its 4096-instruction limit.
func TestProgramsPassKernelChecks(t *testing.T) {
	for _, set := range programTestSets(t, "default") {
		for _, f := range []Filter{FilterTOA, FilterTCP, FilterDirection} {
			prog, err := socketProgram(f, set, 512)
			if err != nil {
				t.Errorf("%v with %d dialects: %v", f, len(set.Dialects()), err)
				continue
			}
			if err := checkClassic(prog); err != nil {
				t.Errorf("%v with %d dialects: %v", f, len(set.Dialects()), err)
			}
			if len(prog) > 4096 {
				t.Errorf("%v with %d dialects: %d instructions", f, len(set.Dialects()), len(prog))
			}
		}
	}
}

// TestFilterText: every filter parses from its name, and nothing else
// parses.
func TestFilterText(t *testing.T) {
	for f := FilterTOA; f <= FilterNone; f++ {
		var got Filter
		if err := got.UnmarshalText([]byte(f.String())); err != nil || got != f {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", f.String(), got, err, f)
		}
	}
	var got Filter
	if err := got.UnmarshalText([]byte("bpf")); err == nil {
		t.Errorf("UnmarshalText(bpf) = %v, nil; want an error", got)
	}
}

// TestConfigValidate: a field out of its bounds is named in a
// *ConfigError; the zero Config is valid.
func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v, want nil", err)
	}
	err := Config{RingSize: 64 << 10, BlockSize: 128 << 10}.Validate()
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "RingSize" || ce.Value != 64<<10 {
		t.Errorf("ring smaller than a block: %v; want a *ConfigError naming RingSize 65536", err)
	}
}
