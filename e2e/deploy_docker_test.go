package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dockerInstr is one Dockerfile instruction, continuation lines joined.
type dockerInstr struct {
	Stage int // index of the FROM it belongs to
	Cmd   string
	Args  string
}

// parseDockerfile splits a Dockerfile into instructions (no Docker engine
// here, so the file is read the way the builder reads it: comments dropped,
// backslash continuations joined).
func parseDockerfile(t *testing.T, src string) []dockerInstr {
	t.Helper()
	var out []dockerInstr
	stage := -1
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, dockerInstr{Stage: stage, Cmd: cmd, Args: strings.TrimSpace(args)})
	}
	for _, line := range strings.Split(src, "\n") {
		trim := strings.TrimSpace(line)
		if strings.HasPrefix(trim, "#") {
			continue
		}
		if strings.HasSuffix(trim, "\\") {
			cur.WriteString(strings.TrimSuffix(trim, "\\"))
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(trim)
		flush()
	}
	flush()
	return out
}

// TestDockerfile checks the image's promises without a Docker engine: the
// build stage's own RUN command, extracted from the Dockerfile and run here,
// yields a static, stripped, version-stamped binary; the runtime stage is
// distroless (or scratch), non-root, with a HEALTHCHECK through the binary;
// and that healthcheck subcommand tells a healthy gateway from a missing or
// draining one.
func TestDockerfile(t *testing.T) {
	instrs := parseDockerfile(t, deployRead(t, "Dockerfile"))
	last := instrs[len(instrs)-1].Stage
	if last < 1 {
		t.Fatalf("Dockerfile has %d stage(s), want a multi-stage build", last+1)
	}

	var buildRun string
	argDefaults := map[string]string{}
	var runtimeFrom, user, healthcheck, entrypoint string
	var expose []string
	runtimeEnv := map[string]string{}
	var copiedFromBuild bool
	var buildCopies [][]string
	for _, in := range instrs {
		switch {
		case in.Cmd == "ARG":
			if k, v, ok := strings.Cut(in.Args, "="); ok {
				argDefaults[k] = v
			}
		case in.Cmd == "COPY" && in.Stage != last && !strings.Contains(in.Args, "--from="):
			buildCopies = append(buildCopies, strings.Fields(in.Args))
		case in.Cmd == "RUN" && strings.Contains(in.Args, "go build"):
			if buildRun != "" {
				t.Fatal("more than one RUN with go build")
			}
			if in.Stage == last {
				t.Error("go build runs in the runtime stage")
			}
			buildRun = in.Args
		case in.Stage != last:
		case in.Cmd == "FROM":
			runtimeFrom = in.Args
		case in.Cmd == "USER":
			user = in.Args
		case in.Cmd == "HEALTHCHECK":
			healthcheck = in.Args
		case in.Cmd == "ENTRYPOINT":
			entrypoint = in.Args
		case in.Cmd == "EXPOSE":
			expose = append(expose, strings.Fields(in.Args)...)
		case in.Cmd == "ENV":
			for _, kv := range strings.Fields(in.Args) {
				if k, v, ok := strings.Cut(kv, "="); ok {
					runtimeEnv[k] = v
				}
			}
		case in.Cmd == "COPY" && strings.Contains(in.Args, "--from="):
			copiedFromBuild = true
		}
	}

	t.Run("runtime stage", func(t *testing.T) {
		if !strings.HasPrefix(runtimeFrom, "gcr.io/distroless/static") && runtimeFrom != "scratch" {
			t.Errorf("runtime FROM %q: want distroless static or scratch", runtimeFrom)
		}
		if !copiedFromBuild {
			t.Error("runtime stage does not COPY --from the build stage")
		}
		uid, _, _ := strings.Cut(user, ":")
		if uid == "" || uid == "0" || uid == "root" || strings.Trim(uid, "0123456789") != "" {
			// Numeric, so Kubernetes' runAsNonRoot can check it.
			t.Errorf("USER %q: want a numeric non-root uid", user)
		}
		if !strings.Contains(healthcheck, `"/gateway", "healthcheck"`) {
			t.Errorf("HEALTHCHECK %q: want the binary's own healthcheck (no curl in distroless)", healthcheck)
		}
		if entrypoint != `["/gateway"]` {
			t.Errorf("ENTRYPOINT %q, want [\"/gateway\"]", entrypoint)
		}
	})

	t.Run("ops port stays inside the container", func(t *testing.T) {
		// The image's own default: the ops listener on the container's
		// loopback, so `docker run -p 9777:9777` publishes nothing else,
		// and `docker run -P` (every EXPOSEd port, on every host address)
		// never the ops port. Compose and Kubernetes widen it themselves.
		_, pubPort, err1 := net.SplitHostPort(runtimeEnv["GATEWAY_PORT"])
		opsHost, opsPort, err2 := net.SplitHostPort(runtimeEnv["OPS_ADDR"])
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("ENV GATEWAY_PORT %q OPS_ADDR %q: %v", runtimeEnv["GATEWAY_PORT"], runtimeEnv["OPS_ADDR"], err)
		}
		if ip, err := netip.ParseAddr(opsHost); err != nil || !ip.IsLoopback() {
			t.Errorf("ENV OPS_ADDR=%s: want a loopback address (the container's own)", runtimeEnv["OPS_ADDR"])
		}
		if !slices.Contains(expose, pubPort) && !slices.Contains(expose, pubPort+"/tcp") {
			t.Errorf("EXPOSE %v lacks the public port %s", expose, pubPort)
		}
		for _, e := range expose {
			if strings.TrimSuffix(e, "/tcp") == opsPort {
				t.Errorf("EXPOSE %v includes the ops port %s: docker run -P would publish it on every host address", expose, opsPort)
			}
		}
	})

	// The exact build command, only its output path moved out of /out.
	if buildRun == "" {
		t.Fatal("no RUN ... go build in the Dockerfile")
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X github.com/portcullis/portcullis/internal/gateway.Version=${VERSION}"} {
		if !strings.Contains(buildRun, want) {
			t.Errorf("build command lacks %q: %s", want, buildRun)
		}
	}
	const outFlag = "-o /out/gateway "
	if strings.Count(buildRun, outFlag) != 1 {
		t.Fatalf("build command does not write %q exactly once: %s", outFlag, buildRun)
	}
	dir := t.TempDir()
	static := filepath.Join(dir, "gateway")
	const version = "v9.8.7-deploytest"
	// The build runs in what the image build would see: the files the
	// build stage COPYs, minus what .dockerignore leaves out of the
	// context. A missing COPY or an over-eager ignore fails here.
	src := filepath.Join(dir, "src")
	ignore := parseDockerignore(deployRead(t, ".dockerignore"))
	for _, cp := range buildCopies {
		if len(cp) < 2 {
			t.Fatalf("COPY %v", cp)
		}
		to := cp[len(cp)-1]
		for _, from := range cp[:len(cp)-1] {
			// The test lays the context out as the repository is; the
			// Dockerfile's COPYs must do the same under WORKDIR.
			if to != "./" && strings.Trim(to, "./") != strings.Trim(from, "./") {
				t.Fatalf("COPY %s %s: the test expects repository-relative destinations", from, to)
			}
			copyContext(t, deployRepoRoot(t), from, src, ignore)
		}
	}
	cmd := exec.Command("sh", "-ec", strings.Replace(buildRun, outFlag, "-o "+static+" ", 1))
	cmd.Dir = src
	// Docker passes build ARGs to RUN as environment variables.
	cmd.Env = append(os.Environ(), "VERSION="+version, "TARGETOS=linux", "TARGETARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build command failed: %v\n%s", err, out)
	}
	if argDefaults["VERSION"] == "" {
		t.Error("ARG VERSION has no default")
	}

	t.Run("static binary", func(t *testing.T) {
		out, err := exec.Command(deployLookPath(t, "file"), static).CombinedOutput()
		if err != nil {
			t.Fatalf("file: %v %s", err, out)
		}
		if !strings.Contains(string(out), "statically linked") || strings.Contains(string(out), "dynamically linked") {
			t.Errorf("file says: %s", out)
		}
		if strings.Contains(string(out), "not stripped") {
			t.Errorf("binary not stripped (-s -w): %s", out)
		}
		out, err = exec.Command(deployLookPath(t, "ldd"), static).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "not a dynamic executable") {
			t.Errorf("ldd lists dynamic dependencies: %v\n%s", err, out)
		}
		bin, err := os.ReadFile(static)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(bin, []byte(src)) {
			t.Error("binary contains the build directory's path: -trimpath missing")
		}
		out, err = exec.Command(static, "version").CombinedOutput()
		if err != nil || !strings.Contains(string(out), version) {
			t.Errorf("version %q not stamped: %v %s", version, err, out)
		}
	})

	t.Run("healthcheck", func(t *testing.T) {
		gw := deployStartGateway(t, "SHUTDOWN_DELAY=3s")
		closed := fmt.Sprintf("127.0.0.1:%d", deployFreePort(t))
		_, opsPort, _ := net.SplitHostPort(gw.OpsAddr)
		_, pubPort, _ := net.SplitHostPort(gw.Addr)

		run := func(t *testing.T, wd string, env []string, args ...string) (int, string) {
			t.Helper()
			cmd := exec.Command(static, append([]string{"healthcheck"}, args...)...)
			cmd.Dir = wd
			cmd.Env = env
			return exitCode(t, cmd)
		}
		envDir := t.TempDir()
		if err := os.WriteFile(filepath.Join(envDir, ".env"), []byte("GATEWAY_PORT="+closed+"\nOPS_ADDR="+gw.OpsAddr+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name     string
			dir      string
			env      []string
			args     []string
			wantCode int
			wantOut  string
		}{
			{name: "flag addr, healthy", args: []string{"--addr", gw.Addr}, wantCode: 0, wantOut: "200 ok"},
			// OPS_ADDR always has a value (127.0.0.1:9778 when unset), so
			// it is what gets probed: the public port named here is closed.
			{name: "OPS_ADDR from the environment", env: []string{"GATEWAY_PORT=" + closed, "OPS_ADDR=" + gw.OpsAddr}, wantCode: 0, wantOut: gw.OpsAddr + "/health: 200 ok"},
			{name: "OPS_ADDR from .env", dir: envDir, wantCode: 0, wantOut: gw.OpsAddr + "/health: 200 ok"},
			// The image and Compose: ":9778" (every interface) is probed on
			// the container's loopback.
			{name: "wildcard OPS_ADDR probed on loopback", env: []string{"GATEWAY_PORT=" + closed, "OPS_ADDR=:" + opsPort}, wantCode: 0, wantOut: "http://127.0.0.1:" + opsPort + "/health: 200"},
			{name: "0.0.0.0 OPS_ADDR probed on loopback", env: []string{"GATEWAY_PORT=" + closed, "OPS_ADDR=0.0.0.0:" + opsPort}, wantCode: 0, wantOut: "http://127.0.0.1:" + opsPort + "/health: 200"},
			// Without OPS_ADDR the default ops address is probed, never
			// GATEWAY_PORT (whether anything answers on 9778 here is not
			// this test's business, so only the target is checked).
			{name: "GATEWAY_PORT alone: the default OPS_ADDR is probed", env: []string{"GATEWAY_PORT=" + gw.Addr}, wantCode: -1, wantOut: "http://127.0.0.1:9778/health"},
			// Only OPS_ADDR=public sends it to the public port.
			{name: "OPS_ADDR=public probes GATEWAY_PORT", env: []string{"GATEWAY_PORT=" + gw.Addr, "OPS_ADDR=public"}, wantCode: 0, wantOut: gw.Addr + "/health: 200 ok"},
			{name: "wildcard GATEWAY_PORT probed on loopback", env: []string{"GATEWAY_PORT=:" + pubPort, "OPS_ADDR=public"}, wantCode: 0, wantOut: "http://127.0.0.1:" + pubPort + "/health: 200"},
			{name: "no gateway", args: []string{"--addr", closed}, wantCode: 1, wantOut: "connection refused"},
			{name: "port 0 cannot be probed", env: []string{"OPS_ADDR=127.0.0.1:0"}, wantCode: 1, wantOut: "port 0"},
			{name: "not the health endpoint", args: []string{"--addr", gw.Addr, "--path", "/nope"}, wantCode: 1, wantOut: "404"},
			// Docker reserves exit status 2 for HEALTHCHECK commands.
			{name: "usage error exits 1, never 2", args: []string{"--bogus"}, wantCode: 1},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				wd := tc.dir
				if wd == "" {
					wd = t.TempDir()
				}
				code, out := run(t, wd, tc.env, tc.args...)
				if (tc.wantCode >= 0 && code != tc.wantCode) || code > 1 || !strings.Contains(out, tc.wantOut) {
					t.Errorf("exit %d, output %q; want exit %d with %q", code, out, tc.wantCode, tc.wantOut)
				}
			})
		}

		// Draining: /health turns 503 at SIGTERM, so the container turns
		// unhealthy while SHUTDOWN_DELAY still serves traffic.
		if err := gw.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		// Both listeners' /health say so: the container's healthcheck
		// asks the ops one.
		for _, addr := range []string{gw.OpsAddr, gw.Addr} {
			deadline := time.Now().Add(2 * time.Second)
			for {
				code, out := run(t, t.TempDir(), nil, "--addr", addr)
				if code == 1 && strings.Contains(out, "503 draining") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("draining gateway on %s: exit %d %q, want 1 with 503 draining", addr, code, out)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	})
}

// dockerignoreRule is one .dockerignore line as a regular expression over
// slash-separated context paths.
type dockerignoreRule struct {
	re     *regexp.Regexp
	negate bool
}

// parseDockerignore compiles .dockerignore the way the builder reads it:
// Go filepath.Match syntax plus "**" for any number of directories; the
// last matching rule wins; a rule that matches a directory covers its
// contents.
func parseDockerignore(src string) []dockerignoreRule {
	var rules []dockerignoreRule
	for _, line := range strings.Split(src, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r := dockerignoreRule{}
		if rest, ok := strings.CutPrefix(line, "!"); ok {
			r.negate, line = true, rest
		}
		line = strings.Trim(line, "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(line); i++ {
			switch {
			case strings.HasPrefix(line[i:], "**/"):
				re.WriteString("(?:.*/)?")
				i += 2
			case strings.HasPrefix(line[i:], "**"):
				re.WriteString(".*")
				i++
			case line[i] == '*':
				re.WriteString("[^/]*")
			case line[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(line[i : i+1]))
			}
		}
		re.WriteString("(?:/.*)?$")
		r.re = regexp.MustCompile(re.String())
		rules = append(rules, r)
	}
	return rules
}

func dockerignored(rules []dockerignoreRule, rel string) bool {
	ignored := false
	for _, r := range rules {
		if r.re.MatchString(rel) {
			ignored = !r.negate
		}
	}
	return ignored
}

// copyContext copies repository path from (a file or a directory) into dst,
// skipping what .dockerignore excludes from the build context.
func copyContext(t *testing.T, root, from, dst string, ignore []dockerignoreRule) {
	t.Helper()
	from = strings.TrimSuffix(strings.TrimPrefix(from, "./"), "/")
	err := filepath.WalkDir(filepath.Join(root, from), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() || dockerignored(ignore, rel) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o644)
	})
	if err != nil {
		t.Fatalf("COPY %s: %v", from, err)
	}
}
