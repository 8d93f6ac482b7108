package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Classic pcap files are read here, not by pcapgo: in place, in a
// bufio.Reader's buffer, with no copy and no allocation per packet, which
// replay's speed rests on (BenchmarkReplay and BenchmarkReplayPCAPNG
// measure the two formats). pcapng, whose blocks come in many kinds and
// options, is left to pcapgo's NgReader (files.go): one reader for each
// format, never two.
//
// Files are read, not mapped: where memory is virtualised, a mapping's
// page faults cost more than the copy (on a 2-core virtual machine, a
// 983 MiB file took 2.6 times as long mapped, 230 ns a packet against 88).
const (
	// pcapHeaderLen is the length of a pcap file header, pcapRecordLen
	// that of a record header.
	pcapHeaderLen = 24
	pcapRecordLen = 16
)

// isPCAP reports whether a file starting with b is a classic pcap file.
func isPCAP(b []byte) bool {
	if len(b) < 4 {
		return false
	}
	switch binary.BigEndian.Uint32(b) {
	case magicPCAPMicroLE, magicPCAPMicroBE, magicPCAPNanoLE, magicPCAPNanoBE:
		return true
	}
	return false
}

// pcapFormat is what a classic pcap file's header says of its records:
// how to read them, as pcapgo.Reader reads them: same timestamps, same checks (records above
// MaxRecordLen refused whatever the snap length), same errors, except that
// a record header with none of its data after it is io.ErrUnexpectedEOF
// where pcapgo ends the file silently.
type pcapFormat struct {
	big    bool   // big-endian
	factor uint32 // nanoseconds per unit of the timestamps' fraction
	link   layers.LinkType
}

// newPCAPFormat reads the file header at the start of buf, which starts
// with a pcap magic number.
func newPCAPFormat(buf []byte) (*pcapFormat, error) {
	if len(buf) < pcapHeaderLen {
		return nil, io.ErrUnexpectedEOF
	}
	p := &pcapFormat{}
	switch m := binary.BigEndian.Uint32(buf); m {
	case magicPCAPMicroBE, magicPCAPNanoBE:
		p.big = true
	case magicPCAPMicroLE, magicPCAPNanoLE:
	default:
		return nil, fmt.Errorf("Unknown magic %x", binary.LittleEndian.Uint32(buf))
	}
	p.factor = 1000
	if m := binary.BigEndian.Uint32(buf); m == magicPCAPNanoBE || m == magicPCAPNanoLE {
		p.factor = 1
	}
	if v := p.u16(buf[4:]); v != 2 {
		return nil, fmt.Errorf("Unknown major version %d", v)
	}
	if v := p.u16(buf[6:]); v != 4 {
		return nil, fmt.Errorf("Unknown minor version %d", v)
	}
	p.link = layers.LinkType(p.u32(buf[20:]))
	return p, nil
}

func (p *pcapFormat) u16(b []byte) uint16 {
	if p.big {
		return binary.BigEndian.Uint16(b)
	}
	return binary.LittleEndian.Uint16(b)
}

func (p *pcapFormat) u32(b []byte) uint32 {
	if p.big {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

// record reads the record that starts rest: its frame, a slice of rest,
// its capture time, its original length and the bytes it spans. An empty
// rest is io.EOF, a record cut short io.ErrUnexpectedEOF.
func (p *pcapFormat) record(rest []byte) (data []byte, ts time.Time, length uint32, n int, err error) {
	if len(rest) < pcapRecordLen {
		if len(rest) == 0 {
			return nil, time.Time{}, 0, 0, io.EOF
		}
		return nil, time.Time{}, 0, 0, io.ErrUnexpectedEOF
	}
	caplen, length := p.u32(rest[8:]), p.u32(rest[12:])
	if caplen > MaxRecordLen {
		return nil, time.Time{}, 0, 0, recordTooLarge(caplen)
	}
	if caplen > length {
		return nil, time.Time{}, 0, 0, fmt.Errorf("capture length exceeds original packet length: %d > %d", caplen, length)
	}
	if uint64(caplen) > uint64(len(rest)-pcapRecordLen) {
		return nil, time.Time{}, 0, 0, io.ErrUnexpectedEOF
	}
	end := pcapRecordLen + int(caplen)
	// The fraction is scaled in 32 bits, as pcapgo does.
	ts = time.Unix(int64(p.u32(rest)), int64(p.u32(rest[4:])*p.factor)).UTC()
	return rest[pcapRecordLen:end:end], ts, length, end, nil
}

// pcapStream reads the records of a classic pcap stream in place in br's
// buffer: each frame is valid until the next call. br must hold a whole
// record: pcapRecordLen+MaxRecordLen bytes.
type pcapStream struct {
	pcapFormat
	br   *bufio.Reader
	done int // the bytes of the record returned last
}

// newPCAPStream reads the file header from br, which starts with a pcap
// magic number.
func newPCAPStream(br *bufio.Reader) (*pcapStream, error) {
	if br.Size() < pcapRecordLen+MaxRecordLen {
		panic("capture: pcap stream buffer smaller than a record")
	}
	hdr, err := br.Peek(pcapHeaderLen)
	if err != nil {
		return nil, noEOF(err)
	}
	p, err := newPCAPFormat(hdr)
	if err != nil {
		return nil, err
	}
	br.Discard(pcapHeaderLen) // peeked: cannot fail
	return &pcapStream{pcapFormat: *p, br: br}, nil
}

// ZeroCopyReadPacketData returns the next record's frame, in br's buffer,
// or io.EOF after the last record. The length a record claims is checked
// before its bytes are read.
func (s *pcapStream) ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	s.br.Discard(s.done) // peeked: cannot fail
	s.done = 0
	hdr, err := s.br.Peek(pcapRecordLen)
	if len(hdr) < pcapRecordLen {
		if len(hdr) > 0 || !errors.Is(err, io.EOF) {
			err = noEOF(err)
		}
		return nil, gopacket.CaptureInfo{}, err
	}
	if caplen := s.u32(hdr[8:]); caplen <= MaxRecordLen {
		rec, err := s.br.Peek(pcapRecordLen + int(caplen))
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, gopacket.CaptureInfo{}, err
		}
		hdr = rec // a record cut short is io.ErrUnexpectedEOF below
	}
	data, ts, length, n, err := s.record(hdr)
	if err != nil {
		return nil, gopacket.CaptureInfo{}, err
	}
	s.done = n
	return data, gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(data), Length: int(length)}, nil
}
