package report

import (
	"fmt"
	"time"
)

// Targets of unmodified programs with the preload library.
const (
	targetPreloadRatio = 0.95
	targetPreloadAdded = 50 * time.Microsecond
)

// preloadGoals holds BenchmarkPreloadNginx against its targets.
func (r *Report) preloadGoals() []Goal {
	c := r.Preload
	if c == nil || c.Skipped != "" || len(c.Cases) == 0 {
		return nil
	}
	cs := &c.Cases[0]
	ratio, added := cs.Get("conns/s-ratio"), µs(cs.Get("added-p50-µs"))
	g := Goal{Name: "unmodified nginx with the preload library",
		Target:   fmt.Sprintf("≥ %s the connections per second without it, ≤ %s added at p50", times(targetPreloadRatio), dur(targetPreloadAdded)),
		Measured: fmt.Sprintf("%s the connections per second (%s → %s), p50 %s → %s", times(ratio), si(cs.Get("kernel-conns/s")), si(cs.Get("preload-conns/s")), dur(µs(cs.Get("kernel-p50-µs"))), dur(µs(cs.Get("preload-p50-µs")))),
		Met:      met(ratio >= targetPreloadRatio && added <= targetPreloadAdded)}
	if !*g.Met {
		g.Why = fmt.Sprintf("ratio %s, %s added at p50. With the library each accept costs a lookup in toad's shared table, or, for a "+
			"connection toad has not published yet, a round trip to toad that waits for its capture (`go test -bench Accept ./api/preload` "+
			"measures both apart); the runs with and without it take turns, and whatever else loads the machine moves each pair too.", times(ratio), dur(added))
	}
	gs := []Goal{g}
	if cpu := µs(cs.Get("toad-preload-cpu-µs/conn")); cpu > 0 {
		g := Goal{Name: "toad CPU per connection, lookups from the preload shared table",
			Target:   fmt.Sprintf("≤ %s, the lookup it answers included", dur(targetCPU)),
			Measured: fmt.Sprintf("%s, %.1f sleeps (capture alone, without the library: %s)", dur(cpu), cs.Get("toad-preload-sleeps/conn"), dur(µs(cs.Get("toad-capture-cpu-µs/conn")))),
			Met:      met(cpu <= targetCPU)}
		if !*g.Met {
			g.Why = fmt.Sprintf("%s over. What is left is the capture's: the reader wakes for each packet that carries a TOA or ends a connection, "+
				"and each wakeup of a thread costs tens of µs of CPU on this VM (section 8 counts them).", times(float64(cpu)/float64(targetCPU)))
		}
		gs = append(gs, g)
	}
	return gs
}

func (r *Report) writePreload(p func(string, ...any)) {
	p("## 11. Unmodified nginx with the preload library\n\n")
	c := r.Preload
	if r.skipped(p, "preload") || c == nil {
		return
	}
	if c.Skipped != "" || len(c.Cases) == 0 {
		p("Not run: %s.\n\n", c.Skipped)
		return
	}
	cs := &c.Cases[0]
	p("`BenchmarkPreloadNginx` (`go test -run '^$' -bench PreloadNginx -benchtime %s ./e2e/`): nginx (a master and two workers) behind the "+
		"FULLNAT proxy in a network namespace, toad capturing beside it with its preload socket, started alternately without and with "+
		"`LD_PRELOAD=libtoad_preload.so` (default settings) for 5 rounds; each run opens %s connections, 8 at a time, each an HTTP/1.0 GET "+
		"whose body is nginx's `$remote_addr:$remote_port`, checked: the proxy without the library, the real client with it. The ratio and the "+
		"added latency are medians of the rounds' pairs; latency runs from the client's connect to nginx's close. toad's CPU and sleeps "+
		"(voluntary context switches) are over the measured runs: without the library it only captures; with it, it also publishes each "+
		"connection to the shared table and answers the lookups that come over its socket.\n\n",
		c.Config.Benchtime, count(cs.Iterations))
	t := table{head: []string{"", "without the library", "with it", ""}, align: "lrrl"}
	t.add("connections/s", si(cs.Get("kernel-conns/s")), si(cs.Get("preload-conns/s")), times(cs.Get("conns/s-ratio")))
	added := µs(cs.Get("added-p50-µs"))
	sign := "+"
	if added < 0 {
		sign, added = "−", -added
	}
	t.add("p50, connect to close", dur(µs(cs.Get("kernel-p50-µs"))), dur(µs(cs.Get("preload-p50-µs"))), sign+dur(added))
	if cs.Get("toad-preload-cpu-µs/conn") > 0 {
		t.add("toad's CPU per connection", dur(µs(cs.Get("toad-capture-cpu-µs/conn"))), dur(µs(cs.Get("toad-preload-cpu-µs/conn"))), "")
		t.add("toad's sleeps per connection", fmt.Sprintf("%.1f", cs.Get("toad-capture-sleeps/conn")), fmt.Sprintf("%.1f", cs.Get("toad-preload-sleeps/conn")), "")
	}
	p("%s\n", t.String())
	p("Connections the library gave the proxy's address because toad answered later than its 20 ms wait: %.2f%%.\n\n", 100*cs.Get("fallback-fraction"))
}
