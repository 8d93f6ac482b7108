package netnstest

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

var seq atomic.Uint64

// NS is a network namespace made for one test.
type NS struct {
	// Name is the namespace's name, as `ip netns` lists it.
	Name string
	// Path is the namespace file, /run/netns/<Name>.
	Path string
}

// New creates a namespace named "toadtest-<prefix>-<pid>-<n>" with its
// loopback up, and deletes it when the test ends.
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	ns, err := Open(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Error(err)
		}
	})
	return ns
}

// Open is New for code that is not a test, a benchmark harness for
// example: it returns an error instead of failing a test, and the caller
// deletes the namespace with Close.
func Open(prefix string) (*NS, error) {
	name := fmt.Sprintf("toadtest-%s-%d-%d", prefix, os.Getpid(), seq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %w: %s", name, err, bytes.TrimSpace(out))
	}
	ns := &NS{Name: name, Path: filepath.Join("/run/netns", name)}
	if err := ns.Run("link set lo up"); err != nil {
		return nil, errors.Join(err, ns.Close())
	}
	// Without duplicate address detection, IPv6 addresses, link-local ones
	// included, work the moment a link is up; with it, a router resolves
	// no neighbor for a second or two.
	err := ns.Do(func() error {
		for _, key := range []string{"all", "default"} {
			err := os.WriteFile("/proc/sys/net/ipv6/conf/"+key+"/accept_dad", []byte("0"), 0o644)
			if err != nil && !errors.Is(err, fs.ErrNotExist) { // IPv6 may be off
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("turn off IPv6 DAD in %s: %w", name, err), ns.Close())
	}
	return ns, nil
}

// Close deletes the namespace of Open.
func (ns *NS) Close() error {
	if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %w: %s", ns.Name, err, bytes.TrimSpace(out))
	}
	return nil
}

// IP runs ip(8) inside the namespace, one command per argument, each
// written as on the command line without the leading "ip" (for example
// "addr add 192.0.2.1/24 dev eth0"). It fails t on the first error.
func (ns *NS) IP(t testing.TB, cmds ...string) {
	t.Helper()
	if err := ns.Run(cmds...); err != nil {
		t.Fatal(err)
	}
}

// Run is IP for code that is not a test: it returns the first error.
func (ns *NS) Run(cmds ...string) error {
	if len(cmds) == 0 {
		return nil
	}
	for i, c := range cmds {
		cmds[i] = noDAD(c)
	}
	cmd := exec.Command("ip", "-n", ns.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip -n %s: %w: %s\ncommands:\n%s", ns.Name, err, bytes.TrimSpace(out), strings.Join(cmds, "\n"))
	}
	return nil
}

// noDAD adds "nodad" to an IPv6 "addr add": even with accept_dad off, a new
// address stays tentative (and bind fails with EADDRNOTAVAIL) until a
// kernel work item clears it, which a loaded machine can delay; an address
// added with nodad is never tentative.
func noDAD(cmd string) string {
	f := strings.Fields(cmd)
	if len(f) < 3 || f[0] != "addr" || f[1] != "add" || !strings.Contains(f[2], ":") || slices.Contains(f, "nodad") {
		return cmd
	}
	return cmd + " nodad"
}

// Veth joins namespaces a and b with a veth pair whose ends are named aName
// in a and bName in b, and brings both ends up. Interface names are at most
// 15 bytes; they need only be unique within their namespace.
func Veth(t testing.TB, a *NS, aName string, b *NS, bName string) {
	t.Helper()
	if err := Connect(a, aName, b, bName); err != nil {
		t.Fatal(err)
	}
}

// Connect is Veth for code that is not a test.
func Connect(a *NS, aName string, b *NS, bName string) error {
	err := a.Run(
		fmt.Sprintf("link add %s type veth peer name %s netns %s", aName, bName, b.Name),
		fmt.Sprintf("link set %s up", aName))
	if err != nil {
		return err
	}
	return b.Run(fmt.Sprintf("link set %s up", bName))
}

// Sysctl sets a network sysctl inside the namespace, for example
// Sysctl(t, "net.ipv4.ip_forward", "1").
func (ns *NS) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	if err := ns.SetSysctl(key, value); err != nil {
		t.Fatal(err)
	}
}

// SetSysctl is Sysctl for code that is not a test.
func (ns *NS) SetSysctl(key, value string) error {
	if !strings.HasPrefix(key, "net.") {
		return fmt.Errorf("sysctl %s: only net.* keys are per namespace", key)
	}
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	err := ns.Do(func() error { return os.WriteFile(path, []byte(value), 0o644) })
	if err != nil {
		return fmt.Errorf("sysctl %s=%s in %s: %w", key, value, ns.Name, err)
	}
	return nil
}

// Do runs fn on an OS thread that has joined the namespace, and returns
// fn's error. The calling goroutine is not moved. The thread goes back to
// its own namespace afterwards, or is discarded when it cannot.
func (ns *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is unlocked only once it is back in its own namespace;
		// a thread that stays locked ends with the goroutine.
		runtime.LockOSThread()
		errc <- ns.do(fn)
	}()
	return <-errc
}

func (ns *NS) do(fn func() error) error {
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open own namespace: %w", err)
	}
	defer unix.Close(self)
	target, err := unix.Open(ns.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", ns.Name, err)
	}
	err = unix.Setns(target, unix.CLONE_NEWNET)
	unix.Close(target)
	if err != nil {
		return fmt.Errorf("enter namespace %s: %w", ns.Name, err)
	}
	defer func() {
		if unix.Setns(self, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return fn()
}

// SendFrames writes whole Ethernet frames out of iface from inside the
// namespace, each to the destination address it carries.
func (ns *NS) SendFrames(iface string, frames ...[]byte) error {
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, f := range frames {
			sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
			copy(sa.Addr[:], f[:6])
			if err := unix.Sendto(fd, f, 0, sa); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("send from %s: %w", ns.Name, err)
	}
	return nil
}
