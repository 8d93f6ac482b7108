package deploy

import (
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// checkStatic returns why the executable at path is not a static, trimmed Go
// build: an ELF interpreter or needed shared libraries mean it would not run
// on distroless static, and the build settings must say CGO_ENABLED=0 and
// -trimpath.
func checkStatic(path string) []error {
	var errs []error
	f, err := elf.Open(path)
	if err != nil {
		return []error{fmt.Errorf("%s: %w", path, err)}
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			interp, _ := readAll(p)
			errs = append(errs, fmt.Errorf("%s: dynamically linked, interpreter %s", path, strings.TrimRight(string(interp), "\x00")))
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: read dynamic section: %w", path, err))
	} else if len(libs) > 0 {
		errs = append(errs, fmt.Errorf("%s: needs shared libraries %v", path, libs))
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return append(errs, fmt.Errorf("%s: no Go build info: %w", path, err))
	}
	got := map[string]string{}
	for _, s := range bi.Settings {
		got[s.Key] = s.Value
	}
	if got["CGO_ENABLED"] != "0" {
		errs = append(errs, fmt.Errorf("%s: built with CGO_ENABLED=%q, want 0", path, got["CGO_ENABLED"]))
	}
	if got["-trimpath"] != "true" {
		errs = append(errs, fmt.Errorf("%s: built without -trimpath", path))
	}
	return errs
}

func readAll(p *elf.Prog) ([]byte, error) {
	b := make([]byte, p.Filesz)
	_, err := p.ReadAt(b, 0)
	return b, err
}

// commands lists the directories under ../cmd that hold Go files: the
// binaries make build produces.
func commands(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("../cmd")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if gofiles, _ := filepath.Glob(filepath.Join("../cmd", e.Name(), "*.go")); len(gofiles) > 0 {
			names = append(names, e.Name())
		}
	}
	return names
}

// TestBinariesStatic checks the binaries make build wrote to TOAD_BIN_DIR:
// make deploy-check sets it after building.
func TestBinariesStatic(t *testing.T) {
	dir := os.Getenv("TOAD_BIN_DIR")
	if dir == "" {
		t.Skip("TOAD_BIN_DIR is not set: make deploy-check builds into bin/ and sets it")
	}
	cmds := commands(t)
	if len(cmds) == 0 {
		t.Skip("no commands under cmd/ yet")
	}
	for _, name := range cmds {
		t.Run(name, func(t *testing.T) {
			bin := filepath.Join(dir, name)
			if _, err := os.Stat(bin); err != nil {
				t.Fatalf("cmd/%s has no binary: %v", name, err)
			}
			for _, err := range checkStatic(bin) {
				t.Error(err)
			}
		})
	}
}

// TestCheckStatic shows that checkStatic passes a static build and fails a
// cgo one: the race-enabled test binary itself.
func TestCheckStatic(t *testing.T) {
	t.Run("static", func(t *testing.T) {
		if runtime.GOOS != "linux" {
			t.Skip("builds a Linux ELF binary")
		}
		dir := t.TempDir()
		src := filepath.Join(dir, "main.go")
		if err := os.WriteFile(src, []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/static\n\ngo 1.26\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, "static")
		cmd := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		if errs := checkStatic(bin); len(errs) > 0 {
			t.Errorf("got %v, want no errors", errs)
		}
	})
	t.Run("cgo", func(t *testing.T) {
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		bi, err := buildinfo.ReadFile(self)
		if err != nil {
			t.Fatal(err)
		}
		cgo := false
		for _, s := range bi.Settings {
			if s.Key == "CGO_ENABLED" && s.Value == "1" {
				cgo = true
			}
		}
		if !cgo {
			t.Skip("the test binary was built without cgo; run with -race")
		}
		errs := checkStatic(self)
		var msgs []string
		for _, err := range errs {
			msgs = append(msgs, err.Error())
		}
		all := strings.Join(msgs, "\n")
		for _, want := range []string{`CGO_ENABLED="1", want 0`, "without -trimpath"} {
			if !strings.Contains(all, want) {
				t.Errorf("got %q, want an error containing %q", all, want)
			}
		}
	})
}
