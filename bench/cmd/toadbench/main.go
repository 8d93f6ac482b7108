// Command toadbench measures toad beside the tools a user would pick
// instead, all in one run, and writes RESULTS.md and a chart of the
// scaling run: replay against gopacket and tshark, the kernel filter live
// in network namespaces, the connection table against ristretto, the gRPC
// API against a bare gRPC echo, how replay time and table memory grow
// with the number of connections, toad replay beside tshark as whole
// processes, the peak memory of toad replay on a capture of hours and
// millions of connections, and the live path: accept to answer through a
// proxy beside a bare gRPC echo process, the capture rate into the table,
// and what an idle toad costs.
//
//	cd bench && go run ./cmd/toadbench -out .        # make bench
//	cd bench && go run ./cmd/toadbench -quick -out out # make bench-quick
//
// It exits with status 1 when a measurement fails or toad's mappings
// differ from the generator's ground truth, after writing the report.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config is what the flags say; zero fields take the defaults of the mode.
type config struct {
	Out   string
	Label string // how the run was started, for the report: "make bench"
	Quick bool
	Only  map[string]bool // sections to run; nil means all
	Seed  uint64
	Data  float64

	ReplayConns  int
	Rounds       int
	TsharkRounds int
	Tshark       string
	TmpDir       string

	FilterConns int

	TableKeys   []int
	TableRounds int // for sizes up to 1M; larger ones run once

	APIPhase  time.Duration
	APIRounds int
	APIConns  int
	APIBatch  int

	ScaleSizes  []int
	ScaleData   float64
	ScaleRounds int

	ConnsBench     string // -bench pattern below BenchmarkConnections
	ConnsBenchtime string
	PreloadConns   int // connections per run of BenchmarkPreloadNginx
	RatePackets    int
	RateSteps      int
	IdleFor        time.Duration
	ProcessConns   []int
	ProcessRounds  int
	MemoryConns    int

	args []string
}

// sections of the report, in order.
var sections = []string{"replay", "kfilter", "table", "api", "scale", "process", "memory", "conns", "caprate", "idle", "preload"}

func (c *config) defaults() {
	full := config{
		Out: ".", Seed: 1, Data: 0.95,
		ReplayConns: 40000, Rounds: 3, TsharkRounds: 1,
		FilterConns: 5000,
		TableKeys:   []int{1_000_000, 10_000_000}, TableRounds: 3,
		APIPhase: 200 * time.Millisecond, APIRounds: 15, APIConns: 100_000, APIBatch: 1000,
		ScaleSizes: []int{10_000, 100_000, 1_000_000, 10_000_000}, ScaleData: 0.5, ScaleRounds: 3,
		ConnsBench: ".", ConnsBenchtime: "3s", RatePackets: 1_000_000, RateSteps: 5, IdleFor: time.Minute,
		ProcessConns: []int{920, 40_000}, ProcessRounds: 5, MemoryConns: 10_000_000,
		PreloadConns: 3000,
	}
	if c.Quick {
		full = config{
			Out: "out", Seed: 1, Data: 0.95,
			ReplayConns: 300, Rounds: 1, TsharkRounds: 1,
			FilterConns: 200,
			TableKeys:   []int{20_000}, TableRounds: 1,
			APIPhase: 100 * time.Millisecond, APIRounds: 2, APIConns: 5000, APIBatch: 1000,
			ScaleSizes: []int{1000, 10_000}, ScaleData: 0.5, ScaleRounds: 1,
			ConnsBench: "(syn|notoa)/batch=1$", ConnsBenchtime: "100x", RatePackets: 20_000, RateSteps: 2, IdleFor: 5 * time.Second,
			ProcessConns: []int{920}, ProcessRounds: 3, MemoryConns: 100_000,
			PreloadConns: 100,
		}
	}
	set := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Out == "" {
		c.Out = full.Out
	}
	if c.Seed == 0 {
		c.Seed = full.Seed
	}
	if c.Data == 0 {
		c.Data = full.Data
	}
	set(&c.ReplayConns, full.ReplayConns)
	set(&c.Rounds, full.Rounds)
	set(&c.TsharkRounds, full.TsharkRounds)
	set(&c.FilterConns, full.FilterConns)
	set(&c.TableRounds, full.TableRounds)
	set(&c.APIRounds, full.APIRounds)
	set(&c.APIConns, full.APIConns)
	set(&c.APIBatch, full.APIBatch)
	set(&c.ScaleRounds, full.ScaleRounds)
	set(&c.ProcessRounds, full.ProcessRounds)
	set(&c.MemoryConns, full.MemoryConns)
	if c.ProcessConns == nil {
		c.ProcessConns = full.ProcessConns
	}
	if c.APIPhase == 0 {
		c.APIPhase = full.APIPhase
	}
	if c.TableKeys == nil {
		c.TableKeys = full.TableKeys
	}
	if c.ScaleSizes == nil {
		c.ScaleSizes = full.ScaleSizes
	}
	if c.ScaleData == 0 {
		c.ScaleData = full.ScaleData
	}
	if c.ConnsBench == "" {
		c.ConnsBench = full.ConnsBench
	}
	if c.ConnsBenchtime == "" {
		c.ConnsBenchtime = full.ConnsBenchtime
	}
	set(&c.PreloadConns, full.PreloadConns)
	set(&c.RatePackets, full.RatePackets)
	set(&c.RateSteps, full.RateSteps)
	if c.IdleFor == 0 {
		c.IdleFor = full.IdleFor
	}
}

func (c *config) runs(section string) bool { return c.Only == nil || c.Only[section] }

func main() {
	var c config
	fs := flag.NewFlagSet("toadbench", flag.ExitOnError)
	fs.StringVar(&c.Out, "out", "", "directory for RESULTS.md and scaling.svg (default bench, or bench/out with -quick)")
	fs.StringVar(&c.Label, "label", "", "how the run was started, shown in the report (for example \"make bench\")")
	fs.BoolVar(&c.Quick, "quick", false, "small sizes, one round: a smoke run of the harness and its checks")
	only := fs.String("only", "", "comma-separated sections to run: "+strings.Join(sections, ","))
	fs.Uint64Var(&c.Seed, "seed", 0, "generator seed (default 1)")
	fs.Float64Var(&c.Data, "data", 0, "share of plain data packets in the traffic (default 0.95)")
	fs.IntVar(&c.ReplayConns, "replay-conns", 0, "connections in the replay comparison's capture (default 40000; quick 300)")
	fs.IntVar(&c.Rounds, "rounds", 0, "replay rounds of the Go tools (default 3; quick 1)")
	fs.IntVar(&c.TsharkRounds, "tshark-rounds", 0, "replay rounds that run tshark too; negative for none (default 1)")
	fs.StringVar(&c.Tshark, "tshark", "", "tshark binary (default: found on PATH)")
	fs.StringVar(&c.TmpDir, "tmp", "", "directory for the capture file (default: the system's)")
	fs.IntVar(&c.FilterConns, "kfilter-conns", 0, "connections sent through the live kernel filter (default 5000; quick 200)")
	tableKeys := fs.String("table-keys", "", "comma-separated table sizes (default 1000000,10000000; quick 20000)")
	fs.IntVar(&c.TableRounds, "table-rounds", 0, "rounds of the table comparison for sizes up to 1M; larger ones run once (default 3; quick 1)")
	fs.DurationVar(&c.APIPhase, "api-phase", 0, "length of each side's turn in the API comparison (default 200ms; quick 100ms)")
	fs.IntVar(&c.APIRounds, "api-rounds", 0, "rounds of the API comparison (default 15; quick 2)")
	fs.IntVar(&c.APIConns, "api-conns", 0, "connections in the API's table (default 100000; quick 5000)")
	fs.IntVar(&c.APIBatch, "api-batch", 0, "keys per BatchLookup and events per stream call (default 1000)")
	scaleSizes := fs.String("scale", "", "comma-separated connection counts of the scaling run (default 10000,100000,1000000,10000000; quick 1000,10000)")
	fs.Float64Var(&c.ScaleData, "scale-data", 0, "share of plain data packets in the scaling run's traffic (default 0.5)")
	fs.IntVar(&c.ScaleRounds, "scale-rounds", 0, "runs of each scaling size up to 1M, the median counting (default 3; quick 1)")
	fs.StringVar(&c.ConnsBench, "conns-bench", "", "cases of BenchmarkConnections to run, a -bench pattern below it (default all; quick \"(syn|notoa)/batch=1$\")")
	fs.StringVar(&c.ConnsBenchtime, "conns-benchtime", "", "go test -benchtime of BenchmarkConnections (default 3s; quick 100x)")
	fs.IntVar(&c.PreloadConns, "preload-conns", 0, "connections per run of BenchmarkPreloadNginx, unmodified nginx with and without the preload library (default 3000; quick 100)")
	fs.IntVar(&c.RatePackets, "rate-packets", 0, "segments per trial of the capture rate (default 1000000; quick 20000)")
	fs.IntVar(&c.RateSteps, "rate-steps", 0, "paced trials searching for the highest rate without drops (default 5; quick 2)")
	fs.DurationVar(&c.IdleFor, "idle", 0, "quiet period over which an idle toad's cost is measured (default 1m; quick 5s)")
	processConns := fs.String("process-conns", "", "comma-separated connection counts of the files toad replay and tshark read as whole processes (default 920,40000: 80 k and 3.5 M packets; quick 920)")
	fs.IntVar(&c.ProcessRounds, "process-rounds", 0, "toad replay runs per file in the whole-process comparison, the median counting (default 5; quick 3)")
	fs.IntVar(&c.MemoryConns, "memory-conns", 0, "connections in the capture whose replay's peak memory is measured (default 10000000; quick 100000)")
	fs.Parse(os.Args[1:])
	c.args = os.Args[1:]

	var err error
	if c.TableKeys, err = ints(*tableKeys); err == nil {
		c.ScaleSizes, err = ints(*scaleSizes)
	}
	if err == nil {
		c.ProcessConns, err = ints(*processConns)
	}
	if err == nil && *only != "" {
		c.Only = map[string]bool{}
		for s := range strings.SplitSeq(*only, ",") {
			if !slices.Contains(sections, s) {
				err = fmt.Errorf("-only: unknown section %q: want some of %s", s, strings.Join(sections, ","))
				break
			}
			c.Only[s] = true
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "toadbench:", err)
		os.Exit(2)
	}
	c.defaults()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, c, log)
	stop()
	if err != nil {
		log.Error("toadbench failed", "err", err)
		os.Exit(1)
	}
}

// ints parses a comma-separated list of positive integers; "" is nil.
func ints(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.ReplaceAll(strings.TrimSpace(f), "_", "")
		mult := 1
		switch {
		case strings.HasSuffix(f, "k"):
			f, mult = strings.TrimSuffix(f, "k"), 1000
		case strings.HasSuffix(f, "M"):
			f, mult = strings.TrimSuffix(f, "M"), 1_000_000
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive count (10000, 10k or 1M)", f)
		}
		out = append(out, n*mult)
	}
	return out, nil
}
