package main

import (
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/linkbot/linkbot/pairing"
)

// Docker cannot run where these tests run, so the deployment files are
// checked by reading them, for the properties that broke before.

func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	raw, err := os.ReadFile("../../" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// instructions returns the Dockerfile's final stage as instruction lines
// (comments and blank lines dropped, continuations joined).
func finalStage(dockerfile string) []string {
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(dockerfile, "\\\n", " "), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "FROM ") {
			lines = nil
		}
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return lines
}

// TestDockerDataVolumeWritable: a fresh named volume takes the owner of
// the image's /data, so /data must exist in the image owned by the user
// the bot runs as, before VOLUME (the distroless image has no shell to
// mkdir or chown with later).
func TestDockerDataVolumeWritable(t *testing.T) {
	stage := finalStage(readRepoFile(t, "deploy/Dockerfile"))
	user, volume, owned := "", -1, -1
	for i, l := range stage {
		switch {
		case strings.HasPrefix(l, "USER "):
			user = strings.TrimPrefix(l, "USER ")
		case l == "VOLUME /data" || l == `VOLUME ["/data"]`:
			volume = i
		}
	}
	if user == "" || strings.HasPrefix(user, "root") || strings.HasPrefix(user, "0") {
		t.Fatalf("final stage runs as %q, want a non-root USER", user)
	}
	copyData := regexp.MustCompile(`^COPY --from=\S+ --chown=(\S+) (\S+) (\S+)$`)
	for i, l := range stage {
		m := copyData.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		// Either the directory copied as an entry into / (src ends in /,
		// holding data), or copied onto /data itself.
		if m[1] == user && (m[3] == "/" || strings.TrimSuffix(m[3], "/") == "/data") {
			owned = i
		}
	}
	if owned < 0 {
		t.Errorf("no COPY --chown=%s of the data directory in the final stage:\n%s", user, strings.Join(stage, "\n"))
	}
	if volume < 0 || owned > volume {
		t.Errorf("VOLUME /data (line %d) must come after /data is created owned by %s (line %d)", volume, user, owned)
	}
	if !slices.ContainsFunc(stage, func(l string) bool { return strings.Contains(l, "LINKBOT_DB=/data/") }) {
		t.Errorf("LINKBOT_DB does not point into /data")
	}
}

// dockerIgnored says whether .dockerignore's patterns exclude rel, as
// Docker documents them: each pattern is matched, as Go's filepath.Match
// does, against the path relative to the context root (a leading "/"
// dropped), "**" standing for any number of directories, zero included; a
// pattern matching a parent directory excludes everything under it. (No
// "!" patterns are used.)
func dockerIgnored(patterns []string, rel string) bool {
	for _, p := range patterns {
		var re strings.Builder
		p = strings.TrimPrefix(p, "/")
		for i := 0; i < len(p); i++ {
			switch {
			case strings.HasPrefix(p[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(p[i:], "**"):
				re.WriteString(".*")
				i++
			case p[i] == '*':
				re.WriteString("[^/]*")
			case p[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(p[i : i+1]))
			}
		}
		match := regexp.MustCompile("^" + strings.TrimSuffix(re.String(), "/") + "$")
		for dir := rel; dir != "." && dir != "/"; dir = path.Dir(dir) {
			if match.MatchString(dir) {
				return true
			}
		}
	}
	return false
}

// TestNoSecretsInBuildContextOrGit: the env file holding the tokens stays
// out of the Docker build context and out of git; so does .git. A pattern
// such as "*.env" matches only at the context root, so an env file (or a
// database) anywhere else went into the build context and the build
// stage's `COPY . .`.
func TestNoSecretsInBuildContextOrGit(t *testing.T) {
	patterns := func(file string) []string {
		var out []string
		for _, l := range strings.Split(readRepoFile(t, file), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				out = append(out, l)
			}
		}
		return out
	}
	dockerignore := patterns(".dockerignore")
	for _, rel := range []string{".git/config", "linkbot.env", ".env", ".env.local", "deploy/linkbot.env", "config/.env",
		"a/b/c/prod.env", "linkbot.db", "deploy/linkbot.db", "data/linkbot.db.sock", "cmd/linkbot/linkbot.test"} {
		if !dockerIgnored(dockerignore, rel) {
			t.Errorf("%s is sent in the build context", rel)
		}
	}
	for _, rel := range []string{"go.mod", "go.sum", "cmd/linkbot/main.go", "store/store.go", "deploy/Dockerfile", "manifest.yml"} {
		if dockerIgnored(dockerignore, rel) {
			t.Errorf("%s is left out of the build context; the build needs it", rel)
		}
	}
	if gitignore := patterns(".gitignore"); !slices.Contains(gitignore, "linkbot.env") && !slices.Contains(gitignore, "*.env") {
		t.Errorf(".gitignore lacks linkbot.env: %q", gitignore)
	}
}

// TestSystemdInstallSteps: the unit's install steps create the env file
// with mode 0600 before anything is written into it, and put the config
// file where the service (a dynamic user) can read it.
func TestSystemdInstallSteps(t *testing.T) {
	unit := readRepoFile(t, "deploy/linkbot.service")
	var steps []string
	for _, l := range strings.Split(unit, "\n") {
		if s, ok := strings.CutPrefix(l, "#   "); ok {
			steps = append(steps, strings.Join(strings.Fields(s), " "))
		}
	}
	has := func(re string) int {
		return slices.IndexFunc(steps, regexp.MustCompile(re).MatchString)
	}
	create := has(`install (-m 0600 .*/dev/null|.*-m 0600 /dev/null) /etc/linkbot/linkbot\.env`)
	edit := has(`edit.* /etc/linkbot/linkbot\.env`)
	if create < 0 || edit < create {
		t.Errorf("install steps must create /etc/linkbot/linkbot.env with mode 0600 before editing it:\n%s", strings.Join(steps, "\n"))
	}
	if has(`install -d -m 07[0-7]5 /etc/linkbot$`) < 0 {
		t.Errorf("/etc/linkbot must be searchable by the service's dynamic user:\n%s", strings.Join(steps, "\n"))
	}
	if has(`install -m 0644 \S+ /etc/linkbot/linkbot\.yml`) < 0 || !strings.Contains(unit, "LINKBOT_CONFIG=/etc/linkbot/linkbot.yml") {
		t.Errorf("install steps must say where the config file goes and how the bot finds it:\n%s", strings.Join(steps, "\n"))
	}
}

// TestStopTimeoutCoversShutdown: the service manager waits long enough for
// a shutdown with a stuck request before it kills the bot. With the default
// wawp_timeout the bot waits up to the request lease plus 5 s for requests
// in flight, then ends them as interrupted and takes up to 2 × 5 s to say so
// (bot.answerMargin, 2 × bot.shutdownCutoff): 40 s. A kill before that leaves
// their messages at "Requesting…" until some later start.
func TestStopTimeoutCoversShutdown(t *testing.T) {
	lease := pairing.NewService(nil, nil, pairing.Config{}).RequestLease()
	const answerMargin, cutoffs = 5 * time.Second, 2 * 5 * time.Second
	need := lease + answerMargin + cutoffs
	check := func(where, seconds string) {
		stop, err := time.ParseDuration(seconds + "s")
		if err != nil || stop < need {
			t.Errorf("%s: stop timeout %ss, but a shutdown with a stuck request takes up to %s (lease %s + %s + %s)", where, seconds, need, lease, answerMargin, cutoffs)
		}
	}
	m := regexp.MustCompile(`(?m)^TimeoutStopSec=(\d+)s?$`).FindStringSubmatch(readRepoFile(t, "deploy/linkbot.service"))
	if m == nil {
		t.Fatal("deploy/linkbot.service sets no TimeoutStopSec (systemd's default is configurable per host: say it)")
	}
	check("deploy/linkbot.service", m[1])
	docker := regexp.MustCompile(`(?:--stop-timeout|stop -t) (\d+)`).FindAllStringSubmatch(readRepoFile(t, "README.md"), -1)
	if len(docker) == 0 {
		t.Error("README gives Docker no stop timeout (its default is 10 s)")
	}
	for _, m := range docker {
		check("README "+m[0], m[1])
	}
}
