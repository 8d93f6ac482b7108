package preload_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/toad-project/toad/api/preload"
)

func TestInstallLibraries(t *testing.T) {
	from, to := t.TempDir(), t.TempDir()
	for i, name := range preload.Libraries {
		if err := os.WriteFile(filepath.Join(from, name), []byte{0x7f, 'E', 'L', 'F', byte(i)}, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// An older copy is replaced.
	if err := os.WriteFile(filepath.Join(to, preload.Libraries[0]), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := preload.InstallLibraries(from, to)
	if err != nil {
		t.Fatalf("InstallLibraries: %v", err)
	}
	if len(got) != len(preload.Libraries) {
		t.Fatalf("got %d paths %q, want %d", len(got), got, len(preload.Libraries))
	}
	for i, name := range preload.Libraries {
		p := filepath.Join(to, name)
		if got[i] != p {
			t.Errorf("path %d: got %s, want %s", i, got[i], p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if want := []byte{0x7f, 'E', 'L', 'F', byte(i)}; !bytes.Equal(b, want) {
			t.Errorf("%s: got %q, want %q", name, b, want)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v, want 0644", name, fi.Mode().Perm())
		}
	}
	ents, err := os.ReadDir(to)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != len(preload.Libraries) {
		t.Errorf("%d files in the destination, want %d (no temporary left)", len(ents), len(preload.Libraries))
	}
}

func TestInstallLibrariesErrors(t *testing.T) {
	from, to := t.TempDir(), t.TempDir()
	if _, err := preload.InstallLibraries(from, to); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing libraries: got %v, want a not-exist error", err)
	}
	if ents, _ := os.ReadDir(to); len(ents) != 0 {
		t.Errorf("missing libraries left %d files in the destination", len(ents))
	}
	if _, err := preload.InstallLibraries(from, filepath.Join(to, "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing destination: got %v, want a not-exist error", err)
	}
}
