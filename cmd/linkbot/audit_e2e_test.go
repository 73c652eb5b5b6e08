package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/pairing/fakewawp"
	"github.com/linkbot/linkbot/store"
)

// audit runs `linkbot audit args…` with the harness's environment.
func (h *harness) audit(args ...string) (string, error) {
	h.t.Helper()
	var out, errOut bytes.Buffer
	err := runWith(context.Background(), h.opts, append([]string{"linkbot", "audit"}, args...), func(k string) string { return h.env[k] }, &out, &errOut)
	return out.String() + errOut.String(), err
}

// socketPath is where the running bot serves the audit log.
func (h *harness) socketPath() string { return h.env["LINKBOT_DB"] + ".sock" }

// TestListenerServesNoAudit: the metrics listener (which the Dockerfile
// publishes) does not serve the audit log: before, anyone reaching it read
// every event with GET /audit.
func TestListenerServesNoAudit(t *testing.T) {
	h := newHarness(t)
	addr := freeAddr(t)
	h.env["LINKBOT_HTTP_ADDR"] = addr
	h.start()
	env := h.command("U1", "support-eg +201112223333")
	h.waitText(env.MessageID, "Enter this code")
	for _, path := range []string{"/audit", "/audit?since=8760h", "/audit?phone=%2B201112223333"} {
		if st, body := get(t, "http://"+addr+path); st != http.StatusNotFound || strings.Contains(body, "U1") {
			t.Errorf("GET %s = %d %q, want 404", path, st, body)
		}
	}
	if st, _ := get(t, "http://"+addr+"/metrics"); st != 200 {
		t.Errorf("/metrics = %d", st)
	}
}

// TestAuditWhileRunningThroughTheSocket: with no HTTP listener at all,
// `linkbot audit` reads the running bot's log through a unix socket beside
// the database, which only the database's owner may open (0600), and
// which is gone after shutdown.
func TestAuditWhileRunningThroughTheSocket(t *testing.T) {
	h := newHarness(t)
	h.start()
	env := h.command("U1", "support-eg 0111 222 3333")
	h.waitText(env.MessageID, "Enter this code")
	fi, err := os.Lstat(h.socketPath())
	if err != nil {
		t.Fatalf("no audit socket beside the database: %v", err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("audit socket mode %v, want a socket with 0600", fi.Mode())
	}
	out, err := h.audit("--phone", "+201112223333")
	if err != nil {
		t.Fatalf("audit while running: %v\n%s", err, out)
	}
	if !strings.Contains(out, "code_issued") || !strings.Contains(out, "+20 11 ••• 333") {
		t.Errorf("audit while running:\n%s", out)
	}
	h.stop()
	if _, err := os.Lstat(h.socketPath()); !os.IsNotExist(err) {
		t.Errorf("audit socket left behind after shutdown: %v", err)
	}
}

// TestStaleAuditSocketReplaced: a socket left by a crash is replaced; a
// file that is not a socket is never removed (the bot runs without the
// socket and says so).
func TestStaleAuditSocketReplaced(t *testing.T) {
	t.Run("stale socket", func(t *testing.T) {
		h := newHarness(t)
		ln, err := net.Listen("unix", h.socketPath())
		if err != nil {
			t.Fatal(err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close() // what a kill -9 leaves behind
		h.start()
		if out, err := h.audit(); err != nil {
			t.Fatalf("audit with a replaced stale socket: %v\n%s", err, out)
		}
		if fi, err := os.Lstat(h.socketPath()); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("socket after replacing a stale one: %v %v", fi, err)
		}
	})
	t.Run("not a socket", func(t *testing.T) {
		h := newHarness(t)
		writeFile(t, h.socketPath(), "precious")
		h.start()
		env := h.command("U1", "support-eg +201112223333")
		h.waitText(env.MessageID, "Enter this code")
		if b, err := os.ReadFile(h.socketPath()); string(b) != "precious" {
			t.Errorf("a file that is not a socket was replaced: %q %v", b, err)
		}
		if !strings.Contains(h.logs.String(), "audit socket") {
			t.Errorf("no warning about the audit socket:\n%s", h.logs.String())
		}
		out, err := h.audit()
		if err == nil || !strings.Contains(out+err.Error(), ".sock") {
			t.Errorf("audit while running without a socket: %v\n%s", err, out)
		}
		h.stop()
		if b, _ := os.ReadFile(h.socketPath()); string(b) != "precious" {
			t.Errorf("shutdown removed a file that is not the bot's socket")
		}
	})
}

// TestAuditSocketPathLimit: a unix socket path is limited to 107 bytes
// (sun_path). Any database path whose socket path fits gets its socket,
// whatever the file's name (the socket is first made under a temporary name
// beside it, which must not be the longer of the two); one that does not
// fit is refused with a message that says why.
func TestAuditSocketPathLimit(t *testing.T) {
	for _, tt := range []struct {
		name, file string
		length     int
		ok         bool
	}{
		{"default name, path of 107 bytes", "linkbot.db", 107, true},
		{"short name, path of 107 bytes", "l", 107, true},
		{"short name, short path", "l", 60, true},
		{"path of 108 bytes", "linkbot.db", 108, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			pad := tt.length - len(base) - len("/") - len("/"+tt.file+".sock")
			if pad < 1 {
				t.Skipf("temporary directory %s too long for a %d-byte socket path", base, tt.length)
			}
			dir := filepath.Join(base, strings.Repeat("d", pad))
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			dbPath := filepath.Join(dir, tt.file)
			sock := auditSocketPath(dbPath)
			if len(sock) != tt.length {
				t.Fatalf("test setup: socket path of %d bytes, want %d", len(sock), tt.length)
			}
			db, err := store.Open(dbPath, store.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			stop, err := serveAuditSocket(sock, db, slog.New(slog.DiscardHandler))
			if !tt.ok {
				if err == nil || !strings.Contains(err.Error(), "107 bytes") {
					t.Errorf("socket path of %d bytes: %v, want an error saying the limit is 107 bytes", len(sock), err)
				}
				if stop != nil {
					stop()
				}
				return
			}
			if err != nil {
				t.Fatalf("socket path of %d bytes refused: %v", len(sock), err)
			}
			defer stop()
			if _, _, err := askRunningBot(sock, auditRequest{Limit: 1}); err != nil {
				t.Errorf("reading through the socket: %v", err)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) != 0 {
				t.Errorf("temporary files left beside the database: %v", left)
			}
		})
	}
}

// TestAuditSocketSeesWhatTheFileShows: every query gives the same answer
// over the socket (bot running) as from the file (bot stopped); the
// socket hands out no phone keys and nothing but audit events, and keeps
// the same bounds.
func TestAuditSocketSeesWhatTheFileShows(t *testing.T) {
	h := newHarness(t)
	h.setConfig("default_region: EG\n")
	h.start()
	for _, phone := range []string{"0111 222 3333", "0100 999 8888"} {
		env := h.command("U1", "support-eg "+phone)
		h.waitText(env.MessageID, "Enter this code")
		h.tryClick(env.MessageID, "U1", "cancel")
		h.waitText(env.MessageID, "Cancelled")
	}
	queries := [][]string{
		nil,
		{"--json"},
		{"--phone", "+201112223333", "--json"},
		{"--phone", "0100 999 8888"},
		{"--instance", "support-eg"},
		{"--instance", instanceEG, "--json"},
		{"--limit", "2"},
		{"--since", "1m", "--limit", "100000"},
	}
	running := map[int]string{}
	for i, q := range queries {
		out, err := h.audit(q...)
		if err != nil {
			t.Fatalf("audit %q while running: %v\n%s", q, err, out)
		}
		running[i] = out
		if strings.Contains(out, "phone_key") || strings.Contains(out, "201112223333") {
			t.Errorf("audit %q over the socket shows a phone key or digits:\n%s", q, out)
		}
	}
	// Straight to the socket: out-of-bounds queries are refused, and
	// nothing else is served.
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", h.socketPath())
	}}}
	for path, want := range map[string]int{
		"/audit?limit=0":       http.StatusBadRequest,
		"/audit?limit=1000001": http.StatusBadRequest,
		"/audit?phone=abc":     http.StatusBadRequest,
		"/metrics":             http.StatusNotFound,
		"/pairings":            http.StatusNotFound,
	} {
		resp, err := client.Get("http://linkbot" + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("socket GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
	h.stop()
	for i, q := range queries {
		out, err := h.audit(q...)
		if err != nil {
			t.Fatalf("audit %q from the file: %v", q, err)
		}
		if diff := cmp.Diff(mask(out), mask(running[i])); diff != "" {
			t.Errorf("audit %q: socket and file differ (-file +socket):\n%s", q, diff)
		}
	}
	if !strings.Contains(running[6], "2 events") || !strings.Contains(running[6], "--limit") {
		t.Errorf("--limit 2 does not say that older events were left out:\n%s", running[6])
	}
}

// TestAuditFlagsUseTheConfigFile: --instance takes the 12-character ID as
// its help says (events record the alias), and --phone reads a national
// number with the config file's default_region, not only the environment's.
func TestAuditFlagsUseTheConfigFile(t *testing.T) {
	h := newHarness(t)
	h.setConfig("default_region: EG\n")
	h.start()
	env := h.command("U1", "support-eg 0111 222 3333")
	h.waitText(env.MessageID, "Enter this code")
	h.stop()
	byAlias, err := h.audit("--instance", "support-eg")
	if err != nil || !strings.Contains(byAlias, "code_issued") {
		t.Fatalf("--instance support-eg: %v\n%s", err, byAlias)
	}
	byID, err := h.audit("--instance", instanceEG)
	if err != nil || byID != byAlias {
		t.Errorf("--instance %s (-alias +ID):\n%s%v", instanceEG, cmp.Diff(byAlias, byID), err)
	}
	byPhone, err := h.audit("--phone", "0111 222 3333")
	if err != nil || byPhone != byAlias {
		t.Errorf("--phone 0111 222 3333 with default_region EG in the file (-alias +phone):\n%s%v", cmp.Diff(byAlias, byPhone), err)
	}
	if out, err := h.audit("--instance", "no-such-instance"); err == nil {
		t.Errorf("--instance no-such-instance accepted:\n%s", out)
	}
}

// TestAuditKeepsNoRecomputablePhoneKey: after a real session the database
// holds no unkeyed phone key (sha256 of the digits, which anyone can
// recompute from a guess), and `audit --json` prints no key at all.
func TestAuditKeepsNoRecomputablePhoneKey(t *testing.T) {
	h := newHarness(t)
	h.start()
	env := h.command("U1", "support-eg +201112223333")
	h.waitText(env.MessageID, "Enter this code")
	h.stop()
	sum := sha256.Sum256([]byte("linkbot-phone:201112223333"))
	raw, err := os.ReadFile(h.env["LINKBOT_DB"])
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(hex.EncodeToString(sum[:8]))) {
		t.Errorf("the database holds the unkeyed phone key sha256(\"linkbot-phone:\"+digits)")
	}
	out, err := h.audit("--json")
	if err != nil || !strings.Contains(out, "code_issued") || strings.Contains(out, "phone_key") {
		t.Errorf("audit --json: %v\n%s", err, out)
	}
}

// TestOldAuditEventsStillFound: a database written before phone keys were
// keyed and indexed (store/testdata/audit_v0.db.gz) keeps answering:
// `linkbot audit --phone` from the file as it is, then after the bot has
// opened (and upgraded) it, over the socket and in /link history.
func TestOldAuditEventsStillFound(t *testing.T) {
	h := newHarness(t)
	f, err := os.Open(filepath.Join("..", "..", "store", "testdata", "audit_v0.db.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	writeFile(t, h.env["LINKBOT_DB"], string(raw))
	before, err := h.audit("--phone", "+201112223333", "--since", "87600h")
	if err != nil || !strings.Contains(before, "5 events") {
		t.Fatalf("old database, read as it is: %v\n%s", err, before)
	}
	h.start()
	env := h.command("U1", "support-eg +201112223333")
	h.waitText(env.MessageID, "Enter this code")
	during, err := h.audit("--phone", "+201112223333", "--since", "87600h")
	if err != nil || !strings.Contains(during, "7 events") || !strings.Contains(during, "field-ng") {
		t.Errorf("upgraded database over the socket: %v\n%s", err, during)
	}
	hist := h.command("U1", "history +20 111 222 3333")
	v := h.waitText(hist.MessageID, "Last 7 events for")
	if !strings.Contains(shown(v), "*linked*") {
		t.Errorf("history lacks the old events:\n%s", shown(v))
	}
}

// TestHistoryShowsOnlyPermittedInstances: /link history for a phone leaves
// out events of instances the asker may not use, and history for such an
// instance is refused.
func TestHistoryShowsOnlyPermittedInstances(t *testing.T) {
	h := newHarness(t)
	const ng = "B1B2C3D4E5F6"
	h.wawp.AddInstance(ng, "")
	writeFile(t, h.configPath, "wawp_timeout: 500ms\ntick_interval: 1s\naccess:\n  users: [UEG]\ninstances:\n"+
		"  - alias: support-eg\n    id: "+instanceEG+"\n    region: EG\n"+
		"  - alias: field-ng\n    id: "+ng+"\n    region: NG\n    access:\n      users: [UNG]\n      ask: \"#field-ng-leads\"\n")
	h.start()
	for _, c := range []struct{ user, text string }{{"UEG", "support-eg +201112223333"}, {"UNG", "field-ng +201112223333"}} {
		env := h.command(c.user, c.text)
		h.waitText(env.MessageID, "Enter this code")
	}
	for _, tt := range []struct {
		user, subject string
		want, never   string
	}{
		{"UEG", "+201112223333", "Last 2 events", "field-ng"},
		{"UNG", "+201112223333", "Last 2 events", "support-eg"},
		{"UNG", "field-ng", "Last 2 events", "support-eg"},
		{"UEG", "field-ng", "You are not on the list of people who may request pairing codes for field-ng. Ask #field-ng-leads", "Last"},
		{"UEG", ng, "You are not on the list of people who may request pairing codes for field-ng", "Last"},
	} {
		env := h.command(tt.user, "history "+tt.subject)
		v := h.waitText(env.MessageID, tt.want)
		if strings.Contains(shown(v), tt.never) {
			t.Errorf("%s: history %s shows %q:\n%s", tt.user, tt.subject, tt.never, shown(v))
		}
	}
}

// TestHistoryByReusedAliasHidesRestrictedInstance: an alias moved from one
// instance to another (the instance replaced, the alias kept) does not open
// the old, restricted instance's history to the new instance's users: an
// instance's history holds the events recorded with its ID, and each event
// passes the access rules of its own instance.
func TestHistoryByReusedAliasHidesRestrictedInstance(t *testing.T) {
	h := newHarness(t)
	const ng = "B1B2C3D4E5F6"
	h.wawp.AddInstance(ng, "")
	// Before: "support" is the restricted instance NG, used by UNG only.
	writeFile(t, h.configPath, "wawp_timeout: 500ms\ntick_interval: 1s\naccess:\n  users: [UEG]\ninstances:\n"+
		"  - alias: support-eg\n    id: "+instanceEG+"\n    region: EG\n"+
		"  - alias: support\n    id: "+ng+"\n    region: NG\n    access:\n      users: [UNG]\n")
	h.start()
	env := h.command("UNG", "support +201112223333")
	h.waitText(env.MessageID, "Enter this code")
	h.stop()
	// After: the alias "support" names the EG instance; NG is renamed and
	// stays restricted to UNG.
	writeFile(t, h.configPath, "wawp_timeout: 500ms\ntick_interval: 1s\naccess:\n  users: [UEG]\ninstances:\n"+
		"  - alias: support\n    id: "+instanceEG+"\n    region: EG\n"+
		"  - alias: field-ng\n    id: "+ng+"\n    region: NG\n    access:\n      users: [UNG]\n")
	h.start()
	env = h.command("UEG", "support +201009998888")
	h.waitText(env.MessageID, "Enter this code")
	// UEG may not read field-ng's history directly...
	denied := h.command("UEG", "history field-ng")
	h.waitText(denied.MessageID, "You are not on the list")
	// ...nor through the alias its events were recorded under.
	hist := h.command("UEG", "history support")
	v := h.waitText(hist.MessageID, "Last 2 events for `support`")
	if s := shown(v); strings.Contains(s, "UNG") || strings.Contains(s, "+20 111") {
		t.Errorf("UEG (not allowed on %s) reads its events through the reused alias:\n%s", ng, s)
	}
	// UNG finds them under the instance's name today (with UEG's refusal,
	// which is audited just after its ack: wait for it).
	if !eventually(waitLong, func() bool {
		out, err := h.audit("--instance", "field-ng", "--since", "1h")
		return err == nil && strings.Contains(out, "UEG")
	}) {
		t.Fatal("UEG's refusal on field-ng was never audited")
	}
	hist = h.command("UNG", "history field-ng")
	if s := shown(h.waitText(hist.MessageID, "Last 3 events for `field-ng`")); !strings.Contains(s, "<@UNG> · support") {
		t.Errorf("field-ng's own history lacks its events:\n%s", s)
	}
	h.stop()
	// linkbot audit --instance reads the same way.
	out, err := h.audit("--instance", "support", "--since", "1h")
	if err != nil || strings.Contains(out, "UNG") || !strings.Contains(out, "UEG") {
		t.Errorf("linkbot audit --instance support: %v\n%s", err, out)
	}
}

// TestAccessAppliesToButtons: a user taken off the access rules gets no
// more codes from the messages they already have: New code and Try again
// are refused (and audited) without asking Wawp.
func TestAccessAppliesToButtons(t *testing.T) {
	h := newHarness(t)
	const eg2 = "B1B2C3D4E5F6"
	h.wawp.AddInstance(eg2, "")
	instances := "  - alias: support-eg2\n    id: " + eg2 + "\n    region: EG\n"
	h.setConfig(instances + "access:\n  users: [U1, U2]\n")
	h.wawp.WarmUp(eg2, time.Hour)
	h.start()
	live := h.command("U1", "support-eg +201112223333")
	h.waitText(live.MessageID, "Code 1 of 3")
	warming := h.command("U1", "support-eg2 +201009998888")
	h.waitText(warming.MessageID, "still starting up")
	h.stop()

	h.setConfig(instances + "access:\n  users: [U2]\n  ask: \"<@UADMIN>\"\n")
	h.start()
	requests := len(h.wawp.Calls(fakewawp.RequestCode))
	for _, c := range []struct{ msg, action, instance string }{{live.MessageID, "new_code", "support-eg"}, {warming.MessageID, "try_again", "support-eg2"}} {
		if _, err := h.tryClick(c.msg, "U1", c.action); err != nil {
			t.Fatal(err)
		}
		h.waitText(c.msg, "You are not on the list of people who may request pairing codes for "+c.instance+". Ask <@UADMIN>")
	}
	if got := len(h.wawp.Calls(fakewawp.RequestCode)); got != requests {
		t.Errorf("Wawp was asked for %d codes after the user lost access", got-requests)
	}
	h.stop()
	var refused []string
	for _, e := range h.auditEvents() {
		if e.Kind == "refused" && e.Outcome == "access_denied" && e.User == "U1" && e.Phone != "" {
			refused = append(refused, e.Instance)
		}
	}
	if diff := cmp.Diff([]string{"support-eg", "support-eg2"}, refused); diff != "" {
		t.Errorf("access refusals of clicks audited (-want +got):\n%s", diff)
	}
}

// damagedAuditDB writes a database with many audit events and marks a leaf
// page from the middle of the file as a freelist page: Open's quick look
// (the first and last page of each bucket) does not see it.
func damagedAuditDB(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "linkbot.db")
	db, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range 3000 {
		e := pairing.Event{Time: now.Add(-time.Duration(3000-i) * time.Second), Kind: "requested", User: fmt.Sprint("U", i),
			Instance: "support-eg", Phone: "+20 11 ••• 333", Digits: fmt.Sprintf("2011122%05d", i), Outcome: "ok"}
		if err := db.AppendAudit(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A leaf holding audit records, from the middle out, that the store
	// does read: a page of an index, or one bbolt has freed, is not read
	// by an audit over the whole log (the phone index's pages fall where
	// the random phone-key secret puts them).
	ps := os.Getpagesize()
	var leaves []int
	for id := 2; (id+1)*ps <= len(raw); id++ {
		page := raw[id*ps : (id+1)*ps]
		if binary.LittleEndian.Uint64(page) == uint64(id) && binary.LittleEndian.Uint16(page[8:]) == 0x02 &&
			bytes.Contains(page, []byte(`"kind":"requested"`)) {
			leaves = append(leaves, id)
		}
	}
	for i := range leaves {
		mid := leaves[len(leaves)/2+(i+1)/2*(1-2*(i%2))] // the middle one, then one after, one before, …
		kind := binary.LittleEndian.Uint16(raw[mid*ps+8:])
		binary.LittleEndian.PutUint16(raw[mid*ps+8:], 0x10) // freelist
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		if damaged(path) {
			return path
		}
		binary.LittleEndian.PutUint16(raw[mid*ps+8:], kind)
	}
	t.Fatalf("no page of %d audit leaves made the audit log unreadable", len(leaves))
	return ""
}

// damaged reports whether reading the whole audit log at path says the
// file is damaged.
func damaged(path string) bool {
	db, err := store.Open(path, store.Options{ReadOnly: true})
	if err != nil {
		return errors.Is(err, store.ErrDamaged)
	}
	defer db.Close()
	_, _, err = db.Audit(context.Background(), pairing.AuditQuery{Limit: 100000})
	return errors.Is(err, store.ErrDamaged)
}

// TestAuditOnDamagedFileSaysRestoreBackup: `linkbot audit` on a database
// with one bad page in the middle says the file is damaged and to restore
// a backup (exit 1), instead of crashing with a Go panic (exit 2).
func TestAuditOnDamagedFileSaysRestoreBackup(t *testing.T) {
	path := damagedAuditDB(t)
	status, stderr := runMain(t, map[string]string{"LINKBOT_DB": path}, "audit", "--since", "24h", "--limit", "100000")
	if status != exitFailure || strings.Contains(stderr, "goroutine ") {
		first, _, _ := strings.Cut(stderr, "\n\n")
		t.Errorf("exit %d, want %d: %s", status, exitFailure, first)
	}
	for _, want := range []string{path, "damaged", "backup"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

// TestAuditChecksConfigAsCheckConfigDoes: `linkbot audit` reads
// LINKBOT_CONFIG with the same checker as check-config and the bot, so a
// wrong kind of value is a FILE:LINE problem without Go's type names
// (before, a bare yaml.Unmarshal printed `struct { Alias string
// "yaml:\"alias\""; … }`); and, like check-config, it does not need the
// variables token_env names.
func TestAuditChecksConfigAsCheckConfigDoes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yml")
	env := map[string]string{"LINKBOT_CONFIG": path, "LINKBOT_DB": filepath.Join(dir, "none.db")}
	getenv := func(k string) string { return env[k] }
	writeFile(t, path, "instances: {a: 1}\nlimits: 5\n")
	err := run(context.Background(), []string{"linkbot", "audit"}, getenv, io.Discard, io.Discard)
	want := []string{
		path + `:1: instances: want a list such as [A, B], not a mapping`,
		path + `:2: limits: want keys under it, not a single value`,
	}
	var cerr *configError
	if !errors.As(err, &cerr) {
		t.Fatalf("linkbot audit: %v, want a configError", err)
	}
	if diff := cmp.Diff(want, cerr.problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	writeFile(t, path, "default_region: EG\ninstances:\n  - {alias: support-ng, id: A1B2C3D4E5F6, region: NG, token_env: WAWP_TOKEN_NG}\n")
	db, err := store.Open(env["LINKBOT_DB"], store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"linkbot", "audit", "--instance", "support-ng", "--phone", "0803 123 4567"}, getenv, &out, io.Discard); err != nil {
		t.Errorf("linkbot audit with token_env unset: %v", err)
	}
	if !strings.Contains(out.String(), "0 events since") {
		t.Errorf("output:\n%s", out.String())
	}
}
