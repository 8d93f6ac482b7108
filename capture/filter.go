package capture

import (
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/bpf"

	"github.com/toad-project/toad/toa"
)

// Filter is how much of the selection the kernel does before packets reach
// the ring. Capture attaches the strongest one the kernel accepts; the
// weaker ones exist because a socket filter counts against
// net.core.optmem_max and some kernels refuse a long program.
type Filter uint8

// Filters, strongest first.
const (
	// FilterTOA passes incoming IPv4 and IPv6 TCP segments that carry an
	// enabled TOA dialect or SYN, FIN or RST, and IPv6 packets with
	// extension headers.
	FilterTOA Filter = iota
	// FilterTCP passes incoming TCP and IPv6 packets with extension headers.
	FilterTCP
	// FilterDirection passes every incoming IPv4 and IPv6 packet.
	FilterDirection
	// FilterNone attaches no program: the ring gets every packet.
	FilterNone
)

var filterNames = [...]string{
	FilterTOA:       "toa",
	FilterTCP:       "tcp",
	FilterDirection: "direction",
	FilterNone:      "none",
}

func (f Filter) String() string {
	if int(f) < len(filterNames) {
		return filterNames[f]
	}
	return "filter(" + strconv.Itoa(int(f)) + ")"
}

// UnmarshalText sets f from its name: toa, tcp, direction or none.
func (f *Filter) UnmarshalText(b []byte) error {
	name := strings.TrimSpace(string(b))
	for g, n := range filterNames {
		if n == name {
			*f = Filter(g)
			return nil
		}
	}
	return fmt.Errorf("filter %q: want toa, tcp, direction or none", name)
}

// Kernel constants the programs use.
const (
	packetOutgoing = 4 // skb->pkt_type of a packet the host sends
	etherIPv4      = 0x0800
	etherIPv6      = 0x86DD

	ipProtoTCP = 6
	tcpFlagFIN = 0x01
	tcpFlagSYN = 0x02
	tcpFlagRST = 0x04
)

// ipv6Ext lists the IPv6 extension headers the decoder walks. Packets whose
// first next header is one of these go to user space whole.
var ipv6Ext = []uint32{0, 43, 44, 51, 60}

// Program returns the classic BPF socket filter for level f, without the
// direction prefix: it starts at the network header (what a cooked
// AF_PACKET socket shows a filter, whatever the link type), accepts with
// snap bytes, and rejects with 0. FilterNone has no program.
//
// The FilterTOA program walks the TCP option list the way the decoder does:
// it is unrolled one step per option (the list is at most 40 bytes), honours
// NOP and EOL, stops at a length below 2 or running past the header, and
// accepts at the first option whose kind and length form an enabled
// dialect. It never rejects a segment in which the decoder finds a TOA; it
// may pass a few the decoder rejects (a malformed list after the TOA, a Fast
// Open cookie that looks like one), which then cost a decode in user space.
func Program(f Filter, set *toa.Set, snap uint32) ([]bpf.Instruction, error) {
	if set == nil {
		set = toa.DefaultSet()
	}
	switch f {
	case FilterTOA:
		return toaProgram(set.Dialects(), snap)
	case FilterTCP:
		var a asm
		a.ipDispatch()
		a.label("v4")
		a.op(bpf.LoadAbsolute{Off: 9, Size: 1})
		a.jeq(ipProtoTCP, "accept", "drop")
		a.label("v6")
		a.op(bpf.LoadAbsolute{Off: 6, Size: 1})
		a.jeq(ipProtoTCP, "accept", "")
		a.ipv6ExtToUser()
		a.rets(snap)
		return a.assemble()
	case FilterDirection:
		return []bpf.Instruction{bpf.RetConstant{Val: snap}}, nil
	case FilterNone:
		return nil, nil
	}
	return nil, fmt.Errorf("unknown filter %v", f)
}

// directionPrefix returns the instructions that reject packets the host
// sends (on loopback every packet shows up twice, once each way) and
// anything that is not IPv4 or IPv6, then fall through to the program after
// them. They read the kernel's ancillary fields (SKF_AD_PKTTYPE and
// SKF_AD_PROTOCOL), which bpf.VM does not implement, so they stay apart from
// Program.
func directionPrefix() []bpf.Instruction {
	return []bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: packetOutgoing, SkipTrue: 3},
		bpf.LoadExtension{Num: bpf.ExtProto},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherIPv4, SkipTrue: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherIPv6, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
	}
}

// socketProgram is the program attached for level f: the direction prefix,
// then Program. Nil for FilterNone.
func socketProgram(f Filter, set *toa.Set, snap uint32) ([]bpf.RawInstruction, error) {
	if f == FilterNone {
		return nil, nil
	}
	main, err := Program(f, set, snap)
	if err != nil {
		return nil, err
	}
	return bpf.Assemble(append(directionPrefix(), main...))
}

// attachFilter attaches the strongest program from want down that attach
// accepts, and returns its level; FilterNone when the kernel took none. A
// refused program is logged and never fails the capture.
func attachFilter(attach func([]bpf.RawInstruction) error, want Filter, set *toa.Set, snap uint32, log *slog.Logger) Filter {
	for f := want; f < FilterNone; f++ {
		prog, err := socketProgram(f, set, snap)
		if err == nil {
			if err = attach(prog); err == nil {
				return f
			}
		}
		log.Warn("kernel refused the capture filter; trying a shorter one",
			"filter", f, "instructions", len(prog), "err", err,
			"hint", "raise net.core.optmem_max to keep the full filter")
	}
	return FilterNone
}

// toaProgram builds the FilterTOA program. Registers: X holds the offset of
// what is being read (the TCP header, then the current option); M[0] holds
// the last offset at which the shortest enabled dialect still fits.
func toaProgram(dialects []toa.Dialect, snap uint32) ([]bpf.Instruction, error) {
	minLen := uint32(maxOptions)
	keys := make([]uint32, 0, len(dialects))
	for _, d := range dialects {
		minLen = min(minLen, uint32(d.Len))
		keys = append(keys, uint32(d.Kind)<<8|uint32(d.Len))
	}
	slices.Sort(keys)
	var a asm
	// The kernel's checker takes every instruction to follow the one before
	// it, returns included, and wants M[0] written on every path to a read;
	// writing it first makes that so.
	a.op(bpf.StoreScratch{Src: bpf.RegA, N: 0})
	a.ipDispatch()

	a.label("v4")
	a.op(bpf.LoadAbsolute{Off: 9, Size: 1})
	a.jeq(ipProtoTCP, "", "drop")
	a.op(bpf.LoadAbsolute{Off: 6, Size: 2})
	a.jset(0x1fff, "drop", "") // a later fragment: no TCP header
	a.op(bpf.LoadMemShift{Off: 0})
	a.ja("tcp")

	a.label("v6")
	a.op(bpf.LoadAbsolute{Off: 6, Size: 1})
	a.jeq(ipProtoTCP, "", "v6other")
	a.op(bpf.LoadConstant{Dst: bpf.RegX, Val: 40})
	a.ja("tcp")
	a.label("v6other")
	a.ipv6ExtToUser()
	a.returns(snap)

	a.label("tcp")
	a.op(bpf.LoadIndirect{Off: 13, Size: 1})
	if len(keys) == 0 {
		a.jset(tcpFlagFIN|tcpFlagSYN|tcpFlagRST, "accept", "drop")
		a.rets(snap)
		return a.assemble()
	}
	a.jset(tcpFlagFIN|tcpFlagSYN|tcpFlagRST, "accept", "")
	a.op(bpf.LoadIndirect{Off: 12, Size: 1})
	a.op(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0})
	a.op(bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 2}) // header length in bytes
	a.jge(20+minLen, "", "drop")                             // no room for a TOA
	a.op(bpf.ALUOpX{Op: bpf.ALUOpAdd})
	a.op(bpf.ALUOpConstant{Op: bpf.ALUOpSub, Val: minLen})
	a.op(bpf.StoreScratch{Src: bpf.RegA, N: 0})
	a.op(bpf.TXA{})
	a.op(bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 20})
	a.op(bpf.TAX{})

	// One step per option. Options before a TOA are at least one byte
	// long (NOP), so a TOA starts within the first 41-minLen steps.
	steps := int(maxOptions + 1 - minLen)
	stepLen := 11 + len(keys)
	perPad := max(1, 200/stepLen)
	for i := range steps {
		if i > 0 && i%perPad == 0 {
			a.returns(snap) // keep accept and drop within a jump's reach
		}
		real, adv := "real"+strconv.Itoa(i), "adv"+strconv.Itoa(i)
		a.op(bpf.LoadScratch{Dst: bpf.RegA, N: 0})
		a.jgeX("", "drop")                      // past the last place a TOA fits
		a.op(bpf.LoadIndirect{Off: 0, Size: 2}) // kind<<8 | length
		a.jge(0x0200, real, "")
		a.jge(0x0100, "", "drop") // EOL
		a.op(bpf.LoadConstant{Dst: bpf.RegA, Val: 1})
		a.ja(adv) // NOP
		a.label(real)
		for _, k := range keys {
			a.jeq(k, "accept", "")
		}
		a.op(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xff})
		a.jge(2, "", "drop")
		a.label(adv)
		a.op(bpf.ALUOpX{Op: bpf.ALUOpAdd})
		a.op(bpf.TAX{})
	}
	a.rets(snap) // falling off the last step drops
	return a.assemble()
}

const maxOptions = 40 // bytes of TCP options at most

// ipDispatch branches on the IP version nibble to "v4" or "v6".
func (a *asm) ipDispatch() {
	a.op(bpf.LoadAbsolute{Off: 0, Size: 1})
	a.op(bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
	a.jeq(4, "v4", "")
	a.jeq(6, "v6", "drop")
}

// ipv6ExtToUser accepts an IPv6 packet whose next header (in A) is an
// extension header the decoder walks, and drops the rest.
func (a *asm) ipv6ExtToUser() {
	for i, t := range ipv6Ext {
		no := ""
		if i == len(ipv6Ext)-1 {
			no = "drop"
		}
		a.jeq(t, "accept", no)
	}
}

// asm assembles a program with symbolic forward jumps. A label may be
// defined many times: a jump goes to its next definition, which lets
// conditional jumps (8-bit offsets) reach "accept" and "drop" through
// return pads placed along a long program.
type asm struct {
	ops []asmOp
}

type asmOp struct {
	ins   bpf.Instruction // nil for a label or a symbolic jump
	label string          // a label defined here
	// A symbolic jump: cond is the test against k (or X when x is set);
	// always marks an unconditional jump to yes.
	cond    bpf.JumpTest
	k       uint32
	x       bool
	always  bool
	yes, no string // "" falls through
	jump    bool
}

func (a *asm) op(ins bpf.Instruction) { a.ops = append(a.ops, asmOp{ins: ins}) }
func (a *asm) label(l string)         { a.ops = append(a.ops, asmOp{label: l}) }
func (a *asm) ja(l string)            { a.ops = append(a.ops, asmOp{jump: true, always: true, yes: l}) }
func (a *asm) jeq(k uint32, yes, no string) {
	a.ops = append(a.ops, asmOp{jump: true, cond: bpf.JumpEqual, k: k, yes: yes, no: no})
}
func (a *asm) jge(k uint32, yes, no string) {
	a.ops = append(a.ops, asmOp{jump: true, cond: bpf.JumpGreaterOrEqual, k: k, yes: yes, no: no})
}
func (a *asm) jset(k uint32, yes, no string) {
	a.ops = append(a.ops, asmOp{jump: true, cond: bpf.JumpBitsSet, k: k, yes: yes, no: no})
}
func (a *asm) jgeX(yes, no string) {
	a.ops = append(a.ops, asmOp{jump: true, cond: bpf.JumpGreaterOrEqual, x: true, yes: yes, no: no})
}

// returns places "drop" and "accept" here, skipped by the code before.
func (a *asm) returns(snap uint32) {
	a.op(bpf.Jump{Skip: 2})
	a.rets(snap)
}

// rets places "drop" and "accept" here.
func (a *asm) rets(snap uint32) {
	a.label("drop")
	a.op(bpf.RetConstant{Val: 0})
	a.label("accept")
	a.op(bpf.RetConstant{Val: snap})
}

func (a *asm) assemble() ([]bpf.Instruction, error) {
	// pos[i] is the instruction index op i lands on.
	pos := make([]int, len(a.ops)+1)
	n := 0
	for i, o := range a.ops {
		pos[i] = n
		if o.label == "" {
			n++
		}
	}
	pos[len(a.ops)] = n
	target := func(from int, l string) (int, error) {
		if l == "" {
			return 0, nil
		}
		for j := from + 1; j < len(a.ops); j++ {
			if a.ops[j].label == l {
				return pos[j] - pos[from] - 1, nil
			}
		}
		return 0, fmt.Errorf("filter program: no label %q after instruction %d", l, pos[from])
	}
	out := make([]bpf.Instruction, 0, n)
	for i, o := range a.ops {
		switch {
		case o.label != "":
			continue
		case !o.jump:
			out = append(out, o.ins)
			continue
		}
		yes, err := target(i, o.yes)
		if err != nil {
			return nil, err
		}
		if o.always {
			out = append(out, bpf.Jump{Skip: uint32(yes)})
			continue
		}
		no, err := target(i, o.no)
		if err != nil {
			return nil, err
		}
		if yes > 255 || no > 255 {
			return nil, fmt.Errorf("filter program: jump of %d instructions at %d is out of reach", max(yes, no), pos[i])
		}
		if o.x {
			out = append(out, bpf.JumpIfX{Cond: o.cond, SkipTrue: uint8(yes), SkipFalse: uint8(no)})
		} else {
			out = append(out, bpf.JumpIf{Cond: o.cond, Val: o.k, SkipTrue: uint8(yes), SkipFalse: uint8(no)})
		}
	}
	return out, nil
}
