package journal

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/toad-project/toad/correlate"
)

// Environment of the child process TestCrash runs.
const (
	crashDirEnv  = "TOAD_JOURNAL_CRASH_DIR"
	crashBaseEnv = "TOAD_JOURNAL_CRASH_BASE"
	// crashSteps bounds a child's steps; each child's connections are
	// base to base+crashSteps.
	crashSteps = 4000
)

// TestCrashChild is the process TestCrash kills: it opens the journal in
// its directory, runs the workload from its base and, after each Flush,
// says on stdout which step is durable. Run directly, it does nothing.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		return
	}
	base, err := strconv.Atoi(os.Getenv(crashBaseEnv))
	if err != nil {
		t.Fatal(err)
	}
	tab, err := correlate.New(tableCfg)
	if err != nil {
		t.Fatal(err)
	}
	j, _, err := Open(dir, tab, Config{CompactMin: 8 << 10, Now: noClock})
	if err != nil {
		t.Fatal(err)
	}
	for n := range crashSteps {
		stepFrom(tab, base, n)
		if n%20 == 19 {
			if err := j.Flush(); err != nil {
				t.Fatal(err)
			}
			fmt.Printf("durable %d\n", n)
		}
	}
	// Done before the kill (the parent fell behind reading): wait for it,
	// as a process that runs on would.
	fmt.Printf("done\n")
	select {}
}

// TestCrash kills a process writing a journal under load with SIGKILL at
// random moments, again and again on the same directory: after each kill,
// every step the process reported durable is recovered, nothing closed
// before the kill comes back open, and no entry is one the process never
// held.
func TestCrash(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	prev := map[correlate.Key]correlate.Entry{}
	const kills = 12
	for k := range kills {
		base := k * crashSteps
		cmd := exec.Command(exe, "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashBaseEnv+"="+strconv.Itoa(base))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		durable, lines := -1, 0
		want := 1 + rng.IntN(40)
		for lines < want && sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "durable "); ok {
				durable, _ = strconv.Atoi(d)
				lines++
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		// Lines already written before the kill were durable too.
		finished := false
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "durable "); ok {
				durable, _ = strconv.Atoi(d)
				lines++
			}
			finished = finished || sc.Text() == "done"
		}
		if finished {
			t.Logf("kill %d: the child had run all its steps when it was killed", k)
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("kill %d: the child was not killed (%v): it failed:\n%s", k, err, stderr.String())
		}
		t.Logf("kill %d: after %d durable steps, the last durable step %d", k, want, durable)
		if lines < want {
			t.Fatalf("kill %d: the child ended after %d durable steps, before the kill:\n%s", k, lines, stderr.String())
		}
		got, _ := recovered(t, copyDir(t, dir), expiredAt(base, durable))
		g := entries(got)
		checkCrash(t, k, base, durable, prev, g)
		prev = g
	}
}

// checkCrash checks what recovery found after the kill of the child that
// ran from base and reported step durable: against a table that ran the
// same steps, every connection of the child is as it was after step
// durable or as a later step made it; every entry of an earlier child is
// as it was after the previous kill, or gone if it was closing (expired
// since); nothing else is there.
func checkCrash(t *testing.T, k, base, durable int, prev, got map[correlate.Key]correlate.Entry) {
	t.Helper()
	type state struct {
		e  correlate.Entry
		ok bool
	}
	type change struct {
		n int // the step
		s state
	}
	hist := map[correlate.Key][]change{} // the states after the steps that changed each key
	atDurable := map[correlate.Key]state{}
	ref := newTable(t, tableCfg)
	var keys []correlate.Key
	for n := range crashSteps {
		stepFrom(ref, base, n)
		keys = append(keys, keyN(base+n))
		check := keys
		if n%50 != 0 {
			check = nil
			for _, c := range touched(base, n) {
				check = append(check, keyN(c))
			}
		}
		for _, key := range check {
			e, ok := ref.Get(key)
			h := hist[key]
			if len(h) == 0 || h[len(h)-1].s != (state{e, ok}) {
				hist[key] = append(h, change{n, state{e, ok}})
			}
		}
		if n == durable {
			for _, key := range keys {
				e, ok := ref.Get(key)
				atDurable[key] = state{e, ok}
			}
		}
	}
	// allowed: the state after step durable, or any state the key went
	// through after it.
	allowed := func(key correlate.Key, s state) bool {
		if s == atDurable[key] {
			return true
		}
		for _, c := range hist[key] {
			if c.n > durable && c.s == s {
				return true
			}
		}
		return false
	}
	mine := map[correlate.Key]bool{}
	for _, key := range keys {
		mine[key] = true
		e, ok := got[key]
		if !allowed(key, state{e, ok}) {
			t.Fatalf("kill %d (durable step %d): %v recovered as %+v (held %v); after the durable step it was %+v (held %v)",
				k, durable, key, e, ok, atDurable[key].e, atDurable[key].ok)
		}
	}
	for key, e := range got {
		if mine[key] {
			continue
		}
		p, ok := prev[key]
		if !ok {
			t.Fatalf("kill %d: %v recovered as %+v, an entry no child held", k, key, e)
		}
		if e != p {
			t.Fatalf("kill %d: %v of an earlier child recovered as %+v, was %+v", k, key, e, p)
		}
	}
	for key, p := range prev {
		if _, ok := got[key]; !ok && !mine[key] && p.State != correlate.StateClosing {
			t.Fatalf("kill %d: %v of an earlier child, open, lost", k, key)
		}
	}
}
