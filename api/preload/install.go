package preload

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Libraries are the file names of the preload library, for glibc and for
// musl, as make build writes them beside the commands and the image
// carries them beside /toad.
var Libraries = []string{"libtoad_preload.so", "libtoad_preload_musl.so"}

// InstallLibraries copies the libraries of Libraries from directory from
// into directory to, where an application container that shares it (a
// Kubernetes emptyDir) can load them with LD_PRELOAD. Each file is
// written under a temporary name and renamed, so that a program starting
// meanwhile never loads half a library; the copies are mode 0644. It
// returns the paths written.
func InstallLibraries(from, to string) ([]string, error) {
	if fi, err := os.Stat(to); err != nil {
		return nil, err
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", to)
	}
	var out []string
	for _, name := range Libraries {
		dst := filepath.Join(to, name)
		if err := copyFile(filepath.Join(from, name), dst); err != nil {
			return out, err
		}
		out = append(out, dst)
	}
	return out, nil
}

func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = io.Copy(tmp, in); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err = tmp.Chmod(0o644); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), dst); err != nil {
		return errors.Join(err, os.Remove(tmp.Name()))
	}
	return nil
}
