package capture_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/toad-project/toad/capture"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
)

// TestMappedReplayStaysSmall: replaying a mapped pcap file hands the pages
// it has read back, so that the mapping's resident memory stays far below
// the file's size however large the file.
func TestMappedReplayStaysSmall(t *testing.T) {
	const size = 160 << 20
	seg := craft.Segment{Src: proxy, Dst: server, Flags: decode.ACK, Payload: make([]byte, 200)}
	frame := seg.IP()
	name := filepath.Join(t.TempDir(), "big.pcap")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], 101) // raw IP
	w.Write(hdr)
	rec := make([]byte, 16)
	n := 0
	for written := 24; written < size; written += 16 + len(frame) {
		binary.LittleEndian.PutUint32(rec[0:], uint32(1714572000+n/1000))
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(frame)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(frame)))
		w.Write(rec)
		w.Write(frame)
		n++
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	f, err = os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var peak int64
	seen := 0
	sink := capture.SinkFunc(func(*decode.Record) {
		if seen++; seen%(n/8) == 0 {
			peak = max(peak, mappedRSS(t, name))
		}
	})
	st, err := capture.Replay(context.Background(), f, nil, sink)
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != uint64(n) {
		t.Fatalf("replayed %d records, want %d", st.Records, n)
	}
	if peak == 0 || peak > 64<<20 {
		t.Errorf("the mapping of a %d MiB file held up to %d MiB resident, want some, and under 64 MiB", size>>20, peak>>20)
	}
}

// mappedRSS returns the resident bytes of this process's mappings of the
// file name, from /proc/self/smaps.
func mappedRSS(t *testing.T, name string) int64 {
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	in := false
	for line := range strings.Lines(string(b)) {
		fields := strings.Fields(line)
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-"):
			in = len(fields) >= 6 && fields[5] == name
		case in && len(fields) == 3 && fields[0] == "Rss:":
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			total += kb << 10
		}
	}
	return total
}
