package netnstest_test

import (
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/toad-project/toad/internal/netnstest"
	"github.com/toad-project/toad/internal/privtest"
)

func TestNamespaces(t *testing.T) {
	privtest.Require(t, "ip")
	var path string
	t.Run("use", func(t *testing.T) {
		a, b := netnstest.New(t, "netnstest-a"), netnstest.New(t, "netnstest-b")
		path = a.Path
		if !strings.HasPrefix(a.Name, "toadtest-netnstest-a-") || a.Name == b.Name {
			t.Errorf("got names %q and %q, want distinct toadtest-netnstest-* names", a.Name, b.Name)
		}
		netnstest.Veth(t, a, "veth0", b, "veth0")
		a.IP(t, "addr add 192.0.2.1/24 dev veth0", "addr add 2001:db8::1/64 dev veth0")
		b.IP(t, "addr add 192.0.2.2/24 dev veth0", "addr add 2001:db8::2/64 dev veth0")
		b.Sysctl(t, "net.ipv4.ip_forward", "1")
		var fwd []byte
		if err := b.Do(func() (err error) {
			fwd, err = os.ReadFile("/proc/sys/net/ipv4/ip_forward")
			return err
		}); err != nil || strings.TrimSpace(string(fwd)) != "1" {
			t.Errorf("ip_forward in b: got %q, %v; want 1", fwd, err)
		}

		// A listener made in b, dialed from a over IPv6 with no DAD wait.
		var ln net.Listener
		if err := b.Do(func() (err error) {
			ln, err = net.Listen("tcp", "[2001:db8::2]:7")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		done := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				done <- err
				return
			}
			defer c.Close()
			_, err = io.Copy(c, c)
			done <- err
		}()
		var got string
		err := a.Do(func() error {
			c, err := net.Dial("tcp", "[2001:db8::2]:7")
			if err != nil {
				return err
			}
			defer c.Close()
			if _, err := io.WriteString(c, "ping"); err != nil {
				return err
			}
			c.(*net.TCPConn).CloseWrite()
			b, err := io.ReadAll(c)
			got = string(b)
			return err
		})
		if err != nil || got != "ping" {
			t.Errorf("echo from a to b: got %q, %v; want ping", got, err)
		}
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}

		// The caller's own namespace is untouched.
		if _, err := net.InterfaceByName("veth0"); err == nil {
			t.Error("veth0 is visible outside the namespaces")
		}
	})
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("namespace %s still there after its test: %v", path, err)
	}
}
