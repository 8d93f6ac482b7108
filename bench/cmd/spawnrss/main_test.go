package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// TestOwnPeak: a child started by a large process reports that process's
// peak as its own; started through spawnrss, its own (spawnrss's few
// megabytes at most).
func TestOwnPeak(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the kernel behaviour measured is Linux's")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	bin := filepath.Join(t.TempDir(), "spawnrss")
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	big := make([]byte, 256<<20)
	for i := range big {
		big[i] = 1
	}
	direct, err := run([]string{bin}, "", false) // any short-lived child: this one exits 2
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-stdout", "/dev/null", "--", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	var spawned Result
	if err := json.Unmarshal(out, &spawned); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	runtime.KeepAlive(big)
	if direct.MaxRSS < 256<<20 {
		t.Logf("started directly, the child's peak is %d MiB: this kernel does not pass the parent's peak on", direct.MaxRSS>>20)
	}
	if spawned.MaxRSS <= 0 || spawned.MaxRSS > 32<<20 {
		t.Errorf("through spawnrss, a child's peak of %d MiB, want its own few megabytes (the test process holds 256 MiB)", spawned.MaxRSS>>20)
	}
	if spawned.WallNs <= 0 || spawned.Exit != 2 {
		t.Errorf("result %+v, want a time and the child's exit status 2", spawned)
	}
}
