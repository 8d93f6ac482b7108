package report

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/toad-project/toad/bench/apicmp"
	"github.com/toad-project/toad/bench/caprate"
	"github.com/toad-project/toad/bench/connbench"
	"github.com/toad-project/toad/bench/idlecost"
	"github.com/toad-project/toad/bench/kfilter"
	"github.com/toad-project/toad/bench/replaycmp"
	"github.com/toad-project/toad/bench/tablecmp"
	"github.com/toad-project/toad/capture"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// sample is a report of made-up figures: the replay misses its goal
// against DecodingLayerParser, NewPacket misses a mapping, the capture
// rate drops at the sender's fastest but meets its goal paced, everything
// else meets its goal.
func sample() *Report {
	truth := replaycmp.Mappings{N: 950, Sum: 42}
	res := func(tool string, ns float64, allocs float64, found replaycmp.Mappings) replaycmp.Result {
		const packets = 1_000_000
		w := time.Duration(ns * packets)
		return replaycmp.Result{Tool: tool, Runs: 3, Packets: packets, Wall: w, CPU: w, WallMin: w - time.Millisecond, WallMax: w + time.Millisecond,
			Allocs: allocs, Maps: tool != replaycmp.ReadOnly, Found: found, Agrees: found == truth}
	}
	np := res(replaycmp.NewPacket, 1100, 5.25, replaycmp.Mappings{N: 949, Sum: 7})
	np.Unread, np.UnreadAtomic = 1, 1
	ts := res(replaycmp.Tshark, 21000, -1, truth)
	ts.Runs, ts.MaxRSS = 1, 160<<20
	r := &Report{
		Date:    time.Date(2026, 11, 21, 14, 0, 0, 0, time.UTC),
		Command: "make bench    # go run ./cmd/toadbench -out .",
		Took:    9 * time.Minute,
		Machine: Machine{CPU: "AMD EPYC", Cores: 2, Memory: 24 << 30, Go: "go1.26.8", OS: "linux/amd64", Kernel: "6.18.44", Load: "0.50 0.60 0.70"},
		LoadEnd: "1.50 1.60 1.70",
		Replay: &Replay{
			Capture: &replaycmp.Capture{Mix: replaycmp.Mix{Conns: 1000, Data: 0.95}, Packets: 1_000_000, Bytes: 300 << 20, Data: 0.951, DataSegments: 47, Truth: truth, Generated: 2 * time.Second},
			Rounds:  3,
			Results: []replaycmp.Result{
				res(replaycmp.Toad, 110, 0, truth),
				res(replaycmp.DLP, 250, 0, truth),
				np,
				res(replaycmp.ReadOnly, 80, 0, replaycmp.Mappings{}),
				ts,
			},
		},
		Filter: &Filter{Mix: replaycmp.Mix{Conns: 500, Data: 0.95}, Results: []kfilter.Result{
			{Filter: capture.FilterTOA, Attached: capture.FilterTOA, Sent: 40000, Inbound: 20000, Passed: 1300, Predicted: 1300, Found: truth, Truth: truth, Agrees: true},
			{Filter: capture.FilterNone, Attached: capture.FilterNone, Sent: 40000, Inbound: 20000, Passed: 20000, Predicted: 20000, Found: truth, Truth: truth, Agrees: true},
		}},
		Tables: []Table{{Keys: 1_000_000, Writers: 2, Rounds: 3, Results: []tablecmp.Result{
			{Name: "toad", SetNs: 260, GetNs: 480, BytesPerEntry: 79, Held: 1_000_000},
			{Name: "ristretto", Lost: 749_715, SetNs: 400, SetDropped: 573_897, GetNs: 580, BytesPerEntry: 305, Held: 1_000_000},
		}}},
		API: &API{Config: apicmp.Config{Phase: time.Second, Rounds: 3, Batch: 1000, Conns: 100_000}, Results: []apicmp.Result{
			{Case: "unary", Callers: 1, Unit: "calls", Toad: apicmp.Side{Rate: 21000, CPURate: 15000, P50: 33 * time.Microsecond, P99: 170 * time.Microsecond},
				Echo: apicmp.Side{Rate: 22000, CPURate: 16000, P50: 30 * time.Microsecond, P99: 160 * time.Microsecond}, RateRatio: 0.95, P50Ratio: 1.1},
			{Case: "batch", Callers: 4, Unit: "lookups", Toad: apicmp.Side{Rate: 1_200_000, CPURate: 650_000, P50: 3 * time.Millisecond, P99: 8 * time.Millisecond},
				Echo: apicmp.Side{Rate: 8_000_000, CPURate: 4_500_000, P50: 400 * time.Microsecond, P99: 2 * time.Millisecond}, RateRatio: 0.15, P50Ratio: 7.5},
		}},
		Scale: &Scale{Config: replaycmp.ScaleConfig{Data: 0.5, Rounds: 3, RepeatUpTo: 1_000_000}, Points: []replaycmp.Point{
			{Conns: 10_000, Packets: 89_000, DataSegments: 2, Runs: 3, Replay: 10 * time.Millisecond, TableBytes: 3 << 20, Entries: 9400, Agrees: true, Generated: time.Second},
			{Conns: 100_000, Packets: 890_000, DataSegments: 2, Runs: 3, Replay: 100 * time.Millisecond, TableBytes: 13 << 20, Entries: 94_000, Agrees: true, Generated: 10 * time.Second},
			{Conns: 1_000_000, Packets: 8_900_000, DataSegments: 2, Runs: 1, Replay: 1100 * time.Millisecond, TableBytes: 90 << 20, Entries: 940_000, Agrees: true, Generated: 100 * time.Second},
		}},
		Conns: &connbench.Result{Config: connbench.Config{Bench: ".", Benchtime: "3s"}, Cases: []connbench.Case{
			liveCase("syn/batch=1", 80, 60, 400, 45, 60, 1200, 20, 15, 30),
			liveCase("dpvs/batch=1", 95, 60, 600, 48, 60, 1100, 22, 15, 30),
			liveCase("notoa/batch=1", 85, 60, 450, 40, 60, 1200, 18, 15, 30),
			liveCase("dpvs/batch=30", 2500, 2400, 9000, 30, 25, 2300, 40, 70, 60),
			liveCase("persist-off/batch=30", 2500, 2400, 9000, 30, 25, 2300, 40, 70, 60),
			persisting(liveCase("persist-on/batch=30", 2600, 2400, 9100, 33, 25, 2250, 42, 70, 60), 96),
		}},
		Rate: &caprate.Result{Config: caprate.Config{Packets: 1_000_000, Readers: 1, Steps: 5}, Trials: []caprate.Trial{
			{Sent: 1_000_000, Took: 2500 * time.Millisecond, Drops: 1200, Entries: 998_800, CPU: 4 * time.Second, Sender: 2 * time.Second},
			{Target: 320_000, Sent: 1_000_000, Took: 3200 * time.Millisecond, Entries: 1_000_000, CPU: 4 * time.Second, Sender: 2 * time.Second},
		}},
		Idle: &idlecost.Result{Duration: time.Minute, Settle: 5 * time.Second, CPU: 10 * time.Millisecond, Switches: 3, Threads: 8},
		Preload: &connbench.Result{Config: connbench.Config{Benchmark: "BenchmarkPreloadNginx", Benchtime: "3000x"}, Cases: []connbench.Case{
			{Iterations: 3000, Metrics: map[string]float64{"kernel-conns/s": 3297, "preload-conns/s": 3226, "conns/s-ratio": 1.008,
				"kernel-p50-µs": 2300, "preload-p50-µs": 2354, "added-p50-µs": 31, "fallback-fraction": 0,
				"toad-capture-cpu-µs/conn": 70, "toad-preload-cpu-µs/conn": 80, "toad-capture-sleeps/conn": 2.2, "toad-preload-sleeps/conn": 2.6}},
		}},
		Process: &Process{Rounds: 5, Startup: 4 * time.Millisecond, Results: []replaycmp.ProcessResult{
			{Capture: &replaycmp.Capture{Packets: 80_000, Bytes: 23 << 20, Truth: replaycmp.Mappings{N: 874}},
				Toad:    replaycmp.Run{Runs: 5, Wall: 18 * time.Millisecond, CPU: 20 * time.Millisecond, MaxRSS: 30 << 20, Output: 250 << 10},
				Tshark:  replaycmp.Run{Runs: 1, Wall: 2400 * time.Millisecond, CPU: 2500 * time.Millisecond, MaxRSS: 160 << 20, Output: 9 << 20},
				Printed: 874, Agrees: true},
			{Capture: &replaycmp.Capture{Packets: 3_476_307, Bytes: 983 << 20, Truth: replaycmp.Mappings{N: 37_600}},
				Toad:    replaycmp.Run{Runs: 5, Wall: 400 * time.Millisecond, CPU: 600 * time.Millisecond, MaxRSS: 60 << 20, Output: 10 << 20},
				Tshark:  replaycmp.Run{Runs: 1, Wall: 90 * time.Second, CPU: 95 * time.Second, MaxRSS: 1040 << 20, Output: 400 << 20},
				Printed: 37_600, Agrees: true},
		}},
		Memory: &replaycmp.MemoryResult{Conns: 10_000_000, Packets: 67_000_000, Bytes: 6 << 30, Span: 13400 * time.Second,
			Resolved: 9_400_000, Printed: 9_400_000, Peak: 4000, Wall: 40 * time.Second, CPU: 60 * time.Second, MaxRSS: 28 << 20, Generated: 100 * time.Second},
		Chart:   "scaling.svg",
		Skipped: map[string]string{},
	}
	r.Rate.Best = &r.Rate.Trials[1]
	return r
}

// liveCase is a BenchmarkConnections case with its figures: latencies in
// µs, CPU per connection in µs, the shares of a core in percent.
func liveCase(name string, p50, echo50, p99, toadCPU, echoCPU, rate, toadShare, proxyShare, benchShare float64) connbench.Case {
	return connbench.Case{Name: name, Iterations: 1000, Metrics: map[string]float64{
		"p50-µs": p50, "echo-p50-µs": echo50, "p50/echo": p50 / echo50, "p99-µs": p99, "echo-p99-µs": p99 * 0.9,
		"toad-cpu-µs/conn": toadCPU, "echo-cpu-µs/call": echoCPU, "conns/s": rate,
		"toad-sleeps/conn": toadCPU / 40, "echo-sleeps/call": echoCPU / 30,
		"toad-cpu-%": toadShare, "proxy-cpu-%": proxyShare, "bench-cpu-%": benchShare,
	}}
}

// persisting adds the journal's bytes per connection to c.
func persisting(c connbench.Case, bytes float64) connbench.Case {
	c.Metrics["journal-B/conn"] = bytes
	return c
}

// TestWriteMarkdown compares the report of sample with the golden file;
// (cd bench && go test ./report -run TestWriteMarkdown -update) rewrites it.
func TestWriteMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := sample().WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "RESULTS.golden.md")
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (create it with -update)", err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("the report differs from %s (rerun with -update if the change is meant):\n%s", golden, b.String())
	}
}

func TestGoals(t *testing.T) {
	r := sample()
	got := map[string]bool{}
	for _, g := range r.Goals() {
		if g.Met == nil {
			t.Errorf("%s: not measured", g.Name)
			continue
		}
		got[g.Name] = *g.Met
		if !*g.Met && g.Why == "" {
			t.Errorf("%s: missed without saying why", g.Name)
		}
	}
	want := map[string]bool{
		"replay vs tshark":                             true,
		"replay vs gopacket DecodingLayerParser":       false,
		"table: entries lost":                          true,
		"unary Lookup latency":                         true,
		"BatchLookup throughput":                       true,
		"growth with connections":                      true,
		"accept → answer, one connection at a time":    true,
		"toad CPU per connection, one at a time":       true,
		"a connection without a TOA":                   true,
		"30 connections at once: what limits the rate": true,
		"capture rate into the table":                  true,
		"idle cost":                                    true,
		"replay vs tshark, whole processes":            true,
		"replay memory, many connections":              true,
		"unmodified nginx with the preload library":    true,
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("%s: met %v (present %v), want %v", name, g, ok, w)
		}
	}
	if d := r.Disagreements(); len(d) != 0 {
		t.Errorf("sample disagreements: %q, want none (NewPacket's misses are not toad's)", d)
	}

	// Quadratic growth misses; toad losing a mapping is a disagreement.
	r.Scale.Points[2].Replay = 100 * time.Second
	r.Replay.Results[0].Agrees = false
	r.Replay.Results[0].Found.N--
	for _, g := range r.Goals() {
		if g.Name == "growth with connections" && (g.Met == nil || *g.Met || !strings.Contains(g.Why, "Per connection")) {
			t.Errorf("quadratic growth: got %+v, want missed and explained", g)
		}
	}
	if d := r.Disagreements(); len(d) != 1 || !strings.Contains(d[0], "replay") {
		t.Errorf("toad missing a mapping: got %q, want one replay disagreement", d)
	}

	// The live path over its targets: each miss says by how much.
	r = sample()
	one := r.Conns.Find("dpvs/batch=1")
	one.Metrics["p50-µs"], one.Metrics["p50/echo"], one.Metrics["toad-cpu-µs/conn"] = 300, 1.5, 400
	r.Conns.Find("notoa/batch=1").Metrics["p50-µs"] = 200
	r.Rate.Best = &r.Rate.Trials[0]
	r.Rate.Trials[0].Drops, r.Rate.Trials[0].Took, r.Rate.Trials[0].Entries = 0, 4*time.Second, 1_000_000
	r.Idle.CPU = time.Second
	for _, g := range r.Goals() {
		for name, want := range map[string]string{
			"accept → answer, one connection at a time": "p50 3.00× over 100 µs, while within 1.50× a bare gRPC round trip",
			"toad CPU per connection, one at a time":    "TOA in the ACK (DPVS): 8.00× over",
			"a connection without a TOA":                "2.50× slower",
			"capture rate into the table":               "the sender, whose thread also runs the kernel's receive path",
			"idle cost":                                 "16.7× over",
		} {
			if g.Name == name && (g.Met == nil || *g.Met || !strings.Contains(g.Why, want)) {
				t.Errorf("%s: got %+v, want missed with %q", name, g, want)
			}
		}
	}
	// A slow start misses the whole-process goal on the small file and
	// says so; too much memory misses its goal; a connection not printed
	// is a disagreement.
	r = sample()
	r.Process.Results[0].Toad.Wall = 40 * time.Millisecond
	r.Memory.MaxRSS, r.Memory.Printed = 500<<20, r.Memory.Printed-1
	for _, g := range r.Goals() {
		switch g.Name {
		case "replay vs tshark, whole processes":
			if g.Met == nil || *g.Met || !strings.Contains(g.Why, "on 80.0 k packets toad took 40.0 ms") || !strings.Contains(g.Why, "toad version") {
				t.Errorf("slow start: got %+v, want missed on the small file and explained", g)
			}
		case "replay memory, many connections":
			if g.Met == nil || *g.Met || g.Why == "" {
				t.Errorf("500 MiB: got %+v, want missed and explained", g)
			}
		}
	}
	if d := r.Disagreements(); len(d) != 1 || !strings.Contains(d[0], "printed 9399999 connections") {
		t.Errorf("a connection not printed: got %q, want one disagreement", d)
	}

	// Drops without a filter are the baseline's, said in the report; with
	// toad's filter they are a disagreement.
	r = sample()
	r.Filter.Results[1].Drops = 1077
	if d := r.Disagreements(); len(d) != 0 {
		t.Errorf("drops without a filter: got %q, want no disagreement", d)
	}
	var b strings.Builder
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "the kernel dropped 1,077 of the 20,000 packets") {
		t.Errorf("drops without a filter are not explained:\n%s", b.String())
	}
	r.Filter.Results[0].Drops = 1
	if d := r.Disagreements(); len(d) != 1 || !strings.Contains(d[0], "kernel filter toa") {
		t.Errorf("drops with toad's filter: got %q, want one disagreement", d)
	}
}

func TestWriteChart(t *testing.T) {
	var b bytes.Buffer
	if err := WriteChart(&b, sample().Scale.Points); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	for _, want := range []string{"<svg", "connections", "table memory", "linear growth"} {
		if !strings.Contains(s, want) {
			t.Errorf("the chart lacks %q", want)
		}
	}
	if err := WriteChart(&b, sample().Scale.Points[:1]); err == nil {
		t.Error("a chart of one point: got no error")
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{si(1_234_567), "1.23 M"}, {si(12_345), "12.3 k"}, {si(999), "999"}, {si(0.5), "0.500"},
		{times(123.4), "123×"}, {times(1.234), "1.23×"},
		{dur(1500 * time.Millisecond), "1.50 s"}, {dur(2500 * time.Microsecond), "2.50 ms"}, {dur(33 * time.Microsecond), "33.0 µs"},
		{count(1234567), "1,234,567"}, {count(-1000), "-1,000"}, {count(12), "12"},
		{plural(1, "round"), "1 round"}, {plural(3, "round"), "3 rounds"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestCountTicks(t *testing.T) {
	var labels []string
	for _, tk := range (countTicks{}).Ticks(1e4, 1e7) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if got, want := strings.Join(labels, " "), "10k 100k 1M 10M"; got != want {
		t.Errorf("got labels %q, want %q", got, want)
	}
}
