package deploy

import (
	"path"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// preloadLibs are the library files toad serve --preload-library-dir
// copies, for glibc and for musl.
var preloadLibs = []string{"libtoad_preload.so", "libtoad_preload_musl.so"}

func envValue(c *corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// checkPreloadClient checks an application container that loads the
// preload library: toad copies it into an emptyDir at start, the
// application loads it from there with LD_PRELOAD, and reaches toad's
// preload socket at the path the library is told, through a group that
// the socket's mode 0660 admits.
func checkPreloadClient(spec *corev1.PodSpec, toad, app *corev1.Container, bad func(string, ...any)) {
	// The library, copied by toad into a volume both mount.
	dir, err := setting(toad, "preload-library-dir")
	if err != nil {
		bad("%v", err)
		return
	}
	preload := envValue(app, "LD_PRELOAD")
	if dir == "" {
		bad("container %s sets LD_PRELOAD %s, but toad copies no library: set TOAD_PRELOAD_LIBRARY_DIR on a volume both mount", app.Name, preload)
		return
	}
	// The files toad writes are what must be on a writable volume.
	libVol := checkFileVolume(spec, toad, "TOAD_PRELOAD_LIBRARY_DIR", path.Join(dir, preloadLibs[0]), bad)
	if libVol != nil && libVol.EmptyDir == nil {
		bad("library volume %s: want an emptyDir that toad fills at start", libVol.Name)
	}
	if tm := mountFor(toad, path.Join(dir, preloadLibs[0])); tm != nil && tm.MountPath != dir {
		bad("TOAD_PRELOAD_LIBRARY_DIR %s is below volume %s's mount %s: give the mount path itself", dir, tm.Name, tm.MountPath)
	}
	var loaded []string
	for _, p := range strings.FieldsFunc(preload, func(r rune) bool { return r == ':' || r == ' ' }) {
		if slices.Contains(preloadLibs, path.Base(p)) {
			loaded = append(loaded, p)
		}
	}
	if len(loaded) != 1 {
		bad("container %s: LD_PRELOAD %q: want one of %v", app.Name, preload, preloadLibs)
	}
	for _, p := range loaded {
		am := mountFor(app, p)
		switch {
		case am == nil || libVol == nil || am.Name != libVol.Name:
			bad("container %s: LD_PRELOAD %s is not on the volume toad copies the library into", app.Name, p)
		case path.Dir(p) != am.MountPath:
			bad("container %s: LD_PRELOAD %s: toad copies the library to the top of the volume, mounted at %s", app.Name, p, am.MountPath)
		}
	}

	// The socket: the library's TOAD_PRELOAD_SOCKET (or its default) is
	// toad's, on the same volume at the same path.
	socket, err := setting(toad, "preload-socket")
	if err != nil {
		bad("%v", err)
		return
	}
	if socket == "" {
		bad("container %s loads the preload library, but toad serves no preload socket (TOAD_PRELOAD_SOCKET is empty)", app.Name)
		return
	}
	checkFileVolume(spec, toad, "TOAD_PRELOAD_SOCKET", socket, bad)
	want := envValue(app, "TOAD_PRELOAD_SOCKET")
	if want == "" {
		want = settings["preload-socket"] // the library's default
	}
	if want != socket {
		bad("container %s: the library asks %s, but toad listens on %s", app.Name, want, socket)
	}
	tm, am := mountFor(toad, socket), mountFor(app, want)
	switch {
	case tm == nil:
	case am == nil || am.Name != tm.Name:
		bad("container %s does not mount the preload socket's volume %s", app.Name, tm.Name)
	case am.MountPath != tm.MountPath:
		bad("container %s mounts the preload socket's volume at %s, toad at %s: use the same path", app.Name, am.MountPath, tm.MountPath)
	}

	// The socket is 0660 and toad's group unless TOAD_PRELOAD_SOCKET_GROUP
	// names another: the application must be in that group.
	group, err := setting(toad, "preload-socket-group")
	if err != nil {
		bad("%v", err)
		return
	}
	if group == "" && toad.SecurityContext != nil && toad.SecurityContext.RunAsGroup != nil {
		group = strconvI(*toad.SecurityContext.RunAsGroup)
	}
	var groups []string
	if sc := spec.SecurityContext; sc != nil {
		if sc.FSGroup != nil {
			groups = append(groups, strconvI(*sc.FSGroup))
		}
		for _, g := range sc.SupplementalGroups {
			groups = append(groups, strconvI(g))
		}
	}
	if sc := app.SecurityContext; sc != nil && sc.RunAsGroup != nil {
		groups = append(groups, strconvI(*sc.RunAsGroup))
	}
	if group != "" && !slices.Contains(groups, group) {
		bad("container %s is not in group %s of the preload socket (mode 0660): set fsGroup or supplementalGroups", app.Name, group)
	}
}

func strconvI(n int64) string { return strconv.FormatInt(n, 10) }
