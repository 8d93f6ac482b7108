package preload_test

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/toad-project/toad/api/preload"
)

// BenchmarkAccept measures what a server pays per connection (connect,
// accept with an address, reset) over loopback, without the library
// ("kernel"), with it asking toad about every connection over the socket
// ("socket"), with it reading them from the shared table ("shared"), with
// it passing every peer through as untrusted ("untrusted"), and with toad
// absent ("no-toad"). The ns/accept metric is the C program's own clock;
// compare the cases as ratios of the kernel's, measured in the same run.
func BenchmarkAccept(b *testing.B) {
	dir := built(b)
	lc := libcs(dir)[0]
	bench := filepath.Join(dir, "acceptbench")
	for _, tc := range []struct {
		name    string
		preload bool
		toad    bool
		shared  bool
		trusted []string
	}{
		{"kernel", false, false, false, nil},
		{"socket", true, true, false, nil},
		{"shared", true, true, true, nil},
		{"untrusted", true, true, false, []string{"192.0.2.0/24"}},
		{"no-toad", true, false, false, nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			path := socketPath(b)
			cmd := exec.Command(bench, strconv.Itoa(b.N))
			cmd.Env = []string{"TOAD_PRELOAD_SOCKET=" + path}
			if tc.preload {
				cmd.Env = append(cmd.Env, "LD_PRELOAD="+lc.lib)
			}
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			out := bufio.NewScanner(stdout)
			var port int
			if !out.Scan() || sscan(out.Text(), "port %d", &port) != nil {
				b.Fatalf("acceptbench: %q", out.Text())
			}
			var td *toad
			if tc.toad {
				opts := []toadOption{at(path), trusting(tc.trusted...), filled(func(td *toad) { fillPorts(td, uint16(port)) })}
				if tc.shared {
					opts = append(opts, sharedSlots(preload.DefaultSharedSlots))
				}
				td = startToad(b, nil, opts...)
			}
			b.ResetTimer()
			fmt.Fprintln(stdin, "go")
			var ns int64
			if !out.Scan() || sscan(out.Text(), "ns %d", &ns) != nil {
				b.Fatalf("acceptbench: %q", out.Text())
			}
			if err := cmd.Wait(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(ns)/float64(b.N), "ns/accept")
			if td != nil && tc.trusted == nil {
				if st := td.srv.Stats(); tc.shared && st.Lookups > 1 || !tc.shared && st.Found != uint64(b.N) {
					b.Fatalf("%d lookups over the socket, %d found, for %d connections (stats %+v)", st.Lookups, st.Found, b.N, st)
				}
			}
		})
	}
}

func sscan(s, format string, v any) error {
	_, err := fmt.Sscanf(s, format, v)
	return err
}

// fillPorts gives toad a client for every connection from an ephemeral
// port of 127.0.0.1 to port.
func fillPorts(td *toad, port uint16) {
	lo, hi := 32768, 60999
	if r, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		f := strings.Fields(string(r))
		if len(f) == 2 {
			lo, _ = strconv.Atoi(f[0])
			hi, _ = strconv.Atoi(f[1])
		}
	}
	local := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	for p := lo; p <= hi; p++ {
		td.insert(netip.AddrPortFrom(local.Addr(), uint16(p)), local, client4(fmt.Sprintf("203.0.113.7:%d", p)))
	}
}
