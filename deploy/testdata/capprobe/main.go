// Command capprobe checks how a container's capability settings reach a
// program, on the running kernel.
//
//	capprobe
//
// opens an AF_PACKET socket, the operation CAP_NET_RAW guards and toad's
// capture starts with, and prints "ok" (exit status 0) or the error (1).
//
//	capprobe launch [-uid N] [-gid N] [-bounding net_raw] [-permitted net_raw] [-nnp] PROGRAM [ARG...]
//
// run as root, sets up its thread the way runc sets up a container's first
// process (bounding set, user and groups, permitted and effective sets,
// no_new_privs), then executes PROGRAM. It exits 126 when the kernel refuses
// the execution.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

const (
	capNetRaw = 13

	prCapbsetDrop  = 24
	prSetKeepcaps  = 8
	prSetNoNewPriv = 38

	linuxCapabilityVersion3 = 0x20080522
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "launch" {
		if err := launch(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "capprobe launch:", err)
			os.Exit(126)
		}
		return
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, 0)
	if err != nil {
		fmt.Println("socket:", err)
		os.Exit(1)
	}
	syscall.Close(fd)
	fmt.Println("ok")
}

// capSet parses "" or "net_raw" into a capability mask.
func capSet(s string) (uint64, error) {
	switch s {
	case "":
		return 0, nil
	case "net_raw":
		return 1 << capNetRaw, nil
	}
	return 0, fmt.Errorf("capability set %q: want \"\" or net_raw", s)
}

func launch(args []string) error {
	fs := flag.NewFlagSet("launch", flag.ContinueOnError)
	uid := fs.Int("uid", 0, "user to run as")
	gid := fs.Int("gid", 0, "group to run as")
	bounding := fs.String("bounding", "net_raw", "bounding set: \"\" or net_raw")
	permitted := fs.String("permitted", "", "permitted and effective sets before exec: \"\" or net_raw")
	nnp := fs.Bool("nnp", false, "set no_new_privs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("no program")
	}
	bset, err := capSet(*bounding)
	if err != nil {
		return err
	}
	perm, err := capSet(*permitted)
	if err != nil {
		return err
	}

	// Credentials are per thread: set them on this one and exec from it.
	runtime.LockOSThread()

	last, err := lastCap()
	if err != nil {
		return err
	}
	for c := 0; c <= last; c++ {
		if bset&(1<<c) != 0 {
			continue
		}
		if err := prctl(prCapbsetDrop, uintptr(c)); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := prctl(prSetKeepcaps, 1); err != nil {
		return fmt.Errorf("keep capabilities: %w", err)
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETGROUPS, 0, 0, 0); e != 0 {
		return fmt.Errorf("setgroups: %w", e)
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESGID, uintptr(*gid), uintptr(*gid), uintptr(*gid)); e != 0 {
		return fmt.Errorf("setresgid: %w", e)
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, uintptr(*uid), uintptr(*uid), uintptr(*uid)); e != 0 {
		return fmt.Errorf("setresuid: %w", e)
	}
	if err := capset(perm); err != nil {
		return err
	}
	if *nnp {
		if err := prctl(prSetNoNewPriv, 1); err != nil {
			return fmt.Errorf("no_new_privs: %w", err)
		}
	}
	prog := fs.Arg(0)
	if err := syscall.Exec(prog, fs.Args(), os.Environ()); err != nil {
		return fmt.Errorf("exec %s: %w", prog, err)
	}
	return nil
}

func lastCap() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func prctl(option, arg uintptr) error {
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, option, arg, 0, 0, 0, 0); e != 0 {
		return e
	}
	return nil
}

// capset sets this thread's permitted and effective sets to mask and empties
// its inheritable set.
func capset(mask uint64) error {
	hdr := struct {
		version uint32
		pid     int32
	}{linuxCapabilityVersion3, 0}
	var data [2]struct {
		effective, permitted, inheritable uint32
	}
	for i := range data {
		word := uint32(mask >> (32 * i))
		data[i].effective, data[i].permitted = word, word
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("capset: %w", e)
	}
	return nil
}
