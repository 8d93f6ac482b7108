package report

import (
	"fmt"
	"io"
	"math"
	"strings"
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

// Report is everything one run of the harness measured. Sections left nil
// were not run; Skipped says why.
type Report struct {
	Date    time.Time
	Command string
	Took    time.Duration
	Machine Machine
	// LoadEnd is the load average when the run ended.
	LoadEnd string
	// Notes say how the run was sized.
	Notes []string

	Replay *Replay
	Filter *Filter
	Tables []Table
	API    *API
	Scale  *Scale
	// The live path: BenchmarkConnections, the capture rate, idle cost.
	Conns *connbench.Result
	// Preload is BenchmarkPreloadNginx: unmodified nginx with and without
	// the preload library.
	Preload *connbench.Result
	Rate    *caprate.Result
	Idle    *idlecost.Result
	// Process is toad replay beside tshark as whole processes; Memory the
	// peak memory of toad replay on a long capture.
	Process *Process
	Memory  *replaycmp.MemoryResult
	// Chart is the scaling chart's file name, beside RESULTS.md.
	Chart string
	// Skipped maps a section's name to why it did not run.
	Skipped map[string]string
}

// Replay is the replay comparison.
type Replay struct {
	Capture *replaycmp.Capture
	Rounds  int
	Results []replaycmp.Result
}

// Filter is the live kernel filter measurement.
type Filter struct {
	Mix     replaycmp.Mix
	Results []kfilter.Result
}

// Table is the table comparison at one size.
type Table struct {
	Keys, Writers, Rounds int
	Results               []tablecmp.Result // toad's first
}

// API is the API comparison.
type API struct {
	Config  apicmp.Config
	Results []apicmp.Result
}

// Scale is the scaling run.
type Scale struct {
	Config replaycmp.ScaleConfig
	Points []replaycmp.Point
}

// Process is the whole-process comparison of toad replay and tshark.
type Process struct {
	Rounds int
	// Startup is the median time of toad version as a process.
	Startup time.Duration
	Results []replaycmp.ProcessResult
}

// memoryGoal is the most a replay of the memory measurement's capture may
// hold: tens of megabytes.
const memoryGoal = 100 << 20

// Goal is one of the targets the figures are held against.
type Goal struct {
	Name, Target, Measured string
	// Met is nil when the figure was not measured.
	Met *bool
	// Why says, for a goal missed, what limits it.
	Why string
}

func met(b bool) *bool { return &b }

// Goals holds the figures against the project's targets.
func (r *Report) Goals() []Goal {
	var gs []Goal
	if rp := r.Replay; rp != nil {
		toad := replaycmp.Find(rp.Results, replaycmp.Toad)
		ts := replaycmp.Find(rp.Results, replaycmp.Tshark)
		g := Goal{Name: "replay vs tshark", Target: "≥ 100× faster"}
		if ts != nil && ts.Skipped == "" && toad.Packets > 0 {
			x := ts.NsPerPacket() / toad.NsPerPacket()
			g.Measured, g.Met = times(x), met(x >= 100)
			if x < 100 {
				g.Why = fmt.Sprintf("%.0f%% short of the goal: tshark took %s ns per packet, toad %s.", 100*(1-x/100), sig(ts.NsPerPacket()), sig(toad.NsPerPacket()))
			}
		} else if ts != nil {
			g.Measured = "not measured: " + ts.Skipped
		}
		gs = append(gs, g)

		dlp := replaycmp.Find(rp.Results, replaycmp.DLP)
		floor := replaycmp.Find(rp.Results, replaycmp.ReadOnly)
		g = Goal{Name: "replay vs gopacket DecodingLayerParser", Target: "≥ 5× faster"}
		x := dlp.NsPerPacket() / toad.NsPerPacket()
		f := floor.NsPerPacket()
		g.Measured = times(x)
		g.Met = met(x >= 5)
		if x < 5 {
			g.Why = fmt.Sprintf("Missed by %.0f%% end to end. toad reads the file in place in its buffer (no copy per record), decodes every "+
				"packet and updates its table in %s ns per packet; gopacket's pipeline reads it through pcapgo, which alone costs %s ns "+
				"(the \"%s\" row), then DecodingLayerParser decodes it and fills a map, %s ns in all. Reaching 5× needs toad at %s ns "+
				"per packet; toad's time is now its decoding and the table's per-segment work, not the reading.",
				100*(1-x/5), sig(toad.NsPerPacket()), sig(f), replaycmp.ReadOnly, sig(dlp.NsPerPacket()), sig(dlp.NsPerPacket()/5))
		}
		gs = append(gs, g)
	}
	if len(r.Tables) > 0 {
		g := Goal{Name: "table: entries lost", Target: "0, where ristretto loses some"}
		var parts []string
		ok := true
		for _, t := range r.Tables {
			toad, ris := t.Results[0], t.Results[1]
			parts = append(parts, fmt.Sprintf("%s keys: toad %s, ristretto %s", si(float64(t.Keys)), count(toad.Lost), count(ris.Lost)))
			ok = ok && toad.Lost == 0 && toad.SetDropped == 0
		}
		g.Measured, g.Met = strings.Join(parts, "; "), met(ok)
		if !ok {
			g.Why = "toad's table lost entries: see the table section."
		}
		gs = append(gs, g)
	}
	if a := r.API; a != nil {
		for _, res := range a.Results {
			switch {
			case res.Case == "unary" && res.Callers == 1:
				x := res.P50Ratio
				g := Goal{Name: "unary Lookup latency", Target: "≤ 1.2× a bare gRPC echo (p50, 1 caller)",
					Measured: fmt.Sprintf("%s (%s vs %s over all calls)", times(x), dur(res.Toad.P50), dur(res.Echo.P50)), Met: met(x <= 1.2)}
				if x > 1.2 {
					g.Why = fmt.Sprintf("%s over: toad's handler parses both addresses, looks the key up and formats the client, %s more than the echo per call.",
						times(x/1.2), dur(res.Toad.P50-res.Echo.P50))
				}
				gs = append(gs, g)
			case res.Case == "batch":
				g := Goal{Name: "BatchLookup throughput", Target: "≥ 1M lookups/s",
					Measured: fmt.Sprintf("%s lookups/s (%d keys a call, %d callers)", si(res.Toad.Rate), a.Config.Batch, res.Callers), Met: met(res.Toad.Rate >= 1e6)}
				if res.Toad.Rate < 1e6 {
					g.Why = fmt.Sprintf("%.0f%% short. Client and server share this machine's %d cores in one process, and the client's decoding of each response "+
						"(a message per result) costs about as much as the server's work: the process as a whole does %s lookups per CPU-second.",
						100*(1-res.Toad.Rate/1e6), r.Machine.Cores, si(res.Toad.CPURate))
				}
				gs = append(gs, g)
			}
		}
	}
	if s := r.Scale; s != nil && len(s.Points) >= 2 {
		te, me := exponent(s.Points, func(p *replaycmp.Point) float64 { return p.Replay.Seconds() }),
			exponent(s.Points, func(p *replaycmp.Point) float64 { return float64(p.TableBytes) })
		first, last := &s.Points[0], &s.Points[len(s.Points)-1]
		g := Goal{Name: "growth with connections", Target: "near-linear (fitted exponent ≤ 1.1)",
			Measured: fmt.Sprintf("replay time ∝ N^%.2f, table memory ∝ N^%.2f (%s to %s connections)", te, me, si(float64(first.Conns)), si(float64(last.Conns))),
			Met:      met(te <= 1.1 && me <= 1.1)}
		if !*g.Met {
			g.Why = fmt.Sprintf("Per connection, replay went from %s ns at %s connections to %s ns at %s, and the table from %s to %s bytes: "+
				"a larger table outgrows the CPU caches, so that more of its lookups and inserts wait on memory.",
				sig(first.NsPerConn()), si(float64(first.Conns)), sig(last.NsPerConn()), si(float64(last.Conns)), sig(first.BytesPerEntry()), sig(last.BytesPerEntry()))
		}
		gs = append(gs, g)
	}
	if pr := r.Process; pr != nil && len(pr.Results) > 0 {
		g := Goal{Name: "replay vs tshark, whole processes", Target: "≥ 100× faster (start, read, write JSON to a file)"}
		var parts, short []string
		ok, measured := true, false
		for i := range pr.Results {
			res := &pr.Results[i]
			x := res.Ratio()
			if x == 0 {
				parts = append(parts, fmt.Sprintf("%s packets: not measured (%s)", si(float64(res.Capture.Packets)), res.Tshark.Skipped))
				continue
			}
			measured = true
			parts = append(parts, fmt.Sprintf("%s packets: %s", si(float64(res.Capture.Packets)), times(x)))
			if x < 100 {
				ok = false
				short = append(short, fmt.Sprintf("on %s packets toad took %s where tshark took %s (%s short of 100×; 100× needs toad at %s)",
					si(float64(res.Capture.Packets)), dur(res.Toad.Wall), dur(res.Tshark.Wall), fmt.Sprintf("%.0f%%", 100*(1-x/100)), dur(res.Tshark.Wall/100)))
			}
		}
		g.Measured = strings.Join(parts, "; ")
		if measured {
			g.Met = met(ok)
		}
		if !ok {
			g.Why = strings.Join(short, "; ") + fmt.Sprintf(". toad's start alone, `toad version` as a process, takes %s: the process's start and the Go runtime's and "+
				"its packages' initialization (gRPC, protobuf, Prometheus, gopacket), which every toad command pays.", dur(pr.Startup))
		}
		gs = append(gs, g)
	}
	if m := r.Memory; m != nil {
		g := Goal{Name: "replay memory, many connections", Target: "tens of MB, whatever the capture's length",
			Measured: fmt.Sprintf("%s peak RSS for %s connections over %s (%s file)", mib(m.MaxRSS), si(float64(m.Conns)), hours(m.Span), gib(m.Bytes)),
			Met:      met(m.MaxRSS < memoryGoal)}
		if m.MaxRSS >= memoryGoal {
			g.Why = fmt.Sprintf("toad replay held at most %s connections at once and reached %s.", count(m.Peak), mib(m.MaxRSS))
		}
		gs = append(gs, g)
	}
	return append(append(gs, r.liveGoals()...), r.preloadGoals()...)
}

// hours writes a capture's span.
func hours(d time.Duration) string {
	if d >= time.Hour {
		return sig(d.Hours()) + " hours"
	}
	return dur(d)
}

// gib writes bytes in GiB, or MiB below one.
func gib(b int64) string {
	if b < 1<<30 {
		return mib(b)
	}
	return sig(float64(b)/(1<<30)) + " GiB"
}

// exponent fits y = a·N^k to the points by least squares on logs and
// returns k.
func exponent(ps []replaycmp.Point, y func(*replaycmp.Point) float64) float64 {
	var sx, sy, sxx, sxy, n float64
	for i := range ps {
		if y(&ps[i]) <= 0 {
			continue
		}
		x, v := math.Log(float64(ps[i].Conns)), math.Log(y(&ps[i]))
		sx, sy, sxx, sxy, n = sx+x, sy+v, sxx+x*x, sxy+x*v, n+1
	}
	if n < 2 {
		return math.NaN()
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

// Disagreements lists every measurement where toad's mappings differ from
// the ground truth. The harness fails when there is one.
func (r *Report) Disagreements() []string {
	var out []string
	if rp := r.Replay; rp != nil {
		if t := replaycmp.Find(rp.Results, replaycmp.Toad); t != nil && !t.Agrees {
			out = append(out, fmt.Sprintf("replay: toad found %d mappings, the ground truth has %d (or other clients)", t.Found.N, rp.Capture.Truth.N))
		}
	}
	if f := r.Filter; f != nil {
		for _, res := range f.Results {
			// Drops are toad's fault only with toad's filter: without one, a
			// burst of every packet of the link may overflow the ring, which
			// is what the filter is for (the report says so).
			dropped := res.Drops > 0 && res.Filter != capture.FilterNone
			if res.Skipped == "" && (!res.Agrees || dropped || res.Passed != uint64(res.Predicted)) {
				out = append(out, fmt.Sprintf("kernel filter %v: %d mappings of %d, %d packets passed where the program accepts %d, %d dropped",
					res.Filter, res.Found.N, res.Truth.N, res.Passed, res.Predicted, res.Drops))
			}
		}
	}
	if s := r.Scale; s != nil {
		for _, p := range s.Points {
			if !p.Agrees {
				out = append(out, fmt.Sprintf("scaling: at %d connections the table's mappings differ from the ground truth", p.Conns))
			}
		}
	}
	if pr := r.Process; pr != nil {
		for _, res := range pr.Results {
			if !res.Agrees {
				out = append(out, fmt.Sprintf("toad replay as a process printed %d connections on %s packets, not the ground truth's %d mappings",
					res.Printed, count(res.Capture.Packets), res.Capture.Truth.N))
			}
		}
	}
	if m := r.Memory; m != nil && m.Printed != m.Resolved {
		out = append(out, fmt.Sprintf("toad replay printed %d connections of a capture in which TOAs resolved %d", m.Printed, m.Resolved))
	}
	for _, t := range r.Tables {
		if t.Results[0].Lost != 0 || t.Results[0].Held != t.Keys {
			out = append(out, fmt.Sprintf("table at %d keys: toad lost %d and held %d", t.Keys, t.Results[0].Lost, t.Results[0].Held))
		}
	}
	return out
}

// WriteMarkdown writes the report as RESULTS.md.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# toad benchmark results\n\n")
	p("Measured on %s by\n\n```\n%s\n```\n\n", r.Date.UTC().Format("2006-01-02 15:04 MST"), r.Command)
	m := r.Machine
	p("on %s, %d logical CPUs, %.1f GiB of memory, %s, kernel %s (%s); load average %s at the start, %s at the end; the run took %s.\n\n",
		orUnknown(m.CPU), m.Cores, float64(m.Memory)/(1<<30), m.Go, orUnknown(m.Kernel), m.OS, orUnknown(m.Load), orUnknown(r.LoadEnd), dur(r.Took.Round(time.Second)))
	p("The machine is shared, so absolute figures drift from run to run: every comparison runs its sides in the same process, taking turns, " +
		"and reports medians and ratios measured in the same run.\n\n")
	for _, n := range r.Notes {
		p("- %s\n", n)
	}
	if len(r.Notes) > 0 {
		p("\n")
	}

	p("## Goals\n\n")
	gt := table{head: []string{"goal", "target", "measured", "met"}}
	goals := r.Goals()
	for _, g := range goals {
		ok := "not measured"
		if g.Met != nil {
			ok = map[bool]string{true: "yes", false: "**no**"}[*g.Met]
		}
		gt.add(g.Name, g.Target, g.Measured, ok)
	}
	p("%s\n", gt.String())
	if d := r.Disagreements(); len(d) > 0 {
		p("**toad's mappings disagreed with the ground truth:**\n\n")
		for _, s := range d {
			p("- %s\n", s)
		}
		p("\n")
	}
	var missed []Goal
	for _, g := range goals {
		if g.Why != "" {
			missed = append(missed, g)
		}
	}
	if len(missed) > 0 {
		p("### Goals missed\n\n")
		for _, g := range missed {
			p("- **%s**: %s\n", g.Name, g.Why)
		}
		p("\n")
	}

	r.writeReplay(p)
	r.writeFilter(p)
	r.writeTables(p)
	r.writeAPI(p)
	r.writeScale(p)
	r.writeProcess(p)
	r.writeMemory(p)
	r.writeConns(p)
	r.writeRate(p)
	r.writeIdle(p)
	r.writePreload(p)
	_, err := io.WriteString(w, b.String())
	return err
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func (r *Report) skipped(p func(string, ...any), section string) bool {
	if why, ok := r.Skipped[section]; ok {
		p("Not run: %s.\n\n", why)
		return true
	}
	return false
}

func (r *Report) writeReplay(p func(string, ...any)) {
	p("## 1. Replay: toad beside gopacket and tshark\n\n")
	rp := r.Replay
	if r.skipped(p, "replay") || rp == nil {
		return
	}
	c := rp.Capture
	p("One generated pcap file (Ethernet, a fifth of it behind an 802.1Q tag): %s connections through L4 proxies in every default TOA dialect "+
		"and every placement of the option (SYN, handshake ACK, first data segments, after other options, behind a NOP run, forged second TOA, "+
		"after a Fast Open cookie), 30%% over IPv6, a few with IP options or IPv6 extension headers, 5%% without a TOA, 1%% from outside the "+
		"trusted proxy ranges with a forged TOA, 1%% followed by a frame no decoder takes; %d data segments each way per connection, so that "+
		"%.1f%% of the %s packets (%s) carry no TOA and no SYN, FIN or RST. Each tool reads the file, decodes every packet into the fields of "+
		"a record (addresses, ports, flags, sequence numbers, payload length, the first TOA) and keeps the first TOA of each connection from a "+
		"trusted proxy: toad with `capture.Replay` (which reads a pcap file's records in place in its buffer) through `capture.Incoming` (what the server received of the two-way capture) into its connection table, as `toad serve --pcap` does; gopacket (reading through pcapgo) and tshark with a Go map. tshark (`tshark %s`) knows no "+
		"TOA dialect: its TCP options come out as hex and are read in Go as its output streams in. Times are medians of %s "+
		"(tshark: %s), the tools taking turns; allocations are the Go heap's per packet.\n\n",
		count(c.Mix.Conns), c.DataSegments, 100*c.Data, count(c.Packets), mib(c.Bytes),
		strings.Join(replaycmp.TsharkArgs("FILE"), " "), plural(rp.Rounds, "round"), plural(replaycmp.Find(rp.Results, replaycmp.Tshark).Runs, "run"))
	t := table{head: []string{"tool", "packets/s", "ns/packet", "CPU ns/packet", "allocs/packet", "toad is faster by", "mappings found"}, align: "lrrrrrl"}
	toad := replaycmp.Find(rp.Results, replaycmp.Toad)
	for _, res := range rp.Results {
		if res.Skipped != "" {
			t.add(res.Tool, "—", "—", "—", "—", "—", "skipped: "+res.Skipped)
			continue
		}
		allocs := sig(res.Allocs)
		if res.Allocs < 0 {
			allocs = fmt.Sprintf("— (peak RSS %s)", mib(res.MaxRSS))
		}
		faster := times(res.NsPerPacket() / toad.NsPerPacket())
		switch res.Tool {
		case replaycmp.Toad:
			faster = "—"
		case replaycmp.ReadOnly:
			faster = "— (the floor)"
		}
		found := "— (decodes nothing)"
		if res.Maps {
			found = mappingsText(res.Found, c.Truth)
		}
		t.add(res.Tool, si(res.PacketsPerSec()), sig(res.NsPerPacket()), sig(res.CPUPerPacket()), allocs, faster, found)
	}
	p("%s\n", t.String())
	if np := replaycmp.Find(rp.Results, replaycmp.NewPacket); np != nil && np.Skipped == "" && !np.Agrees {
		p("gopacket's NewPacket found %s of the %s mappings. In %s packets toad's decoder finds a TOA and NewPacket no TCP header; "+
			"%s of them carry an IPv6 atomic fragment header (offset 0, no more fragments: a whole packet, RFC 6946), which NewPacket "+
			"takes for the start of a fragmented packet, so that it never decodes the TCP header behind it. DecodingLayerParser, given a "+
			"fragment layer after its extension skipper, reads them.\n\n", count(np.Found.N), count(c.Truth.N), count(np.Unread), count(np.UnreadAtomic))
	}
	p("Generating the file took %s.", dur(c.Generated))
	if toad.Runs > 1 {
		p(" toad's %d runs took %s to %s.", toad.Runs, dur(toad.WallMin), dur(toad.WallMax))
	}
	p("\n\n")
}

func mappingsText(found, truth replaycmp.Mappings) string {
	switch {
	case found == truth:
		return fmt.Sprintf("all %s, as generated", count(truth.N))
	case found.N == truth.N:
		return fmt.Sprintf("%s, **some with other clients**", count(found.N))
	}
	return fmt.Sprintf("**%s of %s**", count(found.N), count(truth.N))
}

func (r *Report) writeFilter(p func(string, ...any)) {
	p("## 2. Kernel filter: what reaches user space\n\n")
	f := r.Filter
	if r.skipped(p, "kfilter") || f == nil {
		return
	}
	p("Live, in two network namespaces joined by a veth pair: a capture (`capture.Open`, TPACKET_V2 ring) on the server's end, the packets of "+
		"a generated capture of %s connections in the same mix as above (%.0f%% plain data) sent across as raw IP, those towards the server "+
		"from the proxies' end and the server's own from its end, then an end marker. \"Reached user space\" is the socket's own counter. "+
		"\"Predicted\" runs the same filter program over the packets in `golang.org/x/net/bpf`'s VM: equal means the kernel lost nothing. "+
		"A capture with no filter at all (tcpdump's default) sees every packet on the link, both ways.\n\n", count(f.Mix.Conns), 100*f.Mix.Data)
	t := table{head: []string{"filter", "packets on the link", "towards the server", "reached user space", "share", "predicted", "dropped", "mappings found"}, align: "lrrrrrrl"}
	for _, res := range f.Results {
		name := filterName(res.Filter)
		if res.Skipped != "" {
			t.add(name, "—", "—", "—", "—", "—", "—", "skipped: "+res.Skipped)
			continue
		}
		t.add(name, count(res.Sent), count(res.Inbound), count(int(res.Passed)), fmt.Sprintf("%.2f%%", 100*res.Share()), count(res.Predicted), count(int(res.Drops)), mappingsText(res.Found, res.Truth))
	}
	p("%s\n", t.String())
	for _, res := range f.Results {
		if res.Skipped == "" && res.Filter == capture.FilterNone && res.Drops > 0 {
			p("Without a filter the ring overflowed: the kernel dropped %s of the %s packets that reached the socket, since every packet of the link, "+
				"data included, competed for the ring. That is what the filter is for; with toad's, %s dropped.\n\n",
				count(int(res.Drops)), count(int(res.Passed)), dropsOf(f.Results, capture.FilterTOA))
		}
	}
}

// dropsOf writes how many packets the capture with filter dropped.
func dropsOf(results []kfilter.Result, filter capture.Filter) string {
	for _, res := range results {
		if res.Filter == filter && res.Skipped == "" {
			if res.Drops == 0 {
				return "none were"
			}
			return count(int(res.Drops)) + " were"
		}
	}
	return "none were measured"
}

func filterName(f capture.Filter) string {
	switch f {
	case capture.FilterTOA:
		return "toad's (`toa`: TOA carriers, SYN, FIN, RST)"
	case capture.FilterNone:
		return "none (direction only, PACKET_IGNORE_OUTGOING)"
	}
	return "`" + f.String() + "`"
}

func (r *Report) writeTables(p func(string, ...any)) {
	p("## 3. Connection table: toad beside ristretto v2\n\n")
	if r.skipped(p, "table") || len(r.Tables) == 0 {
		return
	}
	p("`bench/tablecmp`: each table sized for the keys. \"Lost\": keys inserted by two goroutines as fast as they can that cannot be found " +
		"afterwards (after ristretto's Wait). Set: one goroutine into an empty table. Get: held keys in scattered order. Bytes per entry: heap " +
		"after a collection, with the table filled gently (ristretto waits every 64 sets) minus without, per entry held.\n\n")
	head := []string{"figure"}
	for _, tb := range r.Tables {
		head = append(head, fmt.Sprintf("toad, %s", si(float64(tb.Keys))), fmt.Sprintf("ristretto, %s", si(float64(tb.Keys))), "ristretto ÷ toad")
	}
	t := table{head: head, align: "l" + strings.Repeat("r", len(head)-1)}
	rows := []struct {
		name string
		f    func(tablecmp.Result) float64
		fmt  func(float64) string
	}{
		{"lost after concurrent inserts", func(x tablecmp.Result) float64 { return float64(x.Lost) }, func(v float64) string { return count(int(v)) }},
		{"set, ns/op", func(x tablecmp.Result) float64 { return x.SetNs }, sig},
		{"sets refused", func(x tablecmp.Result) float64 { return float64(x.SetDropped) }, func(v float64) string { return count(int(v)) }},
		{"get, ns/op", func(x tablecmp.Result) float64 { return x.GetNs }, sig},
		{"bytes per entry", func(x tablecmp.Result) float64 { return x.BytesPerEntry }, sig},
	}
	for _, row := range rows {
		cells := []string{row.name}
		for _, tb := range r.Tables {
			a, b := row.f(tb.Results[0]), row.f(tb.Results[1])
			ratio := "—"
			if a != 0 {
				ratio = times(b / a)
			}
			cells = append(cells, row.fmt(a), row.fmt(b), ratio)
		}
		t.add(cells...)
	}
	p("%s\n", t.String())
	var rounds []string
	for _, tb := range r.Tables {
		if tb.Rounds == 1 {
			rounds = append(rounds, fmt.Sprintf("%s keys: one round", si(float64(tb.Keys))))
		} else {
			rounds = append(rounds, fmt.Sprintf("%s keys: medians of %d rounds", si(float64(tb.Keys)), tb.Rounds))
		}
	}
	p("%s.\n\n", strings.Join(rounds, "; "))
}

func (r *Report) writeAPI(p func(string, ...any)) {
	p("## 4. API: toad's gRPC service beside a bare gRPC echo\n\n")
	a := r.API
	if r.skipped(p, "api") || a == nil {
		return
	}
	p("Both servers in this process on unix sockets, one client connection each, a table of %s connections. The echo is grpc.testing's "+
		"TestService on a bare `grpc.NewServer()`, with messages of the sizes toad's carry: the same bytes on the wire, none of the work. "+
		"Unary: Lookup of a known connection. Batch: BatchLookup of %d known connections a call. Stream: Watch, %d new connections a call "+
		"observed by the table and received by the watcher, against a server stream of as many messages. Callers call back to back; the "+
		"sides take turns in phases of %s, %s; rates are medians of the rounds, latencies over every call, and the ratios medians of each "+
		"round's, its two sides taken together. Per CPU-second counts the process's CPU time, client and server together.\n\n", count(a.Config.Conns), a.Config.Batch, a.Config.Batch, dur(a.Config.Phase), plural(a.Config.Rounds, "round"))
	t := table{head: []string{"case", "callers", "toad", "echo", "toad ÷ echo", "toad per CPU-s", "echo per CPU-s", "p50 toad / echo", "p99 toad / echo"}, align: "lrrrrrrrr"}
	for _, res := range a.Results {
		t.add(res.Case, fmt.Sprint(res.Callers),
			si(res.Toad.Rate)+" "+res.Unit+"/s", si(res.Echo.Rate)+" "+res.Unit+"/s", times(res.RateRatio),
			si(res.Toad.CPURate), si(res.Echo.CPURate),
			fmt.Sprintf("%s / %s (%s)", dur(res.Toad.P50), dur(res.Echo.P50), times(res.P50Ratio)),
			fmt.Sprintf("%s / %s", dur(res.Toad.P99), dur(res.Echo.P99)))
	}
	p("%s\n", t.String())
}

func (r *Report) writeScale(p func(string, ...any)) {
	p("## 5. How cost grows with connections\n\n")
	s := r.Scale
	if r.skipped(p, "scale") || s == nil || len(s.Points) == 0 {
		return
	}
	p("For each size, a table sized for it (`correlate.Config.Capacity` = connections) takes the whole capture and holds every connection "+
		"at the end. The frames stream from the generator through memory in batches of up to 4 MiB, no file: only toad's decoding and table "+
		"updates are timed. The mix is the one above with %d data segments each way per connection (%.0f%% of the packets plain), so that "+
		"handshakes weigh more and ten million connections fit the run. Table memory is the heap after a collection, with the table "+
		"minus without.",
		s.Points[0].DataSegments, 100*s.Config.Data)
	if s.Config.Rounds > 1 && s.Config.RepeatUpTo > 0 {
		p(" Sizes up to %s connections are the median of %d runs; larger ones ran once.", si(float64(s.Config.RepeatUpTo)), s.Config.Rounds)
	}
	p("\n\n")
	t := table{head: []string{"connections", "packets", "decode + table", "ns/packet", "ns/connection", "table memory", "bytes/entry", "mappings"}, align: "rrrrrrrl"}
	for _, pt := range s.Points {
		ok := "as generated"
		if !pt.Agrees {
			ok = "**differ**"
		}
		t.add(count(pt.Conns), count(pt.Packets), dur(pt.Replay), sig(pt.NsPerPacket()), sig(pt.NsPerConn()), mib(pt.TableBytes), sig(pt.BytesPerEntry()), ok)
	}
	p("%s\n", t.String())
	if len(s.Points) >= 2 {
		first, last := s.Points[0], s.Points[len(s.Points)-1]
		k := float64(last.Conns) / float64(first.Conns)
		p("From %s to %s connections (%s as many): replay time %s, table memory %s.\n\n", si(float64(first.Conns)), si(float64(last.Conns)), times(k),
			times(last.Replay.Seconds()/first.Replay.Seconds()), times(float64(last.TableBytes)/float64(first.TableBytes)))
	}
	if r.Chart != "" {
		p("![replay time and table memory against connections](%s)\n\n", r.Chart)
	}
	gen := time.Duration(0)
	for _, pt := range s.Points {
		gen += pt.Generated
	}
	p("Generating the frames took %s in all, not counted above.\n", dur(gen.Round(time.Millisecond)))
}

func (r *Report) writeProcess(p func(string, ...any)) {
	p("## 6. toad replay beside tshark, whole processes\n\n")
	pr := r.Process
	if r.skipped(p, "process") || pr == nil || len(pr.Results) == 0 {
		return
	}
	p("What a user runs: the `toad` binary as `make build` builds it, `toad %s`, its JSON Lines written to a file, beside "+
		"`tshark %s`, its fields written to a file: each from the start of its process to its exit, as the user waits for it, started by "+
		"`bench/cmd/spawnrss`, a process of a few megabytes, so that the peak memory wait4 reports is the tool's own (Linux counts in a child's peak "+
		"the peak of the process it was started from). The files are "+
		"generated pcap files in the mix of section 1. toad runs %s on each file, the median counting, tshark once, in the middle; toad's "+
		"output is checked against the ground truth. `toad version`, the start of a toad process and nothing else, takes %s.\n\n",
		strings.Join(replaycmp.ToadArgs("FILE"), " "), strings.Join(replaycmp.TsharkArgs("FILE"), " "), plural(pr.Rounds, "time"), dur(pr.Startup))
	t := table{head: []string{"file", "toad replay", "tshark", "toad is faster by", "toad CPU", "tshark CPU", "toad peak RSS", "tshark peak RSS", "toad's output"}, align: "lrrrrrrrl"}
	for _, res := range pr.Results {
		c := res.Capture
		file := fmt.Sprintf("%s packets, %s", count(c.Packets), gib(c.Bytes))
		ok := fmt.Sprintf("%s connections, as generated", count(res.Printed))
		if !res.Agrees {
			ok = fmt.Sprintf("**%s connections, not as generated**", count(res.Printed))
		}
		if res.Tshark.Skipped != "" {
			t.add(file, dur(res.Toad.Wall), "skipped: "+res.Tshark.Skipped, "—", dur(res.Toad.CPU), "—", mib(res.Toad.MaxRSS), "—", ok)
			continue
		}
		t.add(file, dur(res.Toad.Wall), dur(res.Tshark.Wall), times(res.Ratio()), dur(res.Toad.CPU), dur(res.Tshark.CPU), mib(res.Toad.MaxRSS), mib(res.Tshark.MaxRSS), ok)
	}
	p("%s\n", t.String())
}

func (r *Report) writeMemory(p func(string, ...any)) {
	p("## 7. toad replay's memory on hours of capture\n\n")
	m := r.Memory
	if r.skipped(p, "memory") || m == nil {
		return
	}
	p("One generated pcap file of %s connections over %s: 200 proxies taking their 1000 ports in turn, so that each 4-tuple carries "+
		"many connections one after the other; handshakes and closes, no data; 85%% of the connections end with a FIN, 10%% with a RST, 5%% never "+
		"close and end when the proxy reuses their 4-tuple. `toad %s` runs as a process, started by `bench/cmd/spawnrss`, its output counted as it "+
		"comes; its peak resident memory is the kernel's (wait4), with spawnrss's own few megabytes as its floor.\n\n", count(m.Conns), hours(m.Span), strings.Join(replaycmp.ToadArgs("FILE"), " "))
	t := table{head: []string{"connections", "packets", "file", "capture time", "printed", "held at once, at most", "toad replay", "CPU", "peak RSS"}, align: "rrrrrrrrr"}
	printed := count(m.Printed)
	if m.Printed != m.Resolved {
		printed = fmt.Sprintf("**%s of %s**", count(m.Printed), count(m.Resolved))
	}
	t.add(count(m.Conns), count(m.Packets), gib(m.Bytes), hours(m.Span), printed, count(m.Peak), dur(m.Wall), dur(m.CPU), mib(m.MaxRSS))
	p("%s\n", t.String())
	p("Generating the file took %s.\n\n", dur(m.Generated.Round(time.Millisecond)))
}
