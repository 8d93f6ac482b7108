package replaycmp

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/internal/craft/gen"
)

// MemoryConfig says what MeasureMemory replays.
type MemoryConfig struct {
	// Conns is how many connections the capture holds.
	Conns int
	Seed  uint64
	// Tools are toad and the spawner (BuildTools builds them).
	Tools Tools
	// Path is where the capture is written; the caller removes it.
	Path string
	Logf func(format string, args ...any)
}

// MemoryMix is the traffic of the memory measurement: hours of
// connections through 200 proxies that take their 1000 ports in turn, so
// that each 4-tuple carries many connections one after the other, as
// proxies' do; handshake and close only (no data: the packets that matter
// to the replay's memory, and a file that fits the run). 85% of the
// connections end with a FIN, 10% with a RST and 5% never close: the next
// connection on their 4-tuple ends them.
func MemoryMix(conns int, seed uint64) gen.Config {
	return gen.Config{
		Seed: seed, Conns: conns, Concurrency: 256, Proxies: 200, Ports: 1000,
		Framings: []craft.Framing{{Link: decode.LinkEthernet}},
		IPv6:     0.3, Plain: 0.05, Spoofed: 0.01, Options: 0.02,
		Ends: gen.Ends{FIN: 0.85, RST: 0.1},
	}
}

// MemoryResult is what a replay of a long capture of many connections
// cost as a whole process.
type MemoryResult struct {
	Conns, Packets int
	// Bytes is the file's size; Span the capture time it covers.
	Bytes int64
	Span  time.Duration
	// Resolved is how many connections a TOA from a trusted proxy
	// resolved, as generated; Printed how many toad printed.
	Resolved, Printed int
	// Peak is the most connections toad held at once, as its summary
	// says.
	Peak int
	// Wall, CPU and MaxRSS are the process's: elapsed time, user and
	// system time, peak resident memory from wait4.
	Wall, CPU time.Duration
	MaxRSS    int64
	Generated time.Duration
}

// MeasureMemory writes a capture of cfg.Conns connections in the
// MemoryMix to cfg.Path, then runs toad replay --json on it as a whole
// process through the spawner, its output counted as it comes, and
// reports its peak memory.
func MeasureMemory(ctx context.Context, cfg MemoryConfig) (*MemoryResult, error) {
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	res := &MemoryResult{Conns: cfg.Conns}
	start := time.Now()
	f, err := os.Create(cfg.Path)
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	pw := pcapgo.NewWriterNanos(bw)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		f.Close()
		return nil, err
	}
	var first, last time.Time
	truth, err := gen.Stream(MemoryMix(cfg.Conns, cfg.Seed), func(ts time.Time, _ decode.LinkType, b []byte) error {
		if first.IsZero() {
			first = ts
		}
		last = ts
		return pw.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(b), Length: len(b)}, b)
	}, func(c *gen.Conn) {
		if c.Resolvable() {
			res.Resolved++
		}
	})
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write capture: %w", err)
	}
	res.Generated, res.Packets, res.Span = time.Since(start), truth.Packets, last.Sub(first)
	if fi, err := os.Stat(cfg.Path); err == nil {
		res.Bytes = fi.Size()
	}
	logf("memory: capture of %d connections, %d packets, %d MiB over %v, written in %v",
		res.Conns, res.Packets, res.Bytes>>20, res.Span.Round(time.Second), res.Generated.Round(time.Second))

	var stderr bytes.Buffer
	run, err := runProcess(ctx, cfg.Tools.Spawner, cfg.Tools.Toad, ToadArgs(cfg.Path), "", &stderr)
	if err != nil {
		return nil, fmt.Errorf("toad replay: %w", err)
	}
	res.Wall, res.CPU, res.MaxRSS, res.Printed = run.wall, run.cpu, run.maxRSS, int(run.lines)
	m := heldRE.FindSubmatch(stderr.Bytes())
	if m == nil {
		return nil, fmt.Errorf("toad replay's summary does not say how many connections it held: %s", stderr.Bytes())
	}
	res.Peak, _ = strconv.Atoi(string(m[1]))
	logf("memory: toad replay took %v, peak RSS %d MiB, printed %d connections of %d resolved, held at most %d at once",
		res.Wall.Round(time.Millisecond), res.MaxRSS>>20, res.Printed, res.Resolved, res.Peak)
	return res, nil
}

var heldRE = regexp.MustCompile(`held at most (\d+) connections? at once`)
