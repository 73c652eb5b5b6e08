//go:build ignore

// testreport reads `go test -json` on stdin and prints what a person needs
// from a CI log: every package's own result line as go test prints it
// (ok/FAIL/no test files), the whole output of every failed test, build
// failures, the names of the failed tests, and last a line
// "N passed, N failed, N skipped" counting tests and subtests.
//
// A package that fails without a failing test (a build error, a panic in
// init or TestMain, a timeout outside any test) counts as one failed test,
// and so do the two failures the events cannot show: -vet-status, go vet's
// exit status, when not 0 (one failed check, "go vet"), and -test-status,
// go test's exit status, when not 0 while no package or test failed (go
// test failed before any package ran, e.g. -race without cgo). So the
// closing line never says 0 failed when something failed. It exits 1 when
// anything failed, 0 otherwise. Run with:
//
//	go run .ci/testreport.go -vet-status N -test-status N <test.json
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action     string
	Package    string
	ImportPath string // build-output events
	Test       string
	Output     string
}

func main() {
	vetStatus := flag.Int("vet-status", 0, "go vet's exit status")
	testStatus := flag.Int("test-status", 0, "go test's exit status")
	flag.Parse()
	var (
		passed, failed, skipped int
		failedNames             []string
		testOutput              = map[string][]string{} // "pkg test" → output lines, until it ends
		pkgFailedTests          = map[string]int{}
		failedPkgs              = map[string]bool{}
	)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1024*1024), 64*1024*1024)
	for in.Scan() {
		line := in.Text()
		var e event
		if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &e) != nil {
			fmt.Println(line) // not an event: go's own diagnostics
			continue
		}
		key := e.Package + " " + e.Test
		switch {
		case e.Action == "build-output":
			fmt.Print(e.Output)
		case e.Test == "" && e.Action == "output":
			if strings.TrimSpace(e.Output) != "PASS" {
				fmt.Print(e.Output)
			}
		case e.Test == "" && e.Action == "fail":
			failedPkgs[e.Package] = true
		case e.Test == "":
		case e.Action == "output":
			testOutput[key] = append(testOutput[key], e.Output)
		case e.Action == "pass":
			passed++
			delete(testOutput, key)
		case e.Action == "skip":
			skipped++
			delete(testOutput, key)
		case e.Action == "fail":
			failed++
			pkgFailedTests[e.Package]++
			failedNames = append(failedNames, e.Package+" "+e.Test)
			fmt.Printf("\n=== output of failed test %s (%s)\n%s", e.Test, e.Package, strings.Join(testOutput[key], ""))
			delete(testOutput, key)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Println("testreport: reading go test output:", err)
		failed++
		failedNames = append(failedNames, "(unreadable go test output)")
	}
	// Tests that started but never ended: the binary died under them.
	var unfinished []string
	for key := range testOutput {
		unfinished = append(unfinished, key)
	}
	sort.Strings(unfinished)
	for _, key := range unfinished {
		fmt.Printf("\n=== output of unfinished test %s\n%s", key, strings.Join(testOutput[key], ""))
	}
	var pkgs []string
	for pkg := range failedPkgs {
		pkgs = append(pkgs, pkg)
	}
	sort.Strings(pkgs)
	for _, pkg := range pkgs {
		if pkgFailedTests[pkg] == 0 {
			failed++
			failedNames = append(failedNames, pkg+" (package failed outside any test)")
		}
	}
	if *testStatus != 0 && failed == 0 {
		failed++
		failedNames = append(failedNames, "go test (failed outside any package)")
	}
	if *vetStatus != 0 {
		failed++
		failedNames = append(failedNames, "go vet")
	}
	if len(failedNames) > 0 {
		fmt.Println("\nFailed:")
		for _, name := range failedNames {
			fmt.Println("  " + name)
		}
	}
	summary := fmt.Sprintf("%d passed, %d failed", passed, failed)
	if skipped > 0 {
		summary += fmt.Sprintf(", %d skipped", skipped)
	}
	fmt.Println(summary)
	if failed > 0 {
		os.Exit(1)
	}
}
