package capture

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/internal/craft/gen"
)

// *correlate.Table is what the daemon and toad replay feed.
var (
	_ Sink    = (*correlate.Table)(nil)
	_ Expirer = (*correlate.Table)(nil)
)

// benchCapture is a generated capture of the traffic a server behind
// proxies sees: mostly data, a handshake and a close per connection, a TOA
// in the handshake.
var benchCapture = sync.OnceValues(func() ([]byte, *gen.Truth) { return benchFile(gen.PCAP) })

// benchCaptureNG is benchCapture's traffic in a pcapng file.
var benchCaptureNG = sync.OnceValues(func() ([]byte, *gen.Truth) { return benchFile(gen.PCAPNG) })

func benchFile(f gen.Format) ([]byte, *gen.Truth) {
	var buf bytes.Buffer
	truth, err := gen.Write(&buf, f, gen.Config{
		Seed: 42, Conns: 10000, Framings: []craft.Framing{{Link: decode.LinkEthernet}},
		IPv6: 0.3, Plain: 0.05, Spoofed: 0.01, DataSegments: 8, Junk: 0.02, Options: 0.05, Concurrency: 256,
	})
	if err != nil {
		panic(err)
	}
	return buf.Bytes(), truth
}

// replayInto replays data through the decoder into a new table.
func replayInto(b *testing.B, r io.Reader, dec *decode.Decoder) Stats {
	t, err := correlate.New(correlate.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer t.Close()
	st, err := Replay(context.Background(), r, dec, t)
	if err != nil {
		b.Fatal(err)
	}
	return st
}

// BenchmarkReplay replays a generated capture from memory through the
// decoder and a correlate.Table.
func BenchmarkReplay(b *testing.B) {
	benchReplay(b, benchCapture)
}

// BenchmarkReplayPCAPNG is BenchmarkReplay on the same traffic in pcapng,
// which pcapgo reads behind the check of every block's length.
func BenchmarkReplayPCAPNG(b *testing.B) {
	benchReplay(b, benchCaptureNG)
}

// benchReplay replays the capture file gives from memory, as
// BenchmarkReplay says.
func benchReplay(b *testing.B, file func() ([]byte, *gen.Truth)) {
	data, truth := file()
	dec := decode.New(nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		replayInto(b, bytes.NewReader(data), dec)
	}
	b.ReportMetric(float64(truth.Packets)*float64(b.N)/b.Elapsed().Seconds(), "packets/s")
}

// BenchmarkReplayVsTshark replays the same capture from a file, and has
// tshark extract the same fields (addresses, ports, flags, sequence
// numbers and the raw TCP options, which hold the TOA) from the same file
// once, and reports both rates and their ratio (x-tshark). It skips when
// tshark is not installed.
func BenchmarkReplayVsTshark(b *testing.B) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		b.Skip("tshark not installed (Debian: apt-get install tshark)")
	}
	data, truth := benchCapture()
	file := filepath.Join(b.TempDir(), "bench.pcap")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(tshark, "-n", "-r", file, "-T", "fields",
		"-e", "frame.time_epoch", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport",
		"-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport",
		"-e", "tcp.flags", "-e", "tcp.seq_raw", "-e", "tcp.ack_raw", "-e", "tcp.options")
	var (
		lines  lineCounter
		stderr bytes.Buffer
	)
	cmd.Stdout, cmd.Stderr = &lines, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("tshark: %v\n%s", err, stderr.Bytes())
	}
	tsharkRate := float64(truth.Packets) / time.Since(start).Seconds()
	if lines.n != truth.Packets {
		b.Fatalf("tshark printed %d lines for %d packets", lines.n, truth.Packets)
	}

	dec := decode.New(nil)
	b.ReportAllocs()
	replayFileLoop(b, file, dec)
	rate := float64(truth.Packets) * float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "packets/s")
	b.ReportMetric(tsharkRate, "tshark-packets/s")
	b.ReportMetric(rate/tsharkRate, "x-tshark")
}

type lineCounter struct{ n int }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}

// replayFileLoop replays file, in the page cache, b.N times.
func replayFileLoop(b *testing.B, file string, dec *decode.Decoder) {
	for b.Loop() {
		f, err := os.Open(file)
		if err != nil {
			b.Fatal(err)
		}
		replayInto(b, f, dec)
		f.Close()
	}
}

// BenchmarkReplayFile replays the generated capture from a file in the
// page cache.
func BenchmarkReplayFile(b *testing.B) {
	data, truth := benchCapture()
	file := filepath.Join(b.TempDir(), "bench.pcap")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		b.Fatal(err)
	}
	dec := decode.New(nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	replayFileLoop(b, file, dec)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/(float64(truth.Packets)*float64(b.N)), "ns/packet")
}
