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
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/toad-project/toad/internal/cputime"
	"github.com/toad-project/toad/internal/fullnat"
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
	return BuildCommand(t, "github.com/toad-project/toad/cmd/toad")
}

// BuildCommand builds the command of package pkg into a temporary
// directory of t, with the race detector when the test binary has it, and
// returns its path.
func BuildCommand(t testing.TB, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	args := []string{"build", "-o", bin}
	if Race {
		args = append(args, "-race")
	}
	args = append(args, pkg)
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

// Process is a command running in a network namespace: toad (StartToad),
// or another that logs a line when it is ready (Start).
type Process struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has been waited for
	err    error         // the process's exit, set before exited closes
	killed atomic.Bool   // Kill was called: its death by SIGKILL is no failure

	mu  sync.Mutex
	log strings.Builder
}

// Toad is a toad process.
type Toad = Process

// StartToad runs bin (a toad command, from BuildToad) with args inside ns,
// through `ip netns exec`, and returns once it logs that it serves. When
// the test ends, toad, if still running, is stopped as Stop does, and must
// have exited with status 0 (a data race in a -race build exits with 66);
// its log goes to the test's output should the test fail.
func StartToad(t testing.TB, ns *netnstest.NS, bin string, args ...string) *Toad {
	t.Helper()
	return Start(t, ns, "toad", bin, "serving", args...)
}

// Start runs bin with args inside ns, through `ip netns exec`, and
// returns once it logs (log/slog's text format, on standard error) the
// message ready. name names it in failures. It is stopped when the test
// ends as StartToad's toad is, and must exit with status 0.
func Start(t testing.TB, ns *netnstest.NS, name, bin, ready string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, bin}, args...)...)
	// ip execs the command in its own place, so the child is the command
	// itself; it dies with the test binary should that be killed first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s in %s: %v", name, ns.Name, err)
	}
	td := &Process{name: name, cmd: cmd, exited: make(chan struct{})}
	serving := make(chan struct{})
	readyMsg := " msg=" + ready
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		isReady := false
		for sc.Scan() {
			line := sc.Text()
			td.mu.Lock()
			td.log.WriteString(line)
			td.log.WriteByte('\n')
			td.mu.Unlock()
			if !isReady && (strings.Contains(line, readyMsg+" ") || strings.HasSuffix(line, readyMsg)) {
				isReady = true
				close(serving)
			}
		}
		td.err = cmd.Wait()
		close(td.exited)
	}()
	t.Cleanup(func() {
		if err := td.Stop(stopTimeout); err != nil {
			t.Errorf("%s (pid %d): %v", name, td.PID(), err)
		}
		if t.Failed() {
			t.Logf("%s (pid %d) log:\n%s", name, td.PID(), td.Log())
		}
	})
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	select {
	case <-serving:
	case <-td.exited:
		t.Fatalf("%s exited before it was ready: %v\n%s", name, td.err, td.Log())
	case <-deadline.C:
		t.Fatalf("%s was not ready within %v\n%s", name, startTimeout, td.Log())
	}
	return td
}

// PID returns the process's id.
func (td *Process) PID() int { return td.cmd.Process.Pid }

// Log returns what the process has logged so far.
func (td *Process) Log() string {
	td.mu.Lock()
	defer td.mu.Unlock()
	return td.log.String()
}

// CPU returns the CPU time the process has used so far, user and system,
// at the resolution of /proc (10 ms).
func (td *Process) CPU() (time.Duration, error) { return cputime.Of(td.PID()) }

// Sleeps returns how many times the process's threads have gone to sleep
// so far (see cputime.Sleeps).
func (td *Process) Sleeps() (int64, error) {
	n, _, err := cputime.Sleeps(td.PID())
	return n, err
}

// Stop sends the process SIGTERM and waits for it to exit, killing it
// after timeout. It returns nil when it exits with status 0.
func (td *Process) Stop(timeout time.Duration) error {
	select {
	case <-td.exited:
		return td.exitErr()
	default:
	}
	if err := td.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", td.name, err)
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
		return fmt.Errorf("%s did not exit within %v of SIGTERM: killed", td.name, timeout)
	}
}

// Kill sends the process SIGKILL, as an OOM kill or a failed liveness
// probe would, and waits for it to die. Its exit is then no failure.
func (td *Process) Kill() error {
	td.killed.Store(true)
	if err := td.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s: %w", td.name, err)
	}
	t := time.NewTimer(killTimeout)
	defer t.Stop()
	select {
	case <-td.exited:
		return nil
	case <-t.C:
		return fmt.Errorf("%s did not die within %v of SIGKILL", td.name, killTimeout)
	}
}

func (td *Process) exitErr() error {
	var ee *exec.ExitError
	if td.killed.Load() && errors.As(td.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return nil
		}
	}
	if td.err != nil {
		return fmt.Errorf("%s exited: %w", td.name, td.err)
	}
	return nil
}
