package capture

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/toad-project/toad/decode"
)

// ExpireEvery is how much capture time passes between Replay's calls to
// an Expirer sink.
const ExpireEvery = time.Second

// Capture file magic numbers, as the first four bytes read big-endian.
const (
	magicPCAPMicroLE = 0xD4C3B2A1
	magicPCAPMicroBE = 0xA1B2C3D4
	magicPCAPNanoLE  = 0x4D3CB2A1
	magicPCAPNanoBE  = 0xA1B23C4D
	magicPCAPNG      = 0x0A0D0D0A
)

// packetSource is what Replay needs of the pcap and pcapng readers.
type packetSource interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// Replay decodes every frame of a pcap or pcapng capture (optionally
// gzip-compressed) read from r and hands the records to sink in file
// order, each stamped with its capture time. A nil dec decodes the default
// dialects. If sink is an Expirer, Replay calls Expire with capture time
// every ExpireEvery of it and once after the last frame.
//
// A file in another format, or with a link type the decoder does not read,
// is an error naming what it found. So is a record above MaxRecordLen,
// whatever the file's snap length, and a pcapng block whose packet does
// not fit in it: no length read from the input decides how much memory
// Replay takes, compressed input included. Replay returns the counters so far
// with any error; ctx cancels it.
func Replay(ctx context.Context, r io.Reader, dec *decode.Decoder, sink Sink) (Stats, error) {
	if dec == nil {
		dec = decode.New(nil)
	}
	rp := newReplayer(ctx, dec, sink)
	cs, err := openSource(r, 1<<20)
	if err != nil {
		return rp.st, err
	}
	defer cs.close()
	src, link, ng := cs.packetSource, cs.link, cs.ng

	checked := false // link has been checked
	for {
		data, ci, err := src.ZeroCopyReadPacketData()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return rp.st, fmt.Errorf("read packet %d: %w", rp.st.Packets+1, noEOF(err))
		}
		if err := rp.count(); err != nil {
			return rp.st, err
		}
		if ng {
			lt, _ := ci.AncillaryData[0].(layers.LinkType)
			if !checked || decode.LinkType(lt) != link {
				if err := checkLink(lt); err != nil {
					return rp.st, fmt.Errorf("pcapng interface %d: %w", ci.InterfaceIndex, err)
				}
				link, checked = decode.LinkType(lt), true
			}
		}
		rp.frame(link, data, ci.Timestamp)
	}
	rp.finish()
	return rp.st, nil
}

// source is a capture's packets, read as a stream.
type source struct {
	packetSource
	link  decode.LinkType // a pcap file's; pcapng gives one per packet
	ng    bool
	close func() // releases the gzip reader, if any
}

// openSource reads the header of the capture r holds, gzip-compressed or
// not, through buffers of size bytes (at least a whole record, as
// pcapStream reads records in place), and returns its packets: a pcap
// stream, or pcapgo's pcapng reader behind the check of every block's
// length. Replay reads captures with it, and ReplayFiles peeks at their
// first packets with it.
func openSource(r io.Reader, size int) (source, error) {
	s := source{close: func() {}}
	br := bufio.NewReaderSize(r, size)
	magic, err := br.Peek(4)
	if err != nil {
		return s, fmt.Errorf("read capture header: %w", noEOF(err))
	}
	if magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return s, fmt.Errorf("read gzip header: %w", err)
		}
		s.close = func() { zr.Close() }
		br = bufio.NewReaderSize(zr, size)
		if magic, err = br.Peek(4); err != nil {
			s.close()
			return s, fmt.Errorf("read capture header: %w", noEOF(err))
		}
	}
	switch m := binary.BigEndian.Uint32(magic); m {
	case magicPCAPMicroLE, magicPCAPMicroBE, magicPCAPNanoLE, magicPCAPNanoBE:
		ps, err := newPCAPStream(br)
		if err != nil {
			s.close()
			return s, fmt.Errorf("read pcap header: %w", err)
		}
		if err := checkLink(ps.link); err != nil {
			s.close()
			return s, err
		}
		s.packetSource, s.link = ps, decode.LinkType(ps.link)
	case magicPCAPNG:
		// pcapgo reads through a buffer of its own unless given one; one
		// that stays in the CPU's cache while it is checked then read.
		nr, err := pcapgo.NewNgReader(bufio.NewReaderSize(newNGBlocks(br), 64<<10), pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			s.close()
			return s, fmt.Errorf("read pcapng header: %w", err)
		}
		s.packetSource, s.ng = nr, true
	default:
		s.close()
		return s, fmt.Errorf("not a pcap or pcapng file: it starts with %#08x (pcap starts with a1b2c3d4 or d4c3b2a1, pcapng with 0a0d0d0a)", m)
	}
	return s, nil
}

// replayer is the part of Replay that does not depend on the file format:
// it counts frames, decodes them, and keeps an Expirer sink's clock.
type replayer struct {
	ctx        context.Context
	dec        *decode.Decoder
	sink       Sink
	exp        Expirer
	rec        decode.Record
	nextExpire time.Time
	last       time.Time
	st         Stats
}

func newReplayer(ctx context.Context, dec *decode.Decoder, sink Sink) *replayer {
	exp, _ := sink.(Expirer)
	return &replayer{ctx: ctx, dec: dec, sink: sink, exp: exp}
}

// count counts a frame read, and returns ctx's error, which it checks
// once every 65536 frames.
func (r *replayer) count() error {
	r.st.Packets++
	if r.st.Packets&0xffff == 1 {
		return r.ctx.Err()
	}
	return nil
}

// frame decodes a frame counted already and hands its record to the sink.
func (r *replayer) frame(link decode.LinkType, data []byte, ts time.Time) {
	if r.exp != nil && !ts.Before(r.nextExpire) {
		if !r.nextExpire.IsZero() {
			r.exp.Expire(ts)
		}
		r.nextExpire = ts.Add(ExpireEvery)
	}
	if ts.After(r.last) {
		r.last = ts
	}
	if why := r.dec.Decode(link, data, ts, &r.rec); why != decode.OK {
		r.st.Failures[why]++
		return
	}
	r.sink.Observe(&r.rec)
	r.st.Records++
}

// finish expires an Expirer sink at the time of the last frame.
func (r *replayer) finish() {
	if r.exp != nil && !r.last.IsZero() {
		r.exp.Expire(r.last)
	}
}

// checkLink names a link type the decoder does not read.
func checkLink(lt layers.LinkType) error {
	err := decode.CheckLink(decode.LinkType(lt))
	if err == nil {
		return nil
	}
	if name := lt.String(); name != "UnknownLinkType" {
		return fmt.Errorf("capture file of link type %s: %w", name, err)
	}
	return fmt.Errorf("capture file: %w", err)
}

// noEOF turns an EOF in the middle of a structure into ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
