// Command spawnrss runs a command and prints, as one JSON object, what it
// took as a process: its elapsed time from start to exit, its user and
// system time, and its peak resident memory, all from wait4.
//
//	spawnrss [-stdout FILE | -count] -- COMMAND [ARG...]
//
// It exists because Linux counts, in a child's peak resident memory, the
// peak of the process it was started from: at exec the kernel folds the
// high-water mark of the image the child leaves into its own, and Go
// starts children sharing its memory until they exec. A benchmark harness
// that holds hundreds of megabytes would report that much for every
// command it times. spawnrss stays a few megabytes, and is that floor.
//
// The command's standard output goes to FILE, or with -count is read and
// its lines and bytes counted; its standard error is spawnrss's.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Result is what spawnrss prints.
type Result struct {
	WallNs, UserNs, SysNs int64
	// MaxRSS is the peak resident memory in bytes.
	MaxRSS int64
	// Lines and Bytes count the command's output with -count.
	Lines, Bytes int64
	// Exit is the command's exit status, -1 when a signal ended it.
	Exit int
}

func main() {
	stdout := flag.String("stdout", "", "write the command's standard output to `file`")
	count := flag.Bool("count", false, "read the command's standard output and count its lines and bytes")
	flag.Parse()
	if flag.NArg() == 0 || *stdout != "" && *count {
		fmt.Fprintln(os.Stderr, "usage: spawnrss [-stdout FILE | -count] -- COMMAND [ARG...]")
		os.Exit(2)
	}
	res, err := run(flag.Args(), *stdout, *count)
	if err != nil {
		fmt.Fprintln(os.Stderr, "spawnrss:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(res)
}

func run(argv []string, stdout string, count bool) (Result, error) {
	var res Result
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = os.Stderr
	var out io.ReadCloser
	switch {
	case stdout != "":
		f, err := os.Create(stdout)
		if err != nil {
			return res, err
		}
		defer f.Close()
		cmd.Stdout = f
	case count:
		var err error
		if out, err = cmd.StdoutPipe(); err != nil {
			return res, err
		}
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, err
	}
	if out != nil {
		buf := make([]byte, 1<<20)
		for {
			n, err := out.Read(buf)
			res.Lines += int64(bytes.Count(buf[:n], []byte{'\n'}))
			res.Bytes += int64(n)
			if err != nil {
				break
			}
		}
	}
	err := cmd.Wait()
	res.WallNs = time.Since(start).Nanoseconds()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return res, err
	}
	ps := cmd.ProcessState
	res.Exit = ps.ExitCode()
	res.UserNs, res.SysNs = ps.UserTime().Nanoseconds(), ps.SystemTime().Nanoseconds()
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		res.MaxRSS = int64(ru.Maxrss) << 10 // KiB on Linux
	}
	return res, nil
}
