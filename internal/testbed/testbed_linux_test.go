package testbed_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/toad-project/toad/internal/netnstest"
	"github.com/toad-project/toad/internal/privtest"
	"github.com/toad-project/toad/internal/testbed"
)

// TestToad runs the toad command in a namespace: it serves, the process
// measured is toad itself (ip exec'd it in place), and SIGTERM stops it
// cleanly.
func TestToad(t *testing.T) {
	privtest.Require(t, "ip")
	ns := netnstest.New(t, "testbed")
	bin := testbed.BuildToad(t)
	dir, err := os.MkdirTemp("", "toad-testbed-") // short enough for a socket path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	td := testbed.StartToad(t, ns, bin, "serve", "--interface", "lo", "--socket", filepath.Join(dir, "toad.sock"), "--listen", "", "--drain", "0s")

	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", td.PID()))
	if err != nil || strings.TrimSpace(string(comm)) != "toad" {
		t.Errorf("process %d is %q, %v; want toad", td.PID(), comm, err)
	}
	if cpu, err := td.CPU(); err != nil || cpu < 0 {
		t.Errorf("CPU() = %v, %v; want a duration of 0 or more", cpu, err)
	}
	for range 2 {
		if err := td.Stop(10 * time.Second); err != nil {
			t.Errorf("Stop: %v\n%s", err, td.Log())
		}
	}
	if log := td.Log(); !strings.Contains(log, "msg=serving") || !strings.Contains(log, "shutting down") {
		t.Errorf("toad's log lacks serving and shutting down:\n%s", log)
	}
}
