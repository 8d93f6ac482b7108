package deploy

import (
	"errors"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// requireRoot skips t, or fails it under CI (CI=true), unless the process is
// root and each named command is on PATH.
func requireRoot(t *testing.T, commands ...string) {
	t.Helper()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "needs root (setcap, changing user): run with sudo, or as root in CI"
	}
	for _, c := range commands {
		if _, err := exec.LookPath(c); err != nil && reason == "" {
			reason = "needs " + c + " on PATH (Debian: apt-get install libcap2-bin)"
		}
	}
	if reason == "" {
		return
	}
	if v := os.Getenv("CI"); v != "" && v != "0" && v != "false" {
		t.Fatalf("privileged test cannot run under CI: %s", reason)
	}
	t.Skip(reason)
}

// execDir returns a directory that user 65532 can execute files from and
// where file capabilities take effect.
func execDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for d := filepath.Dir(dir); d != "/"; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm()&0o001 == 0 {
			t.Fatalf("user 65532 cannot reach %s: set TMPDIR to a directory under world-searchable ones", dir)
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	const stNosuid = 0x2
	if st.Flags&stNosuid != 0 {
		t.Fatalf("%s is on a nosuid mount, where file capabilities are ignored: set TMPDIR elsewhere", dir)
	}
	return dir
}

func goBuild(t *testing.T, dir, out, pkg string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

func setcap(t *testing.T, file string) {
	t.Helper()
	if b, err := exec.Command("setcap", "cap_net_raw+ep", file).CombinedOutput(); err != nil {
		t.Fatalf("setcap: %v\n%s", err, b)
	}
}

// launched is how a program ran under capprobe launch.
type launched int

const (
	ranOK        launched = iota // exit status 0: the probe opened its socket
	socketDenied                 // exit status 1: the probe could not
	execRefused                  // exit status 126: the kernel refused to execute the program
	ranOther                     // any other exit status: it ran
)

func (l launched) String() string {
	return [...]string{"socket opened", "socket denied", "exec refused", "ran"}[l]
}

// launch runs prog the way a runtime starts a container's process, with
// capprobe launch, and classifies the outcome; it also returns the output.
func launch(t *testing.T, launcher string, flags []string, prog ...string) (launched, string) {
	t.Helper()
	args := append([]string{"launch"}, flags...)
	cmd := exec.Command(launcher, append(args, prog...)...)
	b, err := cmd.CombinedOutput()
	out := strings.TrimSpace(string(b))
	var ee *exec.ExitError
	switch {
	case err == nil:
		return ranOK, out
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return socketDenied, out
	case errors.As(err, &ee) && ee.ExitCode() == 126:
		return execRefused, out
	case errors.As(err, &ee):
		return ranOther, out
	}
	t.Fatalf("capprobe launch: %v\n%s", err, out)
	return 0, ""
}

// TestCapabilityOptions runs, on this kernel, the two ways deploy/README.md
// gives toad CAP_NET_RAW, and the ways they break, with the process set up
// as runc sets up a container's: bounding set from drop/add, user, the
// permitted set the runtime hands over, no_new_privs from
// allowPrivilegeEscalation: false.
func TestCapabilityOptions(t *testing.T) {
	requireRoot(t, "setcap")
	dir := execDir(t)
	launcher := filepath.Join(dir, "launcher")
	goBuild(t, ".", launcher, "./testdata/capprobe")
	withCap := filepath.Join(dir, "probe-filecap")
	goBuild(t, ".", withCap, "./testdata/capprobe")
	setcap(t, withCap)
	plain := filepath.Join(dir, "probe")
	goBuild(t, ".", plain, "./testdata/capprobe")

	nonRoot := []string{"-uid", "65532", "-gid", "65532"}
	tests := []struct {
		name  string
		flags []string
		prog  string
		want  launched
	}{
		{"non-root with the file capability, escalation allowed, runtime clears permitted (Docker)",
			slices.Concat(nonRoot, []string{"-bounding", "net_raw", "-permitted", ""}), withCap, ranOK},
		{"non-root with the file capability, escalation allowed, runtime keeps permitted (containerd, CRI-O)",
			slices.Concat(nonRoot, []string{"-bounding", "net_raw", "-permitted", "net_raw"}), withCap, ranOK},
		{"non-root with the file capability, no_new_privs, runtime clears permitted (Docker)",
			slices.Concat(nonRoot, []string{"-bounding", "net_raw", "-permitted", "", "-nnp"}), withCap, socketDenied},
		{"non-root with the file capability, no_new_privs, runtime keeps permitted (containerd, CRI-O)",
			slices.Concat(nonRoot, []string{"-bounding", "net_raw", "-permitted", "net_raw", "-nnp"}), withCap, ranOK},
		{"non-root with the file capability, drop ALL without add NET_RAW",
			slices.Concat(nonRoot, []string{"-bounding", "", "-permitted", ""}), withCap, execRefused},
		{"non-root without the file capability",
			slices.Concat(nonRoot, []string{"-bounding", "net_raw", "-permitted", "net_raw"}), plain, socketDenied},
		{"root without the file capability, no_new_privs",
			[]string{"-bounding", "net_raw", "-permitted", "net_raw", "-nnp"}, plain, ranOK},
		{"root with the file capability, no_new_privs",
			[]string{"-bounding", "net_raw", "-permitted", "net_raw", "-nnp"}, withCap, ranOK},
		{"root, drop ALL without add NET_RAW",
			[]string{"-bounding", "", "-permitted", "", "-nnp"}, plain, socketDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, out := launch(t, launcher, tt.flags, tt.prog); got != tt.want {
				t.Errorf("got %v (%q), want %v", got, out, tt.want)
			}
		})
	}
}

// TestImageBuildStage runs the Dockerfile's go build and setcap commands on
// this machine, with the build stage's output directory moved to a temporary
// one, and checks what they produce: static binaries, and a toad that carries
// cap_net_raw+ep and starts as the sidecar's non-root user with only NET_RAW
// in its bounding set (and does not without it).
func TestImageBuildStage(t *testing.T) {
	requireRoot(t, "setcap", "getcap")
	if len(commands(t)) == 0 {
		t.Skip("no commands under cmd/ yet")
	}
	df, err := parseDockerfile(readFile(t, dockerfilePath))
	if err != nil {
		t.Fatal(err)
	}
	goVersion, err := goDirective(readFile(t, mainGoMod))
	if err != nil {
		t.Fatal(err)
	}
	if _, errs := checkDockerfile(df, goVersion); len(errs) > 0 {
		t.Fatalf("the Dockerfile fails its checks (see TestDockerfile): %v", errs)
	}
	var runs []string
	outDir := ""
	for _, st := range df.stages[:len(df.stages)-1] {
		for _, in := range st.instrs {
			if in.cmd != "RUN" || !(strings.Contains(in.args, "go build") || strings.Contains(in.args, "setcap ")) {
				continue
			}
			if strings.Contains(in.args, "go build") {
				if m := goBuildOut.FindStringSubmatch(in.args); m != nil {
					outDir = path.Clean(m[1])
				}
			}
			runs = append(runs, in.args)
		}
	}
	if outDir == "" || len(runs) < 2 {
		t.Fatalf("found no go build -o <dir>/ and setcap in the build stage: got %q", runs)
	}

	dir := execDir(t)
	for _, run := range runs {
		run = strings.ReplaceAll(run, outDir+"/", dir+"/")
		cmd := exec.Command("sh", "-ec", run)
		cmd.Dir = ".." // the build context
		cmd.Env = append(os.Environ(), "TARGETOS=linux", "TARGETARCH="+runtime.GOARCH, "VERSION=test")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", run, err, out)
		}
	}

	toad := filepath.Join(dir, "toad")
	for _, bin := range []string{toad, filepath.Join(dir, "toactl")} {
		for _, err := range checkStatic(bin) {
			t.Error(err)
		}
	}
	out, err := exec.Command("getcap", toad).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "cap_net_raw=ep") {
		t.Fatalf("getcap %s: got %q (%v), want cap_net_raw=ep", toad, out, err)
	}

	launcher := filepath.Join(dir, "launcher")
	goBuild(t, ".", launcher, "./testdata/capprobe")
	sidecar := []string{"-uid", "65532", "-gid", "65532", "-bounding", "net_raw", "-permitted", ""}
	if got, out := launch(t, launcher, sidecar, toad, "help"); got == execRefused {
		t.Errorf("toad as the sidecar's user with NET_RAW bounded: got %v (%q), want it to run", got, out)
	}
	dropAll := []string{"-uid", "65532", "-gid", "65532", "-bounding", "", "-permitted", ""}
	if got, out := launch(t, launcher, dropAll, toad, "help"); got != execRefused {
		t.Errorf("toad as the sidecar's user without NET_RAW bounded: got %v (%q), want %v: is the file capability there?", got, out, execRefused)
	}
}
