package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/toad-project/toad/bench/apicmp"
	"github.com/toad-project/toad/bench/caprate"
	"github.com/toad-project/toad/bench/connbench"
	"github.com/toad-project/toad/bench/idlecost"
	"github.com/toad-project/toad/bench/kfilter"
	"github.com/toad-project/toad/bench/replaycmp"
	"github.com/toad-project/toad/bench/report"
	"github.com/toad-project/toad/bench/tablecmp"
	"github.com/toad-project/toad/internal/privtest"
)

// chartName is the scaling chart's file, beside RESULTS.md.
const chartName = "scaling.svg"

// run measures every section c asks for and writes the report. A section
// that fails is recorded as not run and fails the whole; so does a
// disagreement of toad's mappings with the ground truth.
func run(ctx context.Context, c config, log *slog.Logger) error {
	start := time.Now()
	r := &report.Report{
		Date:    start,
		Command: command(c),
		Machine: report.Probe(),
		Skipped: map[string]string{},
	}
	log.Info("toadbench starting", "out", c.Out, "quick", c.Quick, "cpu", r.Machine.CPU, "cores", r.Machine.Cores, "load", r.Machine.Load)
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return err
	}
	if c.Quick {
		r.Notes = append(r.Notes, "Quick mode: small sizes and one round, to check that the harness and its checks work; the figures mean little.")
	}
	logf := func(format string, args ...any) { log.Info(fmt.Sprintf(format, args...)) }

	var errs []error
	step := func(name string, fn func() error) {
		if !c.runs(name) {
			r.Skipped[name] = "not asked for (-only)"
			return
		}
		if err := ctx.Err(); err != nil {
			r.Skipped[name] = "interrupted"
			errs = append(errs, err)
			return
		}
		t := time.Now()
		log.Info("section starting", "section", name)
		if err := fn(); err != nil {
			r.Skipped[name] = "failed: " + err.Error()
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			log.Error("section failed", "section", name, "err", err)
			return
		}
		log.Info("section done", "section", name, "took", time.Since(t).Round(time.Millisecond))
	}

	step("replay", func() error {
		dir, err := os.MkdirTemp(c.TmpDir, "toadbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		capt, err := replaycmp.WriteCapture(filepath.Join(dir, "replay.pcap"), replaycmp.Mix{Conns: c.ReplayConns, Data: c.Data, Seed: c.Seed})
		if err != nil {
			return err
		}
		logf("replay: capture of %d connections, %d packets, %d MiB, %.1f%% plain, written in %v",
			capt.Mix.Conns, capt.Packets, capt.Bytes>>20, 100*capt.Data, capt.Generated.Round(time.Millisecond))
		res, err := replaycmp.Compare(ctx, capt, replaycmp.Config{Rounds: c.Rounds, TsharkRounds: c.TsharkRounds, Tshark: c.Tshark, Logf: logf})
		if err != nil {
			return err
		}
		r.Replay = &report.Replay{Capture: capt, Rounds: c.Rounds, Results: res}
		return nil
	})

	step("kfilter", func() error {
		mix := replaycmp.Mix{Conns: c.FilterConns, Data: c.Data, Seed: c.Seed}
		res, err := kfilter.Run(ctx, kfilter.Config{Mix: mix, Logf: logf})
		if err != nil {
			return err
		}
		r.Filter = &report.Filter{Mix: mix, Results: res}
		for _, x := range res {
			if err := ranInCI(x.Skipped); err != nil {
				return err
			}
		}
		return nil
	})

	step("table", func() error {
		for _, keys := range c.TableKeys {
			rounds := c.TableRounds
			if keys > 1_000_000 {
				rounds = 1
			}
			cfg := tablecmp.Config{Keys: keys, Writers: 2, Rounds: rounds}
			res, err := tablecmp.Run(cfg)
			if err != nil {
				return err
			}
			logf("table: %d keys: toad lost %d, ristretto %d; set %.0f vs %.0f ns; get %.0f vs %.0f ns; %.0f vs %.0f bytes/entry",
				keys, res[0].Lost, res[1].Lost, res[0].SetNs, res[1].SetNs, res[0].GetNs, res[1].GetNs, res[0].BytesPerEntry, res[1].BytesPerEntry)
			r.Tables = append(r.Tables, report.Table{Keys: keys, Writers: cfg.Writers, Rounds: rounds, Results: res})
		}
		return nil
	})

	step("api", func() error {
		cfg := apicmp.Config{Phase: c.APIPhase, Rounds: c.APIRounds, Batch: c.APIBatch, Conns: c.APIConns, Logf: logf}
		res, err := apicmp.Run(ctx, cfg)
		if err != nil {
			return err
		}
		r.API = &report.API{Config: cfg, Results: res}
		return nil
	})

	step("scale", func() error {
		cfg := replaycmp.ScaleConfig{Sizes: c.ScaleSizes, Data: c.ScaleData, Seed: c.Seed, Rounds: c.ScaleRounds, RepeatUpTo: 1_000_000, Logf: logf}
		pts, err := replaycmp.Scale(ctx, cfg)
		if err != nil {
			return err
		}
		r.Scale = &report.Scale{Config: cfg, Points: pts}
		if len(pts) < 2 {
			return nil
		}
		f, err := os.Create(filepath.Join(c.Out, chartName))
		if err != nil {
			return err
		}
		if err := report.WriteChart(f, pts); err != nil {
			f.Close()
			return fmt.Errorf("chart: %w", err)
		}
		if err := f.Close(); err != nil {
			return err
		}
		r.Chart = chartName
		return nil
	})

	// e2eBench runs a benchmark that lives in toad's module, in e2e/.
	e2eBench := func(cfg connbench.Config) (connbench.Result, error) {
		root, err := replaycmp.ToadDir(ctx)
		if err != nil {
			return connbench.Result{}, err
		}
		cfg.Dir, cfg.Logf = root, logf
		return connbench.Run(ctx, cfg)
	}

	step("conns", func() error {
		res, err := e2eBench(connbench.Config{Bench: c.ConnsBench, Benchtime: c.ConnsBenchtime})
		if err != nil {
			return err
		}
		r.Conns = &res
		return ranInCI(res.Skipped)
	})

	step("preload", func() error {
		res, err := e2eBench(connbench.Config{Benchmark: "BenchmarkPreloadNginx", Benchtime: fmt.Sprintf("%dx", c.PreloadConns)})
		if err != nil {
			return err
		}
		r.Preload = &res
		return ranInCI(res.Skipped)
	})

	step("caprate", func() error {
		res, err := caprate.Run(ctx, caprate.Config{Packets: c.RatePackets, Steps: c.RateSteps, Logf: logf})
		if err != nil {
			return err
		}
		r.Rate = &res
		return ranInCI(res.Skipped)
	})

	step("idle", func() error {
		dir, err := os.MkdirTemp(c.TmpDir, "toadbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "toad")
		root, err := replaycmp.ToadDir(ctx)
		if err != nil {
			return err
		}
		build := exec.CommandContext(ctx, connbench.GoTool(), "build", "-o", bin, "./cmd/toad")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("build toad: %w\n%s", err, out)
		}
		res, err := idlecost.Run(ctx, idlecost.Config{Bin: bin, Duration: c.IdleFor, Logf: logf})
		if err != nil {
			return err
		}
		r.Idle = &res
		if err := ranInCI(res.Skipped); err != nil {
			return err
		}
		logf("idle: toad used %v of CPU and woke %d times in %v", res.CPU, res.Switches, res.Duration.Round(time.Second))
		return nil
	})

	// toad as its users run it, and the spawner that measures it, built
	// once for the sections that run them.
	var tools replaycmp.Tools
	buildTools := func(dir string) (replaycmp.Tools, error) {
		if tools.Toad != "" {
			return tools, nil
		}
		t, err := replaycmp.BuildTools(ctx, dir)
		if err == nil {
			tools = t
		}
		return t, err
	}
	binDir, err := os.MkdirTemp(c.TmpDir, "toadbench-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	// scratch returns a directory for a section's files, removed by done,
	// and the tools.
	scratch := func() (dir string, t replaycmp.Tools, done func(), err error) {
		if t, err = buildTools(binDir); err != nil {
			return "", t, nil, err
		}
		if dir, err = os.MkdirTemp(c.TmpDir, "toadbench-"); err != nil {
			return "", t, nil, err
		}
		return dir, t, func() { os.RemoveAll(dir) }, nil
	}

	step("process", func() error {
		dir, t, done, err := scratch()
		if err != nil {
			return err
		}
		defer done()
		var caps []*replaycmp.Capture
		for i, n := range c.ProcessConns {
			capt, err := replaycmp.WriteCapture(filepath.Join(dir, fmt.Sprintf("process-%d.pcap", i)), replaycmp.Mix{Conns: n, Data: c.Data, Seed: c.Seed})
			if err != nil {
				return err
			}
			logf("process: capture of %d connections, %d packets, %d MiB", n, capt.Packets, capt.Bytes>>20)
			caps = append(caps, capt)
		}
		startup, err := replaycmp.MeasureStartup(ctx, t, c.ProcessRounds)
		if err != nil {
			return err
		}
		res, err := replaycmp.CompareProcesses(ctx, caps, replaycmp.ProcessConfig{Tools: t, Tshark: c.Tshark, Rounds: c.ProcessRounds, Dir: dir, Logf: logf})
		if err != nil {
			return err
		}
		r.Process = &report.Process{Rounds: c.ProcessRounds, Startup: startup, Results: res}
		return nil
	})

	step("memory", func() error {
		dir, t, done, err := scratch()
		if err != nil {
			return err
		}
		defer done()
		res, err := replaycmp.MeasureMemory(ctx, replaycmp.MemoryConfig{Conns: c.MemoryConns, Seed: c.Seed, Tools: t, Path: filepath.Join(dir, "hours.pcap"), Logf: logf})
		if err != nil {
			return err
		}
		r.Memory = res
		return nil
	})

	r.Took, r.LoadEnd = time.Since(start), report.LoadAverage()
	if d := r.Disagreements(); len(d) > 0 {
		errs = append(errs, fmt.Errorf("toad's mappings disagree with the ground truth: %s", strings.Join(d, "; ")))
	}
	path := filepath.Join(c.Out, "RESULTS.md")
	f, err := os.Create(path)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	if err := r.WriteMarkdown(f); err != nil {
		errs = append(errs, err)
	}
	if err := f.Close(); err != nil {
		errs = append(errs, err)
	}
	for _, g := range r.Goals() {
		met := "not measured"
		if g.Met != nil {
			met = fmt.Sprint(*g.Met)
		}
		log.Info("goal", "name", g.Name, "target", g.Target, "measured", g.Measured, "met", met)
	}
	log.Info("toadbench done", "results", path, "took", r.Took.Round(time.Second))
	return errors.Join(errs...)
}

// command is how the run was started, as the report shows it: the label,
// and the command line without it.
func command(c config) string {
	var args []string
	for i := 0; i < len(c.args); i++ {
		a := strings.TrimLeft(c.args[i], "-")
		switch {
		case a == "label":
			i++
			continue
		case strings.HasPrefix(a, "label="):
			continue
		}
		args = append(args, c.args[i])
	}
	cmd := strings.TrimSpace("go run ./cmd/toadbench " + strings.Join(args, " "))
	if c.Label != "" {
		return c.Label + "    # " + cmd
	}
	return cmd
}

// ranInCI fails a section whose privileged measurement skipped itself
// (skipped says why) when running under CI, where it must run.
func ranInCI(skipped string) error {
	if privtest.InCI() && skipped != "" {
		return fmt.Errorf("running under CI and the measurement was skipped: %s", skipped)
	}
	return nil
}
