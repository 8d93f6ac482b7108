package replaycmp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/internal/craft/gen"
	"github.com/toad-project/toad/toa"
)

// TrustedFlag is the --trusted-proxies value of the generator's proxies.
var TrustedFlag = func() string {
	var s []string
	for _, p := range gen.Trusted {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}()

// ToadArgs returns the arguments of toad replay for path, as the
// whole-process runs give them: JSON Lines, the generator's proxies
// trusted.
func ToadArgs(path string) []string {
	return []string{"replay", "--json", "--trusted-proxies", TrustedFlag, path}
}

// Tools are the binaries the whole-process measurements run.
type Tools struct {
	// Toad is the toad command as make build builds it.
	Toad string
	// Spawner is bench/cmd/spawnrss, which starts each measured process
	// so that its peak memory from wait4 is its own (see there).
	Spawner string
}

// BuildTools builds toad, as make build does, and spawnrss into dir. It
// runs the go command from the harness's module, bench/, which finds
// toad's own through its replace directive.
func BuildTools(ctx context.Context, dir string) (Tools, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return Tools{}, fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return Tools{}, errors.New("not in a module: run the harness from the repository's bench directory")
	}
	root, err := ToadDir(ctx)
	if err != nil {
		return Tools{}, err
	}
	t := Tools{Toad: filepath.Join(dir, "toad"), Spawner: filepath.Join(dir, "spawnrss")}
	for _, b := range []struct{ bin, dir, pkg string }{{t.Toad, root, "./cmd/toad"}, {t.Spawner, filepath.Dir(mod), "./cmd/spawnrss"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", b.bin, b.pkg)
		cmd.Dir = b.dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return Tools{}, fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
		}
	}
	return t, nil
}

// ToadDir returns the directory of toad's module, which the harness's
// module replaces with its parent: toad's commands build there, with
// toad's own go.sum.
func ToadDir(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/toad-project/toad").Output()
	if err != nil {
		return "", fmt.Errorf("find toad's module: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// ProcessConfig says how CompareProcesses runs the tools.
type ProcessConfig struct {
	// Tools are toad and the spawner (BuildTools builds them).
	Tools Tools
	// Tshark is the tshark binary; "" looks for it on PATH.
	Tshark string
	// Rounds is how many times toad runs on each file, the median
	// counting; tshark runs once per file, in the middle. 0 means 5.
	Rounds int
	// Dir is where the outputs are written.
	Dir  string
	Logf func(format string, args ...any)
}

// Run is a tool's measurements as a whole process on one file.
type Run struct {
	// Skipped says why the tool did not run.
	Skipped string
	Runs    int
	// Wall and CPU are medians: from the start of the process to its
	// exit, and its user and system time. MaxRSS is its peak resident
	// memory (the largest of the runs), from wait4.
	Wall, CPU time.Duration
	MaxRSS    int64
	// Output is the size of what it wrote.
	Output int64
}

// ProcessResult compares toad replay and tshark on one file, each a
// whole process writing its output to a file.
type ProcessResult struct {
	Capture      *Capture
	Toad, Tshark Run
	// Printed counts the connections toad printed; Agrees reports that
	// they are the capture's ground truth.
	Printed int
	Agrees  bool
}

// Ratio is how many times faster toad ran; 0 when tshark did not run.
func (r *ProcessResult) Ratio() float64 {
	if r.Tshark.Skipped != "" || r.Toad.Wall <= 0 {
		return 0
	}
	return r.Tshark.Wall.Seconds() / r.Toad.Wall.Seconds()
}

// CompareProcesses runs toad replay and tshark as whole processes on each
// capture, toad several times around one run of tshark, each writing what
// it extracts to a file: for toad the connections in JSON Lines, for
// tshark the fields of every packet that toad's records hold (see
// TsharkArgs).
func CompareProcesses(ctx context.Context, caps []*Capture, cfg ProcessConfig) ([]ProcessResult, error) {
	if cfg.Rounds == 0 {
		cfg.Rounds = 5
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	tshark, skip := cfg.Tshark, ""
	if tshark == "" {
		var err error
		if tshark, err = exec.LookPath("tshark"); err != nil {
			skip = "tshark is not installed (Debian: apt-get install tshark)"
		}
	}
	var out []ProcessResult
	for _, c := range caps {
		res := ProcessResult{Capture: c, Tshark: Run{Skipped: skip}}
		var walls, cpus []time.Duration
		for round := range cfg.Rounds {
			outPath := filepath.Join(cfg.Dir, "toad.jsonl")
			s, err := runProcess(ctx, cfg.Tools.Spawner, cfg.Tools.Toad, ToadArgs(c.Path), outPath)
			if err != nil {
				return nil, fmt.Errorf("toad replay %s: %w", c.Path, err)
			}
			walls, cpus = append(walls, s.wall), append(cpus, s.cpu)
			res.Toad.MaxRSS, res.Toad.Output = max(res.Toad.MaxRSS, s.maxRSS), s.output
			if round == 0 {
				if res.Printed, res.Agrees, err = checkToadOutput(outPath, c.Truth); err != nil {
					return nil, err
				}
			}
			logf("process: toad replay, %d packets: %v, peak RSS %d MiB", c.Packets, s.wall.Round(time.Millisecond), s.maxRSS>>20)
			if skip == "" && round == cfg.Rounds/2 {
				s, err := runProcess(ctx, cfg.Tools.Spawner, tshark, TsharkArgs(c.Path), filepath.Join(cfg.Dir, "tshark.tsv"))
				if err != nil {
					return nil, fmt.Errorf("tshark %s: %w", c.Path, err)
				}
				res.Tshark = Run{Runs: 1, Wall: s.wall, CPU: s.cpu, MaxRSS: s.maxRSS, Output: s.output}
				logf("process: tshark, %d packets: %v, peak RSS %d MiB", c.Packets, s.wall.Round(time.Millisecond), s.maxRSS>>20)
			}
		}
		os.Remove(filepath.Join(cfg.Dir, "toad.jsonl"))
		os.Remove(filepath.Join(cfg.Dir, "tshark.tsv"))
		res.Toad.Runs = len(walls)
		res.Toad.Wall = median(walls, func(d time.Duration) time.Duration { return d })
		res.Toad.CPU = median(cpus, func(d time.Duration) time.Duration { return d })
		out = append(out, res)
	}
	return out, nil
}

// processRun is what one run of a process took.
type processRun struct {
	wall, cpu time.Duration
	maxRSS    int64
	output    int64
	lines     int64
}

// spawned is what spawnrss prints (see bench/cmd/spawnrss).
type spawned struct {
	WallNs, UserNs, SysNs, MaxRSS, Lines, Bytes int64
	Exit                                        int
}

// runProcess runs bin with args through the spawner, its standard output
// to the file out, or counted when out is "", and its standard error to
// stderr when not nil. It measures the process from start to exit.
func runProcess(ctx context.Context, spawner, bin string, args []string, out string, stderr ...io.Writer) (processRun, error) {
	sargs := []string{"-count", "--", bin}
	if out != "" {
		sargs = []string{"-stdout", out, "--", bin}
	}
	var errBuf bytes.Buffer
	cmd := exec.CommandContext(ctx, spawner, append(sargs, args...)...)
	cmd.Stderr = &errBuf
	if len(stderr) > 0 {
		cmd.Stderr = io.MultiWriter(&errBuf, stderr[0])
	}
	b, err := cmd.Output()
	if err != nil {
		return processRun{}, fmt.Errorf("%s: %w: %s", filepath.Base(spawner), err, bytes.TrimSpace(errBuf.Bytes()))
	}
	var s spawned
	if err := json.Unmarshal(b, &s); err != nil {
		return processRun{}, fmt.Errorf("%s printed %q: %w", filepath.Base(spawner), b, err)
	}
	if s.Exit != 0 {
		return processRun{}, fmt.Errorf("exit status %d: %s", s.Exit, bytes.TrimSpace(errBuf.Bytes()))
	}
	r := processRun{wall: time.Duration(s.WallNs), cpu: time.Duration(s.UserNs + s.SysNs), maxRSS: s.MaxRSS, output: s.Bytes, lines: s.Lines}
	if out != "" {
		if fi, err := os.Stat(out); err == nil {
			r.output = fi.Size()
		}
	}
	return r, nil
}

// toadLine is what checkToadOutput reads of a line of toad replay --json.
type toadLine struct {
	Peer, Local string
	ClientIP    *string `json:"client_ip"`
	ClientPort  *uint16 `json:"client_port"`
	Dialect     *string
}

// checkToadOutput reads toad replay's JSON Lines and reports how many
// connections it holds and whether their mappings are truth's.
func checkToadOutput(path string, truth Mappings) (int, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	var m Mappings
	n, err := readToadLines(f, &m)
	return n, err == nil && m == truth, err
}

func readToadLines(r io.Reader, m *Mappings) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		var l toadLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return n, fmt.Errorf("toad replay's line %d %q: %w", n, sc.Text(), err)
		}
		if l.ClientIP == nil || l.Dialect == nil {
			continue
		}
		peer, err1 := netip.ParseAddrPort(l.Peer)
		local, err2 := netip.ParseAddrPort(l.Local)
		addr, err3 := netip.ParseAddr(*l.ClientIP)
		d, err4 := toa.ParseDialect(*l.Dialect)
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			return n, fmt.Errorf("toad replay's line %d %q: %w", n, sc.Text(), err)
		}
		c := toa.Client{Dialect: d, Addr: addr}
		if l.ClientPort != nil {
			c.Port, c.HasPort = *l.ClientPort, true
		}
		m.Add(correlate.KeyOf(peer, local), c)
	}
	return n, sc.Err()
}

// MeasureStartup runs toad version rounds times and returns the median
// time from the start of the process to its exit: what every toad command
// pays before its work.
func MeasureStartup(ctx context.Context, tools Tools, rounds int) (time.Duration, error) {
	var walls []time.Duration
	for range max(rounds, 1) {
		s, err := runProcess(ctx, tools.Spawner, tools.Toad, []string{"version"}, os.DevNull)
		if err != nil {
			return 0, fmt.Errorf("toad version: %w", err)
		}
		walls = append(walls, s.wall)
	}
	return median(walls, func(d time.Duration) time.Duration { return d }), nil
}
