package testbed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/toad-project/toad/fullnat"
	"github.com/toad-project/toad/internal/netnstest"
)

// Proxy creates a fullnat forwarder with cfg inside ns and runs it until
// the test ends; a forwarder that cannot be made fails t.
func Proxy(t testing.TB, ns *netnstest.NS, cfg fullnat.Config) *fullnat.Forwarder {
	t.Helper()
	var f *fullnat.Forwarder
	err := ns.Do(func() (err error) {
		f, err = fullnat.New(cfg)
		return err
	})
	if err != nil {
		t.Fatalf("proxy in %s: %v", ns.Name, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- f.Run(context.Background()) }()
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("close proxy: %v", err)
		}
		if err := <-errc; err != nil {
			t.Errorf("run proxy: %v", err)
		}
	})
	return f
}

// Race reports whether the test binary was built with the race detector,
// and so BuildToad's command too.
const Race = raceEnabled

// BuildToad builds the toad command into a temporary directory of t and
// returns its path. When the test binary has the race detector, so does
// the command: a data race in toad then shows in its log and fails its
// exit status (66). With TOAD_BIN set in the environment, it builds
// nothing and returns that path instead, to test a given binary.
func BuildToad(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("TOAD_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("TOAD_BIN: %v", err)
		}
		return bin
	}
	bin := filepath.Join(t.TempDir(), "toad")
	args := []string{"build", "-o", bin}
	if Race {
		args = append(args, "-race")
	}
	args = append(args, "github.com/toad-project/toad/cmd/toad")
	cmd := exec.Command(goTool(), args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

// goTool returns the go command that built the test, or the one on PATH.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); runtime.GOROOT() != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// How long StartToad waits for toad to serve; how long the end of the
// test waits for it to stop, and Stop for it to die once killed.
const (
	startTimeout = 30 * time.Second
	stopTimeout  = 15 * time.Second
	killTimeout  = 10 * time.Second
)

// Toad is a toad process running in a network namespace.
type Toad struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has been waited for
	err    error         // the process's exit, set before exited closes

	mu  sync.Mutex
	log strings.Builder
}

// StartToad runs bin (a toad command, from BuildToad) with args inside ns,
// through `ip netns exec`, and returns once it logs that it serves. When
// the test ends, toad, if still running, is stopped as Stop does, and must
// have exited with status 0 (a data race in a -race build exits with 66);
// its log goes to the test's output should the test fail.
func StartToad(t testing.TB, ns *netnstest.NS, bin string, args ...string) *Toad {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, bin}, args...)...)
	// ip execs toad in its own place, so the child is toad itself; it dies
	// with the test binary should that be killed first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start toad in %s: %v", ns.Name, err)
	}
	td := &Toad{cmd: cmd, exited: make(chan struct{})}
	serving := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		ready := false
		for sc.Scan() {
			line := sc.Text()
			td.mu.Lock()
			td.log.WriteString(line)
			td.log.WriteByte('\n')
			td.mu.Unlock()
			if !ready && strings.Contains(line, " msg=serving") {
				ready = true
				close(serving)
			}
		}
		td.err = cmd.Wait()
		close(td.exited)
	}()
	t.Cleanup(func() {
		if err := td.Stop(stopTimeout); err != nil {
			t.Errorf("toad (pid %d): %v", td.PID(), err)
		}
		if t.Failed() {
			t.Logf("toad (pid %d) log:\n%s", td.PID(), td.Log())
		}
	})
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	select {
	case <-serving:
	case <-td.exited:
		t.Fatalf("toad exited before serving: %v\n%s", td.err, td.Log())
	case <-deadline.C:
		t.Fatalf("toad did not serve within %v\n%s", startTimeout, td.Log())
	}
	return td
}

// PID returns the toad process's id.
func (td *Toad) PID() int { return td.cmd.Process.Pid }

// Log returns what toad has logged so far.
func (td *Toad) Log() string {
	td.mu.Lock()
	defer td.mu.Unlock()
	return td.log.String()
}

// userHZ is the unit of the CPU times in /proc/PID/stat: USER_HZ, 100 on
// every Linux architecture Go supports.
const userHZ = 100

// CPU returns the CPU time toad has used so far, user and system, at the
// resolution of /proc (10 ms).
func (td *Toad) CPU() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", td.PID()))
	if err != nil {
		return 0, fmt.Errorf("toad CPU time: %w", err)
	}
	// The command name, in parentheses, may hold spaces: fields count from
	// after it. utime and stime are fields 14 and 15 of the whole line.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("toad CPU time: /proc/%d/stat: unexpected %q", td.PID(), b)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("toad CPU time: /proc/%d/stat: %w", td.PID(), err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// Stop sends toad SIGTERM and waits for it to exit, killing it after
// timeout. It returns nil when toad exits with status 0.
func (td *Toad) Stop(timeout time.Duration) error {
	select {
	case <-td.exited:
		return td.exitErr()
	default:
	}
	if err := td.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal toad: %w", err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-td.exited:
		return td.exitErr()
	case <-t.C:
		td.cmd.Process.Kill()
		k := time.NewTimer(killTimeout)
		defer k.Stop()
		select {
		case <-td.exited:
		case <-k.C:
		}
		return fmt.Errorf("toad did not exit within %v of SIGTERM: killed", timeout)
	}
}

func (td *Toad) exitErr() error {
	if td.err != nil {
		return fmt.Errorf("toad exited: %w", td.err)
	}
	return nil
}
