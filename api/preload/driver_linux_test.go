package preload_test

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toad-project/toad/internal/privtest"
	"github.com/toad-project/toad/internal/syncbuf"
)

// The preload library and the test programs are built once per test
// binary, with the Makefile that make build uses.
var build struct {
	once sync.Once
	dir  string
	err  error
}

// preloadDir is the C sources' directory, from this package's.
const preloadDir = "../../preload"

// built builds the libraries and the test programs, and returns the
// directory holding them. A missing tool skips the test, or fails it
// under CI; a build that fails fails it.
func built(t testing.TB) string {
	t.Helper()
	for _, tool := range []string{"make", "cc", "musl-gcc"} {
		if _, err := exec.LookPath(tool); err != nil {
			msg := fmt.Sprintf("needs %s on PATH (Debian: apt-get install make gcc musl-tools)", tool)
			if privtest.InCI() {
				t.Fatalf("cannot run under CI: %s", msg)
			}
			t.Skip(msg)
		}
	}
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "toad-preload-")
		if build.err != nil {
			return
		}
		out, err := exec.Command("make", "-s", "-C", preloadDir, "OUT="+build.dir, "CFLAGS=-O2 -g -Werror", "tests").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("make -C preload tests: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.dir
}

func removeBuild() {
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
}

// libc is one build of the library and of the driver, for one C library.
type libc struct {
	name    string
	lib     string // the preload library
	driver  string // hookdriver linked with the same C library
	reenter string // test/reenter.c, for the same C library
}

func libcs(dir string) []libc {
	return []libc{
		{"glibc", filepath.Join(dir, "libtoad_preload.so"), filepath.Join(dir, "hookdriver"), filepath.Join(dir, "reenter.so")},
		{"musl", filepath.Join(dir, "libtoad_preload_musl.so"), filepath.Join(dir, "hookdriver_musl"), filepath.Join(dir, "reenter_musl.so")},
	}
}

// driver runs hookdriver and speaks its line protocol.
type driver struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *syncbuf.Buffer
	debug  bool
	exited bool
}

// startDriver runs lc's driver; with preload, the library is loaded and
// env (KEY=VALUE) set. Without TOAD_PRELOAD_DEBUG in env, the library
// must write nothing: the test fails if it does.
func startDriver(t testing.TB, lc libc, preload bool, env ...string) *driver {
	t.Helper()
	cmd := exec.Command(lc.driver)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	if preload {
		cmd.Env = append(cmd.Env, "LD_PRELOAD="+lc.lib)
		cmd.Env = append(cmd.Env, env...)
	}
	d := &driver{t: t, cmd: cmd, lines: make(chan string, 1024), stderr: &syncbuf.Buffer{}}
	for _, e := range env {
		if strings.HasPrefix(e, "TOAD_PRELOAD_DEBUG=") {
			d.debug = true
		}
	}
	cmd.Stderr = d.stderr
	var err error
	if d.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			d.lines <- s.Text()
		}
		close(d.lines)
	}()
	t.Cleanup(func() {
		if !d.exited {
			d.stdin.Close()
			d.cmd.Process.Kill()
			d.cmd.Wait()
		}
	})
	return d
}

// send writes a command without waiting for its answer.
func (d *driver) send(format string, args ...any) {
	d.t.Helper()
	if _, err := fmt.Fprintf(d.stdin, format+"\n", args...); err != nil {
		d.t.Fatalf("driver gone: %v; stderr:\n%s", err, d.stderr)
	}
}

// read returns the driver's next line.
func (d *driver) read() string {
	d.t.Helper()
	select {
	case l, ok := <-d.lines:
		if !ok {
			d.t.Fatalf("driver exited; stderr:\n%s", d.stderr)
		}
		return l
	case <-time.After(deadline):
		d.t.Fatalf("driver said nothing for %v; stderr:\n%s", deadline, d.stderr)
	}
	return ""
}

// do runs a command and returns its line.
func (d *driver) do(format string, args ...any) string {
	d.t.Helper()
	d.send(format, args...)
	return d.read()
}

// ok runs a command that must succeed and returns its fields after "ok".
func (d *driver) ok(format string, args ...any) []string {
	d.t.Helper()
	l := d.do(format, args...)
	f := strings.Fields(l)
	if len(f) == 0 || f[0] != "ok" {
		d.t.Fatalf("%s: %q, want ok", fmt.Sprintf(format, args...), l)
	}
	return f[1:]
}

// exit ends the driver (its library reports its last counters) and waits
// for it.
func (d *driver) exit() {
	d.t.Helper()
	d.send("exit")
	d.stdin.Close()
	if err := d.cmd.Wait(); err != nil {
		d.t.Fatalf("driver: %v; stderr:\n%s", err, d.stderr)
	}
	d.exited = true
	if !d.debug && d.stderr.String() != "" {
		d.t.Errorf("the library wrote without TOAD_PRELOAD_DEBUG:\n%s", d.stderr)
	}
}

func (d *driver) listen(family int, addr string) (fd int, local netip.AddrPort) {
	d.t.Helper()
	f := d.ok("listen %d %s", family, addr)
	port, _ := strconv.Atoi(f[1])
	a := netip.MustParseAddr(addr)
	if a.IsUnspecified() {
		a = netip.MustParseAddr("127.0.0.1") // the tests connect to dual-stack listeners over IPv4
	}
	return atoi(d.t, f[0]), netip.AddrPortFrom(a, uint16(port))
}

// connect connects from src (port srcPort, 0 for any) to dst:port and
// returns the client socket and its address: the peer the server sees.
func (d *driver) connect(family int, src, dst string, port uint16, srcPort uint16) (fd int, peer netip.AddrPort) {
	d.t.Helper()
	f := d.ok("connect %d %s %s %d %d", family, src, dst, port, srcPort)
	return atoi(d.t, f[0]), parseAddr(d.t, f[1])
}

// dial connects to a listener of the driver at local from the same
// loopback address.
func (d *driver) dial(local netip.AddrPort) (fd int, peer netip.AddrPort) {
	d.t.Helper()
	family := 4
	if local.Addr().Is6() {
		family = 6
	}
	a := local.Addr().String()
	return d.connect(family, a, a, local.Port(), 0)
}

// setup starts a toad and a driver with the library asking it.
func setup(t *testing.T, lc libc, opts ...toadOption) (*toad, *driver) {
	t.Helper()
	td := startToad(t, nil, opts...)
	return td, startDriver(t, lc, true, env(td.path)...)
}

func atoi(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q is not a number", s)
	}
	return n
}

// parseAddr reads the driver's inet:1.2.3.4:5 or inet6:[::1]:5.
func parseAddr(t testing.TB, s string) netip.AddrPort {
	t.Helper()
	_, a, ok := strings.Cut(s, ":")
	if !ok {
		t.Fatalf("%q is not an address", s)
	}
	ap, err := netip.ParseAddrPort(a)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return ap
}

// result is a line describing an address a call returned.
type result struct {
	fd     int
	len    string // bytes the call reported, "-" for no buffer
	addr   string // the address returned, or cut:HEX when cut short
	kpeer  string // the kernel's peer
	intact bool   // the bytes past the address were left alone
}

func parseResult(t testing.TB, line string) result {
	t.Helper()
	var r result
	f := strings.Fields(line)
	for len(f) > 0 && f[0] != "ok" {
		f = f[1:] // a child, parent or thread prefix
	}
	if len(f) == 0 {
		t.Fatalf("%q is not a result", line)
	}
	for _, kv := range f[1:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "fd":
			r.fd = atoi(t, v)
		case "len":
			r.len = v
		case "addr":
			r.addr = v
		case "kpeer":
			r.kpeer = v
		case "intact":
			r.intact = v == "1"
		}
	}
	return r
}

func (d *driver) result(format string, args ...any) result {
	d.t.Helper()
	l := d.do(format, args...)
	if !strings.HasPrefix(l, "ok ") {
		d.t.Fatalf("%s: %q, want ok", fmt.Sprintf(format, args...), l)
	}
	return parseResult(d.t, l)
}

// inet formats an address as the driver does for a socket of family 4 or 6.
func inet(family int, ap netip.AddrPort) string {
	if family == 4 {
		return "inet:" + ap.String()
	}
	a := ap.Addr()
	if a.Is4() {
		a = netip.AddrFrom16(a.As16())
	}
	return "inet6:" + netip.AddrPortFrom(a, ap.Port()).String()
}

func TestMain(m *testing.M) {
	code := m.Run()
	removeBuild()
	os.Exit(code)
}
