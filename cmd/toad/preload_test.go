package main

import (
	"context"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/toad-project/toad/daemon"
)

// TestPreloadSettings parses the preload flags: the socket beside
// --socket unless given, and the daemon's checks named by flag.
func TestPreloadSettings(t *testing.T) {
	def := daemon.DefaultConfig()
	tests := []struct {
		args    []string
		env     []string
		socket  string // the preload socket
		mode    fs.FileMode
		group   string
		slots   int
		libDir  string
		wantErr string
	}{
		{args: nil, socket: "/run/toad/preload.sock", mode: 0o660, slots: def.PreloadSharedSlots},
		{args: []string{"--socket", "/tmp/t/toad.sock"}, socket: "/tmp/t/preload.sock", mode: 0o660, slots: def.PreloadSharedSlots},
		{args: []string{"--socket", "", "--listen", "127.0.0.1:0"}, socket: "", mode: 0o660, slots: def.PreloadSharedSlots},
		{args: []string{"--preload-socket", ""}, socket: "", mode: 0o660, slots: def.PreloadSharedSlots},
		{args: []string{"--socket", "/tmp/t/toad.sock"}, env: []string{"TOAD_PRELOAD_SOCKET=/x/p.sock"}, socket: "/x/p.sock", mode: 0o660, slots: def.PreloadSharedSlots},
		{args: []string{"--preload-socket", "/x/p.sock", "--preload-socket-mode", "0600", "--preload-socket-group", "www-data", "--preload-shared-slots", "0", "--preload-library-dir", "/opt/toad"},
			socket: "/x/p.sock", mode: 0o600, group: "www-data", libDir: "/opt/toad"},
		{args: []string{"--preload-socket-mode", "0400"}, wantErr: "--preload-socket-mode 0400: want permissions such as 0660"},
		{args: []string{"--preload-socket-mode", "1660"}, wantErr: "octal permissions"},
		{args: []string{"--preload-socket-mode", "rw"}, wantErr: "octal permissions"},
		{args: []string{"--preload-shared-slots", "1000"}, wantErr: "--preload-shared-slots 1000: want 0 or a power of two from 8"},
		{args: []string{"--preload-shared-slots", "4"}, wantErr: "want 0 or a power of two from 8"},
		{args: []string{"--preload-shared-slots", "-1"}, wantErr: "want 0 or a power of two"},
		{args: []string{"--preload-socket", "", "--preload-socket-group", "www-data"}, wantErr: "without --preload-socket"},
		{args: []string{"--preload-socket", "/" + strings.Repeat("x", 120)}, wantErr: "--preload-socket /xxx"},
	}
	for _, tt := range tests {
		cfg, err := parseServe(tt.args, tt.env, io.Discard)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: got error %v, want one containing %q", tt.args, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("%q: %v", tt.args, err)
		default:
			c := cfg.Config
			if c.PreloadSocket != tt.socket || c.PreloadSocketMode != tt.mode || c.PreloadSocketGroup != tt.group || c.PreloadSharedSlots != tt.slots || c.PreloadLibraryDir != tt.libDir {
				t.Errorf("%q %q: got socket %q mode %v group %q slots %d library dir %q, want %q %v %q %d %q", tt.args, tt.env,
					c.PreloadSocket, c.PreloadSocketMode, c.PreloadSocketGroup, c.PreloadSharedSlots, c.PreloadLibraryDir,
					tt.socket, tt.mode, tt.group, tt.slots, tt.libDir)
			}
		}
	}
}

// TestServePreloadLibraryDir: toad refuses to start when it cannot copy
// the libraries, and says where they come from.
func TestServePreloadLibraryDir(t *testing.T) {
	dir := t.TempDir()
	var stderr strings.Builder
	code := command(context.Background(), []string{"serve", "--pcap", samplePath, "--socket", filepath.Join(dir, "toad.sock"),
		"--health-listen", "", "--metrics-listen", "", "--preload-library-dir", dir}, nil, io.Discard, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "--preload-library-dir "+dir) || !strings.Contains(stderr.String(), "make build") {
		t.Errorf("exit %d, stderr %q: want 1 and a message naming the flag and make build", code, stderr.String())
	}
}
