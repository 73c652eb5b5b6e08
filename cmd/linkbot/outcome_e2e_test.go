package main

import (
	"strings"
	"testing"
	"time"

	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/store"
)

// TestOldOutcomeSpellingsReadAsToday: audit events written before the
// outcome vocabulary was one (limit:phone, access, warming_up,
// status:WORKING) read in today's spelling, the one the metrics use, in
// `linkbot audit` and in /link history; "error", which could mean a Wawp
// failure or the bot's own, is shown as it was written.
func TestOldOutcomeSpellingsReadAsToday(t *testing.T) {
	h := newHarness(t)
	db, err := store.Open(h.env["LINKBOT_DB"], store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour)
	old := []string{"limit:phone", "access", "warming_up", "status:WORKING", "error"}
	for i, o := range old {
		err := db.AppendAudit(t.Context(), pairing.Event{
			Time: t0.Add(time.Duration(i) * time.Minute), Kind: pairing.EventRefused, User: "U1", Instance: "support-eg", InstanceID: instanceEG,
			Phone: "+20 11 ••• 333", Digits: "201112223333", Outcome: pairing.Outcome(o),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	want := []string{"limit_phone", "access_denied", "status_starting", "status_working", "error"}

	out, err := h.audit("--phone", "+201112223333")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) > 6 && f[2] == "refused" {
			got = append(got, f[len(f)-1])
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("linkbot audit shows outcomes %q, want %q:\n%s", got, want, out)
	}

	h.start()
	env := h.command("U1", "history +20 111 222 3333")
	v := shown(h.waitText(env.MessageID, "Last 5 events"))
	for _, o := range want {
		if !strings.Contains(v, "· "+o+"\n") && !strings.HasSuffix(v, "· "+o) {
			t.Errorf("history lacks outcome %q:\n%s", o, v)
		}
	}
	for _, o := range old[:4] {
		if strings.Contains(v, "· "+o+"\n") || strings.HasSuffix(v, "· "+o) {
			t.Errorf("history shows the old spelling %q:\n%s", o, v)
		}
	}
}
