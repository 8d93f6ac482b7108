package report

import (
	"fmt"
	"strings"
	"time"

	"github.com/toad-project/toad/bench/caprate"
	"github.com/toad-project/toad/bench/connbench"
)

// Targets of the live path.
const (
	targetP50      = 100 * time.Microsecond
	targetEchoX    = 2.0
	targetP99      = time.Millisecond
	targetCPU      = 50 * time.Microsecond
	targetNotFound = 1.2 // a not-found answer within this factor of a found one
	targetRate     = 300_000.0
	targetIdle     = 0.001 // of a core
	// Persistence on against off: toad's CPU per connection, and the
	// bytes its journal writes per connection, compactions included.
	targetPersistCPU   = 1.2
	targetPersistBytes = 128.0
)

// µs turns a figure reported in microseconds into a duration.
func µs(v float64) time.Duration { return time.Duration(v * float64(time.Microsecond)) }

// liveGoals holds the live path's figures against their targets.
func (r *Report) liveGoals() []Goal {
	var gs []Goal
	if c := r.Conns; c != nil && c.Skipped == "" {
		var ones []*connbench.Case
		for _, n := range []string{"syn/batch=1", "dpvs/batch=1"} {
			if cs := c.Find(n); cs != nil {
				ones = append(ones, cs)
			}
		}
		if len(ones) > 0 {
			g := Goal{Name: "accept → answer, one connection at a time",
				Target: fmt.Sprintf("p50 ≤ %s and ≤ %s a bare gRPC echo's p50; p99 ≤ %s", dur(targetP50), times(targetEchoX), dur(targetP99))}
			ok := true
			var parts, whys []string
			for _, cs := range ones {
				p50, p99, echo := µs(cs.Get("p50-µs")), µs(cs.Get("p99-µs")), µs(cs.Get("echo-p50-µs"))
				x := cs.Get("p50/echo")
				parts = append(parts, fmt.Sprintf("%s: p50 %s (%s the echo's %s), p99 %s", caseName(cs.Name), dur(p50), times(x), dur(echo), dur(p99)))
				if p50 > targetP50 && x <= targetEchoX {
					whys = append(whys, fmt.Sprintf("%s: p50 %s over %s, while within %s a bare gRPC round trip, which alone takes %s here",
						caseName(cs.Name), times(float64(p50)/float64(targetP50)), dur(targetP50), times(x), dur(echo)))
				} else if x > targetEchoX {
					whys = append(whys, fmt.Sprintf("%s: p50 %s the echo's, %s over %s", caseName(cs.Name), times(x), times(x/targetEchoX), times(targetEchoX)))
				}
				if p99 > targetP99 {
					whys = append(whys, fmt.Sprintf("%s: p99 %s, %s over %s", caseName(cs.Name), dur(p99), times(float64(p99)/float64(targetP99)), dur(targetP99)))
				}
				ok = ok && p50 <= targetP50 && x <= targetEchoX && p99 <= targetP99
			}
			g.Measured, g.Met = strings.Join(parts, "; "), met(ok)
			if !ok {
				g.Why = strings.Join(whys, "; ") + ". The figures are the origin's, in the benchmark's process with the clients, beside the proxy, toad and the echo on the same 2 cores (section 6)."
			}
			gs = append(gs, g)

			g = Goal{Name: "toad CPU per connection, one at a time", Target: fmt.Sprintf("≤ %s, the lookup it answers included", dur(targetCPU))}
			ok = true
			parts, whys = nil, nil
			for _, cs := range ones {
				t, e := µs(cs.Get("toad-cpu-µs/conn")), µs(cs.Get("echo-cpu-µs/call"))
				parts = append(parts, fmt.Sprintf("%s: %s, %.1f sleeps (the echo server: %s, %.1f sleeps per call)", caseName(cs.Name), dur(t),
					cs.Get("toad-sleeps/conn"), dur(e), cs.Get("echo-sleeps/call")))
				ok = ok && t <= targetCPU
				if t > targetCPU {
					whys = append(whys, fmt.Sprintf("%s: %s over", caseName(cs.Name), times(float64(t)/float64(targetCPU))))
				}
			}
			g.Measured, g.Met = strings.Join(parts, "; "), met(ok)
			if !ok {
				g.Why = strings.Join(whys, "; ") + ". A bare gRPC echo server, a process of its own answering one call per connection on the same kind of socket, " +
					"costs the CPU shown beside each figure: most of toad's is what any Go gRPC server pays per call (the runtime waking threads for the " +
					"request, its reply and the capture's packets), not the lookup, the decoding or the table. Lookups answered from the preload " +
					"library's shared table skip that round trip: see the goal of section 11."
			}
			gs = append(gs, g)
		}
		if found, none := c.Find("syn/batch=1"), c.Find("notoa/batch=1"); found != nil && none != nil {
			x := none.Get("p50-µs") / found.Get("p50-µs")
			g := Goal{Name: "a connection without a TOA", Target: fmt.Sprintf("answered as fast as a found one (p50 within %s)", times(targetNotFound)),
				Measured: fmt.Sprintf("not found: p50 %s; found (TOA in the SYN): %s (%s)", dur(µs(none.Get("p50-µs"))), dur(µs(found.Get("p50-µs"))), times(x)),
				Met:      met(x <= targetNotFound)}
			if x > targetNotFound {
				g.Why = fmt.Sprintf("%s slower than a found one.", times(x))
			}
			gs = append(gs, g)
		}
		if g, ok := persistGoal(c); ok {
			gs = append(gs, g)
		}
		if cs := c.Find("dpvs/batch=30"); cs != nil {
			g := Goal{Name: "30 connections at once: what limits the rate", Target: "named and measured",
				Measured: fmt.Sprintf("%s conns/s: %s", si(cs.Get("conns/s")), limit(cs, r.Machine.Cores)), Met: met(true)}
			gs = append(gs, g)
		}
	}
	if rt := r.Rate; rt != nil && rt.Skipped == "" {
		g := Goal{Name: "capture rate into the table", Target: fmt.Sprintf("≥ %s TOA segments/s with no kernel drop, the sender on the same %d cores", si(targetRate), r.Machine.Cores)}
		if b := rt.Best; b != nil {
			g.Measured = fmt.Sprintf("%s segments/s, %s ns of CPU per segment (sender included)", si(b.Rate()), sig(float64(b.CPUPerPacket())))
			g.Met = met(b.Rate() >= targetRate)
			if b.Rate() < targetRate {
				g.Why = fmt.Sprintf("%.0f%% short. %s", 100*(1-b.Rate()/targetRate), rateWhy(rt))
			}
		} else {
			g.Measured, g.Met = "no trial without drops", met(false)
			g.Why = "every trial dropped segments: see section 7."
		}
		gs = append(gs, g)
	}
	if id := r.Idle; id != nil && id.Skipped == "" {
		g := Goal{Name: "idle cost", Target: fmt.Sprintf("≤ %.1f%% of a core, serving a live capture with no traffic", 100*targetIdle),
			Measured: fmt.Sprintf("%.3f%% of a core over %s (%s of CPU), %s wakeups/s", 100*id.Share(), dur(id.Duration.Round(time.Second)), dur(id.CPU), sig(id.WakeupsPerSecond())),
			Met:      met(id.Share() <= targetIdle)}
		if !*g.Met {
			g.Why = fmt.Sprintf("%s over.", times(id.Share()/targetIdle))
		}
		gs = append(gs, g)
	}
	return gs
}

// persistGoal compares the cases with the table kept on disk and without.
func persistGoal(c *connbench.Result) (Goal, bool) {
	off, on := c.Find("persist-off/batch=30"), c.Find("persist-on/batch=30")
	if off == nil || on == nil || off.Get("toad-cpu-µs/conn") == 0 {
		return Goal{}, false
	}
	x := on.Get("toad-cpu-µs/conn") / off.Get("toad-cpu-µs/conn")
	bytes := on.Get("journal-B/conn")
	g := Goal{Name: "persistence (--state-dir) on against off",
		Target: fmt.Sprintf("toad CPU per connection ≤ %s; ≤ %.0f bytes written per connection", times(targetPersistCPU), targetPersistBytes),
		Measured: fmt.Sprintf("CPU %s per connection on, %s off (%s); %.0f bytes written per connection, compactions included",
			dur(µs(on.Get("toad-cpu-µs/conn"))), dur(µs(off.Get("toad-cpu-µs/conn"))), times(x), bytes),
		Met: met(x <= targetPersistCPU && bytes <= targetPersistBytes)}
	var whys []string
	if x > targetPersistCPU {
		whys = append(whys, fmt.Sprintf("CPU %s over %s", times(x/targetPersistCPU), times(targetPersistCPU)))
	}
	if bytes > targetPersistBytes {
		whys = append(whys, fmt.Sprintf("bytes %s over %.0f", times(bytes/targetPersistBytes), targetPersistBytes))
	}
	if len(whys) > 0 {
		g.Why = strings.Join(whys, "; ") + ". The two cases ran one after the other in the same run (section 8)."
	}
	return g, true
}

func caseName(n string) string {
	switch {
	case strings.HasPrefix(n, "persist-off/"):
		return "TOA in the ACK, persistence off"
	case strings.HasPrefix(n, "persist-on/"):
		return "TOA in the ACK, persistence on"
	case strings.HasPrefix(n, "syn/"):
		return "TOA in the SYN"
	case strings.HasPrefix(n, "dpvs/"):
		return "TOA in the ACK (DPVS)"
	case strings.HasPrefix(n, "notoa/"):
		return "no TOA"
	}
	return n
}

// limit names what bounds the rate of a case: the cores when they were
// all busy, and the part that used the most of them.
func limit(cs *connbench.Case, cores int) string {
	toad, proxy, bench := cs.Get("toad-cpu-%"), cs.Get("proxy-cpu-%"), cs.Get("bench-cpu-%")
	echo := cs.Get("echo-cpu-µs/call") * cs.Get("conns/s") / 1e4 // µs per second, as a percentage of a core
	total := toad + proxy + bench + echo
	parts := []struct {
		name string
		v    float64
	}{{"the clients and the origin (the benchmark's process)", bench}, {"the toad-proxy", proxy}, {"toad", toad}, {"the echo server", echo}}
	top := parts[0]
	for _, p := range parts[1:] {
		if p.v > top.v {
			top = p
		}
	}
	s := fmt.Sprintf("toad used %.0f%% of a core, the proxy %.0f%%, the clients and origin %.0f%%, the echo server %.0f%%: %.0f%% of the %d cores",
		toad, proxy, bench, echo, total, cores)
	if cores > 0 && total >= 80*float64(cores) {
		return s + fmt.Sprintf(", which are the limit, %s using the most", top.name)
	}
	return s + fmt.Sprintf("; no part used a whole core: the limit is the latency of each round trip, %s using the most", top.name)
}

func rateWhy(rt *caprate.Result) string {
	first := rt.Trials[0]
	if first.Clean() {
		return fmt.Sprintf("No segment was dropped at the sender's fastest, %s segments/s: the sender, whose thread also runs the kernel's "+
			"receive path (veth, the filter, the copy into the ring), is the limit; it used %s of CPU per segment, the capture's readers, "+
			"decoder and table %s.", si(first.Rate()), dur(first.Sender/time.Duration(max(first.Sent, 1))), dur(first.CapturePerPacket()))
	}
	return fmt.Sprintf("At the sender's fastest (%s segments/s) the ring filled and the kernel dropped %s segments; the capture's readers, "+
		"decoder and table used %s of CPU per segment.", si(first.Rate()), count(int(first.Drops)), dur(first.CapturePerPacket()))
}

func (r *Report) writeConns(p func(string, ...any)) {
	p("## 8. Live: accept to answer, beside a bare gRPC echo\n\n")
	c := r.Conns
	if r.skipped(p, "conns") || c == nil {
		return
	}
	if c.Skipped != "" {
		p("Not run: %s.\n\n", c.Skipped)
		return
	}
	p("`BenchmarkConnections` (`go test -bench 'BenchmarkConnections/%s' -benchtime %s ./e2e/`): three client namespaces, the toad-proxy "+
		"command (user-space FULLNAT on a TUN device) in a proxy namespace, and in the origin's namespace the application (a Go server "+
		"whose listener asks toad, over its unix socket, for each connection's client), toad capturing on the origin's interface, and a "+
		"bare gRPC echo server (grpc.testing's TestService, a process of its own, on a unix socket too, with a lookup's message sizes). "+
		"Each round opens a batch of connections at once through the proxy, each through one round trip, and closes them. The "+
		"application asks toad and calls the echo once per connection: toad first on every other connection, the echo first on the "+
		"others, so that each side's latency is measured from accept on connections where it went first. CPU is each process's, from "+
		"/proc, over the run; the shares are of one core. Sleeps are the times the process's threads went to sleep (their voluntary "+
		"context switches, from /proc): each one is a wakeup, which on this VM costs tens of µs of CPU.\n\n", c.Config.Bench, c.Config.Benchtime)
	t := table{head: []string{"case", "batch", "conns/s", "p50 toad / echo", "p99 toad / echo", "toad CPU per conn", "echo CPU per call", "sleeps toad / echo", "toad", "proxy", "clients + origin"},
		align: "lrrrrrrrrrr"}
	for _, cs := range c.Cases {
		name, batch, _ := strings.Cut(cs.Name, "/batch=")
		t.add(caseName(name+"/"), batch, si(cs.Get("conns/s")),
			fmt.Sprintf("%s / %s (%s)", dur(µs(cs.Get("p50-µs"))), dur(µs(cs.Get("echo-p50-µs"))), times(cs.Get("p50/echo"))),
			fmt.Sprintf("%s / %s", dur(µs(cs.Get("p99-µs"))), dur(µs(cs.Get("echo-p99-µs")))),
			dur(µs(cs.Get("toad-cpu-µs/conn"))), dur(µs(cs.Get("echo-cpu-µs/call"))),
			fmt.Sprintf("%.1f / %.1f", cs.Get("toad-sleeps/conn"), cs.Get("echo-sleeps/call")),
			fmt.Sprintf("%.0f%%", cs.Get("toad-cpu-%")), fmt.Sprintf("%.0f%%", cs.Get("proxy-cpu-%")), fmt.Sprintf("%.0f%%", cs.Get("bench-cpu-%")))
	}
	p("%s\n", t.String())
	if on := c.Find("persist-on/batch=30"); on != nil {
		p("The persistence cases restart toad without `--state-dir`, then with it, and run 30 connections at once with the TOA in the ACK "+
			"through a proxy of their own; with it, toad's journal wrote %.0f bytes per connection (its `GetStats` counters, compactions included).\n\n",
			on.Get("journal-B/conn"))
	}
}

func (r *Report) writeRate(p func(string, ...any)) {
	p("## 9. Capture rate into the table\n\n")
	rt := r.Rate
	if r.skipped(p, "caprate") || rt == nil {
		return
	}
	if rt.Skipped != "" {
		p("Not run: %s.\n\n", rt.Skipped)
		return
	}
	p("`bench/caprate`: two network namespaces joined by a veth pair; on one end a capture (`capture.Open`, %s, toad's kernel "+
		"filter) feeding a connection table, on the other a sender writing %s SYN segments per trial, each carrying a 200/8 TOA for a "+
		"connection of its own, with sendmmsg(2) on a cooked packet socket, from one thread kept on one CPU; the kernel's receive path "+
		"(veth, the filter, the copy into the ring) runs on the sender's thread. A trial ends when the table's sink has seen an end marker "+
		"sent after the segments. The first trial sends as fast as the sender can; when the kernel dropped segments, paced trials search "+
		"for the highest rate without drops. CPU is the process's (sender included) per segment, and the same without the sender's thread.\n\n",
		plural(rt.Config.Readers, "reader"), count(rt.Config.Packets))
	t := table{head: []string{"asked", "segments/s into the table", "dropped", "in the table", "CPU per segment", "without the sender"}, align: "rrrrrr"}
	for _, tr := range rt.Trials {
		asked := "as fast as it can"
		if tr.Target > 0 {
			asked = si(tr.Target) + "/s"
		}
		t.add(asked, si(tr.Rate()), count(int(tr.Drops)), fmt.Sprintf("%s of %s", count(tr.Entries), count(tr.Sent)),
			dur(tr.CPUPerPacket()), dur(tr.CapturePerPacket()))
	}
	p("%s\n", t.String())
}

func (r *Report) writeIdle(p func(string, ...any)) {
	p("## 10. Idle cost\n\n")
	id := r.Idle
	if r.skipped(p, "idle") || id == nil {
		return
	}
	if id.Skipped != "" {
		p("Not run: %s.\n\n", id.Skipped)
		return
	}
	p("`bench/idlecost`: the toad command (`toad serve --interface eth0`, every listener at its default: the unix socket, loopback "+
		"TCP, health and metrics) in a network namespace whose link's other end is silent. Once it serves, its CPU time and its threads' "+
		"context switches (how often they were woken) are read from /proc before and after %s of quiet, which starts %s after it serves.\n\n", dur(id.Duration.Round(time.Second)), dur(id.Settle))
	t := table{head: []string{"period", "CPU time", "share of a core", "wakeups", "per second", "threads"}, align: "rrrrrr"}
	t.add(dur(id.Duration.Round(time.Second)), dur(id.CPU), fmt.Sprintf("%.3f%%", 100*id.Share()), count(int(id.Switches)), sig(id.WakeupsPerSecond()), fmt.Sprint(id.Threads))
	p("%s\n", t.String())
}
