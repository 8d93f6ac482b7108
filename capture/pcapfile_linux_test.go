package capture

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft/gen"
)

// TestMapPCAP: Replay maps regular pcap files read from their start, and
// nothing else.
func TestMapPCAP(t *testing.T) {
	pcap, _ := generate(t, gen.PCAP, gen.Config{Seed: 1, Conns: 5})
	ng, _ := generate(t, gen.PCAPNG, gen.Config{Seed: 1, Conns: 5})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(pcap)
	zw.Close()
	open := func(t *testing.T, data []byte) *os.File {
		f, err := os.Open(writeTemp(t, data))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	for _, c := range []struct {
		name string
		file func(t *testing.T) *os.File
		want bool
	}{
		{"pcap", func(t *testing.T) *os.File { return open(t, pcap) }, true},
		{"pcap not at its start", func(t *testing.T) *os.File {
			f := open(t, pcap)
			if _, err := f.Seek(1, 0); err != nil {
				t.Fatal(err)
			}
			return f
		}, false},
		{"pcapng", func(t *testing.T) *os.File { return open(t, ng) }, false},
		{"gzip", func(t *testing.T) *os.File { return open(t, gz.Bytes()) }, false},
		{"empty", func(t *testing.T) *os.File { return open(t, nil) }, false},
		{"pipe", func(t *testing.T) *os.File {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close(); w.Close() })
			return r
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			buf := mapPCAP(c.file(t))
			if buf != nil {
				defer unmapPCAP(buf)
			}
			if got := buf != nil; got != c.want {
				t.Errorf("mapped: got %v, want %v", got, c.want)
			}
		})
	}
}

// TestReplayFileShrinks: a file cut short while Replay reads it in place
// is an error, not a crash.
func TestReplayFileShrinks(t *testing.T) {
	data, truth := generate(t, gen.PCAP, gen.Config{Seed: 2, Conns: 200, DataSegments: 2})
	if len(data) < 1<<16 {
		t.Fatalf("capture of %d bytes, want several pages", len(data))
	}
	name := writeTemp(t, data)
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cut := false
	st, err := Replay(context.Background(), f, nil, SinkFunc(func(*decode.Record) {
		if !cut {
			if err := os.Truncate(name, 100); err != nil {
				t.Fatal(err)
			}
			cut = true
		}
	}))
	if !errors.Is(err, errFileChanged) || !strings.Contains(err.Error(), "capture file changed while it was replayed") {
		t.Fatalf("got error %v, want one saying the capture file changed", err)
	}
	if st.Packets == 0 || st.Packets >= uint64(truth.Packets) {
		t.Errorf("got %d packets read before the error, want some of %d", st.Packets, truth.Packets)
	}
	if debug.SetPanicOnFault(false) {
		t.Error("Replay left SetPanicOnFault on")
	}
}
