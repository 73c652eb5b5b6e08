package main

import (
	"bytes"
	"context"
	"io"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestVersionCommand: a binary built without -ldflags still says what it
// is built from, never just "dev".
func TestVersionCommand(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"linkbot", "version"}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if !strings.HasPrefix(got, "linkbot ") || strings.TrimSpace(got) == "linkbot dev" || !strings.Contains(got, "go1.") {
		t.Errorf("version = %q, want the build's version and Go version", got)
	}
}

func TestDescribeVersion(t *testing.T) {
	settings := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i+1 < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	info := func(version string, s []debug.BuildSetting) *debug.BuildInfo {
		return &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/linkbot/linkbot", Version: version}, Settings: s}
	}
	const rev = "4dfd695a1b2c3d4e5f60718293a4b5c6d7e8f901"
	tests := []struct {
		name   string
		ldflag string
		info   *debug.BuildInfo
		want   string
	}{
		{"release build (-ldflags -X main.version)", "v1.2.0", info("(devel)", nil), "v1.2.0 (go1.26.8)"},
		{"go install …@v1.2.0", "", info("v1.2.0", nil), "v1.2.0 (go1.26.8)"},
		{"go build in a clone (Go ≥ 1.24 stamps a pseudo-version)", "", info("v0.0.0-20261127173500-4dfd695a1b2c+dirty", settings("vcs.revision", rev, "vcs.modified", "true")), "v0.0.0-20261127173500-4dfd695a1b2c+dirty (go1.26.8)"},
		{"go build -buildvcs=true, no pseudo-version", "", info("(devel)", settings("vcs.revision", rev, "vcs.modified", "false")), "devel-4dfd695a1b2c (go1.26.8)"},
		{"modified checkout", "", info("(devel)", settings("vcs.revision", rev, "vcs.modified", "true")), "devel-4dfd695a1b2c-dirty (go1.26.8)"},
		{"no VCS information", "", info("(devel)", nil), "devel (go1.26.8; built without version information: build in a git clone, or with -ldflags -X main.version=…)"},
		{"no build information, release build", "v1.2.0", nil, "v1.2.0"},
		{"no build information", "", nil, "devel (built without version information: build in a git clone, or with -ldflags -X main.version=…)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, describeVersion(tt.ldflag, tt.info)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
