package preload

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"time"

	"github.com/toad-project/toad/toa"
)

// The wire format; PROTOCOL.md in the repository's preload directory is
// its specification. Every frame is FrameSize bytes, integers are big
// endian, addresses are 16 bytes (IPv4 as ::ffff:a.b.c.d).
const (
	// FrameSize is the size of every frame, in both directions.
	FrameSize = 128
	// Version is the protocol version this package speaks.
	Version = 1
	// RangesPerFrame is how many trusted ranges a RANGES frame holds.
	RangesPerFrame = 6
	// MaxRanges is the most trusted ranges the protocol can announce.
	MaxRanges = 1<<16 - 1
	// ReportSlots is how many counters a report carries.
	ReportSlots = 8

	magic0, magic1 = 'T', 'D'
	headerSize     = 8
)

// Type is a frame's type.
type Type uint8

// Frame types. The direction is in the comment: c for the library, s for
// toad.
const (
	TypeHello   Type = 1 // c→s: start of a connection; s answers Welcome and Ranges
	TypeWelcome Type = 2 // s→c: the server's status, limits and trusted ranges' count
	TypeRanges  Type = 3 // s→c: up to RangesPerFrame trusted ranges
	TypeLookup  Type = 4 // c→s: who is behind this connection; s answers Answer
	TypeAnswer  Type = 5 // s→c: the answer to a Lookup
	TypeReport  Type = 6 // c→s: the library's outcome counters; no answer
)

func (t Type) String() string {
	switch t {
	case TypeHello:
		return "HELLO"
	case TypeWelcome:
		return "WELCOME"
	case TypeRanges:
		return "RANGES"
	case TypeLookup:
		return "LOOKUP"
	case TypeAnswer:
		return "ANSWER"
	case TypeReport:
		return "REPORT"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Status is the outcome a Welcome or an Answer carries.
type Status uint8

// Statuses.
const (
	StatusOK         Status = 1 // Welcome: go ahead; Answer: the client is found
	StatusNotFound   Status = 2 // Answer: toad knows no client for the connection
	StatusNotServing Status = 3 // toad is stopping: use the kernel's address, retry later
	StatusBadRequest Status = 4 // the frame was well formed but its content invalid
	StatusBadVersion Status = 5 // Welcome: the server speaks another version (in its header); it hangs up
	StatusBusy       Status = 6 // Welcome: too many connections; it hangs up
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "OK"
	case StatusNotFound:
		return "NOT_FOUND"
	case StatusNotServing:
		return "NOT_SERVING"
	case StatusBadRequest:
		return "BAD_REQUEST"
	case StatusBadVersion:
		return "BAD_VERSION"
	case StatusBusy:
		return "BUSY"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Welcome flags.
const (
	// FlagAllTrusted says toad believes a TOA from any peer: the library
	// asks about every TCP connection.
	FlagAllTrusted uint8 = 1 << 0
	// FlagSharedTable says the WELCOME carries a shared table's descriptor
	// (SCM_RIGHTS) of SharedSize bytes.
	FlagSharedTable uint8 = 1 << 1
)

// Answer flags.
const (
	// FlagHasPort says the client's port is known (kind 28 carries none).
	FlagHasPort uint8 = 1 << 0
)

// Report slots: what the library did with each call it answered.
const (
	ReportOK       = 0 // the real client was returned (toa_stats getname_toa_ok)
	ReportEmpty    = 1 // toad knew no client: the kernel's address was returned (getname_toa_empty)
	ReportMismatch = 2 // the client could not be returned in the caller's family or buffer (getname_toa_mismatch)
	ReportBypass   = 3 // the peer was outside the trusted ranges: passed through without asking
	ReportFallback = 4 // toad could not answer (absent, slow, busy, stopping): the kernel's address was returned
)

// Errors of Parse. A frame that fails with ErrFrame or ErrVersion ends
// the connection; ErrBadRequest is answered.
var (
	ErrFrame      = errors.New("not a frame of the toad preload protocol")
	ErrVersion    = errors.New("unsupported protocol version")
	ErrBadRequest = errors.New("bad request")
)

// Header is what every frame starts with.
type Header struct {
	Version uint8
	Type    Type
	// ID is chosen by the library for a request and copied into the
	// frames that answer it.
	ID uint32
}

// Frame is one frame's bytes.
type Frame [FrameSize]byte

func (f *Frame) putHeader(t Type, id uint32) {
	*f = Frame{}
	f[0], f[1], f[2], f[3] = magic0, magic1, Version, byte(t)
	binary.BigEndian.PutUint32(f[4:], id)
}

// ParseHeader reads the header of the n bytes a read returned into f. It
// fails with ErrFrame when n is not FrameSize or the magic is wrong, and
// with ErrVersion (the header returned still) when the version is not
// Version.
func ParseHeader(f *Frame, n int) (Header, error) {
	if n != FrameSize {
		return Header{}, fmt.Errorf("%w: %d bytes, want %d", ErrFrame, n, FrameSize)
	}
	if f[0] != magic0 || f[1] != magic1 {
		return Header{}, fmt.Errorf("%w: magic %#x %#x", ErrFrame, f[0], f[1])
	}
	h := Header{Version: f[2], Type: Type(f[3]), ID: binary.BigEndian.Uint32(f[4:])}
	if h.Version != Version {
		return h, fmt.Errorf("%w %d (this side speaks %d)", ErrVersion, h.Version, Version)
	}
	return h, nil
}

// putAddr writes a 16-byte address and a port at b.
func putAddr(b []byte, a netip.Addr, port uint16) {
	a16 := a.As16()
	copy(b, a16[:])
	binary.BigEndian.PutUint16(b[16:], port)
}

func addrAt(b []byte) netip.Addr { return netip.AddrFrom16([16]byte(b[:16])) }

func addrPortAt(b []byte) netip.AddrPort {
	return netip.AddrPortFrom(addrAt(b).Unmap(), binary.BigEndian.Uint16(b[16:]))
}

// Hello opens a connection.
type Hello struct {
	// PID is the library's process id, for logs only.
	PID uint32
}

// Put encodes h into f.
func (h *Hello) Put(f *Frame, id uint32) {
	f.putHeader(TypeHello, id)
	binary.BigEndian.PutUint32(f[8:], h.PID)
}

// ParseHello decodes a HELLO frame.
func ParseHello(f *Frame) Hello { return Hello{PID: binary.BigEndian.Uint32(f[8:])} }

// Welcome answers a Hello.
type Welcome struct {
	Status Status
	Flags  uint8
	// Ranges is how many trusted ranges the RANGES frames that follow hold.
	Ranges uint16
	// Generation identifies the trusted ranges; answers carry it so that
	// the library notices a change.
	Generation uint32
	// MaxWait is the longest wait the server grants a lookup.
	MaxWait time.Duration
	// SharedSize is the size in bytes of the shared table whose
	// descriptor comes with the frame, when Flags has FlagSharedTable.
	SharedSize uint64
}

// Put encodes w into f.
func (w *Welcome) Put(f *Frame, id uint32) {
	f.putHeader(TypeWelcome, id)
	f[8], f[9] = byte(w.Status), w.Flags
	binary.BigEndian.PutUint16(f[10:], w.Ranges)
	binary.BigEndian.PutUint32(f[12:], w.Generation)
	binary.BigEndian.PutUint32(f[16:], durationMicros(w.MaxWait))
	binary.BigEndian.PutUint64(f[20:], w.SharedSize)
}

// ParseWelcome decodes a WELCOME frame.
func ParseWelcome(f *Frame) Welcome {
	return Welcome{
		Status:     Status(f[8]),
		Flags:      f[9],
		Ranges:     binary.BigEndian.Uint16(f[10:]),
		Generation: binary.BigEndian.Uint32(f[12:]),
		MaxWait:    time.Duration(binary.BigEndian.Uint32(f[16:])) * time.Microsecond,
		SharedSize: binary.BigEndian.Uint64(f[20:]),
	}
}

// Ranges carries consecutive trusted ranges.
type Ranges struct {
	// First is the index of Prefixes[0] among all the ranges.
	First    uint16
	Prefixes []netip.Prefix // at most RangesPerFrame
}

const rangeSize = 18

// Put encodes r into f; r must hold 1 to RangesPerFrame valid prefixes.
func (r *Ranges) Put(f *Frame, id uint32) {
	f.putHeader(TypeRanges, id)
	binary.BigEndian.PutUint16(f[8:], r.First)
	f[10] = byte(len(r.Prefixes))
	for i, p := range r.Prefixes {
		b := f[12+i*rangeSize:]
		bits := p.Bits()
		if p.Addr().Is4() {
			bits += 96
		}
		putAddr(b, p.Addr(), 0)
		b[16], b[17] = byte(bits), 0
	}
}

// ParseRanges decodes a RANGES frame.
func ParseRanges(f *Frame) (Ranges, error) {
	n := int(f[10])
	if n == 0 || n > RangesPerFrame {
		return Ranges{}, fmt.Errorf("%w: RANGES frame holds %d ranges, want 1 to %d", ErrBadRequest, n, RangesPerFrame)
	}
	r := Ranges{First: binary.BigEndian.Uint16(f[8:]), Prefixes: make([]netip.Prefix, n)}
	for i := range n {
		b := f[12+i*rangeSize:]
		a, bits := addrAt(b), int(b[16])
		if bits > 128 {
			return Ranges{}, fmt.Errorf("%w: range %d has %d bits", ErrBadRequest, i, bits)
		}
		if a.Is4In6() && bits >= 96 {
			a, bits = a.Unmap(), bits-96
		}
		r.Prefixes[i] = netip.PrefixFrom(a, bits)
	}
	return r, nil
}

// Report is a batch of the library's outcome counters since its last
// report, indexed by the Report* slots.
type Report [ReportSlots]uint32

func (r *Report) put(b []byte) {
	for i, v := range r {
		binary.BigEndian.PutUint32(b[4*i:], v)
	}
}

func reportAt(b []byte) (r Report) {
	for i := range r {
		r[i] = binary.BigEndian.Uint32(b[4*i:])
	}
	return r
}

// IsZero reports whether r counts nothing.
func (r *Report) IsZero() bool { return *r == Report{} }

// PutReport encodes a REPORT frame.
func PutReport(f *Frame, id uint32, r *Report) {
	f.putHeader(TypeReport, id)
	r.put(f[8:])
}

// ParseReport decodes a REPORT frame.
func ParseReport(f *Frame) Report { return reportAt(f[8:]) }

// Lookup asks who is behind a connection.
type Lookup struct {
	// Peer and Local are the connection's addresses as the kernel reports
	// them to the application (getpeername, getsockname).
	Peer, Local netip.AddrPort
	// Wait is how long the server may wait for a handshake it has not
	// seen yet; 0 answers at once.
	Wait time.Duration
	// Report is the library's counters since its last report, carried
	// along so that reporting costs no frame of its own.
	Report Report
}

// Put encodes l into f.
func (l *Lookup) Put(f *Frame, id uint32) {
	f.putHeader(TypeLookup, id)
	putAddr(f[8:], l.Peer.Addr(), l.Peer.Port())
	putAddr(f[26:], l.Local.Addr(), l.Local.Port())
	binary.BigEndian.PutUint32(f[44:], durationMicros(l.Wait))
	l.Report.put(f[48:])
}

// ParseLookup decodes a LOOKUP frame. It fails with ErrBadRequest when an
// address is unspecified or a port is zero, which no TCP connection has;
// the report is returned still.
func ParseLookup(f *Frame) (Lookup, error) {
	l := Lookup{
		Peer:   addrPortAt(f[8:]),
		Local:  addrPortAt(f[26:]),
		Wait:   time.Duration(binary.BigEndian.Uint32(f[44:])) * time.Microsecond,
		Report: reportAt(f[48:]),
	}
	for _, ap := range []netip.AddrPort{l.Peer, l.Local} {
		if ap.Addr().IsUnspecified() || ap.Port() == 0 {
			return l, fmt.Errorf("%w: %v is not the address of a TCP connection's end", ErrBadRequest, ap)
		}
	}
	return l, nil
}

// Answer answers a Lookup.
type Answer struct {
	Status Status
	// Client is the real client when Status is StatusOK. An IPv4-mapped
	// IPv6 client is sent as IPv4.
	Client toa.Client
	// Generation identifies the server's trusted ranges (see Welcome).
	Generation uint32
}

// Put encodes a into f.
func (a *Answer) Put(f *Frame, id uint32) {
	f.putHeader(TypeAnswer, id)
	f[8] = byte(a.Status)
	binary.BigEndian.PutUint32(f[36:], a.Generation)
	if a.Status != StatusOK {
		return
	}
	c := a.Client
	addr := c.Addr.Unmap()
	f[9] = 6
	if addr.Is4() {
		f[9] = 4
	}
	if c.HasPort {
		f[10] |= FlagHasPort
	}
	f[11], f[12] = c.Dialect.Kind, c.Dialect.Len
	putAddr(f[16:], addr, c.Port)
}

// ParseAnswer decodes an ANSWER frame.
func ParseAnswer(f *Frame) (Answer, error) {
	a := Answer{Status: Status(f[8]), Generation: binary.BigEndian.Uint32(f[36:])}
	if a.Status != StatusOK {
		return a, nil
	}
	addr := addrAt(f[16:])
	switch f[9] {
	case 4:
		if !addr.Is4In6() {
			return Answer{}, fmt.Errorf("%w: IPv4 client %v is not IPv4-mapped", ErrBadRequest, addr)
		}
		addr = addr.Unmap()
	case 6:
	default:
		return Answer{}, fmt.Errorf("%w: client family %d, want 4 or 6", ErrBadRequest, f[9])
	}
	a.Client = toa.Client{
		Dialect: toa.Dialect{Kind: f[11], Len: f[12]},
		Addr:    addr,
		HasPort: f[10]&FlagHasPort != 0,
	}
	if a.Client.HasPort {
		a.Client.Port = binary.BigEndian.Uint16(f[32:])
	}
	return a, nil
}

// durationMicros is d in whole microseconds, saturating at the uint32 range.
func durationMicros(d time.Duration) uint32 {
	us := d / time.Microsecond
	switch {
	case us <= 0:
		return 0
	case us > 1<<32-1:
		return 1<<32 - 1
	}
	return uint32(us)
}

// Generation returns the generation of a set of trusted ranges: a hash of
// their encoding and of whether every peer is trusted.
func Generation(flags uint8, prefixes []netip.Prefix) uint32 {
	h := fnv.New32a()
	h.Write([]byte{flags})
	var f Frame
	for i := 0; i < len(prefixes); i += RangesPerFrame {
		r := Ranges{First: uint16(i), Prefixes: prefixes[i:min(i+RangesPerFrame, len(prefixes))]}
		r.Put(&f, 0)
		h.Write(f[8:])
	}
	return h.Sum32()
}
