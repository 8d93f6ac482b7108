package deploy

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const preloadMakefile = "../preload/Makefile"

// preloadLibraries returns the file names of the libraries the preload
// Makefile's default target builds.
func preloadLibraries(makefile string) ([]string, error) {
	m := regexp.MustCompile(`(?m)^all:(.*)$`).FindStringSubmatch(makefile)
	if m == nil {
		return nil, fmt.Errorf("%s has no all: target", preloadMakefile)
	}
	var libs []string
	for _, f := range strings.Fields(m[1]) {
		if strings.HasSuffix(f, ".so") {
			libs = append(libs, path.Base(f))
		}
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("%s: all: builds no .so", preloadMakefile)
	}
	return libs, nil
}

// preloadBuild is the Dockerfile's stage that builds the preload libraries.
type preloadBuild struct {
	stage string // its AS name
	run   string // the RUN that builds them
	out   string // the OUT directory it writes them to
}

var makePreload = regexp.MustCompile(`(?:^|\s|&&\s*)make\s+-C\s+preload\s+OUT=(\S+)`)

// checkPreloadImage checks that the image carries libs: a stage of the
// target platform installs a C compiler for glibc and musl, copies the
// library's sources and builds them with the preload Makefile, and the
// final stage copies every library beside /toad, where toad serve
// --preload-library-dir finds them.
func checkPreloadImage(df *dockerfile, libs []string) (preloadBuild, []error) {
	var (
		errs []error
		b    preloadBuild
	)
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(df.stages) < 2 {
		bad("no build stage for the preload libraries")
		return b, errs
	}
	for _, st := range df.stages[:len(df.stages)-1] {
		var installed []string
		copied := false
		for _, in := range st.instrs {
			switch in.cmd {
			case "COPY":
				f := strings.Fields(in.args)
				if len(f) >= 2 && slices.ContainsFunc(f[:len(f)-1], func(s string) bool {
					return s == "." || strings.TrimSuffix(s, "/") == "preload"
				}) {
					copied = true
				}
			case "RUN":
				if strings.Contains(in.args, "apt-get install") {
					installed = append(installed, strings.Fields(in.args)...)
				}
				m := makePreload.FindStringSubmatch(in.args)
				if m == nil {
					continue
				}
				b = preloadBuild{stage: st.name, run: in.args, out: m[1]}
				if st.platform == "$BUILDPLATFORM" || st.platform == "${BUILDPLATFORM}" {
					bad("line %d: the preload libraries are built on $BUILDPLATFORM: the C compiler builds for its own machine, so an image for another architecture would carry libraries it cannot load; build them in a stage of the target platform", in.line)
				}
				if !copied {
					bad("line %d: make -C preload before the stage copies preload/", in.line)
				}
				for _, pkg := range []string{"gcc", "make", "musl-tools"} {
					if !slices.Contains(installed, pkg) {
						bad("line %d: make -C preload without %s installed before it", in.line, pkg)
					}
				}
			}
		}
	}
	if b.run == "" {
		bad("no build stage runs make -C preload OUT=DIR: the image would carry no preload library")
		return b, errs
	}
	if b.stage == "" {
		bad("the stage that builds the preload libraries has no AS name for COPY --from")
	}
	final := df.stages[len(df.stages)-1]
	for _, lib := range libs {
		want := path.Join(b.out, lib)
		found := false
		for _, in := range final.instrs {
			from, _ := in.flag("from")
			f := strings.Fields(in.args)
			if in.cmd != "COPY" || from != b.stage || len(f) < 2 || !slices.Contains(f[:len(f)-1], want) {
				continue
			}
			found = true
			if dst := f[len(f)-1]; dst != "/" {
				bad("line %d: %s copied to %s: want / (beside /toad, where --preload-library-dir finds it)", in.line, lib, dst)
			}
		}
		if !found {
			bad("the final stage does not COPY --from=%s %s", b.stage, want)
		}
	}
	return b, errs
}

// checkPreloadLibrary returns why the shared object at p is not a preload
// library the image can carry: it must be a shared object for the
// machine, need nothing but the C library, and export the hooks.
func checkPreloadLibrary(p string) []error {
	f, err := elf.Open(p)
	if err != nil {
		return []error{fmt.Errorf("%s: %w", p, err)}
	}
	defer f.Close()
	var errs []error
	if f.Type != elf.ET_DYN {
		errs = append(errs, fmt.Errorf("%s: ELF type %v, want a shared object", p, f.Type))
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return append(errs, fmt.Errorf("%s: read dynamic section: %w", p, err))
	}
	for _, l := range libs {
		if l != "libc.so" && l != "libc.so.6" && !strings.HasPrefix(l, "ld-linux") {
			errs = append(errs, fmt.Errorf("%s: needs %s: the library must need libc alone", p, l))
		}
	}
	syms, err := f.DynamicSymbols()
	if err != nil {
		return append(errs, fmt.Errorf("%s: read dynamic symbols: %w", p, err))
	}
	exported := map[string]bool{}
	for _, s := range syms {
		if s.Section != elf.SHN_UNDEF && elf.ST_TYPE(s.Info) == elf.STT_FUNC {
			exported[s.Name] = true
		}
	}
	for _, hook := range []string{"accept", "accept4", "getpeername", "getsockopt"} {
		if !exported[hook] {
			errs = append(errs, fmt.Errorf("%s: does not export %s", p, hook))
		}
	}
	return errs
}

func loadPreload(t *testing.T) (*dockerfile, []string) {
	t.Helper()
	df, err := parseDockerfile(readFile(t, dockerfilePath))
	if err != nil {
		t.Fatalf("parse Dockerfile: %v", err)
	}
	libs, err := preloadLibraries(readFile(t, preloadMakefile))
	if err != nil {
		t.Fatal(err)
	}
	return df, libs
}

// TestDockerfilePreload checks the image's preload stage, then runs its
// build command on a copy of what the stage copies, as the image builder
// would, and checks the libraries it writes.
func TestDockerfilePreload(t *testing.T) {
	df, libs := loadPreload(t)
	b, errs := checkPreloadImage(df, libs)
	for _, err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	for _, tool := range []string{"make", "cc", "musl-gcc"} {
		if _, err := exec.LookPath(tool); err != nil {
			requireTools(t, fmt.Sprintf("%s is not installed (Debian: make, gcc, musl-tools)", tool))
			return
		}
	}
	src := t.TempDir()
	if err := os.CopyFS(filepath.Join(src, "preload"), os.DirFS("../preload")); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	run := strings.ReplaceAll(b.run, "OUT="+b.out, "OUT="+out)
	cmd := exec.Command("sh", "-ec", run)
	cmd.Dir = src
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the stage's %q: %v\n%s", b.run, err, o)
	}
	for _, lib := range libs {
		for _, err := range checkPreloadLibrary(filepath.Join(out, lib)) {
			t.Error(err)
		}
	}
}

// requireTools skips a test that needs build tools, and fails it under CI,
// whose .ci/run installs them.
func requireTools(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s; CI must have it (.ci/run installs it)", why)
	}
	t.Skip(why)
}

// TestPreloadLibraries checks the libraries make build wrote to
// TOAD_BIN_DIR beside the commands.
func TestPreloadLibraries(t *testing.T) {
	dir := os.Getenv("TOAD_BIN_DIR")
	if dir == "" {
		t.Skip("TOAD_BIN_DIR is not set: make deploy-check builds into bin/ and sets it")
	}
	_, libs := loadPreload(t)
	for _, lib := range libs {
		for _, err := range checkPreloadLibrary(filepath.Join(dir, lib)) {
			t.Error(err)
		}
	}
}

// TestPreloadChecksFail breaks the Dockerfile's preload stage one way at a
// time and expects checkPreloadImage to say so.
func TestPreloadChecksFail(t *testing.T) {
	src := readFile(t, dockerfilePath)
	_, libs := loadPreload(t)
	tests := []struct {
		name, old, new, want string
	}{
		{"not built", "RUN make -C preload OUT=/out\n", "", "no build stage runs make -C preload"},
		{"build platform", "FROM debian:12 AS preload", "FROM --platform=$BUILDPLATFORM debian:12 AS preload", "built on $BUILDPLATFORM"},
		{"no musl", "make musl-tools", "make", "without musl-tools"},
		{"no sources", "COPY preload/ preload/\n", "", "before the stage copies preload/"},
		{"musl not copied", "/out/libtoad_preload.so /out/libtoad_preload_musl.so /", "/out/libtoad_preload.so /", "does not COPY --from=preload /out/libtoad_preload_musl.so"},
		{"elsewhere", "/out/libtoad_preload.so /out/libtoad_preload_musl.so /", "/out/libtoad_preload.so /out/libtoad_preload_musl.so /lib/", "want / (beside /toad"},
		{"no name", "FROM debian:12 AS preload", "FROM debian:12", "does not COPY --from="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(src, tt.old) {
				t.Fatalf("the Dockerfile no longer contains %q: update this test", tt.old)
			}
			df, err := parseDockerfile(strings.Replace(src, tt.old, tt.new, 1))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			_, errs := checkPreloadImage(df, libs)
			wantError(t, errs, tt.want)
		})
	}
	t.Run("library needing more than libc", func(t *testing.T) {
		// The test binary itself needs libc and, under -race, more; a Go
		// static binary is no shared object and exports no hooks.
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		if errs := checkPreloadLibrary(self); len(errs) == 0 {
			t.Error("the test binary passed as a preload library")
		}
	})
}
