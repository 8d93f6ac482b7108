package connbench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
)

// Config says which cases to run and for how long.
type Config struct {
	// Dir is the module's root; "" means the working directory.
	Dir string
	// Benchmark is the benchmark of ./e2e/ to run; "" means
	// BenchmarkConnections. BenchmarkPreloadNginx is the other.
	Benchmark string
	// Bench is the -bench pattern of its sub-benchmarks; "" means every
	// case. A benchmark without sub-benchmarks reports one Case named "".
	Bench string
	// Benchtime is go test's -benchtime; "" means 3s.
	Benchtime string
	// Logf, when set, reports progress.
	Logf func(format string, args ...any)
}

// Case is one sub-benchmark's figures.
type Case struct {
	// Name is the sub-benchmark's name below BenchmarkConnections, such as
	// "syn/batch=1".
	Name string
	// Iterations is the benchmark's b.N: rounds of batch connections.
	Iterations int
	// Metrics are the figures it reported, by unit.
	Metrics map[string]float64
}

// Get returns the figure of unit, 0 when it was not reported.
func (c *Case) Get(unit string) float64 { return c.Metrics[unit] }

// Result is the whole run.
type Result struct {
	Skipped string
	Config  Config
	Cases   []Case
}

// Find returns the case named name, or nil.
func (r *Result) Find(name string) *Case {
	for i := range r.Cases {
		if r.Cases[i].Name == name {
			return &r.Cases[i]
		}
	}
	return nil
}

var benchLine = lineOf("BenchmarkConnections")

// lineOf matches the result lines of benchmark name: the sub-benchmark's
// name (empty for none), -GOMAXPROCS, the iterations, the figures.
func lineOf(name string) *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `(?:/(\S+?))?(-\d+)?\s+(\d+)\s+(.*)$`)
}

// Run runs the benchmark and parses what it reports.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Benchtime == "" {
		cfg.Benchtime = "3s"
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.Benchmark == "" {
		cfg.Benchmark = "BenchmarkConnections"
		if cfg.Bench == "" {
			cfg.Bench = "."
		}
	}
	res := Result{Config: cfg}
	benchLine := lineOf(cfg.Benchmark)
	pattern := "^" + cfg.Benchmark + "$"
	if cfg.Bench != "" {
		pattern += "/" + cfg.Bench
	}
	args := []string{"test", "-run", "^$", "-count", "1", "-bench", pattern, "-benchtime", cfg.Benchtime, "./e2e/"}
	cmd := exec.CommandContext(ctx, GoTool(), args...)
	cmd.Dir = cfg.Dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cfg.Logf("connections: go %s", strings.Join(args, " "))
	err := cmd.Run()
	sc := bufio.NewScanner(&out)
	var skip string
	for sc.Scan() {
		line := sc.Text()
		if m := benchLine.FindStringSubmatch(line); m != nil {
			c, perr := parse(m)
			if perr != nil {
				return res, fmt.Errorf("%q: %w", line, perr)
			}
			res.Cases = append(res.Cases, c)
			cfg.Logf("connections: %s", line)
			continue
		}
		if _, why, ok := strings.Cut(line, "_linux_test.go"); ok && strings.Contains(line, "needs") {
			skip = strings.TrimSpace(why)
		}
	}
	if err != nil {
		return res, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, tail(out.String(), 40))
	}
	if len(res.Cases) == 0 {
		res.Skipped = "the benchmark reported nothing"
		if skip != "" {
			res.Skipped = "the benchmark skipped itself" + skip
		}
	}
	return res, nil
}

func parse(m []string) (Case, error) {
	c := Case{Name: m[1], Metrics: map[string]float64{}}
	n, err := strconv.Atoi(m[3])
	if err != nil {
		return c, err
	}
	c.Iterations = n
	f := strings.Fields(m[4])
	if len(f)%2 != 0 {
		return c, fmt.Errorf("odd number of fields after the count")
	}
	for i := 0; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return c, err
		}
		c.Metrics[f[i+1]] = v
	}
	return c, nil
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// GoTool returns the go command of the running toolchain, or the one on
// PATH.
func GoTool() string {
	if root := runtime.GOROOT(); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}
