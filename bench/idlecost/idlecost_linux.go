package idlecost

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/toad-project/toad/internal/cputime"
	"github.com/toad-project/toad/internal/netnstest"
)

// Run starts toad, waits until it serves, and measures cfg.Duration of
// quiet.
func Run(ctx context.Context, cfg Config) (res Result, err error) {
	if cfg.Duration == 0 {
		cfg.Duration = time.Minute
	}
	if cfg.Settle == 0 {
		cfg.Settle = 5 * time.Second
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if os.Geteuid() != 0 {
		return Result{Skipped: "needs root: network namespaces and packet sockets (CAP_NET_ADMIN, CAP_NET_RAW)"}, nil
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return Result{Skipped: "needs ip(8) (Debian: apt-get install iproute2)"}, nil
	}
	ns, err := netnstest.Open("idle")
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, ns.Close()) }()
	peer, err := netnstest.Open("idle")
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, peer.Close()) }()
	if err := netnstest.Connect(ns, "eth0", peer, "eth0"); err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp("", "toad-idle-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)

	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns.Name, cfg.Bin, "serve",
		"--interface", "eth0", "--socket", filepath.Join(dir, "toad.sock"), "--drain", "0s")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return res, err
	}
	if err := cmd.Start(); err != nil {
		return res, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if werr := cmd.Wait(); werr != nil && err == nil {
			err = fmt.Errorf("toad: %w", werr)
		}
	}()
	serving := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		ready := false
		for sc.Scan() {
			if !ready && strings.Contains(sc.Text(), " msg=serving") {
				ready = true
				close(serving)
			}
		}
	}()
	select {
	case <-serving:
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(30 * time.Second):
		return res, errors.New("toad did not serve within 30s")
	}
	pid := cmd.Process.Pid
	cfg.Logf("idle: toad (pid %d) serves; measuring %v of quiet after %v", pid, cfg.Duration, cfg.Settle)
	cpu0, sw0, _, err := usageAfter(ctx, cfg.Settle, pid)
	if err != nil {
		return res, err
	}
	start := time.Now()
	cpu1, sw1, threads, err := usageAfter(ctx, cfg.Duration, pid)
	if err != nil {
		return res, err
	}
	return Result{Duration: time.Since(start), Settle: cfg.Settle, CPU: cpu1 - cpu0, Switches: sw1 - sw0, Threads: threads}, nil
}

// usageAfter waits d, unless ctx ends first, and returns the usage of
// process pid then.
func usageAfter(ctx context.Context, d time.Duration, pid int) (cpu time.Duration, switches int64, threads int, err error) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return 0, 0, 0, ctx.Err()
	}
	return usage(pid)
}

// usage returns process pid's CPU time, the times its threads went to
// sleep (see cputime.Sleeps), and how many threads it has.
func usage(pid int) (cpu time.Duration, switches int64, threads int, err error) {
	if cpu, err = cputime.Of(pid); err != nil {
		return 0, 0, 0, err
	}
	switches, threads, err = cputime.Sleeps(pid)
	return cpu, switches, threads, err
}
