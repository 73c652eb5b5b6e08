package storetest

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
)

var claimCases = []testCase{
	{"one claim wins; the view changes when it is finished", testClaimOnce},
	{"a claim holds until For runs out, then the edit may be claimed again", testClaimLapse},
	{"finishing with From releases the edit", testClaimRelease},
	{"surfaces are claimed and shown apart", testClaimSurfaces},
	{"a DM's or card's finish records where its message is", testClaimPlacement},
	{"a surface pairings do not have", testClaimNoSurface},
	{"the response_url use is taken with the claim, or nothing is", testClaimBudget},
	{"a claim survives the pairing's other writes and a restart", testClaimKept},
	{"a pairing that is gone", testClaimGone},
	{"50 concurrent claimers of one edit", testClaimConcurrent},
	{"a renewal and the pairing it renews never claim their message at once", testClaimSharedMessage},
	{"the old pairing loses while its renewal claims their message", testClaimSharedMessageRenewalFirst},
}

// editFor is how long the suite's claims hold unfinished.
const editFor = 90 * time.Second

// claim is the claim named token of pairing id's surface from → to at
// now, without a response_url.
func claim(id, surface, from, to, token string, now time.Time) pairing.ViewClaim {
	return pairing.ViewClaim{ID: id, Surface: surface, From: from, To: to, Token: token, Now: now, For: editFor}
}

// claimView makes c and fails the test unless it wins as want says.
func claimView(t *testing.T, s pairing.Storage, c pairing.ViewClaim, want bool, what string) {
	t.Helper()
	won, err := s.ClaimView(t.Context(), c)
	if err != nil || won != want {
		t.Errorf("%s: ClaimView(%s %q→%q, %s) = %v, %v; want %v", what, c.Surface, c.From, c.To, c.Token, won, err, want)
	}
}

// finishView finishes claim token and fails the test unless the outcome
// is want.
func finishView(t *testing.T, s pairing.Storage, id, surface, token, shown string, unwatch, want bool, what string) {
	t.Helper()
	done, err := s.FinishView(t.Context(), id, surface, token, pairing.Surface{LastView: shown}, unwatch)
	if err != nil || done != want {
		t.Errorf("%s: FinishView(%s, %s, %q) = %v, %v; want %v", what, surface, token, shown, done, err, want)
	}
}

// testClaimOnce: of two claims of one edit the first wins; a claim
// changes no view; the loser cannot finish; the winner's finish shows
// its view, after which a claim from the old view loses and one from the
// new view wins.
func testClaimOnce(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	a := live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	const eph = pairing.SurfaceEphemeral
	claimView(t, s, claim("a", eph, "", "live:0", "T1", t0), true, "first claim")
	claimView(t, s, claim("a", eph, "", "live:0", "T2", t0), false, "second claim of the same edit")
	if diff := cmp.Diff(a, mustPairing(t, s, "a")); diff != "" {
		t.Errorf("the claim changed the pairing (-want +got):\n%s", diff)
	}
	finishView(t, s, "a", eph, "T2", "live:0", false, false, "the loser finishing")
	finishView(t, s, "a", eph, "T1", "live:0", false, true, "the winner finishing")
	a.LastView = "live:0"
	if diff := cmp.Diff(a, mustPairing(t, s, "a")); diff != "" {
		t.Errorf("after the finish (-want +got):\n%s", diff)
	}
	checkWatched(t, s, "a")
	finishView(t, s, "a", eph, "T1", "live:0", false, false, "finishing twice")
	claimView(t, s, claim("a", eph, "", "live:0", "T3", t0.Add(time.Second)), false, "a claim from the view before")
	claimView(t, s, claim("a", eph, "live:0", "live:1", "T4", t0.Add(time.Second)), true, "a claim from the view shown")
	// The final view, and the message is no longer kept current.
	finishView(t, s, "a", eph, "T4", "live:1", true, true, "finishing, unwatching")
	checkWatched(t, s)
	if p := mustPairing(t, s, "a"); p.LastView != "live:1" {
		t.Errorf("last view %q, want live:1", p.LastView)
	}
}

// testClaimLapse: a claim holds up to a nanosecond before its For runs
// out; then a new claim of the edit wins, and the lapsed claimer's finish
// does nothing. A lapsed claim nobody replaced can still be finished.
func testClaimLapse(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	const eph = pairing.SurfaceEphemeral
	claimView(t, s, claim("a", eph, "", "live:0", "T1", t0), true, "first claim")
	claimView(t, s, claim("a", eph, "", "live:0", "T2", t0.Add(editFor-time.Nanosecond)), false, "a nanosecond before it runs out")
	claimView(t, s, claim("a", eph, "", "live:0", "T2", t0.Add(editFor)), true, "once it ran out")
	finishView(t, s, "a", eph, "T1", "live:0", true, false, "the lapsed claimer finishing")
	if p := mustPairing(t, s, "a"); p.LastView != "" {
		t.Errorf("last view %q after the lapsed finish, want none", p.LastView)
	}
	checkWatched(t, s, "a")
	finishView(t, s, "a", eph, "T2", "live:0", false, true, "the new claimer finishing")

	// Ran out, not replaced: its claimer may still finish it.
	claimView(t, s, claim("a", eph, "live:0", "live:1", "T3", t0.Add(2*editFor)), true, "claim of the next edit")
	finishView(t, s, "a", eph, "T3", "live:1", false, true, "finishing long after it ran out")
	if p := mustPairing(t, s, "a"); p.LastView != "live:1" {
		t.Errorf("last view %q, want live:1", p.LastView)
	}
}

// testClaimRelease: a post that failed is released by finishing with
// the claim's From: the view is as it was and the edit may be claimed
// again at once.
func testClaimRelease(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	a := live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	const eph = pairing.SurfaceEphemeral
	claimView(t, s, claim("a", eph, "", "live:0", "T1", t0), true, "claim")
	finishView(t, s, "a", eph, "T1", "", false, true, "release")
	if diff := cmp.Diff(a, mustPairing(t, s, "a")); diff != "" {
		t.Errorf("after the release (-want +got):\n%s", diff)
	}
	claimView(t, s, claim("a", eph, "", "live:0", "T2", t0.Add(time.Second)), true, "the edit again")
}

// testClaimSurfaces: each surface has its own view and its own claim; the
// DM's and the card's views are their Surface's LastView, and one set back
// to none leaves the surface as it was.
func testClaimSurfaces(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	a := live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	for _, surface := range []string{pairing.SurfaceEphemeral, pairing.SurfaceDM, pairing.SurfaceCard} {
		claimView(t, s, claim("a", surface, "", surface+":live:0", "T-"+surface, t0), true, surface)
	}
	finishView(t, s, "a", pairing.SurfaceDM, "T-dm", "dm:live:0", false, true, "dm")
	finishView(t, s, "a", pairing.SurfaceCard, "T-card", "card:live:0", false, true, "card")
	claimView(t, s, claim("a", pairing.SurfaceEphemeral, "", "x", "T-again", t0), false, "the ephemeral claim still holds")
	want := a
	want.DM.LastView, want.Card.LastView = "dm:live:0", "card:live:0"
	got := mustPairing(t, s, "a")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("views (-want +got):\n%s", diff)
	}
	if got.View(pairing.SurfaceDM) != "dm:live:0" || got.View(pairing.SurfaceCard) != "card:live:0" || got.View(pairing.SurfaceEphemeral) != "" || got.View("other") != "" {
		t.Errorf("View: dm %q, card %q, ephemeral %q, other %q", got.View(pairing.SurfaceDM), got.View(pairing.SurfaceCard), got.View(pairing.SurfaceEphemeral), got.View("other"))
	}
	claimView(t, s, claim("a", pairing.SurfaceDM, "dm:live:0", "gone", "T-dm2", t0), true, "dm again")
	finishView(t, s, "a", pairing.SurfaceDM, "T-dm2", "", false, true, "dm back to none")
	claimView(t, s, claim("a", pairing.SurfaceCard, "card:live:0", "gone", "T-card2", t0), true, "card again")
	finishView(t, s, "a", pairing.SurfaceCard, "T-card2", "", false, true, "card back to none")
	if diff := cmp.Diff(a, mustPairing(t, s, "a")); diff != "" {
		t.Errorf("after every surface went back to none (-want +got):\n%s", diff)
	}
}

// testClaimPlacement: finishing a DM's or a card's edit records the
// surface as the post left it — the first post's channel and ts, a
// message posted anew, Slack's refusal — with its view, keeps the
// recipient it was reserved with whatever the finish says, and leaves the
// other surfaces alone; a restart keeps it.
func testClaimPlacement(t *testing.T, open func(*testing.T) Harness) {
	h := open(t)
	s := h.Storage
	r := reservation("a", "I1", phone(1), "U1", t0)
	r.Pairing.Delivery = pairing.DeliveryDM
	r.Pairing.DM = pairing.Surface{Recipient: "U9"}
	r.Pairing.Card = pairing.Surface{Channel: "C1"}
	a := live(t, s, r)

	// The DM's first post: where it went, and what it shows.
	claimView(t, s, claim("a", pairing.SurfaceDM, "", "dm:live:0", "T1", t0), true, "the DM's first post")
	posted := pairing.Surface{Channel: "D1", TS: "1700000000.000100", LastView: "dm:live:0", Recipient: "U-other"}
	if done, err := s.FinishView(t.Context(), "a", pairing.SurfaceDM, "T1", posted, false); !done || err != nil {
		t.Fatalf("FinishView of the DM's first post: %v, %v", done, err)
	}
	want := a
	want.DM = pairing.Surface{Channel: "D1", TS: "1700000000.000100", LastView: "dm:live:0", Recipient: "U9"}
	if diff := cmp.Diff(want, mustPairing(t, s, "a")); diff != "" {
		t.Errorf("after the DM's first post (-want +got):\n%s", diff)
	}

	// The card refused (the bot is not in the channel).
	claimView(t, s, claim("a", pairing.SurfaceCard, "", "card:live:0", "T2", t0), true, "the card's first post")
	refused := pairing.Surface{Channel: "C1", Failed: "not_in_channel"}
	if done, err := s.FinishView(t.Context(), "a", pairing.SurfaceCard, "T2", refused, false); !done || err != nil {
		t.Fatalf("FinishView of the refused card: %v, %v", done, err)
	}
	want.Card = refused

	// The DM's message could no longer be edited: the final view posted
	// anew, which the DM follows from then on.
	endLive(t, s, "a", t0.Add(time.Second), pairing.StateExpired, false)
	claimView(t, s, claim("a", pairing.SurfaceDM, "dm:live:0", "dm:expired", "T3", t0.Add(time.Second)), true, "the DM's final view")
	anew := pairing.Surface{Channel: "D1", TS: "1700000060.000200", LastView: "dm:expired", Recipient: "U9"}
	if done, err := s.FinishView(t.Context(), "a", pairing.SurfaceDM, "T3", anew, false); !done || err != nil {
		t.Fatalf("FinishView of the DM posted anew: %v, %v", done, err)
	}
	want.DM = anew
	s = h.Restart(t)
	got := mustPairing(t, s, "a")
	if got.State != pairing.StateExpired || got.Code != "" {
		t.Errorf("pairing %s, code %q; want expired, no code", got.State, got.Code)
	}
	if diff := cmp.Diff([]pairing.Surface{want.DM, want.Card}, []pairing.Surface{got.DM, got.Card}); diff != "" {
		t.Errorf("DM and card after a restart (-want +got):\n%s", diff)
	}
	if got.ClickURL != a.ClickURL || got.ResponseURL != a.ResponseURL || got.Delivery != pairing.DeliveryDM {
		t.Errorf("the ephemeral surface changed: %+v", got)
	}
}

// testClaimNoSurface: a claim or a finish naming a surface pairings do
// not have returns ErrNoSurface and changes nothing: no claim is made,
// the pairing is as it was.
func testClaimNoSurface(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	a := live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	for _, surface := range []string{"other", "", "views", "last_view"} {
		c := claim("a", surface, "", "x", "T-"+surface, t0)
		c.URL, c.Issued = hookURL, t0
		if won, err := s.ClaimView(t.Context(), c); won || !errors.Is(err, pairing.ErrNoSurface) {
			t.Errorf("ClaimView(%q) = %v, %v; want ErrNoSurface", surface, won, err)
		}
		if done, err := s.FinishView(t.Context(), "a", surface, "T-"+surface, pairing.Surface{LastView: "x"}, true); done || !errors.Is(err, pairing.ErrNoSurface) {
			t.Errorf("FinishView(%q) = %v, %v; want ErrNoSurface", surface, done, err)
		}
	}
	if diff := cmp.Diff(a, mustPairing(t, s, "a")); diff != "" {
		t.Errorf("the pairing changed (-want +got):\n%s", diff)
	}
	checkWatched(t, s, "a")
	// No use of the url was taken: all five are left.
	for i := range pairing.ResponseURLUses {
		use(t, s, hookURL, t0, t0, 0, nil, fmt.Sprintf("use %d", i+1))
	}
}

// testClaimBudget: a winning claim with a response_url takes one use of
// it; a losing one takes none; one that would win when the url has no
// use it may take returns ErrBudgetSpent and claims nothing.
func testClaimBudget(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	const eph = pairing.SurfaceEphemeral
	withURL := func(c pairing.ViewClaim, keep int) pairing.ViewClaim {
		c.URL, c.Issued, c.Keep = hookURL, t0, keep
		return c
	}
	claimView(t, s, withURL(claim("a", eph, "", "live:0", "T1", t0), 0), true, "claim with a use")
	claimView(t, s, withURL(claim("a", eph, "", "live:0", "T2", t0), 0), false, "losing claim")
	finishView(t, s, "a", eph, "T1", "live:0", false, true, "finish")
	// One use taken: three more may be taken keeping one.
	for i := range 3 {
		use(t, s, hookURL, t0, t0, 1, nil, fmt.Sprintf("use %d", i+2))
	}
	_, err := s.ClaimView(t.Context(), withURL(claim("a", eph, "live:0", "live:1", "T3", t0), 1))
	if !errors.Is(err, pairing.ErrBudgetSpent) {
		t.Errorf("claim keeping one of the last use: %v, want ErrBudgetSpent", err)
	}
	// Nothing was claimed: a claim without the url wins.
	claimView(t, s, claim("a", eph, "live:0", "live:1", "T4", t0), true, "claim after the refusal")
	finishView(t, s, "a", eph, "T4", "live:0", false, true, "release")
	// The last use is still there for a claim that keeps none.
	claimView(t, s, withURL(claim("a", eph, "live:0", "expired", "T5", t0), 0), true, "claim of the last use")
	use(t, s, hookURL, t0, t0, 0, pairing.ErrBudgetSpent, "6th use")
	// Thirty minutes after it was issued the url takes no claim's post.
	finishView(t, s, "a", eph, "T5", "live:0", false, true, "release")
	other := withURL(claim("a", eph, "live:0", "expired", "T6", t0.Add(pairing.ResponseURLLifetime)), 0)
	other.URL = hookURL + "-late"
	if _, err := s.ClaimView(t.Context(), other); !errors.Is(err, pairing.ErrBudgetSpent) {
		t.Errorf("claim through a url past its 30 minutes: %v, want ErrBudgetSpent", err)
	}
}

// testClaimKept: the pairing's other writes (an update that ends it,
// RecordView, a settlement of a renewal) keep a claim, and so does a
// restart; its claimer finishes it afterwards.
func testClaimKept(t *testing.T, open func(*testing.T) Harness) {
	h := open(t)
	s := h.Storage
	live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	const eph = pairing.SurfaceEphemeral
	claimView(t, s, claim("a", eph, "", "live:0", "T1", t0), true, "claim")
	claimView(t, s, claim("a", pairing.SurfaceDM, "", "dm:live:0", "T-dm", t0), true, "dm claim")
	finishView(t, s, "a", pairing.SurfaceDM, "T-dm", "dm:live:0", false, true, "dm finish")
	claimView(t, s, claim("a", pairing.SurfaceDM, "dm:live:0", "dm:cancelled", "T-dm2", t0), true, "dm claim again")
	endLive(t, s, "a", t0.Add(time.Second), pairing.StateCancelled, false)
	if err := s.RecordView(t.Context(), "a", "", false); err != nil {
		t.Fatal(err)
	}
	s = h.Restart(t)
	now := t0.Add(2 * time.Second)
	claimView(t, s, claim("a", eph, "", "cancelled", "T2", now), false, "another claim after the writes and the restart")
	claimView(t, s, claim("a", pairing.SurfaceDM, "dm:live:0", "dm:cancelled", "T3", now), false, "another dm claim")
	finishView(t, s, "a", eph, "T1", "cancelled", true, true, "the claimer finishing")
	finishView(t, s, "a", pairing.SurfaceDM, "T-dm2", "dm:cancelled", false, true, "the dm claimer finishing")
	p := mustPairing(t, s, "a")
	if p.State != pairing.StateCancelled || p.LastView != "cancelled" || p.View(pairing.SurfaceDM) != "dm:cancelled" || p.Code != "" {
		t.Errorf("pairing %s, views %q and %q, code %q; want cancelled, shown on both, no code", p.State, p.LastView, p.View(pairing.SurfaceDM), p.Code)
	}
	checkWatched(t, s)
}

// testClaimGone: a claim or a finish for a pairing that does not exist
// (pruned meanwhile) says ErrNotFound.
func testClaimGone(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	if _, err := s.ClaimView(t.Context(), claim("nope", pairing.SurfaceEphemeral, "", "x", "T1", t0)); !errors.Is(err, pairing.ErrNotFound) {
		t.Errorf("ClaimView: %v, want ErrNotFound", err)
	}
	if _, err := s.FinishView(t.Context(), "nope", pairing.SurfaceEphemeral, "T1", pairing.Surface{LastView: "x"}, true); !errors.Is(err, pairing.ErrNotFound) {
		t.Errorf("FinishView: %v, want ErrNotFound", err)
	}
}

// testClaimConcurrent: 50 claimers of one edit at once (replicas that
// both think they lead, a click and a tick): exactly one wins, and
// exactly one use of the url is taken.
func testClaimConcurrent(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	var won atomic.Int32
	parallel(50, func(i int) {
		c := claim("a", pairing.SurfaceEphemeral, "", "live:1", fmt.Sprint("T", i), t0)
		c.URL, c.Issued = hookURL, t0
		ok, err := s.ClaimView(t.Context(), c)
		if err != nil {
			t.Error(err)
		}
		if ok {
			won.Add(1)
		}
	})
	if won.Load() != 1 {
		t.Errorf("%d of 50 claims of one edit won, want 1", won.Load())
	}
	for i := range pairing.ResponseURLUses - 1 {
		use(t, s, hookURL, t0, t0, 0, nil, fmt.Sprintf("use %d after the claims", i+2))
	}
	use(t, s, hookURL, t0, t0, 0, pairing.ErrBudgetSpent, "6th use")
}

// testClaimSharedMessage: a renewal is shown in its old pairing's DM
// message. While the old pairing's claim of the DM runs, the renewal's
// loses; once the old pairing is superseded its claims lose (its renewal
// owns the message), whatever view its caller last saw.
func testClaimSharedMessage(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	const dm = pairing.SurfaceDM
	live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	claimView(t, s, claim("a", dm, "", "code:4", "TA", t0), true, "the old pairing's countdown step")
	renewal(t, s, "b", "a", t0.Add(10*time.Second))
	at := t0.Add(12 * time.Second)
	if _, err := s.Settle(t.Context(), pairing.Settlement{ID: "b", Now: at, Counted: true, Change: toState(pairing.StateLive, at), Replaced: "a", ReplacedURL: clickURL,
		ReplacedAudit: replacedAudit("a")}); err != nil {
		t.Fatal(err)
	}
	claimView(t, s, claim("b", dm, "", "code:3", "TB", at), false, "the renewal, while the old pairing's claim of the message runs")
	finishView(t, s, "a", dm, "TA", "code:4", false, true, "the old pairing's step landing")
	claimView(t, s, claim("a", dm, "code:4", "code:3", "TA2", at), false, "the superseded pairing's next step")
	claimView(t, s, claim("b", dm, "", "code:3", "TB2", at), true, "the renewal, once the old claim is finished")
	finishView(t, s, "b", dm, "TB2", "code:3", false, true, "the renewal's step landing")
}

// testClaimSharedMessageRenewalFirst: the reverse order of
// testClaimSharedMessage. A renewal that failed without a code (settled
// uncounted: its old pairing is reinstated and goes on counting down in
// the same message) claims the message to show its failure (the click's
// answer, bot/interaction.go show); the old pairing, live again, must then
// lose its claim of that same message while the renewal's runs, or both
// edit it at once. Only the renewal's side is checked (testClaimSharedMessage).
func testClaimSharedMessageRenewalFirst(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	const dm = pairing.SurfaceDM
	live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	renewal(t, s, "b", "a", t0.Add(10*time.Second))
	at := t0.Add(11 * time.Second)
	if _, err := s.Settle(t.Context(), pairing.Settlement{ID: "b", Now: at, Counted: false, Change: toState(pairing.StateFailed, at), Replaced: "a", ReplacedURL: clickURL,
		ReplacedAudit: replacedAudit("a")}); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Pairing(t.Context(), "a"); err != nil || p.State != pairing.StateLive {
		t.Fatalf("old pairing after its renewal failed: %s, %v; want live (reinstated)", p.State, err)
	}
	claimView(t, s, claim("b", dm, "", "failed", "TB", at), true, "the failed renewal's answer, no claim of the old pairing running")
	claimView(t, s, claim("a", dm, "", "code:4", "TA", at), false, "the reinstated old pairing's step, while its renewal's claim of their shared message runs")
}
