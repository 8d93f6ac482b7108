package daemon

import (
	"context"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/toad-project/toad/api/client"
	"github.com/toad-project/toad/api/preload"
	"github.com/toad-project/toad/internal/apitest"
	"github.com/toad-project/toad/internal/scrape"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
)

// TestServePreload runs the daemon with its preload socket: a library's
// HELLO is welcomed, and the preload counters show in GetStats and
// /metrics. When toad stops, the socket goes.
func TestServePreload(t *testing.T) {
	dir := t.TempDir()
	sock, psock := filepath.Join(dir, "toad.sock"), filepath.Join(dir, "run", "preload.sock")
	d := serving(t, func(c *Config) {
		c.Pcaps, c.Socket, c.PreloadSocket, c.PreloadSharedSlots, c.Drain = []string{samplePath}, sock, psock, 1024, 0
	})
	fi, err := os.Stat(psock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("preload socket: mode %v, want a socket of 0660", fi.Mode())
	}

	c, err := net.Dial("unixpacket", psock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var f preload.Frame
	(&preload.Hello{PID: 1}).Put(&f, 7)
	if _, err := c.Write(f[:]); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := c.Read(f[:])
	if err != nil {
		t.Fatal(err)
	}
	h, err := preload.ParseHeader(&f, n)
	if err != nil || h.Type != preload.TypeWelcome || h.ID != 7 {
		t.Fatalf("got %+v, %v, want a WELCOME with id 7", h, err)
	}
	if w := preload.ParseWelcome(&f); w.Status != preload.StatusOK || w.Flags&preload.FlagSharedTable == 0 {
		t.Errorf("WELCOME %+v: want OK with the shared table", w)
	}

	api := apitest.Client(t, sock, client.WithWait(0))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := api.Service().GetStats(ctx, &toadv1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]uint64{"preload_hellos": 1, "preload_connections_open": 1, "preload_lookups": 0} {
		if got, ok := st.GetCounters()[name]; !ok || got != want {
			t.Errorf("GetStats counter %s = %d (present %v), want %d", name, got, ok, want)
		}
	}
	if _, ok := st.GetCounters()["capture_packets"]; !ok {
		t.Error("GetStats lost the capture counters")
	}
	code, body := scrape.Get(t, http.Get, d.metrics, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", code)
	}
	for _, line := range []string{"toad_preload_hellos_total 1", "toad_preload_connections_open 1", "toad_preload_getname_toa_ok_total 0"} {
		if !strings.Contains(body, "\n"+line+"\n") {
			t.Errorf("no %q in /metrics", line)
		}
	}

	if err := d.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	// The library's connection is closed: it falls back to the kernel.
	if _, err := c.Read(f[:]); err == nil {
		t.Error("the library's connection is still open after toad stopped")
	}
	if _, err := os.Stat(psock); !os.IsNotExist(err) {
		t.Errorf("preload socket after stop: %v, want it removed", err)
	}
}
