package replaycmp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"slices"
	"time"

	"github.com/toad-project/toad/internal/cputime"
)

// Config says how many times each tool replays the capture.
type Config struct {
	// Rounds is how many times each Go tool replays the file; the tools
	// take turns, in a different order each round, and the medians count.
	// 0 means 3.
	Rounds int
	// TsharkRounds is how many of the rounds run tshark too, which is
	// slow; 0 means 1, a negative number none.
	TsharkRounds int
	// Tshark is the tshark binary; "" looks for it on PATH.
	Tshark string
	// Logf, when set, reports progress.
	Logf func(format string, args ...any)
}

// Result is one tool's measurements.
type Result struct {
	Tool string
	// Skipped says why the tool did not run; the rest is then zero.
	Skipped string
	// Runs is how many times it replayed the capture.
	Runs    int
	Packets int
	// Wall and CPU are the medians of the runs' elapsed and CPU time
	// (user and system; for tshark, its process's and the reading of its
	// output). WallMin and WallMax are the fastest and slowest runs.
	Wall, CPU        time.Duration
	WallMin, WallMax time.Duration
	// Allocs is the median of the heap allocations per packet (Go tools;
	// -1 for tshark, which MaxRSS describes instead).
	Allocs float64
	// MaxRSS is tshark's peak resident memory, in bytes.
	MaxRSS int64
	// Maps reports that the tool finds mappings (all but ReadOnly). Found
	// is those of the last run; Agrees reports that every run's equal the
	// capture's ground truth.
	Maps   bool
	Found  Mappings
	Agrees bool
	// Unread counts, for NewPacket when it disagrees, the packets in which
	// toad's decoder finds a TOA and NewPacket finds no TCP header;
	// UnreadAtomic those of them with an IPv6 atomic fragment header.
	Unread, UnreadAtomic int
}

// NsPerPacket is the median wall time per packet.
func (r *Result) NsPerPacket() float64 {
	if r.Packets == 0 {
		return 0
	}
	return float64(r.Wall.Nanoseconds()) / float64(r.Packets)
}

// CPUPerPacket is the median CPU time per packet, in nanoseconds.
func (r *Result) CPUPerPacket() float64 {
	if r.Packets == 0 {
		return 0
	}
	return float64(r.CPU.Nanoseconds()) / float64(r.Packets)
}

// PacketsPerSec is the median rate.
func (r *Result) PacketsPerSec() float64 {
	if r.Wall <= 0 {
		return 0
	}
	return float64(r.Packets) / r.Wall.Seconds()
}

// Find returns the result of tool, or nil.
func Find(results []Result, tool string) *Result {
	for i := range results {
		if results[i].Tool == tool {
			return &results[i]
		}
	}
	return nil
}

// run is one way to replay a capture. It returns the packets read and a
// function that gives the mappings found, called once the clock has
// stopped.
type run func(ctx context.Context, c *Capture) (packets int, found func() Mappings, err error)

type sample struct {
	wall, cpu time.Duration
	allocs    float64
}

// Compare replays c with every tool and returns their results, toad's
// first, then the gopacket ways, the read-only floor and tshark. A tool
// that cannot run (tshark not installed) is a result with Skipped set; a
// tool that fails is an error.
func Compare(ctx context.Context, c *Capture, cfg Config) ([]Result, error) {
	if cfg.Rounds == 0 {
		cfg.Rounds = 3
	}
	if cfg.TsharkRounds == 0 {
		cfg.TsharkRounds = 1
	}
	cfg.TsharkRounds = min(cfg.TsharkRounds, cfg.Rounds)
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	tools := []struct {
		name string
		run  run
	}{{Toad, replayToad}, {DLP, replayWith(dlpDecoder)}, {NewPacket, replayWith(newPacketDecoder)}, {ReadOnly, replayWith(readOnly)}}
	results := make([]Result, len(tools)+1)
	samples := make([][]sample, len(results))
	for i, t := range tools {
		results[i] = Result{Tool: t.name, Maps: t.name != ReadOnly, Agrees: true}
	}
	ts := &results[len(tools)]
	*ts = Result{Tool: Tshark, Maps: true, Agrees: true}
	bin := cfg.Tshark
	switch {
	case cfg.TsharkRounds < 0:
		ts.Skipped = "not asked for"
	case bin == "":
		var err error
		if bin, err = exec.LookPath("tshark"); err != nil {
			ts.Skipped = "tshark is not installed (Debian: apt-get install tshark)"
		}
	}
	record := func(i, packets int, found Mappings, s sample) {
		r := &results[i]
		r.Runs++
		r.Packets, r.Found = packets, found
		r.Agrees = r.Agrees && (!r.Maps || found == c.Truth)
		samples[i] = append(samples[i], s)
		logf("replay: %s: %d packets in %v (%.0f ns/packet, %.2f allocs/packet)",
			r.Tool, packets, s.wall.Round(time.Millisecond), float64(s.wall.Nanoseconds())/float64(max(packets, 1)), s.allocs)
	}
	first := (cfg.Rounds - cfg.TsharkRounds) / 2 // tshark runs in the middle rounds
	for round := range cfg.Rounds {
		for k := range tools {
			i := (k + round) % len(tools)
			t := tools[i]
			s, packets, found, err := measure(ctx, c, t.run)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", t.name, err)
			}
			record(i, packets, found, s)
		}
		if ts.Skipped == "" && round >= first && round < first+cfg.TsharkRounds {
			var tr tsharkRun
			s, packets, found, err := measure(ctx, c, func(ctx context.Context, c *Capture) (int, func() Mappings, error) {
				return replayTshark(ctx, bin, c, &tr)
			})
			if err != nil {
				if errors.Is(err, ctx.Err()) {
					return nil, err
				}
				return nil, fmt.Errorf("%s: %w", Tshark, err)
			}
			s.cpu += tr.cpu
			s.allocs = -1
			ts.MaxRSS = max(ts.MaxRSS, tr.maxRSS)
			record(len(tools), packets, found, s)
		}
	}
	if np := Find(results, NewPacket); np != nil && !np.Agrees {
		var err error
		if np.Unread, np.UnreadAtomic, err = unreadByNewPacket(ctx, c); err != nil {
			return nil, err
		}
	}
	for i := range results {
		r, ss := &results[i], samples[i]
		if len(ss) == 0 {
			r.Agrees = false
			continue
		}
		r.Wall = median(ss, func(s sample) time.Duration { return s.wall })
		r.CPU = median(ss, func(s sample) time.Duration { return s.cpu })
		r.Allocs = median(ss, func(s sample) float64 { return s.allocs })
		r.WallMin = slices.MinFunc(ss, func(a, b sample) int { return cmp.Compare(a.wall, b.wall) }).wall
		r.WallMax = slices.MaxFunc(ss, func(a, b sample) int { return cmp.Compare(a.wall, b.wall) }).wall
	}
	return results, nil
}

// measure runs r once from a collected heap and returns its time, CPU time
// and allocations per packet, and the mappings it found.
func measure(ctx context.Context, c *Capture, r run) (sample, int, Mappings, error) {
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	cpu0, start := cputime.Process(), time.Now()
	packets, found, err := r(ctx, c)
	wall, cpu := time.Since(start), cputime.Process()-cpu0
	runtime.ReadMemStats(&m1)
	if err != nil {
		return sample{}, 0, Mappings{}, err
	}
	s := sample{wall: wall, cpu: cpu}
	if packets > 0 {
		s.allocs = float64(m1.Mallocs-m0.Mallocs) / float64(packets)
	}
	return s, packets, found(), nil
}

// median returns the median of f over s (the upper one of an even count).
func median[S any, T int64 | time.Duration | float64](s []S, f func(S) T) T {
	v := make([]T, len(s))
	for i := range s {
		v[i] = f(s[i])
	}
	slices.Sort(v)
	return v[len(v)/2]
}
