package capture

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/internal/craft/gen"
)

// replayBudget is the most a replay of the hostile inputs below may
// allocate: its buffers (two of 1 MiB with gzip) and some room. The inputs
// hold 32 MiB after the lying length, which a reader that believes it
// would allocate, twice over as its buffer grows.
const replayBudget = 8 << 20

// zeros is what follows a lying length: compressed, 32 MiB of zeros take
// 32 KiB.
const zeros = 32 << 20

// allocated returns how many bytes f allocated. The tests that call it do
// not run in parallel with others.
func allocated(f func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// gzipped compresses b.
func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// gzippedZeros is zeros zero bytes, compressed: gzip streams that follow
// one another read as one, so the same stream of 64 KiB of zeros repeats.
var gzippedZeros = sync.OnceValue(func() []byte {
	var one bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&one, gzip.BestCompression)
	zw.Write(make([]byte, 64<<10))
	zw.Close()
	return bytes.Repeat(one.Bytes(), zeros/(64<<10))
})

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// ngBlock is a little-endian pcapng block of type typ holding body, with
// length as its length fields (0: the true one).
func ngBlock(typ uint32, length uint32, body ...[]byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, typ)
	b = binary.LittleEndian.AppendUint32(b, 0)
	for _, p := range body {
		b = append(b, p...)
	}
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	if length == 0 {
		length = uint32(len(b) + 4)
	}
	binary.LittleEndian.PutUint32(b[4:], length)
	return binary.LittleEndian.AppendUint32(b, length)
}

func le32(v ...uint32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, x)
	}
	return b
}

// ngStart is a section header and an Ethernet interface of snap length
// snaplen.
func ngStart(snaplen uint32) []byte {
	shb := ngBlock(ngSHB, 0, le32(ngOrderMag, 1), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	idb := ngBlock(ngIDB, 0, le32(1, snaplen)) // link type 1 (Ethernet), reserved 0
	return append(shb, idb...)
}

// ngEPBHeader is the fixed part of an Enhanced Packet Block's body.
func ngEPBHeader(caplen, origlen uint32) []byte { return le32(0, 0, 1, caplen, origlen) }

// TestReplayGzipBomb: a gzipped pcap file of a few kilobytes whose record
// claims a gigabyte, over a snap length of 4 GiB, is refused at the
// record's header, without allocating what it claims.
func TestReplayGzipBomb(t *testing.T) {
	var b bytes.Buffer
	b.Write(pcapHeader(1))
	binary.LittleEndian.PutUint32(b.Bytes()[16:], 0xffffffff) // snap length
	b.Write(le32(1, 0, 1<<30, 1<<30))                         // a record of 1 GiB
	bomb := filepath.Join(t.TempDir(), "bomb.pcap.gz")
	if err := os.WriteFile(bomb, append(gzipped(t, b.Bytes()), gzippedZeros()...), 0o644); err != nil {
		t.Fatal(err)
	}
	var err error
	var st Stats
	n := allocated(func() {
		f, ferr := os.Open(bomb)
		if ferr != nil {
			t.Fatal(ferr)
		}
		defer f.Close()
		st, err = Replay(context.Background(), f, nil, SinkFunc(func(*decode.Record) {}))
	})
	if !errors.Is(err, errRecordTooLarge) || !strings.Contains(err.Error(), "read packet 1: record of 1073741824 bytes: larger than 262144 bytes") {
		t.Errorf("replay of the bomb: %v; want the record of 1073741824 bytes refused", err)
	}
	if st.Packets != 0 {
		t.Errorf("replay of the bomb counted %d packets, want 0", st.Packets)
	}
	if n > replayBudget {
		t.Errorf("replay of the bomb allocated %d bytes, want at most %d", n, replayBudget)
	}
}

// TestReplayPCAPNGBounds: a pcapng block whose packet claims more than
// the block holds, or more than any capture tool writes, or whose length
// is out of bounds, is refused before its bytes are read, with an error
// saying what is wrong; memory stays within the budget whatever follows.
func TestReplayPCAPNGBounds(t *testing.T) {
	frame := craft.Framing{Link: decode.LinkEthernet}.Frame((&craft.Segment{Src: proxy4, Dst: server4, Flags: decode.SYN}).IP())
	good := ngBlock(ngEPB, 0, ngEPBHeader(uint32(len(frame)), uint32(len(frame))), frame)
	for _, c := range []struct {
		name    string
		snaplen uint32
		blocks  []byte
		want    string // "" for none
		packets uint64
	}{
		{"a packet that fits", 0, good, "", 2},
		{"enhanced packet larger than its block", 0, ngBlock(ngEPB, 0, ngEPBHeader(1<<30, 1<<30), frame),
			"read packet 2: pcapng packet of 1073741824 bytes does not fit in its block of " + strconv.Itoa(len(good)) + " bytes", 1},
		{"enhanced packet above 262144 bytes", 0, ngBlock(ngEPB, ngEPBLen+300000, ngEPBHeader(300000, 300000)),
			"read packet 2: record of 300000 bytes: larger than 262144 bytes", 1},
		{"obsolete packet block larger than its block", 0, ngBlock(ngPB, 0, le32(0, 0, 1, 1<<30, 1<<30), frame),
			"read packet 2: pcapng packet of 1073741824 bytes does not fit in its block of " + strconv.Itoa(len(good)) + " bytes", 1},
		{"simple packet larger than its block", 0, ngBlock(ngSPB, 0, le32(1<<30), frame),
			"read packet 2: pcapng packet of 1073741824 bytes does not fit in its block of " + strconv.Itoa(len(good)-ngEPBLen+ngSPBLen) + " bytes", 1},
		{"simple packet cut to the snap length", uint32(len(frame)), ngBlock(ngSPB, 0, le32(1<<30), frame), "", 2},
		{"block of 4 GiB", 0, ngBlock(0x0BAD, 0xfffffff0), "pcapng block of type 0xbad and length 4294967280: larger than the", 1},
		{"block shorter than its header", 0, ngBlock(ngEPB, 8), "pcapng block of type 0x6 and length 8: want a multiple of 4 of at least 32", 1},
		{"block length not a multiple of 4", 0, ngBlock(0x0BAD, 4099), "want a multiple of 4 of at least 12", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := append(append(ngStart(c.snaplen), good...), c.blocks...)
			for _, compressed := range []bool{false, true} {
				// What follows the blocks: nothing after whole ones.
				var data []byte
				switch {
				case compressed && c.want == "":
					data = gzipped(t, in)
				case compressed:
					data = append(gzipped(t, in), gzippedZeros()...)
				case c.want == "":
					data = in
				}
				var r io.Reader = bytes.NewReader(data)
				if data == nil {
					r = io.MultiReader(bytes.NewReader(in), io.LimitReader(zeroReader{}, zeros))
				}
				var err error
				var st Stats
				n := allocated(func() {
					st, err = Replay(context.Background(), r, nil, SinkFunc(func(*decode.Record) {}))
				})
				switch {
				case c.want == "" && err != nil:
					t.Errorf("gzip %v: %v, want no error", compressed, err)
				case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
					t.Errorf("gzip %v: %v, want an error saying %q", compressed, err, c.want)
				}
				if st.Packets != c.packets {
					t.Errorf("gzip %v: %d packets read, want %d", compressed, st.Packets, c.packets)
				}
				if n > replayBudget {
					t.Errorf("gzip %v: allocated %d bytes, want at most %d", compressed, n, replayBudget)
				}
			}
		})
	}
}

// FuzzReplay replays arbitrary input, gzipped or not. Nothing may panic,
// and no more packets may be counted than uncompressed input has room for.
func FuzzReplay(f *testing.F) {
	for _, format := range []gen.Format{gen.PCAP, gen.PCAPNG} {
		data, _ := generate(f, format, gen.Config{Seed: 3, Conns: 2, IPv6: 0.5})
		f.Add(data)
	}
	frame := craft.Framing{Link: decode.LinkEthernet}.Frame((&craft.Segment{Src: proxy4, Dst: server4, Flags: decode.SYN}).IP())
	good := ngBlock(ngEPB, 0, ngEPBHeader(uint32(len(frame)), uint32(len(frame))), frame)
	for _, blocks := range [][]byte{
		good,
		ngBlock(ngEPB, 0, ngEPBHeader(1<<30, 1<<30), frame),
		ngBlock(ngSPB, 0, le32(1<<30), frame),
		ngBlock(0x0BAD, 0xfffffff0),
		ngBlock(ngEPB, 8),
	} {
		f.Add(append(ngStart(0), blocks...))
	}
	var pcap bytes.Buffer
	pcap.Write(pcapHeader(1))
	pcap.Write(le32(1, 0, uint32(len(frame)), uint32(len(frame))))
	pcap.Write(frame)
	f.Add(pcap.Bytes())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(pcap.Bytes())
	zw.Close()
	f.Add(gz.Bytes())

	sink := SinkFunc(func(*decode.Record) {})
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := Replay(context.Background(), bytes.NewReader(data), nil, sink)
		gzipped := len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b
		if !gzipped && st.Packets > uint64(len(data)/pcapRecordLen) {
			t.Fatalf("%d packets counted in %d bytes (error %v)", st.Packets, len(data), err)
		}
	})
}
