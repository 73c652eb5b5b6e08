package main

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	module  = "github.com/linkbot/linkbot"
	slackGo = "github.com/slack-go/slack"
	bbolt   = "go.etcd.io/bbolt"
	pgx     = "github.com/jackc/pgx"
	goose   = "github.com/pressly/goose"
)

// goPackage is what `go list -json` says about one package.
type goPackage struct {
	ImportPath   string
	Imports      []string // its own files' imports
	TestImports  []string // its tests' (package p)
	XTestImports []string // its external tests' (package p_test)
	Deps         []string // everything its own files need, transitively (tests left out)
}

// The layout README's Design section draws: cmd → bot → pairing ← store,
// pairing → pairing/wawp. Packages are named relative to the module;
// forbidden names match the package and everything under it.
var layoutRules = []struct {
	pkg    string
	direct bool // only its own imports; else everything it depends on
	not    []string
	why    string
}{
	{"bot", false, []string{"store", bbolt}, "bot asks pairing.Service; storage sits behind pairing.Storage"},
	{"bot", true, []string{"pairing/wawp"}, "bot speaks the domain's terms; the Wawp client is pairing's adapter"},
	{"pairing", false, []string{"store", "bot", "cmd", bbolt, slackGo}, "the domain imports no adapter but its Wawp client"},
	{"pairing/wawp", false, []string{module, bbolt, slackGo}, "the Wawp client knows Wawp and nothing of linkbot"},
	{"store", false, []string{"bot", "cmd", slackGo}, "storage knows the domain, not Slack"},
}

// onlyImporters: a library only these packages (their tests included) import.
var onlyImporters = []struct {
	lib string
	by  []string
}{
	{slackGo, []string{"bot", "bot/fakeslack"}},
	{bbolt, []string{"store"}},
	{pgx, []string{"store/postgres", "store/postgres/pgtest"}},
	{goose, []string{"store/postgres"}},
}

// layoutProblems lists every way pkgs break the layout, one line each.
func layoutProblems(pkgs []goPackage) []string {
	full := func(name string) string {
		if strings.Contains(strings.SplitN(name, "/", 2)[0], ".") {
			return name // a module path, e.g. go.etcd.io/bbolt
		}
		return module + "/" + name
	}
	under := func(path, name string) bool {
		f := full(name)
		return path == f || strings.HasPrefix(path, f+"/")
	}
	byPath := map[string]goPackage{}
	for _, p := range pkgs {
		byPath[p.ImportPath] = p
	}
	var out []string
	for _, r := range layoutRules {
		p, ok := byPath[full(r.pkg)]
		if !ok {
			out = append(out, r.pkg+": no such package (a layout rule names it)")
			continue
		}
		deps := p.Deps
		if r.direct {
			deps = p.Imports
		}
		for _, d := range deps {
			for _, n := range r.not {
				if under(d, n) {
					out = append(out, r.pkg+" depends on "+d+": "+r.why)
				}
			}
		}
	}
	for _, o := range onlyImporters {
		for _, p := range pkgs {
			if slices.ContainsFunc(o.by, func(name string) bool { return p.ImportPath == full(name) }) {
				continue
			}
			imports := slices.Concat(p.Imports, p.TestImports, p.XTestImports)
			if slices.ContainsFunc(imports, func(i string) bool { return under(i, o.lib) }) {
				out = append(out, strings.TrimPrefix(p.ImportPath, module+"/")+" imports "+o.lib+": only "+strings.Join(o.by, " and ")+" may")
			}
		}
	}
	return out
}

// TestLayout: the packages depend on each other as README's Design section
// says, so a rule lives in one place. It reads the real import graph with
// `go list`.
func TestLayout(t *testing.T) {
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,TestImports,XTestImports,Deps", module+"/...")
	cmd.Dir = "../.."
	raw, err := cmd.Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		t.Fatalf("go list: %v\n%s", err, exit.Stderr)
	}
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []goPackage
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	for {
		var p goPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found %d packages", len(pkgs))
	}
	for _, p := range layoutProblems(pkgs) {
		t.Error(p)
	}
}

// TestLayoutRulesBite: each rule reports a graph that breaks it.
func TestLayoutRulesBite(t *testing.T) {
	m := func(name string) string { return module + "/" + name }
	good := func() []goPackage {
		return []goPackage{
			{ImportPath: m("bot"), Imports: []string{m("pairing"), slackGo}, Deps: []string{m("pairing"), m("pairing/wawp"), slackGo}},
			{ImportPath: m("bot/fakeslack"), Imports: []string{slackGo}, Deps: []string{slackGo}},
			{ImportPath: m("pairing"), Imports: []string{m("pairing/wawp")}, Deps: []string{m("pairing/wawp")}},
			{ImportPath: m("pairing/wawp")},
			{ImportPath: m("store"), Imports: []string{m("pairing"), bbolt}, Deps: []string{m("pairing"), m("pairing/wawp"), bbolt, bbolt + "/errors"}},
			{ImportPath: m("cmd/linkbot"), Imports: []string{m("bot"), m("store")}, TestImports: []string{m("bot/fakeslack")}},
		}
	}
	if got := layoutProblems(good()); len(got) != 0 {
		t.Fatalf("the intended layout is reported: %q", got)
	}
	tests := []struct {
		name   string
		mutate func(ps []goPackage)
		want   []string
	}{
		{"bot imports store", func(ps []goPackage) { ps[0].Deps = append(ps[0].Deps, m("store"), bbolt) }, []string{
			"bot depends on " + m("store") + ": bot asks pairing.Service; storage sits behind pairing.Storage",
			"bot depends on " + bbolt + ": bot asks pairing.Service; storage sits behind pairing.Storage",
		}},
		{"bot imports the Wawp client", func(ps []goPackage) { ps[0].Imports = append(ps[0].Imports, m("pairing/wawp")) }, []string{
			"bot depends on " + m("pairing/wawp") + ": bot speaks the domain's terms; the Wawp client is pairing's adapter",
		}},
		{"pairing imports store", func(ps []goPackage) { ps[2].Deps = append(ps[2].Deps, m("store")) }, []string{
			"pairing depends on " + m("store") + ": the domain imports no adapter but its Wawp client",
		}},
		{"pairing imports slack-go", func(ps []goPackage) { ps[2].Deps = append(ps[2].Deps, slackGo+"/socketmode") }, []string{
			"pairing depends on " + slackGo + "/socketmode: the domain imports no adapter but its Wawp client",
		}},
		{"wawp imports pairing's fake", func(ps []goPackage) { ps[3].Deps = []string{m("pairing/fakewawp")} }, []string{
			"pairing/wawp depends on " + m("pairing/fakewawp") + ": the Wawp client knows Wawp and nothing of linkbot",
		}},
		{"store imports slack-go", func(ps []goPackage) { ps[4].Deps = append(ps[4].Deps, slackGo) }, []string{
			"store depends on " + slackGo + ": storage knows the domain, not Slack",
		}},
		{"cmd's tests import slack-go", func(ps []goPackage) { ps[5].XTestImports = []string{slackGo} }, []string{
			"cmd/linkbot imports " + slackGo + ": only bot and bot/fakeslack may",
		}},
		{"cmd imports bbolt", func(ps []goPackage) { ps[5].Imports = append(ps[5].Imports, bbolt+"/errors") }, []string{
			"cmd/linkbot imports " + bbolt + ": only store may",
		}},
		{"a package a rule names is gone", func(ps []goPackage) { ps[3].ImportPath = m("pairing/wawpclient") }, []string{
			"pairing/wawp: no such package (a layout rule names it)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := good()
			tt.mutate(ps)
			if diff := cmp.Diff(tt.want, layoutProblems(ps)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}
