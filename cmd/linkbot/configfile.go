package main

import (
	"cmp"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxConfigProblems is how many problems a config check lists; the rest
// are counted. A few lines of YAML aliases can make a file mean millions
// of settings, and so millions of problems.
const maxConfigProblems = 100

// fileProblem is one problem in the config file, at a line when known.
type fileProblem struct {
	line int
	msg  string
}

// fileCheck collects a config file's problems, and where each setting is,
// so a problem found after decoding still points at its line.
type fileCheck struct {
	path     string
	problems []fileProblem  // the first maxConfigProblems found
	more     int            // how many more were found
	lines    map[string]int // setting path ("limits.phone.max", "instances[1].id") → line
	// walked holds the alias targets already checked, per Go type: each is
	// checked once however many aliases point at it.
	walked map[walkedNode]bool
}

type walkedNode struct {
	n *yaml.Node
	t reflect.Type
}

// add records a problem; past maxConfigProblems it is only counted.
func (fc *fileCheck) add(line int, msg string) {
	if len(fc.problems) >= maxConfigProblems {
		fc.more++
		return
	}
	fc.problems = append(fc.problems, fileProblem{line, msg})
}

// found is how many problems have been found.
func (fc *fileCheck) found() int { return len(fc.problems) + fc.more }

// bad records a problem with the setting at path, at its line or, when
// that is not known (a setting reached through an alias already checked),
// its nearest enclosing setting's.
func (fc *fileCheck) bad(path, format string, args ...any) {
	fc.add(fc.line(path), fmt.Sprintf(format, args...))
}

func (fc *fileCheck) line(path string) int {
	for path != "" {
		if l, ok := fc.lines[path]; ok {
			return l
		}
		if i := strings.LastIndexAny(path, ".["); i > 0 {
			path = path[:i]
		} else {
			path = ""
		}
	}
	return 0
}

// list renders the problems as FILE:LINE: …, in the order of the file,
// and the count of those left out.
func (fc *fileCheck) list() []string {
	slices.SortStableFunc(fc.problems, func(a, b fileProblem) int { return cmp.Compare(a.line, b.line) })
	var out []string
	for _, p := range fc.problems {
		if p.line > 0 {
			out = append(out, fmt.Sprintf("%s:%d: %s", fc.path, p.line, p.msg))
		} else {
			out = append(out, fmt.Sprintf("%s: %s", fc.path, p.msg))
		}
	}
	if fc.more > 0 {
		out = append(out, fmt.Sprintf("… and %d more problems", fc.more))
	}
	return out
}

// parse reads raw into f. It reports every problem of shape at once —
// unknown keys (with the nearest known one), keys set twice, values of the
// wrong kind — and decodes what it can, so the checks that follow still
// run on the rest. It returns false when the text is not YAML at all.
func (fc *fileCheck) parse(raw []byte, f *fileConfig) bool {
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		p := syntaxProblem(raw, err)
		fc.add(p.line, p.msg)
		return false
	}
	if len(root.Content) == 0 {
		return true // empty file: every key is optional
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode && !isNull(doc) {
		fc.add(doc.Line, "want keys such as default_region: and instances:, not "+kindName(doc))
		return false
	}
	before := fc.found()
	fc.walk(doc, reflect.TypeOf(*f), "")
	if err := doc.Decode(f); err != nil && fc.found() == before {
		// Not expected: walk checks what Decode checks. Still say it,
		// without Go's type names.
		fc.add(0, goTypeNames.ReplaceAllString(strings.TrimPrefix(err.Error(), "yaml: "), ""))
	}
	return true
}

var (
	yamlLine    = regexp.MustCompile(`^line (\d+): (.*)$`)
	goTypeNames = regexp.MustCompile(` in type [\w.]+| into [\w.\[\]*]+`)
)

// syntaxProblem turns a YAML syntax error into FILE:LINE form; a tab in the
// indentation (YAML allows only spaces there) is named as such.
func syntaxProblem(raw []byte, err error) fileProblem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	if strings.Contains(msg, "cannot start any token") {
		for i, l := range strings.Split(string(raw), "\n") {
			indent := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
			if strings.Contains(indent, "\t") && (line == 0 || line == i+1) {
				return fileProblem{i + 1, "a tab indents this line; YAML indents with spaces only"}
			}
		}
	}
	return fileProblem{line, msg}
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "a single value"
}

// walk checks node n against the Go type t that it will be decoded into,
// and records the line of every setting under path. What an alias points
// at is checked once per type, at the first alias met: YAML aliases can
// nest, so following each one would check (and report) a few lines of text
// millions of times.
func (fc *fileCheck) walk(n *yaml.Node, t reflect.Type, path string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
		if n == nil {
			return // yaml.Unmarshal refuses an unknown anchor
		}
		if fc.walked == nil {
			fc.walked = map[walkedNode]bool{}
		}
		if fc.walked[walkedNode{n, t}] {
			return
		}
		fc.walked[walkedNode{n, t}] = true
	}
	if isNull(n) {
		return // "key:" with nothing after it leaves the default
	}
	problem := func(format string, args ...any) {
		fc.add(n.Line, path+": "+fmt.Sprintf(format, args...))
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			problem("want keys under it, not %s", kindName(n))
			return
		}
		fields := map[string]reflect.Type{}
		var known []string
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			fields[name] = t.Field(i).Type
			known = append(known, name)
		}
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, value := n.Content[i], n.Content[i+1]
			sub := key.Value
			if path != "" {
				sub = path + "." + key.Value
			}
			ft, ok := fields[key.Value]
			switch {
			case key.Value == "<<": // a YAML merge key: Decode handles it
				continue
			case !ok:
				where := ""
				if path != "" {
					where = " in " + path
				}
				fc.add(key.Line, fmt.Sprintf("unknown key %q%s (%s)", key.Value, where, suggest(key.Value, known)))
				continue
			case seen[key.Value] > 0:
				fc.add(key.Line, fmt.Sprintf("%s is set twice (first on line %d)", sub, seen[key.Value]))
				continue
			}
			seen[key.Value] = key.Line
			fc.lines[sub] = key.Line
			fc.walk(value, ft, sub)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			problem("want a list such as [A, B], not %s", kindName(n))
			return
		}
		for i, item := range n.Content {
			sub := fmt.Sprintf("%s[%d]", path, i)
			fc.lines[sub] = item.Line
			fc.walk(item, t.Elem(), sub)
		}
	case reflect.Int:
		var v int
		if n.Kind != yaml.ScalarNode || n.Decode(&v) != nil {
			if n.Kind == yaml.ScalarNode {
				problem("want a whole number, not %q", n.Value)
			} else {
				problem("want a whole number, not %s", kindName(n))
			}
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			problem("want a single value, not %s", kindName(n))
		}
	case reflect.Bool:
		var v bool
		if n.Kind != yaml.ScalarNode || n.Decode(&v) != nil {
			if n.Kind == yaml.ScalarNode {
				problem("want true or false, not %q", n.Value)
			} else {
				problem("want true or false, not %s", kindName(n))
			}
		}
	}
}

// suggest names the known key nearest to key: one a typo or two away, or
// one that contains it ("timeout" → "wawp_timeout"); else it lists them all.
// It never suggests "" (the search starts with no candidate, not with one
// at a made-up distance that a short key's real neighbours cannot beat).
func suggest(key string, known []string) string {
	best, bestDist := "", -1
	for _, k := range known {
		d := editDistance(strings.ToLower(key), k)
		if best == "" || d < bestDist {
			best, bestDist = k, d
		}
	}
	if best != "" && bestDist <= max(2, len(key)/4) {
		return fmt.Sprintf("did you mean %q?", best)
	}
	for _, k := range known {
		if len(key) >= 4 && strings.Contains(k, strings.ToLower(key)) {
			return fmt.Sprintf("did you mean %q?", k)
		}
	}
	return "known keys: " + strings.Join(known, ", ")
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// durationRule is the range a duration setting must be in.
type durationRule struct {
	lo, hi       time.Duration // hi 0: no upper bound
	wholeSeconds bool
	orElse       string // another accepted word, described in the problem
}

// duration sets *dst from the setting at path when one is given and it is
// a Go duration within rule; otherwise it reports a problem.
func (fc *fileCheck) duration(path, value string, rule durationRule, dst *time.Duration) {
	if value == "" {
		return
	}
	d, err := time.ParseDuration(value)
	if err == nil && d >= rule.lo && (rule.hi == 0 || d <= rule.hi) && (!rule.wholeSeconds || d%time.Second == 0) {
		*dst = d
		return
	}
	want := "a duration"
	if rule.wholeSeconds {
		want = "whole seconds"
	}
	if rule.hi == 0 {
		want += " of at least " + shortDuration(rule.lo)
	} else {
		want += fmt.Sprintf(" between %s and %s", shortDuration(rule.lo), shortDuration(rule.hi))
	}
	if rule.orElse != "" {
		want += ", or " + rule.orElse
	}
	fc.bad(path, "%s %q must be %s", path, value, want)
}

// shortDuration writes d as a person would: 10m, not 10m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
