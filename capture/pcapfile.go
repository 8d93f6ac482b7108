package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/toad-project/toad/decode"
)

// Classic pcap files are read here, not by pcapgo: in place, from a
// mapping of the file or a bufio.Reader's buffer, with no copy and no
// allocation per packet, which replay's speed rests on (BenchmarkReplay
// and BenchmarkReplayPCAPNG measure the two paths). pcapng, whose blocks come in many kinds and options, is
// left to pcapgo's NgReader (files.go): one reader for each format, never
// two.
const (
	// pcapHeaderLen is the length of a pcap file header, pcapRecordLen
	// that of a record header.
	pcapHeaderLen = 24
	pcapRecordLen = 16
	// pcapReadAhead is how far past the record it returns next reads the
	// file, a byte per cache line. Records are found one after the other,
	// each where the last one's length says, a chain of loads that would
	// otherwise wait for memory one record at a time.
	pcapReadAhead = 8192
	cacheLine     = 64
)

// errFileChanged is what a read from a mapped file that was cut short
// while it was read returns.
var errFileChanged = errors.New("capture file changed while it was replayed")

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

// pcapFile reads the records of a classic pcap file held in memory, in
// place, as Replay reads them from a stream with pcapgo.Reader: same
// timestamps, same checks (records above MaxRecordLen refused whatever the
// snap length), same errors, except that a record header with none of its
// data after it is io.ErrUnexpectedEOF where pcapgo ends the file silently.
type pcapFile struct {
	buf    []byte
	off    int
	big    bool   // big-endian
	factor uint32 // nanoseconds per unit of the timestamps' fraction
	link   layers.LinkType
	warm   int  // how far the file has been touched
	touch  byte // what touching read, kept so that it is done
}

// newPCAPFile reads the file header of buf, which starts with a pcap
// magic number.
func newPCAPFile(buf []byte) (*pcapFile, error) {
	if len(buf) < pcapHeaderLen {
		return nil, io.ErrUnexpectedEOF
	}
	p := &pcapFile{buf: buf, off: pcapHeaderLen}
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

func (p *pcapFile) u16(b []byte) uint16 {
	if p.big {
		return binary.BigEndian.Uint16(b)
	}
	return binary.LittleEndian.Uint16(b)
}

func (p *pcapFile) u32(b []byte) uint32 {
	if p.big {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

// next returns the next record's frame, a slice of the file, its capture
// time and its original length, or io.EOF after the last record.
func (p *pcapFile) next() (data []byte, ts time.Time, length uint32, err error) {
	for end := min(p.off+pcapReadAhead, len(p.buf)); p.warm < end; p.warm += cacheLine {
		p.touch += p.buf[p.warm]
	}
	data, ts, length, n, err := p.record(p.buf[p.off:])
	p.off += n
	return data, ts, length, err
}

// record reads the record that starts rest: its frame, a slice of rest,
// its capture time, its original length and the bytes it spans. An empty
// rest is io.EOF, a record cut short io.ErrUnexpectedEOF.
func (p *pcapFile) record(rest []byte) (data []byte, ts time.Time, length uint32, n int, err error) {
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
// buffer, as pcapFile reads a file: each frame is valid until the next
// call. br must hold a whole record: pcapRecordLen+MaxRecordLen bytes.
type pcapStream struct {
	pcapFile // the file header's; its buf is not read
	br       *bufio.Reader
	done     int // the bytes of the record returned last
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
	p, err := newPCAPFile(hdr)
	if err != nil {
		return nil, err
	}
	p.buf = nil
	br.Discard(pcapHeaderLen) // peeked: cannot fail
	return &pcapStream{pcapFile: *p, br: br}, nil
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

// mapped replays the classic pcap file buf, a mapping of the file, reading
// its records in place. A fault reading buf, the file having been cut
// short, is errFileChanged; other faults are not recovered.
func (r *replayer) mapped(buf []byte) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		if f, ok := p.(interface{ Addr() uintptr }); ok {
			base := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
			if a := f.Addr(); a >= base && a-base < uintptr(len(buf)) {
				err = fmt.Errorf("after %d packets: %w", r.st.Packets, errFileChanged)
				return
			}
		}
		panic(p)
	}()
	p, err := newPCAPFile(buf)
	if err != nil {
		return fmt.Errorf("read pcap header: %w", err)
	}
	if err := checkLink(p.link); err != nil {
		return err
	}
	link := decode.LinkType(p.link)
	released := 0 // the mapping's pages before this were handed back
	for {
		data, ts, _, err := p.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("read packet %d: %w", r.st.Packets+1, err)
		}
		if err := r.count(); err != nil {
			return err
		}
		r.frame(link, data, ts)
		if p.off-released >= releaseEvery {
			released = releaseBehind(buf, released, p.off)
		}
	}
	r.finish()
	return nil
}

// releaseEvery is how much of a mapped file is read between hand-backs
// of the pages already read. A mapping's resident pages count as the
// process's memory: without them a replay of a file of many gigabytes
// would look that large, though the pages are the page cache's.
const releaseEvery = 8 << 20

// releaseBehind hands back the pages of buf, a mapping, from from to to
// rounded down to a page, and returns where the next hand-back starts.
func releaseBehind(buf []byte, from, to int) int {
	to &^= os.Getpagesize() - 1
	if to > from {
		releasePCAP(buf[from:to])
	}
	return to
}
