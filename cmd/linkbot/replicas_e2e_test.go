package main

import (
	"strings"
	"testing"
	"time"

	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/pairing/fakewawp"
)

// TestDuplicateDeliveryRequestsOneCode: Slack delivers a /link envelope
// twice (issue 11); both deliveries are acked at once, and the command is
// handled once: one request-code, one code message. A click delivered
// twice is handled once too: one Cancel, no second answer. On the bbolt
// file and on PostgreSQL.
func TestDuplicateDeliveryRequestsOneCode(t *testing.T) {
	for _, backend := range []string{"bbolt", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			h := newHarness(t)
			if backend == "postgres" {
				h.env["LINKBOT_DATABASE_URL"] = pgURL(t)
			}
			h.start()
			h.slack.DuplicateNext(1)
			env := h.command("U1", "support-eg +201112223333")
			h.waitText(env.MessageID, "Enter this code")
			h.slack.DuplicateNext(1)
			other := h.command("U2", "help")
			h.waitAck(other)
			if got := len(h.wawp.Calls(fakewawp.RequestCode)); got != 1 {
				t.Errorf("request-code called %d times for one command delivered twice; want 1", got)
			}
			if e := h.slack.Envelope(env.ID); e.Deliveries != 2 || e.AckedAt.IsZero() {
				t.Errorf("the envelope was delivered %d times (acked %v); want 2, acked", e.Deliveries, !e.AckedAt.IsZero())
			}
			codes := 0
			for _, m := range h.slack.Thread(env.MessageID) {
				if strings.Contains(m.Latest().Text, "code") && strings.Contains(string(m.Latest().Blocks), "Enter this code") {
					codes++
				}
			}
			if screen := screenText(h.slack.Thread(env.MessageID)); strings.Contains(screen, "already has a live code") {
				t.Errorf("the second delivery was handled as a second command:\n%s", screen)
			}
			if codes != 1 {
				t.Errorf("%d code messages for one command; want 1:\n%s", codes, screenText(h.slack.Thread(env.MessageID)))
			}

			h.slack.DuplicateNext(1)
			click := h.click(env.MessageID, "U1", "cancel")
			h.waitText(env.MessageID, "Cancelled")
			h.stop()
			if e := h.slack.Envelope(click.ID); e.Deliveries != 2 {
				t.Errorf("the click was delivered %d times; want 2", e.Deliveries)
			}
			if n := strings.Count(h.logs.String(), "duplicate"); n < 2 {
				t.Errorf("the duplicates are not logged as dropped (%d lines):\n%s", n, h.logs.String())
			}
		})
	}
}

// TestDatabaseGap: the database becomes unreachable mid-run (a TCP proxy
// the test controls drops every connection and refuses new ones; the
// shared server is never restarted). A /link and a click during the gap
// are answered "linkbot cannot reach its database right now; nothing was
// done", Wawp is not called, /readyz says not ready, the process keeps
// running; when the database is back, /readyz recovers and the same
// command gets its code.
func TestDatabaseGap(t *testing.T) {
	h := newHarness(t)
	proxy, dbURL := newDBProxy(t, pgURL(t))
	h.env["LINKBOT_DATABASE_URL"] = dbURL
	addr := freeAddr(t)
	h.env["LINKBOT_HTTP_ADDR"] = addr
	h.start()
	ready := func() bool { st, _ := get(t, "http://"+addr+"/readyz"); return st == 200 }
	if !eventually(waitLong, ready) {
		t.Fatal("/readyz never ready")
	}
	first := h.command("U1", "support-eg +201112223333")
	h.waitText(first.MessageID, "Enter this code")
	calls := len(h.wawp.Calls(fakewawp.RequestCode))

	proxy.cut()
	const sorry = "linkbot cannot reach its database right now; nothing was done — try again in a minute"
	gap := h.command("U2", "support-eg +201009998888")
	h.waitText(gap.MessageID, sorry)
	h.click(first.MessageID, "U1", "cancel")
	if !eventually(waitLong, func() bool { return strings.Contains(screenText(h.slack.Thread(first.MessageID)), sorry) }) {
		t.Errorf("a click during the gap is not answered with the clear message:\n%s", screenText(h.slack.Thread(first.MessageID)))
	}
	if got := len(h.wawp.Calls(fakewawp.RequestCode)); got != calls {
		t.Errorf("request-code called %d times during the gap", got-calls)
	}
	if ready() {
		t.Error("/readyz ok while the database is unreachable")
	}

	proxy.restore()
	if !eventually(waitLong, ready) {
		t.Fatal("/readyz did not recover after the gap")
	}
	// U1's code is still live (the Cancel did nothing): the instance is
	// held, so the retried command is refused by the limit, not lost.
	again := h.command("U2", "support-eg +201009998888")
	h.waitText(again.MessageID, "already has a live code")
	h.click(first.MessageID, "U1", "cancel")
	h.waitText(first.MessageID, "Cancelled")
	after := h.command("U2", "support-eg +201009998888")
	h.waitText(after.MessageID, "Enter this code")
	_, metrics := get(t, "http://"+addr+"/metrics")
	for _, want := range []string{
		"linkbot_leader 1",
		"linkbot_leader_terms_total ",
		`linkbot_db_call_seconds_count{call="Reserve",result="ok"}`,
		`linkbot_db_call_seconds_count{call="Reserve",result="unavailable"} 1`,
		`linkbot_commands_total{outcome="db_unavailable"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	h.stop()
	if logs := h.logs.String(); strings.Contains(logs, "panic") {
		t.Errorf("a panic during the gap:\n%s", logs)
	}
}

// TestFormSubmissionDeliveredTwice: the form's submission delivered twice
// (issue 11) asks Wawp for one code, and the window shows it, not a
// refusal of the second delivery.
func TestFormSubmissionDeliveredTwice(t *testing.T) {
	h := newHarness(t)
	h.manualTicks()
	h.start()
	h.command("U1", "")
	h.modal("U1", "Instance states as of now.")
	h.slack.DuplicateNext(1)
	env := h.submitForm("U1", instanceEG, "0111 222 3333", "")
	h.modal("U1", "Enter this code on the phone")
	h.stop() // every delivery handled
	if e := h.slack.Envelope(env.ID); e.Deliveries != 2 {
		t.Errorf("the submission was delivered %d times; want 2", e.Deliveries)
	}
	if n := len(h.wawp.Calls(fakewawp.RequestCode)); n != 1 {
		t.Errorf("request-code called %d times for one submission delivered twice", n)
	}
	if v, _ := h.slack.Modal("U1"); !strings.Contains(v.Shown(), "Enter this code on the phone") {
		t.Errorf("the window shows\n%s\nwant the code", v.Shown())
	}
	// The second delivery decided nothing: no refusal stored or audited.
	for _, e := range h.auditEvents() {
		if e.Kind == pairing.EventRefused {
			t.Errorf("the second delivery was refused as a request of its own: %+v", e)
		}
	}
}

// TestRedeliveryInNewEnvelopeRequestsOneCode (issue 11 review): the ack of
// a /link is lost, and Slack sends the command again in a new envelope
// (a new envelope_id, the same payload: Slack does not promise to keep
// the ID, and a retry in a new envelope has been reported,
// gugu91/pinet#226) while the bot already handles it. The command's
// identity is its trigger_id, so it is handled once: one request-code.
func TestRedeliveryInNewEnvelopeRequestsOneCode(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.slack.SetRedelivery(200*time.Millisecond, 2)
	h.slack.SetRedeliveryNewEnvelopes(true)
	h.slack.DropAckNext(1)
	env := h.command("U1", "support-eg +201112223333")
	h.waitText(env.MessageID, "Enter this code")
	if !eventually(waitLong, func() bool { e := h.slack.Envelope(env.ID); return e.Deliveries == 2 && !e.AckedAt.IsZero() }) {
		t.Fatalf("the command was not redelivered and acked: %+v", h.slack.Envelope(env.ID))
	}
	if !eventually(waitLong, func() bool { return strings.Contains(h.logs.String(), "duplicate") }) {
		t.Errorf("the redelivery in a new envelope was not dropped as a duplicate:\n%s", h.logs.String())
	}
	h.stop()
	if got := len(h.wawp.Calls(fakewawp.RequestCode)); got != 1 {
		t.Errorf("request-code called %d times for one command redelivered in a new envelope; want 1", got)
	}
	if screen := screenText(h.slack.Thread(env.MessageID)); strings.Contains(screen, "already has a live code") {
		t.Errorf("the redelivery was handled as a second command:\n%s", screen)
	}
}
