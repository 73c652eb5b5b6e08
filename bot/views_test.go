package bot

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/bot/fakeslack"
	"github.com/linkbot/linkbot/pairing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

const testCode = "7KQ2M9XD"

// allViews renders every view from fixed models, keyed by golden file name.
func allViews() map[string]Message {
	now := time.Date(2026, 11, 25, 14, 30, 0, 0, time.UTC)
	limit := pairing.Window{Max: 3, Period: 15 * time.Minute}
	code := CodeModel{
		PairingID: "p4x7k2m9q3w8z5y6", Code: testCode, Phone: "+20 11 12223333", Instance: "support-eg",
		InstanceID: "A1B2C3D4E5F6", RequestedBy: "U123", Now: now, ExpiresAt: now.Add(150 * time.Second),
		Lifetime: 150 * time.Second, Attempt: 1, PhoneLimit: limit,
	}
	midCountdown := code
	midCountdown.Now = now.Add(50 * time.Second)
	lastMinute := code
	lastMinute.Now = now.Add(130 * time.Second)
	limited := code
	limited.Attempt, limited.NewCodeAt = 3, now.Add(12*time.Minute)
	posted := code
	posted.Static = true
	dm := midCountdown
	dm.DM, dm.Channel = true, "C0SUPPORT"
	dmFailed := posted
	dmFailed.Note = dmFailedNote("messages_tab_disabled")
	holder := pairing.Pairing{RequestedBy: "U999", Phone: "201009998888", ExpiresAt: now.Add(2 * time.Minute)}
	handoffDM := dm
	handoffDM.HandedBy = "U123"
	withCardNote := posted
	withCardNote.Note = cardNote("linkbot", "not_in_channel")
	card := CardModel{Requester: "U123", Recipient: "U456", Instance: "support-eg", Masked: "+20 11 ••• 333", State: pairing.StateLive, ExpiresAt: now.Add(150 * time.Second)}
	cardState := func(st pairing.State, change func(*CardModel)) Message {
		m := card
		m.State = st
		if change != nil {
			change(&m)
		}
		return CardView(m)
	}
	again := "`/link support-eg +20 11 12223333`"
	qr := QRModel{PairingID: "p4x7k2m9q3w8z5y6", Link: "https://app.wawp.net/temp-qr/9f86d081884c7d659a2feaa0c55ad015", Phone: "+20 11 12223333",
		Instance: "support-eg", Now: now.Add(5 * time.Minute), ExpiresAt: now.Add(29 * time.Minute), Lifetime: 29 * time.Minute}
	qrStatic := qr
	qrStatic.Static = true
	qrAny := qr
	qrAny.Phone = ""
	limitPhone := &pairing.LimitError{Limit: pairing.LimitPhone, Phone: pairing.PhoneFromDigits("201112223333"), Count: 3, Window: limit, RetryAt: now.Add(12 * time.Minute)}
	return map[string]Message{
		// The QR fallback (issue 10): the offer, the link, its ends.
		"qr_offer_limit":      withQROffer(LimitView(limitPhone, "support-eg", now), "p4x7k2m9q3w8z5y6"),
		"qr_offer_locked_out": withQROffer(WawpErrorView(&pairing.APIError{Kind: pairing.ErrLockedOut}, "support-eg"), "p4x7k2m9q3w8z5y6"),
		"qr_offer_expired":    withQROffer(ExpiredView("+20 11 12223333", "p4x7k2m9q3w8z5y6", now, now), "p4x7k2m9q3w8z5y6"),
		"qr_live":             QRView(qr),
		"qr_live_static":      QRView(qrStatic),
		"qr_live_any_phone":   QRView(qrAny),
		"qr_linked":           QRLinkedView("+20 111 ••• 3333", "support-eg", now),
		"qr_expired":          QRExpiredView("support-eg", "p4x7k2m9q3w8z5y6"),
		"qr_cancelled":        QRCancelledView("support-eg"),
		"qr_unavailable":      WawpErrorView(pairing.ErrQRUnavailable, "support-eg"),
		"qr_failed":           QRFailedView("support-eg", string(pairing.OutcomeInstanceFailed)),
		"qr_failed_gone":      QRFailedView("support-eg", string(pairing.OutcomeInstanceGone)),
		"qr_wawp_error":       QRWawpErrorView(pairing.ErrServer, "support-eg"),
		"qr_interrupted":      QRInterruptedView("support-eg"),
		// Hand-off (issue 9): the requester's views, then the agent's DM.
		"handoff_requesting":        HandoffRequestingView(pairing.Phone{Digits: "201112223333", International: "+20 11 12223333"}, "support-eg", "U456"),
		"handoff_sent":              HandoffSentView("p4x7k2m9q3w8z5y6", "+20 11 12223333", "support-eg", "U456", now.Add(150*time.Second), ""),
		"handoff_sent_card_note":    HandoffSentView("p4x7k2m9q3w8z5y6", "+20 11 12223333", "support-eg", "U456", now.Add(150*time.Second), cardNote("linkbot", "channel_not_found")),
		"handoff_dm_refused":        HandoffDMRefusedView("U456", "messages_tab_disabled"),
		"handoff_code_refused":      HandoffCodeRefusedView("U456", "msg_too_long", "+20 11 12223333", "support-eg"),
		"dm_code_elsewhere":         DMCodeElsewhereView("+20 11 12223333", "support-eg", "C0SUPPORT"),
		"undelivered":               UndeliveredView(UndeliveredModel{PairingID: "p4x7k2m9q3w8z5y6", Phone: "+20 11 12223333", Instance: "support-eg", Now: now}),
		"undelivered_handoff_later": UndeliveredView(UndeliveredModel{PairingID: "p1", Phone: "+20 11 12223333", Instance: "support-eg", Recipient: "U456", Now: now, NewCodeAt: now.Add(10 * time.Minute)}),
		"handoff_recipient_self":    RecipientRefusedView(pairing.OutcomeRecipientSelf, "U123", again, ""),
		"handoff_recipient_bot":     RecipientRefusedView(pairing.OutcomeRecipientBot, "U456", again, ""),
		"handoff_recipient_gone":    RecipientRefusedView(pairing.OutcomeRecipientDeactivated, "U456", again, ""),
		"handoff_recipient_foreign": RecipientRefusedView(pairing.OutcomeRecipientForeign, "U456", again, ""),
		"handoff_recipient_unknown": RecipientRefusedView(pairing.OutcomeRecipientUnknown, "U456", again, "user_not_found"),
		"handoff_dm_waiting":        HandoffWaitingView("U123", "+20 11 12223333", "support-eg"),
		"dm_opening":                DMOpeningView("+20 11 12223333", "support-eg"),
		"code_handoff_dm":           CodeView(handoffDM),
		"handoff_dm_no_code":        HandoffNoCodeView("U123", "+20 11 12223333", "support-eg"),
		"usage_mention":             UsageView(&UsageError{Problem: UsageMention, Input: "support-eg <@U1> 1"}),
		"usage_not_a_person":        UsageView(&UsageError{Problem: UsageNotAPerson, Input: "<#C0SUPPORT|support>"}),
		"usage_mention_unescaped":   UsageView(&UsageError{Problem: UsageMentionUnescaped, Input: "@agent"}),
		"code_posted_card_note":     CodeView(withCardNote),
		"dm_sent_card_note":         withNote(DMSentView("p4x7k2m9q3w8z5y6", "+20 11 12223333", "support-eg", now.Add(150*time.Second)), cardNote("linkbot", "not_in_channel")),
		// The status card, in every state.
		"card_waiting":        CardView(card),
		"card_waiting_own":    cardState(pairing.StateLive, func(m *CardModel) { m.Recipient = "" }),
		"card_linked":         cardState(pairing.StateLinked, func(m *CardModel) { m.EndedAt = now.Add(70 * time.Second) }),
		"card_expired":        cardState(pairing.StateExpired, nil),
		"card_cancelled":      cardState(pairing.StateCancelled, nil),
		"card_wrong_phone":    cardState(pairing.StateWrongPhone, func(m *CardModel) { m.LinkedMasked = "+20 10 ••• 888" }),
		"card_failed":         cardState(pairing.StateFailed, func(m *CardModel) { m.Reason = pairing.Reason(pairing.OutcomeInstanceFailed) }),
		"card_failed_gone":    cardState(pairing.StateFailed, func(m *CardModel) { m.Reason = pairing.Reason(pairing.OutcomeInstanceGone) }),
		"card_failed_no_code": cardState(pairing.StateInterrupted, nil),

		"help":               HelpView([]string{"support-eg", "field-ng"}, "EG"),
		"requesting":         RequestingView(pairing.Phone{Digits: "201112223333", International: "+20 11 12223333"}, "support-eg"),
		"requesting_ext":     RequestingView(pairing.Phone{Digits: "14155552671", International: "+1 415-555-2671", Extension: "89"}, "support-us"),
		"phone_characters":   PhoneView(&pairing.PhoneError{Input: "+20 111 * 222", Problem: pairing.PhoneBadCharacters}),
		"usage_no_phone":     UsageView(&UsageError{Problem: UsageNoPhone, Input: "support-eg"}),
		"usage_instance":     UsageView(&UsageError{Problem: UsageBadInstance, Input: "<!channel>"}),
		"unknown_instance":   UnknownInstanceView("nosuch", []string{"support-eg"}),
		"phone_invalid":      PhoneView(&pairing.PhoneError{Input: "0111 222 333", Region: "EG", Understood: "+20 111222333", Problem: pairing.PhoneInvalid}),
		"phone_letters":      PhoneView(&pairing.PhoneError{Input: "+20 CALL <!here>", Problem: pairing.PhoneLetters}),
		"foreign_team":       ForeignTeamView(),
		"code_fresh":         CodeView(code),
		"code_mid_countdown": CodeView(midCountdown),
		"code_last_minute":   CodeView(lastMinute),
		"failed":             FailedView("+20 11 12223333", "support-eg", "instance_failed"),
		"failed_gone":        FailedView("+20 11 12223333", "support-eg", "instance_gone"),
		"code_limit":         CodeView(limited),
		"code_posted":        CodeView(posted),
		"code_dm":            CodeView(dm),
		"code_dm_failed":     CodeView(dmFailed),
		"dm_sent":            DMSentView("p4x7k2m9q3w8z5y6", "+20 11 12223333", "support-eg", now.Add(150*time.Second)),
		"limit_phone":        LimitView(&pairing.LimitError{Limit: pairing.LimitPhone, Count: 3, Window: limit, RetryAt: now.Add(15 * time.Minute), Phone: pairing.Phone{International: "+20 11 12223333"}}, "support-eg", now),
		"limit_user":         LimitView(&pairing.LimitError{Limit: pairing.LimitUser, Count: 20, Window: pairing.Window{Max: 20, Period: time.Hour}, RetryAt: now.Add(5 * time.Minute)}, "support-eg", now),
		"limit_instance":     LimitView(&pairing.LimitError{Limit: pairing.LimitInstance, RetryAt: holder.ExpiresAt, Holder: holder}, "support-eg", now),
		"status_starting":    StatusView(&pairing.StatusError{Status: pairing.StatusStarting, RetryAt: now.Add(10 * time.Second)}, "support-eg", "p4x7k2m9q3w8z5y6", now),
		"status_working":     StatusView(&pairing.StatusError{Status: pairing.StatusWorking, Me: "201009998888"}, "support-eg", "p1", now),
		"status_stopped":     StatusView(&pairing.StatusError{Status: pairing.StatusStopped}, "support-eg", "p1", now),
		"status_failed":      StatusView(&pairing.StatusError{Status: pairing.StatusFailed}, "support-eg", "p1", now),
		"status_unknown":     StatusView(&pairing.StatusError{Status: "OPENING"}, "support-eg", "p4x7k2m9q3w8z5y6", now),
		"wawp_timeout":       WawpErrorView(&pairing.APIError{Kind: pairing.ErrTimeout}, "support-eg"),
		"wawp_unauthorized":  WawpErrorView(&pairing.APIError{Kind: pairing.ErrUnauthorized}, "support-eg"),
		"internal_error":     InternalErrorView("E123"),
		"linked":             LinkedView("+20 11 12223333", "support-eg", now),
		"wrong_phone":        WrongPhoneView("+20 10 09998888", "+20 11 12223333", "support-eg"),
		"expired":            ExpiredView("+20 11 12223333", "p4x7k2m9q3w8z5y6", now, now),
		"expired_limited":    ExpiredView("+20 11 12223333", "p4x7k2m9q3w8z5y6", now, now.Add(10*time.Minute)),
		"cancelled":          CancelledView("+20 11 12223333"),
		"too_soon":           TooSoonView("support-eg", "p4x7k2m9q3w8z5y6", now.Add(4*time.Second), now),
		"ended":              EndedView(),
		"replaced":           ReplacedView(false),
		"window_failed":      WindowFailedView(),
		"interrupted": InterruptedView(InterruptedModel{Phone: "+20 11 12223333", Instance: "support-eg", Attempt: 2, PhoneLimit: limit,
			Now: now, NewCodeAt: now}),
		"interrupted_limited": InterruptedView(InterruptedModel{Phone: "+20 11 12223333", Instance: "support-eg", Attempt: 3, PhoneLimit: limit,
			Now: now, NewCodeAt: now.Add(12 * time.Minute)}),
	}
}

func TestViewsGolden(t *testing.T) {
	for name, m := range allViews() {
		t.Run(name, func(t *testing.T) {
			got, err := json.MarshalIndent(m.webhook(), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "views", name+".json")
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./bot -update to create it)", err)
			}
			if diff := cmp.Diff(strings.TrimSpace(string(want)), string(got)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", path, diff)
			}
		})
	}
}

// TestViewsWithinSlackLimits checks every view the way Slack would, and that
// the code appears only in the header of the code message.
func TestViewsWithinSlackLimits(t *testing.T) {
	for name, m := range allViews() {
		t.Run(name, func(t *testing.T) {
			blocks, err := json.Marshal(m.Blocks)
			if err != nil {
				t.Fatal(err)
			}
			if err := fakeslack.ValidateMessage(m.Text, blocks); err != nil {
				t.Errorf("Slack would refuse it: %v", err)
			}
			if strings.Contains(m.Text, testCode[:4]) {
				t.Errorf("fallback text %q holds the code", m.Text)
			}
			if strings.Contains(m.Text, "temp-qr") {
				t.Errorf("fallback text %q holds a QR link", m.Text)
			}
			if n := strings.Count(string(blocks), testCode[:4]+"-"+testCode[4:]); strings.HasPrefix(name, "code_") && n != 1 {
				t.Errorf("code appears %d times, want once (in the header)", n)
			}
			// What a channel sees (the status card) shows neither a code nor
			// a whole number, as fakeslack checks it.
			if v := (fakeslack.Version{Text: m.Text, Blocks: blocks}); strings.HasPrefix(name, "card_") && (v.ShowsCode() || v.ShowsPhone()) {
				t.Errorf("a card shows a code or a whole number: %s", v.Shown())
			}
		})
	}
}

func TestLongInputStaysWithinLimits(t *testing.T) {
	long := strings.Repeat("9", maxCommandText)
	for _, m := range []Message{
		PhoneView(&pairing.PhoneError{Input: long, Region: "EG", Understood: long, Problem: pairing.PhoneTooLong}),
		UnknownInstanceView(strings.Repeat("x", 40), []string{strings.Repeat("y", 40)}),
		UsageView(&UsageError{Problem: UsageNoPhone, Input: strings.Repeat("<", 40)}),
	} {
		blocks, _ := json.Marshal(m.Blocks)
		if err := fakeslack.ValidateMessage(m.Text, blocks); err != nil {
			t.Errorf("%v", err)
		}
	}
}

// TestHelpViewPhoneForms: help must not suggest 00 for the country code: an
// instance's region reads numbers with its own international prefix (009
// in Nigeria, 011 in the US), where 0020… is not Egypt (issue 7).
func TestHelpViewPhoneForms(t *testing.T) {
	for _, region := range []string{"", "EG", "NG"} {
		blocks, err := json.Marshal(HelpView([]string{"field-ng"}, region).Blocks)
		if err != nil {
			t.Fatal(err)
		}
		got := string(blocks)
		if strings.Contains(got, "0020") {
			t.Errorf("help for region %q suggests 0020…: %s", region, got)
		}
		if !strings.Contains(got, "international prefix") {
			t.Errorf("help for region %q does not say a region's own international prefix works: %s", region, got)
		}
	}
}
