package capture

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/internal/craft/gen"
)

// frame is what a pcap reader gives of a record.
type frame struct {
	Data           []byte
	Time           time.Time
	CapLen, Length int
	Link           layers.LinkType
}

// exactTime compares times with ==, same instant and same location, and
// addresses with ==.
var exactTime = cmp.Options{
	cmp.Comparer(func(a, b time.Time) bool { return a == b }),
	cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{}),
}

// readPCAPGo reads data with pcapgo, copying each frame.
func readPCAPGo(data []byte) ([]frame, error) {
	r, err := pcapgo.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	var out []frame
	for {
		b, ci, err := r.ZeroCopyReadPacketData()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, frame{bytes.Clone(b), ci.Timestamp, ci.CaptureLength, ci.Length, r.LinkType()})
	}
}

// readInPlace reads data with pcapStream, in a buffer of the least size
// it takes.
func readInPlace(data []byte) ([]frame, error) {
	p, err := newPCAPStream(bufio.NewReaderSize(bytes.NewReader(data), pcapRecordLen+MaxRecordLen))
	if err != nil {
		return nil, err
	}
	var out []frame
	for {
		b, ci, err := p.ZeroCopyReadPacketData()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, frame{bytes.Clone(b), ci.Timestamp, ci.CaptureLength, ci.Length, p.link})
	}
}

// variant is a pcap file's byte order and timestamp resolution.
type variant struct {
	order interface {
		binary.ByteOrder
		binary.AppendByteOrder
	}
	nano bool
}

func (v variant) String() string {
	res := "micro"
	if v.nano {
		res = "nano"
	}
	return fmt.Sprintf("%v %s", v.order, res)
}

var variants = []variant{{binary.LittleEndian, false}, {binary.LittleEndian, true}, {binary.BigEndian, false}, {binary.BigEndian, true}}

// rewrite writes the records of the pcap file data again in v's byte
// order and resolution, with snaplen in the header.
func rewrite(t testing.TB, data []byte, v variant, snaplen uint32) []byte {
	t.Helper()
	in, err := readPCAPGo(data)
	if err != nil {
		t.Fatal(err)
	}
	magic := uint32(0xa1b2c3d4)
	if v.nano {
		magic = 0xa1b23c4d
	}
	out := v.order.AppendUint32(nil, magic)
	out = v.order.AppendUint16(out, 2)
	out = v.order.AppendUint16(out, 4)
	out = append(out, make([]byte, 8)...)
	out = v.order.AppendUint32(out, snaplen)
	out = v.order.AppendUint32(out, uint32(in[0].Link))
	for _, f := range in {
		frac := f.Time.Nanosecond()
		if !v.nano {
			frac /= 1000
		}
		out = v.order.AppendUint32(out, uint32(f.Time.Unix()))
		out = v.order.AppendUint32(out, uint32(frac))
		out = v.order.AppendUint32(out, uint32(f.CapLen))
		out = v.order.AppendUint32(out, uint32(f.Length))
		out = append(out, f.Data...)
	}
	return out
}

// writeTemp writes data to a new file of t's and returns its name.
func writeTemp(t testing.TB, data []byte) string {
	t.Helper()
	return writeIn(t, t.TempDir(), data)
}

// writeIn writes data to the file capture.pcap of dir and returns its name.
func writeIn(t testing.TB, dir string, data []byte) string {
	t.Helper()
	name := filepath.Join(dir, "capture.pcap")
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

// replayBoth replays data from memory and from a file, capture.pcap of
// dir.
func replayBoth(t testing.TB, dir string, data []byte) (viaReader, viaFile replayResult) {
	t.Helper()
	viaReader.run(bytes.NewReader(data))
	f, err := os.Open(writeIn(t, dir, data))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	viaFile.run(f)
	return viaReader, viaFile
}

type replayResult struct {
	Stats   Stats
	Err     string
	Records []decode.Record
	Expires []time.Time
}

func (r *replayResult) run(in io.Reader) {
	var rec recorder
	st, err := Replay(context.Background(), in, nil, &rec)
	r.Stats, r.Records, r.Expires = st, rec.records, rec.expires
	if err != nil {
		r.Err = err.Error()
	}
}

// TestPCAPFileMatchesPCAPGo: the in-place reader gives the frames,
// capture times, lengths and link type pcapgo gives, in both byte orders
// and both resolutions; and Replay gives the same records from a file as
// from memory.
func TestPCAPFileMatchesPCAPGo(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  gen.Config
	}{
		{"ethernet", gen.Config{Seed: 3, Conns: 60, DataSegments: 3, Junk: 0.1, IPv6: 0.5, Framings: []craft.Framing{{Link: decode.LinkEthernet, Tags: []uint16{0x8100}}, {Link: decode.LinkEthernet}}}},
		{"sll2", gen.Config{Seed: 4, Conns: 30, Framings: []craft.Framing{{Link: decode.LinkLinuxSLL2}}, Gap: 300 * time.Millisecond}},
		{"raw", gen.Config{Seed: 5, Conns: 30, Framings: []craft.Framing{{Link: decode.LinkRaw}}, Start: time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC)}},
	} {
		src, _ := generate(t, gen.PCAP, c.cfg)
		for _, v := range variants {
			t.Run(c.name+" "+v.String(), func(t *testing.T) {
				data := rewrite(t, src, v, 65535)
				want, err := readPCAPGo(data)
				if err != nil {
					t.Fatal(err)
				}
				if len(want) < 100 {
					t.Fatalf("pcapgo read %d frames, want a capture of at least 100", len(want))
				}
				got, err := readInPlace(data)
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(want, got, exactTime); d != "" {
					t.Errorf("frames differ from pcapgo's (-pcapgo +in place):\n%s", d)
				}
				viaReader, viaFile := replayBoth(t, t.TempDir(), data)
				if d := cmp.Diff(viaReader, viaFile, exactTime); d != "" {
					t.Errorf("Replay of a file differs from Replay of a stream (-stream +file):\n%s", d)
				}
			})
		}
	}
}

// TestPCAPFileDamaged: a file cut anywhere (right after a record's header
// included, which pcapgo would take for the end), or with a record or
// header that is refused, gives Replay the same error and counts from a
// file as from a stream.
func TestPCAPFileDamaged(t *testing.T) {
	src, _ := generate(t, gen.PCAP, gen.Config{Seed: 7, Conns: 2})
	data := rewrite(t, src, variant{binary.BigEndian, false}, 2000)
	// The offsets at which records start.
	var starts []int
	for off := pcapHeaderLen; off < len(data); off += pcapRecordLen + int(binary.BigEndian.Uint32(data[off+8:])) {
		starts = append(starts, off)
	}
	dir := t.TempDir()
	for cut := 0; cut < len(data); cut++ {
		viaReader, viaFile := replayBoth(t, dir, data[:cut])
		if i := slices.Index(starts, cut-pcapRecordLen); i >= 0 {
			want := fmt.Sprintf("read packet %d: unexpected EOF", i+1)
			if viaFile.Err != want || viaFile.Stats.Packets != uint64(i) {
				t.Errorf("cut after record %d's header: got %q after %d packets, want %q after %d", i+1, viaFile.Err, viaFile.Stats.Packets, want, i)
			}
		}
		if viaFile.Err == "" && !slices.Contains(starts, cut) {
			t.Errorf("cut at %d, inside a record or the file header: read without error", cut)
		}
		if d := cmp.Diff(viaReader, viaFile, exactTime); d != "" {
			t.Errorf("cut at %d of %d: Replay of a file differs from Replay of a stream (-stream +file):\n%s", cut, len(data), d)
		}
	}

	set := func(off int, v uint32) []byte {
		b := bytes.Clone(data)
		binary.BigEndian.PutUint32(b[off:], v)
		return b
	}
	second := starts[1]
	// A snap length of 4 GiB, and a second record of 300000 bytes.
	huge := set(16, 0xffffffff)
	binary.BigEndian.PutUint32(huge[second+8:], 300000)
	binary.BigEndian.PutUint32(huge[second+12:], 300000)
	huge = append(huge[:second+pcapRecordLen], make([]byte, 300000)...)
	for _, c := range []struct {
		name string
		in   []byte
		want string
	}{
		{"major version 3", set(4, 3<<16|4), "read pcap header: Unknown major version 3"},
		{"minor version 3", set(4, 2<<16|3), "read pcap header: Unknown minor version 3"},
		{"802.11", set(20, 105), "link type 105 is not supported"},
		{"record above 262144 bytes", set(second+8, 262145), "read packet 2: record of 262145 bytes: larger than 262144 bytes"},
		{"record above 262144 bytes, whatever the snap length", huge, "read packet 2: record of 300000 bytes: larger than 262144 bytes"},
		{"capture length above the original length", set(second+12, 10), "read packet 2: capture length exceeds original packet length: "},
		{"header cut", data[:pcapHeaderLen-1], "read pcap header: unexpected EOF"},
	} {
		viaReader, viaFile := replayBoth(t, dir, c.in)
		if !bytes.Contains([]byte(viaFile.Err), []byte(c.want)) {
			t.Errorf("%s: got error %q, want one saying %q", c.name, viaFile.Err, c.want)
		}
		if d := cmp.Diff(viaReader, viaFile, exactTime); d != "" {
			t.Errorf("%s: Replay of a file differs from Replay of a stream (-stream +file):\n%s", c.name, d)
		}
	}
}

// TestReplayFileAllocations: replaying a file does not allocate per
// packet.
func TestReplayFileAllocations(t *testing.T) {
	small, _ := generate(t, gen.PCAP, gen.Config{Seed: 1, Conns: 20, DataSegments: 2})
	large, truth := generate(t, gen.PCAP, gen.Config{Seed: 1, Conns: 400, DataSegments: 2})
	sink := SinkFunc(func(*decode.Record) {})
	dec := decode.New(nil)
	measure := func(name string) float64 {
		return testing.AllocsPerRun(5, func() {
			f, err := os.Open(name)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := Replay(context.Background(), f, dec, sink); err != nil {
				t.Fatal(err)
			}
		})
	}
	a, b := measure(writeTemp(t, small)), measure(writeTemp(t, large))
	if b-a > 10 {
		t.Errorf("%v allocations for a small capture, %v for one of %d packets: want no allocation per packet", a, b, truth.Packets)
	}
}
