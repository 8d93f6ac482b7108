package capture

import (
	"encoding/binary"
	"fmt"
	"io"
)

// MaxRecordLen is the largest packet record Replay reads, whatever the
// file's snap length says: libpcap's MAXIMUM_SNAPLEN, the most tcpdump
// writes. A record that claims more is an error, so that no length read
// from a file decides how much memory a replay takes.
const MaxRecordLen = 262144

// maxBlockLen is the largest pcapng block Replay reads: an Enhanced Packet
// Block of MaxRecordLen bytes with 128 KiB of options, the way Wireshark
// sizes its own limit.
const maxBlockLen = ngEPBLen + MaxRecordLen + 128<<10

// pcapng block types and fixed lengths (block header and trailer included).
const (
	ngSHB      = 0x0A0D0D0A // section header, the same in both byte orders
	ngIDB      = 1          // interface description
	ngPB       = 2          // packet (obsolete)
	ngSPB      = 3          // simple packet
	ngEPB      = 6          // enhanced packet
	ngMinLen   = 12         // type, length, trailing length
	ngSHBLen   = 28         // with the byte-order magic, versions and section length
	ngIDBLen   = 20         // with the link type, reserved and snap length
	ngEPBLen   = 32         // with interface, timestamp and both lengths: PB's too
	ngSPBLen   = 16         // with the original length
	ngOrderMag = 0x1A2B3C4D
)

// errRecordTooLarge is wrapped by the error for a record above MaxRecordLen.
var errRecordTooLarge = fmt.Errorf("larger than %d bytes, the most any capture tool writes (libpcap's largest snap length): the file is damaged or not a capture", MaxRecordLen)

// recordTooLarge is the error for a record that claims n bytes.
func recordTooLarge(n uint32) error {
	return fmt.Errorf("record of %d bytes: %w", n, errRecordTooLarge)
}

// ngBlocks reads a pcapng stream from r and checks the header of every
// block as its bytes go by, before they reach pcapgo's reader: a block
// above maxBlockLen, or whose packet does not fit in it or is above
// MaxRecordLen, ends the stream with an error that says so, right where
// the block starts. pcapgo would otherwise size a buffer from such a
// length and fill it with whatever follows: a few megabytes of gzip make
// gigabytes of zeros. A header that begins in one read is held back until
// the rest of it has come; one cut short by the end of the stream passes
// as it is, for pcapgo to say that the file is cut.
type ngBlocks struct {
	r       io.Reader
	skip    int               // bytes of the current block after its checked header
	held    [maxNGHeader]byte // the start of the next block's header
	nheld   int               // how much of held there is
	err     error             // from r, or a check: returned once the bytes before it have passed
	order   binary.ByteOrder  // the section's
	idbSeen bool              // the section's first interface has been described
	snaplen uint32            // the section's first interface's, which simple packets take
}

// maxNGHeader is the most of a block's header that check reads.
const maxNGHeader = 24

func newNGBlocks(r io.Reader) *ngBlocks {
	return &ngBlocks{r: r, order: binary.LittleEndian}
}

// Read reads from r into p, after what it held back, and returns the
// bytes up to the first header it cannot check yet. p must hold a header.
func (b *ngBlocks) Read(p []byte) (int, error) {
	if len(p) < maxNGHeader {
		return 0, io.ErrShortBuffer // bufio never asks for less
	}
	for {
		m := copy(p, b.held[:b.nheld])
		b.nheld = 0
		if b.err == nil {
			k, err := b.r.Read(p[m:])
			m += k
			b.err = err
		}
		n, err := b.scan(p[:m], b.err != nil)
		if err != nil {
			b.err, b.nheld = err, 0
		}
		if n > 0 {
			return n, nil
		}
		if b.err != nil {
			return 0, b.err
		}
	}
}

// scan checks the block headers in buf, which continues the stream, and
// returns how many of its bytes may pass: all of them, or up to a header
// that is not whole, which it holds back (unless the stream has ended),
// or up to a header that fails, with the error.
func (b *ngBlocks) scan(buf []byte, ended bool) (int, error) {
	pos := 0
	for {
		adv := min(b.skip, len(buf)-pos)
		pos += adv
		b.skip -= adv
		if pos == len(buf) {
			return pos, nil
		}
		hdr := buf[pos:]
		if len(hdr) < 8 || len(hdr) < b.need(hdr) {
			if ended {
				return len(buf), nil // cut: pcapgo says so
			}
			b.nheld = copy(b.held[:], hdr)
			return pos, nil
		}
		length, err := b.check(hdr)
		if err != nil {
			return pos, err
		}
		b.skip = length
	}
}

// need returns how much of the header of the block that starts hdr (8
// bytes at least) check reads.
func (b *ngBlocks) need(hdr []byte) int {
	if binary.LittleEndian.Uint32(hdr) == ngSHB { // the same in both orders
		return 12
	}
	switch b.order.Uint32(hdr) {
	case ngEPB, ngPB:
		return 24
	case ngIDB:
		return 16
	case ngSPB:
		return 12
	}
	return 8
}

// check checks the header of the block that starts hdr, which holds what
// need asks for, and returns the block's length, or the error that stops
// the stream there.
func (b *ngBlocks) check(hdr []byte) (int, error) {
	if binary.LittleEndian.Uint32(hdr) == ngSHB {
		switch uint32(ngOrderMag) {
		case binary.LittleEndian.Uint32(hdr[8:]):
			b.order = binary.LittleEndian
		case binary.BigEndian.Uint32(hdr[8:]):
			b.order = binary.BigEndian
		default:
			return 12, nil // pcapgo says what is wrong with it
		}
		b.idbSeen, b.snaplen = false, 0
	}
	typ, length := b.order.Uint32(hdr), b.order.Uint32(hdr[4:])
	least := uint32(ngMinLen)
	switch typ {
	case ngSHB:
		least = ngSHBLen
	case ngIDB:
		least = ngIDBLen
	case ngEPB, ngPB:
		least = ngEPBLen
	case ngSPB:
		least = ngSPBLen
	}
	switch {
	case length%4 != 0 || length < least:
		return 0, fmt.Errorf("pcapng block of type %#x and length %d: want a multiple of 4 of at least %d: the file is damaged", typ, length, least)
	case length > maxBlockLen:
		return 0, fmt.Errorf("pcapng block of type %#x and length %d: larger than the %d a packet of at most %d bytes needs: the file is damaged or not a capture", typ, length, maxBlockLen, MaxRecordLen)
	}
	var caplen, room uint32
	switch typ {
	case ngIDB:
		if !b.idbSeen {
			b.idbSeen, b.snaplen = true, b.order.Uint32(hdr[12:])
		}
		return int(length), nil
	case ngEPB, ngPB:
		caplen, room = b.order.Uint32(hdr[20:]), length-ngEPBLen
	case ngSPB:
		caplen, room = b.order.Uint32(hdr[8:]), length-ngSPBLen
		if b.snaplen != 0 {
			caplen = min(caplen, b.snaplen) // as pcapgo reads it
		}
	default:
		return int(length), nil
	}
	if (uint64(caplen)+3)&^3 > uint64(room) { // padded to 4 bytes
		return 0, fmt.Errorf("pcapng packet of %d bytes does not fit in its block of %d bytes: the file is damaged", caplen, length)
	}
	if caplen > MaxRecordLen {
		return 0, recordTooLarge(caplen)
	}
	return int(length), nil
}
