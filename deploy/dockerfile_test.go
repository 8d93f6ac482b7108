package deploy

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const (
	dockerfilePath   = "../Dockerfile"
	dockerignorePath = "../.dockerignore"
	mainGoMod        = "../go.mod"
)

// instruction is one Dockerfile instruction with its continuation lines
// joined and its comments removed.
type instruction struct {
	line  int      // first line, 1-based
	cmd   string   // upper-cased: FROM, RUN, COPY...
	flags []string // leading --name=value flags
	args  string   // the rest
}

// stage is a FROM and the instructions that follow it.
type stage struct {
	from     instruction
	image    string // the base image reference
	name     string // the AS name, or ""
	platform string // the --platform flag value, or ""
	instrs   []instruction
}

type dockerfile struct {
	stages []stage
}

// parseDockerfile splits a Dockerfile into stages of instructions. It
// understands comments, parser directives and backslash continuations, which
// is all this repository's Dockerfile uses.
func parseDockerfile(src string) (*dockerfile, error) {
	var (
		df      dockerfile
		pending strings.Builder
		start   int
	)
	flush := func() error {
		text := strings.TrimSpace(pending.String())
		pending.Reset()
		if text == "" {
			return nil
		}
		in := parseInstruction(start, text)
		if in.cmd == "FROM" {
			st, err := parseFrom(in)
			if err != nil {
				return err
			}
			df.stages = append(df.stages, st)
			return nil
		}
		if len(df.stages) == 0 {
			if in.cmd == "ARG" {
				return nil // global build argument
			}
			return fmt.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
		}
		cur := &df.stages[len(df.stages)-1]
		cur.instrs = append(cur.instrs, in)
		return nil
	}
	sc := bufio.NewScanner(strings.NewReader(src))
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && pending.Len() == 0) {
			continue // comments (and parser directives) are dropped, also inside continuations
		}
		if pending.Len() == 0 {
			start = n
		}
		if cont, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); ok {
			pending.WriteString(cont)
			pending.WriteByte(' ')
			continue
		}
		pending.WriteString(line)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if pending.Len() > 0 {
		return nil, fmt.Errorf("line %d: continuation runs past the end of the file", start)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if len(df.stages) == 0 {
		return nil, errors.New("no FROM instruction")
	}
	return &df, nil
}

func parseInstruction(line int, text string) instruction {
	cmd, rest, _ := strings.Cut(text, " ")
	in := instruction{line: line, cmd: strings.ToUpper(cmd)}
	rest = strings.TrimSpace(rest)
	for strings.HasPrefix(rest, "--") {
		flag, more, _ := strings.Cut(rest, " ")
		in.flags = append(in.flags, flag)
		rest = strings.TrimSpace(more)
	}
	in.args = rest
	return in
}

func parseFrom(in instruction) (stage, error) {
	st := stage{from: in}
	for _, f := range in.flags {
		if v, ok := strings.CutPrefix(f, "--platform="); ok {
			st.platform = v
		}
	}
	fields := strings.Fields(in.args)
	switch {
	case len(fields) == 1:
	case len(fields) == 3 && strings.EqualFold(fields[1], "AS"):
		st.name = fields[2]
	default:
		return st, fmt.Errorf("line %d: cannot read FROM %q", in.line, in.args)
	}
	st.image = fields[0]
	return st, nil
}

func (in instruction) flag(name string) (string, bool) {
	for _, f := range in.flags {
		if v, ok := strings.CutPrefix(f, "--"+name+"="); ok {
			return v, true
		}
		if f == "--"+name {
			return "", true
		}
	}
	return "", false
}

// execForm decodes the JSON array form of ENTRYPOINT and CMD.
func (in instruction) execForm() ([]string, error) {
	var argv []string
	if err := json.Unmarshal([]byte(in.args), &argv); err != nil {
		return nil, fmt.Errorf("line %d: %s %s is not in exec (JSON array) form", in.line, in.cmd, in.args)
	}
	return argv, nil
}

// imageRef splits an image reference into repository, tag and digest.
func imageRef(ref string) (repo, tag, digest string) {
	repo, digest, _ = strings.Cut(ref, "@")
	// A colon after the last slash separates the tag; one before it belongs
	// to a registry host:port.
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo, tag = repo[:i], repo[i+1:]
	}
	return repo, tag, digest
}

// checkImagePinned reports a reference that names no version or :latest.
func checkImagePinned(ref string) error {
	_, tag, digest := imageRef(ref)
	switch {
	case tag == "" && digest == "":
		return fmt.Errorf("image %s has no tag or digest: pin a version", ref)
	case tag == "latest":
		return fmt.Errorf("image %s uses :latest: pin a version", ref)
	}
	return nil
}

// goDirective returns the major.minor Go version of a go.mod file.
func goDirective(gomod string) (string, error) {
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)
	if m == nil {
		return "", errors.New("go.mod has no go directive")
	}
	return m[1], nil
}

// imageUser is what the final stage's USER sets.
type imageUser struct {
	uid, gid int64
}

// checkDockerfile returns every broken invariant of the image recipe, and the
// user the image runs as.
func checkDockerfile(df *dockerfile, goVersion string) (imageUser, []error) {
	var (
		errs []error
		user = imageUser{uid: -1, gid: -1}
	)
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if len(df.stages) < 2 {
		bad("%d stage(s): want a build stage and a final stage", len(df.stages))
		return user, errs
	}
	for _, st := range df.stages {
		if err := checkImagePinned(st.image); err != nil {
			bad("line %d: %v", st.from.line, err)
		}
	}
	for _, st := range df.stages {
		for _, in := range st.instrs {
			if in.cmd == "ADD" && regexp.MustCompile(`(?i)(https?|git)://|git@`).MatchString(in.args) {
				bad("line %d: ADD of a remote URL: fetch it in a RUN with a checksum, or vendor it", in.line)
			}
		}
	}

	build := df.stages[:len(df.stages)-1]
	final := df.stages[len(df.stages)-1]

	// The build stage: the Go toolchain of go.mod, a static build, setcap.
	var (
		outDir     = ""
		buildStage = ""
		setcapDone = false
	)
	for _, st := range build {
		repo, tag, _ := imageRef(st.image)
		if repo != "golang" {
			continue
		}
		if !strings.HasPrefix(tag, goVersion) || (len(tag) > len(goVersion) && tag[len(goVersion)] != '.' && tag[len(goVersion)] != '-') {
			bad("line %d: build image %s does not match the go %s of go.mod", st.from.line, st.image, goVersion)
		}
		crossBuild := st.platform == "$BUILDPLATFORM" || st.platform == "${BUILDPLATFORM}"
		libcap := false
		var declared []string
		for _, in := range st.instrs {
			if in.cmd == "ARG" {
				for _, f := range strings.Fields(in.args) {
					name, _, _ := strings.Cut(f, "=")
					declared = append(declared, name)
				}
			}
			if in.cmd != "RUN" {
				continue
			}
			if strings.Contains(in.args, "libcap2-bin") {
				libcap = true
			}
			if strings.Contains(in.args, "go build") {
				buildStage = st.name
				outDir = checkGoBuild(in, crossBuild, bad)
				if crossBuild {
					for _, arg := range []string{"TARGETOS", "TARGETARCH"} {
						if !slices.Contains(declared, arg) {
							bad("line %d: the stage runs on $BUILDPLATFORM but declares no ARG %s before go build", in.line, arg)
						}
					}
				}
			}
			if strings.Contains(in.args, "setcap ") {
				if !libcap {
					bad("line %d: setcap before libcap2-bin is installed", in.line)
				}
				if outDir == "" {
					bad("line %d: setcap before the go build", in.line)
					continue
				}
				target := path.Join(outDir, "toad")
				if !regexp.MustCompile(`(^|\s|&&\s*)setcap\s+cap_net_raw\+ep\s+` + regexp.QuoteMeta(target) + `(\s|$)`).MatchString(in.args) {
					bad("line %d: want setcap cap_net_raw+ep %s, got %q", in.line, target, in.args)
					continue
				}
				setcapDone = true
			}
		}
	}
	switch {
	case outDir == "":
		bad("no build stage FROM golang:%s runs go build", goVersion)
	case buildStage == "":
		bad("the build stage has no AS name for COPY --from")
	case !setcapDone:
		bad("the build stage does not setcap cap_net_raw+ep on the toad binary")
	}

	// The final stage: distroless static, the binary copied with its file
	// capability, a numeric non-root user, exec-form entrypoint.
	if repo, _, _ := imageRef(final.image); !strings.HasPrefix(repo, "gcr.io/distroless/static") {
		bad("line %d: final base %s: want gcr.io/distroless/static-*", final.from.line, final.image)
	}
	var copied, entry, cmd bool
	for _, in := range final.instrs {
		switch in.cmd {
		case "RUN":
			bad("line %d: RUN in the final stage: distroless has no shell", in.line)
		case "ADD":
			bad("line %d: ADD in the final stage: use COPY --from the build stage", in.line)
		case "COPY":
			from, _ := in.flag("from")
			fields := strings.Fields(in.args)
			if outDir == "" || from != buildStage || len(fields) < 2 {
				continue
			}
			srcs, dst := fields[:len(fields)-1], fields[len(fields)-1]
			if !slices.Contains(srcs, path.Join(outDir, "toad")) {
				continue
			}
			copied = true
			if dst != "/" {
				bad("line %d: toad copied to %s: want /", in.line, dst)
			}
			if _, ok := in.flag("chown"); ok {
				bad("line %d: COPY --chown of toad: chown clears its file capability", in.line)
			}
			if _, ok := in.flag("link"); ok {
				bad("line %d: COPY --link of toad: keep the plain copy that preserves its file capability", in.line)
			}
		case "USER":
			u, err := parseUser(in.args)
			if err != nil {
				bad("line %d: %v", in.line, err)
				continue
			}
			user = u
		case "ENTRYPOINT":
			entry = true
			if argv, err := in.execForm(); err != nil {
				bad("%v", err)
			} else if !slices.Equal(argv, []string{"/toad"}) {
				bad("line %d: ENTRYPOINT %q: want [\"/toad\"]", in.line, argv)
			}
		case "CMD":
			cmd = true
			if argv, err := in.execForm(); err != nil {
				bad("%v", err)
			} else if !slices.Equal(argv, []string{"serve"}) {
				bad("line %d: CMD %q: want [\"serve\"]", in.line, argv)
			}
		}
	}
	if !copied && outDir != "" {
		bad("the final stage does not COPY --from=%s %s", buildStage, path.Join(outDir, "toad"))
	}
	if user.uid < 0 {
		bad("the final stage sets no numeric USER")
	}
	if !entry {
		bad("the final stage has no ENTRYPOINT")
	}
	if !cmd {
		bad("the final stage has no CMD")
	}
	return user, errs
}

// goBuildOut finds the -o argument of a go build command line.
var goBuildOut = regexp.MustCompile(`(?:^|\s)-o[= ](\S+)`)

// checkGoBuild checks the go build command line and returns its -o
// directory.
func checkGoBuild(in instruction, crossBuild bool, bad func(string, ...any)) string {
	args := in.args
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/toad", "./cmd/toactl"} {
		if !regexp.MustCompile(`(^|\s)` + regexp.QuoteMeta(want) + `(\s|$)`).MatchString(args) {
			bad("line %d: go build without %s", in.line, want)
		}
	}
	ld := regexp.MustCompile(`-ldflags[= ]"([^"]*)"`).FindStringSubmatch(args)
	if ld == nil {
		bad("line %d: go build without -ldflags \"-s -w ...\"", in.line)
	} else if f := strings.Fields(ld[1]); !slices.Contains(f, "-s") || !slices.Contains(f, "-w") {
		bad("line %d: -ldflags %q: want -s -w", in.line, ld[1])
	}
	if crossBuild {
		for _, want := range []string{"GOOS=$TARGETOS", "GOARCH=$TARGETARCH"} {
			if !strings.Contains(args, want) {
				bad("line %d: the stage runs on $BUILDPLATFORM but go build does not set %s", in.line, want)
			}
		}
	}
	m := goBuildOut.FindStringSubmatch(args)
	if m == nil || !strings.HasSuffix(m[1], "/") {
		bad("line %d: go build of two commands needs -o <dir>/", in.line)
		return ""
	}
	return path.Clean(m[1])
}

// parseUser reads USER uid[:gid]; names are refused because the kubelet
// cannot check runAsNonRoot against them.
func parseUser(s string) (imageUser, error) {
	u := imageUser{gid: -1}
	uid, gid, hasGID := strings.Cut(strings.TrimSpace(s), ":")
	var err error
	if u.uid, err = strconv.ParseInt(uid, 10, 32); err != nil {
		return imageUser{uid: -1, gid: -1}, fmt.Errorf("USER %s is not numeric: the kubelet cannot verify runAsNonRoot", s)
	}
	if hasGID {
		if u.gid, err = strconv.ParseInt(gid, 10, 32); err != nil {
			return imageUser{uid: -1, gid: -1}, fmt.Errorf("USER %s: group is not numeric", s)
		}
	}
	if u.uid == 0 {
		return imageUser{uid: -1, gid: -1}, fmt.Errorf("USER %s is root", s)
	}
	return u, nil
}

// checkDockerignore checks that the build context keeps what the build needs
// and leaves out the history, the build outputs and the deploy module.
func checkDockerignore(src string) []error {
	var errs []error
	var patterns []string
	for line := range strings.Lines(src) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		patterns = append(patterns, strings.TrimPrefix(path.Clean(line), "/"))
	}
	for _, need := range []string{"go.mod", "go.sum", "cmd/toad/main.go", "toa/parse.go"} {
		for _, p := range patterns {
			if strings.HasPrefix(p, "!") {
				continue
			}
			if ignoreMatches(p, need) {
				errs = append(errs, fmt.Errorf(".dockerignore pattern %q excludes %s, which the build needs", p, need))
			}
		}
	}
	for _, want := range []string{".git", "bin", "deploy"} {
		if !slices.Contains(patterns, want) {
			errs = append(errs, fmt.Errorf(".dockerignore does not exclude %s", want))
		}
	}
	return errs
}

// ignoreMatches reports whether a .dockerignore pattern excludes file: the
// pattern matches the file or one of its parent directories, with * and ?
// confined to one path element and ** spanning any number of them.
func ignoreMatches(pattern, file string) bool {
	var re strings.Builder
	re.WriteString("^")
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; {
		case strings.HasPrefix(pattern[i:], "**/"):
			re.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(pattern[i:], "**"):
			re.WriteString(".*")
			i++
		case c == '*':
			re.WriteString("[^/]*")
		case c == '?':
			re.WriteString("[^/]")
		default:
			re.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	re.WriteString("$")
	m, err := regexp.Compile(re.String())
	if err != nil {
		return false
	}
	for p := file; p != "." && p != "/"; p = path.Dir(p) {
		if m.MatchString(p) {
			return true
		}
	}
	return false
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// loadImage parses the repository's Dockerfile and checks it; the manifest
// tests use the user it runs as.
func loadImage(t *testing.T) (imageUser, []error) {
	t.Helper()
	goVersion, err := goDirective(readFile(t, mainGoMod))
	if err != nil {
		t.Fatal(err)
	}
	df, err := parseDockerfile(readFile(t, dockerfilePath))
	if err != nil {
		t.Fatalf("parse Dockerfile: %v", err)
	}
	user, errs := checkDockerfile(df, goVersion)
	return user, errs
}

func TestDockerfile(t *testing.T) {
	user, errs := loadImage(t)
	for _, err := range errs {
		t.Error(err)
	}
	if want := (imageUser{uid: 65532, gid: 65532}); user != want {
		t.Errorf("image user: got %d:%d, want %d:%d", user.uid, user.gid, want.uid, want.gid)
	}
}

func TestDockerignore(t *testing.T) {
	for _, err := range checkDockerignore(readFile(t, dockerignorePath)) {
		t.Error(err)
	}
}

// TestDockerfileChecksFail breaks the real Dockerfile one way at a time and
// expects checkDockerfile to say so.
func TestDockerfileChecksFail(t *testing.T) {
	src := readFile(t, dockerfilePath)
	goVersion, err := goDirective(readFile(t, mainGoMod))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		old, new string
		want     string // a substring of one of the errors
	}{
		{"cgo", "CGO_ENABLED=0", "CGO_ENABLED=1", "without CGO_ENABLED=0"},
		{"trimpath", "-trimpath", "", "without -trimpath"},
		{"strip", `-ldflags "-s -w`, `-ldflags "`, "want -s -w"},
		{"toactl", "./cmd/toactl", "", "without ./cmd/toactl"},
		{"cross build", "GOARCH=$TARGETARCH", "", "does not set GOARCH=$TARGETARCH"},
		{"setcap missing", "RUN setcap cap_net_raw+ep /out/toad && setcap -v cap_net_raw+ep /out/toad", "", "does not setcap"},
		{"setcap wrong cap", "setcap cap_net_raw+ep /out/toad &&", "setcap cap_net_admin+ep /out/toad &&", "want setcap cap_net_raw+ep /out/toad"},
		{"no libcap", "libcap2-bin", "ca-certificates", "before libcap2-bin"},
		{"go version", "golang:1.26 AS", "golang:1.25 AS", "does not match the go"},
		{"latest base", "golang:1.26 AS", "golang:latest AS", "uses :latest"},
		{"target args", "ARG TARGETARCH\n", "", "declares no ARG TARGETARCH"},
		{"untagged base", "golang:1.26 AS", "golang AS", "has no tag or digest"},
		{"not distroless", "gcr.io/distroless/static-debian12:nonroot", "debian:12", "want gcr.io/distroless/static"},
		{"named user", "USER 65532:65532", "USER nonroot", "not numeric"},
		{"root user", "USER 65532:65532", "USER 0:0", "is root"},
		{"no user", "USER 65532:65532", "", "no numeric USER"},
		{"chown", "COPY --from=build", "COPY --chown=65532:65532 --from=build", "chown clears"},
		{"not copied", "COPY --from=build /out/toad /out/toactl /", "COPY --from=build /out/toactl /", "does not COPY"},
		{"run in final", "EXPOSE 50052", "RUN ls /", "distroless has no shell"},
		{"remote add", "COPY go.mod go.sum ./", "ADD https://example.com/x.tgz /x.tgz", "remote URL"},
		{"shell entrypoint", `ENTRYPOINT ["/toad"]`, "ENTRYPOINT /toad", "exec (JSON array) form"},
		{"entrypoint", `ENTRYPOINT ["/toad"]`, `ENTRYPOINT ["/toactl"]`, `want ["/toad"]`},
		{"cmd", `CMD ["serve"]`, `CMD ["version"]`, `want ["serve"]`},
		{"single stage", "\nFROM debian:12 AS preload", "", "want a build stage and a final stage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(src, tt.old) {
				t.Fatalf("the Dockerfile no longer contains %q: update this test", tt.old)
			}
			broken := strings.Replace(src, tt.old, tt.new, 1)
			if tt.name == "single stage" {
				// The build stages go: the final stage alone is left.
				broken = broken[strings.Index(broken, "\nFROM gcr.io/distroless"):]
			}
			df, err := parseDockerfile(broken)
			if err != nil {
				if strings.Contains(err.Error(), tt.want) {
					return
				}
				t.Fatalf("parse: %v", err)
			}
			_, errs := checkDockerfile(df, goVersion)
			wantError(t, errs, tt.want)
		})
	}
}

// wantError fails t unless one of errs contains want.
func wantError(t *testing.T, errs []error, want string) {
	t.Helper()
	for _, err := range errs {
		if strings.Contains(err.Error(), want) {
			return
		}
	}
	t.Errorf("got errors %v, want one containing %q", errs, want)
}

func TestDockerignoreChecksFail(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"excludes go files", ".git\nbin\ndeploy\n**/*.go\n", `"**/*.go" excludes toa/parse.go`},
		{"excludes everything", "*\n", `"*" excludes go.mod`},
		{"excludes cmd", ".git\nbin\ndeploy\ncmd\n", `"cmd" excludes cmd/toad/main.go`},
		{"excludes a package", ".git\nbin\ndeploy\nto?\n", `"to?" excludes toa/parse.go`},
		{"keeps history", "bin\ndeploy\n", "does not exclude .git"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, checkDockerignore(tt.src), tt.want)
		})
	}
}

func TestImageRef(t *testing.T) {
	tests := []struct {
		ref, repo, tag, digest string
	}{
		{"golang:1.26", "golang", "1.26", ""},
		{"gcr.io/distroless/static-debian12:nonroot", "gcr.io/distroless/static-debian12", "nonroot", ""},
		{"localhost:5000/toad", "localhost:5000/toad", "", ""},
		{"localhost:5000/toad:1.2", "localhost:5000/toad", "1.2", ""},
		{"golang:1.26@sha256:abc", "golang", "1.26", "sha256:abc"},
		{"golang@sha256:abc", "golang", "", "sha256:abc"},
	}
	for _, tt := range tests {
		repo, tag, digest := imageRef(tt.ref)
		if repo != tt.repo || tag != tt.tag || digest != tt.digest {
			t.Errorf("imageRef(%q): got %q %q %q, want %q %q %q", tt.ref, repo, tag, digest, tt.repo, tt.tag, tt.digest)
		}
	}
}

// ldflagsVars returns the main.<name> variables the Dockerfile's go build
// sets with -X.
func ldflagsVars(df *dockerfile) []string {
	var names []string
	for _, st := range df.stages {
		for _, in := range st.instrs {
			if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
				continue
			}
			for _, m := range regexp.MustCompile(`-X[= ]main\.(\w+)=`).FindAllStringSubmatch(in.args, -1) {
				names = append(names, m[1])
			}
		}
	}
	return names
}

// packageVars returns the package-level variables declared in the non-test
// Go files of dir.
func packageVars(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	var names []string
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		for _, d := range af.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, s := range gd.Specs {
				for _, n := range s.(*ast.ValueSpec).Names {
					names = append(names, n.Name)
				}
			}
		}
	}
	return names, nil
}

// checkVersionStamp returns the -X main.<name> of the Dockerfile that the
// main package in dir does not declare: the linker ignores -X for a missing
// symbol, and `toad version` would then report nothing.
func checkVersionStamp(df *dockerfile, dir string) []error {
	vars, err := packageVars(dir)
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, name := range ldflagsVars(df) {
		if !slices.Contains(vars, name) {
			errs = append(errs, fmt.Errorf("the Dockerfile sets -X main.%s, but %s declares no package-level var %s", name, dir, name))
		}
	}
	return errs
}

func TestVersionStamp(t *testing.T) {
	const dir = "../cmd/toad"
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		t.Skip("no cmd/toad yet")
	}
	// The stamp matters once a command reports it.
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(files, func(f string) bool {
		return !strings.HasSuffix(f, "_test.go") && strings.Contains(readFile(t, f), `"version"`)
	}) {
		t.Skip(`cmd/toad has no "version" command yet`)
	}
	df, err := parseDockerfile(readFile(t, dockerfilePath))
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range checkVersionStamp(df, dir) {
		t.Error(err)
	}
}

func TestVersionStampChecks(t *testing.T) {
	df, err := parseDockerfile(readFile(t, dockerfilePath))
	if err != nil {
		t.Fatal(err)
	}
	if len(ldflagsVars(df)) == 0 {
		t.Fatal("the Dockerfile stamps no version with -X main.<name>")
	}
	tests := []struct {
		name, src string
		wantErr   bool
	}{
		{"declared", "package main\n\nvar version = \"dev\"\n\nfunc main() {}\n", false},
		{"declared in a group", "package main\n\nvar (\n\tcommit  string\n\tversion = \"dev\"\n)\n\nfunc main() {}\n", false},
		{"missing", "package main\n\nfunc main() { version := 1; _ = version }\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(tt.src), 0o644); err != nil {
				t.Fatal(err)
			}
			errs := checkVersionStamp(df, dir)
			if got := len(errs) > 0; got != tt.wantErr {
				t.Errorf("got errors %v, want errors: %v", errs, tt.wantErr)
			}
		})
	}
}
