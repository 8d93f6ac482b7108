package testbed

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/toad-project/toad/internal/netnstest"
)

// BuildPreload builds the glibc preload library (libtoad_preload.so) from
// the repository's preload directory into a temporary directory of t, as
// make build does into bin/, and returns the library's path. It needs
// make and a C compiler.
func BuildPreload(t testing.TB) string {
	t.Helper()
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("BuildPreload: cannot locate the repository")
	}
	src := filepath.Join(filepath.Dir(self), "..", "..", "preload")
	out := t.TempDir()
	lib := filepath.Join(out, "libtoad_preload.so")
	cmd := exec.Command("make", "-s", "-C", src, "OUT="+out, "CFLAGS=-O2 -g -Werror", lib)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make -C preload: %v\n%s", err, b)
	}
	return lib
}

// programTimeout bounds WaitLine and the start of a Program.
const programTimeout = 60 * time.Second

// Program is any command run in a network namespace (nginx, python3,
// node, java, redis-server...), whose standard output and error lines
// the test waits on. It is killed when the test ends.
type Program struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error

	mu    sync.Mutex
	lines []string
	more  chan struct{} // closed when a line arrives, then replaced
}

// StartProgram runs argv inside ns, through `ip netns exec`, with env added
// to the test's environment, and returns once one of its output lines
// holds ready (at once when ready is empty). When the test ends it gets
// SIGTERM, then SIGKILL after 10 s; its output goes to the test's log
// should the test fail.
func StartProgram(t testing.TB, ns *netnstest.NS, name string, env []string, ready string, argv ...string) *Program {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name}, argv...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	p := &Program{name: name, cmd: cmd, exited: make(chan struct{}), more: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s in %s: %v", name, ns.Name, err)
	}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.more)
			p.more = make(chan struct{})
			p.mu.Unlock()
		}
	}()
	go func() {
		p.err = cmd.Wait()
		w.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.Stop(10 * time.Second)
		if t.Failed() {
			t.Logf("%s (pid %d) output:\n%s", name, p.PID(), strings.Join(p.Lines(), "\n"))
		}
	})
	if ready != "" {
		if _, err := p.WaitLine(0, ready); err != nil {
			t.Fatalf("%s was not ready: %v\n%s", name, err, strings.Join(p.Lines(), "\n"))
		}
	}
	return p
}

// PID returns the process's id.
func (p *Program) PID() int { return p.cmd.Process.Pid }

// Lines returns the output lines so far.
func (p *Program) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Exited is closed once the program has exited.
func (p *Program) Exited() <-chan struct{} { return p.exited }

// ErrExited is returned by WaitLine when the program exits first.
var ErrExited = errors.New("exited")

// WaitLine waits for an output line, from the from-th on, that holds s,
// and returns its index. It gives up when the program exits or after a
// minute.
func (p *Program) WaitLine(from int, s string) (int, error) {
	deadline := time.NewTimer(programTimeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		for i := from; i < len(p.lines); i++ {
			if strings.Contains(p.lines[i], s) {
				p.mu.Unlock()
				return i, nil
			}
		}
		from = max(from, len(p.lines))
		more := p.more
		p.mu.Unlock()
		select {
		case <-more:
		case <-p.exited:
			// Lines written just before the exit may still be read.
			select {
			case <-more:
				continue
			default:
			}
			return -1, errors.Join(ErrExited, p.err)
		case <-deadline.C:
			return -1, errors.New("no line with " + s + " within " + programTimeout.String())
		}
	}
}

// Signal sends the program sig.
func (p *Program) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Stop sends SIGTERM and waits for the exit, killing the program after
// timeout. It returns the exit status's error, if any.
func (p *Program) Stop(timeout time.Duration) error {
	select {
	case <-p.exited:
		return p.err
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	select {
	case <-p.exited:
	case <-tm.C:
		p.cmd.Process.Kill()
		<-p.exited
	}
	return p.err
}
